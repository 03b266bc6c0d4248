"""MIDI in: mapping files, routing to Changes, learn, clock, and real ports through JACK MIDI."""

import itertools
import os
import queue
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from vj.audio.servers import AudioServerError, JackServer
from vj.audio.sources import portaudio_released
from vj.control import midi as vjmidi
from vj.control.midi import (ClockState, MidiClock, MidiInput, MidiMapError, MidiRouter, dump_midi_map,
                             list_midi_ports, load_midi_map, match_port, parse_midi_map)
from vj.control.state import ControlHub, ControlSnapshot
from vj.params import Param

mido = pytest.importorskip("mido")
rtmidi = pytest.importorskip("rtmidi")

REPO = Path(__file__).resolve().parent.parent
PARAMS = (
    Param("/t/bool", False, kind="bool"),
    Param("/t/color", (1.0, 1.0, 1.0, 1.0), kind="color"),
    Param("/t/event", False, kind="event"),
    Param("/t/float", 1.0, 0.0, 10.0),
    Param("/t/int", 0, 0, 8, kind="int"),
    Param("/t/zoom", 1.0, 0.25, 4.0),
)
MAP = """
controller = "test"

[[cc]]
cc = 21
path = "/t/float"
min = 2.0
max = 6.0

[[cc]]
cc = 22
path = "/t/float"
curve = "square"
channel = 2

[[cc]]
cc = 64
path = "/t/bool"
mode = "toggle"

[[cc]]
cc = 65
path = "/cmd/preset/next"

[[cc14]]
cc = 3
path = "/t/zoom"

[[note]]
note = 36
path = "/t/float"

[[note]]
note = 37
path = "/t/bool"
mode = "toggle"

[[note]]
note = 38
path = "/t/int"
mode = "momentary"
min = 2
max = 7

[[note]]
note = 39
path = "/cmd/preset/load"
arg = "nebula"

[[note]]
note = 40
path = "/t/event"
mode = "trigger"

[[bend]]
path = "/t/zoom"
min = 0.5
max = 2.5
"""
_ids = itertools.count()


def make_hub(values=None) -> ControlHub:
    hub = ControlHub()
    vals = {p.path: p.default for p in PARAMS}
    vals.update(values or {})
    hub.publish(ControlSnapshot(version=1, params=PARAMS, values=vals))
    return hub


def take(hub: ControlHub, n: int = 1, timeout_s: float = 5.0) -> list[tuple]:
    """The next `n` changes as (path, value, source); fewer if they do not come in time."""
    out, deadline = [], time.monotonic() + timeout_s
    while len(out) < n:
        try:
            c = hub.changes.get(timeout=max(deadline - time.monotonic(), 0.0))
        except queue.Empty:
            break
        out.append((c.path, c.value, c.source))
    return out


def send_until_taken(ctl, hub: ControlHub, msg, tries: int = 5) -> list[tuple]:
    """Send `msg` until a change arrives (at most `tries` times, 1 s apart). vj names a port as it opens it,
    and on a loaded machine the JACK connection can land a moment later; a message sent before it is lost,
    as it would be from a real controller."""
    for _ in range(tries):
        ctl.send(msg)
        got = take(hub, 1, timeout_s=1.0)
        if got:
            return got
    return []


def quiet(hub: ControlHub, wait_s: float = 0.3) -> list[tuple]:
    time.sleep(wait_s)
    return take(hub, 1000, 0.0)


