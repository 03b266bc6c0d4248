"""Live frame timing: per-frame records, and the audio-to-light latency estimate the HUD shows.

The estimate is built from the same parts that `vj bench latency` measures click by click (it prints both
side by side), each taken from this run's own timings:

    audio buffering   the input path's reported latency + half a callback block (a sound waits, on
                      average, half a block for its block to be delivered)
    wait for frame    from a block's arrival to the next frame reading the ring: E[F^2] / (2 E[F]) over
                      the measured frame intervals F (a random arrival lands in a longer frame more often)
    analysis hop      half a hop: a sound in a hop that is not complete at the read waits a frame more;
                      for frames longer than a hop that averages out to half a hop
    render            frame read -> drawn (modulation, shaders, master, HUD, GPU work), median
    swap              the buffer swap, median (with vsync this includes waiting for the vblank)

On a real display add half a refresh for scan-out to where the eye looks; Xvfb has none. Visuals that
change through the model (not through shader params) add the model path: waiting for the worker to take
the args (half a model frame on average) plus its render time.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

PARTS = ("audio buffering", "wait for frame", "analysis hop", "render", "swap")


@dataclass
class FrameRecord:
    """Timestamps (time.monotonic, s) of one live frame, for latency measurement."""

    t_read: float               # audio for this frame was taken from the ring
    samples_read: int           # device samples read up to and including this frame
    t_drawn: float = 0.0        # the picture is drawn (before recording and swap)
    t_swapped: float = 0.0      # swap returned
    probe: float | None = None  # what a probe read from the drawn picture (bench latency)
    block: np.ndarray | None = None  # the mono audio this frame analysed (kept only while measuring)


class LatencyEstimate:
    """Rolling audio-to-light latency estimate from the live loop's own frame timings (milliseconds)."""

    def __init__(self, block_s: float, hop_s: float, window: int = 240):
        self.block_s = block_s
        self.hop_s = hop_s
        self.input_latency_s = 0.0
        self._intervals: deque[float] = deque(maxlen=window)
        self._render: deque[float] = deque(maxlen=window)
        self._swap: deque[float] = deque(maxlen=window)
        self._last_read: float | None = None
        self.model_elapsed_s = 0.0
        self.model_fps = 0.0

    def add(self, rec: FrameRecord) -> None:
        if self._last_read is not None:
            self._intervals.append(rec.t_read - self._last_read)
        self._last_read = rec.t_read
        self._render.append(rec.t_drawn - rec.t_read)
        self._swap.append(rec.t_swapped - rec.t_drawn)

    def split_ms(self) -> dict[str, float]:
        """Expected latency of each part, ms; empty until two frames are in."""
        if not self._intervals:
            return {}
        f = np.asarray(self._intervals)
        wait = float((f * f).mean() / (2 * f.mean())) if f.mean() > 0 else 0.0
        return {
            "audio buffering": (self.input_latency_s + self.block_s / 2) * 1e3,
            "wait for frame": wait * 1e3,
            "analysis hop": self.hop_s / 2 * 1e3,
            "render": float(np.median(self._render)) * 1e3,
            "swap": float(np.median(self._swap)) * 1e3,
        }

    def total_ms(self) -> float | None:
        split = self.split_ms()
        return sum(split.values()) if split else None

    def model_path_ms(self) -> float:
        """What visuals driven through the model add: half a model frame of waiting plus its render time."""
        wait = 0.5 / self.model_fps if self.model_fps > 0 else 0.0
        return (wait + self.model_elapsed_s) * 1e3
