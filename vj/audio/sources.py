"""Audio sources: a live input device, a file or the demo track played at real time, and offline audio."""

from __future__ import annotations

import logging
import os
import time
from abc import ABC, abstractmethod
from typing import Any, Sequence

import numpy as np

from vj.config import AudioConfig
from vj.audio.decode import AudioFileError, decode_file
from vj.audio.demo import demo_track
from vj.audio.ring import RingBuffer

log = logging.getLogger(__name__)

# A device that delivered audio and then went quiet for this long is reported lost (PulseAudio's first
# block can take ~2 s after start, so the clock only runs once audio has arrived).
_STALL_S = 2.0
_FILE_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".aif", ".aiff", ".wma",
                  ".mp4", ".mkv", ".webm", ".mov")


class AudioDeviceError(Exception):
    """An audio device that cannot be found or opened; the message is one line and lists the inputs."""


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Mix `(n, channels)` samples down to `(n,)` float32 (the mean of the channels)."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 1:
        return samples
    if samples.shape[1] == 1:
        return samples[:, 0].copy()
    return samples.mean(axis=1, dtype=np.float32)


class AudioSource(ABC):
    """Where samples come from. `read()` returns what arrived since the last call, `(n, channels)` float32."""

    sample_rate_hz: int
    channels: int

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def stop(self) -> None: ...

    @abstractmethod
    def read(self) -> np.ndarray: ...

    @property
    @abstractmethod
    def status(self) -> str:
        """Human-readable state, e.g. "listening on pulse" or "device lost: ..."."""

    def read_mono(self) -> np.ndarray:
        """`read()` mixed down to `(n,)` for the analyzer."""
        return to_mono(self.read())

    def __enter__(self) -> "AudioSource":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _sd():
    """sounddevice, imported on first use so that file and offline work need no PortAudio."""
    try:
        import sounddevice
    except OSError as exc:
        raise AudioDeviceError(f"audio devices unavailable: PortAudio not found ({exc})") from None
    return sounddevice


def rescan_devices() -> None:
    """Make PortAudio enumerate devices again (after a device or audio server appeared).

    PortAudio lists devices once, when it starts; only call this while no stream is open.
    """
    sd = _sd()
    sd._terminate()           # the re-scan sounddevice documents for PortAudio
    sd._initialize()


def list_devices() -> list[dict]:
    """Input devices as dicts: index, name, hostapi, channels, default_samplerate, default."""
    sd = _sd()
    hostapis = sd.query_hostapis()
    default_in = sd.default.device[0]
    out = []
    for d in sd.query_devices():
        if d["max_input_channels"] > 0:
            out.append({
                "index": d["index"], "name": d["name"], "hostapi": hostapis[d["hostapi"]]["name"],
                "channels": d["max_input_channels"], "default_samplerate": d["default_samplerate"],
                "default": d["index"] == default_in,
            })
    return out


def _inputs_line() -> str:
    devices = list_devices()
    if not devices:
        return "there are no audio inputs (no sound card or audio server found)"
    return "available inputs: " + ", ".join(
        f"[{d['index']}] {d['name']} ({d['hostapi']}, {d['channels']} ch)" for d in devices)


def find_input(device: int | str | None) -> dict:
    """The input device for an index, a name (exact, else case-insensitive substring) or None (default)."""
    devices = list_devices()
    if device is None:
        match = [d for d in devices if d["default"]]
        what = "no default audio input"
    elif isinstance(device, int) or (isinstance(device, str) and device.strip().isdigit()):
        match = [d for d in devices if d["index"] == int(device)]
        what = f"no audio input with index {int(device)}"
    else:
        key = device.strip().lower()
        match = ([d for d in devices if d["name"].lower() == key]
                 or [d for d in devices if key in d["name"].lower()])
        what = f"no audio input matches {device!r}"
    if not match:
        raise AudioDeviceError(f"{what}; {_inputs_line()}")
    return match[0]


