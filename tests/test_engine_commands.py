"""Commands (/cmd/...) on the engine's change queue, and the snapshot control servers read."""

import threading

import numpy as np
import pytest

from test_engine import CFG, ctx, engine, frames  # noqa: F401  (fixtures)
from vj.config import AudioConfig
from vj.engine import Engine
from vj.params import Change
from vj.presets import load_preset


def test_preset_commands_load_step_and_survive_bad_names(engine):
    engine.load_preset("default")
    engine.changes.put(Change("/cmd/preset/load", "nebula", "osc"))
    frames(engine, 1)
    assert engine.preset.name == "Nebula"
    engine.changes.put(Change("/cmd/preset/load", "no-such-preset", "osc"))
    engine.changes.put(Change("/cmd/preset/load", 3.0, "osc"))
    engine.changes.put(Change("/cmd/does/not/exist", None, "osc"))
    frames(engine, 1)
    assert engine.preset.name == "Nebula"                    # a bad command changes nothing
    engine.changes.put(Change("/cmd/preset/next", None, "osc"))
    frames(engine, 1)
    assert engine.preset.name != "Nebula"


def test_blackout_and_freeze_toggle_or_set(engine):
    engine.load_preset("default")
    engine.changes.put(Change("/cmd/blackout", None))
    frames(engine, 1)
    assert engine.registry.get("/master/blackout") is True
    engine.changes.put(Change("/cmd/blackout", None))
    engine.changes.put(Change("/cmd/freeze", True))
    frames(engine, 1)
    assert engine.registry.get("/master/blackout") is False and engine.registry.get("/master/freeze") is True


def test_save_writes_a_preset_that_loads_back_with_the_same_values(ctx, tmp_path):  # noqa: F811
    e = Engine(ctx, CFG, AudioConfig(), live=False, preset_dirs=[tmp_path])
    try:
        e.load_preset(load_preset("prism"))
        e.registry.set("/fx/mirror/mode", 1)
        e.registry.set("/model/zoom", 2.5)
        e.changes.put(Change("/cmd/preset/save", "my-set", "osc"))
        e.changes.put(Change("/cmd/preset/save", "../escape", "osc"))      # refused: not a plain name
        frames(e, 1)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["my-set.toml"]
        saved = load_preset(str(tmp_path / "my-set.toml"))
        assert saved.values["/fx/mirror/mode"] == 1 and saved.values["/model/zoom"] == 2.5
        assert [r.target for r in saved.routes] == [r.target for r in e.modulator.routes]
        e.registry.set("/model/zoom", 1.0)
        e.load_preset(saved)
        assert e.registry.get("/model/zoom") == 2.5
    finally:
        e.close()


def test_snapshot_follows_values_and_wakes_waiters(engine):
    engine.load_preset("default")
    frames(engine, 1)
    snap = engine.hub.snapshot
    assert snap.preset == "Default" and "default" in snap.presets
    assert snap.values["/master/blackout"] is False
    assert any(p.path == "/fx/kaleidoscope/sides" for p in snap.params)
    assert set(snap.features) >= {"level", "bass", "beat", "bpm"}
    frames(engine, 2)
    assert engine.hub.snapshot.version == snap.version          # nothing changed: same version
    got = {}

    def waiter():
        got["snap"] = engine.hub.wait_newer(snap.version, timeout_s=5.0)

    t = threading.Thread(target=waiter)
    t.start()
    engine.changes.put(Change("/master/blackout", True, "osc"))
    frames(engine, 1)
    t.join(5)
    assert got["snap"].version > snap.version and got["snap"].values["/master/blackout"] is True


def test_tap_reaches_the_beat_tracker(engine):
    engine.load_preset("default")
    silence = np.zeros(1600, np.float32)                       # one 30 fps frame of audio at 48 kHz
    for i in range(75):
        engine.step_offline(silence, i / 30, 1 / 30)
        if i % 15 == 0:                                         # every 0.5 s: 120 BPM
            engine.changes.put(Change("/cmd/tap", None, "key"))
    # A tap lands on the analysis hop it arrives in (512 samples, 10.7 ms): the slope fitted through 5 taps
    # moves by at most 0.6 hop a beat, 6.4 ms of 500 ms, 1.5 BPM. A tap counted twice or missed: 20-40 BPM off.
    assert engine.features.bpm == pytest.approx(120.0, abs=2.0)
