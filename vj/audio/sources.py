"""Audio sources: a live input device, a file or the demo track played at real time, and offline audio."""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import math
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any, Sequence

import numpy as np

from vj.config import AudioConfig
from vj.audio.decode import AudioFileError, decode_file
from vj.audio.demo import demo_track
from vj.audio.ring import RingBuffer

log = logging.getLogger(__name__)

_FILE_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".aif", ".aiff", ".wma",
                  ".mp4", ".mkv", ".webm", ".mov")

# Device loss and recovery (DeviceSource), all in seconds.
_WATCHDOG_S = 1.0         # no callback for this long while the stream claims to run: the device is lost
_FIRST_DATA_S = 5.0       # PulseAudio's first block comes ~1.7 s after start(): a stream gets this long to begin
_FRAME_GAP_S = 0.5        # the reader was away this long (a stalled frame may have held the GIL and starved the
                          # callback): the watchdog starts counting again instead of blaming the device
_RETRY_S = 1.5            # at most one reconnect attempt per this interval
_LOG_GAP_S = 0.25         # a rescan never starts sooner than this after a status change (see _rescan)
_RECONNECTED_S = 10.0     # status says "reconnected to ..." this long, then "listening on ..." again
_STOP_JOIN_S = 5.0        # stop() waits this long for a reconnect attempt in progress

# The input meter (every source), computed by the reader, never in the audio callback.
METER_WINDOW_S = 0.1      # level_dbfs is the peak of the newest this-many seconds of samples
CLIP_LEVEL = 0.999        # a sample at or above this (absolute, full scale 1.0) counts as clipped
CLIP_HOLD_S = 1.0         # `clipped` stays True this long after the last such sample
LEVEL_FLOOR_DBFS = -120.0  # level_dbfs of digital silence (and before any audio arrived)

# Every PortAudio call this module makes off the main thread, and every one that could race it, holds this lock:
# Pa_Terminate (the device rescan) must not run while another thread opens, closes or queries a stream.
_PA_LOCK = threading.RLock()
_OPEN_STREAMS: set = set()        # streams opened here and not closed yet; guarded by _PA_LOCK
# Closing a stream whose PulseAudio server died can block for good inside the client library (seen on a
# loaded machine: the server killed and restarted, close() still waiting minutes later). A close gets this
# long; one that has not returned is left behind on its own thread, and the reconnect goes on.
CLOSE_TIMEOUT_S = 2.0
_STUCK_STREAMS: set = set()       # left behind in close(); no Pa_Terminate while one is still inside PortAudio


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


class _Meter:
    """Peak level of the newest ~100 ms and a clip hold; updated by the reader with what `read()` returns."""

    def __init__(self, sample_rate_hz: int):
        self._window = max(1, int(METER_WINDOW_S * sample_rate_hz))
        self._tail = np.zeros(0, np.float32)        # (<= window,) peak over the channels, per frame
        self._clip_t = -math.inf                    # time.monotonic() of the newest clipped sample

    def update(self, block: np.ndarray, now: float) -> None:
        if not len(block):
            return
        peaks = np.abs(block).max(axis=1) if block.ndim == 2 else np.abs(block)
        if peaks.max() >= CLIP_LEVEL:
            self._clip_t = now
        self._tail = np.concatenate((self._tail, peaks[-self._window:]))[-self._window:]

    @property
    def level_dbfs(self) -> float:
        peak = float(self._tail.max()) if len(self._tail) else 0.0
        return max(LEVEL_FLOOR_DBFS, 20.0 * math.log10(peak)) if peak > 0.0 else LEVEL_FLOOR_DBFS

    def clipped(self, now: float) -> bool:
        return now - self._clip_t < CLIP_HOLD_S


