"""Calibration: points as params, keys and mouse as Changes, and the corners written back into the outputs file."""

from __future__ import annotations

import numpy as np

from vj.mapping.calibrate import Calibration, output_params, overlay, point_paths, rewrite, spec_from, values_of
from vj.mapping.spec import parse_outputs

FILE = """\
# the stage's two projectors
[[output]]
name = "left"      # house left
size = [640, 360]
corners = [[0, 0], [1, 0], [1, 1], [0, 1]]   # measured 2026-12-01
blend = { right = 0.1 }

[[output]]
name = "wall"
mesh = [
    [[0, 0], [0.5, 0], [1, 0]],
    [[0, 1], [0.5, 1], [1, 1]],
]
brightness = 0.8
"""


def test_every_point_and_brightness_is_a_param():
    outputs = parse_outputs(FILE)
    paths = [p.path for p in output_params(outputs)]
    assert paths == ["/output/calibrate", "/output/left/corner/1", "/output/left/corner/2", "/output/left/corner/3",
                     "/output/left/corner/4", *(f"/output/left/blend/{s}" for s in ("left", "right", "top", "bottom")),
                     "/output/left/brightness", "/output/wall/point/1/1",
                     "/output/wall/point/1/2", "/output/wall/point/1/3", "/output/wall/point/2/1",
                     "/output/wall/point/2/2", "/output/wall/point/2/3",
                     *(f"/output/wall/blend/{s}" for s in ("left", "right", "top", "bottom")), "/output/wall/brightness"]
    left = outputs.outputs[0]
    assert values_of(left)["/output/left/corner/3"] == (1.0, 1.0)
    assert values_of(left)["/output/left/blend/right"] == 0.1 and values_of(left)["/output/left/blend/top"] == 0.0


def test_moved_points_make_a_new_spec_and_a_fold_is_refused():
    left = parse_outputs(FILE).outputs[0]
    moved, why = spec_from(left, {"/output/left/corner/1": (0.1, 0.05)})
    assert why is None and tuple(moved.corners[0]) == (0.1, 0.05) and tuple(moved.corners[2]) == (1, 1)
    same, why = spec_from(left, values_of(left))
    assert same is left and why is None
    folded, why = spec_from(left, {"/output/left/corner/1": (1.2, 1.2)})      # past the opposite corner
    assert folded is left and "fold" in why


def test_written_back_corners_keep_every_other_line_and_read_back_the_same():
    outputs = parse_outputs(FILE)
    left, wall = outputs.outputs
    left2, _ = spec_from(left, {"/output/left/corner/2": (0.9, 0.1), "/output/left/brightness": 0.75})
    wall2, _ = spec_from(wall, {"/output/wall/point/2/2": (0.55, 0.9)})
    text = rewrite(rewrite(FILE, left, left2), wall, wall2)
    again = parse_outputs(text)
    np.testing.assert_allclose(again.outputs[0].corners, left2.corners)
    assert again.outputs[0].brightness == 0.75
    np.testing.assert_allclose(again.outputs[1].mesh_array, wall2.mesh_array)
    for line in ("# the stage's two projectors", 'name = "left"      # house left', "blend = { right = 0.1 }",
                 "# measured 2026-12-01", "size = [640, 360]", "brightness = 0.8"):
        assert line in text
    assert len(text.splitlines()) == len(FILE.splitlines()) + 1          # one line added: left's brightness


