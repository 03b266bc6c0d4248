"""A click player for latency measurement: short tone bursts at irregular times to an output device."""

from __future__ import annotations

import numpy as np

from vj.audio.sources import _close_stream, _open_stream, _sd, find_device


def click_burst(sample_rate_hz: int, length_s: float = 0.015, freq_hz: float = 1000.0,
                amplitude: float = 0.5) -> np.ndarray:
    """A tone burst with a 1 ms linear fade in and out: sharp enough to time, tonal enough to survive any codec."""
    n = max(4, int(length_s * sample_rate_hz))
    t = np.arange(n) / sample_rate_hz
    burst = amplitude * np.sin(2 * np.pi * freq_hz * t)
    ramp = min(n // 2, max(1, int(0.001 * sample_rate_hz)))
    env = np.ones(n)
    env[:ramp] = np.linspace(0.0, 1.0, ramp)
    env[n - ramp:] = np.linspace(1.0, 0.0, ramp)
    return (burst * env).astype(np.float32)


class ClickPlayer:
    """Plays `count` bursts to an output device, spaced by random gaps in `gap_s` (seeded), once `arm()`ed.

    Random gaps keep the clicks from locking to the frame rate, so the measurement samples every phase of the
    frame loop. The callback only copies; `emitted` lists the stream sample index of each click's first sample.
    `sound` and `offsets_s` play another sound (a whole song: one offset) at given times after arming instead.
    """

    def __init__(self, device: int | str | None, sample_rate_hz: int, block_frames: int, count: int,
                 gap_s: tuple[float, float] = (0.35, 0.65), seed: int = 0, channels: int = 1,
                 sound: np.ndarray | None = None, offsets_s: list[float] | None = None):
        self.device = find_device(device, "output")
        self.sample_rate_hz = sample_rate_hz
        self.block_frames = block_frames
        self.channels = channels
        self.burst = click_burst(sample_rate_hz) if sound is None else np.asarray(sound, np.float32)
        if offsets_s is None:
            rng = np.random.default_rng(seed)
            offsets_s = np.cumsum(rng.uniform(gap_s[0], gap_s[1], size=count))
        self._offsets = np.round(np.asarray(offsets_s) * sample_rate_hz).astype(np.int64)   # after arming
        self.emitted: list[int] = []
        self._pos = 0
        self._start: int | None = None   # stream index at which the armed schedule begins
        self._arm = False
        self._stream = None

    def _callback(self, outdata, frames, time_info, status) -> None:
        outdata[:] = 0
        pos, self._pos = self._pos, self._pos + frames
        if self._start is None:
            if not self._arm:
                return
            self._start = pos
        n = len(self.burst)
        for at in self._offsets + self._start:
            if at + n <= pos or at >= pos + frames:
                continue
            lo, hi = max(at, pos), min(at + n, pos + frames)
            outdata[lo - pos:hi - pos, :] = self.burst[lo - at:hi - at, None]
            if lo == at:
                self.emitted.append(int(at))

    def arm(self) -> None:
        self._arm = True

    @property
    def armed(self) -> bool:
        return self._arm

    @property
    def done(self) -> bool:
        return len(self.emitted) >= len(self._offsets)

    def start(self) -> "ClickPlayer":
        sd = _sd()
        self._stream = _open_stream(sd.OutputStream, device=self.device["index"], channels=self.channels,
                                    samplerate=self.sample_rate_hz, blocksize=self.block_frames, dtype="float32",
                                    latency="low", callback=self._callback)
        return self

    def stop(self) -> None:
        if self._stream is not None:
            _close_stream(self._stream, "click player")
            self._stream = None
