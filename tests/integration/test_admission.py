#!/usr/bin/env python3
"""Admission control on the device port (--device-handshakes-per-s): a burst
of new connections far over the rate is paced, not dropped: connections
within two seconds' worth of the rate wait (unread, no TLS work) and their
handshakes complete in order at the rate; only those beyond that are
refused cheaply and counted as vpp_grpc_rejected_total{reason="admission"}.
Also the open-file limit: raised to the hard limit at start, and
connections beyond it refused, counted and logged. Uses real TLS handshakes (Python's ssl module) with a device certificate."""
import os
import socket
import ssl
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "interop"))
import vpptest as vt  # noqa: E402

RATE = 10      # handshakes per second, one I/O loop
BURST = 40     # connections opened at once


def start(certs, rate=RATE):
    port, admin = vt.free_port(), vt.free_port()
    p = lambda n: os.path.join(certs, n)
    argv = [os.path.join(vt.build_dir(), "server", "vppd"), "--api-port", str(vt.free_port()), "--api-h2c",
            "--device-port", str(port), "--device-addr", "127.0.0.1", "--tls-cert", p("server.pem"),
            "--tls-key", p("server.key"), "--device-ca", p("device-ca.pem"), "--admin-port", str(admin),
            "--io-threads", "1", "--device-handshakes-per-s", str(rate)]
    proc = vt.Proc("vppd", argv)
    vt.wait_port(port, 30, proc.p)
    vt.wait_port(admin, 30, proc.p)
    return proc, port, admin


def handshake(ctx, port, t0, out, i):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
            with ctx.wrap_socket(s, server_hostname="localhost") as t:
                out[i] = ("ok", time.monotonic() - t0, t.selected_alpn_protocol())
    except (OSError, ssl.SSLError) as e:
        out[i] = ("refused", time.monotonic() - t0, type(e).__name__)


def test_burst_is_paced_not_dropped(certs):
    proc, port, admin = start(certs)
    ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.pem"))
    ctx.load_cert_chain(os.path.join(certs, "devices", "dev-00000.pem"),
                        os.path.join(certs, "devices", "dev-00000.key"))
    ctx.set_alpn_protocols(["h2"])
    # Spend the burst allowance first, then let the bucket stay empty.
    out = [None] * BURST
    t0 = time.monotonic()
    threads = [threading.Thread(target=handshake, args=(ctx, port, t0, out, i)) for i in range(BURST)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    ok = sorted(x[1] for x in out if x and x[0] == "ok")
    refused = [x for x in out if x and x[0] == "refused"]
    assert all(x is not None for x in out), out
    # One loop: a burst of max(rate/4, 1) = 2 at once, 2 s x 10/s = 20 wait.
    assert 20 <= len(ok) <= 25, (len(ok), out)
    assert len(refused) == BURST - len(ok), out
    assert all(x[2] == "h2" for x in out if x[0] == "ok"), out
    # Paced: the waiting ones finish about 1/RATE apart, not all at once.
    assert ok[-1] >= 1.5, ok
    assert ok[-1] <= 6, ok
    m = vt.read_metrics(admin)
    assert m.get("vpp_grpc_rejected_total", listener="device", reason="admission") == len(refused), out
    assert proc.p.poll() is None
    # Once the storm is over, a new connection is served at once.
    time.sleep(1)
    late = [None]
    t1 = time.monotonic()
    handshake(ctx, port, t1, late, 0)
    assert late[0][0] == "ok" and late[0][1] < 1, late
    proc.stop()


def test_silent_clients_do_not_hold_turns(certs):
    """Connections that never send a ClientHello take a handshake turn each
    (64 per loop at once), but only for half a second: a real device behind
    100 of them is still served quickly, not after their handshake timeout."""
    proc, port, admin = start(certs, rate=0)
    ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.pem"))
    ctx.load_cert_chain(os.path.join(certs, "devices", "dev-00000.pem"),
                        os.path.join(certs, "devices", "dev-00000.key"))
    ctx.set_alpn_protocols(["h2"])
    silent = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(100)]
    time.sleep(0.2)
    out = [None]
    handshake(ctx, port, time.monotonic(), out, 0)
    assert out[0][0] == "ok", out
    assert out[0][1] < 3, out
    m = vt.read_metrics(admin)
    assert (m.get("vpp_grpc_rejected_total", listener="device", reason="admission") or 0) == 0
    for s in silent:
        s.close()
    assert proc.p.poll() is None
    proc.stop()


