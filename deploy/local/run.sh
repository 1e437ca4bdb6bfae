#!/usr/bin/env bash
# Quickstart: the whole plant on this machine. Builds vpp, creates a local
# PostgreSQL cluster (or uses $VPP_DATABASE_URL) and dev certificates under
# one state folder, starts vppd and a 1,000-battery vpp-emulator with a few
# faulty batteries, sends a short scripted sequence of fleet setpoints with
# vppctl while showing the fleet tracking them, then keeps running until
# Ctrl-C, which stops everything cleanly.
#
#   deploy/local/run.sh [--devices N] [--state DIR] [--no-script]
#
# Environment: VPP_STATE (state folder, default ./.state), VPP_DATABASE_URL
# (use this PostgreSQL instead of a local cluster), VPP_API_PORT (7444),
# VPP_DEVICE_PORT (7443), VPP_ADMIN_PORT (9464).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"

devices=1000
script=1
state="${VPP_STATE:-$root/.state}"
while (($#)); do
	case "$1" in
	--devices) devices="$2"; shift 2 ;;
	--state) state="$2"; shift 2 ;;
	--no-script) script=0; shift ;;
	-h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
	esac
done
api_port="${VPP_API_PORT:-7444}"
device_port="${VPP_DEVICE_PORT:-7443}"
admin_port="${VPP_ADMIN_PORT:-9464}"

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

say "Starting vppd (API :$api_port, devices :$device_port, metrics :$admin_port)"
c="$state/certs"
"$bin/server/vppd" --node-id quickstart \
	--api-addr 127.0.0.1 --api-port "$api_port" --tls-cert "$c/server.pem" --tls-key "$c/server.key" \
	--operator-ca "$c/operator-ca.pem" --tokens-file "$state/tokens" \
	--device-addr 127.0.0.1 --device-port "$device_port" --device-ca "$c/device-ca.pem" \
	--admin-port "$admin_port" --database-url "$db_url" --journal-dir "$state/journal" \
	2>"$state/vppd.log" &
pids+=($!)
# /readyz answers once the API and device ports are open and the control
# loop ticks (/healthz answers before: a port in use would go unnoticed).
ready=""
for _ in $(seq 150); do
	curl -sf "http://127.0.0.1:$admin_port/readyz" >/dev/null 2>&1 && { ready=1; break; }
	check_alive "${pids[0]}" vppd "$state/vppd.log"
	sleep 0.2
done
if [ -z "$ready" ]; then
	echo "run.sh: vppd is not ready after 30 s; the end of $state/vppd.log:" >&2
	tail -20 "$state/vppd.log" >&2
	exit 1
fi

say "Starting vpp-emulator: $devices batteries, a few of them faulty"
"$bin/tools/vpp-emulator" --server "127.0.0.1:$device_port" --devices "$devices" --certs "$c" \
	--offline 0.02 --flaky 0.02 --ignore 0.03 --partial 0.03 --late-ack 0.02 --malformed 0.005 \
	--report "$state/emulator-report.json" 2>"$state/emulator.log" &
pids+=($!)

export VPP_SERVER="127.0.0.1:$api_port" VPP_CA="$c/ca.pem" VPP_TOKEN="$token"
ctl() { "$bin/tools/vppctl" "$@"; }

say "Waiting for the fleet to connect"
for _ in $(seq 60); do
	check_alive "${pids[0]}" vppd "$state/vppd.log"
	check_alive "${pids[1]}" vpp-emulator "$state/emulator.log"
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
fi

cat <<EOF

The plant keeps running. In another terminal:
  export VPP_SERVER=$VPP_SERVER VPP_CA=$VPP_CA VPP_TOKEN=\$(cat $state/operator.token)
  $bin/tools/vppctl status          # fleet status with uncertainty
  $bin/tools/vppctl set 800 --for 10m
  $bin/tools/vppctl devices --state degraded
  curl -s http://127.0.0.1:$admin_port/metrics | grep vpp_fleet
  psql "$db_url" -c 'select * from fleet_ticks order by tick_at desc limit 5'
Logs: $state/vppd.log, $state/emulator.log. Ctrl-C stops everything.

EOF
ctl watch || true
