#!/usr/bin/env bash
# Unary gRPC over TLS: QPS and latency of grpc.health.v1.Health/Check served
# by vppd and, in the same run with the same load, by Google's gRPC C++
# server (bench/ref). Load from h2load (nghttp2-client), TLS with ALPN h2.
#
#   bench/grpc_health.sh [--duration S] [--warmup S] [--latency-requests N]
#                        [--h2load-threads T] [--server-threads T] [--only ref|vppd]
#
# Prints a markdown snippet for bench/RESULTS.md. Needs the release build
# (build/server/vppd; run deploy/local/bootstrap.sh first). Exits non-zero when
# a server fails the load or the SERVING check.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
duration=10
warmup=2
lat_n=20000
h2threads=1
sthreads=2
only=""
conns=8
streams=32
while (($#)); do
	case "$1" in
	--duration) duration="$2"; shift 2 ;;
	--warmup) warmup="$2"; shift 2 ;;
	--latency-requests) lat_n="$2"; shift 2 ;;
	--h2load-threads) h2threads="$2"; shift 2 ;;
	--server-threads) sthreads="$2"; shift 2 ;;
	--only) only="$2"; shift 2 ;;
	-h | --help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "grpc_health.sh: unknown option $1" >&2; exit 2 ;;
	esac
done
PY=/usr/bin/python3
VPPD="${VPPD:-$root/build/server/vppd}"

tmp=$(mktemp -d /tmp/vpp-bench-health.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	for p in "${pids[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	rm -rf "$tmp"
}
trap cleanup EXIT

