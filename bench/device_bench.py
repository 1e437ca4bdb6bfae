#!/usr/bin/env python3
"""Device sessions at scale: the release vppd with N emulated batteries
(vpp-emulator) over mTLS on loopback. Measures the time for N devices to
connect, process RSS (and kernel socket memory) per session, setpoint
fan-out (first to last device receiving one tick's setpoints, from the
emulator's ground truth), setpoint -> ack latency (vppd's histogram),
telemetry messages/s, and the time for the whole fleet to reconnect after
vppd is killed and restarted. Prints a markdown table for bench/RESULTS.md.

    VPP_BUILD=build /usr/bin/python3 bench/device_bench.py [--devices N] [--hold S] [--emu-nice 19]

vppd runs without a database here: the store's throughput is measured by
bench/store_bench.py. Both programs share the machine's cores."""
import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "interop"))
import vpptest as vt  # noqa: E402

import grpc  # noqa: E402

TOKEN = "bench-token"


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def tcp_mem_kb():
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                parts = line.split()
                return int(parts[parts.index("mem") + 1]) * 4
    return 0


# Slab caches that grow with each TCP connection: the socket, its inode,
# the open file, its dentry and its epoll entry.
SOCKET_SLABS = ("TCP", "TCPv6", "sock_inode_cache", "filp", "dentry", "eventpoll_epi", "eventpoll_pwq")


def socket_slab_kb():
    """Kernel memory (KB) held by the slab caches in SOCKET_SLABS."""
    total = 0
    with open("/proc/slabinfo") as f:
        for line in f:
            parts = line.split()
            if parts and parts[0] in SOCKET_SLABS:
                total += int(parts[1]) * int(parts[3])  # active objects x object size
    return total / 1024


