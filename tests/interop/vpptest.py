"""Shared helpers for the interop tests (run with /usr/bin/python3, which has
Debian's grpcio, grpc-tools and h2).

What lives here: free-port picking, python stubs generated at test time from
proto/, dev certificates (deploy/local/certs.sh, or the openssl CLI the same
way while that script does not exist), starting and stopping vppd and the
reference echo_server.py, reading /metrics from vppd's admin port, and a tiny
test-case runner that prints PASS/FAIL per case and ends with the line
`N passed, N failed`.

Every child process started here is killed when the test process dies
(PR_SET_PDEATHSIG) and stopped by Proc.stop() / cleanup_all(), so a failing
or timed-out test leaves nothing running.
"""

import ctypes
import importlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request

# grpc core logs expected failures (refused handshakes) on stderr as errors;
# the tests report what matters. Must be set before grpc is imported.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.environ.get("VPP_ROOT") or os.path.dirname(os.path.dirname(HERE))
PYTHON = "/usr/bin/python3"

# ---------------------------------------------------------------- basics


def free_port():
    """A loopback TCP port that was free a moment ago (bind port 0, close)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def wait_port(port, timeout, proc=None):
    """Waits until 127.0.0.1:|port| accepts TCP connections. Raises if |proc|
    exits first or |timeout| seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("process exited with %s before port %d opened" % (proc.returncode, port))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("port %d did not open within %.0f s" % (port, timeout))


def build_dir():
    """The meson build directory under test (env VPP_BUILD, absolute)."""
    b = os.environ.get("VPP_BUILD")
    if not b:
        raise RuntimeError("env VPP_BUILD (absolute path of a meson build dir) is not set")
    return os.path.abspath(b)


_tmpdirs = []


def tempdir(prefix="vpp-interop-"):
    """A temp dir removed by cleanup_all()."""
    d = tempfile.mkdtemp(prefix=prefix)
    _tmpdirs.append(d)
    return d


# ---------------------------------------------------------------- stubs

_stubs = None


class Stubs:
    pass


def stubs():
    """Generates the python modules for echo.proto and health.proto into a
    temp dir (once per process) and returns them as attributes echo_pb2,
    echo_pb2_grpc, health_pb2, health_pb2_grpc.

    Each proto is compiled with its own folder as the include path so the
    modules come out flat (echo_pb2.py, health_pb2.py): compiling health.proto
    as grpc/health/v1/health.proto would create a package named `grpc` that
    shadows grpcio's. The proto packages, and so the method paths on the wire
    (/vpp.v1.Echo/Unary, /grpc.health.v1.Health/Check), are unchanged."""
    global _stubs
    if _stubs is not None:
        return _stubs
    # A child (echo_server.py) reuses its parent's stubs: faster start, and
    # nothing left behind if it is killed.
    out = os.environ.get("VPP_STUBS_DIR")
    if not out or not os.path.exists(os.path.join(out, "health_pb2_grpc.py")):
        out = _gen_stubs()
        os.environ["VPP_STUBS_DIR"] = out
    sys.path.insert(0, out)
    s = Stubs()
    for m in ("echo_pb2", "echo_pb2_grpc", "health_pb2", "health_pb2_grpc"):
        setattr(s, m, importlib.import_module(m))
    _stubs = s
    return s


_vpp_stubs = None


