"""The frozen Features snapshot that the analyzer emits once per hop."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

# Names usable as modulation sources (`source = "bass"` in a preset route).
SOURCE_NAMES = (
    "level", "bass", "mid", "high", "onset", "onset_strength", "beat", "beat_phase", "bpm", "silence",
    "bar_phase", "downbeat", "beat_confidence", "kick", "snare", "hat", "kick_onset", "snare_onset", "hat_onset",
    "brightness", "percussive", "chroma_hue", "tonal", "buildup", "drop", "breakdown",
)
SECTIONS = ("steady", "buildup", "drop", "breakdown")
# Pitch classes around the circle of fifths (C G D A E B F# C# G# D# A# F): neighbours in key get neighbouring hues.
_FIFTHS_ANGLE = np.array([(7 * pc % 12) for pc in range(12)]) * (2 * np.pi / 12)


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
    beat: bool = False                # a beat falls in this hop (reported lookahead_s early)
    beat_phase: float = 0.0           # 0..1 through the current beat
    bpm: float = 0.0                  # 0 while unknown
    silence: float = 1.0              # 1 when the input is silent, 0 when there is sound
    spectrum: np.ndarray = field(default_factory=lambda: _frozen(np.zeros(48)))   # (n_bands,) 0..1 log-spaced
    waveform: np.ndarray = field(default_factory=lambda: _frozen(np.zeros(512)))  # (n,) -1..1 newest samples
    bar_phase: float = 0.0            # 0..1 through the current bar (4/4 unless configured)
    beat_in_bar: int = 0              # 1 = downbeat .. beats per bar; 0 while no beat is known
    downbeat: bool = False            # `beat` on beat 1 of the bar
    beat_confidence: float = 0.0      # 0..1: how well the recent beats sit on onsets
    next_beat_s: float = 0.0          # predicted stream time of the next beat; 0 while unknown
    kick_onset: bool = False          # onset in the low band (~20-250 Hz)
    snare_onset: bool = False         # onset in the mid band (~250-4000 Hz)
    hat_onset: bool = False           # onset in the high band (~4-16 kHz)
    kick: float = 0.0                 # 0..1 envelopes: jump with the band's onset strength, then decay
    snare: float = 0.0
    hat: float = 0.0
    centroid_hz: float = 0.0          # spectral centroid
    brightness: float = 0.0           # 0..1: the centroid's place between 30 Hz and 16 kHz on a log scale
    chroma: np.ndarray = field(default_factory=lambda: _frozen(np.zeros(12)))     # (12,) 0..1, C first
    percussive: float = 0.0           # 0..1 share of energy in percussive sounds (the rest is harmonic)
    buildup: float = 0.0              # 0..1: loudness and brightness rising over a few seconds
    drop: float = 0.0                 # 0..1: the bass just came back after a breakdown or build-up, decays
    breakdown: float = 0.0            # 0..1: the bass well below its level of the last bars
    section: str = "steady"           # one of SECTIONS: the strongest of the three above, or steady

    def __post_init__(self):
        object.__setattr__(self, "spectrum", _frozen(self.spectrum))
        object.__setattr__(self, "waveform", _frozen(self.waveform))
        object.__setattr__(self, "chroma", _frozen(self.chroma))

    @property
    def chroma_hue(self) -> float:
        """0..1: the direction of the chroma on the circle of fifths (a colour for the key or chord)."""
        z = complex(float(self.chroma @ np.cos(_FIFTHS_ANGLE)), float(self.chroma @ np.sin(_FIFTHS_ANGLE)))
        return (math.atan2(z.imag, z.real) / (2 * math.pi)) % 1.0 if abs(z) > 1e-9 else 0.0

    @property
    def tonal(self) -> float:
        """0..1: how far the chroma is from flat (0: noise, drums or silence; near 1: one note or chord)."""
        top = float(self.chroma.max())
        return 1.0 - float(self.chroma.mean()) / top if top > 1e-9 else 0.0

    def sources(self) -> dict[str, float]:
        """Scalar feature values by name, for modulation routes."""
        return {
            "level": self.level, "bass": self.bass, "mid": self.mid, "high": self.high,
            "onset": 1.0 if self.onset else 0.0, "onset_strength": self.onset_strength,
            "beat": 1.0 if self.beat else 0.0, "beat_phase": self.beat_phase, "bpm": self.bpm,
            "silence": self.silence, "bar_phase": self.bar_phase, "downbeat": 1.0 if self.downbeat else 0.0,
            "beat_confidence": self.beat_confidence, "kick": self.kick, "snare": self.snare, "hat": self.hat,
            "kick_onset": 1.0 if self.kick_onset else 0.0, "snare_onset": 1.0 if self.snare_onset else 0.0,
            "hat_onset": 1.0 if self.hat_onset else 0.0, "brightness": self.brightness,
            "percussive": self.percussive, "chroma_hue": self.chroma_hue, "tonal": self.tonal,
            "buildup": self.buildup, "drop": self.drop, "breakdown": self.breakdown,
        }


SILENT = Features()
