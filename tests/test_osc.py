"""OSC over real UDP from liblo's oscsend: datagrams become Changes; bad ones are counted, not raised."""

import queue
import shutil
import socket
import subprocess
import time

import pytest

from vj.control.osc import OSCServer
from vj.params import Param, Registry

pytestmark = pytest.mark.skipif(shutil.which("oscsend") is None, reason="liblo-tools (oscsend) not installed")


def drain(q, n, timeout_s=3.0):
    out, end = [], time.monotonic() + timeout_s
    while len(out) < n and time.monotonic() < end:
        try:
            out.append(q.get(timeout=0.05))
        except queue.Empty:
            pass
    return out


@pytest.fixture
def server():
    q = queue.Queue()
    s = OSCServer(q, port=0).start()
    yield s, q
    s.close()


def test_binds_loopback_by_default(server):
    s, _ = server
    assert s.host == "127.0.0.1"


def test_oscsend_sets_params(server):
    s, q = server
    r = Registry()
    r.declare(Param("/fx/kaleido/sides", 6, 1, 16, kind="int"))
    r.declare(Param("/fx/grade/tint", (1.0, 1.0, 1.0, 1.0), kind="color"))
    subprocess.run(["oscsend", "127.0.0.1", str(s.port), "/fx/kaleido/sides", "i", "9"], check=True)
    subprocess.run(["oscsend", "127.0.0.1", str(s.port), "/fx/grade/tint", "fff", "1", "0.25", "0"], check=True)
    changes = drain(q, 2)
    for c in changes:
        assert r.apply(c)
    assert r.get("/fx/kaleido/sides") == 9
    assert r.get("/fx/grade/tint") == (1.0, 0.25, 0.0, 1.0)
    assert {c.source for c in changes} == {"osc"}


def test_malformed_datagrams_do_not_stop_the_server(server):
    s, q = server
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for junk in (b"", b"\x00\x01garbage", b"/x\x00\x00,f\x00\x00\x00", b"/y\x00\x00,zzz\x00\x00\x00\x00" + b"\xff" * 8):
        sock.sendto(junk, ("127.0.0.1", s.port))
    sock.close()
    # a NaN is refused at the door
    subprocess.run(["oscsend", "127.0.0.1", str(s.port), "/fx/a", "f", "nan"], check=True)
    subprocess.run(["oscsend", "127.0.0.1", str(s.port), "/fx/ok", "f", "0.5"], check=True)
    changes = drain(q, 1)
    assert [c.path for c in changes] == ["/fx/ok"]
    assert s.rejected >= 1
