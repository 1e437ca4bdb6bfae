#!/usr/bin/python3
"""Google's gRPC for Python as the client of vppd's Echo and Health services,
over TLS (with and without a client certificate) and over h2c: every call
kind, metadata both ways, every status code with an awkward message,
deadlines, cancellation, 4 MiB messages and the size limit, 100 concurrent
streams on one channel, Health Check/Watch, and graceful shutdown.

env VPP_BUILD: meson build dir holding server/vppd.
env INTEROP_TARGET=python: run against the reference tests/interop/echo_server.py
instead (validates the tests themselves; vppd metric checks are skipped).
Last line: `N passed, N failed`.
"""

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vpptest  # noqa: E402
from vpptest import grpc_code  # noqa: E402

import grpc  # noqa: E402

MiB = 1 << 20
DEFAULT_LIMIT = 4 * MiB
# An EchoRequest/EchoResponse whose serialized size stays just under the
# default limit: payload + field tag + 4-byte length + a short message.
BIG = DEFAULT_LIMIT - 64
AWKWARD = "code %d: spaces  and 100%% and %%41 literal, ünïcödé ⚡ 日本語\nsecond line\ttab \"quoted\" \\ end"

S = None
pb = None
hpb = None


def channel(srv, certs, client_cert=None, fresh=False):
    """A channel to |srv|: insecure for h2c, else TLS trusting the dev CA and
    checking the name `localhost` (the server certificate's SAN). With
    |client_cert| = (cert, key) paths it presents that certificate.
    |fresh| forces a connection of its own (no shared subchannel)."""
    opts = [("grpc.max_receive_message_length", 16 * MiB), ("grpc.max_send_message_length", 16 * MiB)]
    if fresh:
        opts.append(("grpc.use_local_subchannel_pool", 1))
    if srv.h2c:
        return grpc.insecure_channel(srv.target, options=opts)
    ca = certs.read("ca")
    if client_cert:
        with open(client_cert[0], "rb") as f:
            crt = f.read()
        with open(client_cert[1], "rb") as f:
            key = f.read()
        creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=crt)
    else:
        creds = grpc.ssl_channel_credentials(root_certificates=ca)
    opts.append(("grpc.ssl_target_name_override", "localhost"))
    return grpc.secure_channel(srv.target, creds, options=opts)


def expect_error(fn, code, what=""):
    try:
        fn()
    except grpc.RpcError as e:
        assert e.code() == code, "%s: expected %s, got %s (%r)" % (what, code, e.code(), e.details())
        return e
    raise AssertionError("%s: expected %s, the call succeeded" % (what, code))


