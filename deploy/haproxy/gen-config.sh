#!/usr/bin/env bash
# Writes an HAProxy 2.6 configuration for vppd nodes: TCP mode with TLS
# passthrough (mTLS ends at vppd), a devices frontend and an operators
# frontend, each node health-checked on its admin /readyz. One source for
# every copy: deploy/haproxy/haproxy.cfg (production) is its output (see
# --help), and the tests and deploy/local/run.sh --nodes N generate theirs.
set -euo pipefail

usage() {
	cat <<'EOF'
usage: deploy/haproxy/gen-config.sh --node NAME=HOST:DEVICE:API:ADMIN [--node ...]
                                    [--local] [options] [-o FILE]

  --node NAME=HOST:DEVICE:API:ADMIN
                        a vppd node (repeat, in order): its --node-id, its
                        address, and its --device-port, --api-port and
                        --admin-port
  --local               for haproxy -db in the foreground (tests, the
                        quickstart): logs to stdout; no chroot, user or
                        stats socket (unless --stats-socket)
  --device-bind ADDR:PORT   devices' frontend (default :7443)
  --api-bind ADDR:PORT      operators' frontend (default :7444)
  --stats-bind ADDR:PORT    stats page /stats and Prometheus /metrics
                            (default 127.0.0.1:8404)
  --stats-socket PATH   the admin socket (default /run/haproxy/admin.sock;
                        none with --local)
  --maxconn N           connections HAProxy holds, both sides counted once
                        (default 250000; each takes two descriptors)
  --check-inter-ms MS   health-check period (default 2000)
  --fall N              failed checks before a node is marked down (default 3)
  --rise N              passed checks before it is up again (default 2)
  -o FILE               write to FILE (default: standard output)

deploy/haproxy/haproxy.cfg is:
  gen-config.sh --node node-1=10.0.0.11:7443:7444:9464 \
    --node node-2=10.0.0.12:7443:7444:9464 --node node-3=10.0.0.13:7443:7444:9464
Check a result with: haproxy -c -f FILE
EOF
}

nodes=()
local_mode=0
device_bind=":7443"
api_bind=":7444"
stats_bind="127.0.0.1:8404"
stats_socket=""
maxconn=250000
inter=2000
fall=3
rise=2
out=""
need() { [ -n "${2:-}" ] || { echo "gen-config.sh: $1 needs a value" >&2; exit 2; }; }
while (($#)); do
	case "$1" in
	-h | --help) usage; exit 0 ;;
	--node) need "$1" "${2:-}"; nodes+=("$2"); shift 2 ;;
	--local) local_mode=1; shift ;;
	--device-bind) need "$1" "${2:-}"; device_bind="$2"; shift 2 ;;
	--api-bind) need "$1" "${2:-}"; api_bind="$2"; shift 2 ;;
	--stats-bind) need "$1" "${2:-}"; stats_bind="$2"; shift 2 ;;
	--stats-socket) need "$1" "${2:-}"; stats_socket="$2"; shift 2 ;;
	--maxconn) need "$1" "${2:-}"; maxconn="$2"; shift 2 ;;
	--check-inter-ms) need "$1" "${2:-}"; inter="$2"; shift 2 ;;
	--fall) need "$1" "${2:-}"; fall="$2"; shift 2 ;;
	--rise) need "$1" "${2:-}"; rise="$2"; shift 2 ;;
	-o) need "$1" "${2:-}"; out="$2"; shift 2 ;;
	*) echo "gen-config.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
	esac
