#!/usr/bin/python3
"""Hostile and malformed input against vppd's gRPC listener, sent with raw
sockets and the `h2` library (Debian python3-h2): garbage instead of TLS or
the HTTP/2 preface, HTTP/1.1, wrong content-type and method, truncated,
oversized, unparsable and compressed gRPC messages, unknown methods, an
oversized header list, too many streams, a client that never reads, and
connections that go silent. For each case: the client sees the documented
reaction, the matching vpp_grpc_rejected_total{reason} grows, and a normal
Health Check on a new connection still succeeds.

env VPP_BUILD: meson build dir holding server/vppd. Runs against vppd only
(INTEROP_TARGET=python points the same probes at the reference server to
check the probes themselves; grpcio answers some of them differently and
has no metrics, so failures there are expected). Last line:
`N passed, N failed`.
"""

import gzip
import os
import socket
import ssl
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vpptest  # noqa: E402

import h2.config  # noqa: E402
import h2.connection  # noqa: E402
import h2.errors  # noqa: E402
import h2.events  # noqa: E402
import h2.exceptions  # noqa: E402
import h2.settings  # noqa: E402

MiB = 1 << 20
MAX_STREAMS = 8
MAX_HEADER_BYTES = 4096
IDLE_MS = 1500
HANDSHAKE_MS = 1000
KEEPALIVE_MS = 500
KEEPALIVE_ACK_S = 20
SERVER_FLAGS = ["--grpc-max-concurrent-streams", str(MAX_STREAMS), "--grpc-max-header-bytes", str(MAX_HEADER_BYTES),
                "--grpc-idle-timeout-ms", str(IDLE_MS), "--grpc-handshake-timeout-ms", str(HANDSHAKE_MS)]
REFUSED_STREAM = 7

S = None
CERTS = None


def grpc_frame(msg, compressed=False):
    return struct.pack(">BI", 1 if compressed else 0, len(msg)) + msg


def read_until_closed(sock, timeout):
    """Reads until EOF/reset or |timeout|; returns (bytes, closed)."""
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


def tcp(srv):
    return socket.create_connection(("127.0.0.1", srv.port), timeout=5)


def tls_wrap(sock):
    ctx = ssl.create_default_context(cafile=CERTS.ca)
    ctx.set_alpn_protocols(["h2"])
    s = ctx.wrap_socket(sock, server_hostname="localhost")
    assert s.selected_alpn_protocol() == "h2", "ALPN selected %r" % s.selected_alpn_protocol()
    return s


class H2:
    """A client HTTP/2 connection on a raw (or TLS) socket, driven by hand."""

    def __init__(self, srv, settings=None):
        self.sock = tcp(srv)
        if not srv.h2c:
            self.sock = tls_wrap(self.sock)
        self.conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        self.flush()
        self.events = []
        self.errors = []
        self.closed = False
        self.remote_settings = {}
        # Wait for the server's SETTINGS so its limits are known.
        self.pump(lambda: any(isinstance(e, h2.events.RemoteSettingsChanged) for e in self.events), 5)
        for e in self.events:
            if isinstance(e, h2.events.RemoteSettingsChanged):
                for k, v in e.changed_settings.items():
                    self.remote_settings[k] = v.new_value

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def pump(self, until, timeout, ack_data=True):
        """Reads and handles frames until until() is true, the connection
        closes or |timeout| s pass. Returns until()."""
        deadline = time.monotonic() + timeout
        while not until() and not self.closed and time.monotonic() < deadline:
            self.sock.settimeout(max(0.05, min(0.2, deadline - time.monotonic())))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
                data = b""
            if not data:
                self.closed = True
                break
            try:
                events = self.conn.receive_data(data)
            except h2.exceptions.ProtocolError as e:
                # The peer broke HTTP/2 (h2 has queued a GOAWAY): the
                # connection is over; the events of this read are lost.
                self.errors.append(e)
                self.closed = True
                events = []
            for e in events:
                self.events.append(e)
                if isinstance(e, h2.events.DataReceived) and ack_data:
                    self.conn.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
                if isinstance(e, h2.events.ConnectionTerminated):
                    self.closed = True
            try:
                self.flush()
            except OSError:
                self.closed = True
        return until()

    def request(self, path, body=b"", method="POST", content_type="application/grpc", extra=(), end=True):
        """Opens a stream; returns its id."""
        sid = self.conn.get_next_available_stream_id()
        headers = [(":method", method), (":scheme", "http"), (":path", path), (":authority", "localhost"),
                   ("te", "trailers")]
        if content_type is not None:
            headers.append(("content-type", content_type))
        headers += list(extra)
        self.conn.send_headers(sid, headers, end_stream=end and not body)
        if body:
            self.conn.send_data(sid, body, end_stream=end)
        self.flush()
        return sid

    def ended(self, sid):
        return any(isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset)) and e.stream_id == sid
                   for e in self.events)

    def result(self, sid):
        """(headers dict, body bytes, trailers dict, reset error code or None)."""
        hdrs, body, trailers, reset = {}, b"", {}, None
        for e in self.events:
            if getattr(e, "stream_id", None) != sid:
                continue
            if isinstance(e, h2.events.ResponseReceived):
                hdrs = {k.decode(): v.decode() for k, v in e.headers}
            elif isinstance(e, h2.events.TrailersReceived):
                trailers = {k.decode(): v.decode() for k, v in e.headers}
            elif isinstance(e, h2.events.DataReceived):
                body += e.data
            elif isinstance(e, h2.events.StreamReset):
                reset = e.error_code
        return hdrs, body, trailers, reset

    def call(self, path, body=b"", timeout=5, **kw):
        sid = self.request(path, body, **kw)
        self.pump(lambda: self.ended(sid), timeout)
        return self.result(sid)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def grpc_status(hdrs, trailers):
    """grpc-status of a response: from the trailers, or from the headers of
    a trailers-only response."""
    v = trailers.get("grpc-status", hdrs.get("grpc-status"))
    return int(v) if v is not None else None