class AudioSource(ABC):
    """Where samples come from. `read()` returns what arrived since the last call, `(n, channels)` float32.

    The frame loop calls `maintain()` once per frame (it returns at once); `level_dbfs`, `clipped`, `losses` and
    `reconnects` are for the HUD. Every source has them, so the engine treats all sources alike.
    """

    sample_rate_hz: int
    channels: int
    losses: int = 0               # times the input was lost
    reconnects: int = 0           # times it came back by itself
    input_latency_s: float = 0.0  # what the device/server reports for its input path (PortAudio's stream.latency)
    _meter: _Meter | None = None
    _ring: RingBuffer | None = None

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

    def maintain(self) -> None:
        """Once per frame, from the frame loop; never blocks. Sources that can lose their device recover here."""

    @property
    def level_dbfs(self) -> float:
        """Peak of the newest ~100 ms that `read()` returned, in dBFS (LEVEL_FLOOR_DBFS for silence)."""
        return self._meter.level_dbfs if self._meter is not None else LEVEL_FLOOR_DBFS

    @property
    def clipped(self) -> bool:
        """True for CLIP_HOLD_S after `read()` returned a sample at or above CLIP_LEVEL."""
        return self._meter is not None and self._meter.clipped(time.monotonic())

    def _measure(self, block: np.ndarray, now: float) -> np.ndarray:
        """Feed the meter with what `read()` is about to return, and return it."""
        if self._meter is None:
            self._meter = _Meter(self.sample_rate_hz)
        self._meter.update(block, now)
        return block

    def arrivals(self) -> list[tuple[float, int]]:
        """Recent (monotonic time, samples delivered so far) pairs, one per audio callback, oldest first."""
        return list(self._ring.arrivals) if self._ring is not None else []

    @property
    def samples_read(self) -> int:
        """Device samples `read()` has returned so far (the stream index of the next one; silence padding
        while a device is lost does not count)."""
        return self._ring.read_frames if self._ring is not None else 0

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


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _open_stream(factory, **kwargs):
    """Open and start a sounddevice stream, registered in _OPEN_STREAMS; closes it again if start() fails."""
    with _PA_LOCK:
        stream = factory(**kwargs)
        try:
            stream.start()
        except BaseException:
            stream.close()
            raise
        _OPEN_STREAMS.add(stream)
    return stream


def _close_stream(stream, what: str) -> None:
    """Close a stream opened by _open_stream (errors are logged: a dead device may refuse to close cleanly),
    waiting at most CLOSE_TIMEOUT_S: a close that hangs is left running on its thread and logged."""
    sd = _sd()
    with _PA_LOCK:
        _OPEN_STREAMS.discard(stream)
        if stream.closed:
            return
        errors: list[Exception] = []

        def close() -> None:
            try:
                stream.close()
            except sd.PortAudioError as exc:
                errors.append(exc)
        closer = threading.Thread(target=close, name="vj-audio-close", daemon=True)
        closer.start()
        closer.join(CLOSE_TIMEOUT_S)
        if closer.is_alive():
            _STUCK_STREAMS.add(stream)
            # PortAudio's exit handler would wait on it for good: the process ends without Pa_Terminate.
            atexit.unregister(sd._exit_handler)
            log.error("closing %s hangs (its audio server went away mid-call); left behind, going on", what)
        elif errors:
            log.warning("closing %s: %s", what, _one_line(errors[0]))


def stream_holders() -> str:
    """What keeps PortAudio from enumerating devices again, in words ("" when nothing does): a stream that
    Pa_Terminate would kill (one of ours, or sounddevice's play()/rec() one), or one whose close is stuck
    (Pa_Terminate would wait on it for good).

    Streams that other code opened directly through sounddevice or PortAudio are invisible here; in vj every
    stream is opened through this module, so this is the whole list.
    """
    sd = _sd()
    with _PA_LOCK:
        parts = []
        if _OPEN_STREAMS:
            parts.append(f"{len(_OPEN_STREAMS)} stream(s) open")
        if _closes_stuck():
            parts.append(f"{len(_STUCK_STREAMS)} close(s) stuck")
        last = getattr(sd, "_last_callback", None)
        if last is not None and not last.stream.closed:
            parts.append("sounddevice's play()/rec() stream open")
    return ", ".join(parts)


def _closes_stuck() -> bool:
    """True while a close left behind by _close_stream has not come back."""
    _STUCK_STREAMS.difference_update([st for st in _STUCK_STREAMS if st.closed])
    return bool(_STUCK_STREAMS)


