#!/usr/bin/python3
"""Integration tests of the store (issue 4) against a real PostgreSQL 15
started here (temporary folder, Unix socket, stopped and removed at the end):

- migrations from empty, re-applied (no-op), newer schema refused;
- VPP_STORE_ROWS (default 1,000,000) rows written and read back exactly;
- PostgreSQL SIGKILLed in the middle of a sustained write and restarted:
  every accepted row present exactly once (count and checksum);
- the writer SIGKILLed while the database is down, with a torn record at the
  journal's end, then restarted: same result;
- vppd started on a journal filled while the database was down writes it
  all, once, and empties it;
- bad rows rejected before the database and counted by reason;
- a database error on a batch isolated to the offending rows, while a
  database that refuses writes for its state (read-only) loses nothing;
- the other writes and the reads of the operator API;
- a record damaged on disk while the store runs costs the rest of its
  journal segment only, never the later segments;
- a late replay of a device registration never rolls the registry back;
- a failing partition maintenance call neither stops nor loops the writes;
- a sigma the device did not give is stored as NULL (journal replay, direct
  COPY, staging table, split batch), a given one as itself; a database at
  schema version 1 is upgraded so that every telemetry partition, old and
  new, accepts it.

Env: VPP_BUILD (meson build dir, required); VPP_BUILD_RELEASE (optional:
a release build used for the heavy cases); VPP_STORE_ROWS; VPP_STORE_TESTS
(optional: comma-separated names of the tests to run; test_migrations, which
sets the schema up, always runs).
Prints "N passed, N failed" last; exit status 0 only if all passed.
"""
import glob
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import shutil
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from store_pg import (PgCluster, db_checksum, expected_checksum, parse_stats,  # noqa: E402
                      poisoned)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "interop"))
import vpptest as vt  # noqa: E402

BUILD = os.environ.get("VPP_BUILD")
HEAVY = os.environ.get("VPP_BUILD_RELEASE") or BUILD
ROWS = int(os.environ.get("VPP_STORE_ROWS", "1000000"))
NDEV = 1000

passed = failed = 0


def tool(build, name):
    return os.path.join(build, {"vppd": "server/vppd",
                                "store_load": "tests/integration/store_load"}[name])


def case(fn):
    global passed, failed
    t0 = time.time()
    try:
        fn()
        passed += 1
        print(f"ok   {fn.__name__} ({time.time() - t0:.1f}s)", flush=True)
    except Exception:
        failed += 1
        print(f"FAIL {fn.__name__} ({time.time() - t0:.1f}s)", flush=True)
        traceback.print_exc()


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def base_for(rows):
    """measured_at of row 0: the newest row is a minute old."""
    return int(time.time() * 1000) - (rows // NDEV) * 1000 - 60000


def load(pg, journal, rows, build=None, timeout=240, **kw):
    """Runs store_load to completion; returns (last stats dict, output)."""
    argv = [tool(build or HEAVY, "store_load"), "load", "--db", pg.conninfo,
            "--journal", journal, "--rows", str(rows), "--devices", str(NDEV)]
    for k, v in kw.items():
        argv += ["--" + k.replace("_", "-"), str(v)]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    lines = r.stdout.splitlines()
    check(r.returncode == 0, f"store_load exit {r.returncode}: {r.stderr[-2000:]}"
          f"{lines[-3:]}")
    drained = [ln for ln in lines if ln.startswith("drained")]
    check(drained, f"no drained line: {lines[-3:]}")
    return parse_stats(drained[-1]), r.stdout


def reset(pg):
    pg.psql("TRUNCATE telemetry, fleet_ticks, device_events, audit_log, setpoints, "
            "cluster_nodes; TRUNCATE device_state, devices CASCADE")


def expect_exact(pg, first, last, base, poison=0):
    want = expected_checksum(first, last, NDEV, base, poison=poison)
    got = db_checksum(pg)
    check(got == want, f"database holds {got}, expected {want}")


# ---- the journal's format (include/vpp/journal.h, server/store/row.c and
# stmt.c), written here so a test can lay out segments exactly ----

def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C = _crc32c_table()


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = _CRC32C[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


JREC_TELEMETRY, JREC_STMT = 1, 2
ST_DEVICE_UPSERT = 0


def jrecord(rtype, payload):
    head = struct.pack("<IHHI", 0x4A505056, rtype, 0, len(payload))
    return head + struct.pack("<I", crc32c(payload, crc32c(head))) + payload


def jrow(device_id, seq, measured_ms, power=1.0, power_sigma=0.1, soc=0.5, soc_sigma=0.01,
         quality=0):
    """A telemetry record; a sigma of NaN is one the device did not give."""
    d = device_id.encode()
    return jrecord(JREC_TELEMETRY, struct.pack("<B", len(d)) + d +
                   struct.pack("<qqqddddI", seq, measured_ms, measured_ms, power, power_sigma,
                               soc, soc_sigma, quality))


def jstmt(stmt_id, params):
    b = struct.pack("<HH", stmt_id, len(params))
    for p in params:
        v = p.encode()
        b += struct.pack("<i", len(v)) + v + b"\0"
    return jrecord(JREC_STMT, b)


def write_segment(journal, no, records):
    with open(os.path.join(journal, f"seg-{no:016d}.vj"), "wb") as f:
        f.write(b"".join(records))


def replay(pg, journal, wait_s=60, build=None):
    """Runs a store on |journal| (no new rows) until it is replayed."""
    r = subprocess.run([tool(build or BUILD, "store_load"), "load", "--db", pg.conninfo,
                        "--journal", journal, "--rows", "0", "--devices", "1",
                        "--wait-s", str(wait_s)],
                       capture_output=True, text=True, timeout=wait_s + 60)
    check(r.returncode == 0, f"store_load replay failed: {r.stderr[-2000:]} {r.stdout[-500:]}")
    return r


MIGRATIONS = sorted(glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                           "..", "..", "sql", "migrations", "*.sql")))


def sigma_not_null(pg, psql=None):
    """{relation: (power_sigma_kw NOT NULL, soc_sigma NOT NULL, power_kw NOT NULL)}
    for telemetry and each of its partitions."""
    out = (psql or pg.psql)(
        "SELECT c.relname, bool_or(a.attnotnull AND a.attname = 'power_sigma_kw'), "
        "bool_or(a.attnotnull AND a.attname = 'soc_sigma'), "
        "bool_or(a.attnotnull AND a.attname = 'power_kw') "
        "FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid "
        "WHERE c.oid = 'telemetry'::regclass OR c.oid IN "
        "(SELECT inhrelid FROM pg_inherits WHERE inhparent = 'telemetry'::regclass) "
        "GROUP BY c.relname ORDER BY c.relname")
    return {f[0]: tuple(x == "t" for x in f[1:])
            for f in (ln.split("|") for ln in out.splitlines())}