def wait_for(pred, timeout_s: float = 10.0) -> bool:
    """Poll `pred` until it holds; generous, as it returns as soon as it does (a busy machine is slow)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


def cc(control, value, channel=0):
    return mido.Message("control_change", control=control, value=value, channel=channel)


def note(n, velocity=100, channel=0):
    return mido.Message("note_on", note=n, velocity=velocity, channel=channel)


def note_off(n, channel=0):
    return mido.Message("note_off", note=n, channel=channel)


def bend(pitch, channel=0):
    return mido.Message("pitchwheel", pitch=pitch, channel=channel)


# ---- mapping files (no MIDI backend needed) ------------------------------------------------------


def test_example_mapping_file_loads_and_round_trips(tmp_path):
    m = load_midi_map("generic")
    assert m.controller == "generic" and len(m.mappings) > 8
    assert {x.kind for x in m.mappings} == {"cc", "note", "bend"}
    again = parse_midi_map(dump_midi_map(m), tmp_path / "again.toml")
    strip = lambda mm: [(x.kind, x.number, x.path, x.channel, x.min, x.max, x.curve, x.mode, x.arg)  # noqa: E731
                        for x in mm.mappings]
    assert strip(again) == strip(m) and again.controller == m.controller


@pytest.mark.parametrize("name, text, line, words", [
    ("midi-cc-out-of-range", '[[cc]]\ncc = 1\npath = "/t/a"\n\n[[cc]]\ncc = 300\npath = "/t/b"\n', 6, "0..127"),
    ("midi-unknown-curve", '[[note]]\nnote = 3\npath = "/t/a"\ncurve = "wobble"\n', 4, "unknown curve"),
    ("midi-unknown-command", '[[note]]\nnote = 3\npath = "/cmd/explode"\n', 3, "unknown command"),
    ("midi-unknown-key", 'controller = "x"\n[[cc]]\ncc = 1\npath = "/t/a"\nknob = 3\n', 5, "unknown key 'knob'"),
    ("midi-bad-channel", '[[bend]]\npath = "/t/a"\nchannel = 17\n', 3, "1..16"),
    ("midi-cc14-lsb-also-mapped", '[[cc14]]\ncc = 2\npath = "/t/a"\n[[cc]]\ncc = 34\npath = "/t/b"\n', 4,
     "14-bit"),
    ("midi-mode-for-command", '[[cc]]\ncc = 2\npath = "/cmd/tap"\nmode = "toggle"\n', 4, "fires on a press"),
    ("midi-not-toml", '[[cc]]\ncc = 2\npath = "/t/a\n', 3, "not valid TOML"),
    ("midi-duplicate", '[[cc]]\ncc = 2\npath = "/t/a"\n[[cc]]\ncc = 2\npath = "/t/a"\n', 4, "mapped twice"),
    ("midi-relative-with-curve", '[[cc]]\ncc = 2\npath = "/t/a"\nmode = "relative"\ncurve = "square"\n', 5,
     "no curve"),
    ("midi-step-without-relative", '[[cc]]\ncc = 2\npath = "/t/a"\nstep = 0.1\n', 4, "relative encoder"),
    ("midi-relative-on-a-note", '[[note]]\nnote = 2\npath = "/t/a"\nmode = "relative"\n', 4, "unknown mode"),
])
def test_broken_mapping_file_is_refused_with_file_and_line(tmp_path, name, text, line, words):
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    with pytest.raises(MidiMapError) as exc:
        load_midi_map(path)
    assert str(exc.value).startswith(f"{path}:{line}: ") and words in str(exc.value)
    with pytest.raises(MidiMapError):                      # the show refuses it before opening any port
        MidiInput(make_hub(), "x", path)


def test_port_names_match_exactly_then_by_substring():
    names = ["Midi Through:Midi Through Port-0 14:0", "nanoKONTROL2:nanoKONTROL2 MIDI 1 20:0", "ctl:knobs"]
    assert match_port(names, "ctl:knobs") == "ctl:knobs"
    assert match_port(names, "nanokontrol") == names[1]
    assert match_port(names, "") == names[1]              # any controller, not ALSA's Midi Through
    assert match_port(names, "launchpad") is None


def test_no_midi_api_gives_an_empty_list_with_a_reason(monkeypatch):
    monkeypatch.setattr(vjmidi, "ALSA_SEQ", "/nonexistent/seq")
    monkeypatch.setattr(vjmidi, "_jack_may_run", lambda: False)
    ports = list_midi_ports()
    assert ports == [] and "no JACK server" in ports.reason
    bad = list_midi_ports("nonsense")
    assert bad == [] and "unknown MIDI API" in bad.reason
    hub = make_hub()
    m = MidiInput(hub, "anything").start()                  # the show goes on without MIDI
    assert m.status.startswith("midi: off (") and m.port_name is None
    m.close()


# ---- routing and learn, without ports (the in-memory path) ---------------------------------------


@pytest.fixture
def router():
    return MidiRouter(make_hub(), parse_midi_map(MAP, "test.toml"))


def test_cc_note_bend_and_14bit_become_denormalised_changes(router):
    hub = router.hub
    router.handle(cc(21, 127))
    router.handle(cc(21, 0))
    router.handle(cc(22, 64, channel=1))                    # channel 2 (mido counts from 0)
    router.handle(cc(22, 64, channel=0))                    # wrong channel: nothing
    assert take(hub, 4, 0.0) == [("/t/float", 6.0, "midi"), ("/t/float", 2.0, "midi"),
                                 ("/t/float", pytest.approx(10.0 * (64 / 127) ** 2), "midi")]
    router.handle(cc(3, 64))                                # 14-bit: MSB then LSB
    router.handle(cc(35, 100))
    x = ((64 << 7) | 100) / 16383
    assert take(hub, 3, 0.0) == [("/t/zoom", pytest.approx(0.25 + 3.75 * (64 << 7) / 16383), "midi"),
                                 ("/t/zoom", pytest.approx(0.25 + 3.75 * x), "midi")]
    router.handle(bend(-8192))
    router.handle(bend(8191))
    router.handle(bend(0))
    assert [v for _, v, _ in take(hub, 4, 0.0)] == [pytest.approx(0.5), pytest.approx(2.5),
                                                     pytest.approx(0.5 + 2.0 * 8192 / 16383)]
    router.handle(note(36, 127))
    router.handle(note_off(36))                             # velocity mode: a release sends nothing
    router.handle(note(38, 90))
    router.handle(note_off(38))
    assert take(hub, 5, 0.0) == [("/t/float", 10.0, "midi"), ("/t/int", 7, "midi"), ("/t/int", 2, "midi")]


def test_toggles_flip_on_presses_and_commands_fire_on_presses(router):
    hub = router.hub
    for v in (127, 0, 127, 127, 0):                         # the second 127 in a row is no new press
        router.handle(cc(64, v))
    router.handle(note(37))
    router.handle(note_off(37))
    assert take(hub, 5, 0.0) == [("/t/bool", True, "midi"), ("/t/bool", False, "midi"), ("/t/bool", True, "midi")]
    for v in (0, 100, 110, 10, 127):                        # a CC command fires when it rises through 64
        router.handle(cc(65, v))
    router.handle(note(39))
    router.handle(note(40))
    router.handle(note_off(40))
    assert take(hub, 5, 0.0) == [("/cmd/preset/next", None, "midi"), ("/cmd/preset/next", None, "midi"),
                                 ("/cmd/preset/load", "nebula", "midi"), ("/t/event", True, "midi")]


def test_toggle_follows_the_engine_when_a_frame_has_passed(router):
    hub = router.hub
    router.handle(note(37))
    assert take(hub, 1, 0.0) == [("/t/bool", True, "midi")]
    # The engine applied it, then something else (a preset) set it back: the next press turns it on again.
    hub.publish(ControlSnapshot(version=2, frame=5, params=PARAMS, values={**hub.snapshot.values, "/t/bool": False}))
    router.handle(note(37))
    assert take(hub, 1, 0.0) == [("/t/bool", True, "midi")]


def test_unknown_and_unfit_targets_are_refused_not_raised(caplog):
    hub = make_hub()
    text = '[[cc]]\ncc = 1\npath = "/t/gone"\n[[cc]]\ncc = 2\npath = "/t/color"\n'
    r = MidiRouter(hub, parse_midi_map(text, "x.toml"))
    for _ in range(3):
        r.handle(cc(1, 5))
        r.handle(cc(2, 5))
    assert take(hub, 10, 0.0) == []
    assert r.counts["refused"] == 6
    assert sum("no such param" in rec.message for rec in caplog.records) == 1      # reported once


def test_learn_maps_the_next_control_and_saves(tmp_path):
    hub = make_hub()
    r = MidiRouter(hub, parse_midi_map(MAP, tmp_path / "c.toml"))
    assert "no such param" in r.arm("/t/nothing")
    assert "not one value" in r.arm("/t/color")
    assert r.arm("/t/float") is None and r.armed == "/t/float"
    r.handle(cc(90, 5, channel=3))
    assert take(hub, 1, 0.0) == []                          # the learning move itself sets nothing
    assert r.armed is None and r.dirty
    assert [m for m in r.mappings if m.number == 90] == [vjmidi.Mapping("cc", 90, "/t/float", 4)]
    r.handle(cc(90, 127, channel=3))
    r.handle(cc(90, 127, channel=0))                        # learned on channel 4 only
    assert take(hub, 2, 0.0) == [("/t/float", 10.0, "midi")]
    # 14-bit: an MSB followed at once by its LSB learns a cc14 pair.
    assert r.arm("/t/int") is None
    r.handle(cc(5, 1), wall_s=100.0)
    r.handle(cc(37, 0), wall_s=100.001)
    assert [(m.kind, m.number) for m in r.mappings if m.path == "/t/int" and m.kind != "note"] == [("cc14", 5)]
    # a note onto a bool learns a toggle; a note onto a command learns a trigger
    r.arm("/t/bool")
    r.handle(note(60))
    r.arm("/cmd/tap")
    r.handle(note(61, channel=9))
    r.handle(note(61, channel=9))
    assert take(hub, 2, 0.0) == [("/cmd/tap", None, "midi")]
    saved = r.save()
    assert saved == tmp_path / "c.toml" and not r.dirty
    back = load_midi_map(saved)
    rows = [(m.kind, m.number, m.channel, m.path, m.effective_mode) for m in back.mappings]
    assert len(rows) == len(r.mappings) == len(parse_midi_map(MAP).mappings) + 4
    assert {("cc", 90, 4, "/t/float", "absolute"), ("cc14", 5, 1, "/t/int", "absolute"),
            ("note", 60, 1, "/t/bool", "toggle"), ("note", 61, 10, "/cmd/tap", "trigger")} <= set(rows)


def test_relearning_a_control_replaces_its_mapping():
    hub = make_hub()
    r = MidiRouter(hub, parse_midi_map(MAP, "c.toml"))
    r.arm("/t/int")
    r.handle(cc(21, 1))
    assert [m.path for m in r.mappings if m.kind == "cc" and m.number == 21] == ["/t/int"]
    r.handle(cc(21, 127))
    assert take(hub, 2, 0.0) == [("/t/int", 8, "midi")]


# ---- clock ---------------------------------------------------------------------------------------


def feed_clock(clock: MidiClock, bpm: float, seconds: float, t0: float = 0.0, jitter_s: float = 0.0) -> float:
    interval = 60.0 / (bpm * 24)
    n = int(seconds / interval)
    rng = random.Random(1)
    for i in range(n):
        t = t0 + i * interval + rng.uniform(-jitter_s, jitter_s)
        clock.feed("clock", t, t)
    return t                                                 # the last tick's time


def test_clock_estimates_tempo_and_phase_from_ticks():
    clock = MidiClock()
    assert clock.state(0.0) == ClockState()
    clock.feed("start", 0.0, 0.0)
    last = feed_clock(clock, 128.0, 4.0, t0=0.0, jitter_s=0.003)   # JACK's period is 5.3 ms
    st = clock.state(last)
    assert st.running and abs(st.bpm - 128.0) < 0.5
    ticks = int(4.0 / (60 / (128 * 24)))
    assert st.beats == pytest.approx((ticks - 1) / 24, abs=1e-9) and 0.0 <= st.phase < 1.0
    later = clock.state(last + 0.5 * 60 / (128 * 24))                # half a tick later the phase has moved on
    assert later.beats == pytest.approx(st.beats + 0.5 / 24, abs=1e-3)
    assert not clock.state(last + 1.0).running                       # no ticks: not running (unplugged)
    clock.feed("stop", last + 0.01, last + 0.01)
    assert not clock.state(last + 0.01).running
    clock.feed("songpos", last, last, pos=4)                         # 4 sixteenths = beat 1
    clock.feed("continue", last + 0.02, last + 0.02)
    clock.feed("clock", last + 0.02, last + 0.02)
    st = clock.state(last + 0.02)
    assert st.running and st.beats == pytest.approx(1.0) and st.phase == pytest.approx(0.0)
    end = feed_clock(clock, 100.0, 6.0, t0=last + 0.04)             # a new tempo is followed
    assert abs(clock.state(end).bpm - 100.0) < 0.5


# ---- real ports through JACK MIDI ----------------------------------------------------------------


@pytest.fixture(scope="module")
def jack():
    if not JackServer.installed():
        pytest.skip("JACK is not installed (apt install jackd2)")
    if rtmidi.API_UNIX_JACK not in rtmidi.get_compiled_api():
        pytest.skip("this python-rtmidi has no JACK API")
    server = JackServer()
    try:
        server.start()
    except AudioServerError as exc:
        pytest.skip(f"no JACK server: {exc}")
    api, why = vjmidi.choose_api("jack")
    if api is None:
        server.stop()
        pytest.skip(f"rtmidi cannot use JACK: {why}")
    yield server
    # A test of the module may have let PortAudio attach to this server (a live show's audio): its JACK backend
    # aborts the process at exit if the server went first (pytest tests/test_midiclock.py alone ended so, rc 134).
    with portaudio_released():
        server.stop()


class Sender:
    """A controller: a mido output on a virtual JACK MIDI port `client:port`."""

    backend = None

    def __init__(self, client: str, port: str = "knobs"):
        self.client, self.port = client, port
        self.out = None
        self.open()

    def open(self):
        if Sender.backend is None:
            Sender.backend = mido.Backend("mido.backends.rtmidi/UNIX_JACK")
        self.out = Sender.backend.open_output(self.port, client_name=self.client)

    def close(self):
        if self.out is not None:
            self.out.close()
            self.out = None

    @property
    def name(self):
        return f"{self.client}:{self.port}"

    def send(self, *msgs):
        for m in msgs:
            self.out.send(m)


def unique(prefix: str) -> str:
    return f"{prefix}{os.getpid() % 1000}x{next(_ids)}"


@pytest.fixture
def map_file(tmp_path):
    p = tmp_path / "test.toml"
    p.write_text(MAP)
    return p


def connections(server: JackServer) -> str:
    return subprocess.run(["jack_lsp", "-c"], env=server.env, capture_output=True, text=True).stdout


def test_jack_ports_are_listed_opened_by_name_and_routed(jack, map_file):
    ctl = Sender(unique("ctl"))
    hub = make_hub()
    m = MidiInput(hub, ctl.client, map_file, client_name=unique("vj"))
    try:
        ports = list_midi_ports()
        assert ctl.name in ports and ports.api == "jack"
        m.start()
        assert m.status == f"midi: listening on {ctl.name}" and m.port_name == ctl.name
        assert f"{ctl.name}\n   {m.client_name}:midi_in\n" in connections(jack)   # rtmidi wired it
        ctl.send(cc(21, 127), cc(22, 127, channel=1), note(36, 127), note(38), note_off(38), bend(8191),
                 cc(3, 127), cc(35, 127), note(39))
        got = take(hub, 9)
        assert got == [("/t/float", 6.0, "midi"), ("/t/float", 10.0, "midi"), ("/t/float", 10.0, "midi"),
                       ("/t/int", 7, "midi"), ("/t/int", 2, "midi"), ("/t/zoom", pytest.approx(2.5), "midi"),
                       ("/t/zoom", pytest.approx(0.25 + 3.75 * (127 << 7) / 16383), "midi"),
                       ("/t/zoom", 4.0, "midi"), ("/cmd/preset/load", "nebula", "midi")]
        assert quiet(hub) == []
    finally:
        m.close()
        ctl.close()


def test_virtual_input_wired_with_jack_connect(jack):
    hub = make_hub()
    m = MidiInput(hub, mapping_file=None, client_name=unique("vjv"), virtual=True).start()
    ctl = Sender(unique("ctl"))
    try:
        m.router.arm("/t/zoom")
        jack.connect(ctl.name, m.port_name)
        ctl.send(cc(7, 1), cc(7, 127))
        assert take(hub, 1) == [("/t/zoom", 4.0, "midi")]
        assert [x.describe() for x in m.router.mappings] == ["cc 7 ch1 -> /t/zoom"]
    finally:
        m.close()
        ctl.close()


def test_learn_through_a_port_then_the_knob_moves_the_param(jack, tmp_path):
    ctl = Sender(unique("ctl"))
    hub = make_hub()
    m = MidiInput(hub, ctl.name, client_name=unique("vj")).start()
    try:
        assert m.port_name == ctl.name
        m.command("/cmd/midi/learn", "/t/float")
        assert "learn: move a control for /t/float" in m.status
        ctl.send(cc(16, 40, channel=2))
        assert wait_for(lambda: m.router.armed is None)
        assert [x.describe() for x in m.router.mappings] == ["cc 16 ch3 -> /t/float"]
        ctl.send(cc(16, 127, channel=2), cc(16, 0, channel=2))
        assert take(hub, 2) == [("/t/float", 10.0, "midi"), ("/t/float", 0.0, "midi")]
        with pytest.raises(ValueError):
            m.command("/cmd/midi/learn", "/t/nothing")
        m.command("/cmd/midi/save", str(tmp_path / "learned.toml"))
        assert [x.describe() for x in load_midi_map(tmp_path / "learned.toml").mappings] == ["cc 16 ch3 -> /t/float"]
    finally:
        m.close()
        ctl.close()


def test_clock_through_a_port_gives_the_tempo(jack, map_file):
    ctl = Sender(unique("clk"))
    hub = make_hub()
    m = MidiInput(hub, ctl.name, map_file, client_name=unique("vj")).start()
    try:
        assert m.port_name == ctl.name
        assert send_until_taken(ctl, hub, cc(21, 0)) == [("/t/float", 2.0, "midi")]   # connected: no tick is lost
        tick = mido.Message("clock")
        interval = 60.0 / (128.0 * 24)
        n = int(3.0 / interval)
        ctl.send(mido.Message("start"))
        sent, widths = [], []
        t0 = time.monotonic()
        for i in range(n):                                  # paced to absolute times, so no drift builds up
            delay = t0 + i * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            t = time.monotonic()
            ctl.send(tick)
            sent.append(t)
            widths.append(time.monotonic() - t)
        # Messages arrive in order: once this CC's change is here, the clock has been fed every tick.
        ctl.send(cc(21, 127))
        assert take(hub, 1, 10.0) == [("/t/float", 6.0, "midi")]
        st = m.clock.state()
        ctl.send(mido.Message("stop"))
        assert wait_for(lambda: not m.clock.running)
        # The ticks are the input: a 128 BPM clock only if this process sent them on time, and a busy machine can
        # pause it. So the port is judged against the clock the same ticks make at the times they were sent: a
        # MidiClock fed those times directly.
        replica = MidiClock()
        for t in sent:
            replica.feed("clock", t, t)
        want = replica.state(sent[-1]).bpm
        # What the port adds: rtmidi stamps a tick in the JACK cycle that carries it, the sender's cycle or the
        # receiver's next one, so each stamp lies 0 .. 2 periods (P) after the send, plus the time the send call
        # took. Errors within a range J move a least-squares slope over k ticks by at most
        # J * sum|x - mean| / sum (x - mean)^2 (all errors at one end of the range on one half of the window); the
        # smoothing averages such fits. At 256 frames / 48 kHz and k = 96: J = 10.7 ms, 1.7 % = 2.2 BPM at worst;
        # jitter spread evenly over the range gives ~0.1 BPM.
        k = 1
        while k < min(len(sent), 96) and sent[-k] - sent[-k - 1] <= replica.timeout_s:
            k += 1                                          # the ticks in the fit: back to a gap or a full window
        x = np.arange(k) - (k - 1) / 2
        spread_s = 2 * jack.period_frames / jack.sample_rate_hz + max(widths)
        slope_error = spread_s * np.abs(x).sum() / (x ** 2).sum()
        bound_bpm = want * slope_error / (60.0 / (want * 24))
        assert st.running and abs(st.bpm - want) <= bound_bpm, (st, want, bound_bpm)
        assert abs(want - 128.0) < 32.0                     # what was sent was a clock near 128 BPM
        # Every tick counted; the phase moves on by at most one tick after the last one (ClockState.beats).
        assert (n - 1) / 24 <= st.beats <= n / 24, st
        assert take(hub, 1, 0.0) == []                      # the clock is not a param change
    finally:
        m.close()
        ctl.close()


def test_unplugged_controller_is_reopened_when_it_comes_back(jack, map_file):
    client = unique("ctl")
    hub = make_hub()
    m = MidiInput(hub, f"{client}:knobs", map_file, client_name=unique("vj"), poll_s=0.1).start()
    ctl = None
    try:
        assert m.port_name is None and "no input matching" in m.status    # plugged in after the start
        ctl = Sender(client)
        assert wait_for(lambda: m.port_name == ctl.name)
        assert send_until_taken(ctl, hub, cc(21, 127)) == [("/t/float", 6.0, "midi")]
        quiet(hub)
        ctl.close()                                          # unplug
        assert wait_for(lambda: m.status == f"midi: {client}:knobs lost; retrying")
        ctl.open()                                           # plug back in, same name
        assert wait_for(lambda: m.status == f"midi: listening on {client}:knobs")
        # Within send_until_taken's tries (1 s each): a count, not a wall-clock bound a busy machine could miss.
        assert send_until_taken(ctl, hub, cc(21, 0)) == [("/t/float", 2.0, "midi")]
        assert m.reconnects == 1
    finally:
        m.close()
        if ctl is not None:
            ctl.close()


ENCODERS = """
[[cc]]
cc = 30
path = "/t/float"
mode = "relative"
step = 0.5

