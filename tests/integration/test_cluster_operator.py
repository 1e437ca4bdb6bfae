#!/usr/bin/env python3
"""The operator API on any node of a cluster (tests/integration/cluster.py:
two vppd --cluster nodes on one PostgreSQL, 40 emulated batteries spread
over them by HAProxy; the operator API over TLS). Asked straight at either
node: ListNodes lists both with one leader; GetFleetStatus is the whole
fleet with a line per node; a setpoint recorded on one node is the fleet's
target and active setpoint on the other, a later one recorded on the other
node replaces it on both, and a retry of a request_id on the other node is
the same setpoint; SetFleetSetpoint and PreviewDispatch answer for the whole
fleet as the leader splits it; vppctl nodes and status show it all;
DrainNode asked of one node drains the other (/readyz 404, draining in
ListNodes) and undrains it, is audited, and refuses a node that does not
exist; ListDevices and GetDevice answer for every device of the cluster
(the node asks its peers over TLS), and name a hung node as missing."""
import grpc
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import cluster as cl  # noqa: E402  (puts tests/interop on the path)
import vpptest as vt  # noqa: E402

N = 40


def body(r):
    c = cl.Cluster(nodes=2, devices=N, cluster=True, api_tls=True)
    r.on_fail.append(c.logs)
    try:
        c.start()
        c.wait_online(N, timeout=60)
        run(r, c)
    finally:
        c.close()


