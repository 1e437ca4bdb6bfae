#!/usr/bin/env python3
"""The cluster at scale (issue 15): --devices emulated batteries over mTLS
across --nodes vppd nodes (with --cluster, on one PostgreSQL), through
several HAProxy processes, on one machine whose per-process open-file limit
(20,000, hard) bounds every process: sessions reached, memory per session,
operator call -> last device command (the cluster's fan-out of a step), and,
with --kill, the fleet back after one node is killed (kill -9).

    /usr/bin/python3 bench/cluster_bench.py [--nodes 6] [--devices 100000]
        [--telemetry-interval-ms 10000] [--hold 20] [--kill] [--build DIR]

Layout (tests/integration/cluster.py's Cluster, Node, Emulator, PgCluster):

- N nodes, each `vppd --cluster` with 2 I/O threads, node-1..node-N.
- vpp-emulator takes one --server HOST:PORT and reconnects to that same
  address: it cannot fail over between nodes. So devices reach the nodes
  through HAProxy, as in production, but HAProxy holds two descriptors per
  device: one HAProxy process per --per-haproxy devices (9,000; maxconn
  --per-haproxy + 500, so each stays under 20,000 descriptors), each
  balancing leastconn over all nodes and health-checking their /readyz. When
  a node dies, every HAProxy closes its sessions to it and the devices
  reconnect through the same HAProxy to the others.
- One vpp-emulator process per HAProxy (its devices' own slice of indices),
  --per-address devices per source address (127.0.x.y, the emulator's
  --per-address), --connect-rate connections per second in all.
- PostgreSQL 15 from store_pg.PgCluster.

Device certificates are made once into --certs-dir (default
/tmp/vpp-cluster-bench-certs) and kept: the CAs by deploy/local/certs.sh,
the device certificates (same extensions, shared key, 825 days) signed in
this process with python3-cryptography (certs.sh runs one openssl process per
certificate: over an hour for 100,000 here).

The run changes, for its own duration only and printed: the soft open-file
limit (to the hard one), net.ipv4.ip_local_port_range, net.core.somaxconn,
net.ipv4.tcp_max_syn_backlog; they are restored at the end. It stops by
itself (--max-run-s) and removes every process, folder and PostgreSQL it
made, also on Ctrl-C, SIGTERM and errors.
"""
import argparse
import errno
import hashlib
import json
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import types

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import cluster as cl  # noqa: E402
import vpptest as vt  # noqa: E402
from store_pg import PgCluster  # noqa: E402

# ---------------------------------------------------------------- measures


