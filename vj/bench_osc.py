"""`vj bench osc`: fire malformed datagrams at a live OSC server and print what survived.

A real OSCServer on 127.0.0.1 with a registry of every param kind; a seeded generator makes malformed
packets (random bytes, bad type tags, truncated and lying blobs, huge packets, non-UTF-8 strings, deep
bundles, unknown paths, NaN/inf values, bit flips of valid messages); a drain thread applies whatever
the server lets through to the registry, as the main thread would. Printed: sent, received by the server
(the kernel drops what overflows the socket buffer), rejected, changes applied, values out of range
(must be 0) and whether the server still answers a good message afterwards.
"""

from __future__ import annotations

import math
import queue
import random
import socket
import struct
import threading
import time
from types import MappingProxyType

from vj.control.osc import OSCServer
from vj.control.state import ControlHub, ControlSnapshot, is_command
from vj.params import Param, Registry

PARAMS = (
    Param("/b/float", 0.5, 0.0, 1.0), Param("/b/int", 3, 0, 10, kind="int"),
    Param("/b/bool", False, kind="bool"), Param("/b/color", (1.0, 1.0, 1.0, 1.0), kind="color"),
    Param("/b/point", (0.0, 0.0), -1.0, 1.0, kind="point2d"),
    Param("/b/enum", 0, 0, 2, kind="enum", labels=("a", "b", "c")), Param("/b/event", False, kind="event"),
)


def _pad(b: bytes) -> bytes:
    return b + b"\0" * (4 - len(b) % 4)


def _msg(path: str, tags: str, payload: bytes) -> bytes:
    return _pad(path.encode()) + _pad(("," + tags).encode()) + payload


def malformed_pool(n: int, seed: int = 0) -> list[bytes]:
    """`n` malformed or hostile datagrams (some repeat), and well-formed ones with out-of-range values."""
    rng = random.Random(seed)
    paths = [p.path for p in PARAMS] + ["/norm" + p.path for p in PARAMS] + ["/cmd/tap", "/nope", "/x/y/z"]
    out = []
    for i in range(n):
        kind = i % 10
        path = rng.choice(paths)
        if kind == 0:
            data = bytes(rng.getrandbits(8) for _ in range(rng.choice([1, 3, 4, 8, 13, 32, 64])))
        elif kind == 1:                                     # type tag without its argument
            data = _msg(path, "f", b"")
        elif kind == 2:                                     # a blob claiming more than it has
            data = _msg(path, "b", struct.pack(">i", rng.choice([-5, 100000, 2**31 - 1])) + b"ab")
        elif kind == 3:                                     # NaN / inf
            data = _msg(path, "f", struct.pack(">f", rng.choice([math.nan, math.inf, -math.inf])))
        elif kind == 4:                                     # non-UTF-8 string argument
            data = _msg(path, "s", _pad(b"\xff\xfe\xc3"))
        elif kind == 5:                                     # bundles nested far too deep
            inner = _msg(path, "f", struct.pack(">f", 0.5))
            for _ in range(rng.randint(9, 40)):
                inner = b"#bundle\0" + struct.pack(">Q", 1) + struct.pack(">i", len(inner)) + inner
            data = inner
        elif kind == 6:                                     # huge packet
            data = _msg(path, "s", _pad(b"x" * rng.randint(8000, 60000)))
        elif kind == 7:                                     # unknown type tags
            data = _msg(path, "".join(rng.choice("qwXYZ!") for _ in range(3)), b"\0" * 12)
        elif kind == 8:                                     # out-of-range but well-formed values
            data = _msg(path, "f", struct.pack(">f", rng.choice([-1e30, 1e30, -7.0, 99.0])))
        else:                                               # a valid message with one bit flipped
            good = bytearray(_msg(path, "f", struct.pack(">f", rng.random())))
            good[rng.randrange(len(good))] ^= 1 << rng.randrange(8)
            data = bytes(good)
        out.append(data)
    return out


def run_osc_bench(count: int = 1_000_000, pool: int = 20000, seed: int = 0) -> dict:
    reg = Registry()
    reg.declare_all(PARAMS)
    hub = ControlHub(max_queue=100000)
    hub.publish(ControlSnapshot(version=1, params=tuple(reg.params()), values=reg.values(),
                                features=MappingProxyType({})))
    server = OSCServer(hub, "127.0.0.1", 0).start()
    applied = out_of_range = 0
    stop = threading.Event()

    def drain() -> None:                                   # the main thread's part: apply, then check ranges
        nonlocal applied, out_of_range
        while not stop.is_set() or not hub.changes.empty():
            try:
                c = hub.changes.get(timeout=0.1)
            except queue.Empty:
                continue
            if is_command(c.path):
                continue
            if reg.apply(c):
                applied += 1
                p, v = reg.param(c.path), reg.get(c.path)
                vals = v if isinstance(v, tuple) else (v,)
                lo, hi = (0.0, 1.0) if p.kind == "color" else (p.min, p.max)
                if p.kind not in ("bool", "event") and any(not math.isfinite(x) or x < lo or x > hi for x in vals):
                    out_of_range += 1

    drainer = threading.Thread(target=drain, daemon=True)
    drainer.start()
    packets = malformed_pool(pool, seed)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    addr = ("127.0.0.1", server.port)
    t0 = time.perf_counter()
    for i in range(count):
        sock.sendto(packets[i % pool], addr)
    send_s = time.perf_counter() - t0
    # Let the server finish what reached its socket, then check it still takes a good message.
    last, still = -1, time.perf_counter()
    while time.perf_counter() - still < 1.0:
        if server.received != last:
            last, still = server.received, time.perf_counter()
        time.sleep(0.05)
    sock.sendto(_msg("/b/float", "f", struct.pack(">f", 0.25)), addr)
    deadline = time.perf_counter() + 3.0
    alive = False
    while time.perf_counter() < deadline and not alive:
        time.sleep(0.02)
        alive = reg.get("/b/float") == 0.25
    stop.set()
    drainer.join(5)
    stats = server.stats
    server.close()
    sock.close()
    return {"sent": count, "send_s": send_s, "received": stats["received"], "rejected": stats["rejected"],
            "malformed": stats["malformed"], "applied": applied, "out_of_range": out_of_range, "alive": alive}


def print_osc_bench(count: int = 1_000_000) -> int:
    r = run_osc_bench(count)
    print(f"vj bench osc: {r['sent']} hostile datagrams to 127.0.0.1 in {r['send_s']:.1f} s "
          f"({r['sent'] / r['send_s'] / 1e3:.0f}k/s)")
    print(f"  received by the server {r['received']} (the rest overflowed the kernel's socket buffer)")
    print(f"  rejected {r['rejected']} (malformed {r['malformed']}); changes applied {r['applied']}; "
          f"values out of range in the registry: {r['out_of_range']}")
    print(f"  server still answers a good message: {'yes' if r['alive'] else 'NO'}")
    return 0 if r["alive"] and r["out_of_range"] == 0 else 1
