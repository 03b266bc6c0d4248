"""BeatNet: beat and downbeat activations from a small recurrent network, one hop at a time (pure numpy).

The network is ours: two GRU layers of `HIDDEN` units over a log-spaced filterbank and its rise since the
previous hop, trained by `scripts/train-beatnet.py` on the beat corpus (docs/BEAT_CORPUS.md); its weights
are `beatnet.npz` beside this file, under the project's licence. Per hop it gives three probabilities:
no beat, a beat that is not a downbeat, a downbeat. A beat is marked `LABEL_DELAY_HOPS` after it sounds
(the window has to hear the attack), so a beat found in hop n sounded `LABEL_DELAY_HOPS` hops earlier.

Inference is float64 matrix-vector products and is the same code live and offline (`vj analyze`), hop by
hop; training computes the same features for whole files at once (`file_features`).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

WEIGHTS = Path(__file__).with_name("beatnet.npz")
BANDS_PER_OCTAVE = 4
BAND_HZ = (30.0, 16000.0)
COMPRESSION = 1000.0                 # log10(1 + COMPRESSION * magnitude), magnitude 1 = a full-scale sine
HIDDEN = 40
LABEL_DELAY_HOPS = 1


def band_matrix(sample_rate_hz: int, fft_samples: int) -> np.ndarray:
    """`(n_bins, n_bands)`: each band's mean magnitude over its part of the spectrum, BANDS_PER_OCTAVE bands
    an octave over BAND_HZ. Bands narrower than a bin take their share of it (bin k covers k +- 0.5), so
    the bands are the same at any sample rate."""
    hz_per_bin = sample_rate_hz / fft_samples
    n_bins = fft_samples // 2 + 1
    lo, hi = BAND_HZ
    n = int(round(math.log2(hi / lo) * BANDS_PER_OCTAVE))
    edges = np.geomspace(lo, hi, n + 1) / hz_per_bin                                 # in bins
    k = np.arange(n_bins)[:, None]
    overlap = np.clip(np.minimum(k + 0.5, edges[None, 1:]) - np.maximum(k - 0.5, edges[None, :-1]), 0.0, None)
    return overlap / np.diff(edges)[None, :]


class BandFeatures:
    """Power spectrum of one hop -> network input: compressed band magnitudes and their rise."""

    def __init__(self, sample_rate_hz: int, fft_samples: int, window: np.ndarray):
        # magnitude of a full-scale sine in its bin: sum(window) / 2
        self.matrix = band_matrix(sample_rate_hz, fft_samples) * (2.0 / float(np.asarray(window, np.float64).sum()))
        self.n_bands = self.matrix.shape[1]
        self.reset()

    def reset(self) -> None:
        self._prev = np.zeros(self.n_bands)

    def magnitudes(self, power: np.ndarray) -> np.ndarray:
        """`(n_bins,)` or `(n_hops, n_bins)` power -> mean magnitude per band, full-scale sine = 1."""
        return np.sqrt(np.asarray(power, np.float64)) @ self.matrix

    def step(self, power: np.ndarray) -> np.ndarray:
        """One hop's `(2 * n_bands,)` input."""
        log_mag = compress(self.magnitudes(power))
        x = np.concatenate((log_mag, np.maximum(log_mag - self._prev, 0.0)))
        self._prev = log_mag
        return x


def compress(mags: np.ndarray) -> np.ndarray:
    """Band magnitudes (full-scale sine = 1) -> the network's log scale."""
    return np.log10(1.0 + COMPRESSION * np.asarray(mags, np.float64))


def inputs_from_magnitudes(mags: np.ndarray) -> np.ndarray:
    """`(n_hops, n_bands)` band magnitudes of consecutive hops -> `(n_hops, 2 * n_bands)` inputs, as
    `BandFeatures.step` gives them hop by hop (the hop before the first is silence)."""
    log_mag = compress(mags)
    prev = np.vstack((np.zeros((1, log_mag.shape[1])), log_mag[:-1]))
    return np.hstack((log_mag, np.maximum(log_mag - prev, 0.0)))