def proc_status_kb(pid, key="VmRSS"):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def open_fds(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return None


def fd_limit(pid):
    """(soft, hard) 'Max open files' of |pid|."""
    try:
        with open("/proc/%d/limits" % pid) as f:
            for line in f:
                if line.startswith("Max open files"):
                    p = line.split()
                    return int(p[3]), int(p[4])
    except (OSError, ValueError):
        pass
    return None


def sockstat():
    """{'inuse': TCP sockets in use, 'mem_kb': TCP buffer memory}."""
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                p = line.split()
                return {"inuse": int(p[p.index("inuse") + 1]), "mem_kb": int(p[p.index("mem") + 1]) * 4}
    return {"inuse": 0, "mem_kb": 0}


SOCKET_SLABS = ("TCP", "TCPv6", "sock_inode_cache", "filp", "dentry", "eventpoll_epi", "eventpoll_pwq")


def socket_slab_kb():
    """Kernel memory (KB) of the slab caches that grow with each TCP
    connection (as bench/device_bench.py)."""
    total = 0
    try:
        with open("/proc/slabinfo") as f:
            for line in f:
                p = line.split()
                if p and p[0] in SOCKET_SLABS:
                    total += int(p[1]) * int(p[3])
    except OSError:
        return None
    return total / 1024


def cpu_s(pid):
    """utime + stime of |pid| (all threads), seconds."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            p = f.read().rsplit(")", 1)[1].split()
        return (int(p[11]) + int(p[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def hist(m, name):
    """Cumulative buckets [(le, count)] of histogram |name| summed over its
    series (every I/O loop)."""
    acc = {}
    for n, lbl, v in m.samples:
        if n == name + "_bucket":
            le = float("inf") if lbl["le"] == "+Inf" else float(lbl["le"])
            acc[le] = acc.get(le, 0) + v
    return sorted(acc.items())


def hist_delta(a, b):
    da = dict(a)
    return [(le, c - da.get(le, 0)) for le, c in b]


def hist_q(buckets, q):
    """Quantile |q| of cumulative |buckets|, interpolated in its bucket (as
    Prometheus' histogram_quantile); None when empty."""
    if not buckets or buckets[-1][1] <= 0:
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


def hist_max_le(buckets):
    """Upper edge of the highest non-empty bucket (an upper bound of the
    largest observation)."""
    prev = 0
    top = None
    for le, c in buckets:
        if c > prev:
            top = le
        prev = c
    return top


# ---------------------------------------------------------------- machine settings


class Settings:
    """Kernel settings changed for the run and restored by restore()."""

    def __init__(self):
        self.old = {}

    def sysctl(self, key, value):
        path = "/proc/sys/" + key.replace(".", "/")
        with open(path) as f:
            old = f.read().strip()
        if " ".join(old.split()) == value:
            return
        try:
            with open(path, "w") as f:
                f.write(value)
        except OSError as e:
            print("bench: could not set %s = %s (%s); kept %s" % (key, value, e, old), flush=True)
            return
        self.old[key] = old
        print("bench: sysctl %s: %s -> %s (restored at the end)" % (key, " ".join(old.split()), value), flush=True)

    def raise_at_least(self, key, value):
        with open("/proc/sys/" + key.replace(".", "/")) as f:
            if int(f.read().split()[0]) >= value:
                return
        self.sysctl(key, str(value))

    def restore(self):
        for key, old in self.old.items():
            try:
                with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
                    f.write(old)
                print("bench: sysctl %s restored to %s" % (key, " ".join(old.split())), flush=True)
            except OSError as e:
                print("bench: could not restore %s (%s)" % (key, e), flush=True)
        self.old = {}


# ---------------------------------------------------------------- certificates


def make_certs(d, n):
    """CAs and server certificate by deploy/local/certs.sh, then
    devices/dev-00000..dev-<n-1>.pem (what is missing) signed here, keys hard
    links to devices/shared.key, as certs.sh --shared-key does."""
    os.makedirs(os.path.join(d, "devices"), exist_ok=True)
    subprocess.run(["bash", os.path.join(ROOT, "deploy/local/certs.sh"), d, "--devices", "0", "--shared-key"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    missing = [i for i in range(n) if not os.path.exists(os.path.join(d, "devices", "dev-%05d.pem" % i))]
    if not missing:
        return 0
    import datetime
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    with open(os.path.join(d, "device-ca.pem"), "rb") as f:
        ca = x509.load_pem_x509_certificate(f.read())
    with open(os.path.join(d, "device-ca.key"), "rb") as f:
        ca_key = serialization.load_pem_private_key(f.read(), None)
    shared = os.path.join(d, "devices", "shared.key")
    with open(shared, "rb") as f:
        pub = serialization.load_pem_private_key(f.read(), None).public_key()
    ski = x509.SubjectKeyIdentifier.from_public_key(pub)
    aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
        ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value)
    now = datetime.datetime.now(datetime.timezone.utc)
    t0 = time.monotonic()
    link_to = shared
    for k, i in enumerate(missing):
        cn = "dev-%05d" % i
        c = (x509.CertificateBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
             .issuer_name(ca.subject).public_key(pub).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5))
             .not_valid_after(now + datetime.timedelta(days=825))
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                            critical=True)
             .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
             .add_extension(ski, critical=False).add_extension(aki, critical=False)
             .sign(ca_key, hashes.SHA256()))
        base = os.path.join(d, "devices", cn)
        key = base + ".key"
        if os.path.lexists(key):
            os.unlink(key)
        try:
            os.link(link_to, key)
        except OSError as e:
            if e.errno != errno.EMLINK:
                raise
            # ext4 allows 65,000 links to a file: go on from a copy.
            link_to = os.path.join(d, "devices", "shared.%d.key" % i)
            shutil.copyfile(shared, link_to)
            os.link(link_to, key)
        with open(base + ".pem.tmp", "wb") as f:
            f.write(c.public_bytes(serialization.Encoding.PEM))
        os.chmod(base + ".pem.tmp", 0o644)
        os.rename(base + ".pem.tmp", base + ".pem")
        if k and k % 20000 == 0:
            print("bench: %d/%d device certificates (%.0f s)" % (k, len(missing), time.monotonic() - t0),
                  flush=True)
    return len(missing)


# ---------------------------------------------------------------- the cluster