class DeviceSource(AudioSource):
    """A live input through a sounddevice InputStream; the callback only writes into a RingBuffer.

    `input_channels` picks device channels (0-based) to deliver; by default the first one or two.
    The stream opens at `sample_rate_hz` where the device allows it, else at the device's default rate:
    build the Analyzer with `sample_rate_hz` of this source.
    """

    def __init__(self, device: int | str | None = None, sample_rate_hz: int = 48000, block_frames: int = 256,
                 ring_s: float = 4.0, input_channels: Sequence[int] | None = None, latency: str | float = "low"):
        sd = _sd()
        self.device = find_input(device)
        avail = self.device["channels"]
        sel = list(input_channels) if input_channels else list(range(min(2, avail)))
        if not sel or min(sel) < 0 or max(sel) >= avail:
            raise AudioDeviceError(f"{self.device['name']}: channels {sel} not available "
                                   f"(the device has {avail}, numbered from 0)")
        self._open_channels = max(sel) + 1
        self._select = None if sel == list(range(self._open_channels)) else np.array(sel)   # None: all of them
        self.channels = len(sel)
        self.sample_rate_hz = self._pick_rate(sd, int(sample_rate_hz))
        self.block_frames = int(block_frames)
        self.latency = latency
        self._ring = RingBuffer(max(int(ring_s * self.sample_rate_hz), self.block_frames * 4), self._open_channels)
        self._stream = None
        self._stopping = False
        self._lost: str | None = None
        self.callback_flags = 0          # callbacks that reported an over- or underflow
        self._last_data = 0.0            # time.monotonic() of the last read that got samples

    def _pick_rate(self, sd, wanted: int) -> int:
        idx = self.device["index"]
        for rate in dict.fromkeys((wanted, int(self.device["default_samplerate"]))):
            try:
                sd.check_input_settings(device=idx, channels=self._open_channels, samplerate=rate, dtype="float32")
                return rate
            except (sd.PortAudioError, ValueError) as exc:
                error = exc
        raise self._open_error(error)

    def _open_error(self, exc: Exception) -> AudioDeviceError:
        reason = " ".join(str(exc).split())
        return AudioDeviceError(f"cannot open audio input [{self.device['index']}] {self.device['name']}: "
                                f"{reason}; {_inputs_line()}")

    def _callback(self, indata, frames, time_info, status) -> None:
        self._ring.write(indata)
        if status:
            self.callback_flags += 1

    def _finished(self) -> None:
        if not self._stopping:
            self._lost = "the stream stopped (device unplugged or audio server gone?)"

    def start(self) -> None:
        if self._stream is not None:
            return
        sd = _sd()
        self._stopping = False
        self._lost = None
        try:
            self._stream = sd.InputStream(
                device=self.device["index"], channels=self._open_channels, samplerate=self.sample_rate_hz,
                blocksize=self.block_frames, dtype="float32", latency=self.latency,
                callback=self._callback, finished_callback=self._finished)
            self._stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            if self._stream is not None:
                self._stream.close()
            self._stream = None
            raise self._open_error(exc) from None
        self._last_data = 0.0

    def stop(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            self._stopping = True
            try:
                stream.close()
            except _sd().PortAudioError as exc:
                log.warning("closing %s: %s", self.device["name"], exc)

    def read(self) -> np.ndarray:
        block = self._ring.read_new()
        if len(block):
            self._last_data = time.monotonic()
        return block if self._select is None else block[:, self._select]

    @property
    def overruns(self) -> int:
        return self._ring.overruns

    @property
    def status(self) -> str:
        name = self.device["name"]
        if self._stream is None:
            return f"stopped: {name}"
        if self._lost:
            return f"device lost: {name}: {self._lost}"
        if self._last_data == 0.0:
            return f"waiting for audio from {name}"
        quiet_s = time.monotonic() - self._last_data
        if quiet_s > _STALL_S:
            return f"device lost: {name}: no audio for {quiet_s:.1f} s"
        extra = f"; {self._ring.overruns} overruns" if self._ring.overruns else ""
        return (f"listening on {name} ({self.device['hostapi']}, {self.sample_rate_hz} Hz, "
                f"{self.channels} ch){extra}")


class FilePlayer(AudioSource):
    """Decoded samples played at real time; `read()` returns exactly the samples played so far.

    With an output device the OutputStream callback both plays a block and writes the same block into
    the ring. Without one (or with `output=False`, or when the output is lost) the position follows
    the wall clock instead, and `status` says so. After the end it plays silence unless `loop`.
    """

    def __init__(self, samples: np.ndarray, sample_rate_hz: int, name: str = "audio", loop: bool = False,
                 output: bool = True, output_device: int | str | None = None, block_frames: int = 256,
                 ring_s: float = 4.0):
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim == 1:
            samples = samples[:, None]
        if len(samples) == 0:
            raise AudioFileError(f"{name}: no samples to play")
        self._samples = np.ascontiguousarray(samples)   # (n, channels)
        self.sample_rate_hz = int(sample_rate_hz)
        self.channels = samples.shape[1]
        self.name = name
        self.loop = loop
        self.output = output
        self.output_device = output_device
        self.block_frames = int(block_frames)
        self._ring = RingBuffer(max(int(ring_s * self.sample_rate_hz), self.block_frames * 4), self.channels)
        self._pos = 0                    # frames played (also past the end)
        self._stream = None
        self._stopping = False
        self._clock_t0: float | None = None      # wall-clock mode: monotonic time at frame 0
        self._why_clock = ""
        self._out_name = ""
        self._started = False

    @property
    def duration_s(self) -> float:
        return len(self._samples) / self.sample_rate_hz

    @property
    def position_s(self) -> float:
        """Time played so far (keeps counting through loops and past the end)."""
        return self._pos / self.sample_rate_hz

    @property
    def overruns(self) -> int:
        return self._ring.overruns

    def _next(self, frames: int) -> np.ndarray:
        """The next `frames` frames of the track (wrapping when looping, silence past the end)."""
        n = len(self._samples)
        start = self._pos % n if self.loop else self._pos
        self._pos += frames
        if start + frames <= n:
            return self._samples[start:start + frames]
        if self.loop:
            idx = (start + np.arange(frames)) % n
            return self._samples[idx]
        out = np.zeros((frames, self.channels), np.float32)
        if start < n:
            out[:n - start] = self._samples[start:]
        return out

    def _callback(self, outdata, frames, time_info, status) -> None:
        block = self._next(frames)
        outdata[:] = block
        self._ring.write(block)

    def _finished(self) -> None:
        if not self._stopping:
            self._why_clock = "output lost"
            self._clock_t0 = time.monotonic() - self._pos / self.sample_rate_hz

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._stopping = False
        if not self.output:
            self._use_clock("output off")
            return
        try:
            sd = _sd()
        except AudioDeviceError as exc:
            self._use_clock(f"no output device ({exc})")
            return
        try:
            self._stream = sd.OutputStream(
                device=self.output_device, channels=self.channels, samplerate=self.sample_rate_hz,
                blocksize=self.block_frames, dtype="float32", callback=self._callback,
                finished_callback=self._finished)
            self._out_name = sd.query_devices(self._stream.device)["name"]
            self._stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            if self._stream is not None:
                self._stream.close()
            self._stream = None
            self._use_clock(f"no output device ({' '.join(str(exc).split())})")

    def _use_clock(self, why: str) -> None:
        self._why_clock = why
        self._clock_t0 = time.monotonic() - self._pos / self.sample_rate_hz

    def stop(self) -> None:
        self._stopping = True
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.close()
            except _sd().PortAudioError as exc:
                log.warning("closing output for %s: %s", self.name, exc)
        self._started = False
        self._clock_t0 = None

    def read(self) -> np.ndarray:
        if self._clock_t0 is not None and self._started:
            target = int((time.monotonic() - self._clock_t0) * self.sample_rate_hz)
            if target > self._pos:
                self._ring.write(self._next(target - self._pos))
        return self._ring.read_new()

    @property
    def status(self) -> str:
        if not self._started:
            return f"stopped: {self.name}"
        if not self.loop and self._pos >= len(self._samples):
            return f"finished {self.name}"
        if self._clock_t0 is not None:
            return f"playing {self.name} on the wall clock: {self._why_clock}"
        return f"playing {self.name} through {self._out_name}"


class OfflineAudio:
    """Samples handed out by stream time, for offline rendering: exactly those up to each frame's time."""

    def __init__(self, samples: np.ndarray, sample_rate_hz: int):
        samples = np.asarray(samples, dtype=np.float32)
        self._samples = samples[:, None] if samples.ndim == 1 else samples     # (n, channels)
        self.sample_rate_hz = int(sample_rate_hz)
        self.channels = self._samples.shape[1]
        self._pos = 0

    @property
    def duration_s(self) -> float:
        return len(self._samples) / self.sample_rate_hz

    def frames_until(self, t_s: float) -> np.ndarray:
        """`(n, channels)` samples from the previous call up to time `t_s` (silence past the end)."""
        end = max(int(round(t_s * self.sample_rate_hz)), self._pos)
        out = self._samples[self._pos:end]
        if len(out) < end - self._pos:
            out = np.concatenate((out, np.zeros((end - self._pos - len(out), self.channels), np.float32)))
        self._pos = end
        return out

    def until(self, t_s: float) -> np.ndarray:
        """`(n,)` mono samples from the previous call up to time `t_s`, for `Analyzer.process`."""
        return to_mono(self.frames_until(t_s))


def load_track(spec: str, sample_rate_hz: int) -> tuple[np.ndarray, str]:
    """`(n, 2)` samples and a display name for "demo" or an audio file path."""
    if spec == "demo":
        return demo_track(sample_rate_hz), "demo"
    return decode_file(spec, sample_rate_hz), os.path.basename(spec)


def _looks_like_file(spec: str) -> bool:
    return os.path.exists(spec) or os.sep in spec or spec.lower().endswith(_FILE_SUFFIXES)


def open_source(spec: str | int | None, audio_cfg: AudioConfig, *, loop: bool = True,
                output: bool = True) -> AudioSource:
    """"demo", an audio file path, or an input device (index or name substring; None for the default)."""
    if isinstance(spec, str) and (spec == "demo" or _looks_like_file(spec)):
        samples, name = load_track(spec, audio_cfg.sample_rate_hz)
        return FilePlayer(samples, audio_cfg.sample_rate_hz, name=name, loop=loop, output=output,
                          block_frames=audio_cfg.block_frames, ring_s=audio_cfg.ring_s)
    return DeviceSource(spec, sample_rate_hz=audio_cfg.sample_rate_hz, block_frames=audio_cfg.block_frames,
                        ring_s=audio_cfg.ring_s)
