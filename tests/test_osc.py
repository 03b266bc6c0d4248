"""OSC over real UDP: liblo's oscsend in, oscdump receiving feedback; bundles, timetags, abuse."""

import math
import queue
import random
import shutil
import socket
import subprocess
import threading
import time
from types import MappingProxyType

import pytest
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message_builder import OscMessageBuilder

from test_engine import ctx  # noqa: F401  (GL fixture for the engine test)
from vj.control.osc import OSCServer, parse_packet, parse_target
from vj.control.state import ControlHub, ControlSnapshot
from vj.params import Param, Registry

pytestmark = pytest.mark.skipif(shutil.which("oscsend") is None, reason="liblo-tools (oscsend) not installed")

PARAMS = (
    Param("/fx/kaleido/sides", 6, 1, 16, kind="int", description="mirror segments"),
    Param("/fx/grade/tint", (1.0, 1.0, 1.0, 1.0), kind="color", description="tint"),
    Param("/fx/warp/center", (0.5, 0.5), 0.0, 1.0, kind="point2d"),
    Param("/fx/warp/on", False, kind="bool"),
    Param("/fx/strobe/fire", False, kind="event"),
    Param("/fx/mirror/mode", 0, 0, 2, kind="enum", labels=("off", "x", "xy")),
    Param("/master/brightness", 1.0, 0.0, 2.0, unit="x", description="output gain"),
    Param("/audio/gain", 1.0, 0.0, 8.0, unit="x"),
)


def snapshot(version=1, frame=0, presets=("default", "nebula"), preset="Default", params=PARAMS, **values):
    vals = {p.path: p.default for p in params}
    for k, v in values.items():
        vals["/" + k.replace("__", "/")] = v
    feats = {"level": 0.2, "bass": 0.4, "mid": 0.1, "high": 0.05, "onset": 0.0, "beat": 0.0,
             "beat_phase": 0.25, "bpm": 120.0}
    return ControlSnapshot(version=version, params=tuple(sorted(params, key=lambda p: p.path)),
                           values=MappingProxyType(vals), features=MappingProxyType(feats),
                           preset=preset, presets=presets, frame=frame)


def snapshot_hub(**values) -> ControlHub:
    hub = ControlHub()
    hub.publish(snapshot(**values))
    return hub


def drain(q, n, timeout_s=3.0):
    out, end = [], time.monotonic() + timeout_s
    while len(out) < n and time.monotonic() < end:
        try:
            out.append(q.get(timeout=0.05))
        except queue.Empty:
            pass
    return out


def send(port, *args):
    subprocess.run(["oscsend", "127.0.0.1", str(port), *map(str, args)], check=True)


def free_udp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def message(address, *args):
    b = OscMessageBuilder(address)
    for a in args:
        if isinstance(a, tuple):
            b.add_arg(*a)
        else:
            b.add_arg(a)
    return b.build()


def wait_for(cond, timeout_s=5.0):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


@pytest.fixture
def server():
    q = queue.Queue()
    s = OSCServer(q, port=0).start()
    yield s, q
    s.close()


@pytest.fixture
def hub_server():
    hub = snapshot_hub()
    s = OSCServer(hub, port=0).start()
    yield s, hub
    s.close()


