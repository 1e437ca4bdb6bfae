#!/usr/bin/python3
"""Admin HTTP endpoint and vppd start-up, against the real vppd.

Starts $VPP_BUILD/server/vppd with only the admin endpoint enabled and checks
what an operator or a Prometheus scraper sees: each path, error statuses,
keep-alive, a stalled client not blocking others, bounded memory under many
half-open requests, clean exit on SIGTERM; plus --help and the validation of
bad settings from flags, environment and INI file.
Prints `N passed, N failed` as its last line."""

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

BUILD = os.environ.get("VPP_BUILD")
if not BUILD:
    print("VPP_BUILD is not set", file=sys.stderr)
    print("0 passed, 1 failed")
    sys.exit(1)
VPPD = os.path.join(BUILD, "server", "vppd")
ADMIN_TIMEOUT_S = 10  # VPP_ADMIN_TIMEOUT_MS in include/vpp/admin.h


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Vppd:
    """A vppd with only the admin endpoint; always killed on exit."""

    def __init__(self, tmp):
        self.port = free_port()
        self.log = open(os.path.join(tmp, "vppd-%d.log" % self.port), "w+")
        self.proc = subprocess.Popen(
            [VPPD, "--admin-port", str(self.port), "--api-port", "0", "--device-port", "0",
             "--journal-dir", os.path.join(tmp, "journal")],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=tmp)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("vppd exited with %d: %s" % (self.proc.returncode, self.output()))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("vppd admin port never opened: " + self.output())

    def output(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    def rss_kb(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")


def get(port, path, method="GET", headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request(method, path, headers=headers or {})
        r = c.getresponse()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()
    finally:
        c.close()


def raw(port, data, timeout=10):
    """Sends |data|, returns everything the server sends until it closes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk
    finally:
        s.close()


def status_of(resp):
    m = re.match(rb"HTTP/1\.1 (\d{3}) ", resp)
    return int(m.group(1)) if m else None


METRIC_LINE = re.compile(
    r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"]*"(,[a-zA-Z_][a-zA-Z0-9_]*="[^"]*")*\})?'
    r' (-?[0-9.e+-]+|NaN|\+Inf|-Inf)$')


def counter(body, name, labels):
    for line in body.decode().splitlines():
        if line.startswith(name + "{" + labels + "}"):
            return float(line.split()[-1])
    return 0.0


def test_paths(v):
    st, h, body = get(v.port, "/healthz")
    assert (st, body) == (200, b"ok\n"), (st, body)
    # The admin port opens before the rest of vppd: /readyz says so with a
    # 503 and a reason until the control loop has ticked.
    deadline = time.time() + 10
    while True:
        st, h, body = get(v.port, "/readyz")
        if (st, body) == (200, b"ready\n") or time.time() > deadline:
            break
        assert st == 503 and body.startswith(b"not ready: "), (st, body)
        time.sleep(0.05)
    assert (st, body) == (200, b"ready\n"), (st, body)
    st, h, body = get(v.port, "/metrics")
    assert st == 200, st
    assert h["content-type"].startswith("text/plain; version=0.0.4"), h["content-type"]
    text = body.decode()
    assert "# TYPE vpp_admin_requests_total counter" in text, text
    for line in text.splitlines():
        if line and not line.startswith("#"):
            assert METRIC_LINE.match(line), "not Prometheus text format: %r" % line
    # Scrapers append query strings; the path alone selects the handler.
    st, _, _ = get(v.port, "/metrics?x=1")
    assert st == 200, st


def test_metrics_count_requests(v):
    _, _, before = get(v.port, "/metrics")
    for _ in range(3):
        get(v.port, "/healthz")
    get(v.port, "/nope")
    _, _, after = get(v.port, "/metrics")
    lab = 'path="/healthz",code="200"'
    assert counter(after, "vpp_admin_requests_total", lab) - \
        counter(before, "vpp_admin_requests_total", lab) == 3, after.decode()
    lab = 'path="other",code="404"'
    assert counter(after, "vpp_admin_requests_total", lab) - \
        counter(before, "vpp_admin_requests_total", lab) == 1, after.decode()


def test_not_found_and_method(v):
    st, _, body = get(v.port, "/")
    assert st == 404, st
    st, _, _ = get(v.port, "/metricsX")
    assert st == 404, st
    st, h, _ = get(v.port, "/metrics", method="POST", headers={"Content-Length": "0"})
    assert st == 405 and h.get("allow") == "GET", (st, h)
    st, _, _ = get(v.port, "/healthz", method="DELETE")
    assert st == 405, st
    # A POST with a body: 405, and the server closes instead of parsing it.
    resp = raw(v.port, b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
    assert status_of(resp) == 405 and b"Connection: close" in resp, resp


def test_bad_requests(v):
    for req in [b"GARBAGE\r\n\r\n",
                b"GET /metrics HTTP/2.0\r\n\r\n",
                b"GET /metrics\r\n\r\n",
                b"GET  /metrics HTTP/1.1\r\n\r\n",
                b"GET /metrics HTTP/1.1\r\nNo colon here\r\n\r\n",
                b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
                b"GET /metrics HTTP/1.1\r\nX: a\x01b\r\n\r\n",
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"]:  # a TLS ClientHello
        resp = raw(v.port, req)
        assert status_of(resp) == 400, (req, resp)
        assert b"Connection: close" in resp, resp
    # Bare line feeds (not HTTP/1.1): refused at once, not after the read
    # timeout.
    for req in [b"GET /healthz HTTP/1.0\n\n", b"GET /healthz HTTP/1.1\r\nHost: x\n"]:
        t0 = time.monotonic()
        resp = raw(v.port, req, timeout=5)
        assert status_of(resp) == 400 and time.monotonic() - t0 < 2, (req, resp)
    # Oversized head: 400 and closed, even though the client keeps sending.
    big = b"GET /metrics HTTP/1.1\r\n" + b"X-Pad: " + b"a" * 20000 + b"\r\n\r\n"
    resp = raw(v.port, big)
    assert status_of(resp) == 400, resp[:200]
    st, _, _ = get(v.port, "/healthz")
    assert st == 200


def test_keep_alive(v):
    c = http.client.HTTPConnection("127.0.0.1", v.port, timeout=10)
    try:
        c.connect()
        sock = c.sock
        for path in ["/healthz", "/metrics", "/readyz", "/nope", "/healthz"]:
            c.request("GET", path)
            r = c.getresponse()
            r.read()
            assert r.status in (200, 404), r.status
            assert r.getheader("Connection") == "keep-alive"
            assert c.sock is sock, "connection was not kept alive"
    finally:
        c.close()
    # Pipelined requests are answered in order on one connection; the last
    # one asks to close.
    resp = raw(v.port, b"GET /healthz HTTP/1.1\r\n\r\nGET /readyz HTTP/1.1\r\n\r\n"
               b"GET /nope HTTP/1.1\r\nConnection: close\r\n\r\n")
    codes = [int(m) for m in re.findall(rb"HTTP/1\.1 (\d{3}) ", resp)]
    assert codes == [200, 200, 404], resp
    assert resp.index(b"ok\n") < resp.index(b"ready\n")
    # HTTP/1.0 without keep-alive: one response, then the server closes.
    resp = raw(v.port, b"GET /healthz HTTP/1.0\r\n\r\n")
    assert status_of(resp) == 200 and resp.endswith(b"ok\n"), resp


def test_stalled_client(v):
    s = socket.create_connection(("127.0.0.1", v.port), timeout=30)
    try:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: local")  # ... and nothing more
        t0 = time.time()
        for _ in range(20):
            st, _, _ = get(v.port, "/metrics")
            assert st == 200
        assert time.time() - t0 < 5, "scrapes were slowed by a stalled client"
        # The stalled request is answered 408 and closed after the timeout.
        out = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            out += chunk
        waited = time.time() - t0
        assert status_of(out) == 408, out
        assert ADMIN_TIMEOUT_S - 1 <= waited <= ADMIN_TIMEOUT_S + 5, waited
    finally:
        s.close()


def test_concurrent_scrapers(v):
    errors = []

    def scrape():
        try:
            c = http.client.HTTPConnection("127.0.0.1", v.port, timeout=20)
            for _ in range(20):
                c.request("GET", "/metrics")
                r = c.getresponse()
                body = r.read()
                if r.status != 200 or b"vpp_admin" not in body:
                    errors.append(r.status)
            c.close()
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=scrape) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:5]


def test_memory_bounded(v):
    """200 clients each hold a nearly full request head: memory stays
    bounded and everyone else is still served."""
    base = v.rss_kb()
    socks = []
    try:
        for _ in range(200):
            s = socket.create_connection(("127.0.0.1", v.port), timeout=10)
            s.sendall(b"GET /metrics HTTP/1.1\r\nX-Pad: " + b"a" * 8000)
            socks.append(s)
        time.sleep(0.5)
        st, _, _ = get(v.port, "/healthz")
        assert st == 200
        grown = v.rss_kb() - base
        assert grown < 16 * 1024, "RSS grew by %d KiB" % grown
        # More bytes than the cap on one of them: 400, closed.
        socks[0].sendall(b"a" * 1000)
        out = socks[0].recv(4096)
        assert status_of(out) == 400, out
    finally:
        for s in socks:
            s.close()


def test_sigterm(v):
    get(v.port, "/healthz")
    idle = socket.create_connection(("127.0.0.1", v.port), timeout=10)
    try:
        v.proc.send_signal(signal.SIGTERM)
        rc = v.proc.wait(timeout=10)
    finally:
        idle.close()
    assert rc == 0, (rc, v.output())
    assert '"stopped"' in v.output(), v.output()


def test_port_in_use(tmp):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    try:
        r = subprocess.run([VPPD, "--admin-port", str(s.getsockname()[1]), "--api-port", "0",
                            "--device-port", "0"], capture_output=True, text=True, timeout=30,
                           cwd=tmp)
    finally:
        s.close()
    assert r.returncode != 0, r
    assert "admin" in r.stderr, r.stderr


def test_second_vppd_on_the_same_port(tmp):
    """Listeners share their port with SO_REUSEPORT; a second vppd must not
    join them (the kernel would split the clients between two fleets)."""
    port = free_port()
    argv = [VPPD, "--api-port", str(port), "--api-h2c", "--device-port", "0", "--admin-port", "0"]
    first = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp)
    try:
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=tmp)
        assert r.returncode != 0, r
        assert "port is in use" in r.stderr, r.stderr
        assert first.poll() is None
    finally:
        first.terminate()
        first.wait(10)


def test_help(tmp):
    r = subprocess.run([VPPD, "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r
    for opt in ["--admin-port", "--admin-addr", "--api-port", "--device-port", "--config",
                "--io-threads", "--tls-cert", "--log-level", "VPP_ADMIN_PORT"]:
        assert opt in r.stdout, opt


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_invalid_settings(tmp):
    ini = os.path.join(tmp, "bad.ini")
    with open(ini, "w") as f:
        f.write("[admin]\nport = 99999\n")
    cases = [
        ([VPPD, "--admin-port", "70000"], {}, "admin-port"),
        ([VPPD, "--admin-port=-1"], {}, "admin-port"),
        ([VPPD], {"VPP_IO_THREADS": "abc"}, "io-threads"),
        ([VPPD, "--config", ini], {}, "admin-port"),
        ([VPPD, "--no-such-flag", "1"], {}, "no-such-flag"),
        ([VPPD, "--log-level", "loud"], {}, "log-level"),
        # Checked without a database-url too.
        ([VPPD, "--journal-fsync", "sometimes"], {}, "journal-fsync"),
        ([VPPD, "--api-addr", "db.example", "--api-h2c", "--admin-port", "0", "--device-port", "0",
          "--api-port"], {}, "not a numeric IPv4 or IPv6 address"),
        ([VPPD, "--db-reconnect-min-ms", "5000", "--db-reconnect-max-ms", "1000"], {}, "db-reconnect-max-ms"),
        # A lease shorter than two ticks could end before its renewal.
        ([VPPD, "--tick-ms", "6000", "--admin-port", "0"], {}, "lease-ms (10000) must be more than twice tick-ms"),
        ([VPPD, "--node-id", "a/b"], {}, "node-id"),
        ([VPPD, "--node-id", "n" * 41], {}, "node-id"),
    ]
    ports = ["--api-port", "0", "--device-port", "0"]
    port = str(free_port())
    # Two listeners on one port would split connections between them.
    cases += [
        ([VPPD, "--api-addr", "0.0.0.0", "--admin-port", "0", "--device-port", port, "--api-port"], {},
         "api-port and device-port are both %s" % port),
        ([VPPD, "--device-port", "0", "--api-port", port, "--admin-port"], {}, "api-port and admin-port are both"),
    ]
    for argv, env, name in cases:
        e = dict(os.environ)
        e.update(env)
        full = argv + [port] if argv[-1].endswith("-port") else argv + ports
        r = subprocess.run(full, capture_output=True, text=True, timeout=30, env=e, cwd=tmp)
        assert r.returncode != 0, (full, env, r)
        assert name in r.stderr, (full, env, r.stderr)


def main():
    passed = failed = 0
    with tempfile.TemporaryDirectory(prefix="vpp-admin-") as tmp:
        standalone = [test_help, test_invalid_settings, test_port_in_use, test_second_vppd_on_the_same_port]
        with_server = [test_paths, test_metrics_count_requests, test_not_found_and_method,
                       test_bad_requests, test_keep_alive, test_stalled_client,
                       test_concurrent_scrapers, test_memory_bounded, test_sigterm]
        for t in standalone:
            try:
                t(tmp)
                print("ok   %s" % t.__name__)
                passed += 1
            except Exception:  # noqa: BLE001
                print("FAIL %s\n%s" % (t.__name__, traceback.format_exc()))
                failed += 1
        v = None
        try:
            v = Vppd(tmp)
            for t in with_server:
                try:
                    t(v)
                    print("ok   %s" % t.__name__)
                    passed += 1
                except Exception:  # noqa: BLE001
                    print("FAIL %s\n%s" % (t.__name__, traceback.format_exc()))
                    failed += 1
            if failed:
                print("--- vppd output ---\n" + v.output()[-4000:])
        except Exception:  # noqa: BLE001
            print("FAIL start vppd\n%s" % traceback.format_exc())
            failed += len(with_server)
        finally:
            if v:
                v.kill()
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
