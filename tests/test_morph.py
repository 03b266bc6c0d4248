"""Scene changes a performer makes: morphing params and the picture over beats, quantised to the beat."""

import dataclasses
import math

import numpy as np
import pytest

from test_engine import CFG, ctx  # noqa: F401  (fixture)
from test_hot_reload import SOLID
from vj.audio.features import SILENT
from vj.config import AudioConfig
from vj.engine import Engine

PRESET = """name = "%s"
[model]
name = "plasma"
[[effects]]
shader = "solid"
[values]
"/fx/solid/gain" = %s
"/master/model_blend" = %s
"""


@pytest.fixture
def scenes(ctx, tmp_path):  # noqa: F811
    (tmp_path / "solid.fs").write_text(SOLID % "vec3(1.0, 0.0, 0.0)")
    (tmp_path / "dim.toml").write_text(PRESET % ("Dim", "0.0", "0.0"))
    (tmp_path / "lit.toml").write_text(PRESET % ("Lit", "1.0", "1.0"))
    e = Engine(ctx, CFG, AudioConfig(), live=True, shader_dirs=(tmp_path,), preset_dirs=[tmp_path])
    e.load_preset("dim")
    yield e
    e.close()


def _at(e, t):
    e.step_live(None, t, 1 / 30)
    return e.read_rgb().reshape(-1, 3).mean(axis=0)


def test_a_morph_crossfades_params_and_picture_over_the_beats(scenes):
    e = scenes
    e.registry.set("/preset/morph_beats", 2.0)              # no tempo known: 120 BPM, so 1 s
    assert _at(e, 0.0)[0] < 2                               # dim: gain 0
    e.switch_preset("lit")
    assert e.preset.name == "Lit"
    mid = _at(e, 0.5)                                       # half-way: smoothstep(0.5) = 0.5
    # A frame late (1/30 of the 1 s morph, slope 1.5) would be 0.05 off; float64 leaves ~1e-16.
    assert e.registry.get("/fx/solid/gain") == pytest.approx(0.5, abs=0.01)
    assert e.registry.get("/master/model_blend") == pytest.approx(0.5, abs=0.01)
    # The picture dissolves from the old scene's last frame (black) to the new one (red at gain 0.5): 8-bit
    # roundings of the frames and the mix, <= 1.5 levels (measured 0.25); no dissolve or no gain is 64 levels off.
    assert mid[0] == pytest.approx(255 * 0.5 * 0.5, abs=3)
    end = _at(e, 1.05)
    assert e.registry.get("/fx/solid/gain") == 1.0 and end[0] > 252
    assert e._morph is None
    # Morph length 0 cuts.
    e.registry.set("/preset/morph_beats", 0.0)
    e.switch_preset("dim")
    assert e.registry.get("/fx/solid/gain") == 0.0 and _at(e, 1.1)[0] < 2


def test_a_quantised_switch_waits_for_the_beat(scenes):
    e = scenes
    e.registry.set("/preset/quantize", "beat")
    assert e.switch_preset("lit") is None
    _at(e, 0.1)
    assert e.preset.name == "Dim"                           # no beat yet
    e.features = dataclasses.replace(SILENT, beat=True)    # the analyser's verdict for this frame: a beat
    e._scene_tick(0.2)
    assert e.preset.name == "Lit"


def test_a_quantised_switch_gives_up_waiting_in_silence(scenes):
    e = scenes
    e.registry.set("/preset/quantize", "bar")
    e.switch_preset("lit")
    _at(e, 1.0)
    assert e.preset.name == "Dim"
    _at(e, 5.5)                                             # QUANTIZE_WAIT_S without a downbeat
    assert e.preset.name == "Lit"


CPPN_PRESET = """name = "%s"
[model]
name = "cppn"
seed = %d
chunk_px = %d
hidden = 8
layers = 2
[[effects]]
shader = "solid"
[values]
"/model/seed" = %d
"/model/speed" = 0.4
"""


