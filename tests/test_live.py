"""`vj run` in a real glfw window under Xvfb: it opens, renders, reacts to OSC, and is not blank."""

import os
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from netns import only_loopback
from test_render import ffprobe

from vj.gfx.png import read_png
from xvfb import xvfb_display  # noqa: F401  (fixture)

pytestmark = [
    pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg (x11grab) missing"),
    pytest.mark.skipif(shutil.which("oscsend") is None, reason="liblo-tools missing"),
]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def grab(display: str, path) -> np.ndarray:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "x11grab", "-draw_mouse", "0", "-video_size", "1280x720", "-i", display,
                    "-frames:v", "1", str(path)], check=True, timeout=30)
    return read_png(path)[..., :3].astype(np.float32)


def test_live_window_renders_and_obeys_osc(xvfb_display, tmp_path):
    env = dict(os.environ, DISPLAY=xvfb_display)
    port = free_udp_port()
    shot = tmp_path / "last.png"
    rec = tmp_path / "show.mp4"
    proc = subprocess.Popen([sys.executable, "-m", "vj.cli", "run", "--audio", "demo", "--size", "640x360",
                             "--osc-port", str(port), "--duration", "16", "--screenshot", str(shot),
                             "--record", str(rec), *([] if only_loopback() else ["--no-mdns"])],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Start-up (imports, the window, the first model frames) takes seconds, more on a cold, loaded
        # machine: wait for the picture, up to 30 s, instead of guessing a time.
        deadline = time.monotonic() + 30.0
        while True:
            time.sleep(1.0)
            assert proc.poll() is None, proc.communicate()[1]
            lit = grab(xvfb_display, tmp_path / "lit.png")[:360, :640]
            if (lit.std() > 20 and lit.mean() > 20) or time.monotonic() > deadline:
                break
        subprocess.run(["oscsend", "127.0.0.1", str(port), "/master/blackout", "T"], check=True)
        time.sleep(1.5)
        dark = grab(xvfb_display, tmp_path / "dark.png")
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    # With no window manager the 640x360 window sits at the top left of the 1280x720 screen.
    assert lit.std() > 20 and lit.mean() > 20, f"live window looks blank (mean {lit.mean():.1f}, std {lit.std():.1f})"
    assert dark.max() < 10, "blackout over OSC should leave a black window"
    assert "display" in err and "fps" in err, err
    last = read_png(shot)
    assert last.shape[:2] == (360, 640)

    # The live recording: both streams, and about as long as the show ran.
    info = ffprobe(rec)
    assert sorted(st["codec_name"] for st in info["streams"]) == ["aac", "h264"]
    video = next(st for st in info["streams"] if st["codec_type"] == "video")
    audio = next(st for st in info["streams"] if st["codec_type"] == "audio")
    assert 13.0 < float(video["duration"]) < 17.0, video["duration"]
    # The streams end within a fraction of a second: the last audio block (~43 ms) and frame (~33 ms), and
    # the AAC priming (21 ms). A missing or doubled second of either stream is 1 s off.
    assert abs(float(audio["duration"]) - float(video["duration"])) < 0.5
    assert int(video["nb_read_frames"]) > 100