free_port() {
	$PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_port() { # wait_port PORT PID: until PORT accepts or PID dies (10 s)
	for _ in $(seq 100); do
		kill -0 "$2" 2>/dev/null || return 1
		if $PY -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	return 1
}

"$root/deploy/local/certs.sh" "$tmp/certs" --devices 0 2>/dev/null
ref_bin=$("$root/bench/ref/build.sh" "${BENCH_BUILD:-$root/build-bench}" | tail -1)

# The request: a gRPC frame (uncompressed, length 0) of an empty
# HealthCheckRequest, i.e. five zero bytes.
printf '\0\0\0\0\0' >"$tmp/req.bin"

# serving_check PORT: Google's gRPC for Python, verifying the chain, must see
# SERVING: h2load alone only sees HTTP status 200, not the gRPC status.
serving_check() {
	$PY - "$1" "$tmp/certs/ca.pem" "$root/proto/grpc/health/v1" "$tmp" <<'EOF'
import sys
import grpc
from grpc_tools import protoc
port, ca, protodir, out = sys.argv[1:5]
# python3-grpcio ships no health stubs: generate them from our proto.
if protoc.main(["protoc", "-I" + protodir, "--python_out=" + out,
                "--grpc_python_out=" + out, protodir + "/health.proto"]) != 0:
    sys.exit("protoc failed")
sys.path.insert(0, out)
import health_pb2
import health_pb2_grpc
creds = grpc.ssl_channel_credentials(open(ca, "rb").read())
import time
with grpc.secure_channel("localhost:" + port, creds) as ch:
    # A server that just started says NOT_SERVING until it is ready.
    for _ in range(50):
        r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
        if r.status == health_pb2.HealthCheckResponse.SERVING:
            break
        time.sleep(0.1)
    if r.status != health_pb2.HealthCheckResponse.SERVING:
        sys.exit("status %s" % r.status)
print("SERVING")
EOF
}

# run_h2load NAME PORT C M ARGS...: prints "qps p50_us p99_us mean_us ok total"
run_h2load() {
	local name="$1" port="$2" c="$3" m="$4"
	shift 4
	local log="$tmp/$name-$c-$m.log" out="$tmp/$name-$c-$m.out"
	local t=$((h2threads < c ? h2threads : c)) # h2load needs threads <= clients
	h2load -c "$c" -m "$m" -t "$t" -d "$tmp/req.bin" \
		-H 'content-type: application/grpc' -H 'te: trailers' \
		--log-file="$log" "$@" "https://127.0.0.1:$port/grpc.health.v1.Health/Check" >"$out" 2>&1 || {
		echo "h2load failed against $name:" >&2
		tail -20 "$out" >&2
		return 1
	}
	$PY - "$out" "$log" <<'EOF'
import re, sys
out = open(sys.argv[1]).read()
m = re.search(r"finished in ([0-9.]+)(s|ms), ([0-9.]+) req/s", out)
st = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
req = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed", out)
if not m or not st or not req:
    sys.exit("cannot parse h2load output:\n" + out)
durs = sorted(int(l.split()[2]) for l in open(sys.argv[2]) if l.strip())
def pct(p):
    return durs[min(len(durs) - 1, int(p / 100.0 * len(durs)))] if durs else 0
mean = sum(durs) / len(durs) if durs else 0
print("%.0f %d %d %.0f %s %s" % (float(m.group(3)), pct(50), pct(99), mean, st.group(1), req.group(1)))
EOF
}

results=()
names=()
bench_one() { # bench_one NAME PORT
	local name="$1" port="$2" r
	serving_check "$port" >/dev/null || { echo "$name: Health/Check did not answer SERVING" >&2; return 1; }
	# Warm-up: TLS sessions, allocator, caches.
	run_h2load "$name" "$port" "$conns" "$streams" -D "$warmup" >/dev/null || return 1
	r=$(run_h2load "$name" "$port" "$conns" "$streams" -D "$duration" --warm-up-time=1) || return 1
	results+=("$name ${conns}x${streams} $r")
	r=$(run_h2load "$name" "$port" 1 1 -n "$lat_n") || return 1
	results+=("$name 1x1 $r")
	names+=("$name")
}

status=0
if [ "$only" != vppd ]; then
	ref_port=$(free_port)
	"$ref_bin" "$ref_port" "$tmp/certs/server.pem" "$tmp/certs/server.key" "$sthreads" \
		2>"$tmp/ref.err" &
	pids+=($!)
	if wait_port "$ref_port" "$!"; then
		bench_one grpc-c++ "$ref_port" || status=1
	else
		echo "reference server did not start:" >&2
		cat "$tmp/ref.err" >&2
		status=1
	fi
fi
if [ "$only" != ref ]; then
	vppd_port=$(free_port)
	if [ -x "$VPPD" ]; then
		"$VPPD" --api-port "$vppd_port" --tls-cert "$tmp/certs/server.pem" \
			--tls-key "$tmp/certs/server.key" --device-port 0 --admin-port 0 \
			--io-threads "$sthreads" --log-level warn --journal-dir "$tmp/journal" \
			2>"$tmp/vppd.err" &
		pids+=($!)
		if wait_port "$vppd_port" "$!"; then
			bench_one vppd "$vppd_port" || status=1
		else
			echo "vppd did not serve the operator API:" >&2
			tail -5 "$tmp/vppd.err" >&2
			status=1
		fi
	else
		echo "no $VPPD: build it first (deploy/local/bootstrap.sh)" >&2
		status=1
	fi
fi

echo
echo "### grpc.health.v1.Health/Check over TLS ($(date -u +%Y-%m-%d), $(nproc) cores, $(uname -m), $(h2load --version 2>/dev/null | head -1 | awk '{print $1, $2}' || echo h2load))"
echo
echo "| server | load (conns x streams) | QPS | p50 | p99 | mean | 2xx / requests |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
for r in "${results[@]}"; do
	set -- $r
	printf '| %s | %s | %s | %s us | %s us | %s us | %s / %s |\n' "$1" "$2" "$3" "$4" "$5" "$6" "$7" "$8"
done
printf '%s\n' "${results[@]}" | $PY -c '
import sys
rows = {tuple(l.split()[:2]): l.split()[2:] for l in sys.stdin if l.strip()}
shape = sys.argv[1]
v, g = rows.get(("vppd", shape)), rows.get(("grpc-c++", shape))
if v and g:
    print()
    print("vppd / grpc-c++ QPS at %s: %.2fx (target >= 1.0x); vppd p99 %s us (target <= 10000 us)"
          % (shape, float(v[0]) / float(g[0]), v[2]))
' "${conns}x${streams}"
echo
echo "Command: \`bench/grpc_health.sh --duration $duration --latency-requests $lat_n --h2load-threads $h2threads --server-threads $sthreads\`"
echo "(h2load -c C -m M -t $h2threads -d <5 zero bytes> -H 'content-type: application/grpc' -H 'te: trailers' https://127.0.0.1:PORT/grpc.health.v1.Health/Check;"
echo "warm-up ${warmup} s, then ${duration} s at ${conns}x${streams}; ${lat_n} requests at 1x1. Percentiles from h2load --log-file.)"
exit $status
