#!/usr/bin/env bash
# Installs every Debian package vpp needs (idempotent: a fast no-op when all
# are present), then builds the project (release build in build/, sanitizer
# build in build-asan/ unless VPP_NO_ASAN=1, fuzz targets in build-fuzz/
# unless VPP_NO_FUZZ=1; VPP_BOOTSTRAP_NO_BUILD=1 only installs).
set -euo pipefail
cd "$(dirname "$0")/../.."

PKGS=(
  build-essential pkg-config meson ninja-build clang
  libuv1-dev libnghttp2-dev libssl-dev libpq-dev
  libprotobuf-c-dev protobuf-c-compiler check libinih-dev
  postgresql-15 postgresql-client-15 openssl nghttp2-client
  python3-grpcio python3-grpc-tools python3-psycopg python3-scipy python3-numpy
  python3-h2 curl libfaketime haproxy testssl.sh
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  echo "bootstrap: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

[ "${VPP_BOOTSTRAP_NO_BUILD:-0}" = 1 ] && exit 0

# meson and ninja print their errors on stdout: keep it in a log, and show
# its end when a step fails.
log=$(mktemp /tmp/vpp-bootstrap-XXXXXX.log)
quiet() {
  if ! "$@" >>"$log" 2>&1; then
    echo "bootstrap: failed: $*" >&2
    tail -n 40 "$log" >&2
    echo "bootstrap: the whole output is in $log" >&2
    exit 1
  fi
}

if [ ! -f build/build.ninja ]; then
  quiet meson setup build --buildtype=release
fi
quiet ninja -C build
if [ "${VPP_NO_ASAN:-0}" != 1 ]; then
  if [ ! -f build-asan/build.ninja ]; then
    quiet meson setup build-asan --buildtype=debug -Db_sanitize=address,undefined \
      -Db_lundef=false
  fi
  quiet ninja -C build-asan
fi
# libFuzzer targets (clang), run briefly by tests/run.sh.
if [ "${VPP_NO_FUZZ:-0}" != 1 ] && command -v clang >/dev/null; then
  if [ ! -f build-fuzz/build.ninja ]; then
    CC=clang quiet meson setup build-fuzz --buildtype=debug -Dfuzz=true
  fi
  quiet ninja -C build-fuzz fuzz # every tests/fuzz target (its meson alias)
fi
rm -f "$log"
