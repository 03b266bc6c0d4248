"""Live model switches: the new model is built on a loader thread while the old one keeps playing."""

import time

import pytest

from test_engine import CFG, ctx  # noqa: F401  (fixture)
from test_hot_reload import SOLID
from vj.config import AudioConfig
from vj.engine import Engine

PRESET = """name = "%s"
[model]
name = "%s"
%s
[[effects]]
shader = "solid"
[values]
"/fx/solid/gain" = 1.0
"""


@pytest.fixture
def scenes(ctx, tmp_path):  # noqa: F811
    (tmp_path / "solid.fs").write_text(SOLID % "IMG_NORM_PIXEL(inputImage, isf_FragNormCoord).rgb")
    (tmp_path / "plasma.toml").write_text(PRESET % ("Plasma", "plasma", ""))
    (tmp_path / "gan.toml").write_text(PRESET % ("Gan", "stylegan", "seed = 3"))
    (tmp_path / "broken.toml").write_text(PRESET % ("Broken", "stylegan", 'checkpoint = "missing.pkl"'))
    e = Engine(ctx, CFG, AudioConfig(), live=True, shader_dirs=(tmp_path,), preset_dirs=[tmp_path])
    e.load_preset("plasma")
    yield e
    e.close()


def _run_until(e, done, t0=0.0, timeout_s=60.0):
    """Step live frames until done(); returns (frames stepped, the time reached)."""
    t, frames, deadline = t0, 0, time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:
        t += 1 / 30
        e.step_live(None, t, 1 / 30)
        frames += 1
        time.sleep(0.005)
    assert done(), "timed out"
    return frames, t


def test_a_new_model_loads_aside_and_fades_in(scenes):
    e = scenes
    old_gen, old_worker = e.generator, e.worker
    _run_until(e, lambda: e.model_frames >= 2)
    assert e.switch_preset("gan") is None                  # not switched yet: the model is being built
    assert e.loading == "Gan" and e.preset.name == "Plasma"
    while_loading = []

    def landed():
        if e.loading is not None:
            while_loading.append((e.generator is old_gen, e.preset.name))
        return e.loading is None
    frames, t = _run_until(e, landed)
    # Until the new model was ready the old scene played on with its own model.
    assert while_loading and set(while_loading) == {(True, "Plasma")}
    assert e.preset.name == "Gan" and type(e.generator).__name__ == "StyleGANGenerator"
    assert e.worker is not old_worker and old_worker._closed
    # The first frame of the new model was rendered on the loader thread and shows at once, dissolving
    # from the old scene's last picture over /preset/model_fade_s (1 s by default).
    assert e.model_error is None and e._morph is not None
    assert e._morph["dur"] == pytest.approx(1.0)
    _run_until(e, lambda: e._morph is None, t0=t)


def test_a_model_that_fails_to_build_keeps_the_old_scene(scenes, caplog):
    e = scenes
    gen = e.generator
    e.switch_preset("broken")
    _run_until(e, lambda: e.loading is None)
    assert e.preset.name == "Plasma" and e.generator is gen
    assert "missing.pkl" in e.preset_error
    assert any("missing.pkl" in r.getMessage() for r in caplog.records)


def test_the_newest_request_wins(scenes):
    e = scenes
    e.switch_preset("gan")
    e.switch_preset("plasma")          # same model as now: switches at once and drops the load in flight
    assert e.loading is None and e.preset.name == "Plasma"
    _run_until(e, lambda: e.model_frames >= 3)
    assert e.preset.name == "Plasma" and type(e.generator).__name__ == "PlasmaGenerator"


def test_the_model_switch_command_keeps_the_scene(scenes):
    from vj.params import Change
    e = scenes
    e.registry.set("/fx/solid/gain", 0.5)
    e.changes.put(Change("/cmd/model/switch", "stylegan", "osc"))
    e.changes.put(Change("/cmd/model/switch", "no-such-model", "osc"))     # logged, ignored
    _run_until(e, lambda: type(e.generator).__name__ == "StyleGANGenerator")
    assert [x.name for x in e.preset.effects] == ["solid"] and e.preset.model == "stylegan"
    assert "/model/psi" in e.registry
