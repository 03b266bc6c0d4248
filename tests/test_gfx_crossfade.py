"""Cross-fading between the two newest model frames (live output)."""

import numpy as np
import pytest

from gl_helpers import gl  # noqa: F401  (fixture)
from vj.gfx.chain import read_rgb
from vj.gfx.crossfade import ModelFader


def _grey(v: float) -> np.ndarray:
    return np.full((8, 16, 3), v, np.float32)


def test_the_fade_runs_over_the_model_frame_interval(gl):
    fader = ModelFader(gl)
    try:
        fader.push(_grey(0.0), 0.0)
        assert fader.texture(0.0, 0.02, blend=1.0) is fader.newest     # one frame: nothing to fade from
        fader.push(_grey(1.0), 0.1)
        assert fader.interval_s == pytest.approx(0.1)
        # The frame drawn at arrival is already one frame (20 ms) into the 100 ms fade.
        for t, want in ((0.1, 0.2), (0.14, 0.6), (0.17, 0.9)):
            got = read_rgb(fader.texture(t, 0.02, blend=1.0)).mean() / 255
            # One 8-bit rounding of mix(0, 1, k), k in float32: within 0.5 level (0.9 * 255 is a tie), so 1/255.
            # A fade one display frame (20 ms) early or late is 0.2 away.
            assert got == pytest.approx(want, abs=1 / 255), t
        done = fader.texture(0.2, 0.02, blend=1.0)
        assert done is fader.newest and read_rgb(done).mean() == 255
        # Half the interval: the fade is twice as fast; 0 cuts straight to the newest frame.
        fader.push(_grey(0.0), 0.2)
        assert read_rgb(fader.texture(0.22, 0.02, blend=0.5)).mean() / 255 == pytest.approx(0.2, abs=1 / 255)
        assert fader.texture(0.2, 0.02, blend=0.0) is fader.newest
    finally:
        fader.release()


def test_a_new_size_shows_the_newest_frame_without_mixing(gl):
    fader = ModelFader(gl)
    try:
        fader.push(_grey(0.0), 0.0)
        fader.push(np.full((4, 4, 3), 1.0, np.float32), 0.1)
        tex = fader.texture(0.1, 0.02, blend=1.0)
        assert tex is fader.newest and tex.size == (4, 4)
    finally:
        fader.release()
