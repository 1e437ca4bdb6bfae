#!/usr/bin/python3
"""Reference vpp.v1.Echo + grpc.health.v1.Health server on Google's gRPC for
Python, with the semantics vppd implements under --enable-echo. The interop
tests are validated against it, and the C client test uses it as its peer.

  echo_server.py --port P --h2c
  echo_server.py --port P --cert server.pem --key server.key
                 [--client-ca CA [--require-client-cert]] [--max-message-bytes N]
                 [--max-concurrent-streams N]

--port 0 picks a free port. Prints `listening on 127.0.0.1:PORT` once
serving. SIGTERM/SIGINT: graceful stop (in-flight calls get 5 s), exit 0.

Python's grpc cannot ask for a client certificate without also requiring it,
so with --client-ca alone the certificate is not requested (peer_identity is
always ""); add --require-client-cert for mutual TLS.
"""

import argparse
import os
import signal
import sys
import threading
from concurrent import futures

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vpptest  # noqa: E402

import grpc  # noqa: E402

S = vpptest.stubs()
pb = S.echo_pb2
hpb = S.health_pb2

CODES = {c.value[0]: c for c in grpc.StatusCode}

# Set on SIGTERM: Watch streams end and delays stop early.
shutting_down = threading.Event()


def call_done_event(context):
    """An Event set when the call ends (finished, cancelled, deadline)."""
    ev = threading.Event()
    if not context.add_callback(ev.set):
        ev.set()
    return ev


def sleep_ms(context, done, ms):
    """Sleeps |ms| unless the call ends first; returns False if it ended."""
    if ms > 0:
        done.wait(ms / 1000.0)
    return context.is_active()


def apply_metadata(context):
    """Echoes x-echo-initial in the initial metadata and x-echo-trailer in the
    trailers; returns the "key=value" list of x- request metadata, sorted."""
    md = context.invocation_metadata() or ()
    seen = []
    initial = []
    trailer = []
    for k, v in md:
        if isinstance(v, bytes):
            v = v.decode("latin-1")
        if not k.startswith("x-"):
            continue
        seen.append("%s=%s" % (k, v))
        if k == "x-echo-initial":
            initial.append((k, v))
        elif k == "x-echo-trailer":
            trailer.append((k, v))
    if initial:
        context.send_initial_metadata(initial)
    if trailer:
        context.set_trailing_metadata(trailer)
    return sorted(seen)


def peer_identity(context):
    auth = context.auth_context() or {}
    cn = auth.get("x509_common_name")
    return cn[0].decode("utf-8", "replace") if cn else ""


def fail(context, req):
    code = CODES.get(req.fail_with_code, grpc.StatusCode.UNKNOWN)
    context.abort(code, req.fail_with_message)


def pattern(n):
    """|n| bytes where byte i is i & 0xff."""
    return (bytes(range(256)) * (n // 256 + 1))[:n]


class Echo:
    def Unary(self, req, context):
        md = apply_metadata(context)
        done = call_done_event(context)
        if not sleep_ms(context, done, req.delay_ms):
            return pb.EchoResponse()
        if req.fail_with_code != 0:
            fail(context, req)
        return pb.EchoResponse(message=req.message, payload=req.payload, metadata=md,
                               peer_identity=peer_identity(context))

    def ServerStream(self, req, context):
        apply_metadata(context)
        done = call_done_event(context)
        payload = pattern(req.response_size)
        for i in range(req.count):
            if i > 0 and not sleep_ms(context, done, req.delay_ms):
                return
            if not context.is_active():
                return
            yield pb.EchoResponse(message=req.message, payload=payload, index=i)
        if req.fail_with_code != 0:
            fail(context, req)

    def ClientStream(self, it, context):
        apply_metadata(context)
        n = 0
        nbytes = 0
        last = ""
        for req in it:
            if req.fail_with_code != 0:
                fail(context, req)
            n += 1
            nbytes += len(req.payload)
            last = req.message
        return pb.EchoResponse(message=last, received_count=n, received_bytes=nbytes)

    def Bidi(self, it, context):
        apply_metadata(context)
        for i, req in enumerate(it):
            if req.fail_with_code != 0:
                fail(context, req)
            yield pb.EchoResponse(message=req.message, payload=req.payload, index=i)


class Health:
    def Check(self, req, context):
        if req.service != "":
            context.abort(grpc.StatusCode.NOT_FOUND, "unknown service %s" % req.service)
        return hpb.HealthCheckResponse(status=hpb.HealthCheckResponse.SERVING)

    def Watch(self, req, context):
        done = call_done_event(context)
        if req.service != "":
            yield hpb.HealthCheckResponse(status=hpb.HealthCheckResponse.SERVICE_UNKNOWN)
        else:
            yield hpb.HealthCheckResponse(status=hpb.HealthCheckResponse.SERVING)
        while not done.is_set():
            if shutting_down.is_set():
                yield hpb.HealthCheckResponse(status=hpb.HealthCheckResponse.NOT_SERVING)
                return
            done.wait(0.1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--addr", default="127.0.0.1")
    ap.add_argument("--h2c", action="store_true")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--client-ca")
    ap.add_argument("--require-client-cert", action="store_true")
    ap.add_argument("--max-message-bytes", type=int, default=4194304)
    ap.add_argument("--max-concurrent-streams", type=int, default=0, help="per connection (0: grpc default)")
    a = ap.parse_args()
    if not a.h2c and not (a.cert and a.key):
        ap.error("give --h2c or --cert and --key")

    opts = [
        ("grpc.max_receive_message_length", a.max_message_bytes),
        ("grpc.max_send_message_length", a.max_message_bytes),
        ("grpc.so_reuseport", 0),
    ]
    if a.max_concurrent_streams > 0:
        opts.append(("grpc.max_concurrent_streams", a.max_concurrent_streams))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=512), options=opts)
    S.echo_pb2_grpc.add_EchoServicer_to_server(Echo(), server)
    S.health_pb2_grpc.add_HealthServicer_to_server(Health(), server)
    addr = "%s:%d" % (a.addr, a.port)
    if a.h2c:
        port = server.add_insecure_port(addr)
    else:
        rd = lambda p: open(p, "rb").read()
        ca = rd(a.client_ca) if a.client_ca else None
        creds = grpc.ssl_server_credentials([(rd(a.key), rd(a.cert))], root_certificates=ca,
                                            require_client_auth=bool(ca and a.require_client_cert))
        port = server.add_secure_port(addr, creds)
    if port == 0:
        print("echo_server: cannot listen on %s" % addr, file=sys.stderr)
        return 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda s, f: stop.set())
    signal.signal(signal.SIGINT, lambda s, f: stop.set())
    server.start()
    print("listening on %s:%d" % (a.addr, port), flush=True)
    while not stop.wait(0.2):
        pass
    shutting_down.set()
    server.stop(grace=5).wait()
    return 0


if __name__ == "__main__":
    rc = main()
    vpptest.cleanup_all()
    sys.stdout.flush()
    os._exit(rc)
