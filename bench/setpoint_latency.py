#!/usr/bin/env python3
"""Operator call -> first battery command: how long after SetFleetSetpoint is
called the first battery hears a setpoint for the new target (issue 15).

    VPP_BUILD=build /usr/bin/python3 bench/setpoint_latency.py [--nodes N]
        [--devices N] [--trials N] [--target KW]

--nodes 1 runs one vppd alone; --nodes N > 1 runs N nodes with --cluster
(the call goes to a follower: the setpoint travels through PostgreSQL to the
leader, which splits it and publishes the shares back). Either way the
nodes sit behind HAProxy (tests/integration/cluster.py) with an emulated
fleet of --devices batteries through it, and one probe battery of our own
(Google's gRPC for Python, mTLS; --probes per node, 4) connected straight to
each node: each reports the setpoint it was last given as its power, so it
tracks exactly and is always dispatched. A probe hears its command at its
place in its node's fan-out: the earliest probe samples the first command. Each trial sends +target or -target (alternating)
at a random moment within the control tick, and measures from just before
the call to the first probe setpoint whose sign matches: the first
command of the new target to leave any node. Prints p50 / p90 / p99 / max,
and the part of it until the tick that issued the command (its
server_time_ms): the rest is the fan-out to the sessions and the probe's
own receipt, on cores the emulator shares.
"""
import argparse
import os
import random
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import cluster as cl  # noqa: E402
import vpptest as vt  # noqa: E402
import test_device_sessions as tds  # noqa: E402


class Probe(tds.Device):
    """A battery that does exactly what it is told, and notes when."""

    def __init__(self, env, dev_id):
        self.heard = []  # (monotonic s, power_kw)
        self.power = 0.0
        self.dev_id = dev_id
        super().__init__(env, dev_id, ratings=dict(rated_charge_kw=50, rated_discharge_kw=50,
                                                   capacity_kwh=500, min_soc=0.0, max_soc=1.0,
                                                   ramp_kw_per_s=500))
        threading.Thread(target=self._report, daemon=True).start()

    def _read(self):
        try:
            for m in self.call:
                kind = m.WhichOneof("msg")
                if kind == "setpoint":
                    self.heard.append((time.monotonic(), m.setpoint.power_kw, time.time(),
                                       m.setpoint.server_time_ms))
                    self.power = m.setpoint.power_kw
                    self.q.put(self.d.DeviceMessage(ack=self.d.Ack(setpoint_seq=m.setpoint.seq, accepted=True)))
                elif kind == "ping":
                    self.q.put(self.d.DeviceMessage(pong=self.d.Pong(ping_id=m.ping.ping_id,
                                                                     device_time_ms=int(time.time() * 1000))))
        except Exception as e:  # noqa: BLE001 (said, then the probe is gone)
            self.status = getattr(e, "code", lambda: None)()
            self.details = getattr(e, "details", lambda: str(e))()

    def _report(self):
        while True:
            self.telemetry(power=self.power, soc=0.5)
            time.sleep(0.5)

    def first_after(self, t0, sign):
        """(monotonic s, vppd's tick time in Unix ms) of the first setpoint
        of |sign| heard from |t0| on; None before."""
        for t, p, _, issued in self.heard:
            if t >= t0 and p * sign > 0:
                return t, issued
        return None


class Env:
    def __init__(self, c, node):
        self.c = c
        self.device_port = node.device_port

    def read(self, name):
        with open(os.path.join(self.c.certs, name), "rb") as f:
            return f.read()


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=1)
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--target", type=float, default=300.0)
    ap.add_argument("--tick-ms", type=int, default=1000)
    ap.add_argument("--probes", type=int, default=4, help="probe batteries per node")
    a = ap.parse_args()
    os.environ.setdefault("VPP_BUILD", os.path.join(vt.ROOT, "build"))
    c = cl.Cluster(nodes=a.nodes, devices=a.devices, spare_devices=a.nodes * a.probes, cluster=a.nodes > 1,
                   vppd_args=["--tick-ms", str(a.tick_ms)])
    try:
        c.start()
        c.wait_online(int(a.devices * 0.98), timeout=120)
        probes = [Probe(Env(c, n), "dev-%05d" % (a.devices + i * a.probes + k))
                  for i, n in enumerate(c.nodes) for k in range(a.probes)]
        time.sleep(3)
        for p in probes:
            if not p.heard:
                raise RuntimeError("probe %s heard no setpoint: %s %s" % (p.dev_id, p.status, p.details))
        op = c.operator(c.nodes[-1])  # a follower, in a cluster (node-1 usually leads)
        lat, rpc, tick = [], [], []
        for i in range(a.trials):
            sign = 1 if i % 2 == 0 else -1
            time.sleep(2 + random.random() * a.tick_ms / 1000.0)
            t0, w0 = time.monotonic(), time.time()
            op.set(sign * a.target, valid_for_s=60, request_id="lat-%d-%f" % (i, time.time()))
            rpc.append(time.monotonic() - t0)
            deadline = t0 + 5
            first = None
            while first is None and time.monotonic() < deadline:
                hits = [h for h in (p.first_after(t0, sign) for p in probes) if h is not None]
                first = min(hits) if hits else None
                time.sleep(0.002)
            if first is None:
                print("trial %d: no command within 5 s" % i, flush=True)
                continue
            lat.append(first[0] - t0)
            tick.append(first[1] / 1000.0 - w0)
        ms = [x * 1000 for x in lat]
        print("nodes=%d devices=%d trials=%d tick=%d ms" % (a.nodes, a.devices, len(ms), a.tick_ms))
        print("call -> first command: p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms" % (
            pct(ms, 0.5), pct(ms, 0.9), pct(ms, 0.99), max(ms)))
        print("the call itself: p50 %.1f ms, max %.1f ms" % (pct(rpc, 0.5) * 1000, max(rpc) * 1000))
        tk = [x * 1000 for x in tick]
        print("call -> the tick that issued it (vppd's clock): p50 %.1f ms, p99 %.1f ms, max %.1f ms" % (
            pct(tk, 0.5), pct(tk, 0.99), max(tk)))
    finally:
        c.close()
        vt.cleanup_all()


if __name__ == "__main__":
    main()
