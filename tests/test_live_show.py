"""The live loop under Xvfb: display frames never wait for a slow model; the HUD draws over the picture."""

import shutil
import time

import numpy as np
import pytest

from test_live import grab

from vj.config import AudioConfig, ControlConfig, RenderConfig
from vj.show import LiveShow
from xvfb import xvfb_display  # noqa: F401  (fixture)

CFG = RenderConfig(width_px=320, height_px=180)


@pytest.fixture
def show(xvfb_display, monkeypatch):  # noqa: F811
    monkeypatch.setenv("DISPLAY", xvfb_display)
    s = LiveShow("demo", "default", CFG, AudioConfig(), ControlConfig(osc_port=0))
    yield s
    s.close()


def test_display_keeps_its_rate_with_a_model_slowed_to_5_fps(show):
    render = show.engine.generator.render
    model_period_s = 0.2

    def slow_render(args):
        time.sleep(model_period_s)
        return render(args)
    show.engine.generator.render = slow_render
    frame_times = []
    t_end = time.perf_counter() + 3.0
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        show.frame()
        frame_times.append(time.perf_counter() - t0)
    model_frames = show.engine.model_frames
    assert model_frames <= 3.0 / model_period_s + 1
    # The loop never waits for the model: many display frames per model frame, none as long as a model frame.
    assert len(frame_times) >= 3 * max(model_frames, 1), (len(frame_times), model_frames)
    assert max(frame_times[3:]) < model_period_s, f"a display frame waited {max(frame_times[3:]) * 1e3:.0f} ms"


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg (x11grab) missing")
def test_hud_draws_stats_over_the_picture(show, xvfb_display, tmp_path):  # noqa: F811
    show.engine.registry.set("/master/freeze", True)   # hold the picture so only the HUD differs
    for _ in range(5):
        show.frame()
    plain = grab(xvfb_display, tmp_path / "plain.png")
    show.hud_visible = True
    for _ in range(2):
        show.frame()
    with_hud = grab(xvfb_display, tmp_path / "hud.png")
    stats = show.hud_stats()
    assert stats["preset"] == "Default" and stats["display_fps"] > 0 and "audio_status" in stats
    top_left = np.abs(plain[:40, :120] - with_hud[:40, :120]).mean()
    rest = np.abs(plain[120:180, 200:320] - with_hud[120:180, 200:320]).mean()
    assert top_left > 10 and rest < 2, (top_left, rest)


def _run(show, seconds):
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        show.frame()


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe missing")
def test_recording_starts_and_stops_on_command_while_the_show_runs(show, tmp_path, caplog):
    from test_render import ffprobe
    from vj.params import Change

    _run(show, 1.0)
    path = tmp_path / "take1.mp4"
    show.engine.changes.put(Change("/cmd/record/start", str(path), "osc"))
    show.engine.changes.put(Change("/cmd/record/start", str(tmp_path / "second.mp4"), "osc"))   # ignored
    _run(show, 2.0)
    show.engine.changes.put(Change("/cmd/record/stop", None, "osc"))
    frames_before = show.frames
    _run(show, 0.5)
    assert show.recorder is None and show.frames > frames_before
    # A path that cannot be written: a clear message and the show goes on.
    show.engine.changes.put(Change("/cmd/record/start", str(tmp_path / "no" / "such" / "dir.mp4"), "osc"))
    _run(show, 0.3)
    assert show.recorder is None and "cannot start recording" in caplog.text
    show.close()
    info = ffprobe(path)
    video = next(st for st in info["streams"] if st["codec_type"] == "video")
    # Started 1 s into the show: the file starts at 0 and lasts the ~2 s recorded.
    assert 1.5 < float(video["duration"]) < 2.8, video["duration"]
    assert not (tmp_path / "second.mp4").exists()


@pytest.fixture
def small_tmpfs(tmp_path):
    """A real 256 KiB tmpfs (needs root, as CI and the setup command run); skipped where mounting is refused."""
    import subprocess
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe missing")
def test_a_full_disk_stops_the_recording_and_the_show_goes_on(show, small_tmpfs, caplog):
    from test_render import ffprobe
    from vj.params import Change

    path = small_tmpfs / "take.mp4"
    show.engine.changes.put(Change("/cmd/record/start", str(path), "osc"))
    _run(show, 0.2)
    assert show.recorder is not None
    deadline = time.monotonic() + 60
    while show.recorder is not None and not show.recorder.error and time.monotonic() < deadline:
        _run(show, 0.5)
    assert show.recorder is not None and "No space left on device" in (show.recorder.error or ""), "disk never filled"
    assert "No space left on device" in caplog.text
    assert any("recording" in e and "No space left" in e for e in show.hud_stats()["errors"])
    frames = show.frames
    _run(show, 1.0)
    assert show.frames > frames + 5                      # the show did not stop with the recording
    show.engine.changes.put(Change("/cmd/record/stop", None, "osc"))
    _run(show, 0.2)
    show.close()
    video = next(st for st in ffprobe(path)["streams"] if st["codec_type"] == "video")
    assert int(video["nb_read_frames"]) > 0              # what was written before the disk filled plays
