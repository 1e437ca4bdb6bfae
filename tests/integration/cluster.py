"""Harness for the cluster tests (not a test itself): a throw-away PostgreSQL
cluster, dev certificates, N vppd nodes behind HAProxy (a configuration from
deploy/haproxy/gen-config.sh) and vpp-emulator fleets that reach the nodes
through HAProxy, as devices would in production (DESIGN.md §8).

    with Cluster(nodes=3, devices=200) as c:      # starts everything
        c.wait_online(200, timeout=30)
        c.node("node-2").kill()                     # kill -9
        op = c.operator()                           # GridOperator via HAProxy
        op.status().devices_online
        c.node(2).restart()                         # same ports and journal
        c.haproxy.wait_state("node-2", "UP")
        report = c.emulator.stop()                  # the ground truth (JSON)

Every process is a vpptest.Proc (killed if the test dies; logs in files) and
everything is stopped and removed by Cluster.close() (the with block) and
vpptest.cleanup_all(). Nodes run with --cluster when |cluster| is true, or
by default when this vppd knows the flag; otherwise each node runs alone on
the shared database, which still tests what HAProxy does. The operator API
is h2c unless |api_tls|; device sessions are always mTLS (passed through by
HAProxy). Only loopback addresses are used.
"""
import csv
import hashlib
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "interop"))
sys.path.insert(0, HERE)
import vpptest as vt  # noqa: E402
from store_pg import PgCluster  # noqa: E402

TOKEN = "cluster-operator-token"
ONLINE = ("vpp_fleet_devices", {"state": "online"})


def wait_for(fn, timeout, what, interval=0.1):
    """Polls fn() until it returns a true value, which it returns; raises
    AssertionError naming |what| (and the last value) after |timeout| s."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError("%s: not within %.0f s (last: %r)" % (what, timeout, last))
        time.sleep(interval)


def release_or_asan(name):
    """The emulator drives the load: its release build keeps a test within
    its time even when vppd is the sanitizer build (as in test_plant_e2e)."""
    rel = os.environ.get("VPP_BUILD_RELEASE")
    if rel and os.path.exists(os.path.join(rel, name)):
        return os.path.join(rel, name)
    return os.path.join(vt.build_dir(), name)


def vppd_path():
    return os.path.join(vt.build_dir(), "server", "vppd")


def vppd_has_cluster(exe=None):
    """Whether this vppd has the --cluster flag (its --help lists it)."""
    r = subprocess.run([exe or vppd_path(), "--help"], capture_output=True, text=True, timeout=30)
    return re.search(r"^\s*--cluster\s", r.stdout + r.stderr, re.M) is not None


def haproxy_path():
    exe = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not os.path.exists(exe):
        raise RuntimeError("haproxy is not installed (deploy/local/bootstrap.sh installs it)")
    return exe


def free_ports(n):
    """|n| distinct loopback ports that were free a moment ago."""
    out = []
    while len(out) < n:
        p = vt.free_port()
        if p not in out:
            out.append(p)
    return out


def readyz(admin_port, timeout=2):
    """(status, body) of GET /readyz on |admin_port|; (None, why) when it does
    not answer."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/readyz" % admin_port, timeout=timeout) as r:
            return r.status, r.read(500).decode("utf-8", "replace").strip()
    except urllib.error.HTTPError as e:
        return e.code, e.read(500).decode("utf-8", "replace").strip()
    except OSError as e:
        return None, str(e)


# ---------------------------------------------------------------- vppd


