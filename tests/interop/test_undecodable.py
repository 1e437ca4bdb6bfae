#!/usr/bin/python3
"""Request bodies that do not parse as their message, sent with Google's gRPC
for Python (identity serializers: the bytes go out as given) to every method
vppd serves: GridOperator, Health and Echo on the API port, DeviceLink on the
device port (mTLS). Each is refused with INVALID_ARGUMENT, also for the
methods whose request has no fields (GetFleetStatus, WatchFleet, ListNodes);
the same requests with valid unknown fields added (every wire type, groups
included, the largest field number) get the answer the plain request gets,
as protobuf's rules say; and vppd keeps serving throughout.

env VPP_BUILD: meson build dir holding server/vppd. Last line:
`N passed, N failed`.
"""

import hashlib
import os
import queue
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vpptest as vt  # noqa: E402

import grpc  # noqa: E402

TOKEN = "undecodable-operator-token"
MD = [("authorization", "Bearer " + TOKEN)]
ident = lambda b: b  # noqa: E731

# Bytes that are not a protobuf message, whatever its type.
BAD = {
    "wire type 7 (0f ff ff)": b"\x0f\xff\xff",
    "wire type 6": b"\x0e\x01",
    "field number 0": b"\x00\x01",
    "varint cut short": b"\x48\x80",
    "length past the end": b"\x4a\x05hi",
    "end-group without a start": b"\x4c",
    "group that never ends": b"\x4b\x08\x01",
    "field number 2^29": b"\x80\x80\x80\x80\x10\x00",
}
# Valid unknown fields of every wire type: varint (with the largest field
# number), fixed64, length-delimited, fixed32, and a group holding a field.
UNKNOWN = (b"\xf8\xff\xff\xff\x0f\x00" + b"\xb9\x06" + bytes(8) + b"\xba\x06\x03abc" +
           b"\xbd\x06\x01\x02\x03\x04" + b"\xbb\x06\x08\x01\xbc\x06")


def unary(ch, path, body, md=MD):
    """(status code, details) of a unary call with raw |body|."""
    try:
        ch.unary_unary(path, request_serializer=ident, response_deserializer=ident)(body, metadata=md, timeout=10)
        return grpc.StatusCode.OK, ""
    except grpc.RpcError as e:
        return e.code(), e.details()


def server_stream(ch, path, body, md=MD):
    """Status of a server-streaming call: OK once a first message came (the
    stream is then cancelled), else the error it ended with."""
    call = ch.unary_stream(path, request_serializer=ident, response_deserializer=ident)(body, metadata=md,
                                                                                        timeout=10)
    try:
        next(call)
        call.cancel()
        return grpc.StatusCode.OK, ""
    except StopIteration:  # ended without a message
        return call.code(), call.details()
    except grpc.RpcError as e:
        return e.code(), e.details()


def client_stream(ch, path, body, md=MD):
    try:
        ch.stream_unary(path, request_serializer=ident, response_deserializer=ident)(iter([body]), metadata=md,
                                                                                     timeout=10)
        return grpc.StatusCode.OK, ""
    except grpc.RpcError as e:
        return e.code(), e.details()


def bidi(ch, path, body, md=MD):
    call = ch.stream_stream(path, request_serializer=ident, response_deserializer=ident)(iter([body]), metadata=md,
                                                                                         timeout=10)
    try:
        for _ in call:
            pass
        return grpc.StatusCode.OK, ""
    except grpc.RpcError as e:
        return e.code(), e.details()