class Dump:
    """liblo's oscdump on a free port; lines() is everything it printed so far."""

    def __init__(self):
        self.port = free_udp_port()
        self.proc = subprocess.Popen(["oscdump", "-L", str(self.port)], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        self._lines = []
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()
        time.sleep(0.2)      # oscdump binds its port before printing anything

    def _read(self):
        for line in self.proc.stdout:
            # "<timetag> /path types values": keep the message part
            self._lines.append(line.strip().split(" ", 1)[-1])

    def lines(self):
        return list(self._lines)

    def wait_line(self, text, timeout_s=5.0):
        return wait_for(lambda: text in self._lines, timeout_s)

    def close(self):
        self.proc.terminate()
        self.proc.wait(5)


@pytest.fixture
def dump():
    if shutil.which("oscdump") is None:
        pytest.skip("liblo-tools (oscdump) not installed")
    d = Dump()
    yield d
    d.close()


# ---- input -------------------------------------------------------------------------------------

def test_binds_loopback_by_default(server):
    s, _ = server
    assert s.host == "127.0.0.1"


def test_oscsend_sets_params(server):
    s, q = server
    r = Registry()
    r.declare(Param("/fx/kaleido/sides", 6, 1, 16, kind="int"))
    r.declare(Param("/fx/grade/tint", (1.0, 1.0, 1.0, 1.0), kind="color"))
    send(s.port, "/fx/kaleido/sides", "i", "9")
    send(s.port, "/fx/grade/tint", "fff", "1", "0.25", "0")
    changes = drain(q, 2)
    for c in changes:
        assert r.apply(c)
    assert r.get("/fx/kaleido/sides") == 9
    assert r.get("/fx/grade/tint") == (1.0, 0.25, 0.0, 1.0)
    assert {c.source for c in changes} == {"osc"}


def test_params_norm_faders_and_commands_from_oscsend(hub_server):
    s, hub = hub_server
    send(s.port, "/fx/kaleido/sides", "i", 8)
    send(s.port, "/norm/master/brightness", "f", 0.25)              # 0..2 -> 0.5
    send(s.port, "/norm/fx/kaleido/sides", "f", 1.0)                 # 1..16 -> 16
    send(s.port, "/norm/fx/warp/on", "f", 0.9)
    send(s.port, "/norm/fx/warp/center", "ff", 0.0, 1.0)
    send(s.port, "/fx/mirror/mode", "s", "xy")                       # an enum by its label
    send(s.port, "/fx/warp/on", "F")
    send(s.port, "/cmd/tap")                                         # no arguments at all
    send(s.port, "/cmd/preset/load", "s", "nebula")
    send(s.port, "/cmd/blackout", "T")
    got = [(c.path, c.value) for c in drain(hub.changes, 10)]
    assert got == [
        ("/fx/kaleido/sides", 8), ("/master/brightness", 0.5), ("/fx/kaleido/sides", 16),
        ("/fx/warp/on", True), ("/fx/warp/center", (0.0, 1.0)), ("/fx/mirror/mode", 2), ("/fx/warp/on", False),
        ("/cmd/tap", None), ("/cmd/preset/load", "nebula"), ("/cmd/blackout", True),
    ]
    assert s.rejected == 0 and s.received == 10


def test_rgba_colour_and_fader_release(hub_server):
    s, hub = hub_server
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.sendto(message("/fx/grade/tint", (0xFF800000 | 0x33, "r")).dgram, ("127.0.0.1", s.port))
    sock.sendto(message("/norm/fx/strobe/fire", 0.0).dgram, ("127.0.0.1", s.port))   # release: nothing
    sock.sendto(message("/norm/fx/strobe/fire", 1.0).dgram, ("127.0.0.1", s.port))   # press: fire
    sock.close()
    got = drain(hub.changes, 2)
    assert got[0].path == "/fx/grade/tint"
    assert got[0].value == pytest.approx((1.0, 128 / 255, 0.0, 0x33 / 255))   # default rel 1e-6: one division
    assert (got[1].path, got[1].value) == ("/fx/strobe/fire", True)
    assert wait_for(lambda: s.messages == 3) and s.rejected == 0


def test_unknown_paths_and_bad_values_are_counted_not_queued(hub_server):
    s, hub = hub_server
    send(s.port, "/fx/nope", "f", 1)                    # unknown param
    send(s.port, "/cmd/launch/missiles")                # unknown command
    send(s.port, "/fx/kaleido/sides", "s", "many")      # a string for an int
    send(s.port, "/master/brightness", "f", "nan")      # not finite
    send(s.port, "/master/brightness", "f", "inf")
    send(s.port, "/norm/nope", "f", 0.5)                # /norm/ of an unknown param
    send(s.port, "/cmd/preset/load", "ss", "a", "b")    # too many arguments
    send(s.port, "/master/brightness", "f", 0.5)        # and one good message
    got = drain(hub.changes, 2, timeout_s=1.0)
    assert [(c.path, c.value) for c in got] == [("/master/brightness", 0.5)]
    assert s.rejected == 7 and s.received == 8


def test_allow_list_drops_and_counts_other_clients():
    hub = snapshot_hub()
    closed = OSCServer(hub, port=0, allow=["10.9.8.7"]).start()
    open_ = OSCServer(hub, port=0, allow=["127.0.0.0/8"]).start()
    try:
        send(closed.port, "/master/brightness", "f", 0.1)
        send(open_.port, "/master/brightness", "f", 0.2)
        got = drain(hub.changes, 2, timeout_s=1.0)
        assert [c.value for c in got] == [pytest.approx(0.2)]     # OSC 'f' is float32: 0.2 within 6e-8 relative
        assert closed.denied == 1 and closed.rejected == 1 and open_.denied == 0
    finally:
        closed.close()
        open_.close()


def test_queue_bound_drops_and_counts():
    hub = ControlHub(max_queue=3)
    hub.publish(snapshot())
    s = OSCServer(hub, port=0).start()
    try:
        for i in range(5):
            send(s.port, "/fx/kaleido/sides", "i", i + 2)
        assert wait_for(lambda: s.received == 5)
        assert hub.changes.qsize() == 3 and s.dropped == 2
    finally:
        s.close()


# ---- bundles and timetags ----------------------------------------------------------------------

def test_future_bundle_is_applied_at_its_time_without_blocking_the_server(hub_server):
    s, hub = hub_server
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    due = time.time() + 0.8
    later = OscBundleBuilder(due)
    later.add_content(message("/fx/kaleido/sides", 12))
    later.add_content(message("/cmd/preset/next"))
    sock.sendto(later.build().dgram, ("127.0.0.1", s.port))
    now = OscBundleBuilder(IMMEDIATELY)
    now.add_content(message("/fx/kaleido/sides", 3))
    sock.sendto(now.build().dgram, ("127.0.0.1", s.port))
    past = OscBundleBuilder(time.time() - 5)
    past.add_content(message("/fx/kaleido/sides", 4))
    sock.sendto(past.build().dgram, ("127.0.0.1", s.port))
    sock.close()
    send(s.port, "/fx/kaleido/sides", "i", 5)               # sent after the future bundle, must not wait for it
    first = drain(hub.changes, 3)
    assert [c.value for c in first] == [3, 4, 5]
    assert time.time() < due, "the immediate messages waited for the future bundle"
    assert hub.changes.empty() and s.scheduled == 2 and s.scheduler.pending == 2
    late = drain(hub.changes, 2, timeout_s=5.0)
    arrived = time.time()
    assert [(c.path, c.value) for c in late] == [("/fx/kaleido/sides", 12), ("/cmd/preset/next", None)]
    assert arrived >= due - 0.002, "a bundle ran before its timetag"


def test_nested_bundle_never_runs_before_its_parent(hub_server):
    s, hub = hub_server
    due = time.time() + 0.5
    outer = OscBundleBuilder(due)
    inner = OscBundleBuilder(IMMEDIATELY)
    inner.add_content(message("/fx/kaleido/sides", 7))
    outer.add_content(inner.build())
    msgs = parse_packet(outer.build().dgram)
    assert [(m.address, m.args) for m in msgs] == [("/fx/kaleido/sides", (7,))]
    assert msgs[0].time_s == pytest.approx(due, abs=1e-6)     # an NTP time tag's fraction is 2^-32 s: 2.3e-10


def test_timetags_too_far_ahead_are_refused(hub_server):
    s, hub = hub_server
    b = OscBundleBuilder(time.time() + 3600 * 24)
    b.add_content(message("/fx/kaleido/sides", 9))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.sendto(b.build().dgram, ("127.0.0.1", s.port))
    sock.close()
    assert wait_for(lambda: s.rejected == 1)
    assert s.scheduler.pending == 0


# ---- abuse -------------------------------------------------------------------------------------

def deep_bundle(depth):
    data = message("/fx/kaleido/sides", 3).dgram
    for _ in range(depth):
        data = b"#bundle\0" + (1).to_bytes(8, "big") + len(data).to_bytes(4, "big") + data
    return data


JUNK = [
    b"",                                                         # empty
    b"\x00\x01garbage",                                          # not OSC
    b"/x\x00\x00,f\x00\x00\x00",                                 # float argument missing
    b"/y\x00\x00,zzz\x00\x00\x00\x00" + b"\xff" * 8,             # unknown type tags
    b"/b\x00\x00,b\x00\x00\x00\x00\x00\x10abcd",                 # blob size runs past the end
    b"/b\x00\x00,b\x00\x00\xff\xff\xff\xf0abcd",                 # negative blob size
    b"/\xff\xfe\x00,f\x00\x00" + b"\x00" * 4,                    # address not UTF-8
    b"/s\x00\x00,s\x00\x00\xc3\x28\x00\x00",                     # string not UTF-8
    b"/a\x00\x00,[f\x00" + b"\x00" * 4,                          # unbalanced array
    b"/a\x00x,f\x00\x00" + b"\x00" * 4,                          # junk in the padding
    b"#bundle\x00" + b"\x00" * 7 + b"\x01" + b"\x00\x00\x01\x00" + b"/a\x00\x00",   # element size lies
    b"#bundle\x00\x00\x00\x00\x00",                              # bundle without a timetag
    deep_bundle(40),                                             # nested far too deep
    b"/" + b"a" * 65000 + b"\x00" * 3,                           # huge (and an address alone: routed, unknown)
]


def test_malformed_and_abusive_packets_leave_the_server_alive_and_counting(hub_server):
    s, hub = hub_server
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for junk in JUNK:
        sock.sendto(junk, ("127.0.0.1", s.port))
    huge_blob = message("/fx/kaleido/sides", b"\x00" * 60000).dgram                       # well-formed, refused
    huge_string = message("/cmd/preset/load", "x" * 1000).dgram
    sock.sendto(huge_blob, ("127.0.0.1", s.port))
    sock.sendto(huge_string, ("127.0.0.1", s.port))
    sock.sendto(deep_bundle(7), ("127.0.0.1", s.port))                                    # deep but allowed
    sock.close()
    assert wait_for(lambda: s.received == len(JUNK) + 3)
    got = drain(hub.changes, 1)
    assert [(c.path, c.value) for c in got] == [("/fx/kaleido/sides", 3)]
    assert s.malformed == len(JUNK) - 1                 # the huge address alone is well-formed but unknown
    assert s.rejected == len(JUNK) + 2
    assert s._thread.is_alive()
    send(s.port, "/fx/kaleido/sides", "i", 10)
    assert [c.value for c in drain(hub.changes, 1)] == [10]


def test_fuzzed_datagrams_never_put_an_out_of_range_value_in_the_registry(hub_server):
    s, hub = hub_server
    rng = random.Random(6)
    reg = Registry()
    reg.declare_all(PARAMS)
    paths = [p.path for p in PARAMS] + ["/norm" + p.path for p in PARAMS] + ["/cmd/tap", "/fx/none", "/x"]
    values = [0, 1, -1, 2**31 - 1, -2**31, 0.5, -1e30, 1e30, math.nan, math.inf, -math.inf, "", "xy", "\u00e9",
              True, False, None, b"\x01\x02"]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sent = 0
    for i in range(3000):
        if i % 3 == 0:
            data = bytes(rng.getrandbits(8) for _ in range(rng.choice([4, 8, 12, 16, 20, 33, 64])))
        else:
            b = OscMessageBuilder(rng.choice(paths))
            for _ in range(rng.randint(0, 4)):
                b.add_arg(rng.choice(values))
            data = bytearray(b.build().dgram)
            if i % 3 == 2 and len(data) > 4:                        # flip a byte somewhere
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            data = bytes(data)
        sock.sendto(data, ("127.0.0.1", s.port))
        sent += 1
        if i % 200 == 199:
            time.sleep(0.02)                                        # pace: a socket buffer is finite
    sock.close()
    assert wait_for(lambda: s.received == sent, 10), f"received {s.received} of {sent}"
    assert s._thread.is_alive()
    while not hub.changes.empty():
        c = hub.changes.get_nowait()
        if not c.path.startswith("/cmd/"):
            assert reg.apply(c), f"{c} got past the door but the registry refused it"
    for p in PARAMS:
        v = reg.get(p.path)
        if p.kind in ("float", "int", "enum"):
            assert p.min <= v <= p.max and math.isfinite(v)
        elif p.kind in ("color", "point2d"):
            assert all(math.isfinite(x) for x in v)
    assert s.malformed > 0 and s.rejected > s.malformed


def test_parse_target():
    assert parse_target("192.168.1.5:9000") == ("192.168.1.5", 9000)
    assert parse_target(":8000") == ("127.0.0.1", 8000)
    with pytest.raises(ValueError):
        parse_target("host:99999")


# ---- feedback ----------------------------------------------------------------------------------

def test_registered_oscdump_gets_the_state_then_only_changes(hub_server, dump):
    s, hub = hub_server
    send(s.port, "/vj/register", "i", dump.port)
    assert dump.wait_line("/fx/kaleido/sides i 6"), dump.lines()            # the full state on registration
    assert dump.wait_line('/vj/preset s "Default"'), dump.lines()
    hub.publish(snapshot(version=2, frame=1, fx__kaleido__sides=11))
    assert dump.wait_line("/fx/kaleido/sides i 11"), dump.lines()
    assert dump.wait_line("/feature/bpm f 120.000000"), [x for x in dump.lines() if "feature" in x]
    lines = dump.lines()
    assert sum(line.startswith("/master/brightness ") for line in lines) == 1   # unchanged: not sent again
    assert not any(line.startswith("/fx/strobe/fire") for line in lines)       # events are pulses, not state
    send(s.port, "/vj/unregister", "i", dump.port)
    assert wait_for(lambda: not s.targets)
    hub.publish(snapshot(version=3, frame=2, fx__kaleido__sides=13))
    time.sleep(0.3)
    assert "/fx/kaleido/sides i 13" not in dump.lines()


def test_static_feedback_target_and_normalised_faders(dump):
    hub = snapshot_hub()
    s = OSCServer(hub, port=0, feedback=[("127.0.0.1", dump.port)]).start()
    try:
        assert dump.wait_line("/master/brightness f 1.000000"), dump.lines()
        norm = Dump()
        try:
            send(s.port, "/vj/register", "is", norm.port, "norm")
            assert norm.wait_line("/norm/master/brightness f 0.500000"), norm.lines()
            hub.publish(snapshot(version=2, frame=1, fx__kaleido__sides=16))
            assert norm.wait_line("/norm/fx/kaleido/sides f 1.000000"), norm.lines()
            assert dump.wait_line("/fx/kaleido/sides i 16")
        finally:
            norm.close()
    finally:
        s.close()


def test_beats_between_feedback_passes_are_not_lost(hub_server, dump):
    s, hub = hub_server
    send(s.port, "/vj/register", "i", dump.port)
    assert dump.wait_line("/fx/kaleido/sides i 6")
    snap = snapshot(version=1, frame=5)
    # the beat flag itself was missed; the phase wrapped round from 0.9 to 0.05
    hub.publish(ControlSnapshot(**{**snap.__dict__, "features": MappingProxyType({**snap.features, "beat_phase": 0.9})}))
    time.sleep(0.15)
    hub.publish(ControlSnapshot(**{**snap.__dict__, "frame": 6,
                                   "features": MappingProxyType({**snap.features, "beat_phase": 0.05})}))
    assert dump.wait_line("/feature/beat f 1.000000"), dump.lines()
    assert dump.wait_line("/feature/beat f 0.000000"), dump.lines()


# ---- through the engine --------------------------------------------------------------------------

def test_commands_and_norm_reach_a_real_engine(ctx):  # noqa: F811
    from test_engine import CFG, frames
    from vj.config import AudioConfig
    from vj.engine import Engine

    e = Engine(ctx, CFG, AudioConfig(), live=False)
    s = OSCServer(e.hub, port=0).start()
    try:
        e.load_preset("default")
        frames(e, 1)                                  # publishes the snapshot /norm/ needs
        send(s.port, "/norm/master/brightness", "f", 0.25)
        send(s.port, "/cmd/blackout")                 # no arguments: toggles
        send(s.port, "/cmd/preset/load", "s", "nebula")
        assert wait_for(lambda: e.changes.qsize() == 3)
        frames(e, 1)
        assert e.registry.get("/master/brightness") == 0.5
        assert e.registry.get("/master/blackout") is True
        assert e.preset.name == "Nebula"
        assert s.rejected == 0
    finally:
        s.close()
        e.close()