class Node:
    """One vppd node. Its ports and journal stay the same across restarts;
    each run is a new vt.Proc (proc; every run's Proc in procs)."""

    def __init__(self, cluster, index, ports):
        self.cluster = cluster
        self.index = index  # 1-based
        self.id = "node-%d" % index
        self.api_port, self.device_port, self.admin_port = ports
        self.journal = vt.tempdir("vpp-%s-journal-" % self.id)
        self.extra = []
        self.database_url = None  # None: the cluster's PostgreSQL
        self.proc = None
        self.procs = []

    @property
    def api_target(self):
        return "127.0.0.1:%d" % self.api_port

    def argv(self):
        c = self.cluster
        p = c.cert
        a = [c.vppd, "--node-id", self.id, "--io-threads", "2",
             "--api-addr", "127.0.0.1", "--api-port", str(self.api_port),
             "--device-addr", "127.0.0.1", "--device-port", str(self.device_port),
             "--admin-addr", "127.0.0.1", "--admin-port", str(self.admin_port),
             "--tls-cert", p("server.pem"), "--tls-key", p("server.key"), "--device-ca", p("device-ca.pem"),
             "--tokens-file", c.tokens, "--journal-dir", self.journal]
        if not c.api_tls:
            a.append("--api-h2c")
        if c.pg is not None:
            a += ["--database-url", self.database_url or c.pg.conninfo]
        if c.cluster:
            a.append("--cluster")
            if c.api_tls:  # the device queries a node asks its peers
                a += ["--cluster-peer-ca", p("ca.pem")]
            for k, v in sorted(c.cluster_opts.items()):
                a += ["--cluster-" + k.replace("_", "-"), str(v)]
        return a + list(c.vppd_args) + list(self.extra)

    def start(self, wait=True, timeout=60, env=None):
        """Starts a new run of this node (it must not be running), with
        |env| added to the environment; with |wait|, returns once its
        /readyz answers 200."""
        if self.alive():
            raise RuntimeError("%s is already running" % self.id)
        env = dict(os.environ, **(env or {}))
        # kill -9 is part of these tests: no leak report at exit, and a
        # sanitizer finding does not abort in the middle of a check.
        env.setdefault("ASAN_OPTIONS", "detect_leaks=0:abort_on_error=0")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        name = self.id if not self.procs else "%s.run%d" % (self.id, len(self.procs) + 1)
        self.proc = vt.Proc(name, self.argv(), env=env)
        self.procs.append(self.proc)
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=60):
        """Waits until /readyz answers 200; raises (with the log's end) when
        the node exits first or |timeout| s pass."""
        deadline = time.monotonic() + timeout
        why = "not started"
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError("%s exited with %s while starting:\n%s" % (
                    self.id, self.proc.p.returncode if self.proc else None, self.log_tail()))
            code, why = readyz(self.admin_port)
            if code == 200:
                return
            time.sleep(0.05)
        raise RuntimeError("%s not ready within %.0f s (/readyz: %s)\n%s" % (self.id, timeout, why, self.log_tail()))

    def readyz(self):
        """(status, body) of its /readyz, (None, why) when it does not answer."""
        return readyz(self.admin_port)

    def alive(self):
        return self.proc is not None and self.proc.alive()

    def stop(self, timeout=15):
        """SIGTERM (a graceful stop: devices are told to back off), SIGKILL
        after |timeout| s; returns the exit status."""
        if self.proc is None:
            return None
        self.signal(signal.SIGCONT)  # a paused node would not hear SIGTERM
        return self.proc.stop(timeout)

    def kill(self):
        """kill -9, as a crash would; returns once the process is gone."""
        if self.alive():
            self.proc.signal(signal.SIGKILL)
            self.proc.wait(30)
        return self.proc.p.returncode if self.proc else None

    def pause(self):
        """SIGSTOP: a hung node. Its sockets stay open; only health checks
        (and the devices' own silence timeout) can tell."""
        self.signal(signal.SIGSTOP)

    def resume(self):
        self.signal(signal.SIGCONT)

    def signal(self, sig):
        if self.alive():
            self.proc.signal(sig)

    def restart(self, kill=False, wait=True, timeout=60):
        """Stops the node (SIGTERM, or SIGKILL with |kill|) and starts it
        again on the same ports and journal."""
        if kill:
            self.kill()
        else:
            self.stop()
        return self.start(wait=wait, timeout=timeout)

    def metrics(self):
        return vt.read_metrics(self.admin_port)

    def online(self):
        """Its vpp_fleet_devices{state="online"}; None when it does not answer."""
        if not self.alive():
            return None
        try:
            return int(self.metrics().get(ONLINE[0], **ONLINE[1]))
        except OSError:
            return None

    def operator(self):
        """A GridOperator client straight to this node (not through HAProxy)."""
        return self.cluster.operator(self)

    def log_tail(self, n=30):
        return self.proc.log_tail(n) if self.proc else ""

    def run_logs(self):
        """Each run's log, oldest first."""
        out = []
        for p in self.procs:
            if not p._log.closed:
                p._log.flush()
            with open(p.log_path, "rb") as f:
                out.append(f.read().decode("utf-8", "replace"))
        return out

    def log(self):
        """This node's whole log, every run (oldest first)."""
        return "".join(self.run_logs())


