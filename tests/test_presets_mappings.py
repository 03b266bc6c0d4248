"""Presets carry their controller mappings: [osc.alias] through a real OSC server, [[midi.cc]] through JACK MIDI."""

import dataclasses
import shutil
import time
from pathlib import Path

import pytest

from test_engine import CFG, frames
from test_midi import Sender, cc, note, unique
from test_midi import jack as _jack_unreleased
from test_osc import Dump, send, wait_for
from vj.audio.sources import portaudio_released
from vj.config import AudioConfig, ControlConfig, RenderConfig
from vj.control.osc import OSCServer
from vj.engine import Engine
from vj.gfx.context import create_headless_context, release_context
from vj.presets import PresetError, dump_preset, parse_preset
from vj.show import LiveShow
from xvfb import xvfb_display  # noqa: F401  (fixture)

needs_liblo = pytest.mark.skipif(shutil.which("oscsend") is None or shutil.which("oscdump") is None,
                                 reason="liblo-tools (oscsend, oscdump) not installed")

ALIASED = """name = "aliased"
[[effects]]
shader = "kaleidoscope"
[osc.alias]
"/1/fader1" = "/norm/fx/kaleidoscope/sides"
"/1/fader2" = "/master/brightness"
"/2/push1" = "/cmd/blackout"
"""
MIDI = """name = "knobs"
[[effects]]
shader = "kaleidoscope"

[[midi.cc]]
cc = 21
path = "/fx/kaleidoscope/sides"

[[midi.note]]
note = 36
channel = 10
path = "/cmd/preset/load"
arg = "plain"

[[midi.cc14]]
cc = 3
path = "/fx/kaleidoscope/zoom"
curve = "square"
"""
PLAIN = 'name = "plain"\n[[effects]]\nshader = "kaleidoscope"\n'


def write(folder, name, text):
    p = folder / f"{name}.toml"
    p.write_text(text)
    return p


@pytest.fixture
def ctx():
    """Per test, not per module: a headless context still current breaks the live show's glfw window."""
    c = create_headless_context()
    yield c
    release_context(c)


@pytest.fixture
def engine(ctx):
    e = Engine(ctx, CFG, AudioConfig(), live=False)
    yield e
    e.close()


def without_lines(mappings):
    return [dataclasses.replace(m, line=0) for m in mappings]


# ---- the file format -----------------------------------------------------------------------------

def test_both_tables_survive_dump_and_save(engine, tmp_path):
    text = ALIASED + MIDI.split("\n", 3)[3]                 # one preset with both tables
    p = parse_preset(text, write(tmp_path, "both", text))
    assert dict(p.osc_aliases) == {"/1/fader1": "/norm/fx/kaleidoscope/sides", "/1/fader2": "/master/brightness",
                                   "/2/push1": "/cmd/blackout"}
    assert [m.describe() for m in p.midi] == ["cc 21 -> /fx/kaleidoscope/sides", "cc14 3 -> /fx/kaleidoscope/zoom",
                                              "note 36 ch10 -> /cmd/preset/load"]
    again = parse_preset(dump_preset(p))
    assert dict(again.osc_aliases) == dict(p.osc_aliases)
    assert without_lines(again.midi) == without_lines(p.midi)
    # /cmd/preset/save writes them back too
    engine.preset_dirs = [tmp_path]
    engine.load_preset(str(tmp_path / "both.toml"))
    saved = parse_preset(engine.save_preset("kept").read_text())
    assert dict(saved.osc_aliases) == dict(p.osc_aliases)
    assert without_lines(saved.midi) == without_lines(p.midi)
    assert saved.midi[2].arg == "plain" and saved.midi[2].channel == 10 and saved.midi[1].curve == "square"


def test_the_example_preset_loads_with_its_mappings(engine):
    engine.load_preset(str(Path(__file__).resolve().parent.parent / "presets/examples/touchosc.toml"))
    frames(engine, 1)
    assert engine.hub.snapshot.aliases["/1/fader1"] == "/norm/fx/kaleidoscope/sides"
    assert [m.describe() for m in engine.midi_mappings][0] == "cc 21 -> /fx/kaleidoscope/sides"


