#!/usr/bin/env python3
"""Fit the onset tracker's downbeat weights (vj.audio.beats.DOWNBEAT_WEIGHTS) on annotated 4/4 music.

    python scripts/fit-downbeats.py ~/bc/fluid ~/bc/tim          # corpus folders (scripts/beat-corpus.py)

Runs the live analysis over every AUDIO + .beats pair, keeps what the beat tracker hears each hop (low- and
mid-band onsets, chroma), and at each annotated beat computes the tracker's four downbeat features: log(1 +
kick) and log(1 + snare) (band onset maximum within a quarter beat over the mean of the beat each side),
the chroma change at the beat over one beat and over two. A softmax over the four bar positions of 4-bar
windows gives the weights. It prints, out of fold (4 folds by piece, a piece's renders in one fold), the
share of beats at which the tracker's leaky evidence and switching rule put the bar right, against the
weights in vj/audio/beats.py, and the weights fitted on everything. Deterministic; a minute or two a folder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vj.audio.analyzer import Analyzer, AnalyzerSettings  # noqa: E402
from vj.audio.beats import DOWNBEAT_WEIGHTS, BeatSettings, bar_choice, chroma_change  # noqa: E402
from vj.audio.decode import decode_file  # noqa: E402
from vj.bench_beats import annotated_files, read_beats  # noqa: E402
from vj.config import AudioConfig  # noqa: E402

CFG = AudioConfig()
HOP_S = CFG.hop_samples / CFG.sample_rate_hz
DELAY_S = AnalyzerSettings().flux_delay_s     # the onset flux peaks this long after a note


def heard(audio: Path) -> np.ndarray:
    """(hops, 14): low, mid and the 12 chroma values the analyzer gives its beat tracker each hop."""
    analyzer = Analyzer(CFG)
    rows: list[list[float]] = []
    update = analyzer.beats.update

    def record(odf, **kw):
        chroma = kw.get("chroma")
        rows.append([kw.get("low", 0.0), kw.get("mid", 0.0)] + (list(chroma) if chroma is not None else [0.0] * 12))
        return update(odf, **kw)

    analyzer.beats.update = record
    analyzer.process(decode_file(audio, CFG.sample_rate_hz).mean(axis=1).astype(np.float32))
    return np.array(rows)


def features(hops: np.ndarray, times: np.ndarray) -> np.ndarray:
    """(beats, 4) downbeat features at each annotated beat; NaN rows where the context does not fit."""
    low, mid, chroma = hops[:, 0], hops[:, 1], hops[:, 2:]
    h = np.round((times + DELAY_S) / HOP_S).astype(int) - 1
    out = np.full((len(times), 4), np.nan)
    for k in range(2, len(times) - 2):
        p = int(h[k + 1] - h[k])
        q = max(1, p // 4)
        if h[k] - 2 * p < 0 or h[k + 2] >= len(hops) or p < 4:
            continue
        ref = slice(h[k] - p, h[k] + p)                  # as the tracker sees it, a beat later: the beat each side
        kick = low[h[k] - q:h[k] + q + 1].max() / (low[ref].mean() + 1e-9)
        snare = mid[h[k] - q:h[k] + q + 1].max() / (mid[ref].mean() + 1e-9)
        one = chroma_change(chroma[h[k - 1]:h[k]].sum(0), chroma[h[k]:h[k + 1]].sum(0))
        two = chroma_change(chroma[h[k - 2]:h[k]].sum(0), chroma[h[k]:h[k + 2]].sum(0))
        out[k] = (np.log1p(kick), np.log1p(snare), one, two)
    return out


def windows(pieces: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """(n, 4 positions, 4 features): mean features by bar position over 4-bar windows."""
    out = []
    for f, pos in pieces:
        for s in range(0, len(f) - 16, 4):
            fw, pw = f[s:s + 16], pos[s:s + 16]
            if np.isnan(fw).any():
                continue
            out.append([fw[pw == b].mean(axis=0) for b in (1, 2, 3, 4)])
    return np.array(out)


def fit(x: np.ndarray, l2: float = 1e-2, steps: int = 400, rate: float = 0.5) -> np.ndarray:
    """Weights w maximising the softmax probability of position 1 (gradient descent on standardised inputs)."""
    mu, sd = x.reshape(-1, x.shape[-1]).mean(0), x.reshape(-1, x.shape[-1]).std(0) + 1e-9
    z = (x - mu) / sd
    w = np.zeros(x.shape[-1])
    for _ in range(steps):
        s = z @ w
        p = np.exp(s - s.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        w -= rate * (-(z[:, 0] - (p[:, :, None] * z).sum(axis=1)).mean(axis=0) + l2 * w)
    return w / sd


BAR_DECAY = float(np.exp(-2.0 / BeatSettings().bar_memory_s))    # the tracker's leak per bar at 120 BPM


def bar_right(f: np.ndarray, pos: np.ndarray, w: np.ndarray, decay: float = BAR_DECAY) -> float:
    """Share of beats (after two bars) at which the tracker's rule (`bar_choice`) holds the true downbeat,
    averaged over the four positions it could start from. `decay`: the evidence's leak per bar."""
    score = np.nan_to_num(f) @ w
    shares = []
    for start in range(4):
        ev, cur, good = np.zeros(4), start, 0
        for i, (s, b) in enumerate(zip(score, pos)):
            ev[b - 1] = decay * ev[b - 1] + s
            cur = bar_choice(ev, cur)
            good += i >= 8 and cur == 0
        shares.append(good / max(len(score) - 8, 1))
    return float(np.mean(shares))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+")
    args = ap.parse_args()
    pieces: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    for folder in args.folders:
        for audio, beats in annotated_files(folder):
            ref = read_beats(beats)
            if ref.in_bar is None or ref.in_bar.max() != 4:
                continue                                   # 4/4 only: the tracker counts in 4
            pieces[(folder, audio.stem)] = (features(heard(audio), ref.times_s), ref.in_bar)
            print(f"{folder}/{audio.stem}: {len(ref.times_s)} beats", file=sys.stderr, flush=True)
    names = sorted({name for _, name in pieces})
    fold = {name: i % 4 for i, name in enumerate(names)}
    shipped, before = np.array(DOWNBEAT_WEIGHTS), np.array([1.0, -0.5, 4.0, 0.0])     # before: set by hand
    oof = {k: fit(windows([v for key, v in pieces.items() if fold[key[1]] != k])) for k in range(4)}
    for folder in args.folders:
        mine = [(key, v) for key, v in pieces.items() if key[0] == folder]
        fitted = np.mean([bar_right(*v, oof[fold[key[1]]]) for key, v in mine])
        current = np.mean([bar_right(*v, shipped) for key, v in mine])
        hand = np.mean([bar_right(*v, before) for key, v in mine])
        print(f"{folder}: {len(mine)} pieces; bar right at {fitted:.3f} of beats with weights fitted out of fold, "
              f"{current:.3f} with DOWNBEAT_WEIGHTS {shipped.tolist()}, {hand:.3f} with the hand-set "
              f"{before.tolist()}")
    for k in range(4):
        print(f"fold {k} weights", np.round(oof[k], 3))
    print("weights fitted on everything (kick, snare, change over one beat, over two):",
          np.round(fit(windows(list(pieces.values()))), 3))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