def pattern(n):
    return (bytes(range(256)) * (n // 256 + 1))[:n]


def health_ok(srv, certs):
    """A Health Check on a new connection answers SERVING."""
    st = vpptest.health_status(srv, certs, timeout=10)
    assert st == hpb.HealthCheckResponse.SERVING, "health status %s" % st


def metric_grew(srv, before, fn, what, timeout=5.0):
    """On vppd: waits until fn(metrics) > before. Returns a note for python."""
    if srv.kind != "vppd":
        return
    m = vpptest.wait_metric(srv, lambda m: fn(m) > before, timeout)
    assert fn(m) > before, "metric %s did not grow (still %s)" % (what, fn(m))


def metric_now(srv, fn):
    return fn(srv.metrics()) if srv.kind == "vppd" else 0


def calls(method, code):
    return lambda m: m.get("vpp_grpc_calls_total", listener="api", method=method, code=str(code))


# ------------------------------------------------------------------ cases


def t_unary(stub, srv):
    md = [("x-b", "2"), ("x-a", "1"), ("other", "not echoed"), ("x-a", "3")]
    r = stub.Unary(pb.EchoRequest(message="hello ⚡", payload=b"\x00\xffpay"), metadata=md, timeout=10)
    assert r.message == "hello ⚡", r.message
    assert r.payload == b"\x00\xffpay", r.payload
    assert list(r.metadata) == ["x-a=1", "x-a=3", "x-b=2"], list(r.metadata)
    assert r.peer_identity == "", "peer_identity %r without a client certificate" % r.peer_identity
    r = stub.Unary(pb.EchoRequest(), timeout=10)
    assert r.message == "" and r.payload == b"" and list(r.metadata) == [], r


def t_server_stream(stub, srv):
    got = list(stub.ServerStream(pb.EchoRequest(message="s", count=5, response_size=1000), timeout=10))
    assert [m.index for m in got] == [0, 1, 2, 3, 4], [m.index for m in got]
    for m in got:
        assert m.message == "s" and m.payload == pattern(1000), "bad response %d" % m.index
    assert list(stub.ServerStream(pb.EchoRequest(count=0), timeout=10)) == []
    # Responses first, then the requested status.
    it = stub.ServerStream(pb.EchoRequest(count=2, response_size=3, fail_with_code=9, fail_with_message="after two"),
                           timeout=10)
    seen = []

    def drain():
        for m in it:
            seen.append(m.index)

    e = expect_error(drain, grpc.StatusCode.FAILED_PRECONDITION, "stream then status")
    assert seen == [0, 1], seen
    assert e.details() == "after two", e.details()


def t_client_stream(stub, srv):
    reqs = [pb.EchoRequest(message="m%d" % i, payload=pattern(i * 100)) for i in range(10)]
    r = stub.ClientStream(iter(reqs), timeout=10)
    assert r.received_count == 10, r.received_count
    assert r.received_bytes == sum(i * 100 for i in range(10)), r.received_bytes
    assert r.message == "m9", r.message
    r = stub.ClientStream(iter([]), timeout=10)
    assert r.received_count == 0 and r.received_bytes == 0, r

    # A request asking for a status ends the call at once, while the client
    # is still sending (the iterator blocks until the call is over).
    ended = threading.Event()

    def gen():
        yield pb.EchoRequest(message="a")
        yield pb.EchoRequest(fail_with_code=10, fail_with_message="stop here")
        ended.wait(10)
        yield pb.EchoRequest(message="never")

    t0 = time.monotonic()
    try:
        e = expect_error(lambda: stub.ClientStream(gen(), timeout=10), grpc.StatusCode.ABORTED, "client stream fail")
    finally:
        ended.set()
    assert e.details() == "stop here", e.details()
    assert time.monotonic() - t0 < 5, "the status came only after the client half-closed"


class BidiDriver:
    """Sends requests one by one from the test and reads responses in step."""

    def __init__(self, stub, metadata=None, timeout=10):
        self.q = queue.Queue()
        self.call = stub.Bidi(iter(self.q.get, None), metadata=metadata, timeout=timeout)

    def send(self, req):
        self.q.put(req)

    def recv(self):
        return next(self.call)

    def close(self):
        self.q.put(None)


def t_bidi(stub, srv):
    d = BidiDriver(stub)
    try:
        # Each response arrives before the next request is sent.
        for i in range(5):
            d.send(pb.EchoRequest(message="b%d" % i, payload=pattern(i)))
            r = d.recv()
            assert (r.index, r.message, r.payload) == (i, "b%d" % i, pattern(i)), r
        d.close()
        rest = list(d.call)
        assert rest == [], rest
        assert d.call.code() == grpc.StatusCode.OK, d.call.code()
    finally:
        d.close()
    d = BidiDriver(stub)
    try:
        d.send(pb.EchoRequest(message="x"))
        assert d.recv().message == "x"
        d.send(pb.EchoRequest(fail_with_code=11, fail_with_message="bidi stop"))
        e = expect_error(d.recv, grpc.StatusCode.OUT_OF_RANGE, "bidi fail")
        assert e.details() == "bidi stop", e.details()
    finally:
        d.close()


def t_metadata(stub, srv):
    md = [("x-echo-initial", "init value"), ("x-echo-trailer", "trail value")]
    r, call = stub.Unary.with_call(pb.EchoRequest(message="m"), metadata=md, timeout=10)
    assert ("x-echo-initial", "init value") in tuple(call.initial_metadata()), call.initial_metadata()
    assert ("x-echo-trailer", "trail value") in tuple(call.trailing_metadata()), call.trailing_metadata()
    assert list(r.metadata) == ["x-echo-initial=init value", "x-echo-trailer=trail value"], list(r.metadata)

    call = stub.ServerStream(pb.EchoRequest(count=2), metadata=md, timeout=10)
    # Initial metadata is there before the first message is read.
    assert ("x-echo-initial", "init value") in tuple(call.initial_metadata()), call.initial_metadata()
    assert len(list(call)) == 2
    assert ("x-echo-trailer", "trail value") in tuple(call.trailing_metadata()), call.trailing_metadata()

    d = BidiDriver(stub, metadata=md)
    try:
        d.send(pb.EchoRequest(message="q"))
        assert ("x-echo-initial", "init value") in tuple(d.call.initial_metadata())
        assert d.recv().message == "q"
        d.close()
        list(d.call)
        assert ("x-echo-trailer", "trail value") in tuple(d.call.trailing_metadata()), d.call.trailing_metadata()
    finally:
        d.close()

    # Trailers also carry the metadata when the call fails.
    e = expect_error(lambda: stub.Unary(pb.EchoRequest(fail_with_code=7, fail_with_message="no"),
                                        metadata=[("x-echo-trailer", "on error")], timeout=10),
                     grpc.StatusCode.PERMISSION_DENIED, "trailer on error")
    assert ("x-echo-trailer", "on error") in tuple(e.trailing_metadata()), e.trailing_metadata()

    r, call = stub.Unary.with_call(pb.EchoRequest(), timeout=10)
    keys = [k for k, _ in call.initial_metadata()] + [k for k, _ in call.trailing_metadata()]
    assert not any(k.startswith("x-echo") for k in keys), "echo metadata sent unasked: %s" % keys


def t_status_codes(stub, srv):
    bad = []
    for n in range(1, 17):
        msg = AWKWARD % n
        try:
            stub.Unary(pb.EchoRequest(fail_with_code=n, fail_with_message=msg), timeout=10)
            bad.append("%d: succeeded" % n)
        except grpc.RpcError as e:
            if e.code() != grpc_code(n) or e.details() != msg:
                bad.append("%d: got %s %r" % (n, e.code(), e.details()))
    e = expect_error(lambda: stub.Unary(pb.EchoRequest(fail_with_code=5), timeout=10), grpc.StatusCode.NOT_FOUND,
                     "empty message")
    if e.details():
        bad.append("empty message came back as %r" % e.details())
    assert not bad, "; ".join(bad)


def t_deadline_unary(stub, srv):
    expired = lambda m: m.rejected("deadline_exceeded") + m.rejected("cancelled") + calls("/vpp.v1.Echo/Unary", 4)(
        m) + calls("/vpp.v1.Echo/Unary", 1)(m)
    before = metric_now(srv, expired)
    t0 = time.monotonic()
    expect_error(lambda: stub.Unary(pb.EchoRequest(delay_ms=1500), timeout=0.3), grpc.StatusCode.DEADLINE_EXCEEDED,
                 "unary past deadline")
    dt = time.monotonic() - t0
    assert dt < 1.2, "DEADLINE_EXCEEDED after %.2f s for a 0.3 s deadline" % dt
    metric_grew(srv, before, expired, "deadline_exceeded|cancelled or Unary calls with code 4|1", timeout=5)
    r = stub.Unary(pb.EchoRequest(message="after", delay_ms=100), timeout=5)
    assert r.message == "after"


def t_deadline_stream(stub, srv):
    it = stub.ServerStream(pb.EchoRequest(count=20, delay_ms=100, response_size=10), timeout=0.75)
    seen = []

    def drain():
        for m in it:
            seen.append(m.index)

    expect_error(drain, grpc.StatusCode.DEADLINE_EXCEEDED, "stream past deadline")
    assert 2 <= len(seen) < 20, "got %d messages before the deadline" % len(seen)
    assert seen == list(range(len(seen))), seen


def t_cancel(stub, srv):
    cancelled = lambda m: m.rejected("cancelled") + calls("/vpp.v1.Echo/ServerStream", 1)(m) + calls(
        "/vpp.v1.Echo/Bidi", 1)(m)
    before = metric_now(srv, cancelled)
    call = stub.ServerStream(pb.EchoRequest(count=1000, delay_ms=20, response_size=100), timeout=30)
    for i in range(3):
        assert next(call).index == i
    call.cancel()
    expect_error(lambda: [m for m in call], grpc.StatusCode.CANCELLED, "reading a cancelled stream")
    metric_grew(srv, before, cancelled, "cancelled (server stream)")

    before = metric_now(srv, cancelled)
    d = BidiDriver(stub, timeout=30)
    try:
        for i in range(3):
            d.send(pb.EchoRequest(message="c%d" % i))
            assert d.recv().index == i
        d.call.cancel()
        expect_error(d.recv, grpc.StatusCode.CANCELLED, "reading a cancelled bidi")
    finally:
        d.close()
    metric_grew(srv, before, cancelled, "cancelled (bidi)")
    # The server keeps working on the same channel.
    assert stub.Unary(pb.EchoRequest(message="still here"), timeout=10).message == "still here"


def t_large(stub, srv):
    big = pattern(BIG)
    r = stub.Unary(pb.EchoRequest(message="big", payload=big), timeout=30)
    assert r.payload == big, "4 MiB payload came back with %d bytes" % len(r.payload)
    n = 0
    for m in stub.ServerStream(pb.EchoRequest(count=2, response_size=BIG), timeout=30):
        assert m.payload == big, "server stream payload of %d bytes" % len(m.payload)
        n += 1
    assert n == 2
    r = stub.ClientStream(iter([pb.EchoRequest(payload=big) for _ in range(2)]), timeout=30)
    assert r.received_count == 2 and r.received_bytes == 2 * BIG, r


def t_too_large(stub, srv):
    # The limit is on the serialized message: an EchoRequest of exactly
    # 4194304 bytes (tag + 4-byte length + payload) passes, one more does not.
    at_limit = pb.EchoRequest(payload=b"y" * (DEFAULT_LIMIT - 5))
    assert at_limit.ByteSize() == DEFAULT_LIMIT, at_limit.ByteSize()
    r = stub.Unary(at_limit, timeout=30)
    assert len(r.payload) == DEFAULT_LIMIT - 5, "message of exactly the limit: %d bytes back" % len(r.payload)
    before = metric_now(srv, lambda m: m.rejected("message_too_large"))
    over = pb.EchoRequest(payload=b"y" * (DEFAULT_LIMIT - 4))
    assert over.ByteSize() == DEFAULT_LIMIT + 1, over.ByteSize()
    expect_error(lambda: stub.Unary(over, timeout=30), grpc.StatusCode.RESOURCE_EXHAUSTED, "limit + 1 byte")
    metric_grew(srv, before, lambda m: m.rejected("message_too_large"), "rejected{message_too_large}")
    before = metric_now(srv, lambda m: m.rejected("message_too_large"))
    e = expect_error(lambda: stub.Unary(pb.EchoRequest(payload=b"x" * (DEFAULT_LIMIT + 1)), timeout=30),
                     grpc.StatusCode.RESOURCE_EXHAUSTED, "message over the limit")
    metric_grew(srv, before, lambda m: m.rejected("message_too_large"), "rejected{message_too_large}")
    assert stub.Unary(pb.EchoRequest(message="ok"), timeout=10).message == "ok"
    return e


def t_concurrent(stub, srv):
    t0 = time.monotonic()
    futs = [stub.Unary.future(pb.EchoRequest(message="c%03d" % i, delay_ms=500), timeout=30) for i in range(100)]
    bad = []
    for i, f in enumerate(futs):
        try:
            r = f.result()
            if r.message != "c%03d" % i:
                bad.append("%d: message %r" % (i, r.message))
        except grpc.RpcError as e:
            bad.append("%d: %s %s" % (i, e.code(), e.details()))
    dt = time.monotonic() - t0
    assert not bad, "%d of 100 failed: %s" % (len(bad), "; ".join(bad[:5]))
    # 100 calls of 500 ms each: only concurrent handling ends in a few seconds.
    assert dt < 10, "100 concurrent 500 ms calls took %.1f s" % dt
    # Streams too: 100 server streams open at once, read interleaved.
    its = [stub.ServerStream(pb.EchoRequest(message="s%d" % i, count=3, delay_ms=100), timeout=30) for i in range(100)]
    for i, it in enumerate(its):
        got = [(m.index, m.message) for m in it]
        assert got == [(0, "s%d" % i), (1, "s%d" % i), (2, "s%d" % i)], got


def t_health(hstub, srv):
    r = hstub.Check(hpb.HealthCheckRequest(service=""), timeout=10)
    assert r.status == hpb.HealthCheckResponse.SERVING, r.status
    expect_error(lambda: hstub.Check(hpb.HealthCheckRequest(service="no.such.Service"), timeout=10),
                 grpc.StatusCode.NOT_FOUND, "Check(unknown service)")


def t_watch(hstub, srv):
    call = hstub.Watch(hpb.HealthCheckRequest(service=""), timeout=30)
    first = next(call)
    assert first.status == hpb.HealthCheckResponse.SERVING, first.status
    # Nothing changes, so nothing more arrives and the stream stays open.
    more = []

    def reader():
        try:
            for m in call:
                more.append(m.status)
        except grpc.RpcError:
            pass

    t = threading.Thread(target=reader, daemon=True)
    try:
        t.start()
        t.join(1.0)
        assert t.is_alive(), "Watch ended without being cancelled (code %s)" % call.code()
        assert more == [], "unexpected Watch updates %s" % more
    finally:
        call.cancel()
    t.join(5)
    assert not t.is_alive(), "Watch did not end after cancel"
    assert call.code() == grpc.StatusCode.CANCELLED, call.code()


def t_peer_identity(srv, certs):
    ch = channel(srv, certs, client_cert=(certs.operator, certs.operator_key), fresh=True)
    try:
        r = S.echo_pb2_grpc.EchoStub(ch).Unary(pb.EchoRequest(message="who"), timeout=10)
        assert r.peer_identity == "operator", "peer_identity %r" % r.peer_identity
    finally:
        ch.close()


def t_two_cns(srv, certs):
    # A client certificate with two CNs (CN=operator-admin, CN=innocent):
    # no identity at all, rather than the first CN (a tool reading the last
    # one would disagree about who called).
    d = certs.dir
    ext = os.path.join(d, "two-cn.ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n")
    for args in (["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "two-cn.key"],
                 ["req", "-new", "-key", "two-cn.key", "-subj", "/CN=operator-admin/CN=innocent", "-out", "two-cn.csr"],
                 ["x509", "-req", "-in", "two-cn.csr", "-CA", "operator-ca.pem", "-CAkey", "operator-ca.key",
                  "-CAcreateserial", "-sha256", "-days", "30", "-extfile", ext, "-out", "two-cn.pem"]):
        p = subprocess.run(["openssl"] + args, cwd=d, capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
    ch = channel(srv, certs, client_cert=(os.path.join(d, "two-cn.pem"), os.path.join(d, "two-cn.key")), fresh=True)
    try:
        r = S.echo_pb2_grpc.EchoStub(ch).Unary(pb.EchoRequest(message="who"), timeout=10)
        assert r.peer_identity == "", "peer_identity %r from a certificate with two CNs" % r.peer_identity
    finally:
        ch.close()


def t_wrong_ca(srv, certs):
    before = metric_now(srv, lambda m: m.rejected("tls_handshake"))
    ch = channel(srv, certs, client_cert=(certs.device, certs.device_key), fresh=True)
    try:
        expect_error(lambda: S.health_pb2_grpc.HealthStub(ch).Check(hpb.HealthCheckRequest(), timeout=5),
                     grpc.StatusCode.UNAVAILABLE, "client certificate from another CA")
    finally:
        ch.close()
    metric_grew(srv, before, lambda m: m.rejected("tls_handshake"), "rejected{tls_handshake}")


def t_untrusted_server(srv, certs):
    # A client that trusts another CA refuses the server: TLS is really checked.
    ch = grpc.secure_channel(srv.target, grpc.ssl_channel_credentials(root_certificates=certs.read("operator_ca")),
                             options=[("grpc.ssl_target_name_override", "localhost"),
                                      ("grpc.use_local_subchannel_pool", 1)])
    try:
        expect_error(lambda: S.health_pb2_grpc.HealthStub(ch).Check(hpb.HealthCheckRequest(), timeout=5),
                     grpc.StatusCode.UNAVAILABLE, "server certificate from an untrusted CA")
    finally:
        ch.close()


def t_graceful_shutdown(srv, certs):
    ch = channel(srv, certs, fresh=True)
    stub = S.echo_pb2_grpc.EchoStub(ch)
    try:
        assert stub.Unary(pb.EchoRequest(message="warm"), timeout=10).message == "warm"
        t0 = time.monotonic()
        fut = stub.Unary.future(pb.EchoRequest(message="slow", delay_ms=1500), timeout=20)
        time.sleep(0.4)  # the call is on the server, sleeping
        srv.proc.signal(signal.SIGTERM)
        time.sleep(0.4)
        # New connections are refused while the slow call drains.
        refused = False
        try:
            socket.create_connection(("127.0.0.1", srv.port), timeout=2).close()
        except OSError:
            refused = True
        print("  new TCP connection after SIGTERM: %s" % ("refused" if refused else "accepted"), flush=True)
        if not refused:
            ch2 = channel(srv, certs, fresh=True)
            try:
                expect_error(lambda: S.health_pb2_grpc.HealthStub(ch2).Check(hpb.HealthCheckRequest(), timeout=3),
                             grpc.StatusCode.UNAVAILABLE, "new call after SIGTERM")
            finally:
                ch2.close()
        r = fut.result()
        assert r.message == "slow", r.message
        dt = time.monotonic() - t0
        assert dt >= 1.4, "slow call answered after %.2f s" % dt
        rc = srv.proc.wait(15)
        assert rc is not None, "server still running 15 s after SIGTERM"
        assert rc == 0, "server exited with %s after SIGTERM" % rc
    finally:
        ch.close()


def t_vppd_metrics(srv):
    m = srv.metrics()
    for name in ("vpp_grpc_calls_total", "vpp_grpc_rejected_total", "vpp_grpc_connections",
                 "vpp_grpc_connections_total", "vpp_grpc_outbound_bytes"):
        assert m.has(name), "%s is not exposed on /metrics" % name
    assert calls("/vpp.v1.Echo/Unary", 0)(m) > 0, "no calls_total{code=0} for Unary"
    assert calls("/grpc.health.v1.Health/Check", 0)(m) > 0, "no calls_total{code=0} for Health/Check"
    assert calls("/vpp.v1.Echo/Unary", 8)(m) > 0 or m.rejected("message_too_large") > 0
    assert m.get("vpp_grpc_connections_total", listener="api") > 0, "connections_total is 0"
    assert m.get("vpp_grpc_connections", listener="api") >= 1, "connections gauge is 0 with a channel open"
    # Nothing is in flight: nothing should stay queued for sending.
    m = vpptest.wait_metric(srv, lambda m: m.get("vpp_grpc_outbound_bytes", listener="api") < 65536)
    assert m.get("vpp_grpc_outbound_bytes", listener="api") < 65536, "outbound bytes %s while idle" % m.get(
        "vpp_grpc_outbound_bytes", listener="api")


def t_connections_released(srv):
    # Every channel of the earlier cases is closed: vppd must notice.
    m = vpptest.wait_metric(srv, lambda m: m.get("vpp_grpc_connections", listener="api") == 0, 10)
    n = m.get("vpp_grpc_connections", listener="api")
    assert m.has("vpp_grpc_connections"), "vpp_grpc_connections is not exposed"
    assert n == 0, "vpp_grpc_connections is %s after every client closed" % n


def t_json_logs(srv):
    with open(srv.proc.log_path, "rb") as f:
        lines = [l for l in f.read().decode("utf-8", "replace").splitlines() if l.strip()]
    bad = [l for l in lines if len(vpptest.json_lines(l)) != 1]
    assert not bad, "%d stderr lines are not JSON, e.g. %r" % (len(bad), bad[:3])


# ------------------------------------------------------------------ main


def body(r):
    global S, pb, hpb
    S = vpptest.stubs()
    pb, hpb = S.echo_pb2, S.health_pb2
    certs = vpptest.make_certs()
    kind = os.environ.get("INTEROP_TARGET", "vppd")
    servers = []
    if kind == "python":
        tls = vpptest.start_echo_server(certs, name="py-tls")
        mtls = vpptest.start_echo_server(certs, client_ca=True, require_client_cert=True, name="py-mtls")
        h2c = vpptest.start_echo_server(h2c=True, name="py-h2c")
        servers = [tls, mtls, h2c]
    elif kind == "vppd":
        tls = vpptest.start_vppd(certs, operator_ca=True, name="vppd-tls")
        servers.append(tls)
        mtls = tls
        h2c = vpptest.start_vppd(h2c=True, name="vppd-h2c")
        servers.append(h2c)
    else:
        raise RuntimeError("INTEROP_TARGET must be vppd or python, not %r" % kind)
    r.on_fail.append(lambda: "\n".join("--- %s log (tail):\n%s" % (s.proc.name, s.proc.log_tail(15)) for s in servers))
    print("target: %s (%s)" % (kind, ", ".join("%s %s" % (s.proc.name, s.target) for s in servers)), flush=True)

    for name, srv in (("tls", tls), ("h2c", h2c)):
        ch = channel(srv, certs)
        stub = S.echo_pb2_grpc.EchoStub(ch)
        hstub = S.health_pb2_grpc.HealthStub(ch)
        for cname, fn in (("unary", t_unary), ("server stream", t_server_stream),
                          ("client stream", t_client_stream), ("bidi", t_bidi), ("metadata both ways", t_metadata),
                          ("status codes 1..16 with awkward messages", t_status_codes),
                          ("unary deadline", t_deadline_unary), ("server stream deadline", t_deadline_stream),
                          ("cancel server stream and bidi", t_cancel), ("4 MiB messages both ways", t_large),
                          ("message over the limit", t_too_large), ("100 concurrent streams", t_concurrent)):
            r.case("%s: %s" % (name, cname), fn, stub, srv)
        r.case("%s: health check" % name, t_health, hstub, srv)
        r.case("%s: health watch" % name, t_watch, hstub, srv)
        if srv.kind == "vppd":
            r.case("%s: metrics" % name, t_vppd_metrics, srv)
        ch.close()

    r.case("tls: client certificate → peer_identity", t_peer_identity, mtls, certs)
    if kind == "vppd":
        r.case("tls: a certificate with two CNs gives no identity", t_two_cns, mtls, certs)
    r.case("tls: client certificate from another CA is refused", t_wrong_ca, mtls, certs)
    r.case("tls: client refuses an untrusted server", t_untrusted_server, tls, certs)
    r.case("tls: health on a new connection", health_ok, tls, certs)
    if kind == "vppd":
        for s in servers:
            r.case("%s: connections gauge back to 0" % s.proc.name, t_connections_released, s)
    r.case("tls: graceful shutdown", t_graceful_shutdown, tls, certs)
    r.case("h2c: graceful shutdown", t_graceful_shutdown, h2c, certs)
    for s in servers if kind == "vppd" else ():
        r.case("%s: logs are JSON lines" % s.proc.name, t_json_logs, s)


if __name__ == "__main__":
    vpptest.main(body, budget_s=170)
