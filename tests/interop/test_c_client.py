#!/usr/bin/python3
"""vpp's C gRPC client against Google's gRPC for Python: runs
$VPP_BUILD/tests/interop/echo_client against the reference server
tests/interop/echo_server.py over mutual TLS (client certificate required,
CN=operator) and over h2c, and adds up the cases it reports.

echo_client prints one line per case and ends with `N passed, N failed`; it
exits 0 iff all passed. Last line here: `N passed, N failed`.
"""

import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vpptest  # noqa: E402

SUMMARY = re.compile(r"^(\d+) passed, (\d+) failed$")


def run_client(r, label, exe, args, servers):
    """Runs echo_client once and adds its counts to |r|."""
    try:
        p = subprocess.run([exe] + args, capture_output=True, text=True, timeout=90)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode("utf-8", "replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        r.fail(label, "echo_client did not finish within 90 s; output so far:\n" + out[-3000:])
        return
    lines = p.stdout.rstrip("\n").splitlines()
    for line in lines[:-1]:
        print("  %s | %s" % (label, line), flush=True)
    m = SUMMARY.match(lines[-1].strip()) if lines else None
    if not m:
        r.fail(label, "echo_client exited %d without a `N passed, N failed` line; stdout:\n%s\nstderr:\n%s" %
               (p.returncode, p.stdout[-2000:], p.stderr[-2000:]))
        return
    passed, failed = int(m.group(1)), int(m.group(2))
    print("  %s | %s (exit %d)" % (label, lines[-1], p.returncode), flush=True)
    r.passed += passed
    r.failed += failed
    if failed:
        r.failures.append(label)
        print("  %s stderr (tail):\n%s" % (label, p.stderr[-2000:]), flush=True)
        for s in servers:
            print("  --- %s log (tail):\n%s" % (s.proc.name, s.proc.log_tail(15)), flush=True)
    if (p.returncode == 0) != (failed == 0):
        r.fail(label, "exit status %d disagrees with `%s`" % (p.returncode, lines[-1]))
    if passed + failed == 0:
        r.fail(label, "echo_client ran no case")


def body(r):
    exe = os.path.join(vpptest.build_dir(), "tests", "interop", "echo_client")
    if not os.path.exists(exe):
        r.fail("echo_client", "%s does not exist: the C interop client is not built" % exe)
        return
    certs = vpptest.make_certs()
    # echo_client's "4 MiB message" case sends a payload of exactly 4 MiB,
    # whose serialized EchoRequest is a few bytes over the default limit.
    big = 8 * 1024 * 1024
    mtls = vpptest.start_echo_server(certs, client_ca=True, require_client_cert=True, max_message_bytes=big,
                                     name="py-mtls")
    h2c = vpptest.start_echo_server(h2c=True, max_message_bytes=big, name="py-h2c")
    run_client(r, "echo_client mTLS", exe,
               ["--target", mtls.target, "--ca", certs.ca, "--cert", certs.operator, "--key", certs.operator_key,
                "--server-name", "localhost", "--expect-identity", "operator"], [mtls])
    run_client(r, "echo_client h2c", exe, ["--target", h2c.target, "--h2c"], [h2c])


if __name__ == "__main__":
    vpptest.main(body, budget_s=170)
