"""Helpers for the store's integration tests and benchmark: a throw-away
PostgreSQL 15 cluster (own temporary folder, Unix socket only, run as the
postgres user when we are root), and the rows tests/integration/store_load.c
generates, mirrored here so a test can compute what the database must hold.
"""
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time

PG_BIN = "/usr/lib/postgresql/15/bin"


class PgCluster:
    """A PostgreSQL cluster in a temporary folder. Use as a context manager:
    it is stopped and removed on exit, whatever happened."""

    def __init__(self, settings=None):
        self.settings = settings or {}
        self.dir = None
        self.data = None

    def _as_pg(self, argv):
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--"] + argv
        return argv

    def __enter__(self):
        self.dir = tempfile.mkdtemp(prefix="vpp-pg-")
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self.data = os.path.join(self.dir, "data")
        subprocess.run(self._as_pg([f"{PG_BIN}/initdb", "-D", self.data, "-A", "trust",
                                    "-U", "postgres", "--no-sync", "-E", "UTF8"]),
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=120)
        conf = {"listen_addresses": "''", "unix_socket_directories": f"'{self.dir}'",
                "max_connections": "50", "shared_buffers": "'256MB'",
                "max_wal_size": "'2GB'", "logging_collector": "off"}
        conf.update(self.settings)
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            for k, v in conf.items():
                f.write(f"{k} = {v}\n")
        self.start()
        return self

    def __exit__(self, *exc):
        try:
            self.kill()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def conninfo(self):
        return f"host={self.dir} port=5432 user=postgres dbname=postgres"

    def start(self):
        subprocess.run(self._as_pg([f"{PG_BIN}/pg_ctl", "-D", self.data, "-w", "-t", "60",
                                    "-l", os.path.join(self.dir, "log"), "start"]),
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=90)

    def pids(self):
        """The postmaster and its children."""
        try:
            with open(os.path.join(self.data, "postmaster.pid")) as f:
                pm = int(f.readline())
        except (OSError, ValueError):
            return []
        out = [pm]
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == pm:
                    out.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
        return out

    def kill(self):
        """SIGKILL the whole cluster, as a crash would."""
        pids = self.pids()
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.time() + 30
        for p in pids:
            while time.time() < deadline:
                try:
                    os.kill(p, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.02)

    def psql(self, sql):
        """Runs |sql| with psql; returns its unaligned, tuples-only output."""
        # The test's own session stays writable even when a test makes the
        # database read-only for the store.
        env = dict(os.environ, PGOPTIONS="-c default_transaction_read_only=off")
        r = subprocess.run(["psql", self.conninfo, "-X", "-qAt", "-v", "ON_ERROR_STOP=1",
                            "-c", sql], capture_output=True, text=True, timeout=300, env=env)
        if r.returncode != 0:
            raise RuntimeError(f"psql failed: {r.stderr.strip()}")
        return r.stdout.strip()


def row_fields(i, ndev, base_ms):
    """Row |i| of store_load as the integers the checksum query yields."""
    q = (i % 65536) | (0x80000000 if i % 3 == 0 else 0)
    if q >= 1 << 31:
        q -= 1 << 32
    seq = i // ndev
    return ("dev-%05d" % (i % ndev), seq, base_ms + seq * 1000 + i % ndev,
            (i * 7919) % 20001 - 10000, i % 13, i % 1025, i % 7, q)


def poisoned(i, poison):
    """True when row |i| has power 666 kW, which the test's CHECK refuses:
    every |poison|-th row, and the few whose generated power is 666."""
    return bool(poison) and (i % poison == poison - 1 or (i * 7919) % 20001 - 10000 == 2664)


def expected_checksum(first, last, ndev, base_ms, node="node-test", poison=0):
    """(count, md5) of rows first..last-1, without the poisoned ones."""
    rows = []
    for i in range(first, last):
        if poisoned(i, poison):
            continue
        rows.append(row_fields(i, ndev, base_ms))
    rows.sort(key=lambda r: (r[0], r[1]))
    text = "\n".join(",".join(str(x) for x in r) + "," + node for r in rows)
    return len(rows), hashlib.md5(text.encode()).hexdigest() if rows else None


CHECKSUM_SQL = """
SELECT count(*), md5(string_agg(device_id || ',' || seq || ','
    || (extract(epoch FROM measured_at) * 1000)::int8 || ','
    || (power_kw * 4)::int8 || ',' || coalesce((power_sigma_kw * 8)::int8, -1) || ','
    || (soc * 1024)::int8 || ',' || coalesce((soc_sigma * 64)::int8, -1) || ','
    || quality || ',' || node_id, E'\\n' ORDER BY device_id COLLATE "C", seq))
FROM telemetry"""


def db_checksum(pg):
    count, md5 = pg.psql(CHECKSUM_SQL).split("|")
    return int(count), md5 or None


def parse_stats(line):
    """Fields of a store_load "progress"/"drained" line as a dict of ints."""
    out = {}
    for part in line.split()[1:]:
        if "=" in part:
            k, v = part.split("=", 1)
            try:
                out[k] = int(v)
            except ValueError:
                pass
    return out
