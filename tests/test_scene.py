"""A scene owns its model: whatever replaces it, supersedes it or fails, each model made is closed exactly once."""

import threading
import time

import pytest

import probe_generator as probe
from test_engine import CFG, ctx  # noqa: F401  (fixture)
from test_hot_reload import SOLID
from vj.config import AudioConfig
from vj.engine import Engine
from vj.presets import PresetError

PRESET = """name = "%s"
[model]
name = "probe"
tag = "%s"
%s
[[effects]]
shader = "solid"
[values]
"/fx/solid/gain" = 1.0
%s
"""


def write(folder, name, tag, model="", values=""):
    (folder / f"{name}.toml").write_text(PRESET % (name, tag, model, values))


@pytest.fixture
def live(ctx, tmp_path, monkeypatch):  # noqa: F811
    probe.install(monkeypatch)
    BEFORE[:] = model_workers()           # other tests' workers still ending are not this engine's
    (tmp_path / "solid.fs").write_text(SOLID % "IMG_NORM_PIXEL(inputImage, isf_FragNormCoord).rgb")
    for tag in "abcdef":
        write(tmp_path, tag, tag)
    e = Engine(ctx, CFG, AudioConfig(), live=True, shader_dirs=(tmp_path,), preset_dirs=[tmp_path])
    e.load_preset("a")
    yield e, tmp_path
    e.close()
    probe.RELEASE.set()


def run_until(e, done, timeout_s=60.0):
    t, deadline = e._frame_t_s, time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:
        t += 1 / 30
        e.step_live(None, t, 1 / 30)
        time.sleep(0.002)
    assert done(), "timed out"


BEFORE: list[threading.Thread] = []


def model_workers():
    return [t for t in threading.enumerate() if t.name == "vj-model-worker" and t not in BEFORE]


def test_a_superseded_build_is_closed_when_it_finishes(live):
    e, _ = live
    e.switch_preset("b")
    e.switch_preset("c")           # b is still building (or built, not taken): it is not needed any more
    run_until(e, lambda: e.loading is None and e.preset.name == "c")
    run_until(e, lambda: probe.made("b") and probe.made("b")[0].closed)
    assert [g.closed for g in probe.made("b")] == [1]
    assert [g.closed for g in probe.made("a")] == [1]          # the scene c replaced
    assert [g.closed for g in probe.made("c")] == [0]          # playing
    run_until(e, lambda: len(model_workers()) == 1)            # b's and a's threads ended; c's plays


def test_a_scene_whose_first_frame_fails_is_closed_and_the_old_one_plays_on(live):
    e, folder = live
    write(folder, "bad", "bad", 'mode = "fail_first"')
    e.switch_preset("bad")
    run_until(e, lambda: e.loading is None)
    assert e.preset.name == "a" and "first frame" in e.preset_error
    assert [g.closed for g in probe.made("bad")] == [1]
    assert probe.made("a")[0].closed == 0


def test_a_preset_that_does_not_validate_closes_the_model_it_made(ctx, tmp_path, monkeypatch):  # noqa: F811
    probe.install(monkeypatch)
    (tmp_path / "solid.fs").write_text(SOLID % "IMG_NORM_PIXEL(inputImage, isf_FragNormCoord).rgb")
    write(tmp_path, "a", "a")
    write(tmp_path, "wrong", "wrong", "", '"/model/zoom" = "very"')
    e = Engine(ctx, CFG, AudioConfig(), live=False, shader_dirs=(tmp_path,), preset_dirs=[tmp_path])
    try:
        e.load_preset("a")
        with pytest.raises(PresetError):
            e.load_preset("wrong")
        assert [g.closed for g in probe.made("wrong")] == [1]
        assert e.preset.name == "a" and probe.made("a")[0].closed == 0
    finally:
        e.close()
    assert probe.made("a")[0].closed == 1


def test_scenes_with_the_same_model_hand_it_over_and_it_is_closed_once(live):
    e, folder = live
    write(folder, "a2", "a", "", '"/model/zoom" = 2.0')      # the same [model] as a: the same key
    gen = e.generator
    e.switch_preset("a2")
    assert e.preset.name == "a2" and e.generator is gen and gen.closed == 0
    e.switch_preset("a")
    assert e.generator is gen and gen.closed == 0
    e.close()
    assert gen.closed == 1
    e.close()                       # idempotent: still once
    assert gen.closed == 1


def test_many_changes_leave_one_model_and_one_worker(live):
    e, _ = live
    for i in range(24):
        e.switch_preset("abcdef"[i % 6])
        if i % 3 == 2:              # some land, some are superseded while they build
            run_until(e, lambda: e.loading is None)
    run_until(e, lambda: e.loading is None)
    run_until(e, lambda: all(g.closed for g in probe.MADE if g is not e.generator))
    assert [g.closed for g in probe.MADE if g is not e.generator] == [1] * (len(probe.MADE) - 1)
    assert e.generator.closed == 0
    run_until(e, lambda: len(model_workers()) == 1)