def vpp_stubs():
    """Generates the python modules of proto/vpp/v1 (common, device, grid)
    once per process, importable as vpp.v1.*, and returns them as attributes
    common_pb2, device_pb2, device_pb2_grpc, grid_pb2, grid_pb2_grpc."""
    global _vpp_stubs
    if _vpp_stubs is not None:
        return _vpp_stubs
    out = tempdir("vpp-v1-stubs-")
    inc = os.path.join(ROOT, "proto")
    r = subprocess.run([PYTHON, "-m", "grpc_tools.protoc", "-I", inc, "--python_out=" + out,
                        "--grpc_python_out=" + out] +
                       ["vpp/v1/%s.proto" % n for n in ("common", "device", "grid")],
                       cwd=inc, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError("protoc vpp/v1 failed: %s" % r.stderr)
    sys.path.insert(0, out)
    s = Stubs()
    for m in ("common_pb2", "device_pb2", "device_pb2_grpc", "grid_pb2", "grid_pb2_grpc"):
        setattr(s, m, importlib.import_module("vpp.v1." + m))
    _vpp_stubs = s
    return s


def _gen_stubs():
    out = tempdir("vpp-stubs-")
    for folder, name in (("proto/vpp/v1", "echo.proto"), ("proto/grpc/health/v1", "health.proto")):
        inc = os.path.join(ROOT, folder)
        r = subprocess.run([PYTHON, "-m", "grpc_tools.protoc", "-I", inc, "--python_out=" + out,
                    "--grpc_python_out=" + out, os.path.join(inc, name)],
                   capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError("protoc %s failed: %s" % (name, r.stderr))
    return out


# ---------------------------------------------------------------- certs

CERT_FILES = ("ca.pem", "ca.key", "server.pem", "server.key", "operator-ca.pem", "operator-ca.key",
          "operator.pem", "operator.key", "device-ca.pem", "device-ca.key",
          "devices/dev-00000.pem", "devices/dev-00000.key")


def _openssl(*args, cwd):
    r = subprocess.run(["openssl"] + list(args), cwd=cwd, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError("openssl %s: %s" % (" ".join(args), r.stderr.strip()))


def _make_ca(d, name, cn):
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", name + ".key", cwd=d)
    _openssl("req", "-x509", "-new", "-key", name + ".key", "-sha256", "-days", "3650", "-subj",
         "/CN=" + cn, "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", name + ".pem", cwd=d)


def _make_leaf(d, name, cn, ca, ext):
    extfile = os.path.join(d, name.replace("/", "_") + ".ext")
    with open(extfile, "w") as f:
        f.write(ext)
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", name + ".key", cwd=d)
    _openssl("req", "-new", "-key", name + ".key", "-subj", "/CN=" + cn, "-out", name + ".csr", cwd=d)
    _openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
         "-CAcreateserial", "-sha256", "-days", "825", "-extfile", extfile, "-out", name + ".pem", cwd=d)
    os.unlink(os.path.join(d, name + ".csr"))
    os.unlink(extfile)


def _make_certs_openssl(d):
    """Same layout and key type as deploy/local/certs.sh (EC P-256, SHA-256)."""
    os.makedirs(os.path.join(d, "devices"), exist_ok=True)
    _make_ca(d, "ca", "vpp dev CA")
    _make_leaf(d, "server", "localhost", "ca",
           "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
           "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n")
    client = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"
    _make_ca(d, "operator-ca", "vpp operator CA")
    _make_leaf(d, "operator", "operator", "operator-ca", client)
    _make_ca(d, "device-ca", "vpp device CA")
    _make_leaf(d, "devices/dev-00000", "dev-00000", "device-ca", client)


class Certs:
    """Paths of the dev certificates: ca (server CA), server/server_key,
    operator_ca, operator/operator_key (CN=operator, signed by the operator CA),
    device/device_key (CN=dev-00000, signed by the device CA: a client
    certificate from a CA the operator API does not trust)."""

    def __init__(self, d):
        self.dir = d
        p = lambda n: os.path.join(d, n)
        self.ca, self.server, self.server_key = p("ca.pem"), p("server.pem"), p("server.key")
        self.operator_ca = p("operator-ca.pem")
        self.operator, self.operator_key = p("operator.pem"), p("operator.key")
        self.device, self.device_key = p("devices/dev-00000.pem"), p("devices/dev-00000.key")

    def read(self, name):
        with open(getattr(self, name), "rb") as f:
            return f.read()


def make_certs():
    """Creates dev certificates in a temp dir with deploy/local/certs.sh when
    it exists, else with the openssl CLI in the same layout."""
    d = tempdir("vpp-certs-")
    script = os.path.join(ROOT, "deploy/local/certs.sh")
    if os.path.exists(script):
        r = subprocess.run(["bash", script, d, "--devices", "1"], capture_output=True, text=True,
                   timeout=120)
        if r.returncode != 0:
            raise RuntimeError("certs.sh failed (%d): %s" % (r.returncode, r.stderr[-2000:]))
    else:
        _make_certs_openssl(d)
    for f in CERT_FILES:
        if not os.path.exists(os.path.join(d, f)):
            raise RuntimeError("certificate file %s missing after generation" % f)
    return Certs(d)


# ---------------------------------------------------------------- processes

_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent():
    # PR_SET_PDEATHSIG: the child gets SIGKILL if the test process dies,
    # even by SIGKILL from a runner's timeout.
    _libc.prctl(1, signal.SIGKILL, 0, 0, 0)


_procs = []


class Proc:
    """A child process whose stdout+stderr go to a log file."""

    def __init__(self, name, argv, env=None):
        self.name = name
        self.argv = argv
        self.log_path = os.path.join(tempdir("vpp-log-"), name + ".log")
        self._log = open(self.log_path, "wb")
        self.p = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                      env=env, preexec_fn=_die_with_parent)
        _procs.append(self)

    def alive(self):
        return self.p.poll() is None

    def signal(self, sig):
        if self.alive():
            self.p.send_signal(sig)

    def wait(self, timeout):
        """Returns the exit status, or None if still running after |timeout|."""
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout=10):
        """SIGTERM, then SIGKILL after |timeout| s. Returns the exit status."""
        if self.alive():
            self.p.send_signal(signal.SIGTERM)
            if self.wait(timeout) is None:
                self.p.kill()
                self.p.wait()
        self._log.close()
        return self.p.returncode

    def log_tail(self, n=40):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])


