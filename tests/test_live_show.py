"""The live loop under Xvfb: display frames never wait for a slow model; the HUD draws over the picture."""

import logging
import os
import shutil
import threading
import time

import numpy as np
import pytest

import probe_generator as probe
from test_live import grab
from test_scene import PRESET

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


def test_display_frames_go_on_while_the_model_is_stuck(show):
    # The model is held inside render() until the test lets it go: a frame loop that waited for the model,
    # for any time, would run no frames here until the gate's 30 s ran out. No wall-clock bound, so a busy
    # machine only makes this slower.
    render = show.engine.generator.render
    entered, gate, released_by_test = threading.Event(), threading.Event(), []

    def stuck_render(args):
        entered.set()
        released_by_test.append(gate.wait(30.0))
        return render(args)
    show.engine.generator.render = stuck_render
    try:
        for _ in range(2000):
            show.frame()
            if entered.is_set():
                break
        assert entered.is_set(), "the model worker never started a frame"
        model_frames = show.engine.model_frames
        for _ in range(30):
            show.frame()
        assert not released_by_test, "a display frame waited until the stuck model timed out"
        assert show.engine.model_frames == model_frames         # nothing new came from the stuck model
    finally:
        gate.set()
    # Once it is released its frames come through again.
    for _ in range(2000):
        show.frame()
        if show.engine.model_frames > model_frames:
            break
    assert show.engine.model_frames > model_frames
    assert released_by_test[0] is True


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
    """A real 1 MiB tmpfs (needs root, as CI and the setup command run); skipped where mounting is refused.
    1 MiB, not less: the recording (320x180, a keyframe and so a fragment a second) must finish some fragments
    before the disk fills. At 256 KiB the disk could fill inside the first fragment and leave none that plays
    (seen once in CI, on a busy machine); at 1 MiB it fills after about 6 s here."""
    import subprocess
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True, text=True)
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


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe missing")
def test_each_recording_lets_go_of_its_encoder_when_it_is_done(show, tmp_path):
    """A show records many takes: each stopped recording is let go once its file is finished, with its
    encoder, scaler and their threads (each take used to leave four FFmpeg threads behind for good)."""
    from test_render import ffprobe
    from vj.params import Change

    def os_threads() -> int:
        return len(os.listdir("/proc/self/task"))

    def take(i: int) -> None:
        show.engine.changes.put(Change("/cmd/record/start", str(tmp_path / f"take{i}.mp4"), "osc"))
        _run(show, 0.5)                              # a few frames at the recording's rate (it ticks by the clock)
        rec = show.recorder
        assert rec is not None
        show.engine.changes.put(Change("/cmd/record/stop", None, "osc"))
        deadline = time.monotonic() + 60            # a wait, not a bound: the encoder finishes on its thread
        while not rec.finished and time.monotonic() < deadline:
            show.frame()
        assert rec.finished and rec.error is None, rec.error
        show.frame()                                 # the next frame lets go of it

    take(0)                                          # the first take starts what stays for the show (pools)
    before = os_threads()
    for i in range(1, 5):
        take(i)
    assert os_threads() == before, f"{os_threads() - before} threads more after 4 takes"
    assert all(int(next(st for st in ffprobe(tmp_path / f"take{i}.mp4")["streams"]
                        if st["codec_type"] == "video")["nb_read_frames"]) > 0 for i in range(5))


def test_a_stalled_live_frame_shows_on_the_hud(xvfb_display, monkeypatch, tmp_path, caplog):  # noqa: F811
    # (Here, not in test_watchdog.py: a window must not open while another module's EGL context is current.)
    # The probe's advance (on the frame loop's thread) sleeps 3 s once: the live show's watchdog catches it.
    monkeypatch.setenv("DISPLAY", xvfb_display)
    probe.install(monkeypatch)
    (tmp_path / "p.toml").write_text(PRESET.replace('shader = "solid"', 'shader = "colorgrade"')
                                     .replace('"/fx/solid/gain" = 1.0', "") % ("p", "p", 'mode = "stall"\nat = 20', ""))
    show = LiveShow("demo", str(tmp_path / "p.toml"), RenderConfig(width_px=160, height_px=90), AudioConfig(),
                    ControlConfig(osc_port=0))
    try:
        with caplog.at_level(logging.WARNING, logger="vj.watchdog"):
            for _ in range(40):
                show.frame()
        assert show.watchdog.stalls == 1
        assert "stall_the_frame_loop" in caplog.text and "probe_generator.py" in caplog.text
        hud = " ".join(show.hud_stats()["errors"])
        assert "frame loop stalled" in hud and "stall_the_frame_loop" in hud
    finally:
        show.close()


def test_an_input_out_of_polarity_is_named_on_the_hud_and_still_heard(xvfb_display, monkeypatch, tmp_path):  # noqa: F811
    """A file whose right channel is the left inverted (a miswired cable): the HUD says so in red within the
    first segments, and the analysis hears the clicks (the channels' mean alone would be silence)."""
    import wave
    monkeypatch.setenv("DISPLAY", xvfb_display)
    sr = AudioConfig().sample_rate_hz
    left = np.zeros(3 * sr, np.float32)
    for k in range(0, len(left) - 400, sr // 4):
        left[k:k + 400] = 0.8 * np.sin(2 * np.pi * 80 * np.arange(400) / sr)
    path = tmp_path / "inverted.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes((np.stack((left, -left), axis=1) * 32767).astype("<i2").tobytes())
    show = LiveShow(str(path), "default", RenderConfig(width_px=160, height_px=90), AudioConfig(),
                    ControlConfig(osc_port=0))
    try:
        onsets, t0 = 0, time.monotonic()
        while time.monotonic() - t0 < 1.5:
            show.frame()
            onsets += int(show.engine.features.onset)
        assert any("out of polarity" in e for e in show.hud_stats()["errors"])
        assert onsets >= 2
    finally:
        show.close()