class BenchHAProxy(cl.HAProxy):
    """cl.HAProxy with its own maxconn: the harness sizes one HAProxy for the
    whole fleet (2 x devices + 512), which here would need far more than the
    20,000 descriptors a process may have."""

    def __init__(self, cluster, check_inter_ms, fall, rise, maxconn, name):
        super().__init__(cluster, check_inter_ms, fall, rise)
        self.maxconn = maxconn
        self.name = name

    def write_config(self):
        c = self.cluster
        inter, fall, rise = self.check
        argv = ["bash", os.path.join(vt.ROOT, "deploy/haproxy/gen-config.sh"), "--local",
                "--device-bind", "127.0.0.1:%d" % self.device_port,
                "--api-bind", "127.0.0.1:%d" % self.api_port,
                "--stats-bind", "127.0.0.1:%d" % self.stats_port, "--stats-socket", self.socket,
                "--maxconn", str(self.maxconn),
                "--check-inter-ms", str(inter), "--fall", str(fall), "--rise", str(rise), "-o", self.cfg]
        for n in c.nodes:
            argv += ["--node", "%s=127.0.0.1:%d:%d:%d" % (n.id, n.device_port, n.api_port, n.admin_port)]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError("gen-config.sh failed: " + r.stderr)

    def start(self, timeout=30):
        self.write_config()
        self.proc = vt.Proc(self.name, [cl.haproxy_path(), "-db", "-f", self.cfg])
        for port in (self.device_port, self.api_port, self.stats_port):
            vt.wait_port(port, timeout, self.proc.p)
        return self