class Server:
    """A gRPC server under test: vppd or echo_server.py.

    port: the API port; admin: admin port or None (python has none);
    h2c: cleartext; kind: "vppd" or "python"."""

    def __init__(self, kind, proc, port, admin, h2c):
        self.kind, self.proc, self.port, self.admin, self.h2c = kind, proc, port, admin, h2c

    @property
    def target(self):
        return "127.0.0.1:%d" % self.port

    def stop(self):
        return self.proc.stop()

    def metrics(self):
        """The parsed /metrics of vppd, or None for the python server."""
        if self.admin is None:
            return None
        return read_metrics(self.admin)


def start_vppd(certs=None, h2c=False, operator_ca=False, extra=(), name="vppd", timeout=30):
    """Starts $VPP_BUILD/server/vppd with the Echo service on a free API port
    (TLS with |certs|, or h2c), a free admin port, and no device port; waits
    until both ports accept connections."""
    exe = os.path.join(build_dir(), "server", "vppd")
    if not os.path.exists(exe):
        raise RuntimeError("%s does not exist (build it first)" % exe)
    port, admin = free_port(), free_port()
    argv = [exe, "--api-addr", "127.0.0.1", "--api-port", str(port), "--device-port", "0",
        "--admin-port", str(admin), "--enable-echo", "--io-threads", "2"]
    if h2c:
        argv.append("--api-h2c")
    else:
        argv += ["--tls-cert", certs.server, "--tls-key", certs.server_key]
        if operator_ca:
            argv += ["--operator-ca", certs.operator_ca]
    argv += list(extra)
    env = dict(os.environ)
    # ASan: report leaks and errors but do not let a leak at exit change the
    # exit status the graceful-shutdown test checks; UBSan: fail loudly.
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    proc = Proc(name, argv, env=env)
    srv = Server("vppd", proc, port, admin, h2c)
    try:
        wait_port(port, timeout, proc.p)
        wait_port(admin, timeout, proc.p)
        # Health says SERVING only once vppd is ready (/readyz): wait for
        # that, so the first case does not race start-up.
        wait_serving(srv, certs, timeout)
    except Exception as e:
        proc.stop()
        raise RuntimeError("%s did not start: %s\n%s" % (name, e, proc.log_tail()))
    return srv


