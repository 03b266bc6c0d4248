"""Live outputs: two real glfw windows on one Xvfb screen, each showing its half of the picture, read off the screen."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest
from xvfb import display, xvfb_display, xwd_root  # noqa: F401  (fixtures)

from vj.mapping.pattern import grid_pattern
from vj.mapping.render import render_output_images, upload_master
from vj.mapping.spec import load_outputs
from vj.mapping.windows import OutputWindows
from vj.output.window import Window

TWO = """
[[output]]
name = "left"
size = [400, 300]
position = [0, 0]
source = [0.0, 0.0, 0.5, 1.0]

[[output]]
name = "right"
size = [400, 300]
position = [500, 0]
source = [0.5, 0.0, 0.5, 1.0]
{right_extra}
"""


@pytest.fixture
def show(display):
    """The show's own window (hidden: the operator's view) and a master picture in its context."""
    main = Window(320, 240, title="vj-show", vsync=False, visible=False)
    try:
        picture = grid_pattern(800, 300, cells=8, label="m")
        master = upload_master(main.ctx, picture)
        yield main, master, picture
        master.release()
        assert main.ctx.error == "GL_NO_ERROR"
    finally:
        main.close()


def screen_region(display: str, x: int, y: int, w: int, h: int, want: np.ndarray) -> np.ndarray:
    """The screen's pixels at (x, y, w, h) once they equal `want` (or after 30 s: the asserts say what was seen)."""
    deadline = time.monotonic() + 30
    while True:
        shot = xwd_root(display)[y:y + h, x:x + w]
        if np.abs(shot.astype(int) - want).max() <= 1 or time.monotonic() > deadline:
            return shot
        time.sleep(0.05)


def test_two_windows_show_their_halves_of_the_picture(show, tmp_path, display):
    if shutil.which("xwd") is None:
        pytest.skip("xwd is not installed")
    main, master, picture = show
    f = tmp_path / "outputs.toml"
    f.write_text(TWO.format(right_extra=""))
    outputs = load_outputs(f)
    want = render_output_images(outputs, picture, ctx=main.ctx)      # the offline path, in the same GL
    main.make_current()
    wins = OutputWindows(main, outputs, watch=False)
    try:
        assert wins.names == ["left", "right"]
        for _ in range(2):
            wins.draw(master)
            wins.swap()
        main.poll_events()
        left = screen_region(display, 0, 0, 400, 300, want["left"])
        right = screen_region(display, 500, 0, 400, 300, want["right"])
        assert np.abs(left.astype(int) - want["left"]).max() <= 1
        assert np.abs(right.astype(int) - want["right"]).max() <= 1
        # and those are the two halves of the picture: the left's top-left corner red, the right's top-right green
        assert tuple(left[5, 5]) == (255, 40, 40) and tuple(right[5, 394]) == (40, 220, 40)
        np.testing.assert_array_equal(left[150, :, 0] > 128, picture[150, :400, 0] > 128)
        np.testing.assert_array_equal(right[150, :, 0] > 128, picture[150, 400:, 0] > 128)
    finally:
        wins.close()
    assert main.ctx.error == "GL_NO_ERROR"


def test_an_edited_outputs_file_is_applied_and_a_broken_one_keeps_the_old_mapping(show, tmp_path):
    main, master, picture = show
    f = tmp_path / "outputs.toml"
    f.write_text(TWO.format(right_extra=""))
    wins = OutputWindows(main, load_outputs(f), reload_poll_s=0.05)
    try:
        def next_result(deadline_s=10.0):
            end = time.monotonic() + deadline_s
            while time.monotonic() < end:
                before = (wins.reloads, wins.last_error)
                assert wins.poll() == []
                if (wins.reloads, wins.last_error) != before:
                    return wins.last_error or None
                wins.draw(master)
                time.sleep(0.02)
            raise AssertionError("the watcher never reported")

        old = wins.items[1].warp.spec
        f.write_text(TWO.format(right_extra="corners = [[0, 0], [1, 0], [1, 1]]"))   # broken
        wins.last_error = ""
        err = next_result()
        assert err and f"{f}:" in err and "four [x, y] points" in err
        assert wins.items[1].warp.spec is old                          # the old mapping stays
        f.write_text(TWO.format(right_extra="corners = [[0.1, 0], [1, 0], [1, 1], [0, 1]]\nbrightness = 0.5"))
        assert next_result() is None
        assert wins.reloads == 1 and wins.items[1].spec.brightness == 0.5
        np.testing.assert_allclose(wins.items[1].warp.spec.corners[0], (0.1, 0))
        f.write_text(TWO.format(right_extra="").replace('"right"', '"third"'))         # a new window: refused
        wins.last_error = ""
        err = next_result()
        assert "restart" in err and wins.names == ["left", "right"]
        f.write_text(TWO.format(right_extra="mesh = [[[0, 0], [0.5, 0], [1, 0]], [[0, 1], [0.5, 1], [1, 1]]]"))
        wins.last_error = ""
        err = next_result()                                                 # another number of points: refused
        assert "restart" in err and wins.items[1].spec.is_corner_pin
    finally:
        wins.close()
    assert main.ctx.error == "GL_NO_ERROR"


def test_an_output_on_a_monitor_goes_fullscreen_and_a_missing_monitor_gets_a_window(show, tmp_path, caplog):
    main, master, picture = show
    f = tmp_path / "outputs.toml"
    f.write_text('[[output]]\nname = "proj"\nmonitor = 0\n\n[[output]]\nname = "lost"\nmonitor = "HDMI-9"\n'
                 'size = [200, 100]\n')
    wins = OutputWindows(main, load_outputs(f), watch=False)
    try:
        proj, lost = wins.items
        assert proj.window.fullscreen and proj.window.framebuffer_size == (1280, 720)    # the Xvfb screen
        assert not lost.window.fullscreen and lost.window.framebuffer_size == (200, 100)
        assert "no monitor named like 'HDMI-9'" in caplog.text
        wins.draw(master)
        wins.swap()
    finally:
        wins.close()
    assert main.ctx.error == "GL_NO_ERROR"
