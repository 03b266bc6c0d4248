"""Projection outputs in the live show (Xvfb): OSC moves a corner, the file is written back, OSCQuery lists the
points, keys and the mouse calibrate, a fold is refused, and scene changes leave the mapping alone."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request

import numpy as np
import pytest
from test_live import free_udp_port
from xvfb import xvfb_display  # noqa: F401  (fixture)

from vj.config import AudioConfig, ControlConfig, RenderConfig
from vj.mapping.spec import load_outputs
from vj.params import Change
from vj.show import LiveShow

FILE = """\
# two projectors side by side
[[output]]
name = "left"
size = [320, 180]
position = [0, 300]
source = [0, 0, 0.55, 1]
blend = { right = 0.09 }

[[output]]
name = "right"
size = [320, 180]
position = [340, 300]
source = [0.45, 0, 0.55, 1]
corners = [[0, 0], [1, 0], [1, 1], [0, 1]]   # as hung
blend = { left = 0.09 }
"""


@pytest.fixture
def show(xvfb_display, monkeypatch, tmp_path):  # noqa: F811
    monkeypatch.setenv("DISPLAY", xvfb_display)
    f = tmp_path / "outputs.toml"
    f.write_text(FILE)
    port = free_udp_port()
    s = LiveShow("demo", "default", RenderConfig(width_px=320, height_px=180), AudioConfig(),
                 ControlConfig(osc_port=port, oscquery_port=free_udp_port(), mdns=False), outputs=f)
    s.port, s.file = port, f
    yield s
    s.close()


def frames_until(show, done, seconds=20.0):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        show.frame()
        if done():
            return True
    return False


@pytest.mark.skipif(shutil.which("oscsend") is None, reason="liblo-tools missing")
def test_osc_moves_a_corner_and_the_file_is_written_back(show):
    right = show.outputs.items[1]
    subprocess.run(["oscsend", "127.0.0.1", str(show.port), "/output/right/corner/1", "ff", "0.1", "0.05"],
                   check=True)
    # (OSC floats are 32-bit: 0.1 arrives as 0.10000000149)
    assert frames_until(show, lambda: np.allclose(right.spec.corners[0], (0.1, 0.05), atol=1e-6))
    assert np.allclose(right.warp.spec.corners[0], (0.1, 0.05), atol=1e-6)
    # written once still for WRITE_AFTER_S, keeping the comments; and not read back as an edit that reverts it
    assert frames_until(show, lambda: "[0.1, 0.05]" in show.file.read_text())
    text = show.file.read_text()
    assert "# two projectors side by side" in text and "# as hung" in text
    np.testing.assert_allclose(load_outputs(show.file).get("right").corners[0], (0.1, 0.05))
    frames_until(show, lambda: False, 1.0)
    assert np.allclose(right.spec.corners[0], (0.1, 0.05), atol=1e-6) and show.outputs.reloads == 0

    # blend widths too, keeping the file's other blend settings
    left = show.outputs.items[0]
    subprocess.run(["oscsend", "127.0.0.1", str(show.port), "/output/left/blend/right", "f", "0.2"], check=True)
    assert frames_until(show, lambda: abs(left.warp.spec.blend["right"].width - 0.2) < 1e-6)
    assert frames_until(show, lambda: abs(load_outputs(show.file).get("left").blend["right"].width - 0.2) < 1e-6)

    # OSCQuery lists the points with their values
    oq = show.osc.oscquery
    with urllib.request.urlopen(f"http://127.0.0.1:{oq.port}/output/right/corner/1", timeout=5) as r:
        node = json.loads(r.read())
    assert node["TYPE"] == "ff" and np.allclose(node["VALUE"], [0.1, 0.05], atol=1e-6)

    # a move that would fold the picture is refused and the registry shows what plays
    subprocess.run(["oscsend", "127.0.0.1", str(show.port), "/output/right/corner/1", "ff", "1.5", "1.5"],
                   check=True)
    assert frames_until(show, lambda: "fold" in show.outputs.last_error)
    assert np.allclose(right.spec.corners[0], (0.1, 0.05), atol=1e-6)
    assert frames_until(show, lambda: np.allclose(show.engine.registry.get("/output/right/corner/1"), (0.1, 0.05),
                                                  atol=1e-6))
    subprocess.run(["oscsend", "127.0.0.1", str(show.port), "/output/right/corner/1", "ff", "0.05", "0.05"],
                   check=True)                                   # a good move again: the HUD's error goes
    assert frames_until(show, lambda: show.outputs.last_error == "")


def test_keys_and_mouse_calibrate_and_scene_changes_keep_the_mapping(show):
    left = show.outputs.items[0]
    show.window.keys.put("c")                                       # calibration on
    assert frames_until(show, lambda: show.outputs.calibrating and left.warp.calibrate)
    for key in ("2", "left", "left", "shift+down"):                 # corner 2 of the left output
        show.window.keys.put(key)
    assert frames_until(show, lambda: np.allclose(left.spec.corners[1], (1 - 2 / 320, 10 / 180)))
    # the mouse: press on corner 4, drag it, let go
    for event in (("press", 2, 178), ("drag", 20, 160), ("release", 20, 160)):
        left.window.mouse.put(event)
    assert frames_until(show, lambda: np.allclose(left.spec.corners[3], (20 / 320, 160 / 180)))
    # a scene change keeps the points (they are the show's, not a preset's)
    show.engine.changes.put(Change("/cmd/preset/next", None, "test"))
    name = show.engine.preset.name
    assert frames_until(show, lambda: show.engine.preset.name != name, 60)
    frames_until(show, lambda: False, 0.5)
    assert np.allclose(left.spec.corners[1], (1 - 2 / 320, 10 / 180))
    assert show.engine.registry.get("/output/left/corner/2") == pytest.approx((1 - 2 / 320, 10 / 180))
    assert show.engine.registry.get("/output/calibrate") is True
    show.window.keys.put("c")                                       # off again: the arrows are the show's
    assert frames_until(show, lambda: not show.outputs.calibrating and not left.warp.calibrate)


def test_bench_outputs_prints_a_row_per_output_count(monkeypatch, capsys):
    from vj.bench_outputs import run_outputs_bench
    monkeypatch.delenv("DISPLAY", raising=False)           # it starts an Xvfb of its own
    rows = run_outputs_bench(RenderConfig(width_px=320, height_px=180), seconds=1.0, warmup_s=0.5)
    out = capsys.readouterr().out
    assert set(rows) == {0, 1, 2} and all(r["frames"] > 0 for r in rows.values())
    assert rows[0]["outputs_ms"] == 0 and rows[1]["outputs_ms"] > 0 and rows[2]["outputs_ms"] > 0
    assert "two outputs / one: frame time x" in out and "warp passes alone (headless, 320x180 outputs): 1 output" in out


def test_a_failing_output_leaves_the_show_playing_and_says_so_once(show, caplog):
    def broken(master):
        raise RuntimeError("GL_OUT_OF_MEMORY in the output's context")
    show.outputs.draw = broken
    frames = show.frames
    for _ in range(10):
        show.frame()
    assert show.frames == frames + 10
    assert len([r for r in caplog.records if "GL_OUT_OF_MEMORY" in r.getMessage()]) == 1
    assert show.window.ctx.error == "GL_NO_ERROR"