def health_status(srv, certs, timeout=5):
    """The status of grpc.health.v1.Health/Check("") on a new connection to
    |srv| (an int of HealthCheckResponse.ServingStatus)."""
    import grpc
    S = stubs()
    opts = [("grpc.use_local_subchannel_pool", 1)]
    if srv.h2c:
        ch = grpc.insecure_channel(srv.target, options=opts)
    else:
        opts.append(("grpc.ssl_target_name_override", "localhost"))
        ch = grpc.secure_channel(srv.target, grpc.ssl_channel_credentials(certs.read("ca")), options=opts)
    try:
        return S.health_pb2_grpc.HealthStub(ch).Check(S.health_pb2.HealthCheckRequest(), timeout=timeout).status
    finally:
        ch.close()


def wait_serving(srv, certs, timeout):
    """Waits until /readyz answers 200 and Health/Check says SERVING."""
    deadline = time.monotonic() + timeout
    why = "not ready"
    while time.monotonic() < deadline:
        if not srv.proc.alive():
            raise RuntimeError("exited with %s while starting" % srv.proc.p.returncode)
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/readyz" % srv.admin, timeout=2) as r:
                ready = r.status == 200
        except urllib.error.HTTPError as e:
            ready, why = False, "/readyz %d: %s" % (e.code, e.read(200).decode("utf-8", "replace").strip())
        except OSError as e:
            ready, why = False, "/readyz: %s" % e
        if ready:
            try:
                st = health_status(srv, certs, timeout=2)
                if st == stubs().health_pb2.HealthCheckResponse.SERVING:
                    return
                why = "Health/Check status %d" % st
            except Exception as e:
                why = "Health/Check: %s" % e
        time.sleep(0.05)
    raise RuntimeError("not serving within %.0f s (%s)" % (timeout, why))


def start_echo_server(certs=None, h2c=False, client_ca=False, require_client_cert=False, max_message_bytes=None,
                      name="echo_server", timeout=60, extra=()):
    """Starts the reference python server tests/interop/echo_server.py."""
    port = free_port()
    argv = [PYTHON, os.path.join(HERE, "echo_server.py"), "--port", str(port)]
    if h2c:
        argv.append("--h2c")
    else:
        argv += ["--cert", certs.server, "--key", certs.server_key]
        if client_ca:
            argv += ["--client-ca", certs.operator_ca]
        if require_client_cert:
            argv.append("--require-client-cert")
    if max_message_bytes:
        argv += ["--max-message-bytes", str(max_message_bytes)]
    argv += list(extra)
    proc = Proc(name, argv)
    try:
        wait_port(port, timeout, proc.p)
    except Exception:
        proc.stop()
        raise RuntimeError("%s did not start: %s" % (name, proc.log_tail()))
    return Server("python", proc, port, None, h2c)


def cleanup_all():
    """Stops every child and removes every temp dir this process made."""
    for p in reversed(_procs):
        try:
            p.stop(timeout=5)
        except Exception:
            pass
    del _procs[:]
    for d in reversed(_tmpdirs):
        shutil.rmtree(d, ignore_errors=True)
    del _tmpdirs[:]


# ---------------------------------------------------------------- metrics

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\S+)?$')
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