def hist_quantile(m, name, q):
    """Quantile |q| of Prometheus histogram |name| from parsed metrics,
    interpolated linearly inside its bucket (as Prometheus'
    histogram_quantile does)."""
    buckets = sorted(((float(lbl["le"]) if lbl["le"] != "+Inf" else float("inf")), v)
                     for n, lbl, v in m.samples if n == name + "_bucket")
    if not buckets or buckets[-1][1] == 0:
        return None
    rank = q * buckets[-1][1]
    lo_le, lo_c = 0.0, 0
    for le, c in buckets:
        if c >= rank:
            if le == float("inf"):
                return lo_le
            return lo_le + (le - lo_le) * ((rank - lo_c) / (c - lo_c) if c > lo_c else 1.0)
        lo_le, lo_c = le, c
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=10000)
    ap.add_argument("--hold", type=int, default=30, help="seconds with a target set")
    ap.add_argument("--emu-nice", type=int, default=0,
                    help="run vpp-emulator at this nice level (19: the devices only take the CPU "
                         "vppd leaves, as if they ran on other machines)")
    a = ap.parse_args()
    n = a.devices
    build = os.environ.get("VPP_BUILD", os.path.join(ROOT, "build"))
    os.environ["VPP_BUILD"] = build
    certs = "/tmp/vpp-bench-certs-%d" % n
    subprocess.run(["bash", os.path.join(ROOT, "deploy/local/certs.sh"), certs, "--devices", str(n), "--shared-key"],
                   check=True, stdout=subprocess.DEVNULL, timeout=3600)
    tokens = os.path.join(certs, "tokens")
    with open(tokens, "w") as f:
        f.write("bench operator sha256:%s\n" % hashlib.sha256(TOKEN.encode()).hexdigest())
    dport, aport, admin = vt.free_port(), vt.free_port(), vt.free_port()
    p = lambda x: os.path.join(certs, x)

    def start():
        argv = [os.path.join(build, "server/vppd"), "--api-port", str(aport), "--api-h2c",
                "--device-addr", "127.0.0.1", "--device-port", str(dport), "--tls-cert", p("server.pem"),
                "--tls-key", p("server.key"), "--device-ca", p("device-ca.pem"), "--admin-port", str(admin),
                "--tokens-file", tokens, "--io-threads", "2", "--log-level", "warn"]
        proc = vt.Proc("vppd", argv)
        vt.wait_port(dport, 30, proc.p)
        vt.wait_port(admin, 30, proc.p)
        return proc

    v = vt.vpp_stubs()
    g, gg = v.grid_pb2, v.grid_pb2_grpc
    op = gg.GridOperatorStub(grpc.insecure_channel("127.0.0.1:%d" % aport))
    md = [("authorization", "Bearer " + TOKEN)]

    def online():
        try:
            return op.GetFleetStatus(g.GetFleetStatusRequest(), metadata=md, timeout=5).devices_online
        except grpc.RpcError:
            return 0

    def wait_online(want, timeout):
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if online() >= want:
                return time.monotonic() - t0
            time.sleep(0.1)
        return None

    res = {}
    try:
        vppd = start()
        time.sleep(1)
        base_rss, base_tcp, base_slab = rss_kb(vppd.p.pid), tcp_mem_kb(), socket_slab_kb()
        report = os.path.join(vt.tempdir("vpp-bench-report-"), "report.json")
        nice = ["nice", "-n", str(a.emu_nice)] if a.emu_nice else []
        emu = vt.Proc("vpp-emulator", nice + [os.path.join(build, "tools/vpp-emulator"), "--server",
                                       "127.0.0.1:%d" % dport, "--certs", certs, "--devices", str(n),
                                       "--report", report, "--threads", "2", "--connect-rate", "0",
                                       "--progress-s", "0"])
        # The emulator loads every certificate before it connects.
        t_first = None
        t0 = time.monotonic()
        while time.monotonic() - t0 < 600 and online() < n:
            if t_first is None and online() > 0:
                t_first = time.monotonic()
            time.sleep(0.1)
        res["connect_s"] = time.monotonic() - (t_first or t0)
        res["online"] = online()
        time.sleep(3)
        rss, tcp, slab = rss_kb(vppd.p.pid), tcp_mem_kb(), socket_slab_kb()
        res["rss_per_session_kb"] = (rss - base_rss) / max(res["online"], 1)
        res["emu_rss_per_device_kb"] = rss_kb(emu.p.pid) / n
        # Both ends of every connection are on this machine: one end is half.
        res["tcp_mem_per_session_kb"] = (tcp - base_tcp) / max(res["online"], 1) / 2
        res["slab_per_session_kb"] = (slab - base_slab) / max(res["online"], 1) / 2
        res["total_per_session_kb"] = (res["rss_per_session_kb"] + res["tcp_mem_per_session_kb"] +
                                       res["slab_per_session_kb"])
        m0 = vt.read_metrics(admin)
        t_m0 = time.monotonic()
        op.SetFleetSetpoint(g.SetFleetSetpointRequest(target_kw=1.5 * n, valid_for_s=600, request_id="bench-1"),
                            metadata=md, timeout=10)
        time.sleep(a.hold / 2)
        op.SetFleetSetpoint(g.SetFleetSetpointRequest(target_kw=-1.5 * n, valid_for_s=600, request_id="bench-2"),
                            metadata=md, timeout=10)
        time.sleep(a.hold / 2)
        m1 = vt.read_metrics(admin)
        dt = time.monotonic() - t_m0
        res["telemetry_per_s"] = (m1.get("vpp_device_telemetry_total") - m0.get("vpp_device_telemetry_total")) / dt
        res["ack_p50_ms"] = (hist_quantile(m1, "vpp_device_setpoint_ack_seconds", 0.5) or 0) * 1000
        res["ack_p99_ms"] = (hist_quantile(m1, "vpp_device_setpoint_ack_seconds", 0.99) or 0) * 1000
        res["tick_p99_ms"] = (hist_quantile(m1, "vpp_dispatch_tick_seconds", 0.99) or 0) * 1000
        # Server side: tick start to the last setpoint of the tick written
        # to its socket, one observation per I/O loop and tick.
        res["sfan_p50_ms"] = (hist_quantile(m1, "vpp_device_fanout_seconds", 0.5) or 0) * 1000
        res["sfan_p99_ms"] = (hist_quantile(m1, "vpp_device_fanout_seconds", 0.99) or 0) * 1000
        cnt = m1.get("vpp_device_fanout_seconds_count") or 0
        res["sfan_mean_ms"] = (m1.get("vpp_device_fanout_seconds_sum") or 0) / cnt * 1000 if cnt else None
        # Operator reads while the fleet is connected: GetFleetStatus, h2load
        # 8 connections x 32 streams over h2c (the sessions keep running).
        req = os.path.join(vt.tempdir("vpp-bench-req-"), "empty.bin")
        with open(req, "wb") as f:
            f.write(b"\0\0\0\0\0")
        for shape, args in (("8x32", ["-c", "8", "-m", "32", "-n", "100000"]), ("1x1", ["-c", "1", "-m", "1", "-n", "5000"])):
            logf = os.path.join(os.path.dirname(req), "h2load-%s.log" % shape)
            out = subprocess.run(["h2load"] + args + ["-t", "1", "--log-file", logf, "-d", req,
                                  "-H", "content-type: application/grpc",
                                  "-H", "te: trailers", "-H", "authorization: Bearer " + TOKEN,
                                  "http://127.0.0.1:%d/vpp.v1.GridOperator/GetFleetStatus" % aport],
                                 capture_output=True, text=True, timeout=300).stdout
            for line in out.splitlines():
                if line.startswith("finished in"):
                    res["status_qps_" + shape] = float(line.split(",")[1].split()[0])
                if line.startswith("status codes:"):
                    res["status_codes_" + shape] = line.split(":", 1)[1].strip()
                if line.strip().startswith("time for request:"):
                    res["status_req_time_" + shape] = " ".join(line.split()[3:7])
            # h2load's log: start time, status, request time in microseconds.
            with open(logf) as f:
                lat = sorted(int(l.split()[2]) for l in f if len(l.split()) >= 3)
            if lat:
                res["status_p50_us_" + shape] = lat[len(lat) // 2]
                res["status_p99_us_" + shape] = lat[int(len(lat) * 0.99)]
        # Reconnect storm.
        vppd.signal(signal.SIGKILL)
        vppd.wait(10)
        vppd.stop()
        time.sleep(1)
        vppd = start()
        res["reconnect_s"] = wait_online(int(n * 0.999), 120)
        emu.signal(signal.SIGTERM)
        emu.wait(120)
        with open(report) as f:
            rep = json.load(f)
        full = sorted(x["fanout_ms"] for x in rep["fanout"] if x["count"] >= 0.9 * n)
        res["fanout_groups"] = len(full)
        res["fanout_p50_ms"] = full[len(full) // 2] if full else None
        res["fanout_max_ms"] = full[-1] if full else None
        res["emu_ack_p99_ms"] = rep["ack_latency_ms"]["p99"]
        vppd.stop()
    finally:
        vt.cleanup_all()
    print(json.dumps(res, indent=1))
    f = lambda v, fmt="%.1f": "n/a" if v is None else fmt % v
    print("""
| what | %d devices, emulator nice %d | target |
| --- | ---: | ---: |
| connect, first to last online | %s s | |
| vppd RSS per session | %s KB | |
| kernel socket slabs per session (one end) | %s KB | |
| kernel TCP buffer memory per session (one end) | %s KB | |
| memory per session, RSS + kernel | %s KB | <= 48 KB |
| vpp-emulator RSS per device | %s KB | |
| setpoint fan-out in vppd, tick start to last write (histogram p50 / p99, interpolated; mean) | %s / %s ms; %s ms | <= 50 ms at 10,000 |
| setpoint fan-out seen by the devices, first to last (p50 / max of full ticks, %s ticks) | %s / %s ms | |
| setpoint written -> ack read, vppd histogram p50 / p99 (interpolated) | %s / %s ms | p99 <= 100 ms |
| dispatch tick p99 (interpolated) | %s ms | |
| telemetry messages/s | %s | |
| reconnect after vppd SIGKILL + restart | %s s | <= 2 s |
| GetFleetStatus over h2c, 8x32: QPS, p50 / p99 | %s, %s / %s us | |
| GetFleetStatus over h2c, 1x1: QPS, p50 / p99 | %s, %s / %s us | |
""" % (n, a.emu_nice, f(res["connect_s"]), f(res["rss_per_session_kb"]), f(res["slab_per_session_kb"]),
       f(res["tcp_mem_per_session_kb"]), f(res["total_per_session_kb"]), f(res["emu_rss_per_device_kb"]),
       f(res["sfan_p50_ms"]), f(res["sfan_p99_ms"]), f(res["sfan_mean_ms"]), res["fanout_groups"], f(res["fanout_p50_ms"]), f(res["fanout_max_ms"]), f(res["ack_p50_ms"]),
       f(res["ack_p99_ms"]), f(res["tick_p99_ms"]), f(res["telemetry_per_s"], "%.0f"), f(res["reconnect_s"]),
       f(res.get("status_qps_8x32"), "%.0f"), res.get("status_p50_us_8x32"), res.get("status_p99_us_8x32"),
       f(res.get("status_qps_1x1"), "%.0f"), res.get("status_p50_us_1x1"), res.get("status_p99_us_1x1")))


if __name__ == "__main__":
    main()