class BenchCluster(cl.Cluster):
    """cl.Cluster started with several HAProxy processes (self.haproxies;
    self.haproxy is the first, the operators' way in) and certificates from a
    kept folder."""

    def __init__(self, certs_dir, per_haproxy, pg_settings=None, **kw):
        super().__init__(**kw)
        self.certs_dir = certs_dir
        self.per_haproxy = per_haproxy
        self.pg_settings = pg_settings
        self.haproxies = []
        self.baseline = {}

    def start(self, emulator=False, timeout=120):
        self.pg = PgCluster(self.pg_settings).__enter__()
        self.certs = self.certs_dir
        make_certs(self.certs, self.total_devices)
        tokdir = vt.tempdir("vpp-cluster-bench-tokens-")
        self.tokens = os.path.join(tokdir, "tokens")
        with open(self.tokens, "w") as f:
            f.write("cluster operator sha256:%s\n" % hashlib.sha256(self.token.encode()).hexdigest())
        ports = cl.free_ports(3 * self.n)
        self.nodes = [cl.Node(self, i + 1, ports[3 * i:3 * i + 3]) for i in range(self.n)]
        # The first node alone first: it migrates the database, and nodes
        # starting together would race to.
        self.nodes[0].start(wait=True, timeout=timeout)
        for n in self.nodes[1:]:
            n.start(wait=False)
        for n in self.nodes[1:]:
            n.wait_ready(timeout)
        time.sleep(2)
        k = max(1, math.ceil(self.devices / self.per_haproxy))
        for i in range(k):
            h = BenchHAProxy(self, *self.check, maxconn=self.per_haproxy + 500, name="haproxy-%d" % i)
            self.haproxies.append(h.start())
        self.haproxy = self.haproxies[0]
        for n in self.nodes:
            for h in self.haproxies:
                h.wait_state(n.id, "UP", timeout=timeout)
        return self

    def start_emulators(self, procs, extra):
        """|procs| emulator processes, the i-th through HAProxy i % k, the
        fleet's indices split evenly."""
        per = [self.devices // procs + (1 if i < self.devices % procs else 0) for i in range(procs)]
        first = 0
        for i, n in enumerate(per):
            h = self.haproxies[i % len(self.haproxies)]
            shim = types.SimpleNamespace(haproxy=h, certs=self.certs)
            e = cl.Emulator(shim, n, first, self.emulator_args + list(extra), "vpp-emulator-%d" % i)
            self.emulators.append(e)
            first += n

    def close(self):
        super().close()
        for h in self.haproxies[1:]:
            try:
                h.stop()
            except Exception:
                pass


# ---------------------------------------------------------------- the run


class Deadline(Exception):
    pass


def metrics(node):
    """The node's /metrics (empty when it does not answer within 10 s)."""
    try:
        return vt.read_metrics(node.admin_port, timeout=10)
    except OSError:
        return vt.Metrics([], "")


def traffic(nodes):
    """(setpoints sent, telemetry messages received) summed over |nodes|."""
    sp = tm = 0.0
    for n in nodes:
        if n.alive():
            m = metrics(n)
            sp += m.get("vpp_device_setpoints_sent_total")
            tm += m.get("vpp_device_telemetry_total")
    return sp, tm


def merge_groups(reports):
    """The emulators' fan-out groups merged across processes: {(valid_until,
    issued): [count, first_ms, last_ms]}."""
    g = {}
    for r in reports:
        for x in r.get("fanout", []):
            k = (x["valid_until_ms"], x["server_time_ms"])
            if k in g:
                v = g[k]
                v[0] += x["count"]
                v[1] = min(v[1], x["first_ms"])
                v[2] = max(v[2], x["last_ms"])
            else:
                g[k] = [x["count"], x["first_ms"], x["last_ms"]]
    return g


def true_kw_by_second(reports):
    """{Unix second: true kW of the whole fleet}, each process's per-second
    samples put on the second they fall in (processes started a fraction of
    a second apart); only seconds every process reported."""
    per = []
    for r in reports:
        d = {}
        for s in r.get("seconds", []):
            d[int(s["t_ms"] // 1000)] = s["true_kw"]
        per.append(d)
    if not per:
        return {}
    common = set(per[0])
    for d in per[1:]:
        common &= set(d)
    return {t: sum(d[t] for d in per) for t in sorted(common)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=6)
    ap.add_argument("--devices", type=int, default=100000)
    ap.add_argument("--telemetry-interval-ms", type=int, default=10000,
                    help="vppd's --device-telemetry-interval-ms (the devices follow it)")
    ap.add_argument("--hold", type=float, default=20, help="seconds each setpoint step is held")
    ap.add_argument("--steps", type=int, default=3, help="setpoint steps (sign alternating)")
    ap.add_argument("--kw-per-device", type=float, default=1.5, help="|target| = this x devices online")
    ap.add_argument("--kill", action="store_true", help="kill -9 the follower with the most devices")
    ap.add_argument("--kill-wait", type=float, default=90, help="longest wait for the devices to be back")
    ap.add_argument("--build", default=os.environ.get("VPP_BUILD", os.path.join(ROOT, "build")),
                    help="folder with server/vppd and tools/vpp-emulator (the release build)")
    ap.add_argument("--certs-dir", default="/tmp/vpp-cluster-bench-certs")
    ap.add_argument("--per-haproxy", type=int, default=9000, help="devices per HAProxy process")
    ap.add_argument("--emulators", type=int, default=0, help="emulator processes (0: one per HAProxy)")
    ap.add_argument("--emu-threads", type=int, default=1)
    ap.add_argument("--per-address", type=int, default=5000, help="emulator's --per-address")
    ap.add_argument("--connect-rate", type=int, default=1000, help="new connections per second, all emulators")
    ap.add_argument("--connect-timeout", type=float, default=200, help="longest wait for the fleet to connect")
    ap.add_argument("--tick-ms", type=int, default=1000)
    ap.add_argument("--fanout-window-ms", type=int, default=500,
                    help="commands issued this long after the call count as the step's fan-out")
    ap.add_argument("--max-run-s", type=int, default=480, help="the run stops itself after this")
    ap.add_argument("--json", help="write the results here too")
    a = ap.parse_args()

    build = os.path.abspath(a.build)
    if "asan" in os.path.basename(build.rstrip("/")):
        sys.exit("bench: %s looks like the ASan build; benchmarks use the release build" % build)
    for exe in ("server/vppd", "tools/vpp-emulator"):
        if not os.access(os.path.join(build, exe), os.X_OK):
            sys.exit("bench: no %s in %s" % (exe, build))
    os.environ["VPP_BUILD"] = build
    os.environ.pop("VPP_BUILD_RELEASE", None)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        print("bench: open-file limit (soft) %d -> %d for this run's processes (hard %d, unchanged)" % (
            soft, hard, hard), flush=True)
    fd_cap = hard
    per_node = a.devices / a.nodes
    print("bench: %d devices on %d nodes: %.0f per node (open-file limit %d)" % (
        a.devices, a.nodes, per_node, fd_cap), flush=True)
    if a.kill and a.devices / (a.nodes - 1) > fd_cap - 500:
        print("bench: WARNING: after the kill %d nodes would need %.0f sessions each, beyond what %d "
              "descriptors allow; expect the rest refused (--nodes %d fits)" % (
                  a.nodes - 1, a.devices / (a.nodes - 1), fd_cap,
                  int(math.ceil(a.devices / (fd_cap - 1000))) + 1), flush=True)

    settings = Settings()
    t_start = time.monotonic()

    def on_alarm(*_):
        raise Deadline("the run reached --max-run-s %d s" % a.max_run_s)

    def on_term(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, on_term)
    signal.alarm(a.max_run_s)

    res = {"nodes": a.nodes, "devices": a.devices, "args": vars(a)}
    c = BenchCluster(
        a.certs_dir, a.per_haproxy, pg_settings={"max_connections": "200"},
        nodes=a.nodes, devices=a.devices, cluster=True, check_inter_ms=1000, fall=2, rise=2,
        vppd_args=["--tick-ms", str(a.tick_ms), "--device-telemetry-interval-ms", str(a.telemetry_interval_ms),
                   "--log-level", "warn", "--journal-fsync", "never"],
        emulator_args=["--per-address", str(a.per_address), "--log-level", "error"])
    reports = []
    steps = []
    try:
        settings.sysctl("net.ipv4.ip_local_port_range", "10000 65535")
        settings.raise_at_least("net.core.somaxconn", 16384)
        settings.raise_at_least("net.ipv4.tcp_max_syn_backlog", 16384)
        t = time.monotonic()
        made = make_certs(a.certs_dir, a.devices)
        res["certs_made"] = made
        res["certs_s"] = time.monotonic() - t
        c.start()
        print("bench: %d nodes ready, %d HAProxy processes (maxconn %d each) (%.0f s)" % (
            a.nodes, len(c.haproxies), a.per_haproxy + 500, time.monotonic() - t_start), flush=True)
        for h in c.haproxies[:1]:
            print("bench: HAProxy open-file limit (soft, hard): %s" % (fd_limit(h.proc.p.pid),), flush=True)
        time.sleep(2)
        base = {n.id: proc_status_kb(n.proc.p.pid) for n in c.nodes}
        base_sock, base_slab = sockstat(), socket_slab_kb()
        base_hap = sum(proc_status_kb(h.proc.p.pid) for h in c.haproxies)

        # -- connect
        procs = a.emulators or len(c.haproxies)
        rate = max(1, a.connect_rate // procs)
        c.start_emulators(procs, ["--threads", str(a.emu_threads), "--connect-rate", str(rate)])
        t0 = time.monotonic()
        tr0 = traffic(c.nodes)
        t_first = None
        last_total, last_change = 0, t0
        curve = []
        cpu0 = {"vppd": sum(cpu_s(n.proc.p.pid) for n in c.nodes)}
        while True:
            time.sleep(1)
            on = c.online()
            total = sum(v or 0 for v in on.values())
            now = time.monotonic()
            if total and t_first is None:
                t_first = now
            if total > last_total:
                last_total, last_change = total, now
            curve.append((round(now - t0, 1), total))
            if int(now - t0) % 10 == 0:
                print("bench: %5.0f s online %6d %s load %.2f" % (
                    now - t0, total, [on[n.id] for n in c.nodes], os.getloadavg()[0]), flush=True)
            if total >= a.devices:
                break
            if now - t0 > a.connect_timeout or now - last_change > 30:
                break
        res["connect_s"] = time.monotonic() - (t_first or t0)
        tr1 = traffic(c.nodes)
        dtc = time.monotonic() - t0
        res["connect_setpoints_per_s"] = (tr1[0] - tr0[0]) / dtc
        res["connect_telemetry_per_s"] = (tr1[1] - tr0[1]) / dtc
        res["connect_curve"] = curve[::5]
        time.sleep(5)
        on = c.online()
        res["online"] = on
        res["online_total"] = sum(v or 0 for v in on.values())
        res["connect_to_99pct_s"] = next((t for t, v in curve if v >= 0.99 * a.devices), None)
        res["handshake_rate_per_s"] = res["online_total"] / res["connect_s"] if res["connect_s"] else None
        res["vppd_cpu_connect_s"] = sum(cpu_s(n.proc.p.pid) for n in c.nodes) - cpu0["vppd"]
        res["load_after_connect"] = os.getloadavg()

        # -- memory
        sock, slab = sockstat(), socket_slab_kb()
        sessions = max(res["online_total"], 1)
        mem = {}
        for n in c.nodes:
            rss = proc_status_kb(n.proc.p.pid)
            mem[n.id] = {"sessions": on[n.id], "rss_kb": rss, "rss_base_kb": base[n.id],
                         "per_session_kb": (rss - base[n.id]) / on[n.id] if on[n.id] else None,
                         "fds": open_fds(n.proc.p.pid), "fd_limit": fd_limit(n.proc.p.pid)}
        res["memory"] = mem
        res["rss_per_session_kb"] = (sum(m["rss_kb"] - m["rss_base_kb"] for m in mem.values()) / sessions)
        # Every device is four sockets on this machine (emulator, HAProxy's
        # two, vppd): vppd's end is a quarter of the growth.
        res["tcp_sockets_added"] = sock["inuse"] - base_sock["inuse"]
        res["tcp_mem_per_session_kb"] = (sock["mem_kb"] - base_sock["mem_kb"]) / sessions / 4
        res["slab_per_session_kb"] = (slab - base_slab) / sessions / 4 if slab is not None else None
        res["total_per_session_kb"] = (res["rss_per_session_kb"] + res["tcp_mem_per_session_kb"] +
                                       (res["slab_per_session_kb"] or 0))
        res["haproxy_rss_per_device_kb"] = (sum(proc_status_kb(h.proc.p.pid) for h in c.haproxies) -
                                            base_hap) / sessions
        res["emulator_rss_per_device_kb"] = sum(proc_status_kb(e.proc.p.pid) for e in c.emulators) / a.devices
        res["haproxy_fds_max"] = max(open_fds(h.proc.p.pid) or 0 for h in c.haproxies)
        res["emulator_fds_max"] = max(open_fds(e.proc.p.pid) or 0 for e in c.emulators)
        with open("/proc/meminfo") as f:
            res["mem_available_kb"] = next(int(l.split()[1]) for l in f if l.startswith("MemAvailable:"))
        print("bench: memory: %s" % json.dumps({k: res[k] for k in (
            "rss_per_session_kb", "slab_per_session_kb", "tcp_mem_per_session_kb", "total_per_session_kb",
            "haproxy_rss_per_device_kb", "emulator_rss_per_device_kb")}), flush=True)

        # -- setpoint steps: call -> last device command
        leader = next((n for n in c.nodes if metrics(n).get("vpp_cluster_leader") == 1), None)
        res["leader"] = leader.id if leader else None
        entry = next(n for n in reversed(c.nodes) if n is not leader)
        op = c.operator(entry)
        cpu0 = {n.id: cpu_s(n.proc.p.pid) for n in c.nodes}
        tcpu0 = time.monotonic()
        tr0 = traffic(c.nodes)
        for i in range(a.steps):
            sign = 1 if i % 2 == 0 else -1
            online = sum(v or 0 for v in c.online().values())
            target = sign * a.kw_per_device * online
            m0 = {n.id: hist(metrics(n), "vpp_device_fanout_seconds") for n in c.nodes}
            w0 = time.time()
            # A loaded machine can take seconds to answer: wait for the
            # connection, and give the call 30 s (the time is measured).
            op.call("SetFleetSetpoint", op.pb.SetFleetSetpointRequest(
                target_kw=target, valid_for_s=3600, request_id="cluster-bench-%d-%f" % (i, w0),
                reason="cluster bench"), timeout=30, wait_for_ready=True)
            rpc_ms = (time.time() - w0) * 1000
            time.sleep(a.hold)
            m1 = {n.id: hist(metrics(n), "vpp_device_fanout_seconds") for n in c.nodes}
            meas = sum(metrics(n).get("vpp_fleet_measured_kw") for n in c.nodes)
            d = [hist_delta(m0[k], m1[k]) for k in m0]
            allb = {}
            for b in d:
                for le, cnt in b:
                    allb[le] = allb.get(le, 0) + cnt
            allb = sorted(allb.items())
            steps.append({"step": i, "target_kw": target, "call_unix_ms": w0 * 1000, "rpc_ms": rpc_ms,
                          "entry_node": entry.id, "measured_kw_end": meas,
                          "vppd_fanout_p50_ms": (hist_q(allb, 0.5) or 0) * 1000,
                          "vppd_fanout_p99_ms": (hist_q(allb, 0.99) or 0) * 1000,
                          "vppd_fanout_max_le_ms": (hist_max_le(allb) or 0) * 1000,
                          "vppd_fanout_observations": allb[-1][1] if allb else 0})
            print("bench: step %d to %.0f kW: measured %.0f kW after %.0f s" % (i, target, meas, a.hold), flush=True)
        dt = time.monotonic() - tcpu0
        tr1 = traffic(c.nodes)
        res["hold_setpoints_per_s"] = (tr1[0] - tr0[0]) / dt
        res["hold_telemetry_per_s"] = (tr1[1] - tr0[1]) / dt
        res["vppd_cores_steady"] = {k: (cpu_s(n.proc.p.pid) - cpu0[n.id]) / dt for n in c.nodes for k in [n.id]}
        res["load_steady"] = os.getloadavg()

        # -- kill one node
        if a.kill:
            on = c.online()
            victim = max((n for n in c.nodes if n is not leader), key=lambda n: on[n.id] or 0)
            before = sum(v or 0 for v in on.values())
            target = steps[-1]["target_kw"] if steps else 0
            res["kill"] = {"node": victim.id, "its_devices": on[victim.id], "online_before": before,
                           "target_kw": target}
            survivors = [n for n in c.nodes if n is not victim]
            wk = time.time()
            tk = time.monotonic()
            victim.kill()
            back = {}
            tracked = None
            kcurve = []
            while time.monotonic() - tk < a.kill_wait:
                time.sleep(0.5)
                total = 0
                meas = 0.0
                for n in survivors:
                    try:
                        m = vt.read_metrics(n.admin_port, timeout=10)
                        total += int(m.get(*cl.ONLINE[:1], **cl.ONLINE[1]))
                        meas += m.get("vpp_fleet_measured_kw")
                    except OSError:
                        pass
                el = time.monotonic() - tk
                kcurve.append((round(el, 1), total, round(meas)))
                for frac in (0.9, 0.99, 0.999, 1.0):
                    if frac not in back and total >= frac * before:
                        back[frac] = el
                if tracked is None and target and abs(meas - target) <= 0.02 * abs(target) and 0.99 in back:
                    tracked = el
                if 1.0 in back and tracked is not None and el > back[1.0] + 5:
                    break
            res["kill"].update({"kill_unix_ms": wk * 1000, "back_s": {str(k): v for k, v in back.items()},
                                "online_after": kcurve[-1][1] if kcurve else None,
                                "measured_within_2pct_s": tracked, "curve": kcurve[::4],
                                "online_per_node": c.online()})
            print("bench: kill %s (%d devices): back %s, measured within 2%% after %s s" % (
                victim.id, on[victim.id], back, tracked), flush=True)
            time.sleep(min(a.hold, 10))
        signal.alarm(0)
    except (Deadline, KeyboardInterrupt) as e:
        res["stopped"] = repr(e)
        print("bench: stopping: %r" % (e,), flush=True)
    except Exception as e:  # noqa: BLE001 (reported with what was measured so far)
        import traceback
        traceback.print_exc()
        res["error"] = repr(e)[:500]
        print("bench: error, stopping: %r" % (e,), flush=True)
    finally:
        signal.alarm(0)
        for e in c.emulators:
            try:
                reports.append(e.stop(timeout=60))
            except Exception as ex:  # noqa: BLE001
                print("bench: %s: no report (%s)" % (e.proc.name, ex), flush=True)
        try:
            c.close()
        finally:
            vt.cleanup_all()
            settings.restore()

    # -- from the emulators' ground truth
    groups = merge_groups(reports)
    for s in steps:
        t = s["call_unix_ms"]
        g = [(k, v) for k, v in groups.items() if t <= k[1] <= t + a.fanout_window_ms]
        cnt = sum(v[0] for _, v in g)
        s["commands_in_window"] = cnt
        s["ticks_in_window"] = len(g)
        s["first_issued_ms"] = min((k[1] for k, _ in g), default=t) - t
        s["call_to_first_receipt_ms"] = min((v[1] for _, v in g), default=t) - t
        s["call_to_last_receipt_ms"] = max((v[2] for _, v in g), default=t) - t
        big = sorted(g, key=lambda kv: kv[1][0], reverse=True)[:a.nodes]
        s["largest_ticks"] = [{"issued_after_call_ms": k[1] - t, "count": v[0],
                               "first_ms": v[1] - t, "last_ms": v[2] - t} for k, v in sorted(big)]
    res["steps"] = steps
    tk = true_kw_by_second(reports)
    if a.kill and "kill" in res and tk:
        ks = int(res["kill"]["kill_unix_ms"] // 1000)
        tgt = res["kill"]["target_kw"]
        after = [(t - ks, kw) for t, kw in tk.items() if t >= ks]
        res["kill"]["true_kw_after"] = [(d, round(kw)) for d, kw in after[:60]]
        dev = [abs(kw - tgt) / abs(tgt) for _, kw in after] if tgt else []
        res["kill"]["true_worst_dev_pct"] = 100 * max(dev) if dev else None
        # First second from which the ground truth stays within 2% to the end.
        ok = None
        for i in range(len(after)):
            if all(abs(kw - tgt) <= 0.02 * abs(tgt) for _, kw in after[i:]):
                ok = after[i][0]
                break
        res["kill"]["true_within_2pct_from_s"] = ok
    res["emulator_counters"] = {}
    for r in reports:
        for k, v in (r.get("counters") or {}).items():
            if isinstance(v, (int, float)):
                res["emulator_counters"][k] = res["emulator_counters"].get(k, 0) + v
    res["wall_s"] = time.monotonic() - t_start
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    print(json.dumps({k: v for k, v in res.items() if k not in ("connect_curve",)}, indent=1, default=str))
    table(res, a)


def table(res, a):
    f = lambda v, fmt="%.1f": "n/a" if v is None else fmt % v  # noqa: E731
    on = res.get("online") or {}
    mem = res.get("memory") or {}
    print("\n| what | %d nodes, %d devices |\n| --- | ---: |" % (a.nodes, a.devices))
    print("| sessions reached (all nodes) | %s of %d |" % (res.get("online_total"), a.devices))
    print("| sessions per node | %s |" % ", ".join("%s" % on[k] for k in sorted(on)))
    print("| descriptors per node (of the limit) | %s |" % ", ".join(
        "%s/%s" % (m["fds"], (m["fd_limit"] or (None,))[0]) for _, m in sorted(mem.items())))
    print("| connect, first to last online | %s s (%s new sessions/s; 99%% at %s s) |" % (
        f(res.get("connect_s")), f(res.get("handshake_rate_per_s"), "%.0f"), f(res.get("connect_to_99pct_s"))))
    print("| vppd RSS per session | %s KB |" % f(res.get("rss_per_session_kb")))
    print("| kernel socket slabs per session (vppd's end) | %s KB |" % f(res.get("slab_per_session_kb")))
    print("| kernel TCP buffers per session (vppd's end) | %s KB |" % f(res.get("tcp_mem_per_session_kb")))
    print("| memory per session, RSS + kernel | **%s KB** |" % f(res.get("total_per_session_kb")))
    print("| HAProxy RSS per device (all processes) | %s KB |" % f(res.get("haproxy_rss_per_device_kb")))
    print("| vpp-emulator RSS per device | %s KB |" % f(res.get("emulator_rss_per_device_kb")))
    for s in res.get("steps", []):
        print("| step %d (%+.0f kW, via %s): call -> first / last device command received | %s / **%s ms** "
              "(%d commands from %d ticks issued within %d ms of the call) |" % (
                  s["step"], s["target_kw"], s["entry_node"], f(s.get("call_to_first_receipt_ms")),
                  f(s.get("call_to_last_receipt_ms")), s.get("commands_in_window", 0),
                  s.get("ticks_in_window", 0), a.fanout_window_ms))
        print("| step %d: vppd fan-out histogram, tick start -> last write, p50 / p99 / max bucket | "
              "%s / %s / <= %s ms |" % (s["step"], f(s["vppd_fanout_p50_ms"]), f(s["vppd_fanout_p99_ms"]),
                                        f(s["vppd_fanout_max_le_ms"])))
    k = res.get("kill")
    if k:
        b = k.get("back_s", {})
        print("| kill -9 %s (%s devices): online on the others back to 90%% / 99%% / 99.9%% / 100%% | "
              "%s / %s / %s / %s s |" % (k["node"], k["its_devices"], f(b.get("0.9")), f(b.get("0.99")),
                                         f(b.get("0.999")), f(b.get("1.0"))))
        print("| after the kill: vppd's measured power within 2%% of the target | %s s |" % f(
            k.get("measured_within_2pct_s")))
        print("| after the kill: true power (emulators) within 2%% from / worst deviation | %s s / %s %% |" % (
            f(k.get("true_within_2pct_from_s"), "%d"), f(k.get("true_worst_dev_pct"))))
    print("| setpoints sent / telemetry received per s, while connecting | %s / %s |" % (
        f(res.get("connect_setpoints_per_s"), "%.0f"), f(res.get("connect_telemetry_per_s"), "%.0f")))
    print("| setpoints sent / telemetry received per s, while holding the steps | %s / %s |" % (
        f(res.get("hold_setpoints_per_s"), "%.0f"), f(res.get("hold_telemetry_per_s"), "%.0f")))
    vc = res.get("vppd_cores_steady")
    if vc:
        print("| vppd CPU while holding, per node | %s cores |" % ", ".join("%.2f" % v for _, v in sorted(vc.items())))
    print("| load average after connect / while holding | %s / %s |" % (
        f((res.get("load_after_connect") or [None])[0], "%.2f"), f((res.get("load_steady") or [None])[0], "%.2f")))


if __name__ == "__main__":
    main()
