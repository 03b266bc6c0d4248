"""The engine on real GL (Mesa EGL): presets, OSC from oscsend into the rendered frame, master controls."""

import shutil
import subprocess
import time

import numpy as np
import pytest

from vj.audio.features import Features
from vj.config import AudioConfig, RenderConfig
from vj.control.osc import OSCServer
from vj.engine import Engine, merge_hops
from vj.gfx.context import create_headless_context, release_context
from vj.presets import PresetError, list_presets

CFG = RenderConfig(width_px=160, height_px=96, fps=30.0, model_width_px=96, model_height_px=54)


@pytest.fixture(scope="module")
def ctx():
    c = create_headless_context()
    yield c
    release_context(c)


@pytest.fixture
def engine(ctx):
    assert ctx.error == "GL_NO_ERROR"
    e = Engine(ctx, CFG, AudioConfig(), live=False)
    yield e
    e.close()
    assert ctx.error == "GL_NO_ERROR"


def frames(engine, n, audio=None):
    out = None
    for i in range(n):
        chunk = None if audio is None else audio[i * 1600:(i + 1) * 1600]
        engine.step_offline(chunk, i / 30, 1 / 30)
        out = engine.read_rgb(None)
    return out.astype(np.float32)


def test_every_shipped_preset_loads_and_they_look_different(engine):
    names = list_presets()
    assert len(names) >= 3
    pics = {}
    for name in names:
        engine.load_preset(name)
        pic = frames(engine, 5)
        assert pic.std() > 5, f"{name} renders a flat picture"
        pics[name] = pic
    for a in names:
        for b in names:
            if a < b:
                assert np.abs(pics[a] - pics[b]).mean() > 10, f"{a} and {b} look alike"


def test_a_bad_preset_changes_nothing(engine, tmp_path):
    engine.load_preset("default")
    before = dict(engine.registry.values())
    bad = tmp_path / "preset-unknown-path.toml"
    bad.write_text('# "/fx/kaleido/nope" in a comment is not the line to show\nname = "bad"\n[[effects]]\n'
                   'shader = "kaleido"\n[values]\n"/fx/kaleido/nope" = 1.0\n')
    with pytest.raises(PresetError, match=r"preset-unknown-path.toml:6: unknown param"):
        engine.load_preset(str(bad))
    assert dict(engine.registry.values()) == before


def test_on_llvmpipe_every_pass_is_finished_through_ctypes_without_the_gil(engine):
    # moderngl keeps the GIL while it waits for the rasteriser; a ctypes call lets go of it. The engine
    # finishes each pass (and the master) through ctypes' glFinish so other threads run meanwhile.
    import ctypes
    assert isinstance(engine.chain.after_pass, ctypes._CFuncPtr)
    engine.load_preset("default")                      # feedback (2 passes), kaleidoscope (1), bloom (6)
    calls = []
    finish = engine.chain.after_pass
    engine.chain.after_pass = lambda: (calls.append(1), finish())
    engine.step_offline(None, 0.0, 1 / 30)
    assert len(calls) == 2 + 1 + 6 + 1
    engine.chain.after_pass = finish


def test_a_scene_sets_its_model_size_and_a_bad_size_names_its_line(engine, tmp_path):
    # Without a size the model renders at the config's (--model-size); a scene's [model] size wins.
    engine.load_preset("default")
    assert engine.generator.output_size == (96, 54)
    big = tmp_path / "big.toml"
    big.write_text('name = "big"\n[model]\nname = "cppn"\nsize = [128, 72]\n')
    engine.load_preset(str(big))
    assert engine.generator.output_size == (128, 72)
    engine.step_offline(None, 0.0, 1 / 30)
    assert engine.fader.newest.size == (128, 72)
    text = tmp_path / "text.toml"
    text.write_text('name = "text"\n[model]\nname = "cppn"\nsize = "64x36"\n')
    engine.load_preset(str(text))
    assert engine.generator.output_size == (64, 36)
    for value, reason in (('"wide"', "size must be"), ("[64]", "size must be"), ("[4, 4]", "size 4x4 is out of range"),
                          ("[64.5, 36]", "size must be")):
        bad = tmp_path / "bad-size.toml"
        bad.write_text(f'name = "bad"\n[model]\nname = "cppn"\nsize = {value}\n')
        with pytest.raises(PresetError, match=rf"bad-size.toml:4: model 'cppn': {reason}"):
            engine.load_preset(str(bad))
    assert engine.generator.output_size == (64, 36)              # the last good scene goes on