def health_ok(srv):
    """A normal Health Check on a new connection answers SERVING."""
    st = vpptest.health_status(srv, CERTS, timeout=10)
    assert st == S.health_pb2.HealthCheckResponse.SERVING, "health status %s" % st


def rejected(srv, reasons):
    if srv.kind != "vppd":
        return 0
    m = srv.metrics()
    return sum(m.rejected(r) for r in reasons)


def bad_case(r, name, srv, reasons, fn):
    """Runs probe |fn|, then checks that vpp_grpc_rejected_total for one of
    |reasons| grew and that the server still answers a Health Check."""

    def run():
        before = rejected(srv, reasons)
        fn(srv)
        if srv.kind == "vppd":
            m = vpptest.wait_metric(srv, lambda m: sum(m.rejected(x) for x in reasons) > before, 5)
            now = sum(m.rejected(x) for x in reasons)
            assert now > before, "vpp_grpc_rejected_total{reason=%s} did not grow (%s)" % ("|".join(reasons), now)
        health_ok(srv)

    r.case(name, run)


# ------------------------------------------------------------------ probes


def p_tls_garbage(srv):
    s = tcp(srv)
    try:
        s.sendall(b"\x00\x01garbage, not a TLS ClientHello\r\n\r\n" + bytes(range(256)))
        _, closed = read_until_closed(s, 5)
        assert closed, "connection still open 5 s after garbage on the TLS port"
    finally:
        s.close()


def p_tls_no_alpn(srv):
    # gRPC over TLS is h2 by ALPN: a client that offers no ALPN speaks
    # something else, and is closed after the handshake.
    ctx = ssl.create_default_context(cafile=CERTS.ca)
    s = ctx.wrap_socket(tcp(srv), server_hostname="localhost")
    try:
        assert s.selected_alpn_protocol() is None
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        _, closed = read_until_closed(s, 5)
        assert closed, "connection without ALPN still open 5 s later"
    finally:
        s.close()


def p_tls_records_split(srv):
    """TLS records cut across TCP segments (the handshake in pieces, a
    request one byte per segment) and many tiny records in one segment make
    a normal call: the server reassembles records across reads and reads
    every record of one read."""
    ctx = ssl.create_default_context(cafile=CERTS.ca)
    ctx.set_alpn_protocols(["h2"])
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(inc, out, server_hostname="localhost")
    sock = tcp(srv)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def bytewise(data):
        for i in range(len(data)):
            sock.sendall(data[i:i + 1])
            time.sleep(0.0005)

    def in_pieces(data):
        # Record headers and bodies cut across reads, quickly enough for
        # the server's handshake timeout on a loaded machine.
        for a, b in ((0, 3), (3, 64), (64, len(data))):
            if data[a:b]:
                sock.sendall(data[a:b])
                time.sleep(0.01)

    def recv_into_tls():
        chunk = sock.recv(65536)
        assert chunk, "server closed the connection"
        inc.write(chunk)

    try:
        sock.settimeout(5)
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                in_pieces(out.read())
                recv_into_tls()
        in_pieces(out.read())  # the client's Finished
        assert tls.selected_alpn_protocol() == "h2"
        conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        data = conn.data_to_send()
        for i in range(0, len(data), 5):  # one TLS record per 5 bytes
            tls.write(data[i:i + 5])
        sock.sendall(out.read())  # all of them in one segment
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, [(":method", "POST"), (":scheme", "https"), (":path", "/grpc.health.v1.Health/Check"),
                                (":authority", "localhost"), ("te", "trailers"),
                                ("content-type", "application/grpc")])
        conn.send_data(sid, grpc_frame(S.health_pb2.HealthCheckRequest().SerializeToString()), end_stream=True)
        tls.write(conn.data_to_send())
        bytewise(out.read())  # one record, one byte per segment
        body, trailers, deadline = b"", {}, time.monotonic() + 5
        while not trailers and time.monotonic() < deadline:
            recv_into_tls()
            plain = b""
            try:
                while True:
                    plain += tls.read(65536)
            except ssl.SSLWantReadError:
                pass
            for e in conn.receive_data(plain):
                if isinstance(e, h2.events.DataReceived) and e.stream_id == sid:
                    body += e.data
                    conn.acknowledge_received_data(e.flow_controlled_length, sid)
                if isinstance(e, h2.events.TrailersReceived) and e.stream_id == sid:
                    trailers = {k.decode(): v.decode() for k, v in e.headers}
            pending = conn.data_to_send()
            if pending:
                tls.write(pending)
                sock.sendall(out.read())
        assert trailers.get("grpc-status") == "0", "trailers %r" % trailers
        resp = S.health_pb2.HealthCheckResponse.FromString(body[5:])
        assert resp.status == S.health_pb2.HealthCheckResponse.SERVING, resp
    finally:
        sock.close()


