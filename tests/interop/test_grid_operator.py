#!/usr/bin/env python3
"""vpp.v1.GridOperator with Google's gRPC for Python as the client: every
method, authentication and roles, idempotent setpoints, and bad requests
(NaN, huge values, missing request_id, wrong role, no token) getting the
right status. A few grpcio devices give the fleet something to report."""
import hashlib
import math
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import vpptest as vt  # noqa: E402
import test_device_sessions as tds  # noqa: E402

import grpc  # noqa: E402

OP, VIEW = "grid-operator-token", "grid-viewer-token"


def body(r):
    env = tds.Env.__new__(tds.Env)
    env.dir = vt.tempdir("vpp-gridcerts-")
    rc = subprocess.run(["bash", os.path.join(vt.ROOT, "deploy/local/certs.sh"), env.dir, "--devices", "3"],
                        capture_output=True, text=True, timeout=300)
    assert rc.returncode == 0, rc.stderr
    tokens = os.path.join(env.dir, "tokens")
    with open(tokens, "w") as f:
        f.write("# test tokens\nops operator sha256:%s\nwatcher viewer sha256:%s\n" % (
            hashlib.sha256(OP.encode()).hexdigest(), hashlib.sha256(VIEW.encode()).hexdigest()))
    env.token = OP
    env.device_port, env.api_port, env.admin = vt.free_port(), vt.free_port(), vt.free_port()
    p = lambda n: os.path.join(env.dir, n)
    env.proc = vt.Proc("vppd", [os.path.join(vt.build_dir(), "server", "vppd"), "--api-port", str(env.api_port),
                                "--api-addr", "127.0.0.1", "--tls-cert", p("server.pem"), "--tls-key", p("server.key"),
                                "--operator-ca", p("operator-ca.pem"), "--tokens-file", tokens,
                                "--device-port", str(env.device_port), "--device-addr", "127.0.0.1",
                                "--device-ca", p("device-ca.pem"), "--admin-port", str(env.admin),
                                "--io-threads", "2", "--tick-ms", "200", "--node-id", "grid-test"])
    vt.wait_port(env.api_port, 30, env.proc.p)
    vt.wait_port(env.admin, 30, env.proc.p)
    r.on_fail.append(lambda: env.proc.log_tail(20))
    m = tds.mods()
    g, gg = m["g"], m["gg"]
    ca = env.read("ca.pem")
    ch = grpc.secure_channel("localhost:%d" % env.api_port, grpc.ssl_channel_credentials(ca))
    op = gg.GridOperatorStub(ch)
    tok = lambda t: [("authorization", "Bearer " + t)]

    devs = [tds.Device(env, "dev-%05d" % i, ratings=dict(ramp_kw_per_s=100)) for i in range(3)]

    def feed():
        for d in devs:
            d.telemetry(power=0.0, soc=0.6)

    for _ in range(6):
        feed()
        time.sleep(0.2)

    def code_of(fn, *a, **kw):
        try:
            fn(*a, **kw)
        except grpc.RpcError as e:
            return e.code(), e.details()
        return grpc.StatusCode.OK, ""

    def status():
        s = op.GetFleetStatus(g.GetFleetStatusRequest(), metadata=tok(VIEW), timeout=5)
        assert s.devices_online == 3, s
        assert s.measured_kw.lower <= s.measured_kw.value <= s.measured_kw.upper
        assert s.discharge_headroom_kw.value > 0 and s.charge_headroom_kw.value < 0, s
        # 3 batteries at SoC 0.6 with min 0.1 of 10 kWh: 15 kWh usable.
        assert abs(s.stored_energy_kwh.value - 15) < 1.0, s.stored_energy_kwh
        assert s.tick_at_ms > 0 and abs(s.tick_at_ms - time.time() * 1000) < 5000

    r.case("GetFleetStatus as a viewer: Estimates and counts", status)

    def set_and_retry():
        req = g.SetFleetSetpointRequest(target_kw=6, valid_for_s=60, request_id="grid-1", reason="interop")
        a = op.SetFleetSetpoint(req, metadata=tok(OP), timeout=5)
        b = op.SetFleetSetpoint(req, metadata=tok(OP), timeout=5)
        assert a.setpoint_id and a.setpoint_id == b.setpoint_id, (a, b)
        assert a.valid_until_ms == b.valid_until_ms and a.valid_until_ms > time.time() * 1000 + 50000
        assert abs(a.expected_delivery_kw.value - 6) < 0.5 and a.shortfall_kw == 0, a
        c, why = code_of(op.SetFleetSetpoint, g.SetFleetSetpointRequest(target_kw=7, valid_for_s=60,
                                                                          request_id="grid-1"), metadata=tok(OP))
        assert c == grpc.StatusCode.ALREADY_EXISTS, (c, why)
        time.sleep(1)
        s = op.GetFleetStatus(g.GetFleetStatusRequest(), metadata=tok(OP), timeout=5)
        assert s.target_kw == 6 and s.active_setpoint_id == a.setpoint_id, s

    r.case("SetFleetSetpoint: accepted, a retry returns the same setpoint, a reuse is refused", set_and_retry)

    def late_retry():
        a = op.SetFleetSetpoint(g.SetFleetSetpointRequest(target_kw=5, valid_for_s=60, request_id="late-a"),
                                metadata=tok(OP), timeout=5)
        b = op.SetFleetSetpoint(g.SetFleetSetpointRequest(target_kw=0, valid_for_s=60, request_id="late-b"),
                                metadata=tok(OP), timeout=5)
        # The response to A was lost, say, and the client retries it after B.
        c, why = code_of(op.SetFleetSetpoint, g.SetFleetSetpointRequest(target_kw=5, valid_for_s=60,
                                                                          request_id="late-a"),
                         metadata=tok(OP), timeout=5)
        assert c == grpc.StatusCode.FAILED_PRECONDITION, (c, why)
        assert a.setpoint_id in why and "replaced" in why, why
        time.sleep(0.5)
        s = op.GetFleetStatus(g.GetFleetStatusRequest(), metadata=tok(OP), timeout=5)
        assert s.target_kw == 0 and s.active_setpoint_id == b.setpoint_id, s
        # A retry of the setpoint in force is answered as before.
        b2 = op.SetFleetSetpoint(g.SetFleetSetpointRequest(target_kw=0, valid_for_s=60, request_id="late-b"),
                                 metadata=tok(OP), timeout=5)
        assert b2.setpoint_id == b.setpoint_id and b2.valid_until_ms == b.valid_until_ms, (b, b2)
        assert "request_id=late-a result=superseded" in env.proc.log_tail(400)
        # A retry after the setpoint's validity ended is not applied either,
        # and is not answered with a delivery that will not happen.
        req = g.SetFleetSetpointRequest(target_kw=2, valid_for_s=1, request_id="late-c")
        c1 = op.SetFleetSetpoint(req, metadata=tok(OP), timeout=5)
        time.sleep(1.3)
        c, why = code_of(op.SetFleetSetpoint, req, metadata=tok(OP), timeout=5)
        assert c == grpc.StatusCode.FAILED_PRECONDITION and c1.setpoint_id in why, (c, why)
        assert "valid until %d" % c1.valid_until_ms in why, why
        s = op.GetFleetStatus(g.GetFleetStatusRequest(), metadata=tok(OP), timeout=5)
        assert s.target_kw == 0, s

    r.case("a late retry of a replaced setpoint is refused, not applied again", late_retry)

    def beyond():
        a = op.SetFleetSetpoint(g.SetFleetSetpointRequest(target_kw=1000, valid_for_s=30, request_id="grid-2"),
                                metadata=tok(OP), timeout=5)
        assert a.shortfall_kw > 900 and a.expected_delivery_kw.value < 20, a
        # 3 batteries at SoC 0.6 hold 3 x 0.5 x 10 kWh above min SoC: an
        # hour at the 15 kW they can give.
        assert abs(a.sustainable_for_s - 3600) < 200, a

    r.case("a target beyond the fleet reports its shortfall, and how long its energy lasts", beyond)

    def ramp_too_slow():
        # The operator's target is the fleet's effective one once a tick
        # has run since it was set (a new setpoint's tick follows at once).
        time.sleep(0.1)
        eff = op.GetFleetStatus(g.GetFleetStatusRequest(), metadata=tok(OP), timeout=5).target_kw
        a = op.SetFleetSetpoint(g.SetFleetSetpointRequest(target_kw=eff + 500, valid_for_s=10, ramp_kw_per_s=2,
                                                          request_id="grid-ramp"), metadata=tok(OP), timeout=5)
        assert abs(a.ramp_duration_s - 250) < 1e-6, (eff, a)
        assert abs(a.ramp_end_kw - (eff + 20)) < 0.5, (eff, a)

    r.case("a ramp too slow for the setpoint's validity: its duration and where it ends", ramp_too_slow)

    def bad_requests():
        cases = [
            (dict(target_kw=float("nan"), valid_for_s=10, request_id="b1"), "NaN target"),
            (dict(target_kw=float("inf"), valid_for_s=10, request_id="b2"), "infinite target"),
            (dict(target_kw=1e12, valid_for_s=10, request_id="b3"), "huge target"),
            (dict(target_kw=5, valid_for_s=0, request_id="b4"), "valid_for_s 0"),
            (dict(target_kw=5, valid_for_s=10 ** 7, request_id="b5"), "valid_for_s too long"),
            (dict(target_kw=5, valid_for_s=10, request_id=""), "missing request_id"),
            (dict(target_kw=5, valid_for_s=10, request_id="b6", ramp_kw_per_s=-1), "negative ramp"),
            (dict(target_kw=5, valid_for_s=10, request_id="b8", ramp_kw_per_s=1e308), "absurd ramp"),
            (dict(target_kw=5, valid_for_s=10, request_id="x" * 300), "request_id too long"),
        ]
        for kw, name in cases:
            c, why = code_of(op.SetFleetSetpoint, g.SetFleetSetpointRequest(**kw), metadata=tok(OP), timeout=5)
            assert c == grpc.StatusCode.INVALID_ARGUMENT and why, "%s: %s %s" % (name, c, why)
        c, _ = code_of(op.PreviewDispatch, g.PreviewDispatchRequest(target_kw=math.nan), metadata=tok(OP))
        assert c == grpc.StatusCode.INVALID_ARGUMENT, c
        c, _ = code_of(op.ListDevices, g.ListDevicesRequest(page_size=100000), metadata=tok(OP))
        assert c == grpc.StatusCode.INVALID_ARGUMENT, c
        c, _ = code_of(op.GetDevice, g.GetDeviceRequest(device_id=""), metadata=tok(OP))
        assert c == grpc.StatusCode.INVALID_ARGUMENT, c
        # A reason that is not UTF-8 (the audit row would not be written).
        raw = g.SetFleetSetpointRequest(target_kw=5, valid_for_s=10, request_id="b7",
                                        reason="RSNX").SerializeToString().replace(b"RSNX", b"\xc3\x28\xff!")
        set_raw = ch.unary_unary("/vpp.v1.GridOperator/SetFleetSetpoint", request_serializer=lambda b: b,
                                 response_deserializer=lambda b: b)
        c, why = code_of(set_raw, raw, metadata=tok(OP), timeout=5)
        assert c == grpc.StatusCode.INVALID_ARGUMENT and "UTF-8" in why, (c, why)
        # A request_id that is not UTF-8: refused, and audited in a log line
        # that is still UTF-8 (the audit row can be stored).
        raw = g.SetFleetSetpointRequest(target_kw=5, valid_for_s=10,
                                        request_id="RIDX").SerializeToString().replace(b"RIDX", b"\xff\xfeab")
        c, why = code_of(set_raw, raw, metadata=tok(OP), timeout=5)
        assert c == grpc.StatusCode.INVALID_ARGUMENT and "request_id" in why, (c, why)
        with open(env.proc.log_path, "rb") as f:
            log = f.read()
        log.decode("utf-8")  # raises on a raw 0xff
        assert b"request_id=??ab result=invalid" in log, log[-2000:]

    r.case("bad requests get INVALID_ARGUMENT with a message", bad_requests)

    def auth():
        req = g.SetFleetSetpointRequest(target_kw=1, valid_for_s=10, request_id="auth-1")
        c, why = code_of(op.SetFleetSetpoint, req, timeout=5)
        assert c == grpc.StatusCode.UNAUTHENTICATED, (c, why)
        c, why = code_of(op.GetFleetStatus, g.GetFleetStatusRequest(), metadata=tok("wrong"), timeout=5)
        assert c == grpc.StatusCode.UNAUTHENTICATED, (c, why)
        c, why = code_of(op.SetFleetSetpoint, req, metadata=tok(VIEW), timeout=5)
        assert c == grpc.StatusCode.PERMISSION_DENIED, (c, why)
        # An operator client certificate has the operator role.
        creds = grpc.ssl_channel_credentials(ca, env.read("operator.key"), env.read("operator.pem"))
        och = grpc.secure_channel("localhost:%d" % env.api_port, creds)
        a = gg.GridOperatorStub(och).SetFleetSetpoint(
            g.SetFleetSetpointRequest(target_kw=3, valid_for_s=30, request_id="cert-1"), timeout=5)
        assert a.setpoint_id
        och.close()
        mt = vt.read_metrics(env.admin)
        assert mt.get("vpp_operator_auth_failures_total") >= 2 and mt.get("vpp_operator_denied_total") >= 1
        log = open(env.proc.log_path).read()
        assert "principal=cert:operator action=SetFleetSetpoint request_id=cert-1" in log
        assert "principal=token:ops action=SetFleetSetpoint request_id=grid-1" in log
        # A stream of bad tokens is counted, not logged line by line.
        before = mt.get("vpp_operator_auth_failures_total")
        for _ in range(40):
            code_of(op.GetFleetStatus, g.GetFleetStatusRequest(), metadata=tok("wrong"), timeout=5)
        mt = vt.read_metrics(env.admin)
        assert mt.get("vpp_operator_auth_failures_total") == before + 40, mt.get("vpp_operator_auth_failures_total")
        lines = [x for x in open(env.proc.log_path).read().splitlines() if "unauthenticated" in x]
        assert len(lines) <= 10, "%d lines for %d refusals" % (len(lines), before + 40)

    r.case("no token / wrong token / viewer role / operator certificate", auth)

    def tokens_reload():
        sha = lambda t: hashlib.sha256(t.encode()).hexdigest()
        with open(tokens) as f:
            original = f.read()
        status = lambda t: code_of(op.GetFleetStatus, g.GetFleetStatusRequest(), metadata=tok(t), timeout=5)[0]

        def hup_until(cond, what):
            env.proc.signal(signal.SIGHUP)
            deadline = time.monotonic() + 5
            while not cond() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert cond(), what
        # A new viewer token, the old viewer's gone: in force without a restart.
        with open(tokens, "w") as f:
            f.write("ops operator sha256:%s\nnewbie viewer sha256:%s\n" % (sha(OP), sha("grid-new-token")))
        hup_until(lambda: status("grid-new-token") == grpc.StatusCode.OK, "the new token is refused")
        assert status(VIEW) == grpc.StatusCode.UNAUTHENTICATED, "a removed token still works"
        # A broken file changes nothing, and says so.
        with open(tokens, "w") as f:
            f.write("this is not a token line\n")
        hup_until(lambda: "tokens-file not reloaded" in open(env.proc.log_path).read(), "no error logged")
        assert status("grid-new-token") == grpc.StatusCode.OK and status(OP) == grpc.StatusCode.OK
        with open(tokens, "w") as f:
            f.write(original)
        hup_until(lambda: status(VIEW) == grpc.StatusCode.OK, "the original tokens are not back")
        assert env.proc.alive(), "vppd ended on SIGHUP"

    r.case("SIGHUP reloads tokens-file: new tokens in force, removed ones refused, a broken file ignored",
           tokens_reload)

    def preview_and_devices():
        pv = op.PreviewDispatch(g.PreviewDispatchRequest(target_kw=9), metadata=tok(VIEW), timeout=5)
        assert pv.devices_dispatched == 3 and abs(pv.expected_delivery_kw.value - 9) < 0.5, pv
        pv = op.PreviewDispatch(g.PreviewDispatchRequest(target_kw=100), metadata=tok(VIEW), timeout=5)
        assert pv.devices_saturated == 3 and pv.shortfall_kw > 80, pv
        page1 = op.ListDevices(g.ListDevicesRequest(page_size=2), metadata=tok(VIEW), timeout=5)
        assert [d.device_id for d in page1.devices] == ["dev-00000", "dev-00001"], page1
        page2 = op.ListDevices(g.ListDevicesRequest(page_size=2, page_token=page1.next_page_token),
                               metadata=tok(VIEW), timeout=5)
        assert [d.device_id for d in page2.devices] == ["dev-00002"] and not page2.next_page_token, page2
        off = op.ListDevices(g.ListDevicesRequest(state=g.DEVICE_STATE_OFFLINE), metadata=tok(VIEW), timeout=5)
        assert not off.devices, off
        d = op.GetDevice(g.GetDeviceRequest(device_id="dev-00001"), metadata=tok(VIEW), timeout=5)
        assert d.rated_discharge_kw == 5 and d.capacity_kwh == 10 and d.node_id == "grid-test", d
        assert d.soc.lower <= d.soc.value <= d.soc.upper and d.last_seen_ms > 0
        c, _ = code_of(op.GetDevice, g.GetDeviceRequest(device_id="dev-99999"), metadata=tok(VIEW))
        assert c == grpc.StatusCode.NOT_FOUND, c

    r.case("PreviewDispatch, ListDevices paging and filter, GetDevice", preview_and_devices)

    def watch():
        it = op.WatchFleet(g.WatchFleetRequest(), metadata=tok(VIEW), timeout=10)
        ticks = []
        for s in it:
            feed()
            ticks.append(s.tick_at_ms)
            if len(ticks) == 4:
                it.cancel()
                break
        assert len(ticks) == 4 and ticks == sorted(ticks) and len(set(ticks)) == 4, ticks

    r.case("WatchFleet streams one status per tick", watch)

    def list_nodes_single():
        ln = op.ListNodes(g.ListNodesRequest(), metadata=tok(VIEW), timeout=5)
        assert ln.leader_node_id == "grid-test" and ln.leader_epoch == 0 and len(ln.nodes) == 1, ln
        n = ln.nodes[0]
        assert n.node_id == "grid-test" and n.role == "leader" and n.alive and not n.draining, n
        assert n.epoch == 0 and n.version and n.devices_online == 3, n
        # Its last tick is its heartbeat (ticks every 200 ms here).
        now = time.time() * 1000
        assert 0 <= n.heartbeat_age_ms < 2000 and abs(n.heartbeat_at_ms - now) < 5000, n
        assert 0 < n.started_at_ms <= n.heartbeat_at_ms, n
        assert n.measured_kw.lower <= n.measured_kw.value <= n.measured_kw.upper, n
        # A single vppd's status is as it always was: no per-node part.
        s = op.GetFleetStatus(g.GetFleetStatusRequest(), metadata=tok(VIEW), timeout=5)
        assert not s.nodes and not s.leader_node_id and s.leader_epoch == 0, s
        c, _ = code_of(op.ListNodes, g.ListNodesRequest(), timeout=5)
        assert c == grpc.StatusCode.UNAUTHENTICATED, c

    r.case("ListNodes on a single vppd: itself, the leader, epoch 0; status without nodes", list_nodes_single)

    def drain_single():
        D = g.DrainNodeRequest
        c, why = code_of(op.DrainNode, D(node_id="grid-test", drain=True, reason="upgrade"), metadata=tok(OP),
                         timeout=5)
        assert c == grpc.StatusCode.FAILED_PRECONDITION, (c, why)
        assert why == "this vppd is not in a cluster (--cluster): nothing to drain to", why
        c, why = code_of(op.DrainNode, D(node_id="grid-test", drain=False), metadata=tok(OP), timeout=5)
        assert c == grpc.StatusCode.FAILED_PRECONDITION, (c, why)
        c, why = code_of(op.DrainNode, D(node_id="grid-test", drain=True), metadata=tok(VIEW), timeout=5)
        assert c == grpc.StatusCode.PERMISSION_DENIED, (c, why)
        c, why = code_of(op.DrainNode, D(node_id="grid-test", drain=True), timeout=5)
        assert c == grpc.StatusCode.UNAUTHENTICATED, (c, why)
        for bad in ("", "node 2", "x" * 41, "node/2", "n\u00e9"):
            c, why = code_of(op.DrainNode, D(node_id=bad, drain=True), metadata=tok(OP), timeout=5)
            assert c == grpc.StatusCode.INVALID_ARGUMENT and "node_id must be 1 to 40" in why, (bad, c, why)
        c, why = code_of(op.DrainNode, D(node_id="grid-test", drain=True, reason="x" * 300), metadata=tok(OP),
                         timeout=5)
        assert c == grpc.StatusCode.INVALID_ARGUMENT and "reason" in why, (c, why)
        # Audited (in the log: this vppd has no database), refusals too.
        log = open(env.proc.log_path).read()
        assert "principal=token:ops action=DrainNode request_id=- result=not_clustered " \
            "node_id=grid-test drain=true reason=upgrade" in log, log[-3000:]
        assert "action=DrainNode request_id=- result=invalid node_id=node/2 drain=true" in log, log[-3000:]
        # The node is still in service.
        n = op.ListNodes(g.ListNodesRequest(), metadata=tok(VIEW), timeout=5).nodes[0]
        assert not n.draining, n

    r.case("DrainNode on a single vppd: FAILED_PRECONDITION; viewer, no token, bad id refused; audited",
           drain_single)

    def setpoint_latency():
        # On one node a new target goes out at once, not at the next tick
        # (every 200 ms here). The sign alternates so that neither a lease
        # renewal of the previous target nor a learnt bias can pass for it.
        def follow():
            for d in devs:
                sps = [m for k, m in list(d.got) if k == "setpoint"]
                d.telemetry(power=sps[-1].power_kw if sps else 0.0, soc=0.6)
        lat = []
        for i, kw in enumerate([6, -6, 6, -6, 6]):
            for _ in range(3):
                follow()
                time.sleep(0.1)
            before = [len(d.got) for d in devs]
            t0 = time.monotonic()
            op.SetFleetSetpoint(g.SetFleetSetpointRequest(target_kw=kw, valid_for_s=30, request_id="lat-%d" % i),
                                metadata=tok(OP), timeout=5)
            got = None
            while got is None and time.monotonic() - t0 < 2:
                for d, b in zip(devs, before):
                    if any(k == "setpoint" and m.power_kw * kw > 0.25 for k, m in list(d.got)[b:]):
                        got = time.monotonic() - t0
                        break
                time.sleep(0.0005)
            assert got is not None, "no device was sent %s kW within 2 s" % kw
            lat.append(got)
        lat.sort()
        assert lat[len(lat) // 2] < 0.050 and lat[-1] < 0.100, "setpoint to device, s: %s" % lat

    r.case("a new setpoint reaches the devices within 50 ms, not at the next tick", setpoint_latency)

    def health_tracks_dispatch():
        h = vt.stubs()
        hs = h.health_pb2_grpc.HealthStub(ch)
        assert hs.Check(h.health_pb2.HealthCheckRequest(), timeout=5).status == 1

    r.case("Health: SERVING while the control loop ticks", health_tracks_dispatch)
    for d in devs:
        d.close()
    ch.close()


if __name__ == "__main__":
    vt.main(body, budget_s=150)
