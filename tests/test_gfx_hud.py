"""HUD overlay: the bitmap font, what a draw puts in the framebuffer, upload caching, GL state, format_stats."""

import math

import moderngl
import numpy as np
import pytest
from gl_helpers import gl  # noqa: F401  (the fixture)

from vj.gfx.context import bind_default_framebuffer
from vj.gfx.hud import (AMBER, BLOCK, CELL_H, CELL_W, LINE_H, METER_COLS, PAD, RED, TEXT_COLS, Hud, HudLine,
                        format_stats, glyph_bitmap, glyph_index)

WHITE_TEXT = (1.0, 1.0, 1.0)


@pytest.fixture
def hud(gl):  # noqa: F811
    h = Hud(gl)
    yield h
    h.release()


@pytest.fixture
def target(gl):  # noqa: F811
    """A factory of RGBA8 framebuffers cleared to a colour; all released after the test."""
    made = []

    def make(w, h, clear=(0.0, 0.0, 0.0)):
        tex = gl.texture((w, h), 4, dtype="f1")
        fbo = gl.framebuffer(color_attachments=[tex])
        fbo.use()
        fbo.viewport = (0, 0, w, h)
        fbo.clear(*clear, 1.0)
        made.append((fbo, tex))
        return fbo

    yield make
    bind_default_framebuffer(gl)
    for fbo, tex in made:
        fbo.release()
        tex.release()


def read(fbo) -> np.ndarray:
    """(H, W, 3) uint8, row 0 at the top."""
    w, h = fbo.size
    return np.frombuffer(fbo.read(components=3, alignment=1), np.uint8).reshape(h, w, 3)[::-1]


def scaled(bitmap: np.ndarray, scale: int) -> np.ndarray:
    return np.kron(bitmap.astype(np.uint8), np.ones((scale, scale), np.uint8)).astype(bool)


# The font, without GL.

def test_font_has_a_distinct_glyph_for_every_printable_character():
    shapes = {chr(c): glyph_bitmap(chr(c)).tobytes() for c in range(33, 127)}
    assert len(set(shapes.values())) == len(shapes), "two printable characters share a bitmap"
    assert not glyph_bitmap(" ").any()
    for c in range(33, 127):
        bm = glyph_bitmap(chr(c))
        assert bm.shape == (CELL_H, CELL_W)
        assert not bm[:, CELL_W - 1].any(), f"{chr(c)!r} touches the spacing column"


def test_font_bitmaps_are_upright_and_unknown_characters_are_a_box():
    assert glyph_bitmap("|")[:7, 2].all() and glyph_bitmap("|").sum() == 7       # one vertical stroke
    assert glyph_bitmap("-")[3, :5].all() and glyph_bitmap("-").sum() == 5       # one horizontal stroke
    assert glyph_bitmap("T")[0, :5].all() and glyph_bitmap("T")[1:7, 2].all()    # bar at the top
    assert glyph_bitmap("g")[7].any() and not glyph_bitmap("a")[7].any()         # descender row
    box = glyph_bitmap("\u00e9")
    assert np.array_equal(box, glyph_bitmap("\t"))
    assert box[0, :5].all() and box[6, :5].all() and box[:7, 0].all() and box[:7, 4].all()
    assert not box[1:6, 1:4].any()
    assert glyph_index(BLOCK) != glyph_index("\u00e9") and glyph_bitmap(BLOCK)[:7, :5].all()


# Drawing, on real GL.

def test_glyph_pixels_match_the_font_at_the_top_left_of_the_viewport(gl, hud, target):  # noqa: F811
    fbo = target(96, 64)
    vx, vy, vw, vh = 5, 3, 80, 50           # GL viewport, origin bottom-left
    scale = 2
    text = "Hg5%\u00e9"
    hud.draw(fbo, (vx, vy, vw, vh), [HudLine(text, WHITE_TEXT), HudLine("x", WHITE_TEXT)], scale=scale)
    img = read(fbo)[..., 0]
    top = fbo.size[1] - (vy + vh) + PAD * scale     # image row of the first text line's top
    for i, ch in enumerate(text):
        left = vx + (PAD + i * CELL_W) * scale
        got = img[top:top + CELL_H * scale, left:left + CELL_W * scale]
        expected = scaled(glyph_bitmap(ch), scale)
        assert np.array_equal(got == 255, expected), f"glyph {ch!r} differs:\n{(got > 127).astype(int)}"
        assert set(np.unique(got)) <= {0, 255}
    second = top + LINE_H * scale                    # the second line, one line pitch further down
    left = vx + PAD * scale
    assert np.array_equal(img[second:second + CELL_H * scale, left:left + CELL_W * scale] == 255,
                          scaled(glyph_bitmap("x"), scale))