HEAD = 'name = "bad"\n[[effects]]\nshader = "kaleidoscope"\n[osc.alias]\n"/1/fader1" = "/master/brightness"\n'


@pytest.mark.parametrize("name,extra,line,words", [
    ("alias-unknown-target", '"/1/fader2" = "/fx/kaleidoscope/nope"', 6, "unknown param '/fx/kaleidoscope/nope'"),
    ("alias-unknown-norm", '"/1/fader2" = "/norm/fx/nope/sides"', 6, "unknown param '/fx/nope/sides'"),
    ("alias-norm-of-bool", '"/1/toggle1" = "/norm/master/blackout"', 6, "a bool param has no 0..1 range"),
    ("alias-unknown-command", '"/2/push1" = "/cmd/nope"', 6, "unknown command '/cmd/nope'"),
    ("alias-shadows-param", '"/fx/kaleidoscope/angle" = "/master/brightness"', 6, "would shadow the param"),
    ("alias-shadows-cmd", '"/cmd/blackout" = "/master/brightness"', 6, "would shadow vj's own 'cmd'"),
    ("alias-shadows-norm", '"/norm/x" = "/master/brightness"', 6, "would shadow vj's own 'norm'"),
    ("alias-with-space", '"/1/fader 2" = "/master/brightness"', 6, "not a plain OSC address"),
    ("alias-pattern", '"/1/fader*" = "/master/brightness"', 6, "not a plain OSC address"),
    ("alias-number-target", '"/1/fader2" = 3', 6, "the target must be a string"),
    ("osc-unknown-key", '[osc.routes]\n"/a" = "/b"', 6, "[osc] holds one table"),
    ("midi-unknown-param", '[[midi.cc]]\ncc = 21\npath = "/fx/kaleidoscope/nope"', 6, "unknown param"),
    ("midi-cc-out-of-range", '[[midi.cc]]\ncc = 200\npath = "/master/brightness"', 7, "a whole number 0..127"),
    ("midi-unknown-mode", '[[midi.note]]\nnote = 1\npath = "/master/blackout"\nmode = "wobble"', 9,
     "unknown mode 'wobble' for [[midi.note]]"),
    ("midi-colour-param", '[[midi.cc]]\ncc = 1\npath = "/fx/kaleidoscope/center"', 6, "a point2d param is not one"),
    ("midi-unknown-kind", '[midi]\nknobs = 1', 7, "unknown key 'knobs' in [midi]"),
    ("midi-twice", '[[midi.cc]]\ncc = 1\npath = "/master/brightness"\n[[midi.cc]]\ncc = 1\n'
     'path = "/master/brightness"', 9, "mapped twice (also on line 6)"),
])
def test_a_bad_mapping_names_file_and_line_and_changes_nothing(engine, tmp_path, name, extra, line, words):
    engine.load_preset(str(write(tmp_path, "good", ALIASED)))
    frames(engine, 1)
    before, preset, snap = dict(engine.registry.values()), engine.preset, engine.hub.snapshot
    bad = write(tmp_path, f"preset-{name}", HEAD + extra + "\n")
    with pytest.raises(PresetError) as exc:
        engine.load_preset(str(bad))
    assert f"preset-{name}.toml:{line}: " in str(exc.value) and words in str(exc.value), str(exc.value)
    assert "\n" not in str(exc.value)
    frames(engine, 1)
    assert engine.preset is preset and dict(engine.registry.values()) == before
    assert dict(engine.hub.snapshot.aliases) == dict(snap.aliases) == dict(preset.osc_aliases)


# ---- OSC aliases through a real server ---------------------------------------------------------

