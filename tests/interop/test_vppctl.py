#!/usr/bin/python3
"""vppctl, the operator CLI, against a fake vpp.v1.GridOperator + Health
server written here with Google's gRPC for Python (TLS with the dev
certificates, optionally verifying an operator client certificate, and h2c).

Runs the real $VPP_BUILD/tools/vppctl binary and checks what an operator or a
script sees: each command's text output (numbers with thousands separators,
intervals, ages, warnings), that --json parses and carries the server's
values, that the token arrives as `authorization: Bearer ...`, that `set`
sends the right request (valid_for_s, ramp, reason, request_id), that every
error status maps to its message and exit code, and that bad arguments are
refused locally (no call reaches the server).

The fake's behaviour follows the token: "op" is an operator, "viewer" may
read but not set, no token is UNAUTHENTICATED.
Last line: `N passed, N failed`.
"""

import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent import futures

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vpptest  # noqa: E402

import grpc  # noqa: E402

NOW_MS = lambda: int(time.time() * 1000)  # noqa: E731


def grid_stubs():
    """common_pb2, grid_pb2, grid_pb2_grpc, generated at test time."""
    v = vpptest.vpp_stubs()
    return v.common_pb2, v.grid_pb2, v.grid_pb2_grpc


class Fake:
    """State and behaviour of the fake server, shared with the test body."""

    def __init__(self, pb, cpb):
        self.pb, self.cpb = pb, cpb
        self.lock = threading.Lock()
        self.calls = []  # (method, request, metadata dict, peer CN or None)
        self.serving = True
        self.fail = None  # (grpc.StatusCode, message): the next call fails so
        self.delay_s = 0.0
        self.devices = [self._device(i) for i in range(120)]
        self.cluster = False  # status() carries the per-node breakdown

    def nodes(self):
        """Three vppd nodes: the leader, a follower draining, a dead one."""
        E = self.cpb.Estimate
        N = self.pb.NodeStatus
        now = NOW_MS()
        return [
            N(node_id="node-a", role="leader", alive=True, version="0.1.0", api_addr="10.0.0.1:7444",
              device_addr="10.0.0.1:7443", started_at_ms=now - 3600000, heartbeat_at_ms=now - 300,
              heartbeat_age_ms=300, epoch=7, share_kw=600.0,
              measured_kw=E(value=598.24, sigma=6.06, lower=588.3, upper=608.2, as_of_ms=now - 400),
              devices_online=400, devices_stale=3, devices_degraded=2, devices_offline=10, shortfall_kw=0.0),
            N(node_id="node-b", role="follower", alive=True, draining=True, version="0.1.0",
              heartbeat_at_ms=now - 800, heartbeat_age_ms=800, epoch=7, share_kw=0.0,
              measured_kw=E(value=-1234.56, sigma=12.5, lower=-1255.1, upper=-1214.0, as_of_ms=now - 900),
              devices_online=300),
            N(node_id="node-c", role="follower", alive=False, version="0.0.9", heartbeat_at_ms=now - 25000,
              heartbeat_age_ms=25000, epoch=6, share_kw=200.0,
              measured_kw=E(value=150.0, sigma=3.0, lower=145.1, upper=154.9, as_of_ms=now - 25000),
              devices_online=112),
        ]

    def _device(self, i):
        E = self.cpb.Estimate
        st = [1, 1, 1, 2, 3, 4][i % 6]
        return self.pb.DeviceInfo(
            device_id="dev-%05d" % i, state=st, rated_charge_kw=5.0, rated_discharge_kw=4.6,
            capacity_kwh=13.5, min_soc=0.1, max_soc=0.95,
            soc=E(value=0.5 + i / 1000.0, sigma=0.005, lower=0.49, upper=0.51),
            power_kw=E(value=2.5 if i % 2 == 0 else -1234.56, sigma=0.27, lower=2.1, upper=2.9),
            last_seen_ms=12000 if st != 4 else 3 * 3600 * 1000,  # an age: see fresh()
            reliability=0.97, degraded=(st == 3), setpoint_kw=2.5, node_id="node-a",
            firmware="emu/1.2")

    def fresh(self, d):
        """|d| with its last_seen_ms (stored as an age) as of now, so the
        age vppctl prints does not depend on how long the test has run."""
        c = self.pb.DeviceInfo()
        c.CopyFrom(d)
        c.last_seen_ms = NOW_MS() - d.last_seen_ms
        return c

    def record(self, method, request, context):
        md = {k: v for k, v in context.invocation_metadata()}
        cn = None
        ac = context.auth_context()
        if ac.get("x509_common_name"):
            cn = ac["x509_common_name"][0].decode()
        with self.lock:
            self.calls.append((method, request, md, cn))
            fail, delay = self.fail, self.delay_s
        if delay:
            time.sleep(delay)
        if fail:
            context.abort(fail[0], fail[1])
        auth = md.get("authorization")
        if auth not in ("Bearer op", "Bearer viewer"):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or unknown bearer token")
        return auth == "Bearer op"

    def clear(self):
        with self.lock:
            self.calls = []
            self.fail = None
            self.delay_s = 0.0
            self.serving = True
            self.cluster = False

    def last(self, method):
        with self.lock:
            for c in reversed(self.calls):
                if c[0] == method:
                    return c
        return None

    def status(self):
        E = self.cpb.Estimate
        now = NOW_MS()
        return self.pb.FleetStatus(
            tick_at_ms=now - 100, target_kw=1200.0, adjusted_target_kw=1215.25, commanded_kw=1230.0,
            measured_kw=E(value=1204.34, sigma=12.06, lower=1184.2, upper=1224.44, as_of_ms=now - 400),
            discharge_headroom_kw=E(value=3400.0, sigma=50.0, lower=3317.8, upper=3482.2, as_of_ms=now - 400),
            charge_headroom_kw=E(value=-4100.0, sigma=60.0, lower=-4198.7, upper=-4001.3, as_of_ms=now - 400),
            stored_energy_kwh=E(value=8123.46, sigma=40.0, lower=8057.7, upper=8189.2, as_of_ms=now - 400),
            expected_delivery_kw=E(value=1200.0, sigma=11.0, lower=1181.9, upper=1218.1, as_of_ms=now - 400),
            tracking_error_kw=-4.34, shortfall_kw=0.0, devices_online=812, devices_stale=20,
            devices_degraded=15, devices_offline=153, active_setpoint_id="sp-42",
            active_valid_until_ms=now + 12 * 60 * 1000 + 5000,
            nodes=self.nodes() if self.cluster else [], leader_node_id="node-a" if self.cluster else "",
            leader_epoch=7 if self.cluster else 0)