def test_migrations(pg):
    vppd = tool(BUILD, "vppd")
    r = subprocess.run([vppd, "migrate", "--database-url", pg.conninfo],
                       capture_output=True, text=True, timeout=60)
    check(r.returncode == 0, f"migrate failed: {r.stderr}")
    check("applied 0001_initial" in r.stdout, f"first run applied nothing: {r.stdout}")
    # Every file of sql/migrations is embedded in vppd (server/store/meson.build
    # lists them) and applied, in order.
    names = [os.path.basename(m)[:-4] for m in MIGRATIONS]
    check(len(names) >= 2, f"migrations not found: {MIGRATIONS}")
    for n in names:
        check(f"applied {n}" in r.stdout, f"migration {n} not applied: {r.stdout}")
    tables = set(pg.psql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                 .split("\n"))
    for t in ["devices", "device_state", "telemetry", "fleet_ticks", "setpoints",
              "device_events", "audit_log", "schema_migrations", "cluster_nodes"]:
        check(t in tables, f"table {t} missing after migrate: {sorted(tables)}")
    check(pg.psql("SELECT relkind FROM pg_class WHERE relname = 'telemetry'") == "p",
          "telemetry is not partitioned")

    r = subprocess.run([vppd, "migrate", "--database-url", pg.conninfo],
                       capture_output=True, text=True, timeout=60)
    check(r.returncode == 0 and "applied" not in r.stdout.replace("schema", ""),
          f"second migrate not a no-op: rc={r.returncode} {r.stdout}")
    check(pg.psql("SELECT count(*) FROM schema_migrations") == str(len(MIGRATIONS)),
          "migration recorded twice")

    # A database newer than the binary is refused with a clear message.
    pg.psql("INSERT INTO schema_migrations (version, name) VALUES (9999, 'future')")
    r = subprocess.run([vppd, "migrate", "--database-url", pg.conninfo],
                       capture_output=True, text=True, timeout=60)
    pg.psql("DELETE FROM schema_migrations WHERE version = 9999")
    check(r.returncode != 0, "newer schema accepted")
    check("newer than this vppd" in r.stderr, f"unclear message: {r.stderr}")

    # The environment variable works as documented (standard libpq conninfo).
    env = dict(os.environ, VPP_DATABASE_URL=pg.conninfo)
    r = subprocess.run([vppd, "migrate"], capture_output=True, text=True, timeout=60, env=env)
    check(r.returncode == 0, f"VPP_DATABASE_URL not honoured: {r.stderr}")

    # Partitions exist around now, and the maintenance function is idempotent.
    n = int(pg.psql("SELECT vpp_telemetry_maintain('1 day', '2 days', '2 days', '30 days')"))
    check(n > 0, "no partition created")
    n2 = int(pg.psql("SELECT vpp_telemetry_maintain('1 day', '2 days', '2 days', '30 days')"))
    check(n2 == 0, f"maintenance not idempotent: {n2}")
    # A sigma the device did not give is NULL: in the table and every
    # partition; the values themselves stay NOT NULL.
    nn = sigma_not_null(pg)
    check(len(nn) >= 3, f"partitions missing: {nn}")
    check(all(v == (False, False, True) for v in nn.values()),
          f"sigma NOT NULL, or power_kw nullable: {nn}")


def test_upgrade_makes_sigmas_nullable(pg):
    """A database at version 1 with partitions and rows is migrated: every
    partition, the ones created before as well as after, and the default one
    accept a NULL sigma; the rows already stored are untouched."""
    db = "vpp_upgrade"
    pg.psql(f"DROP DATABASE IF EXISTS {db}")
    pg.psql(f"CREATE DATABASE {db}")
    conninfo = pg.conninfo.replace("dbname=postgres", f"dbname={db}")

    def psql(sql):
        r = subprocess.run(["psql", conninfo, "-X", "-qAt", "-v", "ON_ERROR_STOP=1", "-c", sql],
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"psql failed: {r.stderr.strip()}")
        return r.stdout.strip()

    def insert(seq, at, sigma):
        psql("INSERT INTO telemetry VALUES ('dev-up', %d, %s, now(), 1, %s, 0.5, %s, 0, 'n') "
             "RETURNING tableoid::regclass" % (seq, at, sigma, sigma))

    try:
        # Version 1 exactly as vppd's runner leaves it (server/store/migrate.c).
        first = [m for m in MIGRATIONS if os.path.basename(m) == "0001_initial.sql"]
        check(first, "0001_initial.sql not found")
        r = subprocess.run(["psql", conninfo, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1",
                            "-f", first[0]], capture_output=True, text=True, timeout=120)
        check(r.returncode == 0, f"0001 failed: {r.stderr}")
        psql("CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, "
             "applied_at timestamptz NOT NULL DEFAULT now()); "
             "INSERT INTO schema_migrations (version, name) VALUES (1, 'initial')")
        made = int(psql("SELECT vpp_telemetry_maintain('1 hour', '3 hours', '3 hours', "
                        "'30 days')"))
        check(made >= 6, f"only {made} partitions at version 1")
        insert(1, "now()", "0.25")
        insert(2, "'2001-01-01'", "0.5")  # the default partition
        before = sigma_not_null(pg, psql)
        check(all(v == (True, True, True) for v in before.values()),
              f"version 1 is not what this test expects: {before}")
        try:
            insert(3, "now()", "NULL")
            raise AssertionError("version 1 took a NULL sigma")
        except RuntimeError:
            pass

        r = subprocess.run([tool(BUILD, "vppd"), "migrate", "--database-url", conninfo],
                           capture_output=True, text=True, timeout=60)
        check(r.returncode == 0, f"migrate failed: {r.stderr}")
        check("applied 0002_telemetry_sigma_nullable" in r.stdout and
              "applied 0001" not in r.stdout, f"upgrade applied: {r.stdout}")
        after = sigma_not_null(pg, psql)
        check(set(after) == set(before), f"relations changed: {before} -> {after}")
        check(all(v == (False, False, True) for v in after.values()),
              f"existing partitions still refuse a NULL sigma: {after}")
        insert(4, "now()", "NULL")
        insert(5, "'2001-01-02'", "NULL")
        # A row for a range with no partition yet waits in the default one;
        # the maintenance then creates the partition and moves it there.
        insert(6, "now() + interval '20 hours'", "NULL")
        made = int(psql("SELECT vpp_telemetry_maintain('1 hour', '3 hours', '24 hours', "
                        "'30 days')"))
        check(made >= 20, f"only {made} partitions created after the upgrade")
        new = sigma_not_null(pg, psql)
        check(len(new) == len(after) + made and
              all(v == (False, False, True) for v in new.values()),
              f"partitions created after the upgrade: {new}")
        insert(7, "now() + interval '10 hours'", "NULL")
        got = psql("SELECT string_agg(seq || ':' || (tableoid = 'telemetry_default'::regclass) "
                   "|| ':' || coalesce(power_sigma_kw::text, 'NULL') || ':' "
                   "|| coalesce(soc_sigma::text, 'NULL'), ' ' ORDER BY seq) FROM telemetry")
        check(got == "1:false:0.25:0.25 2:true:0.5:0.5 4:false:NULL:NULL 5:true:NULL:NULL "
                     "6:false:NULL:NULL 7:false:NULL:NULL", f"telemetry holds {got!r}")
    finally:
        pg.psql(f"DROP DATABASE IF EXISTS {db}")