def _angle(a, b):
    return math.acos(min(1.0, max(-1.0, float(a @ b) / (np.linalg.norm(a) * np.linalg.norm(b)))))


@pytest.fixture
def cppn_scenes(ctx, tmp_path):  # noqa: F811
    (tmp_path / "solid.fs").write_text(SOLID % "vec3(1.0, 0.0, 0.0)")
    # a and b: the same network (chunk_px only splits the work) walking different keyframes; c: another network.
    (tmp_path / "a.toml").write_text(CPPN_PRESET % ("A", 3, 4096, 1))
    (tmp_path / "b.toml").write_text(CPPN_PRESET % ("B", 3, 2048, 7))
    (tmp_path / "c.toml").write_text(CPPN_PRESET % ("C", 4, 4096, 7))
    e = Engine(ctx, CFG, AudioConfig(), live=False, shader_dirs=(tmp_path,), preset_dirs=[tmp_path])
    e.load_preset("a")
    yield e
    e.close()


def _walk(e, t0_s, t1_s, dt_s=0.125):
    """Frames from t0_s to t1_s in steps of dt_s (a power of two: the times add up exactly).

    Returns {t: latent} and {t: the walk's own latent at that frame (silence: the spline point)}."""
    zs, walks = {}, {}
    t = t0_s
    while t <= t1_s:
        _, args = e.prepare(None, t, dt_s)
        zs[t] = np.array(args.z)
        walk = e.generator.walk
        walks[t] = walk.path(walk.seed, walk.pos)
        t += dt_s
    return zs, walks


def test_a_morph_between_models_of_one_latent_space_slerps_the_latent(cppn_scenes):
    e = cppn_scenes
    e.registry.set("/preset/morph_beats", 2.0)              # no tempo known: 120 BPM, so 1 s
    old_z = _walk(e, 0.125, 1.0)[0][1.0]
    old = e.generator
    e.switch_preset("b", at_s=1.125)
    new = e.generator
    assert new is not old and new.latent_space() == old.latent_space()
    zs, walks = _walk(e, 1.125, 2.25)
    assert new.walk.seed == 7
    # float64 latents of length sqrt(12): a few ulp (1e-15) of rounding against bounds of 1e-12 and 1e-9 (angles).
    np.testing.assert_allclose(zs[1.125], old_z, atol=1e-12)    # the first frame starts at the old latent
    # Half-way (smoothstep(0.5) = 0.5): on the great circle from the old latent to the new walk's latent.
    mid_walk = walks[1.625]
    theta = _angle(old_z, mid_walk)
    assert theta > 0.3                                        # the two walks really are apart
    assert np.linalg.norm(zs[1.625]) == pytest.approx(math.sqrt(new.z_dim), rel=1e-9)
    assert _angle(zs[1.625], old_z) == pytest.approx(0.5 * theta, abs=1e-9)
    assert _angle(zs[1.625], mid_walk) == pytest.approx(0.5 * theta, abs=1e-9)
    # At the end of the morph the latent is the new walk's own.
    np.testing.assert_allclose(zs[2.125], walks[2.125], atol=1e-12)
    np.testing.assert_allclose(zs[2.25], walks[2.25], atol=1e-12)
    assert not np.allclose(zs[1.375], walks[1.375])


def test_a_morph_between_different_networks_does_not_slerp(cppn_scenes):
    e = cppn_scenes
    e.registry.set("/preset/morph_beats", 2.0)
    old_z = _walk(e, 0.125, 1.0)[0][1.0]
    old = e.generator
    e.switch_preset("c", at_s=1.125)
    assert e.generator.latent_space() != old.latent_space()
    zs, walks = _walk(e, 1.125, 1.125)
    assert not np.allclose(zs[1.125], old_z)
    np.testing.assert_allclose(zs[1.125], walks[1.125], atol=1e-12)