def test_blend_widths_written_back_keep_each_sides_gamma():
    text = ('[[output]]\nname = "a"\nblend = { left = { width = 0.1, gamma = 2.4 }, right = 0.2 }  # tuned\n'
            '\n[[output]]\nname = "b"\nblend = { right = 0.3, gamma = 1.8 }\n')
    a, b = parse_outputs(text).outputs
    a2, _ = spec_from(a, {"/output/a/blend/left": 0.15, "/output/a/blend/bottom": 0.05})
    b2, _ = spec_from(b, {"/output/b/blend/right": 0.0})
    out = rewrite(rewrite(text, a, a2), b, b2)
    again = parse_outputs(out)
    assert {s: (x.width, x.gamma) for s, x in again.get("a").blend.items()} == {
        "left": (0.15, 2.4), "right": (0.2, 2.2), "top": (0.0, 2.2), "bottom": (0.05, 2.2)}
    assert "blend" not in out.split("[[output]]")[2]                  # b has no soft edge left: the line goes
    assert "# tuned" in out


def test_a_corner_pin_without_corners_gets_them_after_its_name():
    text = '[[output]]\nname = "a"\nsize = [10, 10]\n'
    old = parse_outputs(text).outputs[0]
    spec, _ = spec_from(old, {"/output/a/corner/4": (0.05, 0.95)})
    out = rewrite(text, old, spec)
    assert out.splitlines()[2].startswith("corners = [[0, 0], [1, 0], [1, 1], [0.05, 0.95]]")
    assert parse_outputs(out).outputs[0].corners[3].tolist() == [0.05, 0.95]


def test_keys_select_and_move_points_in_pixel_steps():
    specs = list(parse_outputs(FILE).outputs)
    sizes = [(640, 360), (1000, 500)]
    cal = Calibration()
    assert cal.key("3", specs, sizes) is True
    ch = cal.key("left", specs, sizes)
    assert ch.path == "/output/left/corner/3" and np.allclose(ch.value, (1 - 1 / 640, 1.0))
    ch = cal.key("shift+down", specs, sizes)            # moves add up before the registry has taken them
    assert np.allclose(ch.value, (1 - 1 / 640, 1 + 10 / 360))
    ch = cal.key("alt+up", specs, sizes)
    assert np.allclose(ch.value, (1 - 1 / 640, 1 + 9.9 / 360))
    cal.settled()                                       # the registry took them: the next starts from the spec
    assert np.allclose(cal.key("up", specs, sizes).value, (1.0, 1 - 1 / 360))
    assert cal.key("tab", specs, sizes) is True and cal.output == 1
    assert cal.key("page_down", specs, sizes) is True
    ch = cal.key("right", specs, sizes)
    assert ch.path == "/output/wall/point/2/1" and np.allclose(ch.value, (0.001, 1.0))
    assert cal.key("f", specs, sizes) is None                  # not calibration's: the show's own key
    held = cal.key("shift+right:repeat", specs, sizes)         # a held arrow goes on moving
    assert held.path == "/output/wall/point/2/1" and np.allclose(held.value, (0.011, 1.0))
    assert cal.key("tab:repeat", specs, sizes) is None and cal.output == 1


def test_the_mouse_drags_the_nearest_handle():
    specs = list(parse_outputs(FILE).outputs)
    sizes = [(640, 360), (1000, 500)]
    cal = Calibration()
    assert not cal.press(0, 320, 180, specs, sizes)           # nowhere near a corner
    assert cal.press(0, 630, 5, specs, sizes) and cal.point == 1
    ch = cal.move(0, 600, 20, specs, sizes)
    assert ch.path == "/output/left/corner/2" and np.allclose(ch.value, (600 / 640, 20 / 360))
    cal.release()
    assert cal.move(0, 10, 10, specs, sizes) is None


def test_the_overlay_marks_each_point_and_the_selected_one():
    left = parse_outputs(FILE).outputs[0]
    img = overlay(left, (640, 360), selected=2, active=True)
    assert img.shape == (360, 640, 4)
    assert (img[355:360, 635:640, :3] == (255, 200, 0)).all(axis=-1).any()     # corner 3, selected: filled amber
    assert (img[0:24, 0:24, :3] == (0, 220, 255)).all(axis=-1).any()          # corner 1: a cyan ring
    assert img[180, 320, 3] == 0                                               # the middle shows the picture
    assert len(point_paths(left)) == 4
