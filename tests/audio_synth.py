"""Small synthesized tracks for end-to-end tests, written as real WAV files."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

SR = 48000


def kick(sr: int = SR, length_s: float = 0.35) -> np.ndarray:
    t = np.arange(int(length_s * sr)) / sr
    freq = 45.0 + 90.0 * np.exp(-t / 0.03)          # pitch drop of a bass drum
    phase = 2 * np.pi * np.cumsum(freq) / sr
    return (np.sin(phase) * np.exp(-t / 0.12)).astype(np.float32)


def silence_then_kicks(silent_s: float = 3.0, loud_s: float = 5.0, bpm: float = 120.0, sr: int = SR):
    """(samples (n, 2) float32, kick times in seconds): silence, then kicks with a bass line."""
    n = int((silent_s + loud_s) * sr)
    mono = np.zeros(n, np.float32)
    k = kick(sr)
    times = []
    t = silent_s
    while t < silent_s + loud_s - 0.05:
        i = int(t * sr)
        seg = k[: n - i]
        mono[i:i + len(seg)] += 0.8 * seg
        times.append(t)
        t += 60.0 / bpm
    tt = np.arange(n) / sr
    bass = 0.25 * np.sin(2 * np.pi * 55.0 * tt) * (tt >= silent_s)
    mono += bass.astype(np.float32)
    mono /= max(1.0, float(np.abs(mono).max()) / 0.9)
    return np.stack([mono, mono], axis=1), times


def write_wav(path: Path, samples: np.ndarray, sr: int = SR) -> Path:
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(pcm.shape[1])
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.tobytes())
    return path
