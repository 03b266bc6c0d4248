"""Live audio through a real PulseAudio server into a live show in a glfw window under Xvfb.

A tone played into the server reaches `vj run` and lights the picture; killing the server mid-show keeps the
window rendering, and restarting it re-attaches the input without a restart.
"""

import subprocess
import sys
import time

import numpy as np
import pytest

from audio_synth import write_wav
from test_live import grab
from pulse_server import pulse  # noqa: F401  (fixture)
from vj.audio.servers import PulseServer
from vj.config import AudioConfig, ControlConfig, RenderConfig
from xvfb import xvfb_display  # noqa: F401  (fixture)

SR = 48000

pytestmark = pytest.mark.skipif(not PulseServer.installed(), reason="pulseaudio / paplay not installed")


def _tone_wav(path, seconds: float, amplitude: float = 0.4):
    t = np.arange(int(seconds * SR)) / SR
    mono = (amplitude * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    return write_wav(path, np.repeat(mono[:, None], 2, axis=1))


def test_a_tone_into_the_audio_server_lights_up_vj_run(pulse, xvfb_display, tmp_path):
    env = dict(pulse.env, DISPLAY=xvfb_display)
    proc = subprocess.Popen([sys.executable, "-m", "vj.cli", "run", "--audio", "pulse", "--preset", "flash",
                             "--size", "640x360", "--osc-port", "0", "--duration", "16"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # PulseAudio's first block arrives ~2 s after the stream starts; vj logs when it is listening.
        deadline = time.monotonic() + 10
        log = ""
        while "listening on" not in log and time.monotonic() < deadline:
            line = proc.stderr.readline()
            assert line or proc.poll() is None, f"vj run exited: {log}"
            log += line
        assert "listening on" in log, log
        time.sleep(1.0)
        quiet = [grab(xvfb_display, tmp_path / f"quiet{i}.png")[:360, :640].mean() for i in range(2)]
        player = pulse.play(_tone_wav(tmp_path / "tone.wav", 4.0))
        time.sleep(1.5)
        loud = [grab(xvfb_display, tmp_path / f"loud{i}.png")[:360, :640].mean() for i in range(2)]
        player.wait(10)
        time.sleep(1.0)
        after = grab(xvfb_display, tmp_path / "after.png")[:360, :640].mean()
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    # The flash scene is dim plasma in silence and washes towards white while the tone plays.
    assert max(quiet) < 130, quiet
    assert min(loud) > max(quiet) + 60, (quiet, loud)
    assert after < min(loud) - 40, (after, loud)


def test_the_show_keeps_rendering_through_a_dead_audio_server_and_reattaches(pulse, xvfb_display, monkeypatch,
                                                                              tmp_path):
    monkeypatch.setenv("DISPLAY", xvfb_display)
    from vj.show import LiveShow

    show = LiveShow("pulse", "flash", RenderConfig(width_px=320, height_px=180), AudioConfig(),
                    ControlConfig(osc_port=0))
    try:
        def run_for(seconds, until=None):
            start, t0 = show.frames, time.monotonic()
            while time.monotonic() - t0 < seconds:
                show.frame()
                if until is not None and until():
                    break
            return show.frames - start, time.monotonic() - t0

        run_for(8.0, until=lambda: show.source.status.startswith("listening"))
        assert show.source.status.startswith("listening"), show.source.status
        show.stats.times_s.clear()

        pulse.kill()
        frames, secs = run_for(3.0)
        assert "lost" in show.source.status, show.source.status
        assert frames / secs > 5, f"only {frames} frames in {secs:.1f} s while the device was gone"
        assert show.stats.summary()["frame_ms_p99"] < 500, show.stats.summary()
        assert show.engine.features.level < 0.05          # the features decayed to silence

        pulse.start()
        t_back = time.monotonic()
        run_for(10.0, until=lambda: show.source.reconnects > 0)
        assert show.source.reconnects == 1, show.source.status
        reattach_s = time.monotonic() - t_back
        player = pulse.play(_tone_wav(tmp_path / "tone.wav", 4.0))
        run_for(6.0, until=lambda: show.engine.features.level > 0.3)
        player.wait(10)
        assert show.engine.features.level > 0.3 or show.source.level_dbfs > -20, show.source.status
        assert reattach_s < 8.0
    finally:
        show.close()
