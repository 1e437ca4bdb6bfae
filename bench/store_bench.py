#!/usr/bin/python3
"""Store benchmark (issue 4): telemetry from the store's queue to committed
rows in PostgreSQL, beside raw COPY of the same rows by psql.

  VPP_BUILD=build /usr/bin/python3 bench/store_bench.py [--rows N]

Starts a throw-away PostgreSQL 15 (default settings: fsync and
synchronous_commit on; Unix socket; temporary folder), applies the
migrations with `vppd migrate`, then measures, each on an empty telemetry
table:

1. raw:   psql -c "COPY telemetry (...) FROM STDIN (FORMAT binary)" < rows,
          rows made by `store_load dump` (the exact bytes the store sends);
2. store: store_load submits the same N rows as fast as it can into a queue
          large enough to hold them all, and the clock stops when the last
          one is committed: rows/s end to end, and the ratio to raw;
3. sustained: 100,000 rows/s offered for 10 s through the default queue:
          achieved rate, journal use (must be none) and worst lag (age of
          the oldest row of each committed batch);
4. cpu:   10,000 rows/s for 10 s: CPU time of the store_load process (the
          store thread plus the submitting thread) and of PostgreSQL.
Prints a Markdown table for bench/RESULTS.md.
"""
import argparse
import os
import resource
import subprocess
import sys
import tempfile
import shutil
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
from store_pg import PgCluster, parse_stats  # noqa: E402

COLS = ("device_id, seq, measured_at, received_at, power_kw, power_sigma_kw, soc, soc_sigma, "
        "quality, node_id")
NDEV = 1000


def pg_cpu_s(pg):
    """CPU seconds (user + sys) used so far by the cluster's processes."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pg.pids():
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            # utime, stime, cutime, cstime: fields 14..17 (1-based) of stat
            total += sum(int(x) for x in fields[11:15])
        except OSError:
            pass
    return total / tick


def run_load(build, pg, rows, **kw):
    j = tempfile.mkdtemp(prefix="vpp-bench-j-")
    argv = [os.path.join(build, "tests/integration/store_load"), "load", "--db", pg.conninfo,
            "--journal", j, "--rows", str(rows), "--devices", str(NDEV)]
    for k, v in kw.items():
        argv += ["--" + k.replace("_", "-"), str(v)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    pg_before = pg_cpu_s(pg)
    t0 = time.time()
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    finally:
        shutil.rmtree(j, ignore_errors=True)
    wall = time.time() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        sys.exit(f"store_load failed: {r.stderr}\n{r.stdout[-2000:]}")
    lines = r.stdout.splitlines()
    stats = parse_stats([ln for ln in lines if ln.startswith("drained")][-1])
    done = {k: float(v) for k, v in
            (p.split("=") for p in [ln for ln in lines if ln.startswith("done")][-1].split()[1:])}
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return stats, done, cpu, pg_cpu_s(pg) - pg_before, wall


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1000000)
    args = ap.parse_args()
    build = os.environ.get("VPP_BUILD")
    if not build:
        sys.exit("set VPP_BUILD to a meson build folder (release)")
    rows = args.rows
    base = int(time.time() * 1000) - (rows // NDEV) * 1000 - 60000

    with PgCluster(settings={"max_wal_size": "'4GB'"}) as pg:
        subprocess.run([os.path.join(build, "server/vppd"), "migrate", "--database-url",
                        pg.conninfo], check=True, capture_output=True, timeout=60)
        data = tempfile.NamedTemporaryFile(prefix="vpp-bench-", suffix=".copy", delete=False)
        try:
            subprocess.run([os.path.join(build, "tests/integration/store_load"), "dump",
                            "--rows", str(rows), "--devices", str(NDEV), "--base-ms",
                            str(base)], stdout=data, check=True, timeout=300)
            data.close()
            size = os.path.getsize(data.name)

            # Warm-up: both paths touch the same tables and indexes first.
            run_load(build, pg, 50000, base_ms=base, queue=200000)

            raw = []
            for _ in range(3):
                pg.psql("TRUNCATE telemetry")
                pg.psql("CHECKPOINT")
                with open(data.name, "rb") as f:
                    t0 = time.time()
                    subprocess.run(["psql", pg.conninfo, "-X", "-q", "-v", "ON_ERROR_STOP=1",
                                    "-c", f"COPY telemetry ({COLS}) FROM STDIN (FORMAT binary)"],
                                   stdin=f, check=True, timeout=600)
                    raw.append(rows / (time.time() - t0))
            raw_rps = max(raw)

            store = []
            for _ in range(3):
                pg.psql("TRUNCATE telemetry")
                pg.psql("CHECKPOINT")
                st, done, _, _, _ = run_load(build, pg, rows, base_ms=base, queue=2 * rows)
                assert st["committed"] == rows and st["journaled"] == 0, st
                store.append(done["rows_per_s"])
            store_rps = max(store)
        finally:
            os.unlink(data.name)

        # Sustained 100k rows/s through the default queue for 10 s.
        pg.psql("TRUNCATE telemetry")
        pg.psql("CHECKPOINT")
        n = min(rows, 1000000)
        base2 = int(time.time() * 1000) - (n // NDEV) * 1000 - 60000
        st, done, _, _, _ = run_load(build, pg, n, base_ms=base2, rate=100000)
        sustained = done["rows_per_s"]
        sus_lag, sus_journal = st["max_lag_ms"], st["journaled"]

        # CPU at 10k rows/s for 10 s.
        pg.psql("TRUNCATE telemetry")
        base3 = int(time.time() * 1000) - 100 * 1000 - 60000
        st, done, cpu, pgcpu, wall = run_load(build, pg, 100000, base_ms=base3, rate=10000)
        cpu_lag = st["max_lag_ms"]

    print(f"rows: {rows:,} ({size / rows:.0f} bytes each in COPY binary), {NDEV} devices")
    print()
    print("| measure | result |")
    print("| --- | --- |")
    print(f"| raw `COPY ... FROM STDIN (FORMAT binary)` by psql, one statement | "
          f"{raw_rps:,.0f} rows/s (best of 3: {', '.join(f'{x:,.0f}' for x in raw)}) |")
    print(f"| store, queue → committed (batches of 10,000) | {store_rps:,.0f} rows/s "
          f"(best of 3: {', '.join(f'{x:,.0f}' for x in store)}) |")
    print(f"| ratio store / raw COPY | {store_rps / raw_rps:.2f} |")
    print(f"| sustained, 100,000 rows/s offered for {n / 100000:.0f} s | {sustained:,.0f} rows/s "
          f"achieved, journal used: {sus_journal} rows, worst lag {sus_lag} ms |")
    print(f"| CPU at 10,000 rows/s ({wall:.1f} s) | store_load process {100 * cpu / wall:.1f}% "
          f"of one core (store thread + row generator), PostgreSQL {100 * pgcpu / wall:.1f}%; "
          f"worst lag {cpu_lag} ms |")


if __name__ == "__main__":
    main()
