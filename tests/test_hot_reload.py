"""Hot reload: shader and preset files edited on disk apply between frames; broken edits keep the last good."""

import os

import numpy as np

from test_engine import CFG, ctx  # noqa: F401  (fixture)
from vj.config import AudioConfig
from vj.engine import Engine

SOLID = """/*{
    "ISFVSN": "2.0",
    "INPUTS": [
        {"NAME": "inputImage", "TYPE": "image"},
        {"NAME": "gain", "TYPE": "float", "DEFAULT": 1.0, "MIN": 0.0, "MAX": 1.0}
    ]
}*/
void main() { gl_FragColor = vec4(%s * gain, 1.0); }
"""

PRESET = """name = "Hot"
[model]
name = "plasma"
[[effects]]
shader = "solid"
[values]
"/fx/solid/gain" = %s
"""


def _write(path, text, bump):
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + bump * 1_000_000_000))   # a clearly newer mtime


def _frame(e, t):
    e.step_live(None, t, 1 / 30)
    return e.read_rgb().reshape(-1, 3).mean(axis=0)


def test_edits_apply_and_broken_edits_keep_the_last_good_version(ctx, tmp_path):  # noqa: F811
    shader, preset = tmp_path / "solid.fs", tmp_path / "hot.toml"
    _write(shader, SOLID % "vec3(0.0, 0.0, 1.0)", 0)
    _write(preset, PRESET % "1.0", 0)
    e = Engine(ctx, CFG, AudioConfig(), live=True, shader_dirs=(tmp_path,), preset_dirs=[tmp_path])
    try:
        e.load_preset("hot")
        # 0.0 and 1.0 are exact levels in a one-colour frame: within one rounding (measured exact); a wrong or
        # stale colour is 255 off.
        assert np.allclose(_frame(e, 0.0), [0, 0, 255], atol=0.5)

        _write(shader, SOLID % "vec3(1.0, 0.0, 0.0)", 1)             # edited: red
        e.hot_reload(now_s=1e9)
        assert np.allclose(_frame(e, 0.1), [255, 0, 0], atol=0.5)
        assert not e.chain.errors

        _write(shader, SOLID % "vec3(1.0, 0.0, 0.0) +", 2)           # broken: the red stays up
        e.hot_reload(now_s=2e9)
        assert np.allclose(_frame(e, 0.2), [255, 0, 0], atol=0.5)
        assert "solid" in e.chain.errors

        _write(preset, PRESET % "0.5", 3)                           # the preset file: new value
        e.hot_reload(now_s=3e9)
        assert e.registry.get("/fx/solid/gain") == 0.5 and e.preset_error is None

        _write(preset, PRESET % '"loud"', 4)                        # broken preset: nothing changes
        e.hot_reload(now_s=4e9)
        assert e.registry.get("/fx/solid/gain") == 0.5
        assert "hot.toml" in e.preset_error and "gain" in e.preset_error
    finally:
        e.close()
