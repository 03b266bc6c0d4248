"""The shipped effects on real GL (Mesa EGL), checked against numpy references on tiny images."""

import math

import numpy as np
import pytest
from gl_helpers import SHADERS, as_float, assert_close, gl, random_image, render, shipped  # noqa: F401

from vj.gfx.chain import Chain, read_rgb
from vj.gfx.shadertest import test_pattern as make_test_pattern
from vj.gfx.upload import TextureUploader

SHIPPED = sorted(p.stem for p in SHADERS.glob("*.fs"))

# Settings that make each effect visibly do something (defaults of a few are the identity on purpose).
ACTIVE = {
    "bloom": {"threshold": 0.3, "intensity": 2.0},
    "chromatic": {"amount": 0.03},
    "colorgrade": {"hueShift": 90.0, "paletteMix": 0.5},
    "displace": {"amount": 0.2},
    "feedback": {},
    "film": {"vignette": 1.0, "grain": 0.3},
    "flash": {"flash": 0.6},
    "glitch": {"amount": 1.0},
    "kaleidoscope": {},
    "mirror": {"mode": 2},
    "pixelate": {"cellSize": 6.0},
    "trails": {},
    "tunnel": {},
}


def test_there_are_at_least_twelve_effects():
    assert len(SHIPPED) >= 12
    assert set(ACTIVE) == set(SHIPPED), "add the new effect to ACTIVE"


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_effect_renders_non_degenerate_output(gl, name):
    shader = shipped(name)
    image = make_test_pattern(64, 36)
    settings = {f"/fx/{name}/{k}": v for k, v in ACTIVE[name].items()}
    # The frame changes between renders so that feedback effects have something to echo.
    frames = [settings, settings, settings]
    outs = render(gl, [(name, shader)], image, frames)
    out = outs[-1]
    assert out.shape == (36, 64, 3)
    assert out.std() > 20, f"{name}: output is nearly flat (std {out.std():.1f})"
    assert len(np.unique(out.reshape(-1, 3), axis=0)) >= 4, f"{name}: only a handful of colours"
    if name not in ("feedback", "trails"):   # a still input leaves those two unchanged, by design
        assert np.abs(out.astype(int) - image).mean() > 2, f"{name}: active settings change nothing"