@pytest.mark.skipif(shutil.which("oscsend") is None, reason="liblo-tools missing")
def test_oscsend_changes_the_rendered_frame(engine):
    engine.load_preset("default")
    lit = frames(engine, 4)
    assert lit.mean() > 10
    server = OSCServer(engine.changes, port=0).start()
    try:
        subprocess.run(["oscsend", "127.0.0.1", str(server.port), "/master/brightness", "f", "0"], check=True)
        deadline = time.monotonic() + 3
        while engine.changes.empty() and time.monotonic() < deadline:
            time.sleep(0.01)
        dark = frames(engine, 30)  # brightness is smoothed over 50 ms
    finally:
        server.close()
    assert engine.registry.get("/master/brightness") == 0.0
    assert dark.max() < 3, "brightness 0 over OSC should give a black frame"


def test_blackout_fades_and_freeze_holds(engine):
    engine.load_preset("default")
    frames(engine, 3)
    engine.registry.set("/master/freeze", True)
    a = frames(engine, 1)
    b = frames(engine, 5)
    assert np.array_equal(a, b), "freeze must hold the picture"
    engine.registry.set("/master/freeze", False)
    engine.registry.set("/master/blackout", True)
    engine.registry.set("/master/blackout_fade_s", 0.2)
    mid = frames(engine, 3)       # 0.1 s into a 0.2 s fade
    end = frames(engine, 6)
    assert end.max() < 1 and mid.mean() > 1


def test_merge_hops_keeps_onsets_between_frames():
    hops = [Features(onset=True, onset_strength=0.9), Features(bass=0.5)]
    f = merge_hops(hops, Features())
    assert f.onset and f.onset_strength == 0.9 and f.bass == 0.5
    assert not merge_hops([], f).onset


def test_same_audio_same_frames(ctx):
    rng = np.random.default_rng(1)
    audio = (rng.standard_normal(48000) * 0.3).astype(np.float32)
    pics = []
    for _ in range(2):
        e = Engine(ctx, CFG, AudioConfig(), live=False)
        e.load_preset("default")
        pics.append(frames(e, 12, audio))
        e.close()
    assert np.array_equal(pics[0], pics[1])


def test_offline_frames_are_shaded_with_their_own_audio_features(engine, monkeypatch):
    """OfflinePipeline prepares frames ahead of shading them: each frame's shaders still get that frame's
    features (its waveform and spectrum textures), not the newest prepared frame's."""
    from vj.engine import OfflinePipeline
    engine.load_preset("default")
    seen = []
    render = engine.chain.render

    def spy(source, values, features, t_s, dt_s):
        seen.append((round(t_s, 6), features.t_s))
        return render(source, values, features, t_s, dt_s)
    monkeypatch.setattr(engine.chain, "render", spy)
    fps = 30
    block = np.zeros(AudioConfig().sample_rate_hz // fps, np.float32)
    prepared = {}
    pipe = OfflinePipeline(engine, depth=2)
    for i in range(8):
        pipe.push(block, i / fps, 1 / fps, lambda tex: None)
        prepared[round(i / fps, 6)] = engine.features.t_s
    pipe.finish(lambda tex: None)
    assert [t for t, _ in seen] == sorted(prepared)
    assert all(f == prepared[t] for t, f in seen), seen
    assert len({f for _, f in seen}) == 8                 # each frame its own audio time


@pytest.mark.parametrize("preset, exact", [("prism", True), ("default", False)])
def test_a_render_that_skips_its_first_frames_matches_one_that_drew_them(ctx, preset, exact):
    """Engine.skip runs a frame's cheap state forward without a picture. From the first drawn frame on, a render
    that skipped frames 0..k-1 equals one that drew them, exactly, for a scene without feedback (prism); the
    default scene's feedback buffer remembers the frames it did not see, so it differs (issue 20's warm-up)."""
    from vj.audio.demo import demo_track
    from vj.engine import OfflinePipeline
    fps, n, k = 30, 24, 12
    acfg = AudioConfig()
    spf = acfg.sample_rate_hz // fps
    audio = demo_track(acfg.sample_rate_hz, duration_s=2.0).mean(axis=1).astype(np.float32)

    def render(skip: int) -> list[np.ndarray]:
        e = Engine(ctx, CFG, acfg, live=False)
        try:
            e.load_preset(preset)
            out = []
            pipe = OfflinePipeline(e)
            for i in range(n):
                block = audio[i * spf:(i + 1) * spf]
                if i < skip:
                    e.skip(block, i / fps, 1 / fps)
                else:
                    pipe.push(block, i / fps, 1 / fps, lambda tex: out.append(e.read_rgb(tex)))
            pipe.finish(lambda tex: out.append(e.read_rgb(tex)))
            return out
        finally:
            e.close()
    whole, skipped = render(0), render(k)
    assert len(skipped) == n - k
    same = [np.array_equal(a, b) for a, b in zip(whole[k:], skipped)]
    if exact:
        assert all(same), same
        assert not np.array_equal(whole[k], whole[k + 1])          # a moving picture, not a still
    else:
        assert not same[0]
