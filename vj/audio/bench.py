"""`vj bench analysis`: cost per analysis hop (whole and by part) and the real-time factor (numpy only, prints).

The built-in demo track is fed block by block exactly as a live input delivers it (`block_frames` samples
per `process` call). Two passes: a plain one for the real-time factor, then one with each part of a hop
wrapped in a timer for the per-hop percentiles. The timers cost well under a microsecond per call.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from vj.audio.analyzer import Analyzer, AnalyzerSettings
from vj.audio.demo import demo_track
from vj.config import AudioConfig

# Parts of Analyzer._hop by the methods that do them; what is left of the hop is the spectrum and levels.
_PARTS = (
    ("onsets (flux, pickers)", ("_onset",)),
    ("chroma, centroid", ("_timbre",)),
    ("percussive share", ("_percussive_share",)),
    ("sections", ("_sections",)),
)


@dataclass(frozen=True)
class AnalysisBench:
    """Microseconds per hop by part (p50, p99, max) and the real-time factor of the plain run."""

    hops: int
    audio_s: float
    elapsed_s: float
    per_hop_us: dict[str, tuple[float, float, float]]
    network_elapsed_s: float = 0.0          # the plain run again with beats from the beat network

    @property
    def realtime_factor(self) -> float:
        return self.audio_s / max(self.elapsed_s, 1e-12)


def _feed(analyzer: Analyzer, mono: np.ndarray, block: int) -> int:
    hops = 0
    for i in range(0, len(mono), block):
        hops += len(analyzer.process(mono[i:i + block]))
    return hops


def timed(fn: Callable, sink: list[float]) -> Callable:
    """`fn` that appends how long each call took (s) to `sink`."""
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        sink.append(time.perf_counter() - t0)
        return out
    return wrapper


def bench_analysis(audio_cfg: AudioConfig = AudioConfig(), duration_s: float = 64.0) -> AnalysisBench:
    """Analyse `duration_s` of the demo track live-style three times: plain (the default, beats from onsets)
    and with beats from the beat network, then the latter with per-part timers."""
    sr = audio_cfg.sample_rate_hz
    mono = np.ascontiguousarray(demo_track(sr, duration_s).mean(axis=1), dtype=np.float32)
    block = max(1, audio_cfg.block_frames)
    _feed(Analyzer(audio_cfg), mono[: sr * 2], block)           # warm caches and numpy's first calls

    analyzer = Analyzer(audio_cfg)
    t0 = time.perf_counter()
    hops = _feed(analyzer, mono, block)
    elapsed = time.perf_counter() - t0
    analyzer = Analyzer(audio_cfg, AnalyzerSettings(beat_network=True))
    t0 = time.perf_counter()
    _feed(analyzer, mono, block)
    network = time.perf_counter() - t0

    analyzer = Analyzer(audio_cfg, AnalyzerSettings(beat_network=True))
    samples: dict[str, list[float]] = {"whole hop": [], "beat tracker": [], "beat network": []}
    analyzer._hop = timed(analyzer._hop, samples["whole hop"])
    analyzer.beats.update = timed(analyzer.beats.update, samples["beat tracker"])
    if analyzer._net is not None:
        analyzer._net.step = timed(analyzer._net.step, samples["beat network"])
        analyzer._band_features.step = timed(analyzer._band_features.step, samples["beat network"])
    for label, methods in _PARTS:
        sink = samples.setdefault(label, [])
        for m in methods:
            setattr(analyzer, m, timed(getattr(analyzer, m), sink))
    _feed(analyzer, mono, block)
    whole = np.asarray(samples["whole hop"])
    net = np.asarray(samples["beat network"])
    if len(net):                                             # features and network: two timings a hop
        samples["beat network"] = list(net[0::2] + net[1::2])
    else:
        del samples["beat network"]
    parts = sum(np.asarray(v) for k, v in samples.items() if k != "whole hop")
    samples["spectrum, levels (rest)"] = list(np.maximum(whole - parts, 0.0))

    per_hop = {}
    for k, v in samples.items():
        a = np.asarray(v) * 1e6
        per_hop[k] = (float(np.percentile(a, 50)), float(np.percentile(a, 99)), float(a.max()))
    return AnalysisBench(hops, len(mono) / sr, elapsed, per_hop, network)


def print_analysis_bench(audio_cfg: AudioConfig = AudioConfig(), duration_s: float = 64.0, out=print) -> AnalysisBench:
    """Run `bench_analysis` and print a table; returns the result."""
    hop_us = audio_cfg.hop_samples / audio_cfg.sample_rate_hz * 1e6
    out(f"vj bench analysis: demo track, {duration_s:g} s at {audio_cfg.sample_rate_hz} Hz in blocks of "
        f"{audio_cfg.block_frames} samples; hop {audio_cfg.hop_samples} samples ({hop_us:.0f} us of audio), "
        f"window {audio_cfg.fft_samples}")
    r = bench_analysis(audio_cfg, duration_s)
    out(f"  {'part (beats from the network)':26s} {'p50 us':>9s} {'p99 us':>9s} {'max us':>9s}")
    order = ["whole hop", "spectrum, levels (rest)"] + [label for label, _ in _PARTS] + ["beat network", "beat tracker"]
    for k in (k for k in order if k in r.per_hop_us):
        p50, p99, top = r.per_hop_us[k]
        out(f"  {k:26s} {p50:9.1f} {p99:9.1f} {top:9.1f}")
    out(f"  {r.hops} hops in {r.elapsed_s:.2f} s without timers: {r.elapsed_s / r.hops * 1e6:.1f} us per hop "
        f"on average, real-time factor {r.realtime_factor:.0f}x (one core's share: "
        f"{100.0 / r.realtime_factor:.2f} %)")
    out(f"  with beats from the beat network (--beats-from network): {r.network_elapsed_s / r.hops * 1e6:.1f} us per "
        f"hop, {r.network_elapsed_s / max(r.elapsed_s, 1e-12):.2f}x the default, one core's share "
        f"{100.0 * r.network_elapsed_s / r.audio_s:.2f} %")
    return r