def p_bad_preface(srv):
    s = tcp(srv)
    try:
        s.sendall(bytes(range(255, 0, -1)) + b"\x00" * 64)
        # The server may have sent its SETTINGS (and a GOAWAY) before it
        # closes; what matters is that it closes.
        _, closed = read_until_closed(s, 5)
        assert closed, "connection still open 5 s after a bad preface"
    finally:
        s.close()


def p_http1(srv):
    s = tcp(srv)
    try:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n")
        data, closed = read_until_closed(s, 5)
        # Either an HTTP/1.1 error response, or HTTP/2 frames (SETTINGS,
        # GOAWAY) from a server that spoke first; then the close.
        if data.startswith(b"HTTP/1."):
            code = int(data.split(b" ", 2)[1])
            assert 400 <= code < 600, "HTTP/1.1 request answered %d" % code
        assert closed, "connection still open 5 s after an HTTP/1.1 request"
    finally:
        s.close()


def p_http1_tls_then_more(srv):
    """Over TLS: an HTTP/1.1 request followed at once by 150 KB more. The
    server stops reading when it decides to close; the records it had not
    yet decrypted must not turn into a TLS error (and an abrupt close that
    drops what it still had to send)."""
    s = tls_wrap(tcp(srv))
    try:
        try:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n" + b"x" * 150000)
        except (OSError, ssl.SSLError):
            pass  # the server closed while we were still sending: expected
        _, closed = read_until_closed(s, 5)
        assert closed, "connection still open 5 s after an HTTP/1.1 request"
        if srv.kind == "vppd":
            time.sleep(0.2)
            log = srv.proc.log_tail(50)
            assert "TLS read failed" not in log, log
    finally:
        s.close()

def p_content_type(srv):
    c = H2(srv)
    try:
        hdrs, _, trailers, reset = c.call("/vpp.v1.Echo/Unary", grpc_frame(b""), content_type="text/plain")
        assert hdrs.get(":status") == "415", "content-type text/plain answered %s %s reset=%s" % (hdrs, trailers,
                                                                                                  reset)
    finally:
        c.close()


def p_get(srv):
    c = H2(srv)
    try:
        hdrs, _, trailers, reset = c.call("/grpc.health.v1.Health/Check", method="GET")
        st = grpc_status(hdrs, trailers)
        ok = hdrs.get(":status") == "200" and st == 0
        assert not ok, "GET was served like a POST: %s %s" % (hdrs, trailers)
        assert hdrs or reset is not None, "GET: no response and no reset"
        if hdrs.get(":status") == "200":
            assert st not in (None, 0), "GET: HTTP 200 with grpc-status %s" % st
    finally:
        c.close()


def expect_status(srv, path, body, code, **kw):
    c = H2(srv)
    try:
        hdrs, _, trailers, reset = c.call(path, body, **kw)
        st = grpc_status(hdrs, trailers)
        assert hdrs.get(":status") == "200", "HTTP status %s (want 200 with grpc-status %d); reset=%s" % (
            hdrs.get(":status"), code, reset)
        assert st == code, "grpc-status %s (want %d), grpc-message %r" % (
            st, code, trailers.get("grpc-message", hdrs.get("grpc-message")))
        return hdrs, trailers
    finally:
        c.close()


