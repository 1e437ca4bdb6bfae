#!/usr/bin/env python3
"""HAProxy in front of two vppd nodes (tests/integration/cluster.py, the
configuration from deploy/haproxy/gen-config.sh): 200 emulated batteries
connect through it and are spread over both nodes; when one node is killed
(kill -9) HAProxy's /readyz checks mark it down and every device reconnects
through HAProxy to the other; a node that hangs (SIGSTOP: its connections
stay open) is marked down too and its sessions are closed, so its devices
move without waiting for their own silence timeout; a restarted node is
back in rotation and takes the next devices. The operator API answers
through HAProxy throughout. A stand-in node shows what the checks' answers
do: 404 (vppd drains) keeps a node's sessions, 503 closes them. The nodes
run alone (no --cluster): what is tested is HAProxy's part; test_cluster.py
tests the cluster."""
import http.server
import os
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import cluster as cl  # noqa: E402  (puts tests/interop on the path)
import vpptest as vt  # noqa: E402

import grpc  # noqa: E402

N = 200
SPARE = 20
# Far below the devices' own silence timeout (45 s): only HAProxy's checks
# can move the devices of a hung node this fast.
MOVE_S = 20
GEN = os.path.join(vt.ROOT, "deploy/haproxy/gen-config.sh")
# How deploy/haproxy/haproxy.cfg was written (its --help says so too).
PROD_ARGS = ["--node", "node-1=10.0.0.11:7443:7444:9464", "--node", "node-2=10.0.0.12:7443:7444:9464",
             "--node", "node-3=10.0.0.13:7443:7444:9464"]


