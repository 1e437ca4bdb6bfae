#!/usr/bin/python3
"""vpp-emulator against an independent DeviceLink server written with
Google's gRPC for Python (grpc.aio, mTLS with require_client_auth).

The fake server checks what each emulated battery sends (Hello, Telemetry,
Ack, Pong), and drives it: every first session gets Backoff + UNAVAILABLE
(admission control), then Welcome with a telemetry interval, a Ping, and a
fleet setpoint as a lease in a server clock that runs 10 s ahead of true
time. The emulator's physics, faults, reconnects and its ground-truth report
are then checked against what the server saw.

Run: VPP_BUILD=/abs/build /usr/bin/python3 tests/interop/test_emulator_grpcio.py
Last line: `N passed, N failed`.
"""

import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vpptest  # noqa: E402

import grpc  # noqa: E402

SERVER_CLOCK_AHEAD_MS = 10000  # the fake server's clock runs 10 s ahead
INTERVAL_MS = 200
RETRY_AFTER_MS = 700
SETPOINT_KW = 2.0
LEASE_MS = 2500


def now_ms():
    return int(time.time() * 1000)


def device_stubs():
    out = vpptest.tempdir("vpp-devstubs-")
    inc = os.path.join(vpptest.ROOT, "proto/vpp/v1")
    r = subprocess.run([vpptest.PYTHON, "-m", "grpc_tools.protoc", "-I", inc, "--python_out=" + out,
                        os.path.join(inc, "device.proto")], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError("protoc device.proto failed: " + r.stderr)
    sys.path.insert(0, out)
    import device_pb2
    return device_pb2


class FakeServer:
    """A DeviceLink server on its own asyncio loop thread. Everything it
    sees is appended to |events| (tuples, true time in ms first)."""

    def __init__(self, pb, certs_dir, reject_ids=(), unavailable_first=True, silent=False):
        self.pb = pb
        self.silent = silent  # welcome, then say nothing more (a hung server)
        self.certs_dir = certs_dir
        self.reject_ids = set(reject_ids)
        self.unavailable_first = unavailable_first
        self.lock = threading.Lock()
        self.events = []
        self.next_seq = 1000
        self.sessions = {}  # device id -> number of hellos seen
        self.queues = {}  # session id -> asyncio.Queue of ServerMessage
        self.active = {}  # session id -> device id
        self.loop = asyncio.new_event_loop()
        self.port = vpptest.free_port()
        self.ready = threading.Event()
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self.ready.wait(30) or self.error:
            raise RuntimeError("fake server did not start: %s" % self.error)

    def log(self, *ev):
        with self.lock:
            self.events.append((now_ms(),) + ev)

    def _run(self):
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._start())
        except Exception as e:  # noqa: BLE001
            self.error = e
            self.ready.set()
            return
        self.ready.set()
        self.loop.run_forever()

    async def _start(self):
        d = self.certs_dir
        rd = lambda n: open(os.path.join(d, n), "rb").read()  # noqa: E731
        creds = grpc.ssl_server_credentials([(rd("server.key"), rd("server.pem"))],
                                            root_certificates=rd("device-ca.pem"), require_client_auth=True)
        self.server = grpc.aio.server()
        handler = grpc.method_handlers_generic_handler("vpp.v1.DeviceLink", {
            "Connect": grpc.stream_stream_rpc_method_handler(self._connect, request_deserializer=None,
                                                             response_serializer=lambda m: m.SerializeToString())})
        self.server.add_generic_rpc_handlers((handler,))
        self.server.add_secure_port("127.0.0.1:%d" % self.port, creds)
        await self.server.start()

    def stop(self):
        async def _stop():
            await self.server.stop(0.5)
        try:
            asyncio.run_coroutine_threadsafe(_stop(), self.loop).result(10)
        except Exception:  # noqa: BLE001
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def server_ms(self):
        return now_ms() + SERVER_CLOCK_AHEAD_MS

    def broadcast_setpoint(self, kw, lease_ms, clock_step_ms=0):
        """Sends every connected session a setpoint; all share one
        valid_until_ms (server clock). With |clock_step_ms|, the setpoint
        also carries server_time_ms, on a server clock that has moved that
        far since the Welcome and Pings: a device that times the lease from
        server_time_ms is not fooled. Returns (true send time, lease end in
        the server clock of the Welcome, the setpoint's seq)."""
        valid_until = self.server_ms() + lease_ms
        self.next_seq += 1
        seq = self.next_seq

        def go():
            for sid, q in list(self.queues.items()):
                sp = self.pb.Setpoint(seq=seq, power_kw=kw,
                                      valid_until_ms=valid_until + clock_step_ms)
                if clock_step_ms:
                    sp.server_time_ms = valid_until + clock_step_ms - lease_ms
                q.put_nowait(self.pb.ServerMessage(setpoint=sp))
        t = now_ms()
        self.loop.call_soon_threadsafe(go)
        return t, valid_until, seq

    async def _connect(self, request_iterator, context):
        pb = self.pb
        cn = context.auth_context().get("x509_common_name", [b""])[0].decode()
        first = await asyncio.wait_for(request_iterator.__anext__(), 5)
        try:
            msg = pb.DeviceMessage.FromString(first)
        except Exception:  # noqa: BLE001
            self.log("bad_first", cn)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "not a DeviceMessage")
        if msg.WhichOneof("msg") != "hello":
            self.log("no_hello", cn)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "hello first")
        h = msg.hello
        if h.device_id != cn:
            self.log("spoof", cn, h.device_id)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "device_id is not the certificate's")
        with self.lock:
            n = self.sessions.get(cn, 0) + 1
            self.sessions[cn] = n
        self.log("hello", cn, n, h.firmware, h.rated_charge_kw, h.rated_discharge_kw, h.capacity_kwh,
                 h.min_soc, h.max_soc, h.ramp_kw_per_s)
        self.log("peer", cn, n, context.peer())
        if cn in self.reject_ids:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "not enrolled")
        if self.unavailable_first and n == 1:
            # Admission control: come back later.
            yield pb.ServerMessage(backoff=pb.Backoff(retry_after_ms=RETRY_AFTER_MS))
            self.log("told_backoff", cn)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "busy, retry later")
        sid = "%s/%d" % (cn, n)
        q = asyncio.Queue()
        self.queues[sid] = q
        self.active[sid] = cn
        yield pb.ServerMessage(welcome=pb.Welcome(session_id=sid, telemetry_interval_ms=INTERVAL_MS,
                                                  server_time_ms=self.server_ms()))
        self.log("welcome", cn, n)
        if self.silent:
            try:
                await asyncio.sleep(3600)
            finally:
                self.queues.pop(sid, None)
                self.active.pop(sid, None)

        async def reader():
            async for raw in request_iterator:
                try:
                    m = pb.DeviceMessage.FromString(raw)
                except Exception:  # noqa: BLE001
                    self.log("garbage", cn, n)
                    return "garbage"
                kind = m.WhichOneof("msg")
                if kind == "telemetry":
                    t = m.telemetry
                    if not math.isfinite(t.power_kw) or not (0 <= t.soc <= 1):
                        self.log("bad_telemetry", cn, n, t.seq)
                        return "bad_telemetry"
                    self.log("telemetry", cn, n, t.seq, t.measured_at_ms, t.power_kw, t.power_sigma_kw,
                             t.soc, t.soc_sigma, t.quality)
                elif kind == "ack":
                    self.log("ack", cn, n, m.ack.setpoint_seq, m.ack.accepted, m.ack.reason)
                elif kind == "pong":
                    self.log("pong", cn, n, m.pong.ping_id, m.pong.device_time_ms)
                else:
                    self.log("unexpected", cn, n, kind)
                    return "unexpected"
            return "eof"

        async def pinger():
            await asyncio.sleep(1.0)
            pid = 7000 + n
            self.log("ping", cn, n, pid)
            await q.put(pb.ServerMessage(ping=pb.Ping(ping_id=pid, server_time_ms=self.server_ms())))

        rtask = asyncio.ensure_future(reader())
        ptask = asyncio.ensure_future(pinger())
        g = None
        try:
            while True:
                g = asyncio.ensure_future(q.get())
                done, _ = await asyncio.wait([g, rtask], return_when=asyncio.FIRST_COMPLETED)
                if g in done:
                    m = g.result()
                    if m.WhichOneof("msg") == "setpoint":
                        self.log("setpoint", cn, n, m.setpoint.seq, m.setpoint.valid_until_ms)
                    yield m
                else:
                    g.cancel()
                if rtask.done():
                    why = rtask.result()
                    if why in ("garbage", "bad_telemetry"):
                        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, why)
                    self.log("ended", cn, n, why)
                    return
        finally:
            for t in (ptask, rtask, g):
                if t is not None:
                    t.cancel()
            self.queues.pop(sid, None)
            self.active.pop(sid, None)

    def of(self, kind, dev=None):
        with self.lock:
            return [e for e in self.events if e[1] == kind and (dev is None or e[2] == dev)]

    def connected_ids(self):
        return set(self.active.values())