def device_ctx(certs):
    ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.pem"))
    ctx.load_cert_chain(os.path.join(certs, "devices", "dev-00000.pem"),
                        os.path.join(certs, "devices", "dev-00000.key"))
    ctx.set_alpn_protocols(["h2"])
    return ctx


def test_flood_from_one_address_does_not_keep_others_out(certs):
    """One address (127.0.0.2) opens silent connections five times faster
    than the handshake rate, keeping the wait full. Devices from another
    address (127.0.0.1) still get in, each within a few turns: turns go
    round the addresses, and a full wait makes room for a newcomer by
    refusing the flood's newest connection. In arrival order alone they
    were refused (the wait was full) or queued behind two seconds of
    flood."""
    proc, port, admin = start(certs)
    stop = threading.Event()
    held = []

    def flood():
        while not stop.is_set():
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.2", 0))
            try:
                s.connect(("127.0.0.1", port))
                held.append(s)
            except OSError:
                s.close()
            time.sleep(1.0 / (5 * RATE))

    t = threading.Thread(target=flood)
    t.start()
    try:
        time.sleep(2.5)  # the wait is full of the flood
        m = vt.read_metrics(admin)
        assert (m.get("vpp_grpc_rejected_total", listener="device", reason="admission") or 0) > 0, \
            "the flood never filled the wait"
        ctx = device_ctx(certs)
        for i in range(5):
            out = [None]
            handshake(ctx, port, time.monotonic(), out, 0)
            # A turn comes every 1/RATE s; ours is at most the second.
            assert out[0][0] == "ok" and out[0][1] < 1.0, (i, out)
            assert out[0][2] == "h2", out
    finally:
        stop.set()
        t.join(10)
        for s in held:
            s.close()
    assert proc.p.poll() is None
    proc.stop()


def client_hello(certs):
    """The bytes of a TLS ClientHello, as a device would send them first."""
    ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.pem"))
    ctx.set_alpn_protocols(["h2"])
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    t = ctx.wrap_bio(inc, out, server_hostname="localhost")
    try:
        t.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def test_gone_clients_cost_no_handshake(certs):
    """A client that gives up while it waits for its turn (closes its
    connection) is dropped without TLS work and counted as client_gone,
    without spending a turn of the rate: a device behind five of them is
    served about as soon as if they had never come."""
    proc, port, admin = start(certs, rate=2)
    hello = client_hello(certs)
    first = socket.create_connection(("127.0.0.1", port), timeout=5)
    first.sendall(hello)  # takes the one token of the burst
    gone = []
    for _ in range(5):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(hello)
        gone.append(s)
    time.sleep(0.2)
    for s in gone:
        s.close()  # these give up while waiting
    ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.pem"))
    ctx.load_cert_chain(os.path.join(certs, "devices", "dev-00000.pem"),
                        os.path.join(certs, "devices", "dev-00000.key"))
    ctx.set_alpn_protocols(["h2"])
    out = [None]
    handshake(ctx, port, time.monotonic(), out, 0)
    # At 2/s the next token comes within 0.5 s; five turns spent on the
    # gone clients would make it ~3 s.
    assert out[0][0] == "ok" and out[0][1] < 1.5, out
    m = vt.read_metrics(admin)
    assert m.get("vpp_grpc_rejected_total", listener="device", reason="client_gone") == 5, m.text[-3000:]
    assert m.get("vpp_grpc_rejected_total", listener="device", reason="admission") == 0
    first.settimeout(2)
    assert len(first.recv(65536)) > 0, "the first client got no ServerHello"
    first.close()
    assert proc.p.poll() is None
    proc.stop()