def test_missing_sigma_stored_as_null(pg):
    """A sigma the device did not give (NaN in the row) is stored as NULL,
    never as 0 or NaN; a given one (0.05, or an explicit 0) as itself. Through
    the journal's replay, the direct COPY, the staging table (a replay of
    rows already stored) and the split of a batch the database refused."""
    reset(pg)
    nan = float("nan")
    base = int(time.time() * 1000) - 600000
    cases = [(nan, nan), (0.05, 0.01), (nan, 0.01), (0.05, nan), (0.0, 0.0)]
    want = "0:NULL:NULL 1:0.05:0.01 2:NULL:0.01 3:0.05:NULL 4:0:0"
    recs = [jrow("sig-dev", i, base + i, power_sigma=ps, soc_sigma=ss)
            for i, (ps, ss) in enumerate(cases)]
    query = ("SELECT string_agg(seq || ':' || coalesce(power_sigma_kw::text, 'NULL') || ':' "
             "|| coalesce(soc_sigma::text, 'NULL'), ' ' ORDER BY seq) FROM telemetry "
             "WHERE device_id = %s")

    def run(records):
        j = tempfile.mkdtemp(prefix="vpp-j-")
        try:
            write_segment(j, 1, records)
            r = replay(pg, j)
        finally:
            shutil.rmtree(j, ignore_errors=True)
        return parse_stats([ln for ln in r.stdout.splitlines() if ln.startswith("drained")][-1])

    st = run(recs)
    check(st["rejected"] == 0, f"rows rejected: {st}")
    got = pg.psql(query % "'sig-dev'")
    check(got == want, f"replayed rows hold {got!r}, want {want!r}")
    # Replayed again: the direct COPY is refused (already stored), the staging
    # table takes the batch and skips the duplicates. Nothing changes.
    st = run(recs)
    check(st["rejected"] == 0, f"second replay rejected rows: {st}")
    got = pg.psql(query % "'sig-dev'")
    check(got == want, f"after a second replay: {got!r}, want {want!r}")
    # A batch the database refuses for one row is staged, then split: the
    # missing sigmas of the others stay missing.
    pg.psql("ALTER TABLE telemetry ADD CONSTRAINT test_no_666 CHECK (power_kw <> 666)")
    try:
        recs2 = [jrow("sig-dev2", i, base + i, power_sigma=ps, soc_sigma=ss)
                 for i, (ps, ss) in enumerate(cases)]
        recs2.insert(2, jrow("sig-dev2", 99, base + 99, power=666, power_sigma=nan))
        st = run(recs2)
    finally:
        pg.psql("ALTER TABLE telemetry DROP CONSTRAINT test_no_666")
    check(st["rejected"] == 1, f"rejected {st['rejected']}, want 1 (the 666 row): {st}")
    got = pg.psql(query % "'sig-dev2'")
    check(got == want, f"split batch holds {got!r}, want {want!r}")
    check(pg.psql("SELECT count(*) FROM telemetry WHERE power_sigma_kw = 'NaN' "
                  "OR soc_sigma = 'NaN' OR power_sigma_kw = 0 AND seq <> 4") == "0",
          "a missing sigma was stored as a number")


def test_million_rows_exact(pg):
    reset(pg)
    base = base_for(ROWS)
    j = tempfile.mkdtemp(prefix="vpp-j-")
    try:
        st, _ = load(pg, j, ROWS, base_ms=base, queue=2 * ROWS)
    finally:
        shutil.rmtree(j, ignore_errors=True)
    check(st["committed"] == ROWS, f"committed {st['committed']} of {ROWS}")
    expect_exact(pg, 0, ROWS, base)


