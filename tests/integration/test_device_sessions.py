#!/usr/bin/env python3
"""DeviceLink sessions against the real vppd, with Google's gRPC for Python
as the device: the happy path (hello, welcome, setpoints from an operator
target, acks, pings), identity spoofing, every kind of bad input, floods,
session replacement and a client without a certificate. A well-behaved
device stays connected throughout: one bad session never hurts the others."""
import os
import queue
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "interop"))
import vpptest as vt  # noqa: E402

import grpc  # noqa: E402
import h2.config  # noqa: E402
import h2.connection  # noqa: E402
import h2.errors  # noqa: E402
import h2.events  # noqa: E402
import h2.settings  # noqa: E402

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

    def telemetry(self, power=0.0, soc=0.5, seq=None, power_sigma_kw=0.05, soc_sigma=0.01, **kw):
        self.seq = seq if seq is not None else self.seq + 1
        self.q.put(self.d.DeviceMessage(telemetry=self.d.Telemetry(
            seq=self.seq, measured_at_ms=int(time.time() * 1000), power_kw=power, power_sigma_kw=power_sigma_kw,
            soc=soc, soc_sigma=soc_sigma, **kw)))

    def kinds(self):
        return [k for k, _ in self.got]

    def wait_for(self, kind, timeout=10):
        """Waits until a message of |kind| arrived; returns whether it did."""
        deadline = time.time() + timeout
        while kind not in self.kinds() and time.time() < deadline:
            time.sleep(0.02)
        return kind in self.kinds()

    def wait_end(self, timeout=10):
        assert self.done.wait(timeout), "session did not end within %s s (got %s)" % (timeout, self.kinds())
        return self.status

    def close(self):
        self.q.put(None)
        self.ch.close()


class Env:
    def __init__(self, certs=None, extra=(), name="vppd", proc_env=None, exe=None):
        self.dir = certs or vt.tempdir("vpp-devcerts-")
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
        exe = exe or os.path.join(vt.build_dir(), "server", "vppd")
        p = lambda n: os.path.join(self.dir, n)
        argv = [exe, "--api-port", str(self.api_port), "--api-h2c", "--device-port", str(self.device_port),
                "--device-addr", "127.0.0.1", "--tls-cert", p("server.pem"), "--tls-key", p("server.key"),
                "--device-ca", p("device-ca.pem"), "--admin-port", str(self.admin), "--io-threads", "2",
                "--tokens-file", tokens, "--tick-ms", "200", "--device-max-msgs-per-s", "20",
                "--device-hello-timeout-ms", "1500"] + list(extra)
        self.proc = vt.Proc(name, argv, env=proc_env)
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