def config_checks():
    out = os.path.join(vt.tempdir("vpp-haproxy-cfg-"), "haproxy.cfg")
    r = subprocess.run(["bash", GEN] + PROD_ARGS + ["-o", out], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    with open(out) as f, open(os.path.join(vt.ROOT, "deploy/haproxy/haproxy.cfg")) as g:
        assert f.read() == g.read(), "deploy/haproxy/haproxy.cfg is not what gen-config.sh writes: regenerate it"
    r = subprocess.run([cl.haproxy_path(), "-c", "-f", out], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "WARNING" not in r.stdout + r.stderr, r.stdout + r.stderr
    r = subprocess.run(["bash", GEN, "--node", "bad"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "NAME=HOST:DEVICE:API:ADMIN" in r.stderr, (r.returncode, r.stderr)


def drain_semantics():
    """The checks' answers, from a stand-in node (a TCP sink for its
    traffic, an HTTP server for its /readyz): 404 (vppd drains) keeps the
    node's sessions but sends it no new ones; 503 takes it out and closes
    them."""
    code = [200]

    class Readyz(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(code[0] if self.path == "/readyz" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    hs = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Readyz)
    threading.Thread(target=hs.serve_forever, daemon=True).start()
    held = []
    sink = vt.Listener(held.append)
    dev, api, stats = cl.free_ports(3)
    cfg = os.path.join(vt.tempdir("vpp-haproxy-drain-"), "haproxy.cfg")
    r = subprocess.run(["bash", GEN, "--local", "--maxconn", "4096", "--check-inter-ms", "200", "--fall", "2",
                        "--rise", "2", "--device-bind", "127.0.0.1:%d" % dev, "--api-bind", "127.0.0.1:%d" % api,
                        "--stats-bind", "127.0.0.1:%d" % stats, "--node",
                        "standin=127.0.0.1:%d:%d:%d" % (sink.port, sink.port, hs.server_address[1]), "-o", cfg],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    hp = vt.Proc("haproxy-drain", [cl.haproxy_path(), "-db", "-f", cfg])
    clients = []
    try:
        vt.wait_port(stats, 10, hp.p)

        def state():
            row = cl.haproxy_server(stats, "standin")
            return row["status"], int(row["scur"] or 0)
        cl.wait_for(lambda: state()[0] == "UP", 10, "stand-in UP")
        clients += [socket.create_connection(("127.0.0.1", dev)) for _ in range(3)]
        cl.wait_for(lambda: state() == ("UP", 3), 5, "3 sessions on the stand-in")
        code[0] = 404
        cl.wait_for(lambda: state()[0] == "NOLB", 5, "stand-in NOLB on 404")
        time.sleep(0.5)
        assert state() == ("NOLB", 3), state()
        code[0] = 503
        cl.wait_for(lambda: state() == ("DOWN", 0), 5, "stand-in DOWN on 503, its sessions closed")
        for c in clients:
            c.settimeout(5)
            assert c.recv(1) == b"", "a session of a node marked down stayed open"
    finally:
        for c in clients + held:
            c.close()
        hp.stop()
        sink.close()
        hs.shutdown()


def body(r):
    r.case("deploy/haproxy/haproxy.cfg is gen-config.sh's output and haproxy -c accepts it", config_checks)
    r.case("a node answering /readyz 404 (draining) keeps its sessions, one answering 503 loses them",
           drain_semantics)
    c = cl.Cluster(nodes=2, devices=N, spare_devices=SPARE, cluster=False)
    r.on_fail.append(c.logs)
    try:
        c.start()
        run(r, c)
    finally:
        c.close()


def run(r, c):
    hx = c.haproxy
    n1, n2 = c.node(1), c.node(2)
    first = {}  # node id: devices online before the kill

    def checks_up():
        for n in c.nodes:
            for b in ("vppd_devices", "vppd_operators"):
                row = hx.server(n.id, b)
                assert row["status"] == "UP" and row["check_status"] == "L7OK" and row["check_code"] == "200", (
                    b, n.id, row["status"], row["check_status"], row["check_code"])

    r.case("HAProxy checks each node's /readyz on its admin port: both up", checks_up)

    def spread():
        on = c.wait_online(N, timeout=30)
        # leastconn over connections arriving together: about half each.
        assert all(v >= N // 4 for v in on.values()), on
        assert sum(on.values()) == N, on
        sess = {n.id: hx.sessions(n.id) for n in c.nodes}
        assert sess == on, (sess, on)
        first.update(on)
        print("  online per node: %s" % on, flush=True)

    if not r.case("the fleet connects through HAProxy to both nodes (leastconn)", spread):
        return

    def operator_through_haproxy():
        # Operators go round the nodes: each of two new connections reaches
        # one, and each answers for the devices it holds.
        got = sorted(c.operator().status().devices_online for _ in range(2))
        assert got == sorted(v for v in c.online().values()), (got, c.online())

    r.case("the operator API answers through HAProxy (round robin over the nodes)", operator_through_haproxy)

    def kill_one():
        t0 = time.monotonic()
        n2.kill()
        hx.wait_state(n2.id, "DOWN", timeout=10)
        t_down = time.monotonic() - t0
        cl.wait_for(lambda: n1.online() == N, MOVE_S, "all %d devices online on node-1" % N, interval=0.25)
        print("  node-2 down in HAProxy after %.1f s; all devices on node-1 after %.1f s" % (
            t_down, time.monotonic() - t0), flush=True)
        assert hx.sessions(n1.id) == N and hx.sessions(n2.id) == 0, (hx.sessions(n1.id), hx.sessions(n2.id))

    if not r.case("kill -9 of node-2: HAProxy marks it down, every device reconnects to node-1", kill_one):
        return

    def operator_after_kill():
        # Round robin would send every other new connection to node-2: the
        # checks took it out, so every one reaches node-1.
        for _ in range(4):
            assert c.operator().status(timeout=5).devices_online == N

    r.case("after the kill every operator connection through HAProxy reaches the live node", operator_after_kill)

    def restart():
        n2.start()
        hx.wait_state(n2.id, "UP", timeout=10)
        # node-2 holds nothing: leastconn gives it every new device, and no
        # stream moves off node-1.
        e = c.start_emulator(devices=SPARE, first_index=N, name="vpp-emulator-spare")
        cl.wait_for(lambda: n2.online() == SPARE, 20, "%d new devices on node-2" % SPARE, interval=0.25)
        time.sleep(1)
        assert n1.online() == N and n2.online() == SPARE, c.online()
        assert hx.sessions(n2.id) == SPARE, hx.sessions(n2.id)
        assert e.progress() and e.progress()["connected"] == SPARE, e.progress()

    if not r.case("a restarted node is back in rotation and takes the next devices (leastconn)", restart):
        return

    def hung_node():
        # node-1 holds 200 devices and stops answering anything; the kernel
        # keeps its connections open, so only HAProxy's checks can tell.
        t0 = time.monotonic()
        n1.pause()
        try:
            hx.wait_state(n1.id, "DOWN", timeout=15)
            t_down = time.monotonic() - t0
            cl.wait_for(lambda: n2.online() == N + SPARE, MOVE_S, "all %d devices on node-2" % (N + SPARE),
                        interval=0.25)
            print("  hung node-1 down in HAProxy after %.1f s; all devices on node-2 after %.1f s" % (
                t_down, time.monotonic() - t0), flush=True)
            assert time.monotonic() - t0 < 45, "the devices' silence timeout moved them, not HAProxy"
        finally:
            n1.resume()
        hx.wait_state(n1.id, "UP", timeout=15)

    r.case("a hung node (SIGSTOP) is marked down and its sessions closed: its devices move at once", hung_node)

    def ground_truth():
        rep = c.emulator.stop()
        spare = c.emulators[1].stop()
        ctr = rep["counters"]
        assert ctr["connected_at_end"] == N, ctr
        # node-2's devices moved once, then the whole fleet did.
        assert ctr["reconnects"] >= first[n2.id] + N, (ctr, first)
        assert spare["counters"]["connected_at_end"] == SPARE, spare["counters"]

    r.case("the emulators' reports: every device connected at the end, after its moves", ground_truth)


if __name__ == "__main__":
    vt.main(body, budget_s=120)