def file_features(mono: np.ndarray, sample_rate_hz: int, hop: int, fft_samples: int) -> np.ndarray:
    """Band magnitudes `(n_hops, n_bands)` of a whole signal, hop i (from 1) analysing the `fft_samples`
    samples that end at sample i * hop, zeros before the start: the hops the live analyzer sees."""
    window = np.hanning(fft_samples + 1)[:-1].astype(np.float32)
    feats = BandFeatures(sample_rate_hz, fft_samples, window)
    x = np.concatenate((np.zeros(fft_samples, np.float32), np.asarray(mono, np.float32)))
    n_hops = (len(x) - fft_samples) // hop
    out = np.empty((n_hops, feats.n_bands))
    for start in range(0, n_hops, 4096):
        idx = np.arange(start, min(n_hops, start + 4096))
        frames = x[(idx[:, None] + 1) * hop + np.arange(fft_samples)[None, :]]
        spec = np.fft.rfft(frames * window, axis=1)
        out[idx] = feats.magnitudes(spec.real ** 2 + spec.imag ** 2)
    return out


class BeatNet:
    """The trained network, stepped one hop at a time: `step(x) -> (beat, downbeat)` probabilities."""

    def __init__(self, weights: dict[str, np.ndarray]):
        self.layers = []
        i = 0
        while f"w_ih{i}" in weights:
            self.layers.append(tuple(np.asarray(weights[k + str(i)], np.float64)
                                     for k in ("w_ih", "w_hh", "b_ih", "b_hh")))
            i += 1
        if not self.layers:
            raise ValueError("beat network weights have no GRU layers")
        self.w_out = np.asarray(weights["w_out"], np.float64)                      # (3, hidden)
        self.b_out = np.asarray(weights["b_out"], np.float64)
        self.n_inputs = self.layers[0][0].shape[1]
        self.reset()

    @classmethod
    def load(cls, path: str | os.PathLike = WEIGHTS) -> "BeatNet":
        return cls(read_weights(path))

    def reset(self) -> None:
        self.h = [np.zeros(w_hh.shape[1]) for _, w_hh, _, _ in self.layers]

    def step(self, x: np.ndarray) -> tuple[float, float]:
        """One hop's input `(n_inputs,)` -> (P(beat, downbeats included), P(downbeat))."""
        v = np.asarray(x, np.float64)
        for j, (w_ih, w_hh, b_ih, b_hh) in enumerate(self.layers):
            h = self.h[j]
            gi = w_ih @ v + b_ih
            gh = w_hh @ h + b_hh
            k = len(h)
            r = 1.0 / (1.0 + np.exp(-(gi[:k] + gh[:k])))
            z = 1.0 / (1.0 + np.exp(-(gi[k:2 * k] + gh[k:2 * k])))
            n = np.tanh(gi[2 * k:] + r * gh[2 * k:])
            v = self.h[j] = (1.0 - z) * n + z * h
        logits = self.w_out @ v + self.b_out
        e = np.exp(logits - logits.max())
        p = e / e.sum()
        return float(p[1] + p[2]), float(p[2])


def read_weights(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays of a weights file (.npz; no pickles: np.load refuses object arrays)."""
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


_DEFAULT: dict[str, np.ndarray] | None = None


def load_default() -> BeatNet | None:
    """A fresh network with the shipped weights (read once per process); None, with a warning, where
    the weights file is missing or unreadable: the tracker then works from onset strength alone."""
    global _DEFAULT
    if _DEFAULT is None:
        try:
            _DEFAULT = read_weights(WEIGHTS)
        except (OSError, ValueError) as exc:
            log.warning("beat network weights %s unreadable (%s): beats from onsets only", WEIGHTS, exc)
            return None
    return BeatNet(_DEFAULT)