def p_truncated(srv):
    body = struct.pack(">BI", 0, 100) + b"0123456789"
    expect_status(srv, "/vpp.v1.Echo/Unary", body, 13)


def p_too_large(srv):
    # Only the 5-byte prefix and a little data, stream left open: the answer
    # must come from the prefix alone, without buffering the claimed size.
    c = H2(srv)
    try:
        sid = c.request("/vpp.v1.Echo/Unary", struct.pack(">BI", 0, 4 * MiB + 1) + b"x" * 1000, end=False)
        c.pump(lambda: c.ended(sid), 5)
        hdrs, _, trailers, reset = c.result(sid)
        st = grpc_status(hdrs, trailers)
        assert st == 8, "grpc-status %s (want 8 RESOURCE_EXHAUSTED) for a 4 MiB + 1 prefix; headers %s reset %s" % (
            st, hdrs, reset)
    finally:
        c.close()


def p_unknown(srv):
    expect_status(srv, "/no.such.Service/Method", grpc_frame(b""), 12)
    expect_status(srv, "/vpp.v1.Echo/NoSuchMethod", grpc_frame(b""), 12)


def p_bad_message(srv):
    # Field 1 (string) claims 16 bytes and 3 follow: not an EchoRequest.
    expect_status(srv, "/vpp.v1.Echo/Unary", grpc_frame(b"\x0a\x10abc"), 3)


def p_gzip(srv):
    msg = S.echo_pb2.EchoRequest(message="compressed").SerializeToString()
    expect_status(srv, "/vpp.v1.Echo/Unary", grpc_frame(gzip.compress(msg), compressed=True), 12,
                  extra=[("grpc-encoding", "gzip")])


def p_big_headers(srv):
    c = H2(srv)
    try:
        adv = c.remote_settings.get(h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE)
        # The header list limit is the server's to enforce, not ours: send it anyway.
        sid = c.request("/grpc.health.v1.Health/Check", grpc_frame(b""), extra=[("x-big", "b" * 20000)])
        c.pump(lambda: c.ended(sid), 5)
        hdrs, _, trailers, reset = c.result(sid)
        # Refused one way or another: stream reset, connection closed, HTTP
        # 431, or RESOURCE_EXHAUSTED; never served.
        refused = (reset is not None or c.closed or hdrs.get(":status") == "431" or
                   grpc_status(hdrs, trailers) == 8)
        assert refused, "a 20 kB header list (limit %d, advertised %s) was answered %s %s" % (
            MAX_HEADER_BYTES, adv, hdrs, trailers)
    finally:
        c.close()


def p_too_many_streams(srv):
    c = H2(srv)
    try:
        adv = c.remote_settings.get(h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS)
        if srv.kind == "vppd":
            assert adv == MAX_STREAMS, "SETTINGS_MAX_CONCURRENT_STREAMS advertised %s, configured %d" % (
                adv, MAX_STREAMS)
        # Go past the advertised limit on purpose (h2 would refuse to).
        c.conn.remote_settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] = 1000
        c.conn.remote_settings.acknowledge()
        n = (adv or MAX_STREAMS) + 4
        sids = [c.request("/vpp.v1.Echo/Bidi", b"", end=False) for _ in range(n)]
        c.pump(lambda: sum(1 for s in sids if c.ended(s)) >= 4, 5)
        refused = [s for s in sids if c.result(s)[3] == REFUSED_STREAM]
        goaway = [e for e in c.events if isinstance(e, h2.events.ConnectionTerminated)]
        print("  too many streams: %d of %d refused with REFUSED_STREAM%s" % (
            len(refused), n, "; connection closed (GOAWAY %s)" % goaway[0].error_code if goaway else (
                "; connection closed" if c.closed else "")), flush=True)
        ends = {s: c.result(s) for s in sids if c.ended(s)}
        assert len(refused) >= 4 or c.closed, (
            "%d streams over a limit of %s: %d refused, connection open; ended: %s" %
            (n, adv, len(refused), {s: (grpc_status(h, t), rst) for s, (h, _, t, rst) in ends.items()}))
        if not c.closed:
            # The streams within the limit still work.
            first = sids[0]
            c.conn.send_data(first, grpc_frame(S.echo_pb2.EchoRequest(message="in limit").SerializeToString()))
            c.flush()
            c.pump(lambda: len(c.result(first)[1]) >= 5, 5)
            body = c.result(first)[1]
            assert len(body) >= 5, "stream within the limit got no answer"
            r = S.echo_pb2.EchoResponse.FromString(body[5:5 + struct.unpack(">I", body[1:5])[0]])
            assert r.message == "in limit", r
    finally:
        c.close()