def _stream_latency(stream) -> float:
    try:
        return max(0.0, float(stream.latency))
    except (TypeError, ValueError, AttributeError):
        return 0.0


def _rescan(sd) -> None:
    """Pa_Terminate + Pa_Initialize, the re-scan that sounddevice documents; hold _PA_LOCK, no stream open.

    sounddevice's `_initialize()` points fd 2 at /dev/null while PortAudio probes (ALSA and JACK print lines
    there on every scan), which also hides whatever any other thread writes to stderr meanwhile (~40-100 ms).
    DeviceSource therefore starts a rescan only _LOG_GAP_S after its status changed, so the frame loop has
    logged the change by then.
    """
    try:
        if sd._initialized:
            sd._terminate()
    finally:
        sd._initialize()


def rescan_devices() -> bool:
    """Make PortAudio enumerate devices again (after a device or audio server appeared); True if it did.

    Pa_Terminate closes every open stream, so nothing happens (False) while a stream is open (see stream_holders).
    """
    sd = _sd()
    with _PA_LOCK:
        holders = stream_holders()
        if holders:
            log.info("device rescan skipped: %s", holders)
            return False
        _rescan(sd)
    return True


@contextlib.contextmanager
def portaudio_released() -> Iterator[None]:
    """Pa_Terminate on entry, Pa_Initialize on exit: stop an audio server PortAudio is attached to inside.

    PortAudio's JACK backend aborts the whole process when it terminates after its server died, so a
    JACK server started by vj (bench latency, tests) is stopped only inside this. Close the streams first.
    """
    sd = _sd()
    with _PA_LOCK:
        if sd._initialized and not _closes_stuck():        # Pa_Terminate would wait on a stuck close for good
            sd._terminate()
    try:
        yield
    finally:
        with _PA_LOCK:
            if not sd._initialized:
                sd._initialize()


def list_devices(kind: str = "input") -> list[dict]:
    """Input (or, with kind="output", output) devices as dicts: index, name, hostapi, channels,
    default_samplerate, default."""
    sd = _sd()
    side = {"input": 0, "output": 1}[kind]
    with _PA_LOCK:
        hostapis = sd.query_hostapis()
        default = sd.default.device[side]
        devices = sd.query_devices()
    out = []
    for d in devices:
        channels = d[f"max_{kind}_channels"]
        if channels > 0:
            out.append({
                "index": d["index"], "name": d["name"], "hostapi": hostapis[d["hostapi"]]["name"],
                "channels": channels, "default_samplerate": d["default_samplerate"],
                "default": d["index"] == default,
            })
    return out


def _devices_line(kind: str = "input") -> str:
    devices = list_devices(kind)
    if not devices:
        return f"there are no audio {kind}s (no sound card or audio server found)"
    return f"available {kind}s: " + ", ".join(
        f"[{d['index']}] {d['name']} ({d['hostapi']}, {d['channels']} ch)" for d in devices)


def find_device(device: int | str | None, kind: str = "input") -> dict:
    """The input (or output) device for an index, a name (exact, else case-insensitive substring) or None
    (the default one)."""
    devices = list_devices(kind)
    if device is None:
        match = [d for d in devices if d["default"]]
        what = f"no default audio {kind}"
    elif isinstance(device, int) or (isinstance(device, str) and device.strip().isdigit()):
        match = [d for d in devices if d["index"] == int(device)]
        what = f"no audio {kind} with index {int(device)}"
    else:
        key = device.strip().lower()
        match = ([d for d in devices if d["name"].lower() == key]
                 or [d for d in devices if key in d["name"].lower()])
        what = f"no audio {kind} matches {device!r}"
    if not match:
        raise AudioDeviceError(f"{what}; {_devices_line(kind)}")
    return match[0]


def find_input(device: int | str | None) -> dict:
    """The input device for an index, a name (exact, else case-insensitive substring) or None (default)."""
    return find_device(device, "input")


