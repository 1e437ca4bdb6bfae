#!/usr/bin/env python3
"""DeviceLink sessions against the real vppd, with Google's gRPC for Python
as the device: the happy path (hello, welcome, setpoints from an operator
target, acks, pings), identity spoofing, every kind of bad input, floods,
session replacement and a client without a certificate. A well-behaved
device stays connected throughout: one bad session never hurts the others."""
import os
import queue
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "interop"))
import vpptest as vt  # noqa: E402

import grpc  # noqa: E402

ROOT = vt.ROOT
def mods():
    v = vt.vpp_stubs()
    return dict(d=v.device_pb2, dg=v.device_pb2_grpc, g=v.grid_pb2, gg=v.grid_pb2_grpc)


class Device:
    """One DeviceLink session driven from a thread: |script| messages are sent
    as given; setpoints are acked and pings answered when |auto|."""

    def __init__(self, env, dev_id, claim=None, auto=True, hello=True, ratings=None):
        m = mods()
        self.d = m["d"]
        self.q = queue.Queue()
        self.got = []
        self.status = None
        self.details = None
        self.done = threading.Event()
        self.auto = auto
        self.seq = 0
        creds = grpc.ssl_channel_credentials(env.read("ca.pem"), env.read("devices/%s.key" % dev_id),
                                             env.read("devices/%s.pem" % dev_id))
        self.ch = grpc.secure_channel("localhost:%d" % env.device_port, creds)
        stub = m["dg"].DeviceLinkStub(self.ch)
        if hello:
            r = dict(rated_charge_kw=5, rated_discharge_kw=5, capacity_kwh=10, min_soc=0.1, max_soc=0.9,
                     ramp_kw_per_s=5)
            r.update(ratings or {})
            self.q.put(self.d.DeviceMessage(hello=self.d.Hello(device_id=claim or dev_id, firmware="test", **r)))
        self.call = stub.Connect(self._gen())
        threading.Thread(target=self._read, daemon=True).start()

    def _gen(self):
        while True:
            m = self.q.get()
            if m is None:
                return
            yield m

    def _read(self):
        try:
            for m in self.call:
                kind = m.WhichOneof("msg")
                self.got.append((kind, getattr(m, kind)))
                if self.auto and kind == "setpoint":
                    self.q.put(self.d.DeviceMessage(ack=self.d.Ack(setpoint_seq=m.setpoint.seq, accepted=True)))
                if self.auto and kind == "ping":
                    self.q.put(self.d.DeviceMessage(pong=self.d.Pong(ping_id=m.ping.ping_id,
                                                                     device_time_ms=int(time.time() * 1000))))
            self.status = grpc.StatusCode.OK
        except grpc.RpcError as e:
            self.status, self.details = e.code(), e.details()
        self.done.set()

    def telemetry(self, power=0.0, soc=0.5, seq=None, **kw):
        self.seq = seq if seq is not None else self.seq + 1
        self.q.put(self.d.DeviceMessage(telemetry=self.d.Telemetry(
            seq=self.seq, measured_at_ms=int(time.time() * 1000), power_kw=power, power_sigma_kw=0.05,
            soc=soc, soc_sigma=0.01, **kw)))

    def kinds(self):
        return [k for k, _ in self.got]

    def wait_end(self, timeout=10):
        assert self.done.wait(timeout), "session did not end within %s s (got %s)" % (timeout, self.kinds())
        return self.status

    def close(self):
        self.q.put(None)
        self.ch.close()


