#!/usr/bin/env bash
# deploy/local/certs.sh: chains verify, names and extensions are what the
# servers and clients need, re-running keeps what exists, a lost CA re-issues
# its leaves, --shared-key and --device-prefix work.
# Prints `N passed, N failed` as its last line.
set -uo pipefail
root="${VPP_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}"
certs="$root/deploy/local/certs.sh"
tmp=$(mktemp -d /tmp/vpp-test-certs.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0

check() { # check NAME COMMAND...: runs a test case
	local name="$1"
	shift
	local out
	if out=$("$@" 2>&1); then
		echo "ok   $name"
		passed=$((passed + 1))
	else
		echo "FAIL $name"
		echo "$out" | tail -20 | sed 's/^/    /'
		failed=$((failed + 1))
	fi
}

subject_cn() { openssl x509 -in "$1" -noout -subject -nameopt multiline | sed -n 's/^ *commonName *= //p'; }
has_ext() { openssl x509 -in "$1" -noout -text | grep -q "$2"; }

d="$tmp/c"

t_generate() {
	"$certs" "$d" --devices 20 >/dev/null || return 1
	for f in ca.pem ca.key server.pem server.key device-ca.pem device-ca.key \
		operator-ca.pem operator-ca.key operator.pem operator.key \
		devices/dev-00000.pem devices/dev-00000.key devices/dev-00019.pem devices/dev-00019.key; do
		[ -s "$d/$f" ] || { echo "missing $f"; return 1; }
	done
	[ ! -e "$d/devices/dev-00020.pem" ] || { echo "made too many devices"; return 1; }
	[ "$(stat -c %a "$d/ca.key")" = 600 ] || { echo "ca.key is readable by others"; return 1; }
}

t_chains() {
	openssl verify -CAfile "$d/ca.pem" "$d/server.pem" || return 1
	openssl verify -CAfile "$d/operator-ca.pem" "$d/operator.pem" || return 1
	openssl verify -CAfile "$d/device-ca.pem" "$d"/devices/dev-000{00..19}.pem >/dev/null || return 1
	# Each CA signs only its own leaves.
	! openssl verify -CAfile "$d/ca.pem" "$d/devices/dev-00003.pem" 2>/dev/null || return 1
	! openssl verify -CAfile "$d/device-ca.pem" "$d/operator.pem" 2>/dev/null || return 1
	# Purposes: server for TLS servers, client for devices and operators.
	openssl verify -purpose sslserver -CAfile "$d/ca.pem" "$d/server.pem" || return 1
	openssl verify -purpose sslclient -CAfile "$d/device-ca.pem" "$d/devices/dev-00007.pem" || return 1
	! openssl verify -purpose sslserver -CAfile "$d/device-ca.pem" "$d/devices/dev-00007.pem" \
		2>/dev/null || return 1
}

t_names() {
	[ "$(subject_cn "$d/server.pem")" = localhost ] || return 1
	openssl x509 -in "$d/server.pem" -noout -checkhost localhost | grep -q "does match" || return 1
	openssl x509 -in "$d/server.pem" -noout -checkip 127.0.0.1 | grep -q "does match" || return 1
	openssl x509 -in "$d/server.pem" -noout -checkip ::1 | grep -q "does match" || return 1
	[ "$(subject_cn "$d/operator.pem")" = operator ] || return 1
	[ "$(subject_cn "$d/devices/dev-00000.pem")" = dev-00000 ] || return 1
	[ "$(subject_cn "$d/devices/dev-00019.pem")" = dev-00019 ] || return 1
	has_ext "$d/devices/dev-00019.pem" "TLS Web Client Authentication" || return 1
	has_ext "$d/server.pem" "TLS Web Server Authentication" || return 1
}

t_keys_match() {
	for n in server operator devices/dev-00005; do
		a=$(openssl x509 -in "$d/$n.pem" -noout -pubkey)
		b=$(openssl pkey -in "$d/$n.key" -pubout)
		[ "$a" = "$b" ] || { echo "$n: key does not match certificate"; return 1; }
	done
	openssl x509 -in "$d/server.pem" -noout -text | grep -q "prime256v1" || return 1
	openssl x509 -in "$d/server.pem" -noout -text | grep -q "ecdsa-with-SHA256" || return 1
	# Device keys are distinct unless --shared-key.
	[ "$(cat "$d/devices/dev-00001.key")" != "$(cat "$d/devices/dev-00002.key")" ] || return 1
}

t_idempotent() {
	sum1=$(cd "$d" && find . -type f | sort | xargs sha256sum)
	"$certs" "$d" --devices 20 >/dev/null || return 1
	sum2=$(cd "$d" && find . -type f | sort | xargs sha256sum)
	[ "$sum1" = "$sum2" ] || { echo "a re-run changed files"; return 1; }
	# Growing the fleet adds certificates and keeps the old ones.
	"$certs" "$d" --devices 25 >/dev/null || return 1
	[ -s "$d/devices/dev-00024.pem" ] || return 1
	sum3=$(cd "$d" && find . -type f -name 'dev-0000*' | sort | xargs sha256sum)
	[ "$sum3" = "$(echo "$sum1" | grep 'dev-0000')" ] || { echo "old devices changed"; return 1; }
}

t_lost_ca_reissues() {
	rm "$d/ca.key"
	"$certs" "$d" --devices 25 >/dev/null || return 1
	openssl verify -CAfile "$d/ca.pem" "$d/server.pem" || return 1
	rm "$d/device-ca.pem"
	"$certs" "$d" --devices 25 >/dev/null || return 1
	openssl verify -CAfile "$d/device-ca.pem" "$d"/devices/dev-000{00..24}.pem >/dev/null
}

t_shared_prefix() {
	local s="$tmp/s"
	"$certs" "$s" --devices 12 --shared-key --device-prefix bat- >/dev/null || return 1
	[ "$(subject_cn "$s/devices/bat-00011.pem")" = bat-00011 ] || return 1
	cmp -s "$s/devices/bat-00000.key" "$s/devices/bat-00011.key" || return 1
	a=$(openssl x509 -in "$s/devices/bat-00004.pem" -noout -pubkey)
	b=$(openssl pkey -in "$s/devices/bat-00004.key" -pubout)
	[ "$a" = "$b" ] || return 1
	openssl verify -CAfile "$s/device-ca.pem" "$s"/devices/bat-*.pem >/dev/null
}

t_speed_1000() {
	local s="$tmp/big" t0
	t0=$(date +%s)
	"$certs" "$s" --devices 1000 >/dev/null || return 1
	[ "$(find "$s/devices" -name '*.pem' | wc -l)" = 1000 ] || return 1
	echo "1000 devices in $(($(date +%s) - t0)) s"
	(($(date +%s) - t0 < 60))
}

t_usage() {
	"$certs" --help | grep -q -- "--shared-key" || return 1
	! "$certs" "$tmp/x" --devices abc 2>/dev/null || return 1
	! "$certs" "$tmp/x" --device-prefix 'a/b' 2>/dev/null || return 1
	! "$certs" 2>/dev/null
}

check "generate" t_generate
check "chains verify" t_chains
check "names and SAN" t_names
check "keys match, P-256/SHA-256" t_keys_match
check "idempotent" t_idempotent
check "lost CA re-issues leaves" t_lost_ca_reissues
check "shared key and prefix" t_shared_prefix
check "usage errors" t_usage
check "1000 devices under a minute" t_speed_1000
echo "$passed passed, $failed failed"
((failed == 0))
