"""RingBuffer: the only hand-off from the audio callback thread to the reader."""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np


class RingBuffer:
    """Fixed-size float32 ring of `(capacity_frames, channels)` samples, one writer and one reader.

    `write` is all the audio callback does; the lock covers the copies only. A reader that falls
    more than `capacity_frames` behind loses the oldest samples, and `overruns` / `dropped_frames`
    say so.
    """

    def __init__(self, capacity_frames: int, channels: int):
        if capacity_frames <= 0 or channels <= 0:
            raise ValueError(f"ring buffer needs capacity_frames > 0 and channels > 0, got {capacity_frames}, {channels}")
        self.capacity_frames = int(capacity_frames)
        self.channels = int(channels)
        self._buf = np.zeros((self.capacity_frames, self.channels), np.float32)
        self._lock = threading.Lock()
        self._written = 0                # frames ever written
        self._read = 0                   # frames ever handed to the reader or dropped
        self.overruns = 0                # reads that found the writer had lapped them
        self.dropped_frames = 0          # frames lost to those overruns
        # (monotonic time, frames written after it) for each recent write: when a sample arrived, for the
        # latency estimate and `vj bench latency`. deque.append is atomic; the reader copies it.
        self.arrivals: deque[tuple[float, int]] = deque(maxlen=512)

    @property
    def total_frames(self) -> int:
        """Frames written since creation."""
        return self._written

    @property
    def read_frames(self) -> int:
        """Frames handed to the reader (or dropped) so far: the stream index of the next sample `read_new` returns."""
        return self._read

    def write(self, block: np.ndarray) -> None:
        """Append a `(n, channels)` block; called from the audio callback."""
        n = len(block)
        cap = self.capacity_frames
        with self._lock:
            start = self._written
            if n > cap:                  # only the newest `cap` frames can survive anyway
                block = block[n - cap:]
                start += n - cap
            i = start % cap
            m = len(block)
            first = min(m, cap - i)
            self._buf[i:i + first] = block[:first]
            self._buf[:m - first] = block[first:]
            self._written += n
            written = self._written
        self.arrivals.append((time.monotonic(), written))

    def read_new(self) -> np.ndarray:
        """Samples written since the last call, oldest first, as a new `(n, channels)` float32 array."""
        cap = self.capacity_frames
        with self._lock:
            avail = self._written - self._read
            if avail > cap:
                self.overruns += 1
                self.dropped_frames += avail - cap
                self._read = self._written - cap
                avail = cap
            i = self._read % cap
            first = min(avail, cap - i)
            out = np.concatenate((self._buf[i:i + first], self._buf[:avail - first]))
            self._read = self._written
        return out