@needs_liblo
def test_oscsend_to_an_alias_moves_its_param_and_feedback_follows(ctx, tmp_path):
    e = Engine(ctx, CFG, AudioConfig(), live=False)
    dump = Dump()
    s = OSCServer(e.hub, port=0, feedback=[("127.0.0.1", dump.port)]).start()
    try:
        e.load_preset(str(write(tmp_path, "aliased", ALIASED)))
        frames(e, 1)                                        # publishes the snapshot with the aliases
        assert dump.wait_line("/1/fader1 f 0.285714"), dump.lines()   # sides 6 on 2..16, at the alias too
        send(s.port, "/1/fader1", "f", 0.5)                 # a 0..1 fader across the param's range
        send(s.port, "/1/fader2", "f", 5.0)                 # in the param's units, clamped like the target's
        send(s.port, "/2/push1")                            # a command
        assert wait_for(lambda: e.changes.qsize() == 3)
        frames(e, 1)
        assert e.registry.get("/fx/kaleidoscope/sides") == 9.0
        assert e.registry.get("/master/brightness") == 2.0
        assert e.registry.get("/master/blackout") is True
        assert s.rejected == 0 and s.messages == 3
        assert dump.wait_line("/1/fader1 f 0.500000"), dump.lines()
        assert dump.wait_line("/1/fader2 f 2.000000"), dump.lines()
        assert dump.wait_line("/fx/kaleidoscope/sides f 9.000000"), dump.lines()
        send(s.port, "/1/fader2", "s", "loud")              # the target's type checks apply
        assert wait_for(lambda: s.rejected == 1)
        # another preset without the aliases: the address means nothing any more
        e.load_preset(str(write(tmp_path, "plain", PLAIN)))
        frames(e, 1)
        send(s.port, "/1/fader1", "f", 0.1)
        assert wait_for(lambda: s.rejected == 2)
        frames(e, 1)
        assert e.changes.empty() and e.registry.get("/fx/kaleidoscope/sides") == 6.0
    finally:
        s.close()
        dump.close()
        e.close()


# ---- MIDI mappings through JACK ------------------------------------------------------------------

@pytest.fixture(scope="module")
def jack():
    """test_midi's JACK server, stopped with PortAudio released: the live show's audio output attached
    PortAudio to it, and PortAudio aborts the process when it terminates after its JACK server died."""
    gen = _jack_unreleased.__wrapped__()
    server = next(gen)
    yield server
    with portaudio_released():
        next(gen, None)


CONTROLLER = """controller = "test"
[[cc]]
cc = 21
path = "/master/brightness"
[[cc]]
cc = 22
path = "/master/contrast"
"""


def frames_until(show: LiveShow, pred, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        show.frame()
        if pred():
            return True
    return pred()


def test_a_preset_cc_drives_its_param_in_the_live_show_until_the_preset_changes(
        jack, xvfb_display, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("DISPLAY", xvfb_display)
    monkeypatch.chdir(tmp_path)                          # presets/ here is one of the preset folders
    (tmp_path / "presets").mkdir()
    write(tmp_path / "presets", "knobs", MIDI)
    write(tmp_path / "presets", "plain", PLAIN)
    controller = tmp_path / "controller.toml"
    controller.write_text(CONTROLLER)
    ctl = Sender(unique("ctl"))
    show = LiveShow("demo", "knobs", RenderConfig(width_px=160, height_px=96), AudioConfig(),
                    ControlConfig(osc_port=0, midi_port=ctl.name, midi_map=str(controller), midi_api="jack"))

    def reg(path):                                           # the registry is replaced per scene
        return show.engine.registry.get(path)

    try:
        show.frame()
        assert show.midi.port_name == ctl.name, show.midi.status
        ctl.send(cc(22, 0))                                   # the controller's own mappings still work
        assert frames_until(show, lambda: reg("/master/contrast") == 0.0)
        for _ in range(5):                                    # the preset's cc 21 wins over the controller's
            ctl.send(cc(21, 127))
            if frames_until(show, lambda: reg("/fx/kaleidoscope/sides") == 16.0, 1.0):
                break
        assert reg("/fx/kaleidoscope/sides") == 16.0 and reg("/master/brightness") == 1.0
        ctl.send(note(36, channel=9))                         # the preset's pad loads "plain"
        assert frames_until(show, lambda: show.engine.preset.name == "plain")
        ctl.send(cc(21, 0))                                   # now the controller's brightness again
        assert frames_until(show, lambda: reg("/master/brightness") == 0.0)
        assert reg("/fx/kaleidoscope/sides") == 6.0
        assert [x.describe() for x in show.midi.router.mappings] == ["cc 21 -> /master/brightness",
                                                                     "cc 22 -> /master/contrast"]
        assert show.midi.router.preset_mappings == ()
    finally:
        show.close()
        ctl.close()
