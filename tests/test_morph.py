"""Scene changes a performer makes: morphing params and the picture over beats, quantised to the beat."""

import dataclasses

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
    assert e.registry.get("/fx/solid/gain") == pytest.approx(0.5, abs=0.01)
    assert e.registry.get("/master/model_blend") == pytest.approx(0.5, abs=0.01)
    # The picture dissolves from the old scene's last frame (black) to the new one (red at gain 0.5).
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
