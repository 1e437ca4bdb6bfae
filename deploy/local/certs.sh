#!/usr/bin/env bash
# Development certificates for vpp, made with the openssl CLI (EC P-256,
# SHA-256). Idempotent: files that exist are kept; a CA that is (re)created
# gets its certificates re-issued. Run with --help for the layout.
set -euo pipefail

usage() {
	cat <<'EOF'
usage: deploy/local/certs.sh DIR [--devices N] [--device-prefix PREFIX]
                             [--shared-key] [--jobs J] [--days D]

Creates in DIR (kept when present):
  ca.pem ca.key                 server CA
  server.pem server.key         CN=localhost, SAN DNS:localhost, IP:127.0.0.1, IP:::1
  device-ca.pem device-ca.key   device CA
  devices/<PREFIX><i>.pem .key  i = 0..N-1, CN = device id (PREFIX + 5-digit i)
  operator-ca.pem operator-ca.key
  operator.pem operator.key     CN=operator, signed by the operator CA

  --devices N          device certificates to create (default 10)
  --device-prefix P    device id prefix (default "dev-")
  --shared-key         one device key for every device certificate (hard
                       links devices/*.key to devices/shared.key): for
                       benchmarks with 100,000 devices, not for production
  --jobs J             parallel openssl processes (default: number of cores)
  --days D             validity of the leaf certificates (default 825)
EOF
}

dir=""
devices=10
prefix="dev-"
shared=0
jobs=$(nproc 2>/dev/null || echo 2)
days=825
while (($#)); do
	case "$1" in
	-h | --help) usage; exit 0 ;;
	--devices) devices="${2:?--devices needs a value}"; shift 2 ;;
	--devices=*) devices="${1#*=}"; shift ;;
	--device-prefix) prefix="${2?--device-prefix needs a value}"; shift 2 ;;
	--device-prefix=*) prefix="${1#*=}"; shift ;;
	--shared-key) shared=1; shift ;;
	--jobs) jobs="${2:?--jobs needs a value}"; shift 2 ;;
	--jobs=*) jobs="${1#*=}"; shift ;;
	--days) days="${2:?--days needs a value}"; shift 2 ;;
	--days=*) days="${1#*=}"; shift ;;
	-*) echo "certs.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
	*)
		[ -z "$dir" ] || { echo "certs.sh: one DIR only (see --help)" >&2; exit 2; }
		dir="$1"; shift ;;
	esac
done
[ -n "$dir" ] || { usage >&2; exit 2; }
for v in devices jobs days; do
	[[ "${!v}" =~ ^[0-9]+$ ]] || { echo "certs.sh: --$v must be a number" >&2; exit 2; }
done
# The prefix becomes a file name and a CN: keep it to safe characters.
[[ "$prefix" =~ ^[A-Za-z0-9._-]*$ ]] || {
	echo "certs.sh: --device-prefix may only use letters, digits, '.', '_', '-'" >&2
	exit 2
}
((jobs > 0)) || jobs=1

umask 077
mkdir -p "$dir/devices"
cd "$dir"

# One private config: nothing from the system openssl.cnf leaks in, and the
# extensions of each kind of certificate are stated here.
cnf=$(mktemp "${TMPDIR:-/tmp}/vpp-certs.XXXXXX")
trap 'rm -f "$cnf"' EXIT
cat >"$cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1,IP:::1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF

newkey() {
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
}

# make_ca NAME CN: creates NAME.pem/.key unless both exist. Sets ca_new=1
# when it created them, so the caller re-issues what the old CA had signed.
make_ca() {
	ca_new=0
	if [ -s "$1.pem" ] && [ -s "$1.key" ]; then
		return
	fi
	newkey "$1.key"
	openssl req -config "$cnf" -x509 -new -key "$1.key" -subj "/CN=$2" -sha256 \
		-days 3650 -extensions ca -out "$1.pem"
	chmod 644 "$1.pem"
	ca_new=1
}

# leaf NAME CN CA EXT: a key and a certificate signed by CA, unless both exist
# (or FORCE=1).
leaf() {
	if [ "${FORCE:-0}" != 1 ] && [ -s "$1.pem" ] && [ -s "$1.key" ]; then
		return
	fi
	newkey "$1.key"
	openssl req -config "$cnf" -x509 -new -key "$1.key" -subj "/CN=$2" -sha256 \
		-days "$days" -CA "$3.pem" -CAkey "$3.key" -extensions "$4" -out "$1.pem"
	chmod 644 "$1.pem"
}

make_ca ca "vpp dev server CA"
FORCE=$ca_new leaf server localhost ca server

make_ca operator-ca "vpp dev operator CA"
FORCE=$ca_new leaf operator operator operator-ca client

# Device certificates: one openssl process per certificate (it creates the
# key too, unless shared), run in parallel: no shell per certificate.
make_ca device-ca "vpp dev device CA"
dev_new=$ca_new
if ((shared)) && [ ! -s devices/shared.key ]; then
	newkey devices/shared.key
fi
missing=$(mktemp "${TMPDIR:-/tmp}/vpp-certs-missing.XXXXXX")
trap 'rm -f "$cnf" "$missing"' EXIT
for ((i = 0; i < devices; i++)); do
	printf -v id '%s%05d' "$prefix" "$i"
	if ((dev_new)) || [ ! -s "devices/$id.pem" ] || [ ! -s "devices/$id.key" ]; then
		echo "$id"
	fi
done >"$missing"
n=$(wc -l <"$missing")
if ((n > 0)); then
	if ((shared)); then
		xargs -P "$jobs" -I{} openssl req -config "$cnf" -x509 -new \
			-key devices/shared.key -subj "/CN={}" -sha256 -days "$days" \
			-CA device-ca.pem -CAkey device-ca.key -extensions client \
			-out "devices/{}.pem" <"$missing"
		# Hard links: 100,000 keys cost no disk and no key generation.
		while read -r id; do
			ln -f devices/shared.key "devices/$id.key"
		done <"$missing"
	else
		xargs -P "$jobs" -I{} openssl req -config "$cnf" -x509 -new \
			-newkey ec -pkeyopt ec_paramgen_curve:P-256 -noenc \
			-keyout "devices/{}.key" -subj "/CN={}" -sha256 -days "$days" \
			-CA device-ca.pem -CAkey device-ca.key -extensions client \
			-out "devices/{}.pem" <"$missing" 2> >(grep -v '^-----$' >&2)
	fi
	find devices -name '*.pem' -exec chmod 644 {} +
fi
echo "certs.sh: $dir ready ($devices device certificates, $n new)" >&2
