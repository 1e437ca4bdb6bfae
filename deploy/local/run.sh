#!/usr/bin/env bash
# Quickstart: the whole plant on this machine. Builds vpp, creates a local
# PostgreSQL cluster (or uses $VPP_DATABASE_URL) and dev certificates under
# one state folder, starts vppd and a 1,000-battery vpp-emulator with a few
# faulty batteries, sends a short scripted sequence of fleet setpoints with
# vppctl while showing the fleet tracking them, then keeps running until
# Ctrl-C, which stops everything cleanly.
#
#   deploy/local/run.sh [--devices N] [--nodes N] [--state DIR] [--no-script]
#
# --nodes N (default 1): N vppd nodes in a cluster (--cluster, one database)
# behind HAProxy (deploy/haproxy/gen-config.sh), which takes the device and
# API ports; the emulator and vppctl go through it. Node i listens on the
# device and API ports + 100*i and serves metrics on the admin port + i-1;
# HAProxy's stats are on 8404 (VPP_HAPROXY_STATS_PORT). After the scripted
# setpoints it kills node-2 (kill -9) and shows the fleet recovering
# (--no-script: neither).
#
# Environment: VPP_STATE (state folder, default ./.state), VPP_DATABASE_URL
# (use this PostgreSQL instead of a local cluster), VPP_API_PORT (7444),
# VPP_DEVICE_PORT (7443), VPP_ADMIN_PORT (9464).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"

devices=1000
nodes=1
script=1
state="${VPP_STATE:-$root/.state}"
while (($#)); do
	case "$1" in
	--devices) devices="$2"; shift 2 ;;
	--nodes) nodes="$2"; shift 2 ;;
	--state) state="$2"; shift 2 ;;
	--no-script) script=0; shift ;;
	-h | --help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
	esac
done
[[ "$nodes" =~ ^[1-9][0-9]?$ ]] || { echo "run.sh: --nodes must be 1 to 99" >&2; exit 2; }
api_port="${VPP_API_PORT:-7444}"
device_port="${VPP_DEVICE_PORT:-7443}"
admin_port="${VPP_ADMIN_PORT:-9464}"
stats_port="${VPP_HAPROXY_STATS_PORT:-8404}"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

say "Installing packages and building (first run takes a few minutes)"
VPP_NO_ASAN=1 VPP_NO_FUZZ=1 deploy/local/bootstrap.sh
bin="$root/build"
mkdir -p "$state"

say "Dev certificates for $devices batteries in $state/certs"
deploy/local/certs.sh "$state/certs" --devices "$devices" >/dev/null

# An operator token: kept in the state folder, stored hashed for vppd.
if [ ! -s "$state/operator.token" ]; then
	openssl rand -hex 24 >"$state/operator.token"
	chmod 600 "$state/operator.token"
fi
token="$(cat "$state/operator.token")"
printf 'quickstart operator sha256:%s\n' \
	"$(printf %s "$token" | sha256sum | cut -d' ' -f1)" >"$state/tokens"