def test_panel_darkens_but_does_not_blacken_and_stays_inside_its_rectangle(gl, hud, target):  # noqa: F811
    fbo = target(128, 64, clear=(1.0, 1.0, 1.0))
    scale = 1
    hud.draw(fbo, (0, 0, 128, 64), ["ab", "c"], scale=scale)
    img = read(fbo)
    pw = (2 * PAD + 2 * CELL_W) * scale
    ph = (2 * PAD + 2 * LINE_H - (LINE_H - CELL_H)) * scale
    panel = img[1, 1, 0]                                       # padding: panel only, no text
    expected = round(255 * (1 - Hud.PANEL[3]))
    # Blending in 8 bits: the alpha rounds to k/255 (0.5 level here) and the multiply may be llvmpipe's
    # approximate /255 (1 level): 2. Measured exact (102) on every CPU setting.
    assert 20 < panel < 200 and abs(int(panel) - expected) <= 2
    assert (img[:ph, :pw] < 255).any(axis=2).mean() > 0.7        # most of the panel is darker
    assert (img[ph:, :] == 255).all() and (img[:, pw:] == 255).all()


@pytest.mark.parametrize("meter", [0.0, 0.5, 1.0])
def test_meter_fills_its_share_of_the_bar(gl, hud, target, meter):  # noqa: F811
    fbo = target(160, 32)
    scale = 1
    green = (0.0, 1.0, 0.0)
    hud.draw(fbo, (0, 0, 160, 32), [HudLine("", meter=meter, meter_color=green)], scale=scale)
    row = read(fbo)[PAD * scale + 4 * scale]                    # middle of the bar
    bar0 = (PAD + CELL_W) * scale                               # one blank cell after the (empty) text
    bar_w = METER_COLS * CELL_W * scale
    bar = row[bar0:bar0 + bar_w]
    filled = (bar[:, 1] == 255) & (bar[:, 0] == 0)                # exact: 1.0 and 0.0 are exact levels
    assert abs(filled.sum() - meter * bar_w) <= 1               # its edge, meter * bar_w px, rounds either way
    assert filled[:int(meter * bar_w)].all()                    # filled from the left
    assert (bar[~filled, 1] > 0).all()                          # the empty part shows as a dim track


def test_panel_larger_than_the_viewport_is_clipped_to_it(gl, hud, target):  # noqa: F811
    fbo = target(128, 64, clear=(1.0, 1.0, 1.0))
    hud.draw(fbo, (0, 34, 40, 30), ["a long line that does not fit", "2", "3", "4"], scale=2)
    img = read(fbo)
    assert (img[:30, :40] < 255).any()
    assert (img[:, 40:] == 255).all() and (img[30:, :] == 255).all()


def test_scale_shrinks_until_the_panel_fits(gl, hud, target):  # noqa: F811
    fbo = target(200, 100, clear=(1.0, 1.0, 1.0))
    lines = ["0123456789" * 2, "2", "3"]                   # 20 cols: 126 x 34 font pixels
    hud.draw(fbo, (0, 0, 200, 100), lines, scale=4)        # 4x and 2x would not fit 200 px across
    img = read(fbo)
    w, h = 2 * PAD + 20 * CELL_W, 2 * PAD + 3 * LINE_H - (LINE_H - CELL_H)
    assert (img[:h, :w] < 255).any(axis=2).mean() > 0.7
    assert (img[h:] == 255).all() and (img[:, w:] == 255).all()
    assert np.array_equal(img[PAD:PAD + CELL_H, PAD:PAD + CELL_W, 0] > 200, glyph_bitmap("0"))


