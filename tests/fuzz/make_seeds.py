#!/usr/bin/python3
"""Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/)
and their dictionaries (tests/fuzz/dict/<target>.dict) from messages as vpp's
clients really send them: a device's Connect stream (Hello, Telemetry, Ack,
Pong in gRPC frames), each GridOperator request as vppctl sends it, admin
HTTP requests from curl and Prometheus, journal segments with telemetry rows
and write statements, a tokens file, an INI file and a fleet CSV.

    /usr/bin/python3 tests/fuzz/make_seeds.py

Idempotent: it rewrites the files it owns (names starting with "seed-") and
leaves every other corpus file (regressions, found inputs) alone. Protobuf is
encoded by hand (proto3 wire format), so nothing but Python is needed."""
import os
import re
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FUZZ = os.path.join(ROOT, "tests", "fuzz")

# ---- proto3 wire format ----------------------------------------------------


def varint(v):
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def f_varint(no, v):
    return varint(no << 3) + varint(v) if v else b""


def f_double(no, v):
    return varint(no << 3 | 1) + struct.pack("<d", v) if v else b""


def f_bytes(no, b):
    if isinstance(b, str):
        b = b.encode()
    return varint(no << 3 | 2) + varint(len(b)) + b if b else b""


def f_msg(no, b):
    return varint(no << 3 | 2) + varint(len(b)) + b  # present even when empty


def grpc_frame(msg):
    return b"\x00" + struct.pack(">I", len(msg)) + msg


# ---- DeviceLink ------------------------------------------------------------

NOW_MS = 1796601600000  # the fuzzer's fixed clock


def hello(device_id="dev-00001", firmware="emu-1.4.2", charge=5.0, discharge=5.0,
          capacity=13.5, min_soc=0.05, max_soc=0.95, ramp=2.5):
    return f_msg(1, f_bytes(1, device_id) + f_bytes(2, firmware) + f_double(3, charge) +
                 f_double(4, discharge) + f_double(5, capacity) + f_double(6, min_soc) +
                 f_double(7, max_soc) + f_double(8, ramp))


def telemetry(seq, power=1.2, sigma=0.05, soc=0.6, soc_sigma=0.01, quality=0,
              at=NOW_MS):
    return f_msg(2, f_varint(1, seq) + f_varint(2, at) + f_double(3, power) +
                 f_double(4, sigma) + f_double(5, soc) + f_double(6, soc_sigma) +
                 f_varint(7, quality))


def ack(seq, accepted=True, reason=""):
    return f_msg(3, f_varint(1, seq) + f_varint(2, 1 if accepted else 0) + f_bytes(3, reason))


def pong(ping_id, device_time=NOW_MS + 40):
    return f_msg(4, f_varint(1, ping_id) + f_varint(2, device_time))


def stream(*msgs):
    return b"".join(grpc_frame(m) for m in msgs)


def device_seeds():
    return {
        "hello": stream(hello()),
        "session": stream(hello(), telemetry(1), pong(1), telemetry(2), ack(1),
                          telemetry(3, power=-3.0), ack(1, False, "soc limit"),
                          telemetry(4, sigma=0, soc_sigma=0), ack(2)),
        "sensor_fault": stream(hello(), telemetry(1, power=4000.0, quality=2),
                               telemetry(2, soc_sigma=3.0)),
        "clock_far": stream(hello(), pong(1, device_time=NOW_MS - 20 * 365 * 86400000),
                            telemetry(1, at=1)),
        "before_hello": stream(telemetry(1), hello()),
        "bad_hello": stream(hello(min_soc=0.9, max_soc=0.1)),
        "second_hello": stream(hello(), hello()),
        "unknown_ack": stream(hello(), ack(7)),
        "one_message": telemetry(5),
        "bad_utf8_firmware": stream(hello(firmware=b"\xc3\x28fw")),
    }


# ---- GridOperator ----------------------------------------------------------

# The first byte picks the method (tests/fuzz/fuzz_operator.c).
SET, DRAIN, PREVIEW, LIST, GET, STATUS, WATCH, NODES = range(8)


def operator_seeds():
    set_req = (f_double(1, 1500.0) + f_varint(2, 300) + f_double(3, 0.0) +
               f_bytes(4, "52ee31b4-5260-43d6-b4a5-8b53fea4a7f0") +
               f_bytes(5, "quickstart: discharge 1.5 MW"))
    return {
        "set": bytes([SET]) + set_req,
        "set_ramp": bytes([SET]) + f_double(1, -2000.0) + f_varint(2, 600) +
        f_double(3, 50.0) + f_bytes(4, "r-2") + f_bytes(5, "absorb"),
        "set_no_id": bytes([SET]) + f_double(1, 10.0) + f_varint(2, 60),
        "drain": bytes([DRAIN]) + f_bytes(1, "node-b") + f_varint(2, 1) +
        f_bytes(3, "rolling upgrade"),
        "undrain": bytes([DRAIN]) + f_bytes(1, "node-b"),
        "preview": bytes([PREVIEW]) + f_double(1, 9000.0),
        "list": bytes([LIST]) + f_varint(1, 100) + f_bytes(2, "dev-00042") + f_varint(3, 2),
        "list_empty": bytes([LIST]),
        "get": bytes([GET]) + f_bytes(1, "dev-00042"),
        "status": bytes([STATUS]),
        "status_garbage": bytes([STATUS]) + b"\x0f\xff\xff",
        "watch": bytes([WATCH]),
        "nodes": bytes([NODES]),
    }