def p_slow_reader(srv):
    # Opens a server stream of 100 x 1 MiB and never reads nor opens its
    # flow-control window; meanwhile another client must be served, and
    # vppd must not queue the 100 MiB in memory.
    c = H2(srv)
    peak = 0.0
    try:
        req = S.echo_pb2.EchoRequest(count=100, response_size=MiB).SerializeToString()
        c.request("/vpp.v1.Echo/ServerStream", grpc_frame(req))
        t_end = time.monotonic() + 3
        served = 0
        while time.monotonic() < t_end:
            if srv.kind == "vppd":
                peak = max(peak, srv.metrics().get("vpp_grpc_outbound_bytes", listener="api"))
            health_ok(srv)
            served += 1
            time.sleep(0.1)
        assert served >= 5, "only %d health checks served in 3 s next to a slow reader" % served
        assert peak < 16 * MiB, "outbound bytes reached %.1f MiB for a reader that never reads" % (peak / MiB)
        print("  slow reader: peak vpp_grpc_outbound_bytes %.0f bytes, %d health checks served" % (peak, served),
              flush=True)
    finally:
        c.close()
    if srv.kind == "vppd":
        # Once the slow reader is gone, its queued bytes are released.
        m = vpptest.wait_metric(srv, lambda m: m.get("vpp_grpc_outbound_bytes", listener="api") < MiB, 5)
        assert m.get("vpp_grpc_outbound_bytes", listener="api") < MiB, "outbound bytes not released after close"


def p_slow_reader_case(r, srv):
    # Counts as a case of its own: vppd may or may not close a slow reader
    # (reason slow_reader), so no rejection counter is required here.
    def run():
        p_slow_reader(srv)
        health_ok(srv)

    r.case("%s: client that never reads: outbound bytes bounded, others served" % label(srv), run)


def p_paused_streams_return_window(srv):
    # A client that reads nothing (stream window 0) makes the server's Bidi
    # echo fill its outbound queue and pause reading; what the client sent
    # meanwhile is held back from flow control. When the client then resets
    # the stream, those bytes must still be returned to the connection
    # window: 20 such streams (about 1 MiB held each) would otherwise use up
    # the 16 MiB connection window and stall every later call.
    c = H2(srv, settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
    try:
        chunk = grpc_frame(S.echo_pb2.EchoRequest(payload=b"x" * 60000).SerializeToString())
        for _ in range(20):
            sid = c.request("/vpp.v1.Echo/Bidi", end=False)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                if c.conn.local_flow_control_window(sid) >= len(chunk):
                    for i in range(0, len(chunk), 16384):
                        c.conn.send_data(sid, chunk[i:i + 16384])
                    c.flush()
                    continue
                # The server has paused (no window back) or is slow: wait.
                before = c.conn.local_flow_control_window(sid)
                c.pump(lambda: c.conn.local_flow_control_window(sid) > before, 0.3)
                if c.conn.local_flow_control_window(sid) <= before:
                    break
            c.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
            c.flush()
        # Give the server a moment to return what it held.
        c.pump(lambda: c.conn.outbound_flow_control_window > 8 * MiB, 2)
        win = c.conn.outbound_flow_control_window
        assert win > 8 * MiB, "connection window %d bytes after 20 paused streams ended" % win
        # And a call still works on this connection.
        sid = c.request("/vpp.v1.Echo/Unary", grpc_frame(S.echo_pb2.EchoRequest(message="hi").SerializeToString()))
        c.conn.increment_flow_control_window(1 << 20, sid)
        c.flush()
        c.pump(lambda: c.ended(sid), 5)
        hdrs, body, trailers, reset = c.result(sid)
        assert grpc_status(hdrs, trailers) == 0, (hdrs, trailers, reset)
    finally:
        c.close()


def silent_closed(sock, limit_ms, what):
    t0 = time.monotonic()
    _, closed = read_until_closed(sock, limit_ms / 1000.0 + 5)
    dt = time.monotonic() - t0
    assert closed, "%s: still open %.1f s later" % (what, dt)
    assert dt >= limit_ms / 1000.0 * 0.5, "%s: closed after %.2f s, before the %d ms timeout" % (what, dt, limit_ms)
    return dt


def p_silent_tcp(srv):
    s = tcp(srv)
    try:
        silent_closed(s, HANDSHAKE_MS, "TCP connection that sends nothing")
    finally:
        s.close()


def p_silent_tls(srv):
    s = tls_wrap(tcp(srv))
    try:
        silent_closed(s, HANDSHAKE_MS, "TLS connection that sends no preface")
    finally:
        s.close()


def p_silent_h2(srv):
    c = H2(srv)
    try:
        silent_closed(c.sock, IDLE_MS, "HTTP/2 connection with no stream")
    finally:
        c.close()


def p_partial_messages(srv):
    # Streams that each announce a 4 MiB message and send most of it, never
    # the end: vppd holds at most four such messages per connection (the
    # one past that is refused with RESOURCE_EXHAUSTED), not one per stream.
    c = H2(srv)
    try:
        sids = []
        piece = b"\0" * 16384
        for _ in range(6):
            sid = c.request("/vpp.v1.Echo/Unary", end=False)
            c.conn.send_data(sid, struct.pack(">BI", 0, 4 * MiB))
            sent = 0
            while sent < 3 * MiB:
                while c.conn.local_flow_control_window(sid) < len(piece) and not c.ended(sid):
                    c.pump(lambda: c.conn.local_flow_control_window(sid) >= len(piece) or c.ended(sid), 2)
                    if c.closed:
                        raise AssertionError("connection closed")
                if c.ended(sid):
                    break
                c.conn.send_data(sid, piece)
                c.flush()
                sent += len(piece)
            sids.append(sid)
        c.pump(lambda: any(c.ended(s) for s in sids), 3)
        statuses = [grpc_status(*c.result(s)[:1], c.result(s)[2]) for s in sids if c.ended(s)]
        assert 8 in statuses, "no stream refused with RESOURCE_EXHAUSTED: %s" % statuses
    finally:
        c.close()


def p_slow_headers(srv):
    # A HEADERS frame whose block never ends (no END_HEADERS, no
    # CONTINUATION): a stream that never starts must not hold the
    # connection open forever. Bytes of a PING keep the connection "alive".
    s = tcp(srv)
    if not srv.h2c:
        s = tls_wrap(s)
    try:
        settings = struct.pack(">I", 0)[1:] + bytes([4, 0]) + struct.pack(">I", 0)  # empty SETTINGS
        block = b"\x83\x86"  # :method POST, :scheme http (HPACK indexed)
        headers = struct.pack(">I", len(block))[1:] + bytes([1, 0]) + struct.pack(">I", 1) + block
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + settings + headers)
        t0 = time.monotonic()
        _, closed = read_until_closed(s, HANDSHAKE_MS / 1000.0 + 5)
        dt = time.monotonic() - t0
        assert closed, "connection with an unfinished header block still open %.1f s later" % dt
        assert dt >= HANDSHAKE_MS / 1000.0 * 0.5, "closed after %.2f s, before the timeout" % dt
    finally:
        s.close()