class DeviceSource(AudioSource):
    """A live input through a sounddevice InputStream; the callback only writes into a RingBuffer.

    `input_channels` picks device channels (0-based) to deliver; by default the first one or two.
    The stream opens at `sample_rate_hz` where the device allows it, else at the device's default rate:
    build the Analyzer with `sample_rate_hz` of this source.

    Losing the device never stops the show. The stream's finished callback, `stream.active` turning False, an
    error from PortAudio, or no callback for _WATCHDOG_S while the stream claims to run mark it lost. `maintain()`
    (once per frame, returns in microseconds) then hands reconnect attempts to a worker thread, at most one per
    _RETRY_S: close the dead stream, rescan PortAudio's device list, find the same device by name, open and
    start a new stream at the same rate; `maintain()` switches over when one succeeds. Meanwhile `read()`
    returns silence paced by the wall clock (see `read`).
    """

    def __init__(self, device: int | str | None = None, sample_rate_hz: int = 48000, block_frames: int = 256,
                 ring_s: float = 4.0, input_channels: Sequence[int] | None = None, latency: str | float = "low"):
        sd = _sd()
        self.spec = device
        self.device = find_input(device)
        avail = self.device["channels"]
        sel = list(input_channels) if input_channels else list(range(min(2, avail)))
        if not sel or min(sel) < 0 or max(sel) >= avail:
            raise AudioDeviceError(f"{self.device['name']}: channels {[c + 1 for c in sel]} not available "
                                   f"(the device has {avail}, counting from 1)")
        self._open_channels = max(sel) + 1
        self._select = None if sel == list(range(self._open_channels)) else np.array(sel)   # None: all of them
        self.channels = len(sel)
        self.sample_rate_hz = self._pick_rate(sd, int(sample_rate_hz))
        self.block_frames = int(block_frames)
        self.latency = latency
        self._ring = RingBuffer(max(int(ring_s * self.sample_rate_hz), self.block_frames * 4), self._open_channels)
        self.callback_flags = 0          # callbacks that reported an over- or underflow (written by the callback)
        self.losses = 0
        self.reconnects = 0
        self.attempts = 0                # reconnect attempts made
        # Main thread only (start, stop, read, maintain, status):
        self._running = False
        self._stream = None              # the stream feeding the ring; None while stopped or being replaced
        self._gen = 0                    # generation of the newest stream
        self._lost: str | None = None    # why the device is lost; None while it is not
        self._last_error = ""            # why the latest reconnect attempt failed
        self._reconnected_t: float | None = None
        self._seen_frames = 0            # ring.total_frames at the last check
        self._had_data = False           # the current stream delivered at least one block
        self._quiet_since = 0.0          # monotonic time since which the ring got nothing
        self._last_check_t = 0.0
        self._silent = False             # read() pads with wall-clock silence
        self._silence_t0 = 0.0
        self._silence_frames = 0
        self._next_try_t = 0.0
        # Written by PortAudio's thread: the generation of a stream that finished (stopped by itself or closed).
        self._ended_gen = -1
        # Reconnect worker: the main thread fills _job and sets _wake; the worker fills _result (one assignment).
        self._worker: threading.Thread | None = None
        self._wake = threading.Event()
        self._quit = False
        self._busy = False
        self._job: tuple | None = None   # (old stream or None, generation for the new one)
        self._result: tuple | None = None    # (stream or None, device or None, error)

    def _pick_rate(self, sd, wanted: int) -> int:
        idx = self.device["index"]
        for rate in dict.fromkeys((wanted, int(self.device["default_samplerate"]))):
            try:
                with _PA_LOCK:
                    sd.check_input_settings(device=idx, channels=self._open_channels, samplerate=rate,
                                            dtype="float32")
                return rate
            except (sd.PortAudioError, ValueError) as exc:
                error = exc
        raise self._open_error(error)

    def _open_error(self, exc: Exception) -> AudioDeviceError:
        return AudioDeviceError(f"cannot open audio input [{self.device['index']}] {self.device['name']}: "
                                f"{_one_line(exc)}; {_devices_line()}")

    def _callback(self, indata, frames, time_info, status) -> None:
        self._ring.write(indata)
        if status:
            self.callback_flags += 1

    @property
    def lost_blocks(self) -> int:
        """Blocks of input lost so far: callbacks that reported an overflow, plus reads of the ring that found
        the callback had lapped them (the frame loop fell more than the ring behind). For the HUD."""
        return self.callback_flags + self._ring.overruns

    def _finished(self, gen: int) -> None:
        self._ended_gen = gen            # PortAudio's thread: one assignment, judged by _check

    def _open(self, device: dict, gen: int):
        sd = _sd()
        return _open_stream(
            sd.InputStream, device=device["index"], channels=self._open_channels, samplerate=self.sample_rate_hz,
            blocksize=self.block_frames, dtype="float32", latency=self.latency, callback=self._callback,
            finished_callback=functools.partial(self._finished, gen))

    def start(self) -> None:
        if self._running:
            return
        sd = _sd()
        self._gen += 1
        try:
            self._stream = self._open(self.device, self._gen)
        except (sd.PortAudioError, ValueError) as exc:
            raise self._open_error(exc) from None
        self.input_latency_s = _stream_latency(self._stream)
        now = time.monotonic()
        self._running = True
        self._lost = None
        self._last_error = ""
        self._reconnected_t = None
        self._silent = False
        self._had_data = False
        self._seen_frames = self._ring.total_frames
        self._quiet_since = self._last_check_t = now
        self._quit = False
        self._busy = False
        self._result = self._job = None
        self._wake.clear()
        self._worker = threading.Thread(target=self._reconnect_loop, name="vj-audio-reconnect", daemon=True)
        self._worker.start()

    def stop(self) -> None:
        if not self._running:
            return
        self._running = False
        self._quit = True
        self._wake.set()
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.join(_STOP_JOIN_S)
            if worker.is_alive():        # stuck in PortAudio; it closes what it opens once it sees _quit
                log.warning("audio input %s: a reconnect attempt is still running", self.device["name"])
        result, self._result = self._result, None
        job, self._job = self._job, None
        stream, self._stream = self._stream, None
        for s in (stream, job[0] if job else None, result[0] if result else None):
            if s is not None:
                _close_stream(s, self.device["name"])
        self._busy = False
        self._lost = None
        self._silent = False

    def _check(self, now: float) -> None:
        """Main thread: mark the stream lost when it finished, errs, went inactive or went quiet."""
        if not self._running or self._lost is not None or self._stream is None:
            return
        total = self._ring.total_frames
        if total != self._seen_frames:
            self._seen_frames = total
            self._quiet_since = now
            self._had_data = True
        elif now - self._last_check_t > _FRAME_GAP_S:
            self._quiet_since = now
        self._last_check_t = now
        if self._ended_gen == self._gen:
            self._mark_lost("the stream stopped (device unplugged or audio server gone?)", now)
            return
        # Another source's reconnect may hold PortAudio (rescanning): skip this frame's query rather than wait.
        if _PA_LOCK.acquire(blocking=False):
            try:
                active = self._stream.active
            except _sd().PortAudioError as exc:
                self._mark_lost(f"PortAudio error: {_one_line(exc)}", now)
                return
            finally:
                _PA_LOCK.release()
            if not active:
                self._mark_lost("the stream is no longer active", now)
                return
        quiet_s = now - self._quiet_since
        if self._had_data and quiet_s > _WATCHDOG_S:
            self._mark_lost(f"no audio for more than {_WATCHDOG_S:g} s", now)
        elif not self._had_data and quiet_s > _FIRST_DATA_S:
            self._mark_lost(f"no audio within {_FIRST_DATA_S:g} s of opening", now)

    def _mark_lost(self, reason: str, now: float) -> None:
        self._lost = reason
        self._last_error = ""
        self._reconnected_t = None
        self.losses += 1
        if not self._silent:
            # Silence from the last real sample on, so the audio timeline stays continuous with the wall clock.
            self._silent = True
            self._silence_t0 = self._quiet_since if self._had_data else now
            self._silence_frames = 0
        self._next_try_t = now + _LOG_GAP_S
        log.warning("audio input %s lost: %s; retrying", self.device["name"], reason)

    def maintain(self) -> None:
        """Once per frame: check the stream, collect a finished reconnect attempt, start the next. Never blocks."""
        if not self._running:
            return
        now = time.monotonic()
        self._check(now)
        if self._busy:
            result = self._result
            if result is None:
                return                   # the attempt is still running
            self._busy = False
            self._result = None
            self._take(result, now)
        if self._lost is not None and now >= self._next_try_t:
            self._next_try_t = now + _RETRY_S
            self._gen += 1
            self._job = (self._stream, self._gen)
            self._stream = None          # the worker closes it: closing a dead stream may take a while
            self._busy = True
            self.attempts += 1
            self._wake.set()

    def _take(self, result: tuple, now: float) -> None:
        stream, device, error = result
        self._next_try_t = max(self._next_try_t, now + _LOG_GAP_S)
        if stream is None:
            if error != self._last_error:
                log.info("audio input %s: reconnect failed: %s", self.device["name"], error)
            self._last_error = error
            return
        self._stream = stream
        self.device = device
        self.input_latency_s = _stream_latency(stream)
        self._lost = None
        self._last_error = ""
        self._reconnected_t = now
        self._had_data = False
        self._seen_frames = self._ring.total_frames
        self._quiet_since = self._last_check_t = now
        self.reconnects += 1
        log.warning("audio input reconnected to %s", device["name"])

    def _reconnect_loop(self) -> None:
        """Worker thread: runs one reconnect attempt per wake-up until stop()."""
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._quit:
                return
            old, gen = self._job
            self._job = None
            result = self._reconnect(old, gen)
            if self._quit and result[0] is not None:     # stop() came meanwhile and will not collect it
                _close_stream(result[0], self.device["name"])
                return
            self._result = result

    def _reconnect(self, old, gen: int) -> tuple:
        """Worker thread: close the dead stream, rescan, find the device again, open and start a new stream."""
        name = self.device["name"]
        sd = _sd()
        try:
            with _PA_LOCK:
                if old is not None:
                    _close_stream(old, name)
                if stream_holders():
                    # Another stream would die with Pa_Terminate: reopen from the list PortAudio already has
                    # (enough for devices that stay listed, like ALSA's "pulse" or JACK; not for a USB device).
                    log.info("audio input %s: device rescan skipped, another stream is open", name)
                else:
                    _rescan(sd)
                device = self._refind()
                if device is None:
                    return None, None, f"{name} is not in the device list"
                if device["channels"] < self._open_channels:
                    return None, None, f"{name} now has {device['channels']} input channels"
                return self._open(device, gen), device, None
        except (sd.PortAudioError, AudioDeviceError, ValueError, OSError) as exc:
            return None, None, f"cannot open {name}: {_one_line(exc)}"
        except Exception as exc:  # the worker thread's boundary: log it, report it in status, the next try runs
            log.exception("audio input %s: reconnect attempt failed", name)
            return None, None, f"{type(exc).__name__}: {_one_line(exc)}"

    def _refind(self) -> dict | None:
        """The device again after a rescan: same name (and host API), else the name spec it was opened by.

        Not by index: PortAudio renumbers devices when one comes or goes, so an index may name another device.
        """
        name, hostapi = self.device["name"], self.device["hostapi"]
        devices = list_devices()
        same = [d for d in devices if d["name"] == name]
        match = [d for d in same if d["hostapi"] == hostapi] or same
        if match:
            return match[0]
        if isinstance(self.spec, str) and not self.spec.strip().isdigit():
            try:
                return find_input(self.spec)
            except AudioDeviceError:
                return None
        return None

    def read(self) -> np.ndarray:
        """Samples since the last call; while the device is lost, silence paced by the wall clock.

        Silence rather than nothing: the analyzer makes Features only from samples, so with nothing the last
        (perhaps loud) Features would stay frozen on screen. Silent hops let every envelope decay at its
        normal release rate, the beat tracker see the music stop, and a recording's audio track stay as long
        as its video. The padding starts at the last real sample and ends with the first block of a
        reconnected stream.
        """
        now = time.monotonic()
        self._check(now)
        block = self._ring.read_new()
        if len(block) and self._lost is None:
            self._had_data = True        # a block that landed after _check: the status says so at once
        if self._select is not None:
            block = block[:, self._select]
        if self._silent:
            if self._lost is None and len(block):
                self._silent = False     # a reconnected stream delivers: real audio again
            else:
                due = int((now - self._silence_t0) * self.sample_rate_hz) - self._silence_frames
                cap = self._ring.capacity_frames     # a reader away for long gets the newest ring's worth
                if due > cap:
                    self._silence_frames += due - cap
                    due = cap
                if due > 0:
                    self._silence_frames += due
                    block = np.concatenate((block, np.zeros((due, self.channels), np.float32)))
        return self._measure(block, now)

    @property
    def overruns(self) -> int:
        return self._ring.overruns

    @property
    def status(self) -> str:
        name = self.device["name"]
        if not self._running:
            return f"stopped: {name}"
        if self._lost is not None:
            tried = f" (last try: {self._last_error})" if self._last_error else ""
            return f"device lost: {name}: {self._lost}; retrying{tried}"
        extra = f"; {self._ring.overruns} overruns" if self._ring.overruns else ""
        details = f"({self.device['hostapi']}, {self.sample_rate_hz} Hz, {self.channels} ch){extra}"
        if self._reconnected_t is not None and time.monotonic() - self._reconnected_t < _RECONNECTED_S:
            return f"reconnected to {name} {details}"
        if not self._had_data:
            return f"waiting for audio from {name}"
        return f"listening on {name} {details}"


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
            self._stream = _open_stream(
                sd.OutputStream, device=self.output_device, channels=self.channels,
                samplerate=self.sample_rate_hz, blocksize=self.block_frames, dtype="float32",
                callback=self._callback, finished_callback=self._finished)
            with _PA_LOCK:
                self._out_name = sd.query_devices(self._stream.device)["name"]
        except (sd.PortAudioError, ValueError) as exc:
            if self._stream is not None:
                _close_stream(self._stream, f"output for {self.name}")
            self._stream = None
            self._use_clock(f"no output device ({_one_line(exc)})")

    def _use_clock(self, why: str) -> None:
        self._why_clock = why
        self._clock_t0 = time.monotonic() - self._pos / self.sample_rate_hz

    def stop(self) -> None:
        self._stopping = True
        stream, self._stream = self._stream, None
        if stream is not None:
            _close_stream(stream, f"output for {self.name}")
        self._started = False
        self._clock_t0 = None

    def read(self) -> np.ndarray:
        now = time.monotonic()
        if self._clock_t0 is not None and self._started:
            target = int((now - self._clock_t0) * self.sample_rate_hz)
            if target > self._pos:
                self._ring.write(self._next(target - self._pos))
        return self._measure(self._ring.read_new(), now)

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