def test_unchanged_lines_are_not_uploaded_again(gl, hud, target):  # noqa: F811
    fbo = target(64, 32)
    view = (0, 0, 64, 32)
    hud.draw(fbo, view, ["fps 60.0", HudLine("lvl", meter=0.5)])
    assert hud.uploads == 1
    hud.draw(fbo, view, ["fps 60.0", HudLine("lvl", meter=0.5)])      # equal, not the same objects
    hud.draw(fbo, view, [HudLine("fps 60.0"), HudLine("lvl", meter=0.5)], scale=3)
    assert hud.uploads == 1
    hud.draw(fbo, view, ["fps 59.9", HudLine("lvl", meter=0.5)])
    assert hud.uploads == 2
    hud.draw(fbo, view, ["fps 59.9", HudLine("lvl", meter=0.6)])
    assert hud.uploads == 3
    hud.draw(fbo, view, ["fps 59.9", HudLine("lvl", meter=0.6, color=RED)])
    assert hud.uploads == 4


def test_many_characters_outgrow_the_first_buffer(gl, hud, target):  # noqa: F811
    fbo = target(400, 140)
    lines = [HudLine(chr(33 + i) * 60, WHITE_TEXT) for i in range(12)]        # 720 glyph cells
    hud.draw(fbo, (0, 0, 400, 140), lines, scale=1)
    img = read(fbo)[..., 0]
    top, left = PAD + 11 * LINE_H, PAD + 59 * CELL_W                          # last glyph drawn
    assert np.array_equal(img[top:top + CELL_H, left:left + CELL_W] == 255, glyph_bitmap(chr(33 + 11)))


def test_no_lines_draw_nothing(gl, hud, target):  # noqa: F811
    fbo = target(32, 16, clear=(1.0, 1.0, 1.0))
    hud.draw(fbo, (0, 0, 32, 16), [])
    assert (read(fbo) == 255).all()


_QUAD_FS = """#version 330 core
uniform vec4 c;
out vec4 color;
void main() { color = c; }
"""


# What a half-transparent red quad gives over 0.25 grey after the HUD, by the blend state set before it.
# moderngl cannot read back the blend function, so the HUD leaves moderngl's default one (documented).
AFTER_HUD = {"off": (128, 0, 0), "default": (96, 32, 32), "additive": (96, 32, 32)}


@pytest.mark.parametrize("blending", sorted(AFTER_HUD))
def test_blend_state_viewport_and_bound_framebuffer_are_restored(gl, hud, target, blending):  # noqa: F811
    """After the HUD, a quad drawn without setting any state blends (or not) as the state before said."""
    other = target(16, 16)
    fbo = target(128, 64, clear=(0.25, 0.25, 0.25))
    prog = gl.program(vertex_shader="#version 330 core\nin vec2 p;\nvoid main() { gl_Position = vec4(p, 0, 1); }",
                      fragment_shader=_QUAD_FS)
    vbo = gl.buffer(np.array([-1, -1, 1, -1, -1, 1, 1, 1], "f4").tobytes())
    vao = gl.vertex_array(prog, [(vbo, "2f", "p")])
    try:
        if blending == "off":
            gl.disable(moderngl.BLEND)
        else:
            gl.enable(moderngl.BLEND)
        if blending == "additive":
            gl.blend_func = moderngl.ADDITIVE_BLENDING
        fbo.use()
        fbo.viewport = (64, 0, 64, 32)                   # bottom-right quarter; the HUD is top-left
        other.use()                                      # the HUD must bind `fbo` and give `other` back
        hud.draw(fbo, (0, 0, 128, 64), ["HUD", "x"], scale=1)
        assert gl.fbo == other
        assert fbo.viewport == (64, 0, 64, 32)
        fbo.use()
        prog["c"].value = (0.5, 0.0, 0.0, 0.5)
        vao.render(moderngl.TRIANGLE_STRIP)
        img = read(fbo).astype(int)
        quad = img[40, 100]                              # inside the viewport set before the HUD
        # The grey is stored as 64 (63.75), 0.5 * 255 is a tie, and 8-bit blending may round each product
        # (1 level): 2. Measured exact on every CPU setting; a wrong blend state is 32 levels or more off.
        assert np.abs(quad - AFTER_HUD[blending]).max() <= 2, quad
        assert np.abs(img[10, 100] - 64).max() <= 1      # outside that viewport: the clear, 63.75 rounded
    finally:
        gl.disable(moderngl.BLEND)
        gl.blend_func = moderngl.DEFAULT_BLENDING
        vao.release()
        vbo.release()
        prog.release()