[[cc]]
cc = 31
path = "/t/int"
mode = "relative_offset"

[[cc]]
cc = 32
path = "/t/zoom"
mode = "relative_signed"
"""


def test_relative_encoders_through_a_virtual_port_turn_params_by_steps(jack):
    hub = make_hub()
    m = MidiInput(hub, mapping_file=None, client_name=unique("vje"), virtual=True).start()
    m.router.set_map(parse_midi_map(ENCODERS, "encoders.toml"))
    assert [x.mode for x in load_midi_map("generic").mappings if x.number == 25] == ["relative"]
    ctl = Sender(unique("enc"))
    try:
        jack.connect(ctl.name, m.port_name)
        # Two's complement, 0.5 per tick from 1.0: +1, +3, -1, -2, then -28 stops at the bottom of the range.
        assert send_until_taken(ctl, hub, cc(30, 1)) == [("/t/float", 1.5, "midi")]
        ctl.send(cc(30, 3), cc(30, 127), cc(30, 126), cc(30, 100))
        # Binary offset, whole-number param (1 per tick): +2, -1, 0 (nothing), +63 stops at the top.
        ctl.send(cc(31, 66), cc(31, 63), cc(31, 64), cc(31, 127))
        # Sign-magnitude, default step range / 127: +2, -1.
        ctl.send(cc(32, 2), cc(32, 65))
        zoom_step = 3.75 / 127
        assert take(hub, 9) == [
            ("/t/float", 3.0, "midi"), ("/t/float", 2.5, "midi"), ("/t/float", 1.5, "midi"), ("/t/float", 0.0, "midi"),
            ("/t/int", 2, "midi"), ("/t/int", 1, "midi"), ("/t/int", 8, "midi"),
            ("/t/zoom", pytest.approx(1.0 + 2 * zoom_step), "midi"), ("/t/zoom", pytest.approx(1.0 + zoom_step), "midi")]
        assert quiet(hub) == []
        # A frame later the engine's value is where the encoder turns from (a preset may have moved it).
        hub.publish(ControlSnapshot(version=2, frame=9, params=PARAMS, values={**hub.snapshot.values, "/t/float": 8.0}))
        ctl.send(cc(30, 2))
        assert take(hub, 1) == [("/t/float", 9.0, "midi")]
    finally:
        m.close()
        ctl.close()


CONTROLLER = """
import sys, mido
out = mido.Backend("mido.backends.rtmidi/UNIX_JACK").open_output("knobs", client_name=sys.argv[1])
print("ready", flush=True)
for line in sys.stdin:
    out.send(mido.Message("control_change", control=int(line.split()[0]), value=int(line.split()[1])))
    print("sent", flush=True)