# Tracks made ahead of time by `preload_track`: (spec, rate) -> (samples, name), each handed out once.
_PRELOADED: dict[tuple[str, int], tuple[np.ndarray, str]] = {}
_PRELOADED_LOCK = threading.Lock()


def load_track(spec: str, sample_rate_hz: int) -> tuple[np.ndarray, str]:
    """`(n, 2)` samples and a display name for "demo" or an audio file path."""
    with _PRELOADED_LOCK:
        made = _PRELOADED.pop((spec, int(sample_rate_hz)), None)
    if made is not None:
        return made
    if spec == "demo":
        return demo_track(sample_rate_hz), "demo"
    return decode_file(spec, sample_rate_hz), os.path.basename(spec)


def preload_track(spec: str | int | None, sample_rate_hz: int) -> bool:
    """Synthesise or decode the track `open_source(spec)` would play, now, for its next `load_track`; False when
    `spec` names an input device instead (nothing to make ahead). A spare show process does this while it waits
    to take over, so the restart does not pay for it (the demo track: about a second of a 2-core CPU). It holds
    a second copy of the samples until then, as large as the show's own (25 MB for the demo track at 48 kHz)."""
    if not (isinstance(spec, str) and (spec == "demo" or _looks_like_file(spec))):
        return False
    made = load_track(spec, sample_rate_hz)
    with _PRELOADED_LOCK:
        _PRELOADED[(spec, int(sample_rate_hz))] = made
    return True


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
                        ring_s=audio_cfg.ring_s, input_channels=audio_cfg.input_channels)
