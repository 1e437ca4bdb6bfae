#!/usr/bin/env bash
# Builds bench/ref/health_server (Google's gRPC C++, Debian's libgrpc++-dev)
# into OUT (default: build-bench/ in the repo root). Prints the binary's path.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="${1:-$root/build-bench}"
mkdir -p "$out/gen"
bin="$out/health_server"
src="$root/bench/ref/health_server.cc"
proto="$root/proto/grpc/health/v1/health.proto"
if [ -x "$bin" ] && [ "$bin" -nt "$src" ] && [ "$bin" -nt "$proto" ]; then
	echo "$bin"
	exit 0
fi
protoc -I "$root/proto/grpc/health/v1" --cpp_out="$out/gen" --grpc_out="$out/gen" \
	--plugin=protoc-gen-grpc="$(command -v grpc_cpp_plugin)" "$proto"
# shellcheck disable=SC2046
g++ -std=c++17 -O2 -o "$bin.tmp" -I "$out/gen" "$src" "$out/gen/health.pb.cc" \
	"$out/gen/health.grpc.pb.cc" $(pkg-config --cflags --libs grpc++ protobuf) -lpthread
mv "$bin.tmp" "$bin"
echo "$bin"
