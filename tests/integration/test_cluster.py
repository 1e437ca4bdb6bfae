#!/usr/bin/env python3
"""The cluster, end to end (DESIGN.md §8): three vppd nodes with --cluster on
one PostgreSQL 15, HAProxy in front (TLS passthrough, /readyz checks), and
vpp-emulator's 1,000 batteries (some faulty) connecting through HAProxy.
Checked against the emulator's ground truth (its true fleet power, read
every half second):

1. a step is tracked within 2% in 15 s, and the shares sum to the target;
2. kill -9 a follower: its devices reconnect to the others and the fleet is
   back within 2% in 20 s;
3. kill -9 the leader: a new leader (a newer epoch) within 5 s, the fleet
   back within 2% in 20 s, the setpoint in force kept;
4. a rolling restart of all three nodes, each drained first (DrainNode), keeps
   the fleet within 5% of the target throughout;
5. SetFleetSetpoint is idempotent across nodes (the same request_id through
   another node gives the same setpoint; other values: ALREADY_EXISTS);
6. a node cut off from PostgreSQL (a relay the test controls goes silent)
   stops leading, another leads, the cut node's share runs out, and no two
   epochs are ever obeyed at once (from the nodes' logs);
7. PostgreSQL killed and restarted: every telemetry sample the emulator sent
   is stored once.
Plus: a second node with a node id already live is refused; a node whose
clock is far off the database's is refused; ListNodes shows every node."""
import datetime
import json
import os
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import cluster as cl  # noqa: E402  (puts tests/interop on the path)
import vpptest as vt  # noqa: E402

import grpc  # noqa: E402

N = 1000
FAULTS = dict(offline=0.02, flaky=0.02, ignore=0.02, partial=0.02, late_ack=0.02)
TARGET = 1500.0
OPTS = {"node_timeout_ms": 3000}