def p_refused_header_block(srv):
    # A header block nghttp2 refuses itself (a connection-specific header):
    # its stream is reset, and the connection lives on; the header timer
    # of that block must not close it later.
    before = rejected(srv, ["header_timeout"])
    c = H2(srv)
    try:
        c.conn.config.validate_outbound_headers = False
        c.conn.config.normalize_outbound_headers = False
        sid = c.request("/grpc.health.v1.Health/Check", end=False, extra=[("connection", "close")])
        c.pump(lambda: c.ended(sid), 3)
        assert c.result(sid)[3] is not None, "the stream with a connection header was not reset"
        # Past the header timeout, before the idle timeout (no stream left).
        assert IDLE_MS > HANDSHAKE_MS * 1.3
        c.pump(lambda: False, HANDSHAKE_MS / 1000.0 * 1.25)
        assert not c.closed, "connection closed after a refused header block"
        sid = c.request("/grpc.health.v1.Health/Check", grpc_frame(S.health_pb2.HealthCheckRequest().SerializeToString()))
        c.pump(lambda: c.ended(sid), 5)
        hdrs, body, trailers, reset = c.result(sid)
        assert grpc_status(hdrs, trailers) == 0, (hdrs, trailers, reset)
    finally:
        c.close()
    assert rejected(srv, ["header_timeout"]) == before, "counted as header_timeout"


def p_silent_preface_tls(srv):
    # TLS done, then no HTTP/2 preface: the handshake timeout covers it.
    s = tls_wrap(tcp(srv))
    try:
        t0 = time.monotonic()
        _, closed = read_until_closed(s, HANDSHAKE_MS / 1000.0 + 5)
        assert closed and time.monotonic() - t0 < HANDSHAKE_MS / 1000.0 + 1.0, \
            "no preface: closed=%s after %.1f s (handshake timeout %d ms, idle %d ms)" % (
                closed, time.monotonic() - t0, HANDSHAKE_MS, IDLE_MS)
    finally:
        s.close()