def parse_metrics(text):
    """Parses Prometheus text format into a list of (name, {labels}, value)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        labels = {}
        if m.group(3):
            for lm in _LABEL.finditer(m.group(3)):
                labels[lm.group(1)] = lm.group(2).replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
        try:
            v = float(m.group(4))
        except ValueError:
            continue
        out.append((m.group(1), labels, v))
    return out


class Metrics:
    def __init__(self, samples, text):
        self.samples, self.text = samples, text

    def get(self, name, **labels):
        """Sum of the samples of |name| whose labels include |labels| (0 when
        there is none: a counter not yet incremented may be absent)."""
        total = 0.0
        for n, ls, v in self.samples:
            if n == name and all(ls.get(k) == str(val) for k, val in labels.items()):
                total += v
        return total

    def has(self, name):
        """Whether a sample of |name| is exposed at all (so that a check of
        its value is not vacuously true)."""
        return any(n == name for n, _, _ in self.samples)

    def rejected(self, reason):
        return self.get("vpp_grpc_rejected_total", listener="api", reason=reason)


def read_metrics(admin_port, timeout=5):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % admin_port, timeout=timeout) as r:
        text = r.read().decode("utf-8", "replace")
    return Metrics(parse_metrics(text), text)


def wait_metric(server, fn, timeout=5.0):
    """Polls vppd's /metrics until fn(Metrics) is true; returns the last
    Metrics. Metrics are updated on the I/O threads, a moment after the
    client sees the effect."""
    deadline = time.monotonic() + timeout
    while True:
        m = server.metrics()
        if fn(m) or time.monotonic() > deadline:
            return m
        time.sleep(0.05)


# ---------------------------------------------------------------- runner


class Runner:
    """Runs test cases, prints `PASS name (0.12 s)` / `FAIL name: why`, and
    finish() prints `N passed, N failed` as the last line."""

    def __init__(self, budget_s=170):
        self.passed = 0
        self.failed = 0
        self.failures = []
        self.on_fail = []  # callables returning text shown after a failure (logs)
        self._start = time.monotonic()
        self.budget_s = budget_s

    def case(self, name, fn, *args, **kwargs):
        t0 = time.monotonic()
        if t0 - self._start > self.budget_s:
            self.fail(name, "not run: the script's time budget of %d s is spent" % self.budget_s)
            return False
        try:
            fn(*args, **kwargs)
        except Exception as e:
            detail = "%s: %s" % (type(e).__name__, e)
            if not isinstance(e, AssertionError):
                detail += "\n" + traceback.format_exc(limit=6)
            self.fail(name, detail, time.monotonic() - t0)
            return False
        self.passed += 1
        print("PASS %s (%.2f s)" % (name, time.monotonic() - t0), flush=True)
        return True

    def fail(self, name, why, dt=0.0):
        self.failed += 1
        self.failures.append(name)
        print("FAIL %s (%.2f s): %s" % (name, dt, why), flush=True)
        for f in self.on_fail:
            try:
                t = f()
                if t:
                    print("  | " + t.replace("\n", "\n  | "), flush=True)
            except Exception:
                pass

    def finish(self):
        print("%d passed, %d failed" % (self.passed, self.failed), flush=True)
        return 0 if self.failed == 0 and self.passed > 0 else 1


def main(body, budget_s=170):
    """Runs body(runner) with cleanup on every exit path (exceptions, SIGTERM,
    SIGINT, the time budget) and exits with the runner's status; the last
    line printed is always `N passed, N failed`."""
    r = Runner(budget_s)

    def on_term(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)

    signal.signal(signal.SIGTERM, on_term)
    def on_alarm(signum, frame):
        raise TimeoutError("script time limit reached")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(budget_s + 20)
    rc = 1
    try:
        body(r)
    except BaseException as e:
        r.fail("script", "%s: %s\n%s" % (type(e).__name__, e, traceback.format_exc(limit=8)))
    finally:
        signal.alarm(0)
        try:
            cleanup_all()
        except BaseException:
            pass
        sys.stdout.flush()
        sys.stderr.flush()
        rc = r.finish()
    os._exit(rc)


def grpc_code(n):
    import grpc
    for c in grpc.StatusCode:
        if c.value[0] == n:
            return c
    raise ValueError("no grpc status code %d" % n)


def json_lines(text):
    """Parses the JSON log lines in |text| (vppd's stderr), skipping others."""
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


class Listener:
    """A loopback TCP listener: each connection is handed to |on_conn(sock)|
    on the accepting thread (hand long work to threads of its own)."""

    def __init__(self, on_conn):
        self.on_conn = on_conn
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(16)
        self.port = self.ls.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            self.on_conn(c)

    def close(self):
        self.ls.close()


def pump(src, dst):
    """Copies |src| to |dst| until either ends, then closes both."""
    try:
        while True:
            d = src.recv(65536)
            if not d:
                break
            dst.sendall(d)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()


def relay(a, b):
    """Relays |a| and |b| both ways, on two threads."""
    for x, y in ((a, b), (b, a)):
        threading.Thread(target=pump, args=(x, y), daemon=True).start()