class Truth:
    """The emulator's true fleet power, sampled every 0.5 s on a thread."""

    def __init__(self, emulator):
        self.emu = emulator
        self.samples = []  # (monotonic s, kW)
        self.stop = False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        last = None
        while not self.stop:
            try:
                p = self.emu.progress()
            except OSError:  # its log is gone: the test is over
                return
            if p is not None and p != last:
                self.samples.append((time.monotonic(), p["true_kw"]))
                last = p
            time.sleep(0.5)

    def since(self, t0):
        return [(t, v) for t, v in self.samples if t >= t0]

    def wait_within(self, target, tol, timeout, hold=3.0):
        """Seconds until the true power stays within |tol| of |target| for
        |hold| s; raises with the samples when it does not in |timeout|."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout + hold:
            s = self.since(t0)
            ok_from = None
            for t, v in s:
                if abs(v - target) <= tol * abs(target):
                    ok_from = t if ok_from is None else ok_from
                else:
                    ok_from = None
            if ok_from is not None and s[-1][0] - ok_from >= hold and ok_from - t0 <= timeout:
                return ok_from - t0
            time.sleep(0.5)
        raise AssertionError("true power not within %.0f%% of %.0f kW in %.0f s: %s" % (
            100 * tol, target, timeout, [round(v) for _, v in self.since(t0)]))


def leader_of(c):
    row = c.psql("SELECT node_id || ' ' || epoch FROM cluster_leaders ORDER BY epoch DESC LIMIT 1")
    node, epoch = row.split()
    return node, int(epoch)


def body(r):
    c = cl.Cluster(nodes=3, devices=N, spare_devices=2, cluster=True, cluster_opts=OPTS,
                   emulator_args=sum([["--" + k.replace("_", "-"), str(v)] for k, v in FAULTS.items()], []))
    r.on_fail.append(c.logs)
    try:
        c.start()
        run(r, c)
    finally:
        c.close()
    cut_off(r)


def run(r, c):
    truth = Truth(c.emulator)
    op = c.operator()
    want = int(N * (1 - FAULTS["offline"] - FAULTS["flaky"])) - 5

    def connect():
        on = c.wait_online(want, timeout=90)
        assert all(v and v > N / 10 for v in on.values()), "devices not spread over the nodes: %s" % on
        time.sleep(3)  # the estimators' first samples
    if not r.case("1,000 batteries connect through HAProxy, spread over three nodes", connect):
        return

    def one_leader():
        resp = op.nodes()
        ids = sorted(n.node_id for n in resp.nodes)
        assert ids == ["node-1", "node-2", "node-3"], ids
        leaders = [n.node_id for n in resp.nodes if n.role == "leader" and n.alive]
        assert len(leaders) == 1, resp
        assert resp.leader_node_id == leaders[0] and resp.leader_epoch >= 1, resp
    r.case("ListNodes: three alive nodes, one leader with an epoch", one_leader)

    state = {}

    def step():
        resp = op.set(TARGET, valid_for_s=900, request_id="cluster-step")
        state["setpoint"] = resp.setpoint_id
        took = truth.wait_within(TARGET, 0.02, 15)
        print("  step to %.0f kW tracked within 2%% after %.1f s" % (TARGET, took), flush=True)
        shares = float(c.psql("SELECT sum(share_kw) FROM cluster_shares WHERE valid_until_ms > "
                              "(extract(epoch from now()) * 1000)::bigint"))
        assert abs(shares - TARGET) < 1e-6 * TARGET, "shares sum to %.3f kW" % shares
        st = op.status()
        assert len(st.nodes) == 3 and abs(st.target_kw - TARGET) < 1e-9, st
        # The whole fleet's interval is the nodes' summed in variance.
        var = sum(n.measured_kw.sigma ** 2 for n in st.nodes)
        assert abs(st.measured_kw.sigma - var ** 0.5) < 1e-6 * max(1.0, st.measured_kw.sigma), st
    if not r.case("a step is tracked within 2% in 15 s; the shares sum to the target", step):
        return

    def idempotent():
        a = c.operator("node-1").set(200.0, valid_for_s=5, request_id="cluster-idem")
        b = c.operator("node-2").set(200.0, valid_for_s=5, request_id="cluster-idem")
        assert a.setpoint_id == b.setpoint_id, (a, b)
        try:
            c.operator("node-3").set(300.0, valid_for_s=5, request_id="cluster-idem")
            raise AssertionError("a different setpoint under a used request_id was accepted")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.ALREADY_EXISTS, e
        # Back to the step (a new setpoint replaces the short one).
        state["setpoint"] = op.set(TARGET, valid_for_s=900, request_id="cluster-step-2").setpoint_id
        truth.wait_within(TARGET, 0.02, 20)
    r.case("SetFleetSetpoint is idempotent across nodes (ALREADY_EXISTS for other values)", idempotent)

    def kill_follower():
        leader, _ = leader_of(c)
        victim = [n for n in c.nodes if n.id != leader][0]
        before = victim.online()
        victim.kill()
        took = truth.wait_within(TARGET, 0.02, 20)
        on = c.online()
        assert sum(v or 0 for v in on.values()) >= want - 10, on
        print("  %s (%s devices) killed: back within 2%% after %.1f s; online %s" % (
            victim.id, before, took, on), flush=True)
        victim.start()
    r.case("kill -9 a follower: its devices move, the fleet is back within 2% in 20 s", kill_follower)

    def kill_leader():
        leader, epoch = leader_of(c)
        victim = c.node(leader)
        victim.kill()
        t0 = time.monotonic()
        new = cl.wait_for(lambda: (lambda le: le if le[1] > epoch else None)(leader_of(c)), 5,
                          "a new leader within 5 s")
        print("  leader %s killed: %s leads with epoch %d after %.1f s" % (
            leader, new[0], new[1], time.monotonic() - t0), flush=True)
        took = truth.wait_within(TARGET, 0.02, 20)
        st = op.status()
        assert st.active_setpoint_id == state["setpoint"] and st.target_kw == TARGET, st
        print("  fleet back within 2%% after %.1f s, setpoint %s in force" % (took, st.active_setpoint_id),
              flush=True)
        victim.start()
    r.case("kill -9 the leader: a new leader within 5 s, the fleet back within 2% in 20 s", kill_leader)

    def rolling():
        truth.wait_within(TARGET, 0.02, 20)
        t0 = time.monotonic()
        for n in c.nodes:
            op.call("DrainNode", op.pb.DrainNodeRequest(node_id=n.id, drain=True))
            # 2% of its devices a tick: ~50 s for 500, and a few reconnect late.
            cl.wait_for(lambda: (n.online() or 0) <= 2, 150, "%s drained" % n.id, interval=0.5)
            code, why = n.readyz()
            assert code == 404 and "draining" in why, (code, why)
            n.stop()
            n.start()
            c.haproxy.wait_state(n.id, "UP", timeout=20)
            print("  %s drained and restarted at +%.0f s" % (n.id, time.monotonic() - t0), flush=True)
        time.sleep(5)
        bad = [(round(t - t0), round(v)) for t, v in truth.since(t0) if abs(v - TARGET) > 0.05 * TARGET]
        print("  rolling restart took %.0f s" % (time.monotonic() - t0), flush=True)
        assert not bad, "outside 5%% of %.0f kW: %s" % (TARGET, bad)
    r.case("a rolling restart through drain keeps the fleet within 5% throughout", rolling)

    def pg_restart():
        # Between the node kills above (kill -9 loses what a node held in
        # memory: issue 21) and this check no node dies, so every sample of
        # the window must be stored once: each device's seqs in it are
        # contiguous, none twice.
        t0 = time.time()
        c.pg.kill()
        time.sleep(5)
        c.pg.start()
        time.sleep(8)  # the journals replay
        t1 = time.time()
        time.sleep(3)
        truth.stop = True
        rep = c.emulator.stop()
        for n in c.nodes:
            n.stop()
        # Flaky devices drop their connection now and then, with what was
        # in flight: not accepted, so not owed.
        flaky = ",".join("'%s'" % d for d in rep["faults"].get("flaky", [])) or "''"
        rows = c.psql(
            "SELECT count(*), coalesce(sum(n), 0), coalesce(sum(span), 0), coalesce(sum(n - d), 0) FROM ("
            "SELECT device_id, count(*) AS n, count(DISTINCT seq) AS d, max(seq) - min(seq) + 1 AS span "
            "FROM telemetry WHERE measured_at BETWEEN to_timestamp(%f) AND to_timestamp(%f) "
            "AND device_id NOT IN (%s) GROUP BY device_id) s" % (t0 - 2, t1, flaky)).split("|")
        devices, n, span, dup = (int(float(x)) for x in rows)
        print("  %d devices, %d samples stored in the window, %d expected by their seqs, %d twice" % (
            devices, n, span, dup), flush=True)
        assert devices > N * 0.9, rows
        assert dup == 0, "%d samples stored twice" % dup
        assert n == span, "%d samples missing" % (span - n)
    r.case("PostgreSQL killed and restarted: telemetry stored once, none lost", pg_restart)


class Cut:
    """A TCP relay to PostgreSQL's Unix socket that can go silent: the
    connections stay open but nothing passes, as with a network cut that
    sends no reset."""

    def __init__(self, pg):
        self.pg = pg
        self.silent = False
        self.listener = vt.Listener(self._conn)
        self.port = self.listener.port

    def _conn(self, c):
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect(os.path.join(self.pg.dir, ".s.PGSQL.5432"))
        except OSError:
            c.close()
            return
        for a, b in ((c, s), (s, c)):
            threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, a, b):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                while self.silent:
                    time.sleep(0.05)
                b.sendall(d)
        except OSError:
            pass
        # A silent network passes no close either: the database keeps
        # the session (and its locks) until the test ends the silence.
        while self.silent:
            time.sleep(0.05)
        for x in (a, b):
            try:
                x.close()
            except OSError:
                pass


def iso_ms(ts):
    return int(datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp() * 1000)


def obeyed_intervals(log, node):
    """[(node, epoch, start ms, end ms)] of the shares one run of a node
    obeyed, from its log: from "obeying the shares of leadership epoch N" to
    the end of its last share ("ran out ... at T ms"), to the next epoch, or
    to the run's last line (it stopped: its batteries' leases end with its
    share, which it no longer renews)."""
    out = []
    cur = None
    last = None
    for line in log.splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        last = iso_ms(e["ts"])
        msg = e.get("msg", "")
        if msg.startswith("obeying the shares of leadership epoch "):
            if cur:
                out.append((cur[0], cur[1], last))
            cur = (int(msg.split()[-1]), last)
        elif "ran out with no new one at " in msg and cur:
            end = int(msg.split("ran out with no new one at ")[1].split()[0])
            out.append((cur[0], cur[1], end))
            cur = None
    if cur:
        out.append((cur[0], cur[1], last))
    return [(node,) + i for i in out]


def cut_off(r):
    c = cl.Cluster(nodes=2, devices=200, cluster=True, cluster_opts=OPTS)
    r.on_fail.append(c.logs)
    try:
        c.start(emulator=False)
        run_cut(r, c)
    finally:
        c.close()


def run_cut(r, c):
    n1, n2 = c.node(1), c.node(2)
    cut = Cut(c.pg)
    # node-1 reaches the database through the relay, and leads.
    n1.stop()
    n2.stop()
    n1.database_url = "host=127.0.0.1 port=%d user=postgres dbname=postgres connect_timeout=2" % cut.port
    n1.start()
    time.sleep(1.5)
    n2.start()
    emu = c.start_emulator()
    truth = Truth(emu)
    op = c.operator("node-2")

    def setup():
        c.wait_online(190, timeout=60)
        assert leader_of(c)[0] == "node-1", leader_of(c)
        op.set(300.0, valid_for_s=600, request_id="cut-step")
        truth.wait_within(300.0, 0.02, 20)
    if not r.case("node-1 leads through the relay; the fleet tracks 300 kW", setup):
        return

    def cut_it():
        _, epoch = leader_of(c)
        cut.silent = True
        t0 = time.monotonic()
        new = cl.wait_for(lambda: (lambda le: le if le[1] > epoch else None)(leader_of(c)), 8,
                          "a new leader after the cut")
        print("  node-1 cut off: %s leads with epoch %d after %.1f s" % (new[0], new[1], time.monotonic() - t0),
              flush=True)
        assert new[0] == "node-2", new
        cl.wait_for(lambda: "stops leading" in n1.log(), 5, "node-1 says it stopped leading")
        cl.wait_for(lambda: "ran out with no new one" in n1.log(), 10, "node-1's share runs out")
        time.sleep(3)
        cut.silent = False
        cl.wait_for(lambda: any(n.alive for n in op.nodes().nodes if n.node_id == "node-1"), 20,
                    "node-1 back in the cluster")
        truth.wait_within(300.0, 0.02, 25)
    r.case("a node cut off from PostgreSQL stops leading, another leads, its share runs out", cut_it)

    def one_epoch():
        # The runs around the cut (the first runs, before the relay, hand
        # over on purpose when they stop: their successor's shares replace
        # theirs at once, which is not what this checks).
        iv = [i for n in (n1, n2) for i in obeyed_intervals(n.run_logs()[-1], n.id)]
        assert len({i[1] for i in iv}) >= 2, iv
        for a in iv:
            for b in iv:
                if a[1] < b[1]:
                    # Every interval of an older epoch ends before one of a
                    # newer epoch starts (timestamps are ISO, one clock).
                    assert a[3] <= b[2], "epochs %d and %d obeyed at once: %s / %s" % (a[1], b[1], a, b)
    r.case("no two epochs are ever obeyed at once (the nodes' logs)", one_epoch)

    def refused():
        dup = cl.Node(c, 1, cl.free_ports(3))
        proc = dup.start(wait=False).proc
        rc = proc.wait(60)
        assert rc not in (None, 0) and "another live node already has node id node-1" in dup.log(), dup.log_tail()
        skew = cl.Node(c, 3, cl.free_ports(3))
        skew.extra = ["--cluster-max-clock-skew-ms", "10"]
        # libfaketime moves this node's clock 20 s ahead (preloaded ahead
        # of the sanitizer runtime, which must be told that is fine).
        env = {"FAKETIME": "+20s", "LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
               "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0:verify_asan_link_order=0"}
        proc = skew.start(wait=False, env=env).proc
        rc = proc.wait(60)
        assert rc not in (None, 0) and "clock is" in skew.log() and "off the database" in skew.log(), \
            skew.log_tail()
    r.case("a duplicate node id and a clock far off the database's are refused", refused)


if __name__ == "__main__":
    vt.main(body, budget_s=560)