def run(r, c):
    o1, o2 = c.operator(1), c.operator(2)
    pb = o1.pb

    def connected(x):
        """Devices connected to a node or the fleet (a few emulated ones are
        flaky: stale for a while)."""
        return x.devices_online + x.devices_stale

    def fleet_seen(op):
        """The status once every node has heartbeated its devices."""
        def ok():
            s = op.status()
            return s if len(s.nodes) == 2 and connected(s) == N else None
        return cl.wait_for(ok, 30, "the whole fleet in GetFleetStatus")

    def list_nodes():
        for op in (o1, o2):
            def both(x):
                ok = len(x.nodes) == 2 and all(n.alive for n in x.nodes)
                return x if ok and sum(connected(n) for n in x.nodes) == N else None
            ln = cl.wait_for(lambda: both(op.nodes()), 30, "both nodes alive in ListNodes")
            assert [n.node_id for n in ln.nodes] == ["node-1", "node-2"], ln
            leaders = [n.node_id for n in ln.nodes if n.role == "leader"]
            assert leaders == [ln.leader_node_id] and ln.leader_epoch >= 1, ln
            for n in ln.nodes:
                assert n.version and n.api_addr and n.device_addr and n.started_at_ms > 0, n
                assert 0 <= n.heartbeat_age_ms < 5000 and not n.draining, n
                assert n.measured_kw.lower <= n.measured_kw.value <= n.measured_kw.upper, n
            assert sum(connected(n) for n in ln.nodes) == N, ln

    r.case("ListNodes on either node: both nodes, one leader, its epoch", list_nodes)

    def status_sums():
        for op in (o1, o2):
            s = fleet_seen(op)
            assert s.leader_node_id in ("node-1", "node-2") and s.leader_epoch >= 1, s
            assert sum(n.devices_online for n in s.nodes) == s.devices_online, s
            assert sum(connected(n) for n in s.nodes) == connected(s) == N, s
            # Disjoint devices: the fleet's variance is the nodes' sum.
            var = sum(n.measured_kw.sigma ** 2 for n in s.nodes if n.alive)
            assert abs(s.measured_kw.sigma ** 2 - var) <= 1e-9 * (1 + var), (s.measured_kw, var)
            kw = sum(n.measured_kw.value for n in s.nodes if n.alive)
            assert abs(s.measured_kw.value - kw) < 1e-9 * (1 + abs(kw)), (s.measured_kw, kw)
            assert s.stored_energy_kwh.value > 0, s
        # WatchFleet streams the same, one a tick.
        it = o2.call("WatchFleet", pb.WatchFleetRequest(), timeout=10)
        seen = []
        for s in it:
            seen.append(s)
            if len(seen) == 3:
                it.cancel()
                break
        assert all(len(s.nodes) == 2 and s.leader_node_id for s in seen), seen
        assert len({s.tick_at_ms for s in seen}) == 3, [s.tick_at_ms for s in seen]

    r.case("GetFleetStatus and WatchFleet on either node: the whole fleet, a line per node", status_sums)

    def setpoint_any_node():
        a = o1.set(30, valid_for_s=120, request_id="cl-op-1")
        # The whole fleet's expected delivery, as the leader splits it.
        assert abs(a.expected_delivery_kw.value - 30) < 0.5 and abs(a.shortfall_kw) < 0.5, a
        assert a.sustainable_for_s > 0, a

        def target_on(op, kw):
            def ok():
                s = op.status()
                shares = sum(n.share_kw for n in s.nodes)
                return s if abs(s.target_kw - kw) < 1e-6 and abs(shares - kw) < 0.5 else None
            return cl.wait_for(ok, 15, "target %g kW split" % kw)
        s1, s2 = target_on(o1, 30), target_on(o2, 30)
        # Recorded on node-1, named on both.
        assert s1.active_setpoint_id == s2.active_setpoint_id == a.setpoint_id, (s1, s2)
        assert abs(s2.active_valid_until_ms - a.valid_until_ms) < 1000, (s2, a)
        assert all(abs(n.share_kw) > 1 for n in s2.nodes), s2  # both nodes take part
        # A retry on the other node: the same setpoint (request_id is the
        # cluster's), not a new one.
        b = o2.set(30, valid_for_s=120, request_id="cl-op-1")
        assert b.setpoint_id == a.setpoint_id and b.valid_until_ms == a.valid_until_ms, (a, b)
        # A later one on node-2 replaces it on both nodes (node-1 still
        # holds its own, which it no longer names).
        d = o2.set(-20, valid_for_s=120, request_id="cl-op-2")
        assert int(d.setpoint_id) > int(a.setpoint_id), d
        s1, s2 = target_on(o1, -20), target_on(o2, -20)
        assert s1.active_setpoint_id == s2.active_setpoint_id == d.setpoint_id, (s1, s2)
        n = c.psql("SELECT count(*) FROM setpoints")
        assert n.strip() == "2", n

    r.case("SetFleetSetpoint on one node is the fleet's target on both; retries are cluster-wide",
           setpoint_any_node)

    def whole_fleet_answers():
        s = fleet_seen(o2)
        most = s.discharge_headroom_kw.value
        pv = o2.call("PreviewDispatch", pb.PreviewDispatchRequest(target_kw=10 * most + 100))
        # Beyond both nodes: every dispatched battery of both is at its limit.
        assert pv.shortfall_kw > 8 * most and pv.devices_dispatched >= N - 4, pv
        assert pv.devices_saturated == pv.devices_dispatched, pv
        assert 0.5 * most < pv.expected_delivery_kw.value < 1.5 * most + 1, (pv, most)
        pv = o1.call("PreviewDispatch", pb.PreviewDispatchRequest(target_kw=0.5 * most))
        assert abs(pv.expected_delivery_kw.value - 0.5 * most) < 0.01 * most + 0.1 and pv.shortfall_kw == 0, pv
        assert pv.expected_delivery_kw.sigma > 0 and pv.sustainable_for_s > 0, pv
        # More than either node could give alone, not more than both: the
        # answer is the split's, with no shortfall.
        a = o1.set(0.8 * most, valid_for_s=60, request_id="cl-op-3")
        assert abs(a.expected_delivery_kw.value - 0.8 * most) < 0.01 * most + 0.1, (a, most)
        assert abs(a.shortfall_kw) < 0.01 * most + 0.1, (a, most)

    r.case("SetFleetSetpoint and PreviewDispatch answer for the whole fleet, as the leader splits it",
           whole_fleet_answers)

    def vppctl_on_a_cluster():
        exe = os.path.join(vt.build_dir(), "tools", "vppctl")
        base = [exe, "--server", c.node(2).api_target, "--ca", c.cert("ca.pem"), "--token", c.token]
        p = subprocess.run(base + ["nodes"], capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, p.stderr
        lines = p.stdout.splitlines()
        assert lines[0].split()[:4] == ["NODE", "ROLE", "ONLINE", "SHARE"], p.stdout
        assert [ln.split()[0] for ln in lines[1:3]] == ["node-1", "node-2"], p.stdout
        assert lines[3].startswith("2 nodes, 2 alive; leader node-"), p.stdout
        p = subprocess.run(base + ["status"], capture_output=True, text=True, timeout=30)
        assert p.returncode == 0 and "Nodes (2, 2 alive; leader node-" in p.stdout, p.stdout
        j = json.loads(subprocess.run(base + ["nodes", "--json"], capture_output=True, text=True,
                                      timeout=30).stdout)
        assert j["count"] == 2 and j["alive"] == 2 and j["leader_epoch"] >= 1, j
        assert sum(n["devices_online"] + n["devices_stale"] for n in j["nodes"]) == N, j

    r.case("vppctl nodes and status against the cluster", vppctl_on_a_cluster)

    def drain_via_other_node():
        import grpc
        # The follower, asked through the other node (the leader). Not the
        # leader itself: a leader that drains gives up its lock connection,
        # and registering again on the new one clears drain_requested
        # (server/cluster/member.c), so it stops draining 30 ms later.
        ln = o1.nodes()
        victim = [n.node_id for n in ln.nodes if n.role == "follower"][0]
        other = "node-1" if victim == "node-2" else "node-2"
        ops = {"node-1": o1, "node-2": o2}
        asker, nv = ops[other], c.node(victim)
        assert nv.readyz()[0] == 200, nv.readyz()
        seen = []  # every /readyz answer, for the failure message

        def ready_is(code):
            def ok():
                x = nv.readyz()
                seen.append((round(time.monotonic() - t0, 2), x))
                return x if x[0] == code else None
            return ok

        def wait_ready(code, what):
            try:
                return cl.wait_for(ready_is(code), 5, what)
            except AssertionError as e:
                said = [x for n in c.nodes for x in n.log().splitlines() if '"comp":"cluster"' in x]
                raise AssertionError("%s; /readyz seen: %s\n%s" % (e, seen[-4:], "\n".join(said[-20:])))

        def draining_in(op, want):
            def ok():
                d = {n.node_id: n.draining for n in op.nodes().nodes}
                return d if d.get(victim) is want and d.get(other) is False else None
            return ok
        t0 = time.monotonic()
        a = asker.call("DrainNode", pb.DrainNodeRequest(node_id=victim, drain=True, reason="upgrade to 0.2"))
        assert a.node_id == victim and a.draining, a
        code, why = wait_ready(404, "%s's /readyz answering 404" % victim)
        assert "draining" in why, why
        for op in (o1, o2):
            cl.wait_for(draining_in(op, True), 10, "%s draining in ListNodes" % victim)
        # Still draining a few ticks later: nothing undoes it.
        time.sleep(2)
        assert nv.readyz()[0] == 404, nv.readyz()
        b = asker.call("DrainNode", pb.DrainNodeRequest(node_id=victim, drain=False, reason="upgraded"))
        assert b.node_id == victim and not b.draining, b
        wait_ready(200, "%s's /readyz back to 200" % victim)
        for op in (o1, o2):
            cl.wait_for(draining_in(op, False), 10, "%s no longer draining in ListNodes" % victim)
        try:
            ops[victim].call("DrainNode", pb.DrainNodeRequest(node_id="node-9", drain=True))
            raise AssertionError("DrainNode of node-9 answered OK")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.NOT_FOUND and "node-9" in e.details(), (e.code(), e.details())
        # vppctl asks the same of either node.
        exe = os.path.join(vt.build_dir(), "tools", "vppctl")
        base = [exe, "--server", nv.api_target, "--ca", c.cert("ca.pem"), "--token", c.token]
        p = subprocess.run(base + ["node", "drain", "node-9"], capture_output=True, text=True, timeout=30)
        assert p.returncode == 1 and "not found: no live node 'node-9'" in p.stderr, (p.returncode, p.stderr)
        p = subprocess.run(base + ["node", "undrain", victim], capture_output=True, text=True, timeout=30)
        assert p.returncode == 0 and p.stdout == "%s: no longer draining\n" % victim, (p.returncode, p.stdout,
                                                                                       p.stderr)
        # Audited in the database, each where it was asked.
        q = "SELECT node_id || ' ' || result || ' ' || detail FROM audit_log WHERE action = 'DrainNode' ORDER BY at, uid"

        def rows():
            got = c.psql(q).splitlines()
            return got if len(got) >= 5 else None
        got = cl.wait_for(rows, 10, "5 DrainNode rows in audit_log")
        assert got[:2] == ["%s accepted node_id=%s drain=true reason=upgrade to 0.2" % (other, victim),
                           "%s accepted node_id=%s drain=false reason=upgraded" % (other, victim)], got
        assert "%s no_such_node node_id=node-9 drain=true reason=" % victim in got, got
        assert "%s accepted node_id=%s drain=false reason=" % (victim, victim) in got, got

    r.case("DrainNode of the follower through the leader: /readyz 404 draining, ListNodes; undrained; "
           "node-9 not found; audited", drain_via_other_node)

    def vppctl(op, *args):
        return [os.path.join(vt.build_dir(), "tools", "vppctl"), "--server", op.target, "--ca",
                c.cert("ca.pem"), "--token", c.token] + list(args)

    def list_all(op, state=0, page_size=7, scope_node=False):
        """Every device ListDevices gives, page after page; (devices, missing)."""
        md = op.md + ([("vpp-scope", "node")] if scope_node else [])
        token, out, missing, pages = "", [], set(), 0
        while True:
            resp = op.stub.ListDevices(pb.ListDevicesRequest(page_size=page_size, page_token=token, state=state),
                                       metadata=md, timeout=10)
            out += list(resp.devices)
            missing |= set(resp.missing_nodes)
            pages += 1
            assert pages < 200, "the pages do not end"
            if not resp.next_page_token:
                return out, missing
            assert resp.next_page_token > token, (token, resp.next_page_token)
            token = resp.next_page_token

    def devices_cluster_wide():
        # After the drain, the devices that moved are back and connected.
        cl.wait_for(lambda: sum(d.state != pb.DEVICE_STATE_OFFLINE for d in list_all(o1)[0]) == N, 60,
                    "every device connected again after the drain")
        # Each node alone: its own connected devices (and maybe offline
        # copies of some that moved); together, every device once.
        where = {}
        for n in ("node-1", "node-2"):
            own, _ = list_all(c.operator(n), scope_node=True)
            for d in own:
                if d.state != pb.DEVICE_STATE_OFFLINE:
                    assert d.node_id == n, d
                    assert d.device_id not in where, (d.device_id, where.get(d.device_id), n)
                    where[d.device_id] = n
        assert len(where) == N and set(where.values()) == {"node-1", "node-2"}, where
        for op in (o1, o2):
            devs, missing = list_all(op)
            ids = [d.device_id for d in devs]
            assert not missing, missing
            assert ids == sorted(ids) and len(ids) == len(set(ids)) == N, ids
            for d in devs:
                # As the node it is connected to sees it (a device could
                # move between the two listings: rare, checked loosely).
                assert d.state != pb.DEVICE_STATE_OFFLINE, d
                assert d.node_id in ("node-1", "node-2"), d
            moved = [d.device_id for d in devs if d.node_id != where[d.device_id]]
            assert len(moved) <= 2, moved
            online, _ = list_all(op, state=pb.DEVICE_STATE_ONLINE, page_size=5)
            assert {d.device_id for d in online} == {d.device_id for d in devs
                                                     if d.state == pb.DEVICE_STATE_ONLINE} or \
                len(online) >= N - 4, (len(online), len(devs))
            assert all(d.state == pb.DEVICE_STATE_ONLINE for d in online), online
            offline, _ = list_all(op, state=pb.DEVICE_STATE_OFFLINE)
            assert offline == [], [(d.device_id, d.node_id) for d in offline]
        # GetDevice of a device on the other node, asked of each node.
        for op, other in ((o1, "node-2"), (o2, "node-1")):
            dev_id = sorted(k for k, v in where.items() if v == other)[0]
            d = op.call("GetDevice", pb.GetDeviceRequest(device_id=dev_id))
            assert d.device_id == dev_id and d.node_id == other, d
            assert d.state != pb.DEVICE_STATE_OFFLINE, d
            try:
                op.call("GetDevice", pb.GetDeviceRequest(device_id="dev-nowhere"))
                raise AssertionError("GetDevice of an unknown device answered")
            except grpc.RpcError as e:
                assert e.code().name == "NOT_FOUND", e
        out = subprocess.run(vppctl(o1, "devices", "--all", "--json"), capture_output=True, text=True,
                             timeout=30)
        assert out.returncode == 0, (out.returncode, out.stderr)
        j = json.loads(out.stdout)
        assert j["count"] == N and j["missing_nodes"] == [], j

    r.case("ListDevices and GetDevice on either node: every device of the cluster once, as its node sees it",
           devices_cluster_wide)

    def devices_node_silent():
        # node-2 hung but not yet timed out: node-1 answers without it after
        # the peer deadline and names it; nothing is passed off as complete.
        n2 = c.node("node-2")
        n2.pause()
        try:
            t0 = time.time()
            devs, missing = list_all(o1, page_size=100)
            took = time.time() - t0
            assert missing == {"node-2"}, missing
            here = [d for d in devs if d.state != pb.DEVICE_STATE_OFFLINE]
            assert 0 < len(here) < N and all(d.node_id == "node-1" for d in here), devs
            assert took < 6, took
            out = subprocess.run(vppctl(o1, "devices", "--all"), capture_output=True, text=True, timeout=30)
            assert "node node-2 did not answer" in out.stderr, (out.stdout, out.stderr)
        finally:
            n2.resume()
        cl.wait_for(lambda: not list_all(o1, page_size=100)[1], 30, "node-2 answering again")

    r.case("ListDevices while a node is hung: the others' devices, and the hung node named as missing",
           devices_node_silent)

    def no_sanitizer_reports():
        for n in c.nodes:
            log = n.log()
            assert "runtime error:" not in log and "AddressSanitizer" not in log, n.log_tail(40)

    r.case("no sanitizer report in either node's log", no_sanitizer_reports)


if __name__ == "__main__":
    vt.main(body, budget_s=240)