def test_out_of_file_descriptors(certs):
    """vppd raises its soft open-file limit to the hard one and says when
    that caps the fleet; when its connections come near the limit it says
    so, once (libuv closes the ones past it without telling), /metrics shows
    process_open_fds against process_max_fds, and vppd serves again as soon
    as descriptors are free."""
    port, admin = vt.free_port(), vt.free_port()
    exe = os.path.join(vt.build_dir(), "server", "vppd")
    argv = ["sh", "-c", 'ulimit -S -n 32 && ulimit -H -n 128 && exec "$0" "$@"', exe,
            "--api-addr", "127.0.0.1", "--api-port", str(port), "--api-h2c", "--device-port", "0",
            "--admin-port", str(admin), "--io-threads", "1", "--enable-echo"]
    proc = vt.Proc("vppd-fd-limit", argv)
    near = "connections past the limit are refused"
    try:
        vt.wait_port(port, 30, proc.p)
        vt.wait_port(admin, 30, proc.p)
        with open("/proc/%d/limits" % proc.p.pid) as f:
            line = [x for x in f if x.startswith("Max open files")][0].split()
        assert line[3:5] == ["128", "128"], line
        m = vt.read_metrics(admin)
        assert m.get("process_max_fds") == 128, m.get("process_max_fds")
        in_use = m.get("process_open_fds")
        assert 0 < in_use < 64, in_use
        clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(30)]
        time.sleep(0.5)
        assert near not in proc.log_tail(400), "warned with %d descriptors in use" % (in_use + 30)
        clients += [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(110)]
        time.sleep(1)
        # The descriptors vppd keeps for itself are left: /metrics (the
        # admin endpoint) still answers while the clients hold on.
        m = vt.read_metrics(admin)
        assert (m.get("vpp_grpc_rejected_total", listener="api", reason="fd_limit") or 0) > 0, \
            "no connection refused for the descriptor reserve"
        closed = 0
        for c in clients:
            c.settimeout(0.05)
            try:
                if c.recv(100) == b"":
                    closed += 1
            except socket.timeout:
                pass  # open and waiting for our preface
            except ConnectionError:
                closed += 1
        assert closed > 0, "all 140 connections held open with a limit of 128"
        assert proc.p.poll() is None
        for c in clients:
            c.close()
        time.sleep(0.5)
        srv = vt.Server("vppd", proc, port, admin, h2c=True)
        st = vt.health_status(srv, None, timeout=10)
        assert st == vt.stubs().health_pb2.HealthCheckResponse.SERVING, st
        m = vt.read_metrics(admin)
        assert m.get("process_open_fds") < 64, m.get("process_open_fds")
        assert proc.p.poll() is None
    finally:
        proc.stop()
    log = proc.log_tail(400)
    assert "open-file limit 128 (hard 128)" in log, log
    warns = [x for x in log.splitlines() if near in x]
    assert len(warns) == 1, warns  # once, not once per connection


def body(r):
    certs = vt.tempdir("vpp-admission-certs-")
    out = subprocess.run(["bash", os.path.join(vt.ROOT, "deploy/local/certs.sh"), certs, "--devices", "1"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, "certs.sh: " + out.stderr[-2000:]
    r.case("a burst over the handshake rate is paced; only the excess is refused",
           test_burst_is_paced_not_dropped, certs)
    r.case("silent connections hold a handshake turn only briefly", test_silent_clients_do_not_hold_turns, certs)
    r.case("a flood of connections from one address does not keep other addresses out",
           test_flood_from_one_address_does_not_keep_others_out, certs)
    r.case("clients that give up while waiting are dropped without TLS work",
           test_gone_clients_cost_no_handshake, certs)
    r.case("out of file descriptors: the limit is raised and reported, then served again",
           test_out_of_file_descriptors, certs)


if __name__ == "__main__":
    vt.main(body, budget_s=120)