def p_server_deadline(srv):
    # A raw client does not enforce its own deadline: the server must end
    # the call at grpc-timeout with DEADLINE_EXCEEDED, long before the
    # requested 3 s delay.
    c = H2(srv)
    try:
        req = S.echo_pb2.EchoRequest(message="late", delay_ms=3000).SerializeToString()
        t0 = time.monotonic()
        sid = c.request("/vpp.v1.Echo/Unary", grpc_frame(req), extra=[("grpc-timeout", "300m")])
        c.pump(lambda: c.ended(sid), 5)
        dt = time.monotonic() - t0
        hdrs, body, trailers, reset = c.result(sid)
        st = grpc_status(hdrs, trailers)
        assert st == 4, "grpc-status %s (want 4 DEADLINE_EXCEEDED) after %.2f s; reset %s" % (st, dt, reset)
        assert 0.25 <= dt < 2.0, "DEADLINE_EXCEEDED after %.2f s for grpc-timeout 300m" % dt
        assert body == b"", "a response message came with DEADLINE_EXCEEDED"
    finally:
        c.close()


def p_h2_protocol(srv):
    # A DATA frame on stream 0 is a connection error (RFC 9113 6.1).
    c = H2(srv)
    try:
        c.sock.sendall(struct.pack(">I", 1)[1:] + b"\x00\x00" + struct.pack(">I", 0) + b"x")
        c.pump(lambda: False, 5)
        assert c.closed, "connection still open 5 s after DATA on stream 0"
        goaway = [e for e in c.events if isinstance(e, h2.events.ConnectionTerminated)]
        if goaway:
            assert goaway[0].error_code != 0, "GOAWAY with NO_ERROR for a protocol error"
    finally:
        c.close()


def p_keepalive(srv):
    # An open stream (so not idle) on a connection that stops reading, and
    # so never acknowledges the server's PINGs: closed after the keepalive.
    c = H2(srv)
    try:
        c.request("/vpp.v1.Echo/Bidi", b"", end=False)
        t0 = time.monotonic()
        # vppd waits 20 s for the PING ACK (gRPC's default keepalive timeout).
        _, closed = read_until_closed_no_ack(c, KEEPALIVE_MS / 1000.0 + KEEPALIVE_ACK_S + 5)
        dt = time.monotonic() - t0
        assert closed, "connection that ignores PINGs still open %.1f s later" % dt
        assert dt >= KEEPALIVE_MS / 1000.0, "closed after %.2f s, before the %d ms keepalive" % (dt, KEEPALIVE_MS)
    finally:
        c.close()


def read_until_closed_no_ack(c, timeout):
    """Reads raw bytes without handing them to h2, so nothing (PING ACKs
    included) is ever answered."""
    return read_until_closed(c.sock, timeout)


def p_keepalive_healthy(srv):
    # The same open stream on a client that answers PINGs stays up well
    # past the keepalive interval, and the stream still works.
    c = H2(srv)
    try:
        sid = c.request("/vpp.v1.Echo/Bidi", b"", end=False)
        c.pump(lambda: False, 4 * KEEPALIVE_MS / 1000.0)
        assert not c.closed, "a client answering PINGs was disconnected"
        pings = [e for e in c.events if isinstance(e, h2.events.PingReceived)]
        assert pings, "no PING from the server in %d ms with --grpc-keepalive-ms %d" % (4 * KEEPALIVE_MS, KEEPALIVE_MS)
        c.conn.send_data(sid, grpc_frame(S.echo_pb2.EchoRequest(message="alive").SerializeToString()))
        c.flush()
        c.pump(lambda: len(c.result(sid)[1]) >= 5, 5)
        body = c.result(sid)[1]
        assert len(body) >= 5, "the stream got no answer after the pings"
    finally:
        c.close()


def label(srv):
    return "h2c" if srv.h2c else "tls"


# ------------------------------------------------------------------ main


