"""Audio-to-light latency: the click-by-click analysis, and `vj bench latency` through a real JACK server."""

import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from vj.audio.servers import JackServer
from vj.latency import analyse, find_clicks
from vj.timing import PARTS, FrameRecord, LatencyEstimate

SR = 48000


def _records(click_at: int, flash_frame: int, n_frames: int = 12, frame_s: float = 0.02, block: int = 960):
    """Frames of `block` samples each, read every `frame_s`; the probe is lit from `flash_frame` on."""
    recs = []
    for i in range(n_frames):
        t_read = 10.0 + i * frame_s
        audio = np.zeros(block, np.float32)
        lo = i * block
        if lo <= click_at < lo + block:
            audio[click_at - lo:] = 0.5
        elif click_at < lo:
            audio[:] = 0.5 if lo - click_at < 0.05 * SR else 0.0
        rec = FrameRecord(t_read=t_read, samples_read=(i + 1) * block,
                          t_drawn=t_read + 0.006, t_swapped=t_read + 0.008,
                          probe=0.9 if i >= flash_frame else 0.1, block=audio)
        recs.append(rec)
    return recs


def test_analysis_times_a_click_from_its_sound_to_the_swap_of_the_flash_frame():
    click = 5 * 960 + 100                     # in frame 5's audio
    recs = _records(click, flash_frame=6)
    # Callbacks of 240 samples at real time; everything frame 5 reads (up to sample 5760) arrived by 10.099 s.
    arrivals = [(k * 240, 10.099 - (5760 - k * 240) / SR) for k in range(1, 60)]
    out = analyse(recs, arrivals, SR, input_latency_s=0.003)
    assert len(out) == 1
    c = out[0]
    assert c.sample == click
    # The callback holding the click delivered samples up to 5040; it arrived 720 samples before 10.099 s.
    arrival = 10.099 - 720 / SR
    sound = arrival - 0.003 - (5 * 960 + 240 - 1 - click) / SR
    flash_swap = 10.0 + 6 * 0.02 + 0.008
    # abs=1e-6 ms: float64 times near 10 s carry ~2e-15 s of rounding (1e-12 ms); a wrong part is >= 1 ms off.
    assert c.latency_ms == pytest.approx((flash_swap - sound) * 1e3, abs=1e-6)
    assert sum(c.parts_ms.values()) == pytest.approx(c.latency_ms, abs=1e-6)
    assert c.parts_ms["analysis hop"] == pytest.approx(20.0)      # one frame late
    assert c.parts_ms["render"] == pytest.approx(6.0)
    assert c.parts_ms["swap"] == pytest.approx(2.0)


def test_a_flash_that_never_comes_is_not_counted():
    recs = _records(5 * 960 + 100, flash_frame=99)
    arrivals = [(k * 240, 10.0 + k * 0.005) for k in range(1, 60)]
    assert analyse(recs, arrivals, SR, 0.0) == []


def test_find_clicks_needs_quiet_before_a_new_click():
    recs = _records(2 * 960, flash_frame=3, n_frames=8)
    assert find_clicks(recs, SR) == [2 * 960]


def test_estimate_uses_the_measured_frame_intervals():
    est = LatencyEstimate(block_s=256 / SR, hop_s=512 / SR)
    assert est.total_ms() is None
    for i in range(50):
        est.add(FrameRecord(i * 0.02, 0, t_drawn=i * 0.02 + 0.005, t_swapped=i * 0.02 + 0.007))
    split = est.split_ms()
    assert list(split) == list(PARTS)
    assert split["wait for frame"] == pytest.approx(10.0)        # half of steady 20 ms frames
    assert split["render"] == pytest.approx(5.0)
    assert split["swap"] == pytest.approx(2.0)
    assert split["audio buffering"] == pytest.approx(256 / SR / 2 * 1e3)
    est.model_fps, est.model_elapsed_s = 10.0, 0.03
    assert est.model_path_ms() == pytest.approx(80.0)


@pytest.mark.skipif(not JackServer.installed() or shutil.which("Xvfb") is None, reason="jackd or Xvfb missing")
def test_bench_latency_times_clicks_through_jack(tmp_path):
    if JackServer().running():
        pytest.skip("a JACK server is already running here; the test wants its own")
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}      # the command starts its own Xvfb
    proc = subprocess.run([sys.executable, "-m", "vj.cli", "bench", "latency", "--clicks", "8", "--size", "640x360"],
                          env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    detected = re.search(r"detected (\d+)/8 clicks", out)
    assert detected and int(detected.group(1)) >= 7, out
    # Each detected click's flash came within MAX_FLASH_WAIT_S (0.3 s) of the frame that read it (vj.latency);
    # 500 ms leaves 0.2 s for audio buffering and the wait for that frame. A s/ms slip is 1000x off.
    p50, p95, mx = map(float, re.search(r"p50 +([\d.]+) ms +p95 +([\d.]+) ms +max +([\d.]+) ms", out).groups())
    assert 1.0 < p50 <= p95 <= mx < 500.0, out
    measured = float(re.search(r"measured, mean +([\d.]+) ms", out).group(1))
    estimate = float(re.search(r"HUD estimate +([\d.]+) ms", out).group(1))
    # The HUD's estimate comes from the frame loop's own timings; it must describe what the clicks measure.
    assert 0.5 * measured < estimate < 2.0 * measured, out
    assert not JackServer().running(), "the JACK server the bench started must be stopped again"
