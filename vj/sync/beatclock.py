"""The beat fields of Features taken from an outside beat timeline (Ableton Link, a clock) instead of the tracker.

An outside timeline says, at any moment, where the music is: a beat position (beats since its origin, any real
number) and a tempo. `BeatFollower.apply` turns the position at the moment a frame is seen into what the tracker
would have reported: the phases, the beat in the bar, a one-frame `beat` pulse when a whole beat was crossed since
the previous frame, `downbeat` when that beat starts a bar, and the time of the next beat. Everything else in the
Features (levels, onsets, spectrum) stays the audio's.
"""

from __future__ import annotations

import dataclasses
import math

from vj.audio.features import Features

MAX_STEP_BEATS = 2.0     # a position that jumped further than this (a re-sync, a tempo far off) starts afresh


class BeatFollower:
    """Per-frame conversion of (beat position, tempo) into Features' beat fields; keeps the previous position."""

    def __init__(self) -> None:
        self._last: float | None = None

    def reset(self) -> None:
        """Forget the previous position: the next frame reports no pulse (used when following stops or restarts)."""
        self._last = None

    def apply(self, f: Features, beat: float, bpm: float, beats_per_bar: int) -> Features:
        """`f` with its beat fields from position `beat` (at the moment the frame is seen) and tempo `bpm`.

        Bars start at multiples of `beats_per_bar` (Link's quantum): beat 0, 4, 8, ... are downbeats."""
        bar = max(1, int(beats_per_bar))
        last, self._last = self._last, beat
        crossed = last is not None and 0.0 < beat - last <= MAX_STEP_BEATS and math.floor(beat) > math.floor(last)
        whole = math.floor(beat)
        in_bar = whole % bar                       # 0 = downbeat (Python's % is never negative here)
        phase = beat - whole
        period_s = 60.0 / bpm if bpm > 0 else 0.0
        return dataclasses.replace(
            f, beat=crossed, downbeat=crossed and in_bar == 0, beat_phase=phase,
            bar_phase=(in_bar + phase) / bar, beat_in_bar=in_bar + 1, bpm=bpm, beat_confidence=1.0,
            next_beat_s=f.t_s + (1.0 - phase) * period_s if period_s else 0.0)