def make_servicer(fake, grid_pb2_grpc, health_pb2, health_pb2_grpc):
    pb, E = fake.pb, fake.cpb.Estimate

    class Grid(grid_pb2_grpc.GridOperatorServicer):
        def SetFleetSetpoint(self, req, ctx):
            operator = fake.record("SetFleetSetpoint", req, ctx)
            if not operator:
                ctx.abort(grpc.StatusCode.PERMISSION_DENIED, "role viewer cannot command")
            if req.target_kw > 1e6:
                ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, "target_kw 2e+06 is beyond the limit 1e+06")
            deliver = min(req.target_kw, 5000.0)
            return pb.SetFleetSetpointResponse(
                setpoint_id="sp-%s" % req.request_id[:8],
                expected_delivery_kw=E(value=deliver, sigma=20.0, lower=deliver - 33, upper=deliver + 33),
                shortfall_kw=req.target_kw - deliver, valid_until_ms=NOW_MS() + req.valid_for_s * 1000,
                sustainable_for_s=2500.0 / abs(deliver) * 3600 if deliver else 0,  # 2,500 kWh either way
                # A ramp from 0 kW.
                ramp_duration_s=abs(deliver) / req.ramp_kw_per_s if req.ramp_kw_per_s else 0,
                ramp_end_kw=math.copysign(min(abs(deliver), req.ramp_kw_per_s * req.valid_for_s), deliver))

        def GetFleetStatus(self, req, ctx):
            fake.record("GetFleetStatus", req, ctx)
            return fake.status()

        def WatchFleet(self, req, ctx):
            fake.record("WatchFleet", req, ctx)
            i = 0
            while ctx.is_active() and i < 600:
                s = fake.status()
                s.target_kw = 1000.0 + i
                yield s
                i += 1
                time.sleep(0.1)

        def PreviewDispatch(self, req, ctx):
            fake.record("PreviewDispatch", req, ctx)
            deliver = min(req.target_kw, 5000.0)
            return pb.PreviewDispatchResponse(
                expected_delivery_kw=E(value=deliver, sigma=25.0, lower=deliver - 41, upper=deliver + 41),
                shortfall_kw=req.target_kw - deliver, devices_saturated=37 if req.target_kw > 5000 else 0,
                devices_dispatched=812)

        def ListDevices(self, req, ctx):
            fake.record("ListDevices", req, ctx)
            devs = [d for d in fake.devices if req.state == 0 or d.state == req.state]
            start = int(req.page_token or "0")
            size = min(req.page_size or 50, 50)  # the fake caps pages at 50
            page = devs[start:start + size]
            nxt = str(start + size) if start + size < len(devs) else ""
            return pb.ListDevicesResponse(devices=[fake.fresh(d) for d in page], next_page_token=nxt)

        def ListNodes(self, req, ctx):
            fake.record("ListNodes", req, ctx)
            return pb.ListNodesResponse(nodes=fake.nodes(), leader_node_id="node-a", leader_epoch=7)

        def DrainNode(self, req, ctx):
            operator = fake.record("DrainNode", req, ctx)
            if not operator:
                ctx.abort(grpc.StatusCode.PERMISSION_DENIED, "this needs the operator role; your token is a viewer's")
            if req.node_id not in [n.node_id for n in fake.nodes() if n.alive]:
                ctx.abort(grpc.StatusCode.NOT_FOUND, "no live node '%s' in this cluster" % req.node_id)
            return pb.DrainNodeResponse(node_id=req.node_id, draining=req.drain)

        def GetDevice(self, req, ctx):
            fake.record("GetDevice", req, ctx)
            for d in fake.devices:
                if d.device_id == req.device_id:
                    return fake.fresh(d)
            ctx.abort(grpc.StatusCode.NOT_FOUND, "no device %s" % req.device_id)

    class Health(health_pb2_grpc.HealthServicer):
        def Check(self, req, ctx):
            fake.record("Check", req, ctx)
            S = health_pb2.HealthCheckResponse
            return S(status=S.SERVING if fake.serving else S.NOT_SERVING)

    return Grid(), Health()


