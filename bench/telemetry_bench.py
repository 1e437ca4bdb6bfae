#!/usr/bin/python3
"""Telemetry sustained, device to committed row: N emulated batteries over
mTLS report telemetry to the release vppd, which persists it to a real
PostgreSQL 15 (throw-away cluster in a temporary folder, default
durability). For each telemetry interval the devices are told (vppd's
--device-telemetry-interval-ms), it measures over a window:

- offered: what the devices were told to send, N / interval;
- received: telemetry messages vppd accepted per second;
- committed: rows committed to PostgreSQL per second (the store's counter,
  checked against count(*) at the end of the window);
- lag: worst `vpp_store_lag_seconds` sampled every 0.25 s (age of the oldest
  row of the last committed batch);
- journaled rows and sessions paused because the store's queue was full;
- CPU seconds per second of vppd, vpp-emulator and PostgreSQL.

    VPP_BUILD=build /usr/bin/python3 bench/telemetry_bench.py [--devices N]
        [--intervals-ms 1000,200,100] [--window S] [--emu-nice 19]

Prints a Markdown table for bench/RESULTS.md. All three programs share the
machine's cores."""
import argparse
import hashlib
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "interop"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import vpptest as vt  # noqa: E402
from store_pg import PgCluster  # noqa: E402

TOKEN = "bench-token"


def cpu_s(pids):
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / tick


def metric_sum(m, name, **labels):
    """Sum of the samples of |name| whose labels include |labels|."""
    return sum(v for n, lbl, v in m.samples
               if n == name and all(lbl.get(k) == x for k, x in labels.items()))


def run_level(build, pg, certs, n, interval_ms, window, emu_nice):
    dport, admin = vt.free_port(), vt.free_port()
    p = lambda x: os.path.join(certs, x)
    journal = vt.tempdir("vpp-bench-journal-")
    vppd = vt.Proc("vppd", [
        os.path.join(build, "server/vppd"), "--api-port", "0", "--device-addr", "127.0.0.1",
        "--device-port", str(dport), "--tls-cert", p("server.pem"), "--tls-key", p("server.key"),
        "--device-ca", p("device-ca.pem"), "--admin-port", str(admin), "--tokens-file",
        p("tokens"), "--io-threads", "2", "--log-level", "warn", "--database-url", pg.conninfo,
        "--journal-dir", journal, "--device-telemetry-interval-ms", str(interval_ms)])
    emu = None
    try:
        vt.wait_port(dport, 30, vppd.p)
        vt.wait_port(admin, 30, vppd.p)
        nice = ["nice", "-n", str(emu_nice)] if emu_nice else []
        emu = vt.Proc("vpp-emulator", nice + [
            os.path.join(build, "tools/vpp-emulator"), "--server", "127.0.0.1:%d" % dport,
            "--certs", certs, "--devices", str(n), "--threads", "2", "--connect-rate", "0",
            "--progress-s", "0"])
        t0 = time.monotonic()
        while time.monotonic() - t0 < 300:
            m = vt.read_metrics(admin)
            if metric_sum(m, "vpp_fleet_devices", state="online") >= n * 0.999:
                break
            time.sleep(0.25)
        time.sleep(5)  # every device has had its Welcome and a few intervals
        pids = pg.pids()
        m0, c0 = vt.read_metrics(admin), (cpu_s([vppd.p.pid]), cpu_s([emu.p.pid]), cpu_s(pids))
        rows0 = int(pg.psql("SELECT count(*) FROM telemetry"))
        t_start = time.monotonic()
        worst_lag, worst_queue = 0.0, 0
        while time.monotonic() - t_start < window:
            m = vt.read_metrics(admin)
            worst_lag = max(worst_lag, m.get("vpp_store_lag_seconds") or 0)
            worst_queue = max(worst_queue, m.get("vpp_store_queue_depth") or 0)
            time.sleep(0.25)
        m1 = vt.read_metrics(admin)
        dt = time.monotonic() - t_start
        c1 = (cpu_s([vppd.p.pid]), cpu_s([emu.p.pid]), cpu_s(pids))
        d = lambda name, **kw: metric_sum(m1, name, **kw) - metric_sum(m0, name, **kw)
        res = {
            "interval_ms": interval_ms,
            "offered": n * 1000.0 / interval_ms,
            "received": d("vpp_device_telemetry_total") / dt,
            "committed": d("vpp_store_rows_written_total") / dt,
            "worst_lag_s": worst_lag,
            "worst_queue": worst_queue,
            "journaled": d("vpp_store_rows_journaled_total"),
            "paused": d("vpp_device_store_backpressure_total"),
            "cpu_vppd": (c1[0] - c0[0]) / dt,
            "cpu_emu": (c1[1] - c0[1]) / dt,
            "cpu_pg": (c1[2] - c0[2]) / dt,
        }
        # What the store says it wrote is in the table (rows of the window
        # and of the batches in flight at its ends).
        time.sleep(1)
        res["rows_in_table"] = int(pg.psql("SELECT count(*) FROM telemetry")) - rows0
        return res
    finally:
        if emu:
            emu.stop()
        vppd.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=10000)
    ap.add_argument("--intervals-ms", default="1000,200,100",
                    help="telemetry intervals to measure, comma-separated (>= 100)")
    ap.add_argument("--window", type=float, default=20, help="seconds measured per interval")
    ap.add_argument("--emu-nice", type=int, default=0, help="run vpp-emulator at this nice level")
    a = ap.parse_args()
    n = a.devices
    build = os.environ.get("VPP_BUILD", os.path.join(ROOT, "build"))
    os.environ["VPP_BUILD"] = build
    certs = "/tmp/vpp-bench-certs-%d" % n
    subprocess.run(["bash", os.path.join(ROOT, "deploy/local/certs.sh"), certs, "--devices", str(n),
                    "--shared-key"], check=True, stdout=subprocess.DEVNULL, timeout=3600)
    with open(os.path.join(certs, "tokens"), "w") as f:
        f.write("bench operator sha256:%s\n" % hashlib.sha256(TOKEN.encode()).hexdigest())
    out = []
    try:
        with PgCluster(settings={"max_wal_size": "'4GB'"}) as pg:
            subprocess.run([os.path.join(build, "server/vppd"), "migrate", "--database-url",
                            pg.conninfo], check=True, capture_output=True, timeout=60)
            for iv in (int(x) for x in a.intervals_ms.split(",")):
                r = run_level(build, pg, certs, n, iv, a.window, a.emu_nice)
                print(r, flush=True)
                out.append(r)
    finally:
        vt.cleanup_all()
    print("""
| telemetry interval | offered msgs/s | received msgs/s | committed rows/s | rows in table / window | worst lag | worst queue | journaled | sessions paused | CPU vppd / emulator / PostgreSQL (cores) |
| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |""")
    for r in out:
        print("| %d ms | %.0f | %.0f | %.0f | %d | %.2f s | %d | %d | %d | %.2f / %.2f / %.2f |" % (
            r["interval_ms"], r["offered"], r["received"], r["committed"], r["rows_in_table"],
            r["worst_lag_s"], r["worst_queue"], r["journaled"], r["paused"], r["cpu_vppd"],
            r["cpu_emu"], r["cpu_pg"]))
    print("\n%d devices, emulator nice %d, window %.0f s per interval." % (n, a.emu_nice, a.window))


if __name__ == "__main__":
    main()