def emulator_exe():
    exe = os.path.join(vpptest.build_dir(), "tools", "vpp-emulator")
    if not os.path.exists(exe):
        raise RuntimeError("%s does not exist (build it first)" % exe)
    return exe


def make_certs(n):
    d = vpptest.tempdir("vpp-emul-certs-")
    r = subprocess.run(["bash", os.path.join(vpptest.ROOT, "deploy/local/certs.sh"), d, "--devices", str(n)],
                       capture_output=True, text=True, timeout=180)
    if r.returncode != 0:
        raise RuntimeError("certs.sh failed: " + r.stderr[-2000:])
    return d


def emu_env():
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    return env


def near(a, b, tol):
    return abs(a - b) <= tol


def body(r):
    exe = emulator_exe()
    pb = device_stubs()
    certs = make_certs(10)
    work = vpptest.tempdir("vpp-emul-")

    # ---------------------------------------------------------------- flags
    def bad_flags():
        cases = [
            (["--devices", "0"], "devices"),
            (["--min-soc", "0.9", "--max-soc", "0.5"], "min-soc"),
            (["--offline", "0.6", "--ignore", "0.6"], "sum"),
            (["--threads", "x"], "threads"),
            (["--bogus", "1"], "bogus"),
            (["--server", "nohostport"], "HOST:PORT"),
            (["--server", "nosuchhost.invalid:1"], "resolve"),
            (["--report", os.path.join(work, "no-such-dir", "r.json")], "--report"),
        ]
        for extra, word in cases:
            argv = [exe, "--server", "127.0.0.1:1", "--certs", certs] + extra
            p = subprocess.run(argv, capture_output=True, text=True, timeout=20, env=emu_env())
            assert p.returncode == 2, "%s: exit %d, stderr %s" % (extra, p.returncode, p.stderr)
            assert word in p.stderr, "%s: message does not name %r: %s" % (extra, word, p.stderr)
        # VPP_SERVER is vppctl's operator API: the emulator does not read it.
        p = subprocess.run([exe, "--certs", certs], capture_output=True, text=True, timeout=20,
                           env=dict(emu_env(), VPP_SERVER="127.0.0.1:1"))
        assert p.returncode == 2 and "--server" in p.stderr, p.stderr
        p = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=20, env=emu_env())
        assert p.returncode == 0, p.returncode
        for flag in ("--server", "--devices", "--certs", "--profile", "--duration", "--report", "--threads",
                     "--first-index", "--telemetry-jitter", "--seed", "--offline", "--flaky", "--ignore",
                     "--partial", "--partial-factor", "--late-ack", "--late-ack-ms", "--malformed",
                     "--connect-rate", "--capacity-kwh", "--lag-tau-s", "--delay-ms", "--noise-kw",
                     "--clock-offset-ms", "--charge-efficiency"):
            assert flag in p.stdout, "--help does not explain " + flag
    r.case("bad flags rejected with a clear message, --help explains every flag", bad_flags)

    # ------------------------------------------------------------ main run
    srv = FakeServer(pb, certs)
    r.on_fail.append(lambda: "emulator log:\n" + emu.log_tail(30))
    report_path = os.path.join(work, "report.json")
    argv = [exe, "--server", "127.0.0.1:%d" % srv.port, "--certs", certs, "--devices", "10",
            "--duration", "8.5", "--report", report_path, "--threads", "2", "--seed", "7",
            "--offline", "0.1", "--flaky", "0.1", "--flaky-period-s", "2", "--ignore", "0.1",
            "--partial", "0.1", "--partial-factor", "0.5", "--late-ack", "0.1", "--late-ack-ms", "800",
            "--malformed", "0.1", "--malformed-period-s", "1.5", "--noise-kw", "0.05",
            "--lag-tau-s", "0.3", "--delay-ms", "100", "--ramp-kw-per-s", "10", "--clock-offset-ms", "3000",
            "--progress-s", "1", "--log-level", "info"]
    t_start = now_ms()
    emu = vpptest.Proc("vpp-emulator", argv, env=emu_env())
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and len(srv.connected_ids()) < 7:
            time.sleep(0.05)
        time.sleep(0.3)
        # The server's clock has stepped an hour since it said hello: the
        # lease still lasts LEASE_MS from the setpoint's arrival.
        t_sp, valid_until, sp_seq = srv.broadcast_setpoint(SETPOINT_KW, LEASE_MS, clock_step_ms=3600000)
        lease_end = valid_until - SERVER_CLOCK_AHEAD_MS  # in true time
        # A setpoint that is not a number, inside that lease: refused, and
        # the lease in force runs on (the physics case checks the power).
        time.sleep(0.6)
        _, _, nan_seq = srv.broadcast_setpoint(float("nan"), LEASE_MS, clock_step_ms=3600000)
        rc = emu.wait(20)
        assert rc is not None, "emulator did not stop after --duration"
    finally:
        emu.stop()
        srv.stop()
    with open(report_path) as f:
        rep = json.load(f)
    faults = rep["faults"]
    fault_of = {}
    for k, ids in faults.items():
        for i in ids:
            fault_of[i] = k
    all_ids = ["dev-%05d" % i for i in range(10)]
    normal = [i for i in all_ids if i not in fault_of]

    def exit_and_report():
        assert rc == 0, "exit status %s" % rc
        assert rep["stop_reason"] == "duration", rep["stop_reason"]
        assert rep["devices_total"] == 10
        for k in ("offline", "flaky", "ignore", "partial", "late_ack", "malformed"):
            assert len(faults[k]) == 1, "fault %s: %s (1 of 10 expected)" % (k, faults[k])
        assert len(normal) == 4, normal
        assert rep["config"]["seed"] == 7 and rep["config"]["partial-factor"] == 0.5
    r.case("runs for --duration, exits 0, report lists exactly one device per fault", exit_and_report)

    def hellos():
        seen = {e[2] for e in srv.of("hello")}
        off = faults["offline"][0]
        assert off not in seen, "offline device %s connected" % off
        assert seen == set(all_ids) - {off}, "hellos from %s" % sorted(seen)
        assert not srv.of("spoof") and not srv.of("no_hello") and not srv.of("bad_first")
        for e in srv.of("hello"):
            _, _, dev, n, fw, rc_kw, rd_kw, cap, mn, mx, ramp = e
            assert fw == "vpp-emulator/0.1", fw
            assert rc_kw > 0 and rd_kw > 0 and cap > 0 and ramp > 0, e
            assert 0 <= mn < mx <= 1, e
    r.case("Hello first, device_id = certificate CN, valid ratings; offline device never connects", hellos)

    def backoff_honoured():
        told = srv.of("told_backoff")
        assert len(told) >= 8, "only %d first sessions were told to back off" % len(told)
        for e in told:
            dev = e[2]
            hs = srv.of("hello", dev)
            assert len(hs) >= 2, "%s did not come back after UNAVAILABLE" % dev
            gap = hs[1][0] - e[0]
            assert gap >= RETRY_AFTER_MS - 50, "%s retried after %d ms < retry_after %d" % (dev, gap, RETRY_AFTER_MS)
            assert gap < RETRY_AFTER_MS + 1500, "%s waited %d ms" % (dev, gap)
        assert rep["errors"]["UNAVAILABLE"] >= len(told), rep["errors"]
        assert rep["counters"]["backoffs_received"] >= len(told), rep["counters"]
    r.case("Backoff + UNAVAILABLE: reconnects no sooner than retry_after_ms", backoff_honoured)

    def telemetry():
        for dev in set(all_ids) - {faults["offline"][0]}:
            ts = srv.of("telemetry", dev)
            assert len(ts) >= 10, "%s sent %d telemetry" % (dev, len(ts))
            seqs = [e[4] for e in ts]
            assert all(b > a for a, b in zip(seqs, seqs[1:])), "%s seqs not increasing: %s" % (dev, seqs)
            assert seqs[0] >= 1
            for e in ts:
                at, _, _, _, seq, measured, p, ps, soc, ss, q = e
                assert near(measured, at, 3000 + 300), "%s measured_at %d vs now %d" % (dev, measured, at)
                assert ps == 0.05 and 0 < soc < 1 and ss > 0 and q == 0, e
            # One session's gaps: about the Welcome's interval, with jitter.
            n_last = ts[-1][3]
            one = [e[0] for e in ts if e[3] == n_last]
            if len(one) >= 6:
                gaps = sorted(b - a for a, b in zip(one, one[1:]))
                med = gaps[len(gaps) // 2]
                assert 0.7 * INTERVAL_MS <= med <= 1.3 * INTERVAL_MS, "%s median gap %d ms" % (dev, med)
        offs = {e[2]: e[5] - e[0] for e in srv.of("telemetry")}
        assert len({round(v / 200) for v in offs.values()}) > 2, "device clocks all alike: %s" % offs
        assert rep["counters"]["telemetry_sent"] >= len(srv.of("telemetry")), rep["counters"]
    r.case("telemetry every interval (jitter), seq increasing across sessions, honest sigma, own clock",
           telemetry)

    def pongs():
        pings = srv.of("ping")
        assert pings, "the server sent no ping"
        got = 0
        for e in pings:
            dev, n, pid = e[2], e[3], e[4]
            ps = [p for p in srv.of("pong", dev) if p[3] == n and p[4] == pid]
            if not ps:
                continue  # the session may have ended (flaky, malformed)
            got += 1
            assert near(ps[0][5], ps[0][0], 3000 + 300), "device_time_ms %d vs %d" % (ps[0][5], ps[0][0])
        assert got >= len(normal), "%d pongs for %d pings" % (got, len(pings))
    r.case("Ping answered by Pong with the ping_id and the device's time", pongs)

    def acks():
        sps = [e for e in srv.of("setpoint") if e[4] == sp_seq]
        assert len(sps) >= 6, "setpoint reached %d sessions" % len(sps)
        for e in sps:
            dev, n, seq = e[2], e[3], e[4]
            a = [x for x in srv.of("ack", dev) if x[3] == n and x[4] == seq]
            if fault_of.get(dev) in ("flaky", "malformed") and not a:
                continue  # its session may have ended before the ack
            assert a, "%s did not ack setpoint %d" % (dev, seq)
            assert a[0][5] is True, a[0]
            delay = a[0][0] - e[0]
            if fault_of.get(dev) == "late_ack":
                assert delay >= 780, "late-ack device acked after %d ms" % delay
            else:
                assert delay < 300, "%s acked after %d ms" % (dev, delay)
        lat = rep["ack_latency_ms"]
        assert lat["count"] >= len(normal) + 1, lat
        assert lat["max"] >= 780 and lat["p50"] < 50, lat
    r.case("setpoints acked (accepted), late-ack device acks after --late-ack-ms; latency in report", acks)

    def nan_refused():
        sps = [e for e in srv.of("setpoint") if e[4] == nan_seq]
        assert len(sps) >= 6, "NaN setpoint reached %d sessions" % len(sps)
        refused = 0
        for e in sps:
            dev, n = e[2], e[3]
            a = [x for x in srv.of("ack", dev) if x[3] == n and x[4] == nan_seq]
            if fault_of.get(dev) in ("flaky", "malformed") and not a:
                continue
            assert a, "%s did not answer the NaN setpoint" % dev
            assert a[0][5] is False and "power_kw" in a[0][6], a[0]
            assert a[0][0] - e[0] < 300, "%s refused after %d ms" % (dev, a[0][0] - e[0])  # late-ack too
            refused += 1
        assert rep["counters"]["setpoints_refused"] == refused, (rep["counters"], refused)
    r.case("a setpoint that is not a number is refused at once, with a reason; the lease in force runs on",
           nan_refused)

    def physics():
        # Telemetry well inside the lease and well after it. The lease
        # lasts valid_until - server_time from its arrival: a device that
        # used its own clock (10 s behind the server's) or the server time
        # it learnt at Welcome (an hour off by now) would hold it too long.
        def mean_power(dev, a, b):
            v = [e[6] for e in srv.of("telemetry", dev) if a <= e[0] <= b]
            assert v, "%s: no telemetry in [%d, %d]" % (dev, a, b)
            return sum(v) / len(v)
        during = (t_sp + 1200, lease_end - 150)
        after = (lease_end + 1100, lease_end + 2000)
        for dev in normal + faults["late_ack"]:
            assert near(mean_power(dev, *during), SETPOINT_KW, 0.25), "%s: %.3f kW during the lease" % (
                dev, mean_power(dev, *during))
            assert near(mean_power(dev, *after), 0, 0.25), "%s: %.3f kW after the lease" % (
                dev, mean_power(dev, *after))
        ig, pa = faults["ignore"][0], faults["partial"][0]
        assert near(mean_power(ig, *during), 0, 0.2), "ignore device delivers %.3f" % mean_power(ig, *during)
        assert near(mean_power(pa, *during), SETPOINT_KW * 0.5, 0.25), "partial device delivers %.3f" % (
            mean_power(pa, *during))
    r.case("batteries follow the setpoint, return to 0 at lease end (server clock); ignore/partial faults",
           physics)

    def truth():
        secs = rep["seconds"]
        assert len(secs) >= 7, "%d seconds recorded" % len(secs)
        peak = max(s["true_kw"] for s in secs)
        # 4 normal + late-ack at 2 kW, partial at 1 kW; flaky/malformed may
        # have been commanded too (their sessions come and go).
        assert 10.0 <= peak <= 15.0, "peak true power %.2f kW" % peak
        last = secs[-1]
        assert last["t_ms"] > lease_end + 1000 and abs(last["true_kw"]) < 0.5, last
        assert max(s["connected"] for s in secs) >= 7, secs
        fo = [g for g in rep["fanout"] if g["valid_until_ms"] == valid_until + 3600000]  # as sent
        assert len(fo) == 1, rep["fanout"]
        sent = [e for e in srv.of("setpoint") if e[4] == sp_seq]
        assert fo[0]["count"] == len(sent), (fo, len(sent))
        assert 0 <= fo[0]["fanout_ms"] < 500, fo
        c = rep["counters"]
        assert c["setpoints_received"] == len(srv.of("setpoint")), c
        assert c["sessions"] == len(srv.of("welcome")), (c, len(srv.of("welcome")))
        devs = {d["id"]: d for d in rep["devices"]}
        assert set(devs) == set(all_ids)
        for d in devs.values():  # sessions: welcomes; connect_attempts: tries
            assert d["sessions"] == len(srv.of("welcome", d["id"])), d
            assert d["connect_attempts"] == len(srv.of("hello", d["id"])), d
        # The normal, ignore, partial and late-ack devices stay up to the end.
        assert len(normal) + 3 <= c["connected_at_end"] <= 9, c
        assert all(0 < d["soc"] < 1 for d in devs.values())
    r.case("report: true power per second, connected, fan-out group by valid_until, counters", truth)

    def malformed():
        dev = faults["malformed"][0]
        bad = srv.of("garbage", dev) + srv.of("bad_telemetry", dev)
        assert bad, "malformed device sent nothing malformed"
        assert len(srv.of("hello", dev)) >= 3, "malformed device did not reconnect after INVALID_ARGUMENT"
        c = rep["counters"]
        assert c["malformed_sent"] >= len(bad) and c["malformed_rejected"] >= 1, c
        assert rep["errors"]["INVALID_ARGUMENT"] >= 1, rep["errors"]
        # Nobody else sent anything malformed.
        others = {e[2] for e in srv.of("garbage") + srv.of("bad_telemetry")}
        assert others == {dev}, others
    r.case("malformed fault: garbage/NaN/SoC 1.7 sent, INVALID_ARGUMENT, reconnect", malformed)

    def flaky():
        dev = faults["flaky"][0]
        assert len(srv.of("welcome", dev)) >= 2, "flaky device had %d sessions" % len(srv.of("welcome", dev))
        assert rep["counters"]["flaky_drops"] >= 1, rep["counters"]
        for d in normal:
            assert len(srv.of("welcome", d)) == 1, "%s reconnected: %s" % (d, srv.of("welcome", d))
    r.case("flaky fault: drops and reconnects; healthy devices keep one session", flaky)

    # ------------------------------------ rejected device, SIGTERM, profile
    srv2 = FakeServer(pb, certs, reject_ids={"dev-00000"}, unavailable_first=False)
    report2 = os.path.join(work, "report2.json")
    profile = os.path.join(work, "fleet.ini")
    with open(profile, "w") as f:
        f.write("devices = 3\n[physics]\ncapacity-kwh = 20\n[faults]\npartial = 0.5\n")
    argv = [exe, "--server", "127.0.0.1:%d" % srv2.port, "--certs", certs, "--profile", profile,
            "--devices", "2", "--report", report2, "--partial", "0", "--progress-s", "0"]
    emu = vpptest.Proc("vpp-emulator-2", argv, env=emu_env())
    try:
        time.sleep(4.5)
        assert emu.alive(), "emulator exited early: " + emu.log_tail()
        emu.signal(signal.SIGTERM)
        rc2 = emu.wait(15)
    finally:
        emu.stop()
        srv2.stop()

    def rejected():
        tries = srv2.of("hello", "dev-00000")
        assert 2 <= len(tries) <= 12, "rejected device tried %d times in 4.5 s" % len(tries)
        gaps = [b[0] - a[0] for a, b in zip(tries, tries[1:])]
        assert max(gaps) >= 200, "no backoff between attempts: %s" % gaps
        with open(report2) as f:
            rep2 = json.load(f)
        assert rep2["errors"]["PERMISSION_DENIED"] == len(tries), (rep2["errors"], len(tries))
        assert len(srv2.of("welcome", "dev-00001")) == 1
    r.case("PERMISSION_DENIED counted, retried with backoff, not hammered", rejected)

    def sigterm_profile():
        assert rc2 == 0, "exit status %s after SIGTERM" % rc2
        with open(report2) as f:
            rep2 = json.load(f)
        assert rep2["stop_reason"] == "SIGTERM", rep2["stop_reason"]
        cfg = rep2["config"]
        assert cfg["devices"] == 2 and cfg["capacity-kwh"] == 20 and cfg["partial"] == 0, cfg
        assert all(0.8 * 20 <= d["capacity_kwh"] <= 1.2 * 20 for d in rep2["devices"]), rep2["devices"]
        assert len(rep2["devices"]) == 2
    r.case("SIGTERM writes the report; --profile keys apply, flags override them", sigterm_profile)

    # --------------------------- a hung server; source addresses by index
    srv3 = FakeServer(pb, certs, unavailable_first=False, silent=True)
    report3 = os.path.join(work, "report3.json")
    argv = [exe, "--server", "localhost:%d" % srv3.port, "--certs", certs, "--devices", "3",
            "--first-index", "5", "--per-address", "2", "--server-silence-s", "1",
            "--backoff-base-ms", "100", "--duration", "3.6", "--report", report3, "--progress-s", "0"]
    emu = vpptest.Proc("vpp-emulator-3", argv, env=emu_env())
    try:
        rc3 = emu.wait(20)
    finally:
        emu.stop()
        srv3.stop()

    def hung_server():
        assert rc3 == 0, "exit status %s" % rc3
        with open(report3) as f:
            rep3 = json.load(f)
        for dev in ("dev-00005", "dev-00006", "dev-00007"):
            ws = srv3.of("welcome", dev)
            assert len(ws) >= 2, "%s stayed on a silent server: %d sessions" % (dev, len(ws))
            hs = srv3.of("hello", dev)
            assert hs[1][0] - ws[0][0] >= 950, "%s left after %d ms" % (dev, hs[1][0] - ws[0][0])
        c = rep3["counters"]
        assert c["server_silent"] >= 3, c
        assert sum(rep3["errors"][k] for k in rep3["errors"] if k not in ("ended_ok",)) == 0, rep3["errors"]
    r.case("a server silent for --server-silence-s is left and reconnected, without an error status",
           hung_server)

    def source_addresses():
        # localhost resolved once to 127.0.0.1; --per-address 2 over the
        # global index 5, 6, 7: addresses 2, 3, 3 (127.0.1.3, 127.0.1.4).
        want = {"dev-00005": "127.0.1.3", "dev-00006": "127.0.1.4", "dev-00007": "127.0.1.4"}
        for dev, ip in want.items():
            peers = {e[4].split(":")[1] for e in srv3.of("peer", dev)}
            assert peers == {ip}, "%s connected from %s, not %s" % (dev, peers, ip)
    r.case("--per-address spreads sources by the global device index (--first-index)", source_addresses)


if __name__ == "__main__":
    vpptest.main(body, budget_s=150)
