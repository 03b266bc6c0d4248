"""Flashes on the beat: matching flashes to true beats, the auto lookahead, and `vj bench latency --beats`
through a real JACK server."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from vj.audio.servers import JackServer
from vj.beat_latency import MARKER_GAP_S, BeatLatencyReport, match_flashes
from vj.timing import FrameRecord

SR = 48000
BLOCK = 480                     # samples a frame reads: 10 ms frames at real time
FRAME_S = BLOCK / SR


def _records(marker_at: int, flash_at_s: list[float], n_frames: int):
    """Frames read every 10 ms at 100.0 s + i * 10 ms; audio silent but for the marker click; the probe is
    lit in the frame whose swap (read + 8 ms) is the first at or after each flash time."""
    recs = []
    for i in range(n_frames):
        t_read = 100.0 + i * FRAME_S
        audio = np.zeros(BLOCK, np.float32)
        lo = i * BLOCK
        if lo <= marker_at < lo + BLOCK:
            audio[marker_at - lo:min(BLOCK, marker_at - lo + 200)] = 0.8
        swap = t_read + 0.008
        lit = any(swap - FRAME_S < f <= swap for f in flash_at_s)
        recs.append(FrameRecord(t_read=t_read, samples_read=(i + 1) * BLOCK, t_drawn=t_read + 0.006,
                                t_swapped=swap, probe=0.9 if lit else 0.1, block=audio))
    return recs


def test_flashes_are_matched_to_the_beats_they_show():
    marker = 10 * BLOCK + 50
    beats = np.arange(0.0, 12.0, 0.5)
    # Audio arrives in 240-sample callbacks exactly in real time, 100.0 s = stream sample 0; no input latency.
    arrivals = [(k * 240, 100.0 + k * 240 / SR) for k in range(1, 8000)]
    sound_at = lambda b: 100.0 + (marker + MARKER_GAP_S * SR + b * SR) / SR   # noqa: E731
    errors = {b: (0.012 if k % 2 else -0.007) for k, b in enumerate(beats)}
    flashes = [sound_at(b) + e for b, e in errors.items() if b != 8.0]        # the beat at 8 s gets none
    flashes.append(sound_at(9.25))                                            # one on the off-beat
    recs = _records(marker, flashes, n_frames=int(15.0 / FRAME_S))
    report = BeatLatencyReport("test", "none", beats=int(np.sum(beats >= 5.0)))
    match_flashes(report, recs, arrivals, SR, 0.0, beats, skip_s=5.0)
    assert len(report.errors_ms) == report.beats - 1
    assert report.extra_flashes == 1
    # Each flash is seen in the first frame swapped at or after it: up to one frame (10 ms) later. The sound of
    # a beat is exact here (callbacks in real time); every error is the planted one plus 0..10 ms.
    planted = np.array([errors[b] * 1e3 for b in beats if b >= 5.0 and b != 8.0])
    got = np.array(report.errors_ms)
    assert np.all(got >= planted - 1e-6) and np.all(got < planted + FRAME_S * 1e3 + 1e-6)


def test_the_show_reports_beats_early_by_its_latency_only_when_auto():
    from vj.audio.analyzer import Analyzer
    from vj.config import AudioConfig

    class Registry:
        def __init__(self, auto):
            self.v = {"/audio/lookahead_ms": 5.0, "/audio/lookahead_auto": auto, "/audio/gain": 1.0}

        def get(self, k):
            return self.v[k]

    from vj.engine import Engine

    for auto, want in ((True, 0.005 + 0.030), (False, 0.005)):
        fake = Engine.__new__(Engine)
        fake.registry = Registry(auto)
        fake.analyzer = Analyzer(AudioConfig())
        fake.output_latency_s = 0.030
        from vj.audio.features import SILENT
        fake.features = fake.tracked = SILENT
        fake.beat_source = None
        fake.times = type("T", (), {"add": lambda *a: None})()
        Engine.analyse(fake, None)
        assert fake.analyzer.beats.lookahead_s == pytest.approx(want)


def test_bench_latency_beats_flashes_on_a_click_track_through_jack():
    if JackServer().running():
        pytest.skip("a JACK server is already running here; the test wants its own")
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    proc = subprocess.run([sys.executable, "-m", "vj.cli", "bench", "latency", "--beats", "--seconds", "16",
                           "--size", "640x360"], env=env, capture_output=True, text=True, timeout=220)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    got, total = map(int, re.search(r"flashes on (\d+)/(\d+) beats", out).groups())
    # 16 s at 120 BPM, the first 5 s left to the tracker: 22 beats. A tracker off the beat or at another
    # tempo flashes on none or half of them, or far off (matches stop at a third of a beat).
    assert total == 22 and got >= 0.8 * total, out
    extra = int(re.search(r"(\d+) flashes off the beat", out).group(1))
    assert extra <= 2, out
    early = float(re.search(r"beats reported ([\d.]+) ms early", out).group(1))
    assert early > 0.0, out                           # the measured latency is compensated
    assert not JackServer().running()


def test_a_replay_reports_beats_as_early_as_the_show_did():
    from vj.replay import _Events

    engine = type("E", (), {"output_latency_s": 0.0})()
    _Events(None, engine).apply([{"frame": 3, "audio": 0, "kind": "latency", "s": 0.021}])
    assert engine.output_latency_s == 0.021
