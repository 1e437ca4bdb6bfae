#!/usr/bin/env python3
"""The system clock is stepped back a minute under a running vppd (libfaketime
moves CLOCK_REALTIME of vppd alone; its monotonic clock runs on): a battery
that is discharging on a setpoint keeps getting its lease renewed before it
ends, stays online and keeps its target, and vppd logs the step once.

Before vppd's clock slewed, the step made every lease look a minute longer:
renewals stopped for a minute, the battery's lease ran out (it fell back to
its local mode) while vppd counted it as delivering."""
import glob
import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "interop"))
import vpptest as vt  # noqa: E402
import test_device_sessions as tds  # noqa: E402

# Debian's libfaketime, wherever the architecture puts it.
FAKETIME = (glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1") + [""])[0]
LEASE_MS = 10000  # vppd's default --lease-ms


def body(r):
    if not FAKETIME:
        r.fail("libfaketime", "libfaketimeMT.so.1 is missing: run deploy/local/bootstrap.sh")
        return
    step_file = os.path.join(vt.tempdir("vpp-clock-"), "offset")
    with open(step_file, "w") as f:
        f.write("+0\n")
    env = dict(os.environ)
    env.update({
        "LD_PRELOAD": FAKETIME,
        "FAKETIME_TIMESTAMP_FILE": step_file,
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",  # only the wall clock steps
        "FAKETIME_CACHE_DURATION": "1",       # the file is read again every second
        # The sanitizer runtime wants to be loaded first; libfaketime only
        # wraps the clock calls.
        "ASAN_OPTIONS": (os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0").lstrip(":"),
    })
    e = tds.Env(proc_env=env, extra=["--tick-ms", "500"], name="vppd-clock")
    r.on_fail.append(lambda: e.proc.log_tail(30))
    dev = tds.Device(e, "dev-00000")
    assert dev.wait_for("welcome"), dev.kinds()
    stop = threading.Event()

    def report():
        p = 0.0
        while not stop.is_set():
            sps = [m for k, m in dev.got if k == "setpoint"]
            if sps:
                p = sps[-1].power_kw
            dev.telemetry(power=p, soc=0.6)
            time.sleep(0.5)

    feeder = threading.Thread(target=report, daemon=True)
    feeder.start()
    time.sleep(1.5)
    op, g, md = e.operator()
    op.SetFleetSetpoint(g.SetFleetSetpointRequest(target_kw=3, valid_for_s=300, request_id="clock-1"),
                        metadata=md, timeout=5)
    deadline = time.time() + 10
    while time.time() < deadline and not any(k == "setpoint" and m.power_kw > 2 for k, m in dev.got):
        time.sleep(0.1)
    # Every setpoint from here on, with the real time it arrived.
    seen = []
    n0 = len(dev.got)

    def watch():
        i = n0
        while not stop.is_set():
            while i < len(dev.got):
                k, m = dev.got[i]
                if k == "setpoint":
                    # Where the lease ends for the battery: it lasts
                    # valid_until - server_time from its arrival.
                    now = time.time() * 1000
                    seen.append((now, m.power_kw, now + m.valid_until_ms - m.server_time_ms,
                                 m.server_time_ms))
                i += 1
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    time.sleep(2)
    t_step = time.time() * 1000
    with open(step_file, "w") as f:
        f.write("-60\n")  # the wall clock goes back a minute
    time.sleep(25)
    t_end = time.time() * 1000
    stop.set()
    watcher.join(5)
    feeder.join(5)
    status = op.GetFleetStatus(g.GetFleetStatusRequest(), metadata=md, timeout=5)
    log = e.proc.log_tail(400)
    dev.close()
    e.proc.stop()

    def renewed():
        assert any(k == "setpoint" and m.power_kw > 2 for k, m in dev.got), dev.kinds()
        after = [x for x in seen if x[0] > t_step]
        assert after, "no setpoint in the 25 s after the step: %s" % seen
        # Each lease is renewed before it ends on the battery: no gap with
        # the battery in its local mode.
        held = [x for x in seen if x[0] <= t_step][-1:] + after
        for (t0, _, end, _), (t1, _, _, _) in zip(held, held[1:]):
            assert t1 < end, "a lease ended at %d, renewed only at %d (%s)" % (end, t1, held)
        assert held[-1][2] > t_end, held  # still holding at the end
        assert all(p > 2 for _, p, _, _ in after), after
        # vppd's clock did not jump back with the system's: it slews, a
        # tenth of a second per second at most.
        for t_recv, _, _, server in after:
            assert 0 <= t_recv - server <= 0.1 * (t_recv - t_step) + 1500, (t_recv - t_step, t_recv - server)

    r.case("after a 60 s backward step, leases are renewed before they end", renewed)

    def still_dispatched():
        assert status.devices_online == 1, status
        assert status.target_kw == 3, status

    r.case("the battery stays online with its target", still_dispatched)

    def logged():
        lines = [x for x in log.splitlines() if '"comp":"clock"' in x]
        assert len(lines) == 1, lines
        assert re.search(r"stepped by -(59|60)\d\d\d ms", lines[0]), lines

    r.case("the step is logged once", logged)


if __name__ == "__main__":
    vt.main(body, budget_s=120)
