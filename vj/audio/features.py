"""The frozen Features snapshot that the analyzer emits once per hop."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Names usable as modulation sources (`source = "bass"` in a preset route).
SOURCE_NAMES = (
    "level", "bass", "mid", "high", "onset", "onset_strength", "beat", "beat_phase", "bpm", "silence",
)


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.float32)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)  # identity equality: field-wise == would compare numpy arrays
class Features:
    """Musical features of the newest audio at stream time `t_s`. Levels are 0..1 after automatic gain."""

    t_s: float = 0.0                  # stream time of the newest analysed sample
    level: float = 0.0                # overall loudness, 0..1 after automatic gain
    rms_db: float = -120.0            # raw loudness in dBFS, before gain
    bass: float = 0.0                 # ~20-250 Hz, 0..1, smoothed (attack/release in seconds)
    mid: float = 0.0                  # ~250-4000 Hz
    high: float = 0.0                 # ~4-16 kHz
    onset_strength: float = 0.0       # spectral flux, 0..1 normalised
    onset: bool = False               # an onset was detected in this hop
    beat: bool = False                # filled by the beat tracker (its own issue)
    beat_phase: float = 0.0           # 0..1 through the current beat
    bpm: float = 0.0                  # 0 while unknown
    silence: float = 1.0              # 1 when the input is silent, 0 when there is sound
    spectrum: np.ndarray = field(default_factory=lambda: _frozen(np.zeros(48)))   # (n_bands,) 0..1 log-spaced
    waveform: np.ndarray = field(default_factory=lambda: _frozen(np.zeros(512)))  # (n,) -1..1 newest samples

    def __post_init__(self):
        object.__setattr__(self, "spectrum", _frozen(self.spectrum))
        object.__setattr__(self, "waveform", _frozen(self.waveform))

    def sources(self) -> dict[str, float]:
        """Scalar feature values by name, for modulation routes."""
        return {
            "level": self.level, "bass": self.bass, "mid": self.mid, "high": self.high,
            "onset": 1.0 if self.onset else 0.0, "onset_strength": self.onset_strength,
            "beat": 1.0 if self.beat else 0.0, "beat_phase": self.beat_phase, "bpm": self.bpm,
            "silence": self.silence,
        }


SILENT = Features()