class NonReadingDevice:
    """A device over raw HTTP/2 that advertises a stream window of 0: vppd
    can queue for it but never send. It sends its Hello, then telemetry."""

    def __init__(self, env, dev_id):
        m = mods()
        self.d = m["d"]
        ctx = ssl.create_default_context(cafile=os.path.join(env.dir, "ca.pem"))
        ctx.load_cert_chain(os.path.join(env.dir, "devices/%s.pem" % dev_id),
                            os.path.join(env.dir, "devices/%s.key" % dev_id))
        ctx.set_alpn_protocols(["h2"])
        self.sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", env.device_port), timeout=5),
                                    server_hostname="localhost")
        self.conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
        self.conn.local_settings = h2.settings.Settings(
            client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
        self.conn.initiate_connection()
        self.sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(self.sid, [(":method", "POST"), (":scheme", "https"),
                                          (":path", "/vpp.v1.DeviceLink/Connect"), (":authority", "localhost"),
                                          ("content-type", "application/grpc"), ("te", "trailers")])
        self.send(self.d.DeviceMessage(hello=self.d.Hello(
            device_id=dev_id, firmware="test", rated_charge_kw=5, rated_discharge_kw=5, capacity_kwh=10,
            min_soc=0.1, max_soc=0.9, ramp_kw_per_s=5)))
        self.seq = 0
        self.reset = None

    def send(self, msg):
        b = msg.SerializeToString()
        self.conn.send_data(self.sid, b"\0" + struct.pack(">I", len(b)) + b)
        self.sock.sendall(self.conn.data_to_send())

    def run(self, seconds):
        """Telemetry every 100 ms; returns when the stream is reset or the
        time is up."""
        deadline = time.monotonic() + seconds
        while self.reset is None and time.monotonic() < deadline:
            self.seq += 1
            try:
                self.send(self.d.DeviceMessage(telemetry=self.d.Telemetry(
                    seq=self.seq, measured_at_ms=int(time.time() * 1000), power_kw=0, power_sigma_kw=0.05,
                    soc=0.5, soc_sigma=0.01)))
            except Exception:  # noqa: BLE001 (the stream may be gone)
                pass
            self.sock.settimeout(0.1)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not data:
                break
            for e in self.conn.receive_data(data):
                if isinstance(e, h2.events.StreamReset) and e.stream_id == self.sid:
                    self.reset = e.error_code
            out = self.conn.data_to_send()
            if out:
                self.sock.sendall(out)
        self.sock.close()
        return self.reset


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
        op, g, md = env.operator()
        resp = op.SetFleetSetpoint(g.SetFleetSetpointRequest(target_kw=3.0, valid_for_s=60, request_id="dev-t1",
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
        info = op.GetDevice(g.GetDeviceRequest(device_id="dev-00000"), metadata=md)
        assert info.state == g.DEVICE_STATE_ONLINE and abs(info.soc.value - 0.5) < 0.05, info
        assert info.firmware == "test", info  # from its Hello

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
    def ack_unknown_seq(d):
        # After the session's first setpoint (before it, an ack may be
        # the previous session's, late: see below).
        deadline = time.time() + 10
        while time.time() < deadline and "setpoint" not in d.kinds():
            time.sleep(0.02)
        assert "setpoint" in d.kinds(), d.kinds()
        d.q.put(dmod.DeviceMessage(ack=dmod.Ack(setpoint_seq=2 ** 62, accepted=True)))

    r.case("an Ack for a setpoint never sent: INVALID_ARGUMENT",
           ended_with, "dev-00003", grpc.StatusCode.INVALID_ARGUMENT, "unknown_ack", ack_unknown_seq, auto=False)
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

    def raw_session(dev_id, messages):
        """Sends |messages| (bytes, not protobuf objects) on one Connect
        stream of |dev_id|; returns the status code and details."""
        creds = grpc.ssl_channel_credentials(env.read("ca.pem"), env.read("devices/%s.key" % dev_id),
                                             env.read("devices/%s.pem" % dev_id))
        ch = grpc.secure_channel("localhost:%d" % env.device_port, creds)
        call = ch.stream_stream("/vpp.v1.DeviceLink/Connect", request_serializer=lambda b: b,
                                response_deserializer=lambda b: b)
        try:
            list(call(iter(messages), timeout=10))
            code, details = grpc.StatusCode.OK, ""
        except grpc.RpcError as e:
            code, details = e.code(), e.details()
        ch.close()
        return code, details

    def garbage_bytes():
        # Raw bytes that are no DeviceMessage, through a generic stream call.
        before = env.rejected("malformed")
        code, _ = raw_session("dev-00006", [b"\xff\xff\xff\xff\x0f garbage"])
        assert code == grpc.StatusCode.INVALID_ARGUMENT, code
        assert env.rejected("malformed") > before

    r.case("garbage bytes as a message: INVALID_ARGUMENT", garbage_bytes)

    def firmware_not_utf8():
        # A Hello whose firmware string is not UTF-8 (the database would
        # refuse the device's row): INVALID_ARGUMENT, counted as bad_hello.
        before = env.rejected("bad_hello")
        hello = dmod.DeviceMessage(hello=dmod.Hello(
            device_id="dev-00006", firmware="FWFW", rated_charge_kw=5, rated_discharge_kw=5, capacity_kwh=10,
            min_soc=0.1, max_soc=0.9, ramp_kw_per_s=5)).SerializeToString()
        code, details = raw_session("dev-00006", [hello.replace(b"FWFW", b"\xff\xfe\xc3\x28")])
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "UTF-8" in details, (code, details)
        assert env.rejected("bad_hello") > before

    r.case("a Hello whose firmware is not UTF-8: INVALID_ARGUMENT", firmware_not_utf8)

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

    def hello_then_gone():
        # The request stream ends right after the Hello: the session ends
        # before the dispatcher has registered it. The device must not stay
        # counted as connected ("ghost"): it goes offline, with an event.
        op, g, md = env.operator()
        before = vt.read_metrics(env.admin).get("vpp_device_events_total", event="disconnect") or 0
        for _ in range(3):
            d = Device(env, "dev-00006")
            d.q.put(None)  # half-close right behind the Hello
            d.wait_end(10)
            d.close()
        deadline = time.time() + 5
        state = None
        while time.time() < deadline:
            try:
                state = op.GetDevice(g.GetDeviceRequest(device_id="dev-00006"), metadata=md, timeout=5).state
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.NOT_FOUND, e  # not registered yet
            if state == g.DEVICE_STATE_OFFLINE:
                break
            time.sleep(0.1)
        assert state == g.DEVICE_STATE_OFFLINE, "dev-00006 is %s after its sessions ended" % (
            g.DeviceState.Name(state or 0))
        after = vt.read_metrics(env.admin).get("vpp_device_events_total", event="disconnect") or 0
        assert after >= before + 3, (before, after)

    r.case("a session that ends right after its Hello leaves no ghost: offline, disconnect recorded",
           hello_then_gone)

    def late_ack_of_previous_session():
        # An ack of the previous session's setpoint arriving on the new
        # session (before anything was sent on it) is ignored, not fatal;
        # an ack for a seq never sent still is.
        before = vt.read_metrics(env.admin).get("vpp_device_stale_acks_total") or 0
        d = Device(env, "dev-00005", auto=False)
        d.q.put(d.d.DeviceMessage(ack=d.d.Ack(setpoint_seq=3, accepted=True)))  # right behind the Hello
        time.sleep(1.0)
        assert not d.done.is_set(), "the session ended: %s %s" % (d.status, d.details)
        after = vt.read_metrics(env.admin).get("vpp_device_stale_acks_total") or 0
        assert after == before + 1, (before, after)
        d.close()

    r.case("an ack before any setpoint of the session is counted stale, not an error",
           late_ack_of_previous_session)

    def hello_churn():
        # One device opening session after session (each a Hello that
        # would replace the last and write two event rows): after a burst
        # of 5 the Hellos are refused with UNAVAILABLE and a Backoff.
        m0 = vt.read_metrics(env.admin)
        replaced0 = m0.get("vpp_device_events_total", event="replaced") or 0
        before = env.rejected("hello_rate")
        ds = [Device(env, "dev-00004", auto=False) for _ in range(15)]
        time.sleep(2)
        refused = [d for d in ds if d.done.is_set() and d.status == grpc.StatusCode.UNAVAILABLE
                   and "backoff" in d.kinds()]
        assert len(refused) >= 8, [(d.status, d.details) for d in ds]
        m1 = vt.read_metrics(env.admin)
        assert env.rejected("hello_rate") >= before + len(refused)
        assert (m1.get("vpp_device_hellos_throttled_total") or 0) >= len(refused)
        assert (m1.get("vpp_device_events_total", event="replaced") or 0) - replaced0 <= 6
        for d in ds:
            d.close()

    r.case("a device opening sessions in a loop is throttled after a burst (UNAVAILABLE + Backoff)",
           hello_churn)

    def first_ping_at_once():
        # The clock offset is learnt from the first Pong: the first Ping goes
        # right behind the Welcome (rows before it are marked unsynced).
        d = Device(env, "dev-00002", auto=False)
        t0 = time.time()
        while "ping" not in d.kinds() and time.time() - t0 < 3:
            time.sleep(0.01)
        dt = time.time() - t0
        d.close()
        assert "ping" in d.kinds(), d.kinds()
        assert dt < 0.8, "first ping %.2f s after the Hello" % dt

    r.case("the first Ping follows the Welcome at once", first_ping_at_once)

    def implausible_readings():
        # A firmware that reports W as kW: 4,000 "kW" from a 5 kW battery.
        # Not an error of the stream (the session stays), but no reading to
        # dispatch on or to count as delivered: a sensor fault, so the
        # device goes stale, and the fleet's power does not include it.
        before = vt.read_metrics(env.admin).get("vpp_device_telemetry_implausible_total") or 0
        d = Device(env, "dev-00003")
        assert d.wait_for("welcome"), d.kinds()
        d.telemetry(power=0.0, soc=0.5)
        for i in range(40):
            d.telemetry(power=4000.0, soc=0.5, power_sigma_kw=1e200 if i == 39 else 0.05)
            time.sleep(0.1)
        assert not d.done.is_set(), "the session ended: %s %s" % (d.status, d.details)
        m = vt.read_metrics(env.admin)
        assert (m.get("vpp_device_telemetry_implausible_total") or 0) >= before + 40, m
        op, g, md = env.operator()
        info = op.GetDevice(g.GetDeviceRequest(device_id="dev-00003"), metadata=md, timeout=5)
        assert info.state == g.DEVICE_STATE_STALE, g.DeviceState.Name(info.state)
        assert abs(info.power_kw.value) <= 5, info.power_kw
        st = op.GetFleetStatus(g.GetFleetStatusRequest(), metadata=md, timeout=5)
        assert abs(st.measured_kw.value) < 20 and st.measured_kw.sigma < 20, st.measured_kw
        assert "taken as a sensor fault" in env.proc.log_tail(200)
        d.close()

    r.case("telemetry far beyond the device's ratings is taken as a sensor fault, not dispatched on",
           implausible_readings)

    def clock_years_off():
        # A device whose clock reset to January 2000: its Pongs cannot place
        # it (more than ten years off), so its samples count as of their
        # arrival; they neither look 26 years old (an estimate with a sigma
        # of thousands of kW) nor leave the device unknown.
        d = Device(env, "dev-00007", auto=False)
        assert d.wait_for("welcome"), d.kinds()
        y2000 = 946684800000
        for i in range(5):
            d.q.put(d.d.DeviceMessage(telemetry=d.d.Telemetry(
                seq=i + 1, measured_at_ms=y2000 + 1000 * i, power_kw=1.0, power_sigma_kw=0.05, soc=0.5,
                soc_sigma=0.01)))
            time.sleep(0.1)
        time.sleep(0.5)
        op, g, md = env.operator()
        info = op.GetDevice(g.GetDeviceRequest(device_id="dev-00007"), metadata=md, timeout=5)
        assert not d.done.is_set(), "the session ended: %s %s" % (d.status, d.details)
        # Fresh (it may be flagged degraded: it ignores the running setpoint).
        assert info.state in (g.DEVICE_STATE_ONLINE, g.DEVICE_STATE_DEGRADED), g.DeviceState.Name(info.state)
        assert info.power_kw.sigma < 1 and 0.1 < info.soc.value < 0.9, (info.power_kw, info.soc)
        d.close()

    r.case("a device clock years off: samples count as of their arrival", clock_years_off)

    r.case("the well-behaved device was never disturbed", good_survived)

    def shutdown():
        env.proc.signal(15)
        st = good.wait_end(10)
        assert st == grpc.StatusCode.UNAVAILABLE, (st, good.details)
        assert any(k == "backoff" for k in good.kinds()), good.kinds()
        assert env.proc.wait(15) == 0, "vppd exit status"

    r.case("shutdown tells devices to back off, exits 0", shutdown)
    good.close()

    # A device that never reads: a small outbound bound and pings every
    # second fill its queue in about a second. Devices here report every
    # 20 s.
    env2 = Env(certs=env.dir, name="vppd-2", extra=["--device-outbound-limit-bytes", "64",
                                                    "--device-ping-interval-ms", "1000",
                                                    "--device-telemetry-interval-ms", "20000"])
    r.on_fail.append(lambda: env2.proc.log_tail(30))

    def slow_interval_not_stale():
        d = Device(env2, "dev-00004")
        d.wait_for("welcome")
        assert d.got[0][1].telemetry_interval_ms == 20000, d.got[0]
        d.telemetry(power=0.0, soc=0.5)
        time.sleep(5)  # past the 3 s that suit a 1 s interval
        op, g, md = env2.operator()
        info = op.GetDevice(g.GetDeviceRequest(device_id="dev-00004"), metadata=md, timeout=5)
        assert info.state == g.DEVICE_STATE_ONLINE, g.DeviceState.Name(info.state)
        d.close()

    r.case("a device reporting every 20 s is online 5 s after its report (staleness in intervals)",
           slow_interval_not_stale)

    def first_sample_with_hello():
        # The sample rides right behind the Hello, before the plant has
        # registered the session: it must still reach the estimator, or a
        # device reporting every 20 s is stale for its first 20 s.
        for i in range(5):
            d = Device(env2, "dev-00006")
            d.telemetry(power=0.0, soc=0.5)
            assert d.wait_for("welcome"), d.kinds()
            time.sleep(0.3)
            op, g, md = env2.operator()
            info = op.GetDevice(g.GetDeviceRequest(device_id="dev-00006"), metadata=md, timeout=5)
            assert info.state == g.DEVICE_STATE_ONLINE, (i, g.DeviceState.Name(info.state))
            d.close()
            time.sleep(0.2)

    r.case("a sample sent together with the Hello counts at once (before the plant registered it)",
           first_sample_with_hello)

    def seqs_rise_across_restarts():
        # vppd-2 started after vppd: its setpoint seqs are above any vppd
        # sent, so a device's late ack of its last one, arriving on the new
        # session after that session's first setpoint, is recognisably old
        # (counted stale), not taken for a seq never sent (which would end
        # the session).
        old = max(v.seq for k, v in good.got if k == "setpoint")
        d = Device(env2, "dev-00005", auto=False)
        assert d.wait_for("setpoint"), d.kinds()
        new = [v.seq for k, v in d.got if k == "setpoint"]
        assert min(new) > old, (old, new)
        before = vt.read_metrics(env2.admin).get("vpp_device_stale_acks_total") or 0
        d.q.put(d.d.DeviceMessage(ack=d.d.Ack(setpoint_seq=old, accepted=True)))
        time.sleep(1.0)
        assert not d.done.is_set(), "the session ended: %s %s" % (d.status, d.details)
        after = vt.read_metrics(env2.admin).get("vpp_device_stale_acks_total") or 0
        assert after == before + 1, (before, after)
        d.close()

    r.case("setpoint seqs rise across vppd restarts: a late ack of the last process's is stale",
           seqs_rise_across_restarts)

    def slow_reader():
        other = Device(env2, "dev-00001")
        stop = threading.Event()

        def report():
            while not stop.wait(0.1):
                other.telemetry(power=0.0, soc=0.5)
        threading.Thread(target=report, daemon=True).start()
        nr = NonReadingDevice(env2, "dev-00002")
        code = nr.run(8)
        assert code == h2.errors.ErrorCodes.CANCEL, "stream not reset (%r)" % code
        assert env2.rejected("slow_reader") >= 1
        op, g, md = env2.operator()
        # Setpoints keep going to the other device: the server is fine.
        op.SetFleetSetpoint(g.SetFleetSetpointRequest(target_kw=2.0, valid_for_s=60, request_id="slow-1",
                                                        reason="test"), metadata=md)
        deadline = time.time() + 5
        while time.time() < deadline and not [v for k, v in other.got if k == "setpoint" and v.power_kw > 0]:
            time.sleep(0.05)
        stop.set()
        assert [v for k, v in other.got if k == "setpoint" and v.power_kw > 0], other.kinds()
        assert not other.done.is_set(), (other.status, other.details)
        env2.proc.signal(15)
        assert other.wait_end(10) == grpc.StatusCode.UNAVAILABLE
        assert env2.proc.wait(15) == 0, "vppd exit status"
        other.close()

    r.case("a device that never reads is dropped (slow_reader) and vppd carries on", slow_reader)

    # The store full (no database, a 1 MiB journal, a small queue): every
    # telemetry row vppd accepted is in the journal, the store's queue or
    # the devices' backlog; none is dropped.
    jdir = vt.tempdir("vpp-devjournal-")
    env3 = Env(certs=env.dir, name="vppd-3", extra=[
        "--database-url", "postgresql://127.0.0.1:1/nodb", "--no-migrate", "--journal-dir", jdir,
        "--journal-max-bytes", "1048576", "--store-queue-rows", "1024", "--device-max-msgs-per-s", "100000"])
    r.on_fail.append(lambda: env3.proc.log_tail(30))

    def store_full_loses_nothing():
        d = Device(env3, "dev-00001")
        d.wait_for("welcome")
        for _ in range(15000):
            d.telemetry(power=0.0, soc=0.5)
        last, stable_since = None, time.time()
        deadline = time.time() + 60
        while time.time() < deadline:
            m = vt.read_metrics(env3.admin)
            cur = (m.get("vpp_device_telemetry_total") or 0, m.get("vpp_store_rows_journaled_total") or 0,
                   m.get("vpp_store_queue_depth") or 0, m.get("vpp_device_telemetry_backlog_rows") or 0)
            if cur != last:
                last, stable_since = cur, time.time()
            elif time.time() - stable_since > 1.5:
                break
            time.sleep(0.25)
        accepted, journaled, queued, backlog = last
        assert (m.get("vpp_device_store_backpressure_total") or 0) >= 1, "the store never filled up"
        assert accepted >= 5000, last
        # The queue also holds the device's registration and event rows.
        assert journaled + backlog <= accepted <= journaled + queued + backlog, \
            "accepted %d, journaled %d, queued %d, waiting %d" % last
        d.close()
        env3.proc.signal(15)
        assert env3.proc.wait(30) == 0, "vppd exit status"

    r.case("with the store full, every accepted telemetry row is kept or waiting, none dropped",
           store_full_loses_nothing)

    # TLS writes that fail (an OpenSSL error, out of memory) while vppd
    # sends a setpoint: the connection closes on the next loop turn, not
    # under the session still using it (under ASan a use after free
    # aborted vppd). A shim makes SSL_write fail while a flag file exists.
    shim = os.path.join(vt.build_dir(), "tests", "integration", "fail_ssl_write.so")
    flag = os.path.join(vt.tempdir("vpp-failwrite-"), "fail")
    penv = dict(os.environ, VPP_TEST_FAIL_SSL_WRITE=flag)
    asan = subprocess.run(["sh", "-c", "ldd %s | awk '/libasan/ {print $3}'" %
                           os.path.join(vt.build_dir(), "server", "vppd")],
                          capture_output=True, text=True).stdout.strip()
    penv["LD_PRELOAD"] = " ".join(p for p in (asan, shim) if p)
    env4 = Env(certs=env.dir, name="vppd-4", proc_env=penv)
    r.on_fail.append(lambda: env4.proc.log_tail(30))

    def write_failure_mid_setpoint():
        d = Device(env4, "dev-00006")
        assert d.wait_for("welcome"), d.kinds()
        d.telemetry(power=0.0, soc=0.5)
        assert d.wait_for("setpoint"), d.kinds()
        open(flag, "w").close()
        op, g, md = env4.operator()
        op.SetFleetSetpoint(g.SetFleetSetpointRequest(target_kw=3.0, valid_for_s=60, request_id="fw-1",
                                                        reason="test"), metadata=md)
        d.wait_end(10)
        os.unlink(flag)
        time.sleep(0.5)
        assert env4.proc.p.poll() is None, "vppd died:\n" + env4.proc.log_tail(40)
        assert "TLS write failed" in env4.proc.log_tail(200), env4.proc.log_tail(20)
        d.close()
        again = Device(env4, "dev-00006")
        assert again.wait_for("welcome"), again.kinds()
        again.close()
        env4.proc.signal(15)
        assert env4.proc.wait(30) == 0, "vppd exit status"

    r.case("a TLS write failing while a setpoint goes out closes that session only, vppd carries on",
           write_failure_mid_setpoint)

    def tls_files_that_do_not_load():
        p = lambda n: os.path.join(env.dir, n)
        exe = os.path.join(vt.build_dir(), "server", "vppd")
        cases = [(p("no-such.key"), p("device-ca.pem"), "key %s: No such file or directory" % p("no-such.key")),
                 (p("operator.key"), p("device-ca.pem"), "key values mismatch"),
                 (p("server.key"), p("server.key"), "client CA %s:" % p("server.key"))]
        for key, ca, want in cases:
            rr = subprocess.run([exe, "--api-port", "0", "--admin-port", "0", "--device-addr", "127.0.0.1",
                                 "--device-port", str(vt.free_port()), "--tls-cert", p("server.pem"),
                                 "--tls-key", key, "--device-ca", ca], capture_output=True, text=True, timeout=30)
            assert rr.returncode != 0, "vppd started with %s / %s" % (key, ca)
            assert want in rr.stderr, "%r not in: %s" % (want, rr.stderr[-1500:])

    r.case("TLS files that cannot be loaded: vppd stops, naming the file and why", tls_files_that_do_not_load)


if __name__ == "__main__":
    vt.main(body, budget_s=240)