"""


class ControllerProcess:
    """A controller in its own process (as a real one is: a JACK client that dies with its server)."""

    def __init__(self, client: str, env: dict):
        self.proc = subprocess.Popen([sys.executable, "-c", CONTROLLER, client], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env={**env, "JACK_NO_START_SERVER": "1"})
        assert self.proc.stdout.readline().strip() == "ready"
        self.name = f"{client}:knobs"

    def send_cc(self, control: int, value: int) -> None:
        self.proc.stdin.write(f"{control} {value}\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "sent"

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(5)


def test_midi_comes_back_after_the_jack_server_is_restarted(jack, map_file):
    """Last in this file: it kills the module's JACK server (the one the tests started) and starts a new one."""
    if not jack.started_here:
        pytest.skip("the JACK server was not started by the tests: not killing it")
    client = unique("ctl")
    hub = make_hub()
    ctl = ControllerProcess(client, jack.env)
    m = MidiInput(hub, ctl.name, map_file, client_name=unique("vj"), poll_s=0.1).start()
    try:
        assert m.port_name == ctl.name
        got = []
        for _ in range(5):                                   # the JACK connection may land a moment late
            ctl.send_cc(21, 127)
            got = take(hub, 1, 1.0)
            if got:
                break
        assert got == [("/t/float", 6.0, "midi")]
        jack.stop()                                          # the server dies, and the controller's client with it
        ctl.close()
        assert wait_for(lambda: m.status == f"midi: the JACK server stopped; {client}:knobs lost; retrying")
        assert m.port_name is None
        jack.start()
        ctl = ControllerProcess(client, jack.env)            # the controller's bridge comes back on the new server
        assert wait_for(lambda: m.status == f"midi: listening on {client}:knobs", 10)
        got = []
        for _ in range(5):
            ctl.send_cc(21, 0)
            got = take(hub, 1, 1.0)
            if got:
                break
        assert got == [("/t/float", 2.0, "midi")] and m.reconnects == 1
    finally:
        m.close()
        ctl.close()