# format_stats, pure.

FULL = {
    "display_fps": 60.0, "model_fps": 12.5, "frame_ms_p50": 16.7, "frame_ms_p99": 33.4,
    "dropped_frames": 3, "audio_level_dbfs": -12.0, "clipped": True, "audio_lost": 17, "onset": True, "beat": False,
    "bpm": 128.0, "latency_ms": 84.6, "preset": "deep sea", "audio_status": "device lost",
    "errors": ["kaleido: ERROR: 0:12: 'foo' : undeclared identifier\n  more log", "model: boom"],
}


def by_prefix(lines, prefix):
    found = [ln for ln in lines if ln.text.startswith(prefix)]
    assert len(found) == 1, [ln.text for ln in lines]
    return found[0]


def test_format_stats_full_dict():
    everything = format_stats(FULL)
    texts = [ln.text for ln in everything]
    lines = everything[:-2]                                      # the errors come last
    assert "60.0 fps" in by_prefix(lines, "display").text
    assert "12.5 fps" in by_prefix(lines, "model").text
    frame = by_prefix(lines, "frame").text
    assert "p50" in frame and "16.7 ms" in frame and "p99" in frame and "33.4 ms" in frame
    assert " 3 " in by_prefix(lines, "dropped").text
    audio = by_prefix(lines, "audio ")
    assert "-12.0 dBFS" in audio.text and "CLIP" in audio.text and audio.color == RED
    assert audio.meter == pytest.approx(0.8)
    lost = by_prefix(lines, "lost")
    assert "17 audio blocks" in lost.text and lost.color == AMBER
    beats = by_prefix(lines, "onset").text
    assert beats.startswith(f"onset {BLOCK}") and "beat -" in beats and "128.0 bpm" in beats
    assert "85 ms" in by_prefix(lines, "latency").text
    assert by_prefix(lines, "preset").text.endswith("deep sea")
    assert "device lost" in by_prefix(lines, "audio:").text
    assert texts[-2:] == ["kaleido: ERROR: 0:12: 'foo' : undeclared identifier more log", "model: boom"]
    assert all(ln.color == RED for ln in everything[-2:])
    assert all(len(t) <= 80 for t in texts)


def test_format_stats_skips_missing_and_none_keys():
    assert format_stats({}) == []
    assert [ln.text.split()[0] for ln in format_stats({"display_fps": 30.0, "bpm": None, "dropped_frames": None,
                                                      "model_fps": float("nan")})] == ["display"]
    audio = format_stats({"audio_level_dbfs": -30.0, "clipped": False})
    assert len(audio) == 1 and "CLIP" not in audio[0].text and audio[0].color != RED
    assert audio[0].meter == pytest.approx(0.5)
    silent = format_stats({"audio_level_dbfs": -math.inf})[0]
    assert silent.meter == 0.0 and "inf" in silent.text
    assert BLOCK not in format_stats({"onset": False, "beat": False})[0].text
    assert format_stats({"frame_ms_p99": 20.0})[0].text.count("ms") == 1
    assert format_stats({"audio_lost": 0}) == []                 # nothing lost, no line


def test_format_stats_keeps_errors_to_three_short_lines():
    errors = [f"error {i}: " + "x" * 200 for i in range(5)]
    lines = format_stats({"errors": errors})
    assert len(lines) == 3 and all(ln.color == RED for ln in lines)
    assert all(len(ln.text) <= TEXT_COLS for ln in lines)
    assert lines[0].text.startswith("error 0") and lines[0].text.endswith("...")
    assert "3 more" in lines[2].text


def test_format_stats_lines_draw(gl, hud, target):  # noqa: F811
    fbo = target(640, 240)
    hud.draw(fbo, (0, 0, 640, 240), format_stats(FULL), scale=1)
    assert hud.uploads == 1