# ---------------------------------------------------------------- HAProxy


def haproxy_stats(stats_port):
    """Rows of the CSV statistics of the HAProxy whose stats frontend is on
    |stats_port|, as dicts keyed by its column names (pxname, svname,
    status, scur, check_status, check_code, ...)."""
    with urllib.request.urlopen("http://127.0.0.1:%d/stats;csv" % stats_port, timeout=5) as r:
        text = r.read().decode("utf-8", "replace")
    return list(csv.DictReader(io.StringIO(text.lstrip("# "))))


def haproxy_server(stats_port, name, backend="vppd_devices"):
    """The stats row of server |name| in |backend| (vppd_devices or
    vppd_operators)."""
    for row in haproxy_stats(stats_port):
        if row["pxname"] == backend and row["svname"] == name:
            return row
    raise KeyError("%s/%s not in HAProxy's stats" % (backend, name))


class HAProxy:
    """HAProxy in the foreground (haproxy -db: no daemon, no master process,
    so the vt.Proc is HAProxy itself), with a configuration generated for the
    cluster's nodes: frontends device_port and api_port, stats on stats_port,
    the runtime API on socket."""

    def __init__(self, cluster, check_inter_ms, fall, rise):
        self.cluster = cluster
        self.device_port, self.api_port, self.stats_port = free_ports(3)
        d = vt.tempdir("vpp-haproxy-")
        self.cfg = os.path.join(d, "haproxy.cfg")
        self.socket = os.path.join(d, "admin.sock")
        self.check = (check_inter_ms, fall, rise)
        self.proc = None

    def write_config(self):
        c = self.cluster
        inter, fall, rise = self.check
        argv = ["bash", os.path.join(vt.ROOT, "deploy/haproxy/gen-config.sh"), "--local",
                "--device-bind", "127.0.0.1:%d" % self.device_port,
                "--api-bind", "127.0.0.1:%d" % self.api_port,
                "--stats-bind", "127.0.0.1:%d" % self.stats_port, "--stats-socket", self.socket,
                # Each device is two descriptors; HAProxy raises its limit
                # to fit, and 2.6 refuses to start when it cannot.
                "--maxconn", str(max(4096, 2 * c.total_devices + 512)),
                "--check-inter-ms", str(inter), "--fall", str(fall), "--rise", str(rise), "-o", self.cfg]
        for n in c.nodes:
            argv += ["--node", "%s=127.0.0.1:%d:%d:%d" % (n.id, n.device_port, n.api_port, n.admin_port)]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError("gen-config.sh failed: " + r.stderr)
        r = subprocess.run([haproxy_path(), "-c", "-q", "-f", self.cfg], capture_output=True, text=True,
                           timeout=30)
        if r.returncode != 0:
            raise RuntimeError("haproxy -c: " + (r.stdout + r.stderr)[-2000:])

    def start(self, timeout=20):
        """Writes the configuration, starts HAProxy and waits until it has
        checked every running node up."""
        self.write_config()
        self.proc = vt.Proc("haproxy", [haproxy_path(), "-db", "-f", self.cfg])
        for port in (self.device_port, self.api_port, self.stats_port):
            vt.wait_port(port, timeout, self.proc.p)
        for n in self.cluster.nodes:
            if n.alive():
                self.wait_state(n.id, "UP", timeout=timeout)
        return self

    def stop(self):
        return self.proc.stop() if self.proc else None

    @property
    def device_target(self):
        return "127.0.0.1:%d" % self.device_port

    @property
    def api_target(self):
        return "127.0.0.1:%d" % self.api_port

    def stats(self):
        """haproxy_stats() of this HAProxy."""
        return haproxy_stats(self.stats_port)

    def server(self, node_id, backend="vppd_devices"):
        """haproxy_server() of |node_id| in this HAProxy."""
        return haproxy_server(self.stats_port, node_id, backend)

    def state(self, node_id, backend="vppd_devices"):
        """Its state as HAProxy sees it: "UP", "DOWN", "UP 1/2" (going
        down), "DOWN 1/2" (coming up), "NOLB" (/readyz 404: draining),
        "DRAIN" or "MAINT" (set on the runtime API), ..."""
        return self.server(node_id, backend)["status"]

    def sessions(self, node_id, backend="vppd_devices"):
        """Connections HAProxy holds to the node now."""
        return int(self.server(node_id, backend)["scur"] or 0)

    def wait_state(self, node_id, state, timeout=20, backend=None):
        """Waits until HAProxy's state of |node_id| is exactly |state| in
        |backend|, or in both backends when it is None."""
        backends = [backend] if backend else ["vppd_devices", "vppd_operators"]
        wait_for(lambda: all(self.state(node_id, b) == state for b in backends), timeout,
                 "HAProxy: %s %s" % (node_id, state))

    def command(self, line):
        """Sends one runtime-API command (e.g. "set server vppd_devices/node-2
        state drain") on the stats socket; returns the answer."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect(self.socket)
            s.sendall(line.encode() + b"\n")
            out = b""
            while True:
                d = s.recv(65536)
                if not d:
                    break
                out += d
            return out.decode("utf-8", "replace")
        finally:
            s.close()

    def log_tail(self, n=30):
        return self.proc.log_tail(n) if self.proc else ""


# ---------------------------------------------------------------- emulator

_PROGRESS = re.compile(r"vpp-emulator: connected (\d+)/(\d+)\s+true power (-?[0-9.]+) kW")


class Emulator:
    """A vpp-emulator fleet connected through HAProxy. progress() reads its
    progress line (every second); stop() ends it and returns its report."""

    def __init__(self, cluster, devices, first_index, extra, name):
        self.devices = devices
        self.report_path = os.path.join(vt.tempdir("vpp-emu-"), "report.json")
        argv = [release_or_asan("tools/vpp-emulator"), "--server", cluster.haproxy.device_target,
                "--certs", cluster.certs, "--devices", str(devices), "--first-index", str(first_index),
                "--report", self.report_path, "--threads", "2", "--progress-s", "1",
                "--seed", str(1 + first_index)]
        self.proc = vt.Proc(name, argv + list(extra))
        self._report = None

    def progress(self):
        """{"connected": n, "devices": n, "true_kw": kW} from its newest
        progress line; None before the first."""
        with open(self.proc.log_path, "rb") as f:
            text = f.read().decode("utf-8", "replace")
        m = None
        for m in _PROGRESS.finditer(text):
            pass
        if not m:
            return None
        return {"connected": int(m.group(1)), "devices": int(m.group(2)), "true_kw": float(m.group(3))}

    def stop(self, timeout=30):
        """SIGTERM: it writes its ground-truth report; returns it (parsed JSON:
        counters, errors, seconds with true_kw per second, devices)."""
        if self._report is None:
            if self.proc.alive():
                self.proc.signal(signal.SIGTERM)
                if self.proc.wait(timeout) is None:
                    raise RuntimeError("vpp-emulator did not stop within %d s" % timeout)
            self.proc.stop()
            self._report = self.report()
        return self._report

    def report(self):
        """The report it wrote (it writes it when it stops)."""
        if self._report is not None:
            return self._report
        with open(self.report_path) as f:
            return json.load(f)

    def log_tail(self, n=10):
        return self.proc.log_tail(n)


# ---------------------------------------------------------------- operators


class Operator:
    """A GridOperator client with the cluster's bearer token, to |target|.
    stub is the grpc stub, pb the grid_pb2 module; call(name, request) adds
    the token. A new connection each: through HAProxy each lands on the
    node its balancing picks."""

    def __init__(self, target, token, ca=None):
        import grpc
        v = vt.vpp_stubs()
        self.pb = v.grid_pb2
        self.target = target
        # Its own subchannel (not shared with other clients to the same
        # address), and quick reconnects after a node dies.
        opts = [("grpc.use_local_subchannel_pool", 1), ("grpc.initial_reconnect_backoff_ms", 100),
                ("grpc.min_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 1000)]
        if ca:
            opts.append(("grpc.ssl_target_name_override", "localhost"))
            with open(ca, "rb") as f:
                self.channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(f.read()), options=opts)
        else:
            self.channel = grpc.insecure_channel(target, options=opts)
        self.stub = v.grid_pb2_grpc.GridOperatorStub(self.channel)
        self.md = [("authorization", "Bearer " + token)]

    def call(self, method, request, timeout=10, wait_for_ready=None):
        return getattr(self.stub, method)(request, metadata=self.md, timeout=timeout,
                                          wait_for_ready=wait_for_ready)

    def status(self, timeout=10, wait_for_ready=None):
        """GetFleetStatus."""
        return self.call("GetFleetStatus", self.pb.GetFleetStatusRequest(), timeout, wait_for_ready)

    def set(self, target_kw, valid_for_s=120, request_id="", reason="cluster test", ramp_kw_per_s=0.0,
            timeout=10):
        """SetFleetSetpoint."""
        return self.call("SetFleetSetpoint", self.pb.SetFleetSetpointRequest(
            target_kw=target_kw, valid_for_s=valid_for_s, request_id=request_id, reason=reason,
            ramp_kw_per_s=ramp_kw_per_s), timeout)

    def nodes(self, timeout=10):
        """ListNodes (cluster mode)."""
        return self.call("ListNodes", self.pb.ListNodesRequest(), timeout)

    def close(self):
        self.channel.close()


# ---------------------------------------------------------------- cluster


class Cluster:
    """PostgreSQL, certificates, |nodes| vppd nodes (node-1..node-N), HAProxy,
    and (start(emulator=True)) a fleet of |devices| emulated batteries.

    cluster: --cluster on each node (None: when this vppd has the flag);
    cluster_opts: {"node_timeout_ms": 3000, ...} -> --cluster-node-timeout-ms;
    vppd_args: more flags for every node (Node.extra: for one node);
    spare_devices: certificates beyond the fleet (dev-<devices>...) for
    start_emulator(first_index=devices); database: False runs the nodes
    without PostgreSQL; check_inter_ms, fall, rise: HAProxy's checks (fast:
    a dead node is down within about a second)."""

    def __init__(self, nodes=3, devices=200, cluster=None, cluster_opts=None, vppd_args=(), spare_devices=0,
                 api_tls=False, database=True, token=TOKEN, check_inter_ms=500, fall=2, rise=2,
                 emulator_args=()):
        self.n = nodes
        self.devices = devices
        self.total_devices = devices + spare_devices
        self.vppd = vppd_path()
        self.cluster = vppd_has_cluster(self.vppd) if cluster is None else cluster
        self.cluster_opts = dict(cluster_opts or {})
        self.vppd_args = list(vppd_args)
        self.api_tls = api_tls
        self.database = database
        self.token = token
        self.emulator_args = list(emulator_args)
        self.check = (check_inter_ms, fall, rise)
        self.pg = None
        self.certs = None
        self.tokens = None
        self.nodes = []
        self.haproxy = None
        self.emulator = None
        self.emulators = []
        self.operators = []

    # -- life cycle

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc):
        self.close()

    def start(self, emulator=True, timeout=60):
        """Starts everything; with |emulator|, the fleet too (self.emulator),
        without waiting for it to connect (wait_online)."""
        if self.database:
            self.pg = PgCluster().__enter__()
        self.certs = vt.tempdir("vpp-cluster-certs-")
        r = subprocess.run(["bash", os.path.join(vt.ROOT, "deploy/local/certs.sh"), self.certs,
                            "--devices", str(self.total_devices), "--shared-key"],
                           capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise RuntimeError("certs.sh: " + r.stderr[-2000:])
        self.tokens = self.cert("tokens")
        with open(self.tokens, "w") as f:
            f.write("cluster operator sha256:%s\n" % hashlib.sha256(self.token.encode()).hexdigest())
        ports = free_ports(3 * self.n)
        self.nodes = [Node(self, i + 1, ports[3 * i:3 * i + 3]) for i in range(self.n)]
        # All start together (and, in a cluster, meet in the database), then
        # each must become ready.
        for n in self.nodes:
            n.start(wait=False)
        for n in self.nodes:
            n.wait_ready(timeout)
        self.haproxy = HAProxy(self, *self.check).start()
        if emulator:
            self.emulator = self.start_emulator()
        return self

    def close(self):
        """Stops the fleets, HAProxy, the nodes (gracefully: their stores
        flush) and PostgreSQL; safe to call twice."""
        for op in self.operators:
            try:
                op.close()
            except Exception:
                pass
        self.operators = []
        for e in self.emulators:
            e.proc.stop(10)
        if self.haproxy:
            self.haproxy.stop()
        for n in reversed(self.nodes):
            try:
                n.stop()
            except Exception:
                pass
        if self.pg is not None:
            pg, self.pg = self.pg, None
            pg.__exit__(None, None, None)

    # -- parts

    def cert(self, name):
        """A path in the certificate folder (ca.pem, server.pem, ...)."""
        return os.path.join(self.certs, name)

    def node(self, which):
        """A node by its id ("node-2") or its 1-based index (2)."""
        if isinstance(which, Node):
            return which
        if isinstance(which, int):
            return self.nodes[which - 1]
        for n in self.nodes:
            if n.id == which:
                return n
        raise KeyError(which)

    def start_emulator(self, devices=None, first_index=0, extra=(), name=None):
        """Starts a vpp-emulator fleet of |devices| (default: the cluster's)
        from device index |first_index|, through HAProxy."""
        devices = self.devices if devices is None else devices
        if first_index + devices > self.total_devices:
            raise ValueError("only %d device certificates (spare_devices)" % self.total_devices)
        e = Emulator(self, devices, first_index, self.emulator_args + list(extra),
                     name or "vpp-emulator-%d" % len(self.emulators))
        self.emulators.append(e)
        return e

    def operator(self, node=None):
        """A GridOperator client through HAProxy, or straight to |node| (an
        id, an index or a Node). Closed by close()."""
        target = self.haproxy.api_target if node is None else self.node(node).api_target
        op = Operator(target, self.token, self.cert("ca.pem") if self.api_tls else None)
        self.operators.append(op)
        return op

    # -- observations

    def online(self):
        """{node id: devices online} of every node (None: not answering)."""
        return {n.id: n.online() for n in self.nodes}

    def total_online(self):
        return sum(v or 0 for v in self.online().values())

    def wait_online(self, want, timeout=30, nodes=None):
        """Waits until the nodes (all, or the ids in |nodes|) together have
        at least |want| devices online; returns online()."""
        ids = set(nodes) if nodes else None

        def enough():
            on = self.online()
            total = sum(v or 0 for k, v in on.items() if ids is None or k in ids)
            return on if total >= want else None
        return wait_for(enough, timeout, "%d devices online on %s" % (want, sorted(ids) if ids else "the nodes"),
                        interval=0.25)

    def psql(self, sql):
        return self.pg.psql(sql)

    def logs(self, n=15):
        """The end of every log, for Runner.on_fail."""
        out = []
        for node in self.nodes:
            out.append("%s:\n%s" % (node.id, node.log_tail(n)))
        if self.haproxy:
            out.append("haproxy:\n" + self.haproxy.log_tail(n))
        for e in self.emulators:
            out.append("%s:\n%s" % (e.proc.name, e.log_tail(5)))
        return "\n".join(out)
