"""Frame clock and dt-correct smoothing with rise/fall time constants in seconds."""

from __future__ import annotations

import math
import time


def smoothing_alpha(dt_s: float, tau_s: float) -> float:
    """Fraction of the way to the target covered in dt_s by a first-order lag of time constant tau_s.

    Identical behaviour at any frame rate: two steps of dt equal one step of 2*dt.
    """
    if tau_s <= 0.0 or dt_s <= 0.0:
        return 1.0 if dt_s > 0.0 or tau_s <= 0.0 else 0.0
    return 1.0 - math.exp(-dt_s / tau_s)


def smooth(current: float, target: float, dt_s: float, rise_s: float, fall_s: float | None = None) -> float:
    """One dt-correct smoothing step; `rise_s` applies when moving up, `fall_s` when moving down."""
    tau = rise_s if target >= current or fall_s is None else fall_s
    return current + (target - current) * smoothing_alpha(dt_s, tau)


class FrameClock:
    """Time source for the frame loop: wall clock when live, exact frame times when rendering offline."""

    def __init__(self, fps: float | None = None):
        self.fps = fps
        self.frame_index = 0
        self.t_s = 0.0
        self.dt_s = 0.0 if fps is None else 1.0 / fps
        self._t0 = time.perf_counter()
        self._last = self._t0

    def tick(self) -> float:
        """Advance one frame and return dt_s."""
        if self.fps is None:
            now = time.perf_counter()
            self.dt_s = min(now - self._last, 0.25)  # a stall never makes params jump
            self._last = now
            self.t_s = now - self._t0
        else:
            self.t_s = self.frame_index / self.fps
        self.frame_index += 1
        return self.dt_s
