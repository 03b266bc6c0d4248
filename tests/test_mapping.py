"""Projection mapping: outputs files, the homography against Heckbert's closed form, and the warp pass on Mesa."""

from __future__ import annotations

import numpy as np
import pytest
from gl_helpers import gl  # noqa: F401  (fixture)

from vj.gfx.png import write_png
from vj.mapping.geometry import UNIT_SQUARE, apply, homography, mesh_cells, minification
from vj.mapping.render import render_output_images, render_outputs
from vj.mapping.spec import OutputsError, blend_ramp, load_outputs, parse_outputs

QUAD = np.array([(0.08, 0.12), (0.93, 0.02), (0.80, 0.97), (0.15, 0.85)])   # a projector well off square
KEYSTONE = np.array([(0.3, 0.1), (0.7, 0.1), (0.95, 0.9), (0.05, 0.9)])      # one tilted up at a screen


def heckbert(quad: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """The unit square onto a quad, written out from Heckbert's closed form (Fundamentals of Texture Mapping,
    1989, sec. 2.2.3): independent of the linear solve under test."""
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = quad
    dx1, dx2, dx3 = x1 - x2, x3 - x2, x0 - x1 + x2 - x3
    dy1, dy2, dy3 = y1 - y2, y3 - y2, y0 - y1 + y2 - y3
    den = dx1 * dy2 - dx2 * dy1
    g = (dx3 * dy2 - dx2 * dy3) / den
    h = (dx1 * dy3 - dx3 * dy1) / den
    a, b, c = x1 - x0 + g * x1, x3 - x0 + h * x3, x0
    d, e, f = y1 - y0 + g * y1, y3 - y0 + h * y3, y0
    u, v = uv[:, 0], uv[:, 1]
    w = g * u + h * v + 1
    return np.c_[(a * u + b * v + c) / w, (d * u + e * v + f) / w]


def outputs_text(*tables: str) -> str:
    return "\n".join(f"[[output]]\n{t.strip()}\n" for t in tables)


# -- geometry ------------------------------------------------------------------------------

def test_homography_matches_heckberts_closed_form():
    uv = np.random.default_rng(1).random((200, 2))
    h = homography(UNIT_SQUARE, QUAD)
    np.testing.assert_allclose(apply(h, uv), heckbert(QUAD, uv), atol=1e-12)
    np.testing.assert_allclose(apply(h, UNIT_SQUARE), QUAD, atol=1e-12)
    # and back: the inverse the shader uses
    np.testing.assert_allclose(apply(homography(QUAD, UNIT_SQUARE), heckbert(QUAD, uv)), uv, atol=1e-12)


def test_mesh_cells_of_a_flat_mesh_are_its_rectangles():
    ys, xs = np.mgrid[0:3, 0:4]
    mesh = np.stack([xs / 3, ys / 2], axis=-1)
    cells = mesh_cells(mesh)
    assert len(cells) == 6
    for quad, hinv in cells:
        np.testing.assert_allclose(apply(hinv, quad), quad, atol=1e-12)   # identity: a flat mesh shows the picture


def test_minification_counts_picture_pixels_per_output_pixel():
    flat = np.array([[(0, 0), (1, 0)], [(0, 1), (1, 1)]], float)
    assert minification(flat, (640, 360), (1280, 720)) == pytest.approx(2.0, rel=1e-6)
    assert minification(flat, (1280, 720), (1280, 720)) == pytest.approx(1.0, rel=1e-6)


# -- the outputs file ----------------------------------------------------------------------

def test_outputs_file_reads_every_setting(tmp_path):
    write_png(tmp_path / "mask.png", np.full((4, 4), 255, np.uint8))
    f = tmp_path / "outputs.toml"
    f.write_text(outputs_text(
        'name = "left"\nmonitor = 1\nsize = [800, 600]\nsource = [0, 0, 0.6, 1]\n'
        'corners = [[0.1, 0], [1, 0], [1, 1], [0, 1]]\nblend = { right = 0.2, gamma = 2.4 }\nmask = "mask.png"\n'
        'brightness = 0.9\ncolor = [1, 0.95, 0.9]',
        'name = "right"\nmonitor = "HDMI"\nmesh = [[[0, 0], [0.5, 0.1], [1, 0]], [[0, 1], [0.5, 0.9], [1, 1]]]\n'
        'blend = { left = { width = 0.1, gamma = 1.8, power = 3 } }'))
    o = load_outputs(f)
    left, right = o.outputs
    assert (left.name, left.monitor, left.size_px, left.source) == ("left", 1, (800, 600), (0, 0, 0.6, 1))
    np.testing.assert_allclose(left.corners, [(0.1, 0), (1, 0), (1, 1), (0, 1)])
    assert left.is_corner_pin and not right.is_corner_pin
    assert (left.blend["right"].width, left.blend["right"].gamma, left.blend["left"].width) == (0.2, 2.4, 0.0)
    assert left.mask == tmp_path / "mask.png" and left.brightness == 0.9 and left.color == (1, 0.95, 0.9)
    assert right.monitor == "HDMI" and right.mesh_array.shape == (2, 3, 2)
    assert (right.blend["left"].gamma, right.blend["left"].power) == (1.8, 3.0)
    assert (left.line, right.line) == (1, 12)


@pytest.mark.parametrize("text, line, words", [
    ('[[output]]\nname = "a"\nsize = 640 480\n', 3, "Expected newline"),          # TOML syntax
    ('[[output]]\nname = "a"\n\n[[output]]\nname = "b"\nsizes = [1, 2]\n', 6, "unknown key 'sizes'"),
    ('[[output]]\nname = "a"\ncorners = [[0, 0], [1, 0], [0, 1], [1, 1]]\n', 3, "edges cross"),
    ('[[output]]\nname = "a"\ncorners = [[0, 0], [1, 0]]\n', 3, "four [x, y] points"),
    ('[[output]]\nname = "a"\n[[output]]\nname = "a"\n', 4, "two outputs are named 'a'"),
    ('[[output]]\nname = "a"\nblend = { left = 0.7 }\n', 3, "0 to 0.5"),
    ('[[output]]\nname = "a"\nsource = [0.5, 0, 0.6, 1]\n', 3, "inside the picture"),
    ('[[output]]\nname = "a b"\n', 2, "letters, digits"),
    ('[[output]]\nname = "a"\nmask = "nowhere.png"\n', 3, "not found"),
    ('[[output]]\nname = "a"\ncorners = [[0,0],[1,0],[1,1],[0,1]]\nmesh = [[[0,0],[1,0]],[[0,1],[1,1]]]\n', 4,
     "not both"),
    ('[[output]]\nname = "a"\ncorners = [[-3, 0], [1, 0], [1, 1], [0, 1]]\n', 3, "within -1..2"),
    ('[display]\nx = 1\n', 1, "unknown key 'display'"),
    ('# nothing here\n', None, "no [[output]]"),
])
def test_a_broken_outputs_file_names_file_line_and_reason(tmp_path, text, line, words):
    f = tmp_path / "outputs.toml"
    f.write_text(text)
    with pytest.raises(OutputsError) as err:
        load_outputs(f)
    msg = str(err.value)
    assert msg.startswith(f"{f}:{line}: " if line else f"{f}: "), msg
    assert words in msg and "\n" not in msg


def test_a_missing_outputs_file_says_so(tmp_path):
    with pytest.raises(OutputsError, match="outputs file not found"):
        load_outputs(tmp_path / "none.toml")


def test_blend_ramps_of_an_overlap_sum_to_one():
    t = np.linspace(0, 1, 101)
    for p in (1.0, 2.0, 3.5):
        np.testing.assert_allclose(blend_ramp(t, p) + blend_ramp(1 - t, p), 1.0, atol=1e-12)
    assert blend_ramp(0.0, 2) == 0 and blend_ramp(1.0, 2) == 1


# -- the warp pass -------------------------------------------------------------------------

def dots_master(w: int, h: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Black picture with 3x3 white dots every `step` px; the dots' centres as (n, 2) picture coordinates 0..1."""
    img = np.zeros((h, w, 3), np.uint8)
    centres = []
    for y in range(step, h - step + 1, step):
        for x in range(step, w - step + 1, step):
            img[y - 1:y + 2, x - 1:x + 2] = 255
            centres.append(((x + 0.5) / w, (y + 0.5) / h))
    return img, np.array(centres)


def centroid(img: np.ndarray, x: float, y: float, r: int = 7) -> tuple[float, float, float]:
    """Brightness-weighted centre (x, y in pixel units, centres at +0.5) of the window around (x, y), and its mass."""
    x0, y0 = int(x) - r, int(y) - r
    win = img[max(0, y0):y0 + 2 * r + 1, max(0, x0):x0 + 2 * r + 1, 0].astype(float)
    ys, xs = np.mgrid[0:win.shape[0], 0:win.shape[1]]
    m = win.sum()
    return (xs * win).sum() / m + max(0, x0) + 0.5, (ys * win).sum() / m + max(0, y0) + 0.5, m


def test_a_corner_pin_puts_every_point_within_a_pixel_of_the_exact_projective_map(gl):
    master, uv = dots_master(480, 360, 30)
    text = outputs_text(f'name = "pin"\nsize = [640, 480]\ncorners = {QUAD.tolist()}')
    out = render_output_images(parse_outputs(text), master, ctx=gl)["pin"]
    expected = heckbert(QUAD, uv) * (640, 480)
    for ex, ey in expected:
        cx, cy, mass = centroid(out, ex, ey)
        assert mass > 255, f"no dot near ({ex:.1f}, {ey:.1f})"
        assert np.hypot(cx - ex, cy - ey) < 1.0, f"dot at ({cx:.2f}, {cy:.2f}), expected ({ex:.2f}, {ey:.2f})"
    assert out[2, 2].max() == 0       # outside the quad: black


def test_a_straight_line_stays_straight_across_the_quads_diagonal(gl):
    # The picture's anti-diagonal crosses the diagonal the quad is cut into triangles along: drawn as two affine
    # triangles it would bend there by more than the tolerance (checked below), drawn projectively it stays straight.
    w, h = 600, 600
    master = np.zeros((h, w, 3), np.uint8)
    for k in range(w):
        master[max(0, h - 2 - k):h + 1 - k, k] = 255        # 3 px thick: it stays visible when shrunk
    text = outputs_text(f'name = "pin"\nsize = [640, 480]\ncorners = {KEYSTONE.tolist()}')
    out = render_output_images(parse_outputs(text), master, ctx=gl)["pin"][:, :, 0].astype(float)
    cols = [x for x in range(640) if out[:, x].sum() > 255]
    rows = [(out[:, x] * np.arange(480)).sum() / out[:, x].sum() for x in cols]
    fit = np.polyfit(cols, rows, 1)
    worst = np.abs(np.polyval(fit, cols) - rows)[5:-5].max()       # the ends are cut by the quad's edge
    assert len(cols) > 300 and worst < 1.0, worst

    # the same line through two affine triangles (TL, TR, BR) and (TL, BR, BL): how far it would bend
    def affine(tri_src, tri_dst, p):
        a = np.linalg.solve(np.c_[tri_src, np.ones(3)], tri_dst)
        return np.c_[p, np.ones(len(p))] @ a
    t = np.linspace(0.02, 0.98, 200)
    line = np.c_[t, 1 - t]
    upper = line[:, 0] > line[:, 1]
    p = np.where(upper[:, None], affine(UNIT_SQUARE[[0, 1, 2]], KEYSTONE[[0, 1, 2]], line),
                 affine(UNIT_SQUARE[[0, 2, 3]], KEYSTONE[[0, 2, 3]], line)) * (640, 480)
    bent = np.polyfit(p[:, 0], p[:, 1], 1)
    assert np.abs(np.polyval(bent, p[:, 0]) - p[:, 1]).max() > 20.0


def test_a_mesh_point_moves_the_picture_under_it(gl):
    master, uv = dots_master(400, 400, 50)
    mesh = np.array([[[0, 0], [0.5, 0], [1, 0]], [[0, 0.5], [0.6, 0.4], [1, 0.5]], [[0, 1], [0.5, 1], [1, 1]]])
    text = outputs_text(f'name = "m"\nsize = [400, 400]\nmesh = {mesh.tolist()}')
    out = render_output_images(parse_outputs(text), master, ctx=gl)["m"]
    checked = 0
    for u, v in uv:
        i, j = int(v * 2), int(u * 2)            # the cell: each is a quarter of the picture
        local = np.array([[u * 2 - j, v * 2 - i]])
        if not (0.05 < local.min() and local.max() < 0.95):
            continue                             # a dot on a cell edge lies in two cells' maps
        quad = mesh[[i, i, i + 1, i + 1], [j, j + 1, j + 1, j]]
        ex, ey = heckbert(quad, local)[0] * 400
        cx, cy, _ = centroid(out, ex, ey)
        assert np.hypot(cx - ex, cy - ey) < 1.0, (u, v, cx, cy, ex, ey)
        checked += 1
    assert checked >= 30
    assert np.abs(heckbert(mesh[[1, 1, 2, 2], [1, 2, 2, 1]], np.zeros((1, 2)))[0] - (0.6, 0.4)).max() < 1e-12


def test_edge_blends_of_two_overlapping_outputs_sum_to_flat_light(gl):
    # master 1200 px wide; each output shows 700 px of it 1:1, overlapping on master columns 500..699
    gamma = 2.2
    master = np.full((40, 1200, 3), 255, np.uint8)
    share = 200 / 700
    text = outputs_text(
        f'name = "a"\nsize = [700, 40]\nsource = [0, 0, {7 / 12}, 1]\nblend = {{ right = {share}, gamma = {gamma} }}',
        f'name = "b"\nsize = [700, 40]\nsource = [{5 / 12}, 0, {7 / 12}, 1]\nblend = {{ left = {share}, gamma = {gamma} }}')
    out = render_output_images(parse_outputs(text), master, ctx=gl)
    a = out["a"][20, 500:700, 1] / 255.0
    b = out["b"][20, 0:200, 1] / 255.0
    light = a ** gamma + b ** gamma
    # each value is rounded to 8 bits (+-0.5/255) and light = v ** 2.2 changes at most 2.2x as fast as v:
    # at most 2 x 2.2 x 0.5 / 255 = 0.0087 off flat
    assert np.abs(light - 1.0).max() <= 2 * gamma * 0.5 / 255 + 1e-6, np.abs(light - 1.0).max()
    assert a[0] > 0.99 and a[-1] < 0.05 and b[0] < 0.05 and b[-1] > 0.99     # the ramps do go from 1 to 0
    assert (out["a"][20, :500, 1] == 255).all() and (out["b"][20, 200:, 1] == 255).all()   # flat outside


def test_mask_and_trims(gl, tmp_path):
    mask = np.zeros((20, 40), np.uint8)
    mask[:, 20:] = 255
    mask[:10, 20:] = 128
    write_png(tmp_path / "mask.png", mask)
    f = tmp_path / "o.toml"
    f.write_text(outputs_text('name = "k"\nsize = [40, 20]\nmask = "mask.png"\nbrightness = 0.5\n'
                              'color = [1.0, 0.5, 2.0]'))
    master = np.full((20, 40, 3), 200, np.uint8)
    out = render_output_images(load_outputs(f), master, ctx=gl)["k"].astype(int)
    assert (out[:, :20] == 0).all()                                          # masked off
    # unmasked: 200 x 0.5 brightness x (1, 0.5, 2) colour -> (100, 50, 200); half mask -> half of that
    assert np.abs(out[15, 25] - (100, 50, 200)).max() <= 1
    assert np.abs(out[5, 25] - np.array((100, 50, 200)) * 128 / 255).max() <= 1


def test_a_shrinking_output_filters_instead_of_aliasing(gl):
    master = np.zeros((720, 1280, 3), np.uint8)
    master[:, ::2] = 255                              # 1 px stripes: mean 127.5
    text = outputs_text('name = "small"\nsize = [160, 90]')
    out = render_output_images(parse_outputs(text), master, ctx=gl)["small"].astype(float)
    # 8 picture px per output px: the mipmap average is 127.5 everywhere; bilinear alone would land on whole
    # stripes (0 or 255) or between them, anywhere from 0 to 255
    assert np.abs(out - 127.5).max() < 8, np.abs(out - 127.5).max()


def test_outputs_render_writes_a_png_per_output(tmp_path):
    f = tmp_path / "o.toml"
    f.write_text(outputs_text('name = "one"\nsize = [64, 36]', 'name = "two"\nsize = [32, 18]\n'
                              'corners = [[0.5, 0], [1, 0], [1, 1], [0.5, 1]]'))
    files = render_outputs(f, tmp_path / "out", size_px=(128, 72))
    assert [p.name for p in files] == ["master.png", "one.png", "two.png"]
    from vj.gfx.png import read_png
    one, two = read_png(files[1]), read_png(files[2])
    assert one.shape == (36, 64, 3) and two.shape == (18, 32, 3)
    assert (two[:, :15] == 0).all() and two[:, 17:].max() > 0        # the left half of "two" shows nothing


def test_the_example_outputs_file_in_the_docs_loads_and_its_blends_cover_the_overlap():
    from pathlib import Path
    outputs = load_outputs(Path(__file__).resolve().parent.parent / "docs" / "outputs" / "two-projectors.toml")
    left, right = outputs.outputs
    overlap = left.source[0] + left.source[2] - right.source[0]
    assert overlap > 0
    assert left.blend["right"].width * left.source[2] == pytest.approx(overlap, abs=1e-3)
    assert right.blend["left"].width * right.source[2] == pytest.approx(overlap, abs=1e-3)