def load_through_outage(pg, rows, rate, down_after_s, down_s, wait_s):
    """Runs store_load at |rate| rows/s while PostgreSQL is killed after
    |down_after_s| and started again |down_s| later; returns its output."""
    base = base_for(rows)
    j = tempfile.mkdtemp(prefix="vpp-j-")
    argv = [tool(HEAVY, "store_load"), "load", "--db", pg.conninfo, "--journal", j,
            "--rows", str(rows), "--devices", str(NDEV), "--rate", str(rate),
            "--base-ms", str(base), "--wait-s", str(wait_s)]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(down_after_s)
        pg.kill()
        time.sleep(down_s)
        pg.start()
        out, err = p.communicate(timeout=wait_s + 60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        shutil.rmtree(j, ignore_errors=True)
    check(p.returncode == 0, f"store_load failed: {err[-2000:]} {out[-500:]}")
    return out, base, err


def test_postgres_sigkill_mid_write(pg):
    reset(pg)
    rows, rate = min(ROWS, 300000), 50000
    out, base, err = load_through_outage(pg, rows, rate, rows / rate / 3, 1.5, 120)
    st = parse_stats([ln for ln in out.splitlines() if ln.startswith("drained")][-1])
    check(st["journaled"] > 0, f"nothing went through the journal: {st}")
    expect_exact(pg, 0, rows, base)
    # The log says when the database went away, why, and when it was back,
    # once for the outage, not once per reconnect attempt.
    down = [ln for ln in err.splitlines() if "database unavailable" in ln]
    back = [ln for ln in err.splitlines() if "database reachable again after" in ln]
    check(down and back, f"the outage is not in the log: {err[-2000:]}")
    check(len(down) <= 5, f"{len(down)} lines for one outage: {down}")


def test_spilling_ends_under_steady_load(pg):
    """After an outage, rows go through the journal until its replay
    reaches the end; then new rows go straight to the database again, while
    they keep coming (a fleet never stops reporting)."""
    reset(pg)
    rows, rate = 60000, 3000  # 20 s of submission
    out, base, _ = load_through_outage(pg, rows, rate, 3, 2, 60)
    progress = [parse_stats(ln) for ln in out.splitlines() if ln.startswith("progress")]
    after = [st for st in progress if st["journaled"] > 0 and st["submitted"] < rows - 2 * rate]
    check(any(st["spilling"] == 0 and st["db_up"] for st in after),
          f"still going through the journal while rows kept coming: "
          f"{[(st['submitted'], st['spilling']) for st in after]}")
    expect_exact(pg, 0, rows, base)


def test_writer_sigkill_with_torn_journal(pg):
    reset(pg)
    rows, rate, batch = min(ROWS, 200000), 40000, 2000
    base = base_for(rows)
    j = tempfile.mkdtemp(prefix="vpp-j-")
    argv = [tool(HEAVY, "store_load"), "load", "--db", pg.conninfo, "--journal", j,
            "--rows", str(rows), "--devices", str(NDEV), "--rate", str(rate),
            "--base-ms", str(base), "--batch", str(batch)]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    last = {}
    try:
        t_end = time.time() + rows / rate / 2
        killed_db = False
        while time.time() < t_end:
            line = p.stdout.readline()
            if line.startswith("progress"):
                last = parse_stats(line)
            if not killed_db and time.time() > t_end - rows / rate / 4:
                pg.kill()  # the database goes away: rows pile up in the journal
                killed_db = True
        time.sleep(0.5)
        p.send_signal(signal.SIGKILL)
        rest = p.communicate(timeout=30)[0]
        for line in rest.splitlines():
            if line.startswith("progress"):
                last = parse_stats(line)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    try:
        segs = sorted(glob.glob(os.path.join(j, "seg-*.vj")))
        check(segs and sum(os.path.getsize(s) for s in segs) > 0,
              "journal empty after the kill")
        # A crash mid-write: half a record at the end of the newest segment.
        with open(segs[-1], "ab") as f:
            f.write(b"VPPJ\x01\x00\x00\x00\x50\x00\x00\x00garbage")
        durable = last.get("durable_upto", 0)
        check(durable > 0, f"no progress before the kill: {last}")
        pg.start()
        # Rows after the last durable mark may be lost with the process; a
        # device would send them again. Resend from a batch earlier: rows
        # stored twice must end up once.
        st, out = load(pg, j, rows, base_ms=base, batch=batch,
                       **{"from": max(0, durable - batch)})
        check(st["replayed"] > 0, f"journal not replayed: {st}")
    finally:
        shutil.rmtree(j, ignore_errors=True)
    expect_exact(pg, 0, rows, base)


def test_vppd_replays_journal(pg):
    """Rows journaled while the database was down are written by the next
    vppd started on that journal, once, and the journal is emptied."""
    reset(pg)
    rows = 30000
    base = base_for(rows)
    j = tempfile.mkdtemp(prefix="vpp-j-")
    vppd = None
    try:
        pg.kill()
        r = subprocess.run([tool(BUILD, "store_load"), "load", "--db", pg.conninfo,
                            "--journal", j, "--rows", str(rows), "--devices", str(NDEV),
                            "--base-ms", str(base), "--wait-s", "1"],
                           capture_output=True, text=True, timeout=120)
        last = parse_stats([ln for ln in r.stdout.splitlines()
                            if ln.startswith(("undrained", "drained"))][-1])
        check(last["journaled"] == rows, f"not everything journaled: {last}")
        pg.start()
        log = tempfile.TemporaryFile(mode="w+")
        vppd = subprocess.Popen([tool(BUILD, "vppd"), "--database-url", pg.conninfo,
                                 "--journal-dir", j, "--node-id", "node-test",
                                 "--api-port", "0", "--device-port", "0", "--admin-port", "0"],
                                stdout=subprocess.DEVNULL, stderr=log, text=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            if int(pg.psql("SELECT count(*) FROM telemetry")) >= rows and \
                    not glob.glob(os.path.join(j, "seg-*.vj")):
                break
            if vppd.poll() is not None:
                log.seek(0)
                raise AssertionError(f"vppd exited: {log.read()[-2000:]}")
            time.sleep(0.2)
        vppd.send_signal(signal.SIGTERM)
        vppd.wait(timeout=30)
        log.seek(0)
        err = log.read()
        check(vppd.returncode == 0, f"vppd exit {vppd.returncode}: {err[-2000:]}")
        check("journal holds" in err, f"vppd did not find the journal: {err[-2000:]}")
        check(not glob.glob(os.path.join(j, "seg-*.vj")), "journal not emptied")
    finally:
        if vppd and vppd.poll() is None:
            vppd.kill()
            vppd.wait()
        shutil.rmtree(j, ignore_errors=True)
    expect_exact(pg, 0, rows, base)


def test_vppd_migrates_a_late_database(pg):
    """A database that answers only after vppd started (at boot, a fresh
    one) gets its tables: the migrations are tried again until they apply,
    and what vppd journaled meanwhile lands."""
    pg.psql("DROP DATABASE IF EXISTS late")
    pg.psql("CREATE DATABASE late")
    late = f"host={pg.dir} port=5432 user=postgres dbname=late"
    relay = SilentThenRelay(pg, silent_s=4)
    url = f"host=127.0.0.1 port={relay.port} user=postgres dbname=late connect_timeout=2"
    j = tempfile.mkdtemp(prefix="vpp-j-")
    log = tempfile.TemporaryFile(mode="w+")
    vppd = subprocess.Popen([tool(BUILD, "vppd"), "--database-url", url, "--journal-dir", j,
                             "--node-id", "late-node", "--api-port", "0", "--device-port", "0",
                             "--admin-port", "0"], stdout=subprocess.DEVNULL, stderr=log, text=True)

    def count(sql):
        r = subprocess.run(["psql", late, "-X", "-qAt", "-c", sql], capture_output=True, text=True)
        return int(r.stdout.strip()) if r.returncode == 0 else -1
    try:
        deadline = time.time() + 60
        while time.time() < deadline and count("SELECT count(*) FROM fleet_ticks") <= 0:
            check(vppd.poll() is None, "vppd exited")
            time.sleep(0.5)
        vppd.send_signal(signal.SIGTERM)
        vppd.wait(timeout=30)
        log.seek(0)
        err = log.read()
        check(vppd.returncode == 0, f"vppd exit {vppd.returncode}: {err[-2000:]}")
        check("the migrations applied once the database answered" in err,
              f"no late migration in the log: {err[-2000:]}")
        check(count("SELECT count(*) FROM fleet_ticks WHERE node_id = 'late-node'") > 0,
              f"no fleet_ticks in the late database: {err[-2000:]}")
    finally:
        if vppd.poll() is None:
            vppd.kill()
            vppd.wait()
        relay.close()
        shutil.rmtree(j, ignore_errors=True)
        pg.psql("DROP DATABASE IF EXISTS late WITH (FORCE)")


class SlowRelay:
    """Relays TCP connections to the cluster's Unix socket; while |slow|,
    what the client sends waits |delay_s| first (a database that has become
    slow to answer)."""

    def __init__(self, pg, delay_s):
        self.path = os.path.join(pg.dir, ".s.PGSQL.5432")
        self.delay_s = delay_s
        self.slow = False
        self.listener = vt.Listener(self._conn)
        self.port = self.listener.port

    def _forward(self, src, dst):
        try:
            while True:
                d = src.recv(65536)
                if not d:
                    break
                if self.slow:
                    time.sleep(self.delay_s)
                dst.sendall(d)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.close()
            except OSError:
                pass

    def _conn(self, c):
        import threading
        u = socket.socket(socket.AF_UNIX)
        u.connect(self.path)
        threading.Thread(target=self._forward, args=(c, u), daemon=True).start()
        threading.Thread(target=vt.pump, args=(u, c), daemon=True).start()

    def close(self):
        self.listener.close()


class ApiVppd:
    """vppd on the database |url| with its operator API (h2c, one operator
    token) and no device port. A context manager: on leaving, vppd is
    stopped and its journal removed."""

    def __init__(self, url, node_id):
        import grpc
        import hashlib
        import test_device_sessions as tds
        self.grpc = grpc
        self.journal = tempfile.mkdtemp(prefix="vpp-j-")
        self.tokens = self.journal + ".tokens"
        with open(self.tokens, "w") as f:
            f.write("op operator sha256:%s\n" % hashlib.sha256(b"api-token").hexdigest())
        api = vt.free_port()
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen([tool(BUILD, "vppd"), "--database-url", url, "--journal-dir", self.journal,
                                      "--node-id", node_id, "--api-addr", "127.0.0.1", "--api-port", str(api),
                                      "--api-h2c", "--tokens-file", self.tokens, "--device-port", "0",
                                      "--admin-port", "0"], stdout=subprocess.DEVNULL, stderr=self.log, text=True)
        m = tds.mods()
        self.ch = grpc.insecure_channel("127.0.0.1:%d" % api)
        self.op, self.g = m["gg"].GridOperatorStub(self.ch), m["g"]
        self.md = [("authorization", "Bearer api-token")]
        self.api = api

    def __enter__(self):
        try:
            vt.wait_port(self.api, 30, self.proc)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def status(self):
        return self.op.GetFleetStatus(self.g.GetFleetStatusRequest(), metadata=self.md, timeout=5)

    def wait_status(self, ok, timeout_s):
        """Polls GetFleetStatus until |ok|(status) or |timeout_s|; returns the last."""
        deadline = time.time() + timeout_s
        st = self.status()
        while time.time() < deadline and not ok(st):
            time.sleep(0.2)
            st = self.status()
        return st

    def stop(self):
        """SIGTERM; returns (exit status, the log)."""
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        self.log.seek(0)
        return self.proc.returncode, self.log.read()

    def __exit__(self, *exc):
        self.ch.close()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.journal, ignore_errors=True)
        os.unlink(self.tokens)


def test_setpoint_applied_when_the_caller_left(pg):
    """A setpoint recorded after its caller gave up (its deadline passed
    while the database was slow) is applied and audited all the same: the
    database and the fleet agree, and a restart would carry on with it."""
    reset(pg)
    relay = SlowRelay(pg, delay_s=1.5)
    url = f"host=127.0.0.1 port={relay.port} user=postgres dbname=postgres"
    try:
        with ApiVppd(url, "slow-db") as v:
            grpc = v.grpc
            time.sleep(1)  # the store connected
            relay.slow = True
            req = v.g.SetFleetSetpointRequest(target_kw=42, valid_for_s=600, request_id="caller-gone",
                                              reason="test")
            try:
                v.op.SetFleetSetpoint(req, metadata=v.md, timeout=0.5)
                check(False, "the call did not time out")
            except grpc.RpcError as e:
                check(e.code() == grpc.StatusCode.DEADLINE_EXCEEDED, f"{e.code()}: {e.details()}")
            relay.slow = False
            # Applied on the next tick.
            st = v.wait_status(lambda st: st.active_setpoint_id and st.target_kw == 42, 20)
            check(st.active_setpoint_id and st.target_kw == 42, f"not applied: {st}")
            row = pg.psql("SELECT setpoint_id FROM setpoints WHERE request_id = 'caller-gone'")
            check(row == st.active_setpoint_id, f"row {row}, active {st.active_setpoint_id}")
            _, err = v.stop()
            check("action=SetFleetSetpoint request_id=caller-gone result=accepted" in err,
                  f"not audited: {err[-2000:]}")
    finally:
        relay.close()


def test_setpoint_carried_on_once_the_database_answers(pg):
    """vppd restarts while its database does not answer: the setpoint in
    force cannot be read at start, and is carried on once the database
    answers (no operator having set a target since)."""
    reset(pg)
    pg.psql("INSERT INTO setpoints (request_id, target_kw, valid_for_s, ramp_kw_per_s, node_id) "
            "VALUES ('late-sp', 7, 600, 0, 'late-restore'), ('other-node', 9, 600, 0, 'someone-else')")
    want = pg.psql("SELECT setpoint_id FROM setpoints WHERE request_id = 'late-sp'")
    relay = SilentThenRelay(pg, silent_s=4)
    url = f"host=127.0.0.1 port={relay.port} user=postgres dbname=postgres connect_timeout=2"
    try:
        with ApiVppd(url, "late-restore") as v:
            first = v.status()
            check(not first.active_setpoint_id, f"a setpoint before the database answered: {first}")
            st = v.wait_status(lambda st: st.active_setpoint_id and st.target_kw == 7, 40)
            check(st.active_setpoint_id == want and st.target_kw == 7, f"not carried on: {st}")
            rc, err = v.stop()
            check(rc == 0, f"vppd exit {rc}: {err[-2000:]}")
            check("read once the database answered" in err, f"not logged: {err[-2000:]}")
    finally:
        relay.close()


def test_bad_rows_rejected(pg):
    reset(pg)
    j = tempfile.mkdtemp(prefix="vpp-j-")
    try:
        r = subprocess.run([tool(BUILD, "store_load"), "bad", "--db", pg.conninfo,
                            "--journal", j], capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(j, ignore_errors=True)
    check(r.returncode == 0, f"store_load bad failed: {r.stderr} {r.stdout[-1000:]}")
    submits = dict(re.findall(r"^submit (\S+) (-?\d+)$", r.stdout, re.M))
    for name in ["nan_power", "inf_sigma", "soc_high", "soc_low", "future", "past",
                 "neg_sigma", "empty_id"]:
        check(submits.get(name) == "-1", f"{name} not refused at submit: {submits}")
    for name in ["unknown_device", "good_1", "good_2", "late_device"]:
        check(submits.get(name) == "0", f"{name} not accepted into the queue: {submits}")
    metrics = dict(re.findall(r'^metric vpp_store_rejected_total\{reason="(\w+)"\} (\d+)$',
                              r.stdout, re.M))
    want = {"not_finite": "2", "soc_out_of_range": "2", "timestamp_future": "1",
            "timestamp_past": "1", "negative_sigma": "1", "bad_device_id": "1",
            "unknown_device": "1", "database": "0"}
    for k, v in want.items():
        check(metrics.get(k) == v, f"rejected_total{{reason={k}}} = {metrics.get(k)}, want {v}")
    got = pg.psql("SELECT string_agg(device_id || ':' || seq, ' ' ORDER BY seq) FROM telemetry")
    check(got == "dev-late:7 dev-00000:1009 dev-00000:2000", f"database holds {got!r}")


def test_db_error_isolated(pg):
    reset(pg)
    pg.psql("ALTER TABLE telemetry ADD CONSTRAINT test_no_666 CHECK (power_kw <> 666)")
    rows, poison = 20000, 997
    base = base_for(rows)
    j = tempfile.mkdtemp(prefix="vpp-j-")
    try:
        st, _ = load(pg, j, rows, build=BUILD, base_ms=base, poison=poison, batch=5000)
    finally:
        shutil.rmtree(j, ignore_errors=True)
        pg.psql("ALTER TABLE telemetry DROP CONSTRAINT test_no_666")
    bad = sum(1 for i in range(rows) if poisoned(i, poison))
    check(bad > rows // poison - 1, "test is not poisoning rows")
    check(st["rejected"] == bad, f"rejected {st['rejected']}, want {bad}")
    check(st["committed"] == rows - bad, f"committed {st['committed']}, want {rows - bad}")
    expect_exact(pg, 0, rows, base, poison=poison)


def test_read_only_database_keeps_rows(pg):
    """A database that refuses writes for its state (here read-only, as a
    standby after a failover) is not a verdict on the rows: they wait in the
    journal and are all written once it accepts writes again."""
    reset(pg)
    pg.psql("ALTER DATABASE postgres SET default_transaction_read_only = on")
    rows = 20000
    base = base_for(rows)
    j = tempfile.mkdtemp(prefix="vpp-j-")
    argv = [tool(BUILD, "store_load"), "load", "--db", pg.conninfo, "--journal", j,
            "--rows", str(rows), "--devices", str(NDEV), "--base-ms", str(base),
            "--wait-s", "60"]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2)
        pg.psql("ALTER DATABASE postgres SET default_transaction_read_only = off")
        out, err = p.communicate(timeout=90)
    finally:
        pg.psql("ALTER DATABASE postgres SET default_transaction_read_only = off")
        if p.poll() is None:
            p.kill()
            p.wait()
        shutil.rmtree(j, ignore_errors=True)
    check(p.returncode == 0, f"store_load failed: {err[-2000:]} {out[-500:]}")
    st = parse_stats([ln for ln in out.splitlines() if ln.startswith("drained")][-1])
    check(st["rejected"] == 0, f"rows rejected for the database's state: {st}")
    check(st["journaled"] > 0, f"nothing journaled while read-only: {st}")
    expect_exact(pg, 0, rows, base)


class SilentThenRelay:
    """A TCP endpoint that, for its first |silent_s| seconds, accepts
    connections and never answers (a stuck postmaster, a pooler), then
    relays new ones to the cluster's Unix socket."""

    def __init__(self, pg, silent_s):
        self.path = os.path.join(pg.dir, ".s.PGSQL.5432")
        self.open_at = time.monotonic() + silent_s
        self.held = []
        self.listener = vt.Listener(self._conn)
        self.port = self.listener.port

    @property
    def silent(self):
        return len(self.held)

    def _conn(self, c):
        if time.monotonic() < self.open_at:
            self.held.append(c)  # read nothing, say nothing
            return
        u = socket.socket(socket.AF_UNIX)
        u.connect(self.path)
        vt.relay(c, u)

    def close(self):
        self.listener.close()
        for c in self.held:
            c.close()


def load_through_relay(relay, conninfo, rows, base, wait_s):
    """Runs store_load on |conninfo| (through |relay|, closed after) until
    every row is in or |wait_s| passed; checks it exits 0, returns its run."""
    j = tempfile.mkdtemp(prefix="vpp-j-")
    argv = [tool(BUILD, "store_load"), "load", "--db", conninfo, "--journal", j, "--rows", str(rows),
            "--devices", str(NDEV), "--base-ms", str(base), "--wait-s", str(wait_s)]
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=wait_s + 60)
    finally:
        relay.close()
        shutil.rmtree(j, ignore_errors=True)
    check(r.returncode == 0, f"store_load failed: {r.stderr[-2000:]} {r.stdout[-500:]}")
    return r


def test_silent_database_times_out(pg):
    """libpq leaves connect_timeout to the application with PQconnectPoll:
    a server that accepts and never answers must not hold the store. Its
    connections give up after connect_timeout, the rows wait in the journal,
    and every one is written once the database answers."""
    reset(pg)
    relay = SilentThenRelay(pg, silent_s=6)
    rows = 20000
    base = base_for(rows)
    conninfo = f"host=127.0.0.1 port={relay.port} user=postgres dbname=postgres connect_timeout=2"
    r = load_through_relay(relay, conninfo, rows, base, wait_s=60)
    check(relay.silent >= 2, f"the store did not try again after the silent connection: {relay.silent}")
    st = parse_stats([ln for ln in r.stdout.splitlines() if ln.startswith("drained")][-1])
    check(st["journaled"] > 0, f"nothing journaled while the database was silent: {st}")
    expect_exact(pg, 0, rows, base)


def test_silent_first_host_moves_on(pg):
    """With several hosts in the conninfo, libpq moves on to the next only
    when one fails; a first host that never answers held every attempt. The
    attempt after the deadline starts at the next host, and the rows land."""
    reset(pg)
    relay = SilentThenRelay(pg, silent_s=3600)
    rows = 5000
    base = base_for(rows)
    conninfo = (f"host=127.0.0.1,{pg.dir} port={relay.port},5432 user=postgres dbname=postgres "
                "connect_timeout=2")
    r = load_through_relay(relay, conninfo, rows, base, wait_s=25)
    check(relay.silent >= 1, f"the silent host was not tried first: {relay.silent}")
    check("at 127.0.0.1 did not complete the connection within 2 s" in r.stderr,
          f"the silent host is not named: {r.stderr[-2000:]}")
    expect_exact(pg, 0, rows, base)


def test_api_writes_and_reads(pg):
    reset(pg)
    j = tempfile.mkdtemp(prefix="vpp-j-")
    try:
        r = subprocess.run([tool(BUILD, "store_load"), "api", "--db", pg.conninfo,
                            "--journal", j], capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(j, ignore_errors=True)
    check(r.returncode == 0, f"store_load api failed: {r.stderr} {r.stdout[-1000:]}")
    out = r.stdout
    check(re.search(r"^setpoint first status=0 id=(\d+) created=1 target=4200 reason=first$",
                    out, re.M), f"first setpoint: {out}")
    m1 = re.search(r"^setpoint first status=0 id=(\d+)", out, re.M).group(1)
    m2 = re.search(r"^setpoint retry status=0 id=(\d+) created=0 target=4200 reason=first$",
                   out, re.M)
    check(m2 and m2.group(1) == m1, f"retry did not return the original: {out}")
    check("devices page1 status=0 n=2 dev-00000:fw-0:13.5:1:0.25 dev-00001:fw-1:13.5:1:0.75"
          in out, f"page1: {out}")
    check("devices page2 status=0 n=2 dev-00002:fw-2:13.5:0:-1 dev-00003:fw-3:13.5:0:-1"
          in out, f"page2: {out}")
    check("devices missing status=-4 n=0" in out, f"missing device: {out}")
    tel = re.search(r"^telemetry recent status=0 n=(\d+) (.*)$", out, re.M)
    check(tel and tel.group(1) == "5" and tel.group(2).startswith("9:"),
          f"recent telemetry: {out}")
    def expect(sql, want, what):
        got = pg.psql(sql)
        check(got == want, f"{what}: {got!r}, want {want!r}; store_load said: {out[-1500:]}")

    expect("SELECT count(*) FROM setpoints", "1", "setpoints stored")
    expect("SELECT status || ':' || soc FROM device_state WHERE device_id = 'dev-00001'",
           "degraded:0.75", "device_state of dev-00001 (the newest)")
    expect("SELECT soc FROM device_state WHERE device_id = 'dev-00000'", "0.25",
           "device_state of dev-00000 (an older state must not win)")
    expect("SELECT measured_kw || ':' || measured_lower_kw || ':' || devices_online "
           "FROM fleet_ticks", "98:94.7:4", "fleet tick")
    expect("SELECT kind || ':' || reason FROM device_events", "disconnect:keepalive timeout",
           "device event")
    expect("SELECT principal || ':' || action FROM audit_log", "alice:SetFleetSetpoint",
           "audit log")
    expect("SELECT node_id || ':' || version FROM cluster_nodes", "node-test:0.1.0",
           "heartbeat")


def test_damaged_segment_costs_only_itself(pg):
    """A record that goes bad on disk while the store runs (it passed the
    checks at open) costs the rest of its segment: the segments after it are
    still replayed."""
    reset(pg)
    j = tempfile.mkdtemp(prefix="vpp-j-")
    per_seg, base = 2000, int(time.time() * 1000) - 600000
    seg_records = []
    for k in range(3):
        recs = [jrow(f"jdev-{i % 100:03d}", i // 100, base + i)
                for i in range(k * per_seg, (k + 1) * per_seg)]
        write_segment(j, k + 1, recs)
        seg_records.append(recs)
    # The record holding the middle byte of segment 2, and those before it.
    mid = sum(len(r) for r in seg_records[1]) // 2
    kept, off = 0, 0
    while off + len(seg_records[1][kept]) <= mid:
        off += len(seg_records[1][kept])
        kept += 1
    p = None
    try:
        pg.kill()  # the store opens the journal, waiting for the database
        p = subprocess.Popen([tool(BUILD, "store_load"), "load", "--db", pg.conninfo,
                              "--journal", j, "--rows", "0", "--devices", "1",
                              "--wait-s", "60"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)
        with open(os.path.join(j, f"seg-{2:016d}.vj"), "r+b") as f:
            f.seek(mid)
            b = f.read(1)
            f.seek(mid)
            f.write(bytes([b[0] ^ 0x10]))
        pg.start()
        out, err = p.communicate(timeout=120)
    finally:
        if p and p.poll() is None:
            p.kill()
            p.wait()
        shutil.rmtree(j, ignore_errors=True)
    check(p.returncode == 0, f"store_load failed: {err[-2000:]} {out[-500:]}")
    got = int(pg.psql("SELECT count(*) FROM telemetry WHERE device_id LIKE 'jdev-%'"))
    check(got == 2 * per_seg + kept, f"{got} rows replayed, want {2 * per_seg + kept}")
    check("unreadable record in segment" in err, f"damage not logged: {err[-2000:]}")


def test_undecodable_records_counted_lost(pg):
    """Journal records whose checksum is right but whose content cannot be
    decoded (another version wrote them?) cannot be replayed: each is
    counted lost and logged, and the records around them are replayed."""
    reset(pg)
    j = tempfile.mkdtemp(prefix="vpp-j-")
    base = int(time.time() * 1000) - 600000
    good = [jrow("udev-1", i, base + i) for i in range(20)]
    bad_row = jrecord(JREC_TELEMETRY, b"\x05short")
    unknown = jrecord(99, b"whatever")
    # A statement record that does not parse (an unknown statement): queued,
    # it held a pipeline place no result filled, and what came after waited.
    bad_stmt = jrecord(JREC_STMT, struct.pack("<HH", 0xFFFF, 1))
    now = int(time.time() * 1000)
    after = jstmt(ST_DEVICE_UPSERT, ["udev-after", "fw", "5", "5", "10", "0", "1", "1", "node-a",
                                     str(now)])
    write_segment(j, 1, good[:10] + [bad_row, unknown, bad_stmt, after] + good[10:])
    try:
        r = replay(pg, j)
    finally:
        shutil.rmtree(j, ignore_errors=True)
    st = parse_stats([ln for ln in r.stdout.splitlines() if ln.startswith("drained")][-1])
    check(st["rows_lost"] == 1 and st["writes_lost"] == 2, f"not counted: {st}")
    got = int(pg.psql("SELECT count(*) FROM telemetry WHERE device_id = 'udev-1'"))
    check(got == 20, f"{got} rows replayed, want 20")
    got = pg.psql("SELECT count(*) FROM devices WHERE device_id = 'udev-after'")
    check(got == "1", f"the statement after the undecodable one was not applied: {got}")
    check("cannot be decoded" in r.stderr, f"not logged: {r.stderr[-2000:]}")


def test_replayed_rows_already_stored(pg):
    """A journal replay writes rows the database may hold already (a batch
    whose commit was in doubt): they are skipped, and counted as already
    stored, not as written a second time."""
    reset(pg)
    base = int(time.time() * 1000) - 600000
    rows = [jrow("adev-1", i, base + i) for i in range(25)]
    stats = []
    for recs in (rows[:20], rows):
        j = tempfile.mkdtemp(prefix="vpp-j-")
        write_segment(j, 1, recs)
        try:
            r = replay(pg, j)
        finally:
            shutil.rmtree(j, ignore_errors=True)
        stats.append(parse_stats([ln for ln in r.stdout.splitlines() if ln.startswith("drained")][-1]))
    first, second = stats
    check(first["replayed"] == 20 and first["already"] == 0, f"first replay: {first}")
    check(second["replayed"] == 25 and second["already"] == 20, f"second replay: {second}")
    got = int(pg.psql("SELECT count(*) FROM telemetry WHERE device_id = 'adev-1'"))
    check(got == 25, f"{got} rows stored, want 25")


def test_late_upsert_does_not_roll_back(pg):
    """Node A journaled a device's registration; the device moved to node B,
    which registered it later; A's journal replayed afterwards changes
    nothing. A newer registration still wins."""
    reset(pg)
    now = int(time.time() * 1000)
    pg.psql("INSERT INTO devices (device_id, firmware, rated_charge_kw, rated_discharge_kw, "
            "capacity_kwh, min_soc, max_soc, ramp_kw_per_s, node_id, last_seen) VALUES "
            f"('dev-moved', 'fw-v2', 5, 5, 10, 0, 1, 1, 'node-b', to_timestamp({now} / 1000.0))")

    def upsert(firmware, node, last_seen_ms):
        j = tempfile.mkdtemp(prefix="vpp-j-")
        try:
            write_segment(j, 1, [jstmt(ST_DEVICE_UPSERT,
                                       ["dev-moved", firmware, "5", "5", "10", "0", "1", "1",
                                        node, str(last_seen_ms)])])
            replay(pg, j)
        finally:
            shutil.rmtree(j, ignore_errors=True)
        return pg.psql("SELECT node_id || ':' || firmware FROM devices "
                       "WHERE device_id = 'dev-moved'")

    got = upsert("fw-v1", "node-a", now - 60000)
    check(got == "node-b:fw-v2", f"a late registration rolled the registry back: {got}")
    got = upsert("fw-v3", "node-c", now + 1000)
    check(got == "node-c:fw-v3", f"a newer registration was ignored: {got}")


def test_failing_maintenance_does_not_stop_writes(pg):
    """Partition maintenance that fails for the database's state (here
    42P17, as after --telemetry-partition-hours changed on an existing
    database) is retried later: it neither drops the connection in a loop
    nor holds up the other writes."""
    reset(pg)
    original = pg.psql("SELECT pg_get_functiondef('vpp_telemetry_maintain'::regproc)")
    pg.psql("CREATE SEQUENCE test_maint_calls; "
            "CREATE OR REPLACE FUNCTION vpp_telemetry_maintain(part interval, back interval, "
            "ahead interval, retention interval) RETURNS integer LANGUAGE plpgsql AS $$ "
            "BEGIN PERFORM nextval('test_maint_calls'); "
            "RAISE EXCEPTION 'test: would overlap' USING ERRCODE = '42P17'; END $$")
    rows = 20000
    base = base_for(rows)
    j = tempfile.mkdtemp(prefix="vpp-j-")
    try:
        st, _ = load(pg, j, rows, build=BUILD, base_ms=base, wait_s=30, timeout=90)
        calls = int(pg.psql("SELECT last_value FROM test_maint_calls"))
    finally:
        shutil.rmtree(j, ignore_errors=True)
        pg.psql(original)
        pg.psql("DROP SEQUENCE test_maint_calls")
    check(st["committed"] == rows, f"committed {st['committed']} of {rows}")
    check(calls <= 3, f"maintenance called {calls} times: reconnecting in a loop?")
    expect_exact(pg, 0, rows, base)


def on_term(signum, frame):
    # A runner's timeout: unwind so the PostgreSQL cluster is removed.
    raise SystemExit(f"killed by signal {signum}")


def main():
    signal.signal(signal.SIGTERM, on_term)
    if not BUILD:
        print("VPP_BUILD is not set")
        print("0 passed, 1 failed")
        return 1
    try:
        with PgCluster() as pg:
            only = set(filter(None, os.environ.get("VPP_STORE_TESTS", "").split(",")))
            for t in [test_migrations, test_upgrade_makes_sigmas_nullable,
                      test_missing_sigma_stored_as_null,
                      test_million_rows_exact, test_postgres_sigkill_mid_write,
                      test_spilling_ends_under_steady_load,
                      test_writer_sigkill_with_torn_journal, test_vppd_replays_journal,
                      test_vppd_migrates_a_late_database, test_setpoint_applied_when_the_caller_left,
                      test_setpoint_carried_on_once_the_database_answers,
                      test_bad_rows_rejected,
                      test_db_error_isolated, test_read_only_database_keeps_rows,
                      test_silent_database_times_out, test_silent_first_host_moves_on,
                      test_undecodable_records_counted_lost, test_replayed_rows_already_stored,
                      test_api_writes_and_reads, test_damaged_segment_costs_only_itself,
                      test_late_upsert_does_not_roll_back,
                      test_failing_maintenance_does_not_stop_writes]:
                if not only or t.__name__ in only or t is test_migrations:
                    case_named(t, pg)
    except Exception:
        traceback.print_exc()
        global failed
        failed += 1
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


def case_named(t, pg):
    def run():
        t(pg)
    run.__name__ = t.__name__
    case(run)


if __name__ == "__main__":
    sys.exit(main())