# ---- admin HTTP ------------------------------------------------------------


def admin_seeds():
    return {
        "curl_metrics": b"GET /metrics HTTP/1.1\r\nHost: localhost:9464\r\n"
        b"User-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n",
        "prometheus": b"GET /metrics HTTP/1.1\r\nHost: 10.0.0.5:9464\r\n"
        b"User-Agent: Prometheus/2.45.0\r\nAccept: application/openmetrics-text;"
        b"version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\n"
        b"Accept-Encoding: gzip\r\nX-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n",
        "healthz_10": b"GET /healthz HTTP/1.0\r\n\r\n",
        "readyz_close": b"GET /readyz?verbose=1 HTTP/1.1\r\nConnection: close\r\n\r\n",
        "pipelined": b"GET /healthz HTTP/1.1\r\n\r\nGET /readyz HTTP/1.1\r\n"
        b"Connection: keep-alive, Upgrade\r\n\r\nHEAD /metrics HTTP/1.1\r\n\r\n",
        "post_body": b"\r\nPOST /metrics HTTP/1.1\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nhello",
        "partial": b"GET /metrics HTTP/1.1\r\nHost: x\r\n",
    }


# ---- journal ---------------------------------------------------------------


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def record(rtype, payload):
    head = struct.pack("<IHHI", 0x4A505056, rtype, 0, len(payload))
    return head + struct.pack("<I", crc32c(head + payload)) + payload


def row(device_id, seq, power, sigma, soc, soc_sigma, quality=0):
    d = device_id.encode()
    return (bytes([len(d)]) + d + struct.pack("<qqq", seq, NOW_MS - 1000, NOW_MS) +
            struct.pack("<dddd", power, sigma, soc, soc_sigma) + struct.pack("<I", quality))


def stmt(sid, params):
    out = struct.pack("<HH", sid, len(params))
    for p in params:
        if p is None:
            out += struct.pack("<i", -1)
        else:
            b = p.encode()
            out += struct.pack("<i", len(b)) + b + b"\x00"
    return out


def journal_seeds():
    nan = float("nan")
    recs = [
        (1, row("dev-00001", 1, 1.2, 0.05, 0.6, 0.01)),
        (1, row("dev-00002", 7, -3.0, nan, 0.4, nan, 4)),
        (2, stmt(3, ["3f1c", "dev-00001", "node-a", str(NOW_MS), "connected", None])),
        (2, stmt(4, ["9a7e", str(NOW_MS), "node-a", "alice", "SetFleetSetpoint", "r-1",
                     "target_kw=1500", "accepted"])),
    ]
    seg = b"".join(record(t, p) for t, p in recs)
    # Raw mode (even first byte): byte 1 = segments - 1.
    seeds = {
        "raw_one": b"\x00\x00" + seg,
        "raw_torn": b"\x00\x00" + seg[:-7],
        "raw_two": b"\x00\x01" + seg + seg,
        "raw_corrupt": b"\x00\x00" + seg[:40] + bytes([seg[40] ^ 0x10]) + seg[41:],
    }
    # Records mode (odd first byte): cut, flip offset, flip mask, then
    # [type][u16 len][payload]...
    framed = b"".join(bytes([t]) + struct.pack("<H", len(p)) + p for t, p in recs)
    seeds["framed"] = b"\x01\x00\x00\x00\x00" + framed
    seeds["framed_torn"] = b"\x01\x09\x00\x00\x00" + framed
    seeds["framed_flip"] = b"\x01\x00\x50\x00\x04" + framed
    seeds["framed_unknown_type"] = b"\x01\x00\x00\x00\x00" + b"\x09\x03\x00abc" + framed
    return seeds


# ---- tokens, INI, fleet CSV ------------------------------------------------


def tokens_seeds():
    h1 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"  # "test"
    h2 = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"  # "hello"
    return {
        "two": ("# name   role      hash\nalice    operator  sha256:%s\n"
                "grafana  viewer    sha256:%s\n" % (h1, h2)).encode(),
        "match": ("test operator sha256:%s\n" % h1).encode(),
        "crlf_comments": ("\r\n# ops\r\nbob\tOPERATOR\tsha256:%s  # on call\r\n" % h1.upper()
                          ).encode(),
        "bad_role": ("carol admin sha256:%s\n" % h1).encode(),
        "bad_hash": b"dave viewer sha256:xyz\n",
    }