def body(r):
    S = vt.stubs()
    V = vt.vpp_stubs()
    g, d = V.grid_pb2, V.device_pb2
    # A device that reconnects again and again is throttled after 5 Hellos:
    # each DeviceLink case below uses devices of its own.
    cdir = vt.tempdir("vpp-undecodable-")
    rc = subprocess.run(["bash", os.path.join(vt.ROOT, "deploy/local/certs.sh"), cdir, "--devices", "24"],
                        capture_output=True, text=True, timeout=300)
    assert rc.returncode == 0, rc.stderr
    certs = vt.Certs(cdir)
    tokens = os.path.join(certs.dir, "tokens")
    with open(tokens, "w") as f:
        f.write("ops operator sha256:%s\n" % hashlib.sha256(TOKEN.encode()).hexdigest())
    api, dev, admin = vt.free_port(), vt.free_port(), vt.free_port()
    argv = [os.path.join(vt.build_dir(), "server", "vppd"), "--api-addr", "127.0.0.1", "--api-port", str(api),
            "--device-addr", "127.0.0.1", "--device-port", str(dev), "--admin-port", str(admin),
            "--tls-cert", certs.server, "--tls-key", certs.server_key, "--device-ca",
            os.path.join(certs.dir, "device-ca.pem"), "--tokens-file", tokens, "--enable-echo",
            "--io-threads", "2", "--node-id", "undecodable"]
    proc = vt.Proc("vppd", argv)
    srv = vt.Server("vppd", proc, api, admin, False)
    vt.wait_port(api, 30, proc.p)
    vt.wait_port(dev, 30, proc.p)
    vt.wait_serving(srv, certs, 30)
    r.on_fail.append(lambda: proc.log_tail(15))
    ch = grpc.secure_channel("127.0.0.1:%d" % api, grpc.ssl_channel_credentials(certs.read("ca")),
                             options=[("grpc.ssl_target_name_override", "localhost")])

    GO = "/vpp.v1.GridOperator/"
    # method path, how to call it, a valid request.
    methods = [
        (GO + "SetFleetSetpoint", unary, g.SetFleetSetpointRequest(target_kw=0, valid_for_s=60, request_id="u1")),
        (GO + "GetFleetStatus", unary, g.GetFleetStatusRequest()),
        (GO + "WatchFleet", server_stream, g.WatchFleetRequest()),
        (GO + "PreviewDispatch", unary, g.PreviewDispatchRequest(target_kw=0)),
        (GO + "ListDevices", unary, g.ListDevicesRequest()),
        (GO + "GetDevice", unary, g.GetDeviceRequest(device_id="dev-00000")),
        (GO + "ListNodes", unary, g.ListNodesRequest()),
        (GO + "DrainNode", unary, g.DrainNodeRequest(node_id="undecodable", drain=False)),
        ("/grpc.health.v1.Health/Check", unary, S.health_pb2.HealthCheckRequest()),
        ("/grpc.health.v1.Health/Watch", server_stream, S.health_pb2.HealthCheckRequest()),
        ("/vpp.v1.Echo/Unary", unary, S.echo_pb2.EchoRequest(message="hi")),
        ("/vpp.v1.Echo/ServerStream", server_stream, S.echo_pb2.EchoRequest(message="hi", count=1)),
        ("/vpp.v1.Echo/ClientStream", client_stream, S.echo_pb2.EchoRequest(message="hi")),
        ("/vpp.v1.Echo/Bidi", bidi, S.echo_pb2.EchoRequest(message="hi")),
    ]

    def refused(path, call):
        wrong = []
        for name, b in BAD.items():
            code, details = call(ch, path, b)
            if code != grpc.StatusCode.INVALID_ARGUMENT:
                wrong.append("%s: %s %s" % (name, code.name, details))
        assert not wrong, "not refused with INVALID_ARGUMENT: " + "; ".join(wrong)

    def unknown_fields_accepted(path, call, msg):
        plain = call(ch, path, msg.SerializeToString())
        # The request id must differ, or the second Set is a replay.
        if hasattr(msg, "request_id"):
            msg.request_id += "-unknown"
        extra = call(ch, path, msg.SerializeToString() + UNKNOWN)
        assert extra[0] == plain[0], "with unknown fields %s (%s), without %s" % (
            extra[0].name, extra[1], plain[0].name)
        assert plain[0] != grpc.StatusCode.INVALID_ARGUMENT or "parse" not in plain[1], plain

    for path, call, msg in methods:
        m = path.rsplit("/", 2)[-2].split(".")[-1] + "/" + path.rsplit("/", 1)[1]
        r.case("%s: every undecodable body is refused with INVALID_ARGUMENT" % m, refused, path, call)
        r.case("%s: valid unknown fields (groups too) change nothing" % m, unknown_fields_accepted, path, call, msg)

    # DeviceLink: each device's own session, on the mTLS port.
    next_dev = iter(range(24))

    def device():
        """A new device: (its channel, its Hello)."""
        n = "dev-%05d" % next(next_dev)
        read = lambda f: open(os.path.join(cdir, "devices", f), "rb").read()  # noqa: E731
        creds = grpc.ssl_channel_credentials(certs.read("ca"), read(n + ".key"), read(n + ".pem"))
        dch = grpc.secure_channel("127.0.0.1:%d" % dev, creds,
                                  options=[("grpc.ssl_target_name_override", "localhost")])
        chans.append(dch)
        hello = d.DeviceMessage(hello=d.Hello(device_id=n, firmware="t", rated_charge_kw=5, rated_discharge_kw=5,
                                              capacity_kwh=10, min_soc=0.1, max_soc=0.9, ramp_kw_per_s=5))
        return dch, hello.SerializeToString()

    chans = []

    def session(dch, first, then=None):
        """Opens Connect on |dch|, sends |first|, and |then| once the
        Welcome came. Returns (kinds of server messages seen, final status
        code)."""
        q = queue.Queue()
        q.put(first)

        def gen():
            while True:
                m = q.get()
                if m is None:
                    return
                yield m

        call = dch.stream_stream("/vpp.v1.DeviceLink/Connect", request_serializer=ident,
                                 response_deserializer=ident)(gen(), timeout=15)
        seen = []
        timer = threading.Timer(3.0, call.cancel)  # a session that stays up
        timer.start()
        try:
            for raw in call:
                kind = d.ServerMessage.FromString(raw).WhichOneof("msg")
                seen.append(kind)
                if kind == "welcome" and then is not None:
                    q.put(then)
            code = grpc.StatusCode.OK
        except grpc.RpcError as e:
            code = e.code()
        finally:
            timer.cancel()
            q.put(None)
        return seen, code

    def device_bad_first():
        wrong = []
        dch, _ = device()
        for name, b in BAD.items():
            seen, code = session(dch, b)
            if code != grpc.StatusCode.INVALID_ARGUMENT or "welcome" in seen:
                wrong.append("%s: %s %s" % (name, code.name, seen))
        assert not wrong, "; ".join(wrong)

    def device_bad_after_welcome():
        wrong = []
        for name, b in BAD.items():
            seen, code = session(*device(), b)
            if code != grpc.StatusCode.INVALID_ARGUMENT or "welcome" not in seen:
                wrong.append("%s: %s %s" % (name, code.name, seen))
        assert not wrong, "; ".join(wrong)

    def device_unknown_fields():
        # Unknown fields at the top and inside the Hello: the session opens
        # and stays up (cancelled by the client after 3 s).
        dch, hello = device()
        inner = d.DeviceMessage.FromString(hello).hello.SerializeToString() + UNKNOWN
        body = b"\x0a" + bytes([len(inner)]) + inner + UNKNOWN
        seen, code = session(dch, body)
        assert "welcome" in seen and code == grpc.StatusCode.CANCELLED, (seen, code)

    r.case("DeviceLink/Connect: an undecodable first message is refused with INVALID_ARGUMENT", device_bad_first)
    r.case("DeviceLink/Connect: an undecodable message after the Welcome is refused with INVALID_ARGUMENT",
           device_bad_after_welcome)
    r.case("DeviceLink/Connect: a Hello with valid unknown fields (groups too) opens the session",
           device_unknown_fields)

    def still_serving():
        assert proc.alive(), "vppd exited"
        assert vt.health_status(srv, certs) == S.health_pb2.HealthCheckResponse.SERVING
        st = g.FleetStatus.FromString(ch.unary_unary(GO + "GetFleetStatus", request_serializer=ident,
                                                     response_deserializer=ident)(b"", metadata=MD, timeout=10))
        assert st.tick_at_ms > 0, st
        m = vt.read_metrics(admin)
        assert m.rejected("bad_message") >= len(BAD) * (len(methods) - 2), m.rejected("bad_message")

    r.case("vppd keeps serving, and counts the refusals as bad_message", still_serving)
    ch.close()
    for c in chans:
        c.close()


if __name__ == "__main__":
    vt.main(body, budget_s=240)