pids=()
pg_started=""
pgdata=""
run_pg() {
	if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
cleanup() {
	trap - INT TERM EXIT
	echo
	say "Stopping"
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		kill -TERM "${pids[i]}" 2>/dev/null || true
		wait "${pids[i]}" 2>/dev/null || true
	done
	if [ -n "$pg_started" ]; then
		run_pg /usr/lib/postgresql/15/bin/pg_ctl -D "$pgdata" -m fast -w stop >/dev/null || true
	fi
	if [ -n "$pgdata" ] && [ "${pgdata#"$state"}" = "$pgdata" ]; then
		echo "State (certificates, logs, journal) is kept in $state; the database in $pgdata"
	else
		echo "State (certificates, database, logs, journal) is kept in $state"
	fi
}
trap cleanup INT TERM HUP EXIT
# Stops with the log of a process that is no longer running.
check_alive() { # pid name log
	kill -0 "$1" 2>/dev/null && return 0
	echo "run.sh: $2 exited; the end of $3:" >&2
	tail -20 "$3" >&2
	exit 1
}

db_url="${VPP_DATABASE_URL:-}"
if [ -z "$db_url" ]; then
	# PostgreSQL refuses to run as root: as root the cluster lives in a
	# folder the postgres user owns.
	if [ "$(id -u)" -eq 0 ]; then
		pgroot="/var/tmp/vpp-quickstart-pg"
		mkdir -p "$pgroot"
		chown postgres:postgres "$pgroot"
	else
		pgroot="$state/pg"
		mkdir -p "$pgroot"
	fi
	pgdata="$pgroot/data"
	if [ ! -f "$pgdata/PG_VERSION" ]; then
		say "Creating a PostgreSQL cluster in $pgdata"
		run_pg /usr/lib/postgresql/15/bin/initdb -D "$pgdata" -U vpp --auth=trust >/dev/null
	fi
	run_pg /usr/lib/postgresql/15/bin/pg_ctl -D "$pgdata" -l "$pgroot/postgres.log" -w \
		-o "-k $pgroot -p 55432 -c listen_addresses=''" start >/dev/null
	pg_started=1
	createdb -h "$pgroot" -p 55432 -U vpp vpp 2>/dev/null || true
	db_url="postgresql:///vpp?host=$pgroot&port=55432&user=vpp"
fi

c="$state/certs"
# start_node ID API DEVICE ADMIN JOURNAL LOG [FLAG...]: starts one vppd in
# the background; its pid is appended to pids.
start_node() {
	local id="$1" api="$2" dev="$3" adm="$4" journal="$5" log="$6"
	shift 6
	"$bin/server/vppd" --node-id "$id" \
		--api-addr 127.0.0.1 --api-port "$api" --tls-cert "$c/server.pem" --tls-key "$c/server.key" \
		--operator-ca "$c/operator-ca.pem" --tokens-file "$state/tokens" \
		--device-addr 127.0.0.1 --device-port "$dev" --device-ca "$c/device-ca.pem" \
		--admin-port "$adm" --database-url "$db_url" --journal-dir "$journal" "$@" \
		2>"$log" &
	pids+=($!)
}
# wait_ready PID NAME LOG ADMIN: /readyz answers once the API and device
# ports are open and the control loop ticks (/healthz answers before: a port
# in use would go unnoticed).
wait_ready() {
	for _ in $(seq 150); do
		curl -sf "http://127.0.0.1:$4/readyz" >/dev/null 2>&1 && return 0
		check_alive "$1" "$2" "$3"
		sleep 0.2
	done
	echo "run.sh: $2 is not ready after 30 s; the end of $3:" >&2
	tail -20 "$3" >&2
	exit 1
}

# The processes the waits below check, with their names and logs.
watch_pid=() watch_name=() watch_log=()
watched() { watch_pid+=("$1") watch_name+=("$2") watch_log+=("$3"); }
check_all() {
	local i
	for i in "${!watch_pid[@]}"; do
		check_alive "${watch_pid[i]}" "${watch_name[i]}" "${watch_log[i]}"
	done
}
if [ "$nodes" -eq 1 ]; then
	say "Starting vppd (API :$api_port, devices :$device_port, metrics :$admin_port)"
	start_node quickstart "$api_port" "$device_port" "$admin_port" "$state/journal" "$state/vppd.log"
	wait_ready "${pids[0]}" vppd "$state/vppd.log" "$admin_port"
	watched "${pids[0]}" vppd "$state/vppd.log"
else
	node_pids=() node_admin=() node_spec=()
	for ((i = 1; i <= nodes; i++)); do
		napi=$((api_port + 100 * i)) ndev=$((device_port + 100 * i)) nadm=$((admin_port + i - 1))
		say "Starting vppd node-$i (API :$napi, devices :$ndev, metrics :$nadm)"
		start_node "node-$i" "$napi" "$ndev" "$nadm" "$state/journal-node-$i" "$state/vppd-node-$i.log" \
			--cluster
		node_pids+=("${pids[-1]}") node_admin+=("$nadm")
		node_spec+=(--node "node-$i=127.0.0.1:$ndev:$napi:$nadm")
	done
	# Started together: they meet in the database, then each gets ready.
	for ((i = 1; i <= nodes; i++)); do
		wait_ready "${node_pids[i - 1]}" "vppd node-$i" "$state/vppd-node-$i.log" "${node_admin[i - 1]}"
		watched "${node_pids[i - 1]}" "vppd node-$i" "$state/vppd-node-$i.log"
	done

	say "Starting HAProxy (devices :$device_port, API :$api_port, stats :$stats_port)"
	maxconn=$((2 * devices + 512))
	((maxconn >= 4096)) || maxconn=4096
	deploy/haproxy/gen-config.sh --local --maxconn "$maxconn" --check-inter-ms 500 --fall 2 --rise 2 \
		--device-bind "127.0.0.1:$device_port" --api-bind "127.0.0.1:$api_port" \
		--stats-bind "127.0.0.1:$stats_port" "${node_spec[@]}" -o "$state/haproxy.cfg"
	haproxy="$(command -v haproxy || echo /usr/sbin/haproxy)"
	"$haproxy" -db -f "$state/haproxy.cfg" >"$state/haproxy.log" 2>&1 &
	pids+=($!)
	haproxy_pid=$!
	watched "$haproxy_pid" haproxy "$state/haproxy.log"
	# Every node checked up (its /readyz through HAProxy's eyes), so that
	# the fleet is spread over all of them.
	up=0
	for _ in $(seq 100); do
		check_alive "$haproxy_pid" haproxy "$state/haproxy.log"
		up=$( (curl -sf "http://127.0.0.1:$stats_port/stats;csv" || true) |
			awk -F, '$1 == "vppd_devices" && $2 != "BACKEND" && $18 == "UP"' | wc -l)
		((up == nodes)) && break
		sleep 0.2
	done
	((up == nodes)) || echo "run.sh: HAProxy sees $up of $nodes nodes up; see $state/haproxy.log" >&2
fi

say "Starting vpp-emulator: $devices batteries, a few of them faulty"
"$bin/tools/vpp-emulator" --server "127.0.0.1:$device_port" --devices "$devices" --certs "$c" \
	--offline 0.02 --flaky 0.02 --ignore 0.03 --partial 0.03 --late-ack 0.02 --malformed 0.005 \
	--report "$state/emulator-report.json" 2>"$state/emulator.log" &
pids+=($!)
watched "$!" vpp-emulator "$state/emulator.log"

export VPP_SERVER="127.0.0.1:$api_port" VPP_CA="$c/ca.pem" VPP_TOKEN="$token"
ctl() { "$bin/tools/vppctl" "$@"; }

say "Waiting for the fleet to connect"
for _ in $(seq 60); do
	check_all
	online=$( (ctl status --json 2>/dev/null || true) | /usr/bin/python3 -c \
		'import json,sys; print(json.load(sys.stdin).get("devices_online",0))' 2>/dev/null || true)
	[ "${online:-0}" -ge $((devices * 9 / 10)) ] && break
	sleep 1
done
ctl status

if [ "$script" = 1 ]; then
	step() {
		say "vppctl set $1 --for 5m --reason \"$2\""
		ctl set "$1" --for 5m --reason "$2"
		ctl watch --count "${3:-10}"
	}
	step 1500 "quickstart: discharge 1.5 MW"
	step -2000 "quickstart: absorb 2 MW"
	step 9000 "quickstart: more than the fleet can give (watch the shortfall)"
	step 0 "quickstart: back to idle" 5
	if [ "$nodes" -gt 1 ]; then
		step 1000 "quickstart: 1 MW while a node dies" 8
		ctl nodes || true
		say "kill -9 node-2: its devices reconnect through HAProxy to the other nodes, which take over its share"
		kill -KILL "${node_pids[1]}"
		wait "${node_pids[1]}" 2>/dev/null || true
		# About 20 ticks. A watch whose stream went to the dead node fails:
		# start another (HAProxy sends it to a live one).
		end=$((SECONDS + 20))
		while ! ctl watch --count $((end - SECONDS)) && ((SECONDS + 1 < end)); do
			sleep 0.5
		done
		ctl nodes || true
		ctl status
	fi
fi

if [ "$nodes" -gt 1 ]; then
	metrics="curl -s http://127.0.0.1:$admin_port/metrics | grep vpp_fleet   # node-1; node i: port $admin_port+i-1"
	logs="$state/vppd-node-*.log, $state/haproxy.log, $state/emulator.log"
	extra="  $bin/tools/vppctl nodes           # the cluster: leader, shares, heartbeats
  curl -s 'http://127.0.0.1:$stats_port/stats;csv'   # HAProxy's view of the nodes"
	[ "$script" = 1 ] && extra="$extra
node-2 stays down (the script killed it)."
else
	metrics="curl -s http://127.0.0.1:$admin_port/metrics | grep vpp_fleet"
	logs="$state/vppd.log, $state/emulator.log"
	extra=""
fi
cat <<EOF

The plant keeps running. In another terminal:
  export VPP_SERVER=$VPP_SERVER VPP_CA=$VPP_CA VPP_TOKEN=\$(cat $state/operator.token)
  $bin/tools/vppctl status          # fleet status with uncertainty
  $bin/tools/vppctl set 800 --for 10m
  $bin/tools/vppctl devices --state degraded
  $metrics
  psql "$db_url" -c 'select * from fleet_ticks order by tick_at desc limit 5'
${extra:+$extra
}Logs: $logs. Ctrl-C stops everything.

EOF
ctl watch || true