class Env:
    def __init__(self):
        self.dir = vt.tempdir("vpp-devcerts-")
        r = subprocess.run(["bash", os.path.join(ROOT, "deploy/local/certs.sh"), self.dir, "--devices", "8"],
                           capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            raise RuntimeError("certs.sh: " + r.stderr[-2000:])
        self.token = "op-token-123"
        tokens = os.path.join(self.dir, "tokens")
        import hashlib
        with open(tokens, "w") as f:
            f.write("tester operator sha256:%s\n" % hashlib.sha256(self.token.encode()).hexdigest())
        self.device_port, self.api_port, self.admin = vt.free_port(), vt.free_port(), vt.free_port()
        exe = os.path.join(vt.build_dir(), "server", "vppd")
        p = lambda n: os.path.join(self.dir, n)
        argv = [exe, "--api-port", str(self.api_port), "--api-h2c", "--device-port", str(self.device_port),
                "--device-addr", "127.0.0.1", "--tls-cert", p("server.pem"), "--tls-key", p("server.key"),
                "--device-ca", p("device-ca.pem"), "--admin-port", str(self.admin), "--io-threads", "2",
                "--tokens-file", tokens, "--tick-ms", "200", "--device-max-msgs-per-s", "20",
                "--device-hello-timeout-ms", "1500"]
        self.proc = vt.Proc("vppd", argv)
        vt.wait_port(self.device_port, 30, self.proc.p)
        vt.wait_port(self.admin, 30, self.proc.p)

    def read(self, name):
        with open(os.path.join(self.dir, name), "rb") as f:
            return f.read()

    def rejected(self, reason):
        return vt.read_metrics(self.admin).get("vpp_device_rejected_total", reason=reason) or 0

    def operator(self):
        m = mods()
        ch = grpc.insecure_channel("127.0.0.1:%d" % self.api_port)
        return m["gg"].GridOperatorStub(ch), m["g"], [("authorization", "Bearer " + self.token)]


def body(r):
    env = Env()
    r.on_fail.append(lambda: env.proc.log_tail(30))
    good = Device(env, "dev-00000")

    def happy_path():
        deadline = time.time() + 10
        while "welcome" not in good.kinds() and time.time() < deadline:
            time.sleep(0.05)
        kind, w = good.got[0]
        assert kind == "welcome", good.kinds()
        assert w.telemetry_interval_ms == 1000 and w.session_id and abs(w.server_time_ms - time.time() * 1000) < 5000
        for _ in range(5):
            good.telemetry(power=0.0, soc=0.5)
            time.sleep(0.1)
        stub, g, md = env.operator()
        resp = stub.SetFleetSetpoint(g.SetFleetSetpointRequest(target_kw=3.0, valid_for_s=60, request_id="dev-t1",
                                                                reason="test"), metadata=md)
        assert resp.setpoint_id
        deadline = time.time() + 10
        sps = []
        while time.time() < deadline:
            sps = [v for k, v in good.got if k == "setpoint" and v.power_kw > 0]
            if sps:
                break
            time.sleep(0.05)
        assert sps, "no positive setpoint received: %s" % good.kinds()
        sp = sps[-1]
        assert 0 < sp.power_kw <= 5.0 and sp.valid_until_ms > time.time() * 1000, sp
        deadline = time.time() + 5
        while time.time() < deadline:
            if (vt.read_metrics(env.admin).get("vpp_device_acks_total") or 0) >= 1:
                break
            time.sleep(0.1)
        m = vt.read_metrics(env.admin)
        assert m.get("vpp_device_acks_total") >= 1
        # The setpoint was timed from its tick to its write, and its ack
        # from the write; neither can take longer than the test did.
        assert m.get("vpp_device_fanout_seconds_count") >= 1, "no fan-out observed"
        assert 0 <= m.get("vpp_device_fanout_seconds_sum") < 5 * m.get("vpp_device_fanout_seconds_count")
        assert m.get("vpp_device_setpoint_ack_seconds_count") >= 1
        assert 0 <= m.get("vpp_device_setpoint_ack_seconds_sum") < 5 * m.get("vpp_device_setpoint_ack_seconds_count")
        info = stub.GetDevice(g.GetDeviceRequest(device_id="dev-00000"), metadata=md)
        assert info.state == g.DEVICE_STATE_ONLINE and abs(info.soc.value - 0.5) < 0.05, info

    r.case("hello, welcome, setpoint lease and ack", happy_path)

    def ended_with(dev_id, code, reason, act, claim=None, hello=True, ratings=None, auto=True):
        before = env.rejected(reason)
        d = Device(env, dev_id, claim=claim, hello=hello, ratings=ratings, auto=auto)
        act(d)
        st = d.wait_end()
        d.close()
        assert st == code, "status %s (%s), want %s" % (st, d.details, code)
        vt.wait_metric(env_server, lambda m: (m.get("vpp_device_rejected_total", reason=reason) or 0) > before)

    env_server = vt.Server("vppd", env.proc, env.api_port, env.admin, True)
    dmod = mods()["d"]

    r.case("a Hello claiming another device's id: PERMISSION_DENIED",
           ended_with, "dev-00001", grpc.StatusCode.PERMISSION_DENIED, "id_mismatch", lambda d: None, claim="dev-00000")
    r.case("Telemetry before Hello: FAILED_PRECONDITION",
           ended_with, "dev-00001", grpc.StatusCode.FAILED_PRECONDITION, "before_hello",
           lambda d: d.telemetry(), hello=False)
    r.case("a second Hello: INVALID_ARGUMENT",
           ended_with, "dev-00001", grpc.StatusCode.INVALID_ARGUMENT, "second_hello",
           lambda d: d.q.put(dmod.DeviceMessage(hello=dmod.Hello(device_id="dev-00001", rated_charge_kw=1,
                                                                  rated_discharge_kw=1, capacity_kwh=1,
                                                                  min_soc=0, max_soc=1, ramp_kw_per_s=1))))
    r.case("a Hello with min_soc > max_soc: INVALID_ARGUMENT",
           ended_with, "dev-00001", grpc.StatusCode.INVALID_ARGUMENT, "bad_hello", lambda d: None,
           ratings=dict(min_soc=0.9, max_soc=0.2))
    r.case("a Hello with NaN ratings: INVALID_ARGUMENT",
           ended_with, "dev-00001", grpc.StatusCode.INVALID_ARGUMENT, "bad_hello", lambda d: None,
           ratings=dict(capacity_kwh=float("nan")))
    r.case("Telemetry with NaN power: INVALID_ARGUMENT",
           ended_with, "dev-00002", grpc.StatusCode.INVALID_ARGUMENT, "bad_telemetry",
           lambda d: d.telemetry(power=float("nan")))
    r.case("Telemetry with SoC 1.7: INVALID_ARGUMENT",
           ended_with, "dev-00002", grpc.StatusCode.INVALID_ARGUMENT, "bad_telemetry",
           lambda d: d.telemetry(soc=1.7))
    r.case("an Ack for a setpoint never sent: INVALID_ARGUMENT",
           ended_with, "dev-00003", grpc.StatusCode.INVALID_ARGUMENT, "unknown_ack",
           lambda d: d.q.put(dmod.DeviceMessage(ack=dmod.Ack(setpoint_seq=10 ** 9, accepted=True))), auto=False)
    r.case("an empty DeviceMessage: INVALID_ARGUMENT",
           ended_with, "dev-00003", grpc.StatusCode.INVALID_ARGUMENT, "malformed",
           lambda d: d.q.put(dmod.DeviceMessage()))

    def flood(d):
        for _ in range(400):
            d.telemetry()

    r.case("a flood of messages: RESOURCE_EXHAUSTED",
           ended_with, "dev-00004", grpc.StatusCode.RESOURCE_EXHAUSTED, "flood", flood)

    def no_hello():
        before = env.rejected("hello_timeout")
        d = Device(env, "dev-00005", hello=False)
        st = d.wait_end(10)
        d.close()
        assert st == grpc.StatusCode.DEADLINE_EXCEEDED, (st, d.details)
        assert env.rejected("hello_timeout") > before

    r.case("no Hello in time: DEADLINE_EXCEEDED", no_hello)

    def garbage_bytes():
        # Raw bytes that are no DeviceMessage, through a generic stream call.
        before = env.rejected("malformed")
        creds = grpc.ssl_channel_credentials(env.read("ca.pem"), env.read("devices/dev-00006.key"),
                                             env.read("devices/dev-00006.pem"))
        ch = grpc.secure_channel("localhost:%d" % env.device_port, creds)
        call = ch.stream_stream("/vpp.v1.DeviceLink/Connect", request_serializer=lambda b: b,
                                response_deserializer=lambda b: b)
        try:
            list(call(iter([b"\xff\xff\xff\xff\x0f garbage"]), timeout=10))
            code = grpc.StatusCode.OK
        except grpc.RpcError as e:
            code = e.code()
        ch.close()
        assert code == grpc.StatusCode.INVALID_ARGUMENT, code
        assert env.rejected("malformed") > before

    r.case("garbage bytes as a message: INVALID_ARGUMENT", garbage_bytes)

    def replacement():
        a = Device(env, "dev-00007")
        t0 = time.time()
        while "welcome" not in a.kinds() and time.time() - t0 < 10:
            time.sleep(0.05)
        time.sleep(0.5)
        b = Device(env, "dev-00007")
        st = a.wait_end(10)
        assert st == grpc.StatusCode.ABORTED, (st, a.details)
        time.sleep(0.5)
        assert not b.done.is_set(), "the newer session ended too: %s %s" % (b.status, b.details)
        a.close()
        b.close()
        m = vt.read_metrics(env.admin)
        assert (m.get("vpp_device_events_total", event="replaced") or 0) >= 1

    r.case("a newer session replaces the older one", replacement)

    def no_client_cert():
        ch = grpc.secure_channel("localhost:%d" % env.device_port, grpc.ssl_channel_credentials(env.read("ca.pem")))
        stub = mods()["dg"].DeviceLinkStub(ch)
        try:
            list(stub.Connect(iter([]), timeout=5))
            code = grpc.StatusCode.OK
        except grpc.RpcError as e:
            code = e.code()
        ch.close()
        assert code == grpc.StatusCode.UNAVAILABLE, code
        m = vt.read_metrics(env.admin)
        assert (m.get("vpp_grpc_rejected_total", listener="device", reason="tls_handshake") or 0) >= 1

    r.case("no client certificate: the handshake is refused", no_client_cert)

    def good_survived():
        assert not good.done.is_set(), "the good session ended: %s %s" % (good.status, good.details)
        n = len(good.got)
        good.telemetry()
        time.sleep(1.5)
        assert not good.done.is_set()
        assert vt.read_metrics(env.admin).get("vpp_device_sessions") >= 1
        assert n > 0

    r.case("the well-behaved device was never disturbed", good_survived)

    def shutdown():
        env.proc.signal(15)
        st = good.wait_end(10)
        assert st == grpc.StatusCode.UNAVAILABLE, (st, good.details)
        assert any(k == "backoff" for k in good.kinds()), good.kinds()
        assert env.proc.wait(15) == 0, "vppd exit status"

    r.case("shutdown tells devices to back off, exits 0", shutdown)
    good.close()


if __name__ == "__main__":
    vt.main(body, budget_s=240)