def body(r):
    global S, CERTS
    S = vpptest.stubs()
    CERTS = vpptest.make_certs()
    kind = os.environ.get("INTEROP_TARGET", "vppd")
    if kind == "python":
        tls = vpptest.start_echo_server(CERTS, name="py-tls")
        h2c = vpptest.start_echo_server(h2c=True, name="py-h2c",
                                        extra=["--max-concurrent-streams", str(MAX_STREAMS)])
    elif kind == "vppd":
        tls = vpptest.start_vppd(CERTS, extra=SERVER_FLAGS, name="vppd-tls")
        h2c = vpptest.start_vppd(h2c=True, extra=SERVER_FLAGS, name="vppd-h2c")
    else:
        raise RuntimeError("INTEROP_TARGET must be vppd or python, not %r" % kind)
    servers = (tls, h2c)
    r.on_fail.append(lambda: "\n".join("--- %s log (tail):\n%s" % (s.proc.name, s.proc.log_tail(12)) for s in servers))
    print("target: %s (%s)" % (kind, ", ".join("%s %s" % (s.proc.name, s.target) for s in servers)), flush=True)

    bad_case(r, "tls: garbage instead of a TLS handshake", tls, ["tls_handshake"], p_tls_garbage)
    bad_case(r, "tls: TCP connection that sends nothing", tls, ["handshake_timeout"], p_silent_tcp)
    bad_case(r, "tls: TLS handshake then silence", tls, ["handshake_timeout", "idle_timeout"], p_silent_tls)
    bad_case(r, "tls: unknown method over TLS", tls, ["unknown_method"], p_unknown)
    if kind == "vppd":
        bad_case(r, "tls: a client that offers no ALPN is closed", tls, ["tls_handshake"], p_tls_no_alpn)
    bad_case(r, "tls: HTTP/1.1 request and more data: closed without a TLS error", tls, ["http1"],
             p_http1_tls_then_more)
    r.case("tls: records split over 1-byte segments, many records in one segment", p_tls_records_split, tls)
    bad_case(r, "h2c: garbage instead of the HTTP/2 preface", h2c, ["bad_preface"], p_bad_preface)
    bad_case(r, "h2c: HTTP/1.1 request", h2c, ["http1"], p_http1)
    bad_case(r, "h2c: content-type text/plain -> 415", h2c, ["bad_content_type"], p_content_type)
    bad_case(r, "h2c: GET instead of POST", h2c, ["bad_method"], p_get)
    bad_case(r, "h2c: truncated gRPC frame -> INTERNAL", h2c, ["truncated_message"], p_truncated)
    bad_case(r, "h2c: length prefix over the limit -> RESOURCE_EXHAUSTED", h2c, ["message_too_large"], p_too_large)
    bad_case(r, "h2c: unknown service and method -> UNIMPLEMENTED", h2c, ["unknown_method"], p_unknown)
    bad_case(r, "h2c: unparsable EchoRequest -> INVALID_ARGUMENT", h2c, ["bad_message"], p_bad_message)
    bad_case(r, "h2c: gzip-compressed message -> UNIMPLEMENTED", h2c, ["unsupported_encoding"], p_gzip)
    bad_case(r, "h2c: header list over the limit", h2c, ["header_too_large"], p_big_headers)
    bad_case(r, "h2c: more streams than allowed are refused", h2c, ["too_many_streams"], p_too_many_streams)
    p_slow_reader_case(r, h2c)
    r.case("h2c: paused streams that end give their held bytes back to the connection window",
           p_paused_streams_return_window, h2c)
    bad_case(r, "h2c: TCP connection that sends nothing", h2c, ["handshake_timeout", "idle_timeout"], p_silent_tcp)
    bad_case(r, "h2c: preface and SETTINGS then silence", h2c, ["idle_timeout"], p_silent_h2)
    if kind == "vppd":
        bad_case(r, "h2c: a header block that never ends is closed", h2c, ["header_timeout"], p_slow_headers)
        bad_case(r, "h2c: partial messages on many streams are capped per connection", h2c,
                 ["message_too_large"], p_partial_messages)
        r.case("h2c: a header block refused by HTTP/2 rules resets its stream, not the connection",
               p_refused_header_block, h2c)
        bad_case(r, "tls: a header block that never ends is closed", tls, ["header_timeout"], p_slow_headers)
        bad_case(r, "tls: TLS then no HTTP/2 preface: closed at the handshake timeout", tls,
                 ["handshake_timeout"], p_silent_preface_tls)
    bad_case(r, "h2c: server enforces grpc-timeout -> DEADLINE_EXCEEDED", h2c, ["deadline_exceeded"],
             p_server_deadline)
    bad_case(r, "h2c: DATA on stream 0 -> connection error", h2c, ["h2_protocol"], p_h2_protocol)
    if kind == "python":
        ka = vpptest.start_echo_server(h2c=True, name="py-h2c-keepalive")
    else:
        ka = vpptest.start_vppd(h2c=True, name="vppd-h2c-keepalive",
                                extra=["--grpc-keepalive-ms", str(KEEPALIVE_MS), "--grpc-idle-timeout-ms", "0"])
    servers = (tls, h2c, ka)
    r.case("h2c: a client answering PINGs stays connected", p_keepalive_healthy, ka)
    bad_case(r, "h2c: a client that never answers PINGs is closed", ka, ["keepalive_timeout"], p_keepalive)
    for s in servers:
        r.case("%s: survived, exits 0 on SIGTERM" % s.proc.name, _clean_exit, s)


def _clean_exit(s):
    # Also where the sanitizer build reports leaks and errors (exit != 0).
    assert s.proc.alive(), "%s exited with %s during the probes" % (s.proc.name, s.proc.p.returncode)
    rc = s.proc.stop(timeout=15)
    assert rc == 0, "%s exited with %s after SIGTERM" % (s.proc.name, rc)


if __name__ == "__main__":
    vpptest.main(body, budget_s=170)