def config_seeds():
    return {
        "sections": b"; vppd.ini\nlog-level = debug\nnode-id = node-a\n\n[api]\naddr = 0.0.0.0\n"
        b"port = 7444\nh2c = yes\n\n[device]\nport = 7443\nca = /etc/vpp/device-ca.pem\n"
        b"max-msgs-per-s = 100\n\n[store]\nqueue-rows = 65536\n",
        "flat": b"database_url = postgresql://vpp@localhost/vpp\njournal-fsync = interval\n"
        b"journal-fsync-interval-ms = 250\ndeadband-kw = 0.1\nmax-target-kw = 5e4\n"
        b"cluster = on\ncluster-node-timeout-ms = 5000\n",
        "bad_value": b"tick-ms = 50\n",
        "unknown": b"[grpc]\nmax-message-bytes = 4096\nfrobnicate = 1\n",
        "long_line": b"node-id = " + b"x" * 250 + b"\n",
    }


def plan_seeds():
    head = ("id,rated_charge_kw,rated_discharge_kw,capacity_kwh,soc,min_soc,max_soc,"
            "ramp_kw_per_s,power_kw,availability\n")
    return {
        "fleet": (head + "dev-1,5,5,13.5,0.5,0.1,0.9,2.5,0,0.98\n"
                  "dev-2,3.3,4,10,0.2,0.05,0.95,0,1.5,1\n"
                  "dev-3,5,5,13.5,0.95,0.1,0.9,1,-2,0\n").encode(),
        "reordered_extra": ("# exported\nnote,availability,power_kw,ramp_kw_per_s,max_soc,min_soc,"
                            "soc,capacity_kwh,rated_discharge_kw,rated_charge_kw,id\n\n"
                            "x,0.5,0,0,1,0,0.5,1,1,1,a\r\n").encode(),
        "duplicate_id": (head + "a,1,1,1,0.5,0,1,0,0,1\na,1,1,1,0.5,0,1,0,0,1\n").encode(),
        "bad_number": (head + "a,1,1,1,0.5,0,1,0,nan,1\n").encode(),
    }


# ---- dictionaries ----------------------------------------------------------


def dict_lines(words):
    out = []
    for w in words:
        if isinstance(w, str):
            w = w.encode()
        out.append('"' + "".join(chr(b) if 0x20 <= b < 0x7F and b not in b'"\\'
                                 else "\\x%02x" % b for b in w) + '"')
    return "\n".join(out) + "\n"


def config_names():
    text = open(os.path.join(ROOT, "server", "vppd_config.c")).read()
    return re.findall(r'OPT\("([a-z0-9-]+)"', text)


def dictionaries():
    return {
        "fuzz_admin_http": ["GET", "HEAD", "POST", " HTTP/1.1\r\n", " HTTP/1.0\r\n", "\r\n",
                            "\r\n\r\n", "Connection: ", "close", "keep-alive",
                            "Content-Length: ", "Transfer-Encoding: chunked", "/metrics",
                            "/healthz", "/readyz", "?", ": "],
        "fuzz_config": config_names() + ["[", "]", " = ", "\n", ";", "#", "true", "false",
                                         "yes", "off", "1e9", "-1", "0x10"],
        "fuzz_tokens": ["operator", "viewer", "sha256:", "#", "\n", "\t", "\r\n",
                        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"],
        "fuzz_plan": ["id", "rated_charge_kw", "rated_discharge_kw", "capacity_kwh", "soc",
                      "min_soc", "max_soc", "ramp_kw_per_s", "power_kw", "availability", ",",
                      "\n", "#", "1e308", "-0", "0x1p-1074", "inf", "nan"],
        "fuzz_device": ["dev-00001", b"\x00\x00\x00\x00", b"\x0a", b"\x12", b"\x1a", b"\x22",
                        b"\x19", b"\x21", b"\x29", b"\x31", b"\x39", b"\x41",
                        struct.pack("<d", float("nan")), struct.pack("<d", float("inf")),
                        struct.pack("<d", 1e5), struct.pack("<d", -1.0)],
    }


def write_corpus(target, seeds):
    d = os.path.join(FUZZ, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(d, "seed-" + name), "wb") as f:
            f.write(data)


def main():
    write_corpus("fuzz_device", device_seeds())
    write_corpus("fuzz_operator", operator_seeds())
    write_corpus("fuzz_admin_http", admin_seeds())
    write_corpus("fuzz_journal", journal_seeds())
    write_corpus("fuzz_tokens", tokens_seeds())
    write_corpus("fuzz_config", config_seeds())
    write_corpus("fuzz_plan", plan_seeds())
    d = os.path.join(FUZZ, "dict")
    os.makedirs(d, exist_ok=True)
    for target, words in dictionaries().items():
        with open(os.path.join(d, target + ".dict"), "w") as f:
            f.write("# written by tests/fuzz/make_seeds.py\n" + dict_lines(words))


if __name__ == "__main__":
    main()