done
((${#nodes[@]})) || { echo "gen-config.sh: at least one --node is needed (see --help)" >&2; exit 2; }
for v in maxconn inter fall rise; do
	[[ "${!v}" =~ ^[1-9][0-9]*$ ]] || { echo "gen-config.sh: --$v must be a positive number" >&2; exit 2; }
done
((local_mode)) || [ -n "$stats_socket" ] || stats_socket=/run/haproxy/admin.sock

# NAME=HOST:DEVICE:API:ADMIN; the ports are the last three fields, so HOST
# is whatever comes before them.
names=() hosts=() devs=() apis=() admins=()
for n in "${nodes[@]}"; do
	if ! [[ "$n" =~ ^([A-Za-z0-9._-]+)=(.+):([0-9]+):([0-9]+):([0-9]+)$ ]]; then
		echo "gen-config.sh: --node $n: expected NAME=HOST:DEVICE:API:ADMIN" >&2
		exit 2
	fi
	names+=("${BASH_REMATCH[1]}") hosts+=("${BASH_REMATCH[2]}")
	devs+=("${BASH_REMATCH[3]}") apis+=("${BASH_REMATCH[4]}") admins+=("${BASH_REMATCH[5]}")
done

servers() { # which: dev or api
	local i port
	for i in "${!names[@]}"; do
		if [ "$1" = dev ]; then port=${devs[i]}; else port=${apis[i]}; fi
		printf '    server %s %s:%s check port %s\n' "${names[i]}" "${hosts[i]}" "$port" "${admins[i]}"
	done
}

emit() {
	cat <<EOF
# HAProxy 2.6 in front of vppd nodes (DESIGN.md §8): devices and operators
# reach any node through it; it passes their TLS through untouched, so mTLS
# ends at vppd, which reads each device's identity from its certificate.
# Written by deploy/haproxy/gen-config.sh (its --help shows how); check with
# haproxy -c -f FILE.
#
# HAProxy must reach each node's device, API and admin ports: vppd's
# --api-addr and --admin-addr default to 127.0.0.1. Keep the admin port on a
# private network (/metrics has no authentication). vppd sees every
# connection as coming from HAProxy (it does not read the PROXY protocol, so
# no send-proxy): its logs name HAProxy's address, and its admission control,
# which shares handshake turns by source address, admits a reconnect storm
# in arrival order.
#
# Scale: from one source address HAProxy opens at most as many connections
# to one node address and port as there are ephemeral ports (about 28,000 by
# default, net.ipv4.ip_local_port_range): widen the range, or beyond that
# many devices per node give the server lines several source addresses.

global
EOF
	if ((local_mode)); then
		cat <<'EOF'
    # Run in the foreground (haproxy -db) by a test or the quickstart: the
    # log goes to the caller's stdout.
    log stdout format raw local0 info
EOF
	else
		cat <<'EOF'
    # Debian's unit runs haproxy -Ws (master-worker, systemd notify): no
    # "daemon" here.
    log /dev/log local0 info
    chroot /var/lib/haproxy
    user haproxy
    group haproxy
EOF
	fi
	if [ -n "$stats_socket" ]; then
		cat <<EOF
    # Maintenance without restarts, e.g. before stopping a node:
    #   echo "set server vppd_devices/node-2 state drain" | socat stdio $stats_socket
    # (drain: no new connections, the existing ones stay).
    stats socket $stats_socket mode 660 level admin
    stats timeout 30s
EOF
	fi
	cat <<EOF
    # Every device holds one connection to HAProxy and HAProxy one to a
    # node: each counts once here, and takes two file descriptors (HAProxy
    # raises its limit to fit when started as root; 2.6 refuses to start
    # when it cannot).
    maxconn $maxconn
    # A reload starts new processes; old ones keep the device streams they
    # carry (they last hours) until these end. Past this, the old process
    # closes them and the devices reconnect to the new one: a reload must
    # not leave old configurations running for a day.
    hard-stop-after 10m

defaults
    mode tcp
    log global
    # A node that does not take a connection in 3 s is down or swamped: try
    # another (retries + redispatch below) rather than keep a device waiting.
    timeout connect 3s
    # Device streams live for hours; vppd pings each device every 15 s and
    # sends an HTTP/2 PING after 30 s of silence, so a healthy stream is
    # never idle this long. These only reap connections whose both ends
    # vanished without a word.
    timeout client 1h
    timeout server 1h
    timeout tunnel 1h
    # A half-closed connection (one side sent FIN) is not kept for an hour.
    timeout client-fin 30s
    timeout server-fin 30s
    # /readyz answers at once: one not there in 2 s is a failed check.
    timeout check 2s
    # A connection refused by a node that just died (before its health
    # checks fail) is retried, each time on another node: devices
    # reconnecting after a crash are not sent back to the dead node.
    retries 3
    option redispatch 1
    # A node whose /readyz fails (dead, hung or not ready) gets no new
    # connections, and the ones it holds are closed so that devices reconnect
    # through HAProxy to the others at once, instead of waiting for a silent
    # stream to time out. Not "observe layer4 ... on-error mark-down": a
    # burst of refused connections during a reconnect storm (vppd's
    # admission control) would mark a live node down and cut all of its
    # sessions.
    default-server inter ${inter}ms fall ${fall} rise ${rise} on-marked-down shutdown-sessions

# Batteries: one long-lived mTLS gRPC stream each (vpp.v1.DeviceLink).
frontend devices
    bind ${device_bind}
    # One line per connection when it ends: node, duration, bytes, and how
    # it ended (the termination state says which side closed first).
    option tcplog
    # Port probes that send nothing are not worth a line.
    option dontlognull
    default_backend vppd_devices

# Operators: vppctl and grid operators' gRPC clients (TLS, bearer tokens).
frontend operators
    bind ${api_bind}
    option tcplog
    option dontlognull
    # Few operators: a flood of them must not take the connections (and
    # file descriptors) the devices need.
    maxconn 1000
    default_backend vppd_operators

backend vppd_devices
    # Device streams last hours: balance the number of open streams, not the
    # rate of new ones. A node that comes back gets the next connections
    # until it has caught up (no stream is moved).
    balance leastconn
    # The check goes to each node's admin port (check port), whose /readyz
    # answers 200 while the node serves devices and its control loop ticks,
    # 503 when it is starting or not ready, and 404 when it drains.
    option httpchk GET /readyz
    http-check expect status 200
    # 404 (draining): no new connections, but the node keeps the ones it has
    # (not marked down, so they are not cut): vppd ends them itself, a few
    # at a time, each device told to back off and reconnect elsewhere.
    http-check disable-on-404
$(servers dev)

backend vppd_operators
    # Operator calls are mostly short: take the nodes in turn.
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    http-check disable-on-404
$(servers api)

# Stats page and Prometheus metrics of HAProxy itself (server states,
# sessions per node, check failures), on loopback only: curl
# http://${stats_bind}/stats or scrape http://${stats_bind}/metrics.
frontend stats
    mode http
    bind ${stats_bind}
    # Scrapes are not worth a log line each.
    no log
    timeout client 10s
    timeout http-request 5s
    http-request use-service prometheus-exporter if { path /metrics }
    stats enable
    stats uri /stats
    stats refresh 10s
EOF
}

if [ -n "$out" ]; then
	# Written whole, then renamed: a reload never reads half a file.
	tmp="$out.tmp.$$"
	emit >"$tmp"
	mv -f "$tmp" "$out"
else
	emit
fi
