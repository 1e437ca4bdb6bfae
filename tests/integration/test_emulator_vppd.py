#!/usr/bin/python3
"""1,100 emulated batteries (vpp-emulator) against the real vppd over mTLS:
they connect, stream telemetry, receive and ack setpoints from an operator
target, and vppd's fleet tracks the target as the emulator's ground truth
sees it. Each fault kind is observed and handled (offline, flaky, ignore,
partial, late ack, malformed), and after vppd is killed and restarted the
devices reconnect with backoff and the fleet is whole again within 30 s.

Run: VPP_BUILD=/abs/build /usr/bin/python3 tests/integration/test_emulator_vppd.py
Last line: `N passed, N failed`.
"""
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "interop"))
import vpptest as vt  # noqa: E402

import grpc  # noqa: E402

N = 1100
TARGET_KW = 1000.0
LEASE_S = 14
FAULTS = dict(offline=0.02, flaky=0.02, ignore=0.03, partial=0.03, late_ack=0.02, malformed=0.01)
TOKEN = "emu-op-token"


def stubs():
    v = vt.vpp_stubs()
    return v.grid_pb2, v.grid_pb2_grpc


class Env:
    def __init__(self):
        self.dir = vt.tempdir("vpp-emucerts-")
        r = subprocess.run(["bash", os.path.join(vt.ROOT, "deploy/local/certs.sh"), self.dir, "--devices", str(N),
                            "--shared-key"], capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            raise RuntimeError("certs.sh: " + r.stderr[-2000:])
        self.tokens = os.path.join(self.dir, "tokens")
        with open(self.tokens, "w") as f:
            f.write("tester operator sha256:%s\n" % hashlib.sha256(TOKEN.encode()).hexdigest())
        self.device_port, self.api_port, self.admin = vt.free_port(), vt.free_port(), vt.free_port()
        self.vppd = None
        self.g, gg = stubs()
        self.ch = grpc.insecure_channel("127.0.0.1:%d" % self.api_port)
        self.op = gg.GridOperatorStub(self.ch)
        self.md = [("authorization", "Bearer " + TOKEN)]

    def p(self, n):
        return os.path.join(self.dir, n)

    def start_vppd(self, name="vppd"):
        exe = os.path.join(vt.build_dir(), "server", "vppd")
        argv = [exe, "--api-port", str(self.api_port), "--api-addr", "127.0.0.1", "--api-h2c",
                "--device-port", str(self.device_port), "--device-addr", "127.0.0.1",
                "--tls-cert", self.p("server.pem"), "--tls-key", self.p("server.key"),
                "--device-ca", self.p("device-ca.pem"), "--admin-port", str(self.admin), "--io-threads", "2",
                "--tokens-file", self.tokens]
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=0:abort_on_error=0")
        self.vppd = vt.Proc(name, argv, env=env)
        vt.wait_port(self.device_port, 30, self.vppd.p)
        vt.wait_port(self.admin, 30, self.vppd.p)

    def status(self):
        return self.op.GetFleetStatus(self.g.GetFleetStatusRequest(), metadata=self.md, timeout=5)

    def devices(self):
        out, token = [], ""
        while True:
            r = self.op.ListDevices(self.g.ListDevicesRequest(page_size=500, page_token=token), metadata=self.md,
                                    timeout=10)
            out += list(r.devices)
            token = r.next_page_token
            if not token:
                return out

    def wait_online(self, n, timeout):
        """Seconds until vppd counts |n| devices online, or None."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            try:
                if self.status().devices_online >= n:
                    return time.monotonic() - t0
            except grpc.RpcError:
                pass
            time.sleep(0.2)
        return None


def body(r):
    env = Env()
    env.start_vppd()
    r.on_fail.append(lambda: "vppd:\n" + env.vppd.log_tail(15))
    report = os.path.join(vt.tempdir("vpp-emureport-"), "report.json")
    exe = os.path.join(vt.build_dir(), "tools", "vpp-emulator")
    argv = [exe, "--server", "127.0.0.1:%d" % env.device_port, "--certs", env.dir, "--devices", str(N),
            "--report", report, "--threads", "2", "--seed", "11", "--progress-s", "5",
            "--flaky-period-s", "6", "--late-ack-ms", "2500", "--malformed-period-s", "5",
            "--clock-offset-ms", "2000"]
    for k, v in FAULTS.items():
        argv += ["--" + k.replace("_", "-"), str(v)]
    emu_env = dict(os.environ)
    emu_env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    emu = vt.Proc("vpp-emulator", argv, env=emu_env)
    r.on_fail.append(lambda: "emulator:\n" + emu.log_tail(10))
    expect_online = N - int(round(N * FAULTS["offline"])) - int(round(N * FAULTS["flaky"]))
    st = {}

    def connect():
        took = env.wait_online(expect_online, 60)
        assert took is not None, "vppd counts %d online, expected >= %d" % (env.status().devices_online,
                                                                            expect_online)
        st["connect_s"] = took
        print("  %d devices online after %.1f s" % (env.status().devices_online, took), flush=True)
    if not r.case("1,100 emulated devices connect over mTLS and are online in vppd", connect):
        return

    resp = env.op.SetFleetSetpoint(env.g.SetFleetSetpointRequest(target_kw=TARGET_KW, valid_for_s=LEASE_S,
                                                                 request_id="emu-1", reason="emulator test"),
                                   metadata=env.md, timeout=10)
    t_set = time.time()
    time.sleep(LEASE_S - 2)
    before = vt.read_metrics(env.admin)
    devs = env.devices()
    # A filter that matches few devices: each call examines at most 1,024
    # devices (the control loop runs these queries) and says where to go
    # on; following the tokens still finds every match.
    stale_pages = []
    token = ""
    for _ in range(5):
        rr = env.op.ListDevices(env.g.ListDevicesRequest(state=env.g.DEVICE_STATE_STALE, page_size=500,
                                                         page_token=token), metadata=env.md, timeout=10)
        stale_pages.append((len(rr.devices), rr.next_page_token, [d.device_id for d in rr.devices]))
        token = rr.next_page_token
        if not token:
            break
    time.sleep(6)  # past the lease end

    # Kill and restart vppd; devices reconnect with backoff.
    env.vppd.signal(signal.SIGKILL)
    env.vppd.wait(10)
    env.vppd.stop()
    time.sleep(1.0)
    env.start_vppd("vppd-restarted")
    st["rejoin_s"] = env.wait_online(expect_online, 30)
    time.sleep(2)
    emu.signal(signal.SIGTERM)
    rc = emu.wait(30)
    emu.stop()
    with open(report) as f:
        rep = json.load(f)
    faults = rep["faults"]
    secs = rep["seconds"]

    def tracking():
        assert resp.setpoint_id, resp
        steady = [s["true_kw"] for s in secs if t_set * 1000 + 5000 <= s["t_ms"] <= t_set * 1000 + (LEASE_S - 1) * 1000]
        assert len(steady) >= 5, secs
        for v in steady:
            assert abs(v - TARGET_KW) <= 0.05 * TARGET_KW, "true fleet power %.1f kW, target %.0f: %s" % (
                v, TARGET_KW, [round(x) for x in steady])
        after = [s["true_kw"] for s in secs if t_set * 1000 + (LEASE_S + 3) * 1000 <= s["t_ms"] <= t_set * 1000 + (LEASE_S + 5) * 1000]
        assert after and all(abs(v) < 0.02 * TARGET_KW for v in after), "after the lease: %s" % after
        c = rep["counters"]
        assert c["setpoints_received"] > 0 and c["acks_sent"] >= 0.97 * c["setpoints_received"], c
    r.case("fleet delivers the operator target (emulator ground truth, within 5%), 0 after the lease", tracking)

    def telemetry_lands():
        got = before.get("vpp_device_telemetry_total")
        assert got > 0.8 * N * 8, "vppd counted %d telemetry messages" % got
        assert before.get("vpp_device_acks_total") > 0
    r.case("telemetry and acks reach vppd", telemetry_lands)

    def filtered_paging():
        ids = sorted(d.device_id for d in devs)
        assert len(ids) > 1024, len(ids)
        assert len(stale_pages) == 2, stale_pages
        n1, tok1, _ = stale_pages[0]
        assert tok1 == ids[1023] and n1 < 500, (tok1, n1, ids[1023])  # stopped after 1,024
        assert stale_pages[1][1] == "", stale_pages  # the rest fits one window
        got = [i for _, _, page in stale_pages for i in page]
        assert got == sorted(got) and len(set(got)) == len(got), got

    r.case("a filtered ListDevices examines a bounded window per call; tokens go on from it", filtered_paging)

    def firmware_listed():
        connected = [d for d in devs if d.node_id]
        assert len(connected) >= expect_online, len(connected)
        assert all(d.firmware == "vpp-emulator/0.1" for d in connected), {d.firmware for d in connected}
    r.case("ListDevices shows the firmware each connected device named in its Hello", firmware_listed)

    def degraded():
        bad = set(faults["ignore"]) | set(faults["partial"])
        flagged = {d.device_id for d in devs if d.degraded}
        hit = len(bad & flagged)
        false = flagged - bad - set(faults["flaky"]) - set(faults["malformed"]) - set(faults["late_ack"])
        assert hit >= 0.8 * len(bad), "vppd flagged %d of %d ignore/partial devices" % (hit, len(bad))
        assert len(false) <= 0.02 * N, "healthy devices flagged degraded: %s" % sorted(false)[:10]
    r.case("ignore and partial devices are flagged degraded by vppd, healthy ones are not", degraded)

    def offline_malformed_late():
        seen = {d.device_id for d in devs}
        off = set(faults["offline"])
        assert off and not (off & seen), "offline devices known to vppd: %s" % sorted(off & seen)
        c = rep["counters"]
        assert c["malformed_sent"] >= 1 and c["malformed_rejected"] >= c["malformed_sent"] - len(faults["malformed"]), c
        assert rep["errors"]["INVALID_ARGUMENT"] >= c["malformed_rejected"], rep["errors"]
        assert rep["ack_latency_ms"]["max"] >= 2400, rep["ack_latency_ms"]
        assert c["late_acks_sent"] >= 1 and c["flaky_drops"] >= 1, c
    r.case("offline never seen; malformed refused with INVALID_ARGUMENT; late acks; flaky drops", offline_malformed_late)

    def restart():
        assert st["rejoin_s"] is not None, "fleet not whole 30 s after vppd restarted (%d online)" % (
            env.status().devices_online)
        print("  fleet whole %.1f s after restart" % st["rejoin_s"], flush=True)
        assert rep["counters"]["reconnects"] >= expect_online, rep["counters"]
        assert rc == 0, "emulator exit status %s" % rc
        assert rep["stop_reason"] == "SIGTERM"
        assert secs[-1]["connected"] >= expect_online, secs[-1]
    r.case("vppd killed and restarted: devices reconnect with backoff, whole within 30 s", restart)


if __name__ == "__main__":
    vt.main(body, budget_s=200)