def start_server(fake, svcs, certs=None, client_ca=None):
    """Python's grpc cannot ask for a client certificate without requiring
    it: with |client_ca| the server is mutual TLS."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    grid, health, add_grid, add_health = svcs
    add_grid(grid, server)
    add_health(health, server)
    if certs is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        creds = grpc.ssl_server_credentials([(certs.read("server_key"), certs.read("server"))],
                                            root_certificates=client_ca,
                                            require_client_auth=client_ca is not None)
        port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    return server, port


class CutProxy:
    """A cleartext HTTP/2 relay to |upstream| that closes both connections
    right after the server's first response HEADERS frame: a vppd that
    dies mid-call, after its headers and before its grpc-status."""

    def __init__(self, upstream):
        self.upstream = upstream
        self.cuts = 0
        self.listener = vpptest.Listener(self._conn)
        self.port = self.listener.port

    def _conn(self, c):
        u = socket.create_connection(("127.0.0.1", self.upstream))
        threading.Thread(target=vpptest.pump, args=(c, u), daemon=True).start()
        threading.Thread(target=self._cut, args=(u, c), daemon=True).start()

    def _cut(self, src, dst):
        """Forwards whole frames from |src| up to the first response HEADERS."""
        buf = b""
        try:
            while True:
                b = src.recv(65536)
                if not b:
                    return
                buf += b
                while len(buf) >= 9:
                    n = int.from_bytes(buf[:3], "big") + 9
                    if len(buf) < n:
                        break
                    frame, buf = buf[:n], buf[n:]
                    dst.sendall(frame)
                    stream = int.from_bytes(frame[5:9], "big") & 0x7FFFFFFF
                    if frame[3] == 1 and stream:  # HEADERS of a response
                        self.cuts += 1
                        return
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)  # wakes the other direction's pump
                except OSError:
                    pass
                s.close()

    def close(self):
        self.listener.close()


class Ctl:
    """Runs vppctl with a base set of flags and environment."""

    def __init__(self, exe, base, env=None):
        self.exe, self.base, self.env = exe, base, env or {}

    def __call__(self, *args, env=None, timeout=20, base=True):
        e = dict(os.environ)
        for k in ("VPP_SERVER", "VPP_CA", "VPP_CERT", "VPP_KEY", "VPP_TOKEN", "VPP_H2C"):
            e.pop(k, None)
        e["TZ"] = "UTC"
        e.update(self.env)
        e.update(env or {})
        argv = [self.exe] + (list(self.base) if base else []) + list(args)
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=e)
        return p


def expect(p, rc, out=(), err=()):
    """Asserts exit code |rc| and that each regex in |out| / |err| matches."""
    why = "exit %d (want %d)\nstdout:\n%s\nstderr:\n%s" % (p.returncode, rc, p.stdout, p.stderr)
    assert p.returncode == rc, why
    for rx in out:
        assert re.search(rx, p.stdout, re.M), "stdout lacks /%s/\n%s" % (rx, why)
    for rx in err:
        assert re.search(rx, p.stderr, re.M), "stderr lacks /%s/\n%s" % (rx, why)


def one_json(p):
    lines = [ln for ln in p.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, "want one JSON line, got:\n%s" % p.stdout
    return json.loads(lines[0])


def est_eq(j, e):
    for k in ("value", "sigma", "lower", "upper", "as_of_ms"):
        assert abs(j[k] - getattr(e, k)) < 1e-9, "estimate %s: %r vs %r" % (k, j[k], getattr(e, k))


def body(r):
    exe = os.path.join(vpptest.build_dir(), "tools", "vppctl")
    if not os.path.exists(exe):
        r.fail("vppctl", "%s does not exist: build it first" % exe)
        return
    cpb, pb, pbg = grid_stubs()
    hs = vpptest.stubs()
    certs = vpptest.make_certs()
    fake = Fake(pb, cpb)
    grid, health = make_servicer(fake, pbg, hs.health_pb2, hs.health_pb2_grpc)
    svcs = (grid, health, pbg.add_GridOperatorServicer_to_server, hs.health_pb2_grpc.add_HealthServicer_to_server)
    servers = []
    try:
        for kw in ({"certs": certs}, {}, {"certs": certs, "client_ca": certs.read("operator_ca")}):
            servers.append(start_server(fake, svcs, **kw))
        run_cases(r, exe, fake, pb, certs, *[port for _, port in servers])
    finally:
        for s, _ in servers:
            s.stop(0)


def run_cases(r, exe, fake, pb, certs, tls_port, h2c_port, mtls_port):
    tls = "127.0.0.1:%d" % tls_port
    ctl = Ctl(exe, ["--server", tls, "--ca", certs.ca, "--server-name", "localhost", "--token", "op"])
    h2c = Ctl(exe, [], env={"VPP_SERVER": "127.0.0.1:%d" % h2c_port, "VPP_H2C": "1", "VPP_TOKEN": "op"})

    def case(name, fn):
        fake.clear()
        r.case(name, fn)

    def help_text():
        p = ctl("--help", base=False)
        expect(p, 0, out=[r"^usage: vppctl", r"0\s+ok", r"2\s+usage", r"3\s+cannot connect",
                          r"--request-id", r"VPP_TOKEN", r"^  node drain <id> \[--reason TEXT\]$",
                          r"^  node undrain <id>\s+put a drained node back", r"--reason TEXT .*\(set\) \(node drain\)"])

    def usage_errors():
        bad = [("set", "abc"), ("set", "nan"), ("set", "inf"), ("set", "1e400"), ("set",),
               ("set", "100", "--for", "-5m"), ("set", "100", "--for", "0"), ("set", "100", "--for", "5x"),
               ("set", "100", "--ramp", "-1"), ("devices", "--state", "sleeping"), ("devices", "--limit", "0"),
               ("frobnicate",), ("status", "--for", "15m"), ("status", "extra"), ("watch", "--count", "x"),
               ("preview",), ("device",), ("status", "--timeout", "soon"), ("status", "--cert", certs.operator),
               ("node",), ("node", "remove", "node-a"), ("node", "drain"), ("node", "drain", "node a"),
               ("node", "drain", "n" * 41), ("node", "undrain", "node-a", "--reason", "why")]
        for args in bad:
            p = ctl(*args)
            assert p.returncode == 2, "%s: exit %d, stderr %s" % (args, p.returncode, p.stderr)
            assert p.stderr.startswith("vppctl: ") and "--help" in p.stderr, "%s: %s" % (args, p.stderr)
        assert not fake.calls, "a call reached the server: %s" % [c[0] for c in fake.calls]
        p = ctl("set", "abc")
        assert "abc" in p.stderr and "kW" in p.stderr, p.stderr
        p = ctl("status", "--server", "nohost")
        expect(p, 2, err=[r"HOST:PORT"])

    def status_text():
        p = ctl("status")
        expect(p, 0, out=[
            r"^Fleet status, as of 0\.[4-9] s ago",
            r"^  target\s+1,200\.0 kW$",
            r"^  adjusted target\s+1,215\.2 kW$|^  adjusted target\s+1,215\.3 kW$",
            r"^  measured\s+1,204\.3 kW ±12\.1 \(90%: 1,184\.2–1,224\.4\)$",
            r"^  tracking error\s+-4\.3 kW$",
            r"^  discharge headroom\s+3,400\.0 kW ±50\.0 \(90%: 3,317\.8–3,482\.2\)$",
            r"^  charge headroom\s+-4,100\.0 kW ±60\.0 \(90%: -4,198\.7–-4,001\.3\)$",
            r"^  stored energy\s+8,123\.5 kWh ±40\.0",
            r"^  devices\s+812 online, 20 stale, 15 degraded, 153 offline$",
            r"^  active setpoint\s+sp-42, 12 min left \(until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\)$"])
        assert "WARNING" not in p.stdout, p.stdout
        assert "Nodes" not in p.stdout and "NODE" not in p.stdout, "a single vppd has no per-node part"
        c = fake.last("GetFleetStatus")
        assert c[2].get("authorization") == "Bearer op", c[2]

    def status_json():
        p = ctl("status", "--json")
        expect(p, 0)
        j = one_json(p)
        s = fake.status()
        assert j["target_kw"] == 1200.0 and j["adjusted_target_kw"] == 1215.25, j
        for k in ("measured_kw", "discharge_headroom_kw", "charge_headroom_kw", "stored_energy_kwh"):
            e = getattr(s, k)
            for f in ("value", "sigma", "lower", "upper"):
                assert j[k][f] == getattr(e, f), (k, f, j[k])
        assert abs(j["measured_kw"]["as_of_ms"] - s.measured_kw.as_of_ms) < 5000
        assert j["tracking_error_kw"] == -4.34 and j["shortfall_kw"] == 0
        assert (j["devices_online"], j["devices_stale"], j["devices_degraded"], j["devices_offline"]) == \
            (812, 20, 15, 153), j
        assert j["active_setpoint_id"] == "sp-42" and 300 <= j["data_age_ms"] < 5000, j

    def status_per_node():
        fake.cluster = True
        p = ctl("status")
        expect(p, 0, out=[
            r"^  measured\s+1,204\.3 kW ±12\.1",
            r"^Nodes \(3, 2 alive; leader node-a, epoch 7\):$",
            r"^  NODE\s+ROLE\s+ONLINE\s+SHARE kW\s+MEASURED kW ± sigma\s+HEARTBEAT\s+VERSION\s+DRAINING$",
            r"^  node-a\s+leader\s+400\s+600\.0\s+598\.2 ±6\.1\s+0\.3 s ago\s+0\.1\.0\s+no$",
            r"^  node-b\s+follower\s+300\s+0\.0\s+-1,234\.6 ±12\.5\s+0\.8 s ago\s+0\.1\.0\s+yes$",
            r"^  node-c\s+follower\s+112\s+200\.0\s+150\.0 ±3\.0\s+25 s ago, dead\s+0\.0\.9\s+no$"])
        # The breakdown comes after the fleet's rows.
        assert p.stdout.index("active setpoint") < p.stdout.index("Nodes ("), p.stdout
        j = one_json(ctl("status", "--json"))
        assert j["leader_node_id"] == "node-a" and j["leader_epoch"] == 7, j
        assert [n["node_id"] for n in j["nodes"]] == ["node-a", "node-b", "node-c"], j["nodes"]
        a = j["nodes"][0]
        assert a["role"] == "leader" and a["alive"] is True and a["share_kw"] == 600 and a["epoch"] == 7, a
        assert a["measured_kw"]["value"] == 598.24 and a["measured_kw"]["sigma"] == 6.06, a
        assert j["nodes"][2]["alive"] is False and j["nodes"][1]["draining"] is True, j["nodes"]
        # A single vppd: the same keys, no nodes.
        fake.cluster = False
        j = one_json(ctl("status", "--json"))
        assert j["nodes"] == [] and j["leader_node_id"] is None and j["leader_epoch"] == 0, j

    def nodes_table():
        p = ctl("nodes")
        expect(p, 0, out=[
            r"^NODE\s+ROLE\s+ONLINE\s+SHARE kW\s+MEASURED kW ± sigma\s+HEARTBEAT\s+VERSION\s+DRAINING$",
            r"^node-a\s+leader\s+400\s+600\.0\s+598\.2 ±6\.1\s+0\.3 s ago\s+0\.1\.0\s+no$",
            r"^node-b\s+follower\s+300\s+0\.0\s+-1,234\.6 ±12\.5\s+0\.8 s ago\s+0\.1\.0\s+yes$",
            r"^node-c\s+follower\s+112\s+200\.0\s+150\.0 ±3\.0\s+25 s ago, dead\s+0\.0\.9\s+no$",
            r"^3 nodes, 2 alive; leader node-a \(epoch 7\)$"])
        lines = p.stdout.splitlines()
        hdr, rows = lines[0], [ln for ln in lines if ln.startswith("node-")]
        # Columns line up: numbers end where their header ends, text
        # starts where its header starts.
        for col in ("ONLINE", "SHARE kW", "MEASURED kW ± sigma", "HEARTBEAT"):
            end = hdr.index(col) + len(col)
            assert all(r[end - 1] != " " and r[end] == " " for r in rows), (col, hdr, rows)
        for col in ("ROLE", "VERSION", "DRAINING"):
            at = hdr.index(col)
            assert all(r[at] != " " and r[at - 1] == " " for r in rows), (col, hdr, rows)
        assert fake.last("ListNodes")[2]["authorization"] == "Bearer op"
        j = one_json(ctl("nodes", "--json", "--token", "viewer"))
        assert j["count"] == 3 and j["alive"] == 2 and j["leader_node_id"] == "node-a" and j["leader_epoch"] == 7, j
        c = j["nodes"][2]
        assert c["node_id"] == "node-c" and c["alive"] is False and c["heartbeat_age_ms"] == 25000 and \
            c["version"] == "0.0.9" and c["epoch"] == 6 and c["api_addr"] is None, c
        a = j["nodes"][0]
        assert a["api_addr"] == "10.0.0.1:7444" and a["device_addr"] == "10.0.0.1:7443" and \
            a["devices_stale"] == 3 and a["devices_degraded"] == 2 and a["devices_offline"] == 10, a
        m = a["measured_kw"]
        assert (m["value"], m["sigma"], m["lower"], m["upper"]) == (598.24, 6.06, 588.3, 608.2), m
        # A vppd from before ListNodes.
        fake.fail = (grpc.StatusCode.UNIMPLEMENTED, "")
        expect(ctl("nodes"), 1, err=[r"does not serve this call \(an older version\?\)"])
        fake.fail = None
        expect(ctl("nodes", "extra"), 2, err=[r"unexpected argument 'extra'"])

    def node_drain():
        p = ctl("node", "drain", "node-b", "--reason", "upgrade to 0.2")
        expect(p, 0)
        assert p.stdout == "node-b: draining (its devices move to the other nodes; watch `vppctl nodes`)\n", p.stdout
        _, req, md, _ = fake.last("DrainNode")
        assert req.node_id == "node-b" and req.drain is True and req.reason == "upgrade to 0.2", req
        assert md["authorization"] == "Bearer op", md
        p = ctl("node", "undrain", "node-b")
        expect(p, 0)
        assert p.stdout == "node-b: no longer draining\n", p.stdout
        _, req, _, _ = fake.last("DrainNode")
        assert req.node_id == "node-b" and req.drain is False and req.reason == "", req
        assert one_json(ctl("--json", "node", "drain", "node-a")) == {"node_id": "node-a", "draining": True}
        assert one_json(ctl("node", "undrain", "node-a", "--json")) == {"node_id": "node-a", "draining": False}
        # No live node of that id (node-c is dead).
        p = ctl("node", "drain", "node-c")
        expect(p, 1, err=[r"^vppctl: not found: no live node 'node-c' in this cluster$"])
        j = one_json(ctl("node", "drain", "node-9", "--json"))
        assert j["error"]["code"] == "NOT_FOUND" and j["error"]["exit_code"] == 1, j
        p = ctl("node", "drain", "node-b", "--token", "viewer")
        expect(p, 1, err=[r"^vppctl: your role cannot do this \(node drain needs the operator role\)"])
        p = ctl("node", "undrain", "node-b", "--token", "viewer")
        expect(p, 1, err=[r"^vppctl: your role cannot do this \(node undrain needs the operator role\)"])
        # A single vppd, the database down, and a vppd from before DrainNode.
        cases = [(grpc.StatusCode.FAILED_PRECONDITION,
                  "this vppd is not in a cluster (--cluster): nothing to drain to",
                  r"^vppctl: refused in the current state: this vppd is not in a cluster \(--cluster\): nothing"),
                 (grpc.StatusCode.UNAVAILABLE, "the database is unreachable: retry",
                  r"^vppctl: vppd at 127\.0\.0\.1:\d+ is unavailable: the database is unreachable: retry$"),
                 (grpc.StatusCode.UNIMPLEMENTED, "", r"does not serve this call \(an older version\?\)")]
        for code, msg, rx in cases:
            fake.fail = (code, msg)
            expect(ctl("node", "drain", "node-b"), 1, err=[rx])
        fake.fail = None
        n = len(fake.calls)
        expect(ctl("node", "drain", "node/b"), 2, err=[r"^vppctl: node drain 'node/b': a node id is 1 to 40"])
        assert len(fake.calls) == n, "a bad id reached the server"

    def set_full():
        p = ctl("set", "1500", "--for", "90m", "--ramp", "25.5", "--reason", "evening \"peak\" ☀",
                "--request-id", "retry-abc-123")
        expect(p, 0, out=[r"^Setpoint accepted: 1,500\.0 kW$", r"^  setpoint id\s+sp-retry-ab$",
                          r"^  request id\s+retry-abc-123$",
                          r"^  valid until\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(in 90 min\)$",
                          r"^  ramp\s+25\.5 kW/s \(reaches the target in 59 s\)$",
                          r"^  expected delivery\s+1,500\.0 kW ±20\.0 \(90%: 1,467\.0–1,533\.0\)$",
                          r"^  shortfall\s+0\.0 kW$",
                          r"^  energy lasts\s+about 100 min at most, until the batteries are empty$"])
        assert "WARNING" not in p.stdout
        _, req, md, _ = fake.last("SetFleetSetpoint")
        assert req.target_kw == 1500 and req.valid_for_s == 5400 and req.ramp_kw_per_s == 25.5, req
        assert req.reason == "evening \"peak\" ☀" and req.request_id == "retry-abc-123", req
        assert md["authorization"] == "Bearer op"

    def set_defaults_and_negative():
        p = ctl("set", "-350.5")
        expect(p, 0, out=[r"^Setpoint accepted: -350\.5 kW$", r"^  ramp\s+step$", r"\(in 15 min\)"])
        _, req, _, _ = fake.last("SetFleetSetpoint")
        assert req.target_kw == -350.5 and req.valid_for_s == 900 and req.ramp_kw_per_s == 0, req
        assert req.reason == ""
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", req.request_id), \
            req.request_id
        assert re.search(r"^  request id\s+%s$" % req.request_id, p.stdout, re.M), p.stdout
        first = req.request_id
        ctl("set", "1.2MW", "--for", "45s")
        _, req, _, _ = fake.last("SetFleetSetpoint")
        assert req.target_kw == 1200 and req.valid_for_s == 45 and req.request_id != first, req

    def set_shortfall():
        p = ctl("set", "8000", "--json")
        expect(p, 0)
        j = one_json(p)
        assert j["shortfall_kw"] == 3000 and j["can_deliver"] is False, j
        assert j["expected_delivery_kw"]["value"] == 5000 and j["request_id"] and j["valid_for_s"] == 900, j
        assert j["setpoint_id"] == "sp-" + j["request_id"][:8]
        assert abs(j["valid_until_ms"] - (NOW_MS() + 900000)) < 10000, j
        p = ctl("set", "8000")
        expect(p, 0, out=[r"^WARNING: the fleet cannot deliver 8,000\.0 kW: it is expected to deliver "
                          r"5,000\.0 kW, short by 3,000\.0 kW$", r"^  shortfall\s+3,000\.0 kW$"])

    def set_energy_runs_out():
        # 2,500 kWh at 2,000 kW: 75 min, for a setpoint of 2 h.
        p = ctl("set", "2000", "--for", "2h")
        expect(p, 0, out=[r"^  energy lasts\s+about 75 min at most, until the batteries are empty$",
                          r"^WARNING: the fleet's stored energy runs out after about 75 min, before the "
                          r"setpoint's 2 h are over: expect delivery to fall off from then$"])
        p = ctl("set", "-2000", "--for", "2h", "--json")
        j = one_json(p)
        assert j["sustainable_for_s"] == 4500 and j["can_deliver"] is False, j
        p = ctl("set", "-2000", "--for", "1h")
        expect(p, 0, out=[r"^  energy lasts\s+about 75 min at most, until the batteries are full$"])
        assert "WARNING" not in p.stdout, p.stdout

    def set_ramp_too_slow():
        p = ctl("set", "1500", "--ramp", "1", "--for", "5m")
        expect(p, 0, out=[r"^  ramp\s+1\.0 kW/s \(reaches the target in 25 min\)$",
                          r"^WARNING: the ramp gets only to 300\.0 kW before the setpoint ends \(it needs "
                          r"25 min\)$"])
        j = one_json(ctl("set", "1500", "--ramp", "1", "--for", "5m", "--json"))
        assert j["ramp_duration_s"] == 1500 and j["ramp_end_kw"] == 300 and j["can_deliver"] is False, j

    def set_failure_prints_request_id():
        # A failure a retry may get past: the id to retry with.
        fake.fail = (grpc.StatusCode.UNAVAILABLE, "the setpoint could not be recorded (database unavailable)")
        p = ctl("set", "100", "--request-id", "keep-me")
        expect(p, 1, err=[r"is unavailable: the setpoint could not be recorded", r"--request-id keep-me"])
        # vppd judged the request itself: the same request would fail again.
        fake.fail = (grpc.StatusCode.INVALID_ARGUMENT, "valid_for_s 99999 is over the limit 86400")
        p = ctl("set", "100", "--request-id", "keep-me")
        expect(p, 1, err=[r"invalid request: valid_for_s 99999 is over the limit 86400"])
        assert "--request-id" not in p.stderr, p.stderr

    def preview():
        p = ctl("preview", "6000")
        expect(p, 0, out=[r"^Preview of 6,000\.0 kW \(nothing sent\)$",
                          r"^  expected delivery\s+5,000\.0 kW ±25\.0 \(90%: 4,959\.0–5,041\.0\)$",
                          r"^  shortfall\s+1,000\.0 kW$", r"^  devices dispatched\s+812$",
                          r"^  devices saturated\s+37", r"^WARNING: the fleet cannot deliver 6,000\.0 kW"])
        assert fake.last("PreviewDispatch")[1].target_kw == 6000
        assert fake.last("SetFleetSetpoint") is None, "preview must not command"
        j = one_json(ctl("preview", "-200", "--json"))
        assert j["target_kw"] == -200 and j["expected_delivery_kw"]["value"] == -200 and \
            j["shortfall_kw"] == 0 and j["devices_saturated"] == 0 and j["devices_dispatched"] == 812, j

    def devices_table():
        p = ctl("devices")
        expect(p, 0, out=[r"^DEVICE\s+STATE\s+SOC %\s+POWER kW\s+SETPOINT kW\s+RELIAB\s+LAST SEEN\s+NODE$",
                          r"^dev-00000\s+online\s+50\.0 ±0\.5\s+2\.5 ±0\.3\s+2\.5\s+0\.97\s+12 s ago\s+node-a$",
                          r"^dev-00001\s+online\s+50\.1 ±0\.5\s+-1,234\.6 ±0\.3",
                          r"^dev-00005\s+offline\s.*3 h ago\s+node-a$",
                          r"^50 devices; more on the server"])
        rows = [ln for ln in p.stdout.splitlines() if ln.startswith("dev-")]
        assert len(rows) == 50, len(rows)
        # Columns line up: every row's SOC column ends where the header's does.
        hdr = p.stdout.splitlines()[0]
        assert len({len(x.split("node-a")[0]) for x in rows}) == 1, "ragged table"
        assert hdr.index("NODE") == rows[0].index("node-a"), (hdr, rows[0])

    def devices_paging():
        p = ctl("devices", "--all", "--json")
        expect(p, 0)
        j = one_json(p)
        ids = [d["device_id"] for d in j["devices"]]
        assert ids == ["dev-%05d" % i for i in range(120)] and j["count"] == 120 and j["more"] is False, j["count"]
        reqs = [c[1] for c in fake.calls if c[0] == "ListDevices"]
        assert len(reqs) == 3 and [q.page_token for q in reqs] == ["", "50", "100"], reqs
        d0 = j["devices"][0]
        assert d0["state"] == "online" and d0["soc"]["value"] == 0.5 and d0["power_kw"]["sigma"] == 0.27 and \
            d0["node_id"] == "node-a" and d0["rated_discharge_kw"] == 4.6 and 11000 < d0["last_seen_age_ms"] < 20000, d0
        fake.clear()
        j = one_json(ctl("devices", "--limit", "70", "--json"))
        assert j["count"] == 70 and len(j["devices"]) == 70 and j["more"] is True, j["count"]
        sizes = [c[1].page_size for c in fake.calls if c[0] == "ListDevices"]
        assert sizes == [70, 20], sizes
        fake.clear()
        p = ctl("devices", "--state", "degraded", "--all")
        expect(p, 0, out=[r"^20 devices degraded$"])
        assert all(c[1].state == pb.DEVICE_STATE_DEGRADED for c in fake.calls if c[0] == "ListDevices")
        assert all(re.match(r"dev-\d+\s+degraded\s", ln) for ln in p.stdout.splitlines() if ln.startswith("dev-"))

    def device_detail():
        p = ctl("device", "dev-00003")
        expect(p, 0, out=[r"^Device dev-00003$", r"^  state\s+stale$", r"^  reliability\s+0\.97$",
                          r"^  power\s+-1,234\.6 kW ±0\.3 \(90%: 2\.1–2\.9\)$",
                          r"^  state of charge\s+50\.3 % ±0\.5 \(90%: 49\.0–51\.0\)$",
                          r"^  SoC limits\s+10\.0% \.\. 95\.0%$",
                          r"^  ratings\s+5\.0 kW charge, 4\.6 kW discharge$", r"^  capacity\s+13\.5 kWh$",
                          r"^  last seen\s+12 s ago", r"^  session node\s+node-a$", r"^  firmware\s+emu/1\.2$"])
        assert fake.last("GetDevice")[1].device_id == "dev-00003"
        j = one_json(ctl("device", "dev-00004", "--json"))
        assert j["device_id"] == "dev-00004" and j["state"] == "degraded" and j["degraded"] is True and \
            j["capacity_kwh"] == 13.5 and j["firmware"] == "emu/1.2", j
        p = ctl("device", "dev-99999")
        expect(p, 1, err=[r"^vppctl: not found: no device dev-99999$"])

    def health():
        p = ctl("health")
        expect(p, 0, out=[r"^SERVING$"])
        fake.serving = False
        p = ctl("health")
        expect(p, 1, out=[r"^NOT_SERVING$"])
        j = one_json(ctl("health", "--json"))
        assert j == {"status": "NOT_SERVING", "serving": False}, j

    def watch_count():
        p = ctl("watch", "--count", "3")
        expect(p, 0, out=[r"^TIME\s+TARGET kW\s+MEASURED kW ± sigma \[90%\]\s+ERROR kW\s+ONLINE$"])
        lines = [ln for ln in p.stdout.splitlines()[1:] if ln.strip()]
        assert len(lines) == 3, p.stdout
        for i, ln in enumerate(lines):
            assert re.match(r"^\d\d:\d\d:\d\d\s+1,00%d\.0\s+1,204\.3 ±12\.1 \[1,184\.2–1,224\.4\]\s+-4\.3\s+812$" % i,
                            ln), ln
        p = ctl("watch", "--count", "4", "--json")
        expect(p, 0)
        objs = [json.loads(ln) for ln in p.stdout.splitlines()]
        assert [o["target_kw"] for o in objs] == [1000, 1001, 1002, 1003], objs
        assert all(o["measured_kw"]["value"] == 1204.34 for o in objs)

    def watch_ctrl_c():
        e = dict(os.environ, TZ="UTC")
        for k in ("VPP_SERVER", "VPP_H2C", "VPP_TOKEN"):
            e.pop(k, None)
        proc = subprocess.Popen([exe] + ctl.base + ["watch"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=e)
        try:
            got = []
            deadline = time.monotonic() + 10
            while len(got) < 3 and time.monotonic() < deadline:
                ln = proc.stdout.readline()
                if not ln:
                    break
                got.append(ln)
            assert len(got) == 3, "no updates: %r %s" % (got, proc.stderr.read() if proc.poll() is not None else "")
            t0 = time.monotonic()
            proc.send_signal(signal.SIGINT)
            rc = proc.wait(timeout=5)
            took = time.monotonic() - t0
            assert rc == 0 and took < 2, "exit %s after %.2f s; stderr %s" % (rc, took, proc.stderr.read())
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
            proc.stderr.close()
        # The server saw the stream end (cancelled), not a hanging watcher.
        time.sleep(0.3)

    def watch_closed_stdout():
        # `vppctl watch | head -2`: once the reader is gone, vppctl ends.
        e = dict(os.environ, TZ="UTC")
        proc = subprocess.Popen([exe] + ctl.base + ["watch", "--json"], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, env=e)
        try:
            first = proc.stdout.readline()
            assert json.loads(first)["devices_online"] == 812, first
            proc.stdout.close()
            rc = proc.wait(timeout=5)
            assert rc == 0, "exit %s" % rc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def error_statuses():
        p = Ctl(exe, ["--server", tls, "--ca", certs.ca, "--server-name", "localhost"])("status")
        expect(p, 1, err=[r"^vppctl: no or invalid token \(set --token or VPP_TOKEN\)"])
        assert "authorization" not in fake.last("GetFleetStatus")[2]
        p = ctl("status", "--token", "nope")
        expect(p, 1, err=[r"no or invalid token"])
        assert fake.last("GetFleetStatus")[2]["authorization"] == "Bearer nope"
        p = ctl("set", "100", "--token", "viewer")
        expect(p, 1, err=[r"^vppctl: your role cannot do this \(set needs the operator role\)"])
        p = ctl("set", "2e6")
        expect(p, 1, err=[r"^vppctl: invalid request: target_kw 2e\+06 is beyond the limit 1e\+06$"])
        # vppd answered: it was reached, so not exit 3.
        cases = [(grpc.StatusCode.UNAVAILABLE, "dispatch loop stopped", 1,
                  r"^vppctl: vppd at 127\.0\.0\.1:\d+ is unavailable: dispatch loop stopped$"),
                 (grpc.StatusCode.RESOURCE_EXHAUSTED, "too many watchers", 1, r"overloaded.*too many watchers"),
                 (grpc.StatusCode.FAILED_PRECONDITION, "database down", 1, r"database down"),
                 (grpc.StatusCode.ALREADY_EXISTS, "request_id used for a different request", 1,
                  r"already exists: request_id used"),
                 (grpc.StatusCode.INTERNAL, "boom", 1, r"server error INTERNAL: boom"),
                 (grpc.StatusCode.UNIMPLEMENTED, "", 1, r"does not serve this call")]
        for code, msg, rc, rx in cases:
            fake.fail = (code, msg)
            expect(ctl("status"), rc, err=[rx])
        fake.fail = (grpc.StatusCode.PERMISSION_DENIED, "role viewer")
        j = one_json(ctl("preview", "5", "--json"))
        assert j["error"]["code"] == "PERMISSION_DENIED" and j["error"]["status"] == 7 and \
            j["error"]["server_message"] == "role viewer" and j["error"]["exit_code"] == 1, j
        fake.fail = None
        fake.delay_s = 1.5
        t0 = time.monotonic()
        p = ctl("status", "--timeout", "300ms")
        took = time.monotonic() - t0
        expect(p, 1, err=[r"did not answer within 0\.3 s \(--timeout\)"])
        assert took < 1.4, "took %.2f s" % took

    def connect_errors():
        port = vpptest.free_port()
        p = ctl("status", "--server", "127.0.0.1:%d" % port)
        expect(p, 3, err=[r"^vppctl: cannot reach vppd at 127\.0\.0\.1:%d: connection refused" % port])
        # A CA that did not sign the server's certificate.
        p = ctl("status", "--ca", certs.operator_ca)
        expect(p, 3, err=[r"^vppctl: cannot reach vppd at .*TLS handshake failed"])
        # The certificate is for localhost/127.0.0.1, not this name.
        p = ctl("status", "--server-name", "vpp.example.org")
        expect(p, 3, err=[r"TLS handshake failed"])
        # A cleartext client against the TLS port.
        p = ctl("status", "--insecure-h2c")
        expect(p, 3, err=[r"^vppctl: cannot reach vppd"])
        p = ctl("status", "--ca", "/nonexistent/ca.pem")
        expect(p, 2, err=[r"cannot load the TLS files"])
        j = one_json(ctl("health", "--server", "127.0.0.1:%d" % port, "--json"))
        assert j["error"]["code"] == "UNAVAILABLE" and j["error"]["exit_code"] == 3, j

    def h2c_env():
        p = h2c("status")
        expect(p, 0, out=[r"^  measured\s+1,204\.3 kW ±12\.1"])
        assert fake.last("GetFleetStatus")[2]["authorization"] == "Bearer op"
        p = h2c("set", "42", "--for=1h", "--reason=env test")
        expect(p, 0)
        _, req, _, _ = fake.last("SetFleetSetpoint")
        assert req.valid_for_s == 3600 and req.reason == "env test" and req.target_kw == 42, req
        # Flags win over the environment.
        p = h2c("status", "--token", "viewer")
        expect(p, 0)
        assert fake.last("GetFleetStatus")[2]["authorization"] == "Bearer viewer"

    def midcall_loss():
        # The connection is lost after vppd's response headers, before its
        # grpc-status: not an answer, so exit 3, and a set may or may not
        # have been recorded, so the id to retry with.
        proxy = CutProxy(h2c_port)
        try:
            cut = Ctl(exe, [], env={"VPP_SERVER": "127.0.0.1:%d" % proxy.port, "VPP_H2C": "1",
                                    "VPP_TOKEN": "op"})
            p = cut("status")
            expect(p, 3, err=[r"^vppctl: lost the connection to vppd at 127\.0\.0\.1:%d before its answer"
                              % proxy.port])
            p = cut("set", "42", "--request-id", "lost-1")
            expect(p, 3, err=[r"^vppctl: lost the connection to vppd", r"--request-id lost-1"])
            assert fake.last("SetFleetSetpoint")[1].request_id == "lost-1"
            assert proxy.cuts == 2, proxy.cuts
        finally:
            proxy.close()

    def client_cert():
        mtls = "127.0.0.1:%d" % mtls_port
        p = ctl("status", "--server", mtls, "--cert", certs.operator, "--key", certs.operator_key)
        expect(p, 0)
        assert fake.last("GetFleetStatus")[3] == "operator", fake.last("GetFleetStatus")
        assert fake.last("GetFleetStatus")[2]["authorization"] == "Bearer op"
        # Environment variables name the same files.
        fake.clear()
        p = ctl("health", "--server", mtls, env={"VPP_CERT": certs.operator, "VPP_KEY": certs.operator_key})
        expect(p, 0, out=[r"^SERVING$"])
        assert fake.last("Check")[3] == "operator"
        # Without a certificate the mutual-TLS server refuses the handshake.
        p = ctl("status", "--server", mtls)
        expect(p, 3, err=[r"^vppctl: cannot reach vppd at 127\.0\.0\.1:%d" % mtls_port])

    case("help and exit codes documented", help_text)
    case("bad arguments refused locally (exit 2, nothing sent)", usage_errors)
    case("status: readable block with intervals, ages, token sent", status_text)
    case("status --json: every value from the server", status_json)
    case("status in a cluster: the fleet, then a line per node (and in --json)", status_per_node)
    case("nodes: role, devices, share, measured ± sigma, heartbeat, version, draining; --json", nodes_table)
    case("node drain / undrain: request, output, --json, not found, viewer, single node", node_drain)
    case("set: request carries valid_for, ramp, reason, request_id", set_full)
    case("set: defaults, negative power, random request id", set_defaults_and_negative)
    case("set: shortfall warning and --json", set_shortfall)
    case("set: a warning when the fleet's energy runs out before the setpoint ends", set_energy_runs_out)
    case("set: a warning when the ramp cannot reach the target before the setpoint ends", set_ramp_too_slow)
    case("set: a failure prints the request id to retry with", set_failure_prints_request_id)
    case("preview: delivery, shortfall, saturated, nothing commanded", preview)
    case("devices: aligned table, default limit 50", devices_table)
    case("devices: --all pages, --limit, --state filter", devices_paging)
    case("device <id>: every field; unknown id", device_detail)
    case("health: SERVING exit 0, NOT_SERVING exit 1", health)
    case("watch: --count lines and --json objects", watch_count)
    case("watch: Ctrl-C ends it promptly with exit 0", watch_ctrl_c)
    case("watch: ends when its reader goes away (| head)", watch_closed_stdout)
    case("error statuses: messages and exit codes", error_statuses)
    case("connection failures: refused, wrong CA, wrong name, h2c vs TLS", connect_errors)
    case("h2c with VPP_SERVER / VPP_H2C / VPP_TOKEN", h2c_env)
    case("client certificate identity reaches the server", client_cert)
    case("connection lost mid-call, after the response headers: exit 3, retry hint", midcall_loss)


if __name__ == "__main__":
    vpptest.main(body, budget_s=150)