def test_pixelate_matches_numpy(gl):
    img = random_image(9, 18, seed=1)
    (out,) = render(gl, [("pixelate", shipped("pixelate"))], img, {"/fx/pixelate/cellSize": 3.0})
    h, w = img.shape[:2]
    # Cells are anchored at GL's bottom-left; numpy row 0 is the top.
    g = h - 1 - np.arange(h)                       # GL row of each numpy row
    rows = h - 1 - (3 * (g // 3) + 1)
    cols = 3 * (np.arange(w) // 3) + 1
    assert_close(out, img[rows][:, cols], atol=0, what="pixelate")      # exact: texel-centre fetches


@pytest.mark.parametrize("mode", [0, 1, 2])
@pytest.mark.parametrize("flip", [False, True])
def test_mirror_matches_numpy(gl, mode, flip):
    img = random_image(8, 16, seed=2)
    (out,) = render(gl, [("mirror", shipped("mirror"))], img, {"/fx/mirror/mode": mode, "/fx/mirror/flip": flip})
    h, w = img.shape[:2]
    x, y = np.arange(w), np.arange(h)
    cols = np.where(x < w // 2, x, w - 1 - x) if not flip else np.where(x < w // 2, w - 1 - x, x)
    rows = np.where(y < h // 2, y, h - 1 - y) if not flip else np.where(y < h // 2, h - 1 - y, y)
    expected = img
    if mode in (0, 2):
        expected = expected[:, cols]
    if mode in (1, 2):
        expected = expected[rows]
    assert_close(out, expected, atol=0, what=f"mirror mode {mode} flip {flip}")   # exact: texel-centre fetches


def _cosine_palette(t, which):
    a, b, c, d = np.full(3, 0.5), np.full(3, 0.5), np.ones(3), np.array([0.0, 0.33, 0.67])
    if which == 1:
        c, d, b = np.array([1.0, 1.0, 0.5]), np.array([0.0, 0.1, 0.2]), np.array([0.5, 0.4, 0.3])
    elif which == 2:
        a, b, d = np.array([0.2, 0.4, 0.6]), np.array([0.2, 0.3, 0.4]), np.array([0.5, 0.6, 0.7])
    elif which == 3:
        c, d = np.array([2.0, 1.0, 0.0]), np.array([0.5, 0.2, 0.25])
    return a + b * np.cos(2 * math.pi * (c * t[..., None] + d))


def colorgrade_reference(img, hue, sat, contrast, gamma, pmix, pshift, palette):
    c = as_float(img)
    lw = np.array([0.299, 0.587, 0.114])
    y = c @ lw
    i = c @ np.array([0.596, -0.274, -0.322])
    q = c @ np.array([0.211, -0.523, 0.312])
    h = math.radians(hue)
    i2, q2 = i * math.cos(h) - q * math.sin(h), i * math.sin(h) + q * math.cos(h)
    c = np.stack([y + 0.956 * i2 + 0.621 * q2, y - 0.272 * i2 - 0.647 * q2, y - 1.106 * i2 + 1.703 * q2], -1)
    luma = c @ lw
    c = luma[..., None] + (c - luma[..., None]) * sat
    c = (c - 0.5) * contrast + 0.5
    c = np.clip(c, 0, 1) ** (1.0 / gamma)
    t = c @ lw + pshift
    c = c + (_cosine_palette(t, palette) - c) * pmix
    return np.round(np.clip(c, 0, 1) * 255).astype(np.uint8)


@pytest.mark.parametrize("settings", [
    dict(hue=0.0, sat=1.0, contrast=1.0, gamma=1.0, pmix=0.0, pshift=0.0, palette=0),
    dict(hue=40.0, sat=1.4, contrast=1.2, gamma=0.8, pmix=0.0, pshift=0.0, palette=0),
    dict(hue=-100.0, sat=0.5, contrast=0.8, gamma=1.6, pmix=0.4, pshift=0.1, palette=2),
    dict(hue=0.0, sat=1.0, contrast=1.0, gamma=1.0, pmix=1.0, pshift=0.3, palette=3),
])
def test_colorgrade_matches_numpy(gl, settings):
    img = random_image(6, 10, seed=3)
    names = dict(hue="hueShift", sat="saturation", contrast="contrast", gamma="gamma", pmix="paletteMix",
                 pshift="paletteShift", palette="palette")
    frame = {f"/fx/grade/{names[k]}": v for k, v in settings.items()}
    (out,) = render(gl, [("grade", shipped("colorgrade"))], img, frame)
    # Both sides round once; the float32 shader (llvmpipe's polynomial cos and pow, ~1e-5 relative) is within
    # 0.01 level of the float64 reference, so 1 level. Measured worst 1, on every CPU setting; a wrong hue sign,
    # palette or channel order is off by tens of levels.
    assert_close(out, colorgrade_reference(img, **settings), atol=1, what="colour grade")


def test_chromatic_aberration_zero_amount_is_identity(gl):
    img = random_image(8, 16, seed=4)
    (out,) = render(gl, [("ca", shipped("chromatic"))], img, {"/fx/ca/amount": 0.0, "/fx/ca/radial": 0.7})
    assert_close(out, img, atol=0, what="chromatic aberration at amount 0")      # exact: texel-centre fetches


def test_chromatic_aberration_shifts_red_and_blue_one_pixel(gl):
    img = random_image(32, 16, seed=5)
    # d.x = amount * H / W picture widths = 1 texel when amount = 1 / H.
    frame = {"/fx/ca/amount": 1.0 / 32.0, "/fx/ca/angle": 0.0, "/fx/ca/radial": 0.0}
    (out,) = render(gl, [("ca", shipped("chromatic"))], img, frame)
    x = np.arange(16)
    expected = img.copy()
    expected[:, :, 0] = img[:, np.minimum(x + 1, 15), 0]
    expected[:, :, 2] = img[:, np.maximum(x - 1, 0), 2]
    # Exact: the shifted fetches land on texel centres, up to llvmpipe's cos/sin of angle 0 (~1e-7 of a texel).
    assert_close(out, expected, atol=0, what="chromatic aberration shift")


def test_flash_screens_a_colour_and_the_event_flashes_fully(gl):
    img = random_image(6, 8, seed=6)
    frames = [{"/fx/flash/flash": 0.5, "/fx/flash/flashColor": (1.0, 0.0, 0.0, 1.0)},
              {"/fx/flash/strobe": True, "/fx/flash/flashColor": (1.0, 1.0, 1.0, 1.0)}]
    half, strobe = render(gl, [("flash", shipped("flash"))], img, frames)
    c = as_float(img)
    k = np.array([0.5, 0.0, 0.0])
    # Both sides round a screen blend once (float32 vs float64: ~1e-5 level apart): 1 level.
    assert_close(half, np.round((1 - (1 - c) * (1 - k)) * 255).astype(np.uint8), atol=1, what="flash 0.5 red")
    assert (strobe == 255).all()


def test_flash_on_the_beat_follows_the_beat_phase_and_confidence(gl):
    from vj.audio.features import Features
    img = random_image(6, 8, seed=7)
    c = as_float(img)
    red = {"/fx/flash/beatFlash": 0.8, "/fx/flash/flashColor": (1.0, 0.0, 0.0, 1.0)}
    for phase, confidence, expected_k in ((0.0, 1.0, 0.8), (0.25, 0.9, 0.8 * math.exp(-1.5)), (0.0, 0.0, 0.0)):
        f = Features(beat_phase=phase, beat_confidence=confidence)
        (out,) = render(gl, [("flash", shipped("flash"))], img, red, features=f)
        k = np.array([expected_k, 0.0, 0.0])
        # As above, and llvmpipe's exp() is within ~1e-5 relative of math.exp: 1 level.
        assert_close(out, np.round((1 - (1 - c) * (1 - k)) * 255).astype(np.uint8), atol=1,
                     what=f"beat flash at phase {phase}, confidence {confidence}")
    # beatFlash defaults to 0: a sure beat changes nothing unless asked for.
    (out,) = render(gl, [("flash", shipped("flash"))], img, {}, features=Features(beat_confidence=1.0))
    assert_close(out, img, atol=1, what="flash defaults on a beat")    # float32 screen blend by 0, rounded once


@pytest.mark.parametrize("name, frame", [
    ("tunnel", {"wet": 0.0}),
    ("film", {"vignette": 0.0, "grain": 0.0, "scanlines": 0.0}),
    ("displace", {"amount": 0.0}),
    ("flash", {}),
    ("colorgrade", {}),
    ("bloom", {"intensity": 0.0}),
    ("glitch", {"amount": 0.0}),
    ("pixelate", {"cellSize": 1.0}),
])
def test_identity_settings_leave_the_picture_alone(gl, name, frame):
    img = random_image(8, 16, seed=7)
    (out,) = render(gl, [(name, shipped(name))], img, {f"/fx/{name}/{k}": v for k, v in frame.items()})
    # One rounding of a float result within 0.4 level of the input (colorgrade's YIQ pair is inverse only to
    # 1.5e-3; the others are exact to float32): 1 level. Measured worst 0.
    assert_close(out, img, atol=1, what=f"{name} at identity settings")


def _render_sequence(gl, name, images, frame, dt_s):
    """One output per input image, through a fresh chain holding only `name`."""
    up = TextureUploader(gl)
    h, w = images[0].shape[:2]
    chain = Chain(gl, w, h)
    try:
        chain.set_effects([(name, shipped(name))])
        outs = []
        for i, img in enumerate(images):
            outs.append(read_rgb(chain.render(up.upload(img), frame, time_s=i * dt_s, dt_s=dt_s)))
        return outs
    finally:
        chain.release()
        up.release()


@pytest.mark.parametrize("lighten", [0.0, 1.0])
def test_feedback_accumulates_over_frames(gl, lighten):
    a, b = random_image(6, 8, seed=8), random_image(6, 8, seed=9) // 2
    dt = 1.0 / 30.0
    frame = {"/fx/feedback/zoom": 1.0, "/fx/feedback/rotate": 0.0, "/fx/feedback/hueDrift": 0.0,
             "/fx/feedback/decay": 0.5, "/fx/feedback/lighten": lighten, "/fx/feedback/wet": 1.0}
    outs = _render_sequence(gl, "feedback", [a, b, b, b], frame, dt)
    keep = 0.5 ** dt
    fb = as_float(a)
    # Exact: frame 0 goes through the fp16 buffer, which holds k/255 within 0.06 level.
    assert_close(outs[0], a, atol=0, what="feedback frame 0 (buffer starts as the input)")
    for n in range(1, 4):
        if lighten:
            fb = np.maximum(as_float(b), fb * keep)      # lighten: the echo shows where it is brighter
        else:
            fb = as_float(b) + (fb - as_float(b)) * keep  # soft: exponential average
        # The shader's float result is within 0.76 level of fb (its YIQ hue pair, applied at 0 degrees, is inverse
        # only to 1.5e-3: 0.37 level a frame; fp16 buffer: 0.06 a frame); both sides round: < 1.76, so 1 expected,
        # and 2 holds for up to 2 levels of that drift. Measured worst 1; a missing echo is off by > 10.
        assert_close(outs[n], np.round(fb * 255).astype(np.uint8), atol=2, what=f"feedback frame {n}")
    assert np.abs(outs[3].astype(int) - b).max() > 10, "the echo of the first frame should still show"


def test_feedback_is_frame_rate_independent(gl):
    a, b = random_image(6, 8, seed=10), np.zeros((6, 8, 3), np.uint8)
    frame = {"/fx/feedback/zoom": 1.0, "/fx/feedback/rotate": 0.0, "/fx/feedback/hueDrift": 90.0,
             "/fx/feedback/decay": 0.3, "/fx/feedback/wet": 1.0}
    at30 = _render_sequence(gl, "feedback", [a] + [b] * 6, frame, 1.0 / 30.0)[-1]
    at60 = _render_sequence(gl, "feedback", [a] + [b] * 12, frame, 1.0 / 60.0)[-1]
    # Not bit-equal even in exact arithmetic: the shader's YIQ hue pair is inverse only to 1.5e-3, and 12 half
    # steps apply it 6 more times than 6 whole ones: 1.21 levels apart in float64 (plus <= 0.46 from each fp16
    # buffer) before both sides round: < 3.2, so 3. Measured worst 2. Hue drift or decay per frame instead of per
    # second puts them 47..55 levels apart.
    assert_close(at60, at30, atol=3, what="0.2 s of feedback at 30 and 60 fps")


def test_trails_keep_the_brightest_and_decay(gl):
    bright = random_image(6, 8, seed=11)
    dark = np.zeros_like(bright)
    dt = 1.0 / 30.0
    frame = {"/fx/trails/decay": 0.25, "/fx/trails/amount": 1.0, "/fx/trails/tint": (1.0, 1.0, 1.0, 1.0)}
    outs = _render_sequence(gl, "trails", [bright, dark, dark], frame, dt)
    keep = 0.25 ** dt
    assert_close(outs[0], bright, atol=0, what="trails frame 0")     # exact: fp16 holds k/255 within 0.06 level
    # The fp16 trail buffer (0.06 level a frame) and llvmpipe's pow (~1e-5 relative), then one rounding on each
    # side: 1 level. Measured worst 1; a frame of decay too many or too few is off by 11 levels.
    assert_close(outs[1], np.round(as_float(bright) * keep * 255).astype(np.uint8), atol=1, what="trails frame 1")
    assert_close(outs[2], np.round(as_float(bright) * keep * keep * 255).astype(np.uint8), atol=1,
                 what="trails frame 2")
