"""Video sources: a file decoded through PyAV that gives the frame for any media time, and a webcam.

`VideoSource(path)` probes the file when opened (one clear `VideoError` naming the file if it is
missing, has no video stream or does not decode) and then answers `frame_at(t_s)`: the frame shown at
media time `t_s`, looping over the file's duration. Decoding runs forward from the last frame; it
seeks (to the keyframe before `t_s`) only on a jump backwards or more than SEEK_AHEAD_S forwards, and
the last frame is cached, so playing at any rate below real time costs one decode per new frame.
`Prefetcher` does the open and the seek for a planned cut ahead of time on its own thread and hands
the positioned source over, so the cut itself costs one frame.
`fit_frame` scales and crops (cover) or letterboxes (contain) a frame to an output size in swscale.

`WebcamSource(device)` reads a V4L2 device through PyAV's `v4l2` input on a daemon thread and always
answers with the newest frame (a live source has no media time). Neither class is thread-safe: one
thread (the model worker) uses a source at a time.
"""

from __future__ import annotations

import glob
import logging
import math
import os
import threading
import weakref
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

log = logging.getLogger(__name__)

SEEK_AHEAD_S = 2.0                    # a forward jump longer than this seeks instead of decoding through
FITS = ("cover", "contain")           # cover: fill the output and crop; contain: letterbox inside it
WEBCAM_FIRST_FRAME_S = 5.0            # how long opening a webcam waits for its first frame


class VideoError(ValueError):
    """A video file or device that cannot be used; the message names it and says why, in one line."""


@dataclass(frozen=True)
class VideoInfo:
    """What probing a file found."""

    path: Path
    width_px: int
    height_px: int
    fps: float                        # average frame rate (nominal for variable-rate files)
    duration_s: float                 # > 0: the loop length
    pixel_aspect: float = 1.0         # sample aspect ratio: > 1 for anamorphic footage (wider pixels)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def fit_frame(frame: av.VideoFrame, width_px: int, height_px: int, fit: str = "cover",
              pixel_aspect: float = 1.0) -> np.ndarray:
    """(height_px, width_px, 3) uint8 RGB: `frame` scaled to cover (centre crop) or fit inside (black bars).

    Scaling runs in swscale (area filter), so a 1080p film becomes a small model frame cheaply.
    """
    if fit not in FITS:
        raise ValueError(f"fit must be one of {', '.join(FITS)}, got {fit!r}")
    src_w = frame.width * max(pixel_aspect, 1e-6)                      # display width of the frame
    src_h = frame.height
    scale = (max if fit == "cover" else min)(width_px / src_w, height_px / src_h)
    scaled_w, scaled_h = max(1, round(src_w * scale)), max(1, round(src_h * scale))
    if fit == "cover":
        scaled_w, scaled_h = max(scaled_w, width_px), max(scaled_h, height_px)
    else:
        scaled_w, scaled_h = min(scaled_w, width_px), min(scaled_h, height_px)
    rgb = frame.reformat(width=scaled_w, height=scaled_h, format="rgb24",
                         interpolation="AREA").to_ndarray()                # (scaled_h, scaled_w, 3)
    if fit == "cover":
        y0, x0 = (scaled_h - height_px) // 2, (scaled_w - width_px) // 2
        return np.ascontiguousarray(rgb[y0:y0 + height_px, x0:x0 + width_px])
    out = np.zeros((height_px, width_px, 3), dtype=np.uint8)
    y0, x0 = (height_px - scaled_h) // 2, (width_px - scaled_w) // 2
    out[y0:y0 + scaled_h, x0:x0 + scaled_w] = rgb
    return out


class VideoSource:
    """A video file as a function of media time: `frame_at(t_s)`, looping, decoding forward, seeking on jumps."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise VideoError(f"video file not found: {self.path}")
        self._container = None
        self._frames = None           # the decode iterator since the last seek
        self._current: tuple[float, av.VideoFrame] | None = None   # (start_s, frame) shown now
        self._pending: tuple[float, av.VideoFrame] | None = None   # the next decoded frame, not yet shown
        self.seeks = 0                # how many times frame_at had to seek (for tests and the HUD)
        self.decoded = 0              # frames decoded so far
        try:
            self._open()
            self.info = self._probe()
            self.frame_at(0.0)        # the first frame must decode, or the file is no use
        except VideoError:
            self.close()
            raise
        except (av.FFmpegError, OSError, ValueError, StopIteration) as exc:
            self.close()
            raise VideoError(f"{self.path}: cannot decode video: {_one_line(exc)}") from None

    @property
    def duration_s(self) -> float:
        return self.info.duration_s

    def _open(self) -> None:
        self._container = av.open(str(self.path), mode="r")
        if not self._container.streams.video:
            raise VideoError(f"{self.path}: no video stream (audio-only or not a video file)")
        self._stream = self._container.streams.video[0]
        if self._stream.codec_context is None:      # e.g. an MP4 whose index (moov) was cut off
            raise VideoError(f"{self.path}: the video stream has no codec (damaged or unsupported file)")
        self._stream.thread_type = "AUTO"     # frame + slice threads in the decoder
        self._time_base = self._stream.time_base or Fraction(1, 1_000_000)
        self._start_pts = self._stream.start_time or 0
        self._fresh = True            # nothing read yet: decoding starts at the first frame without a seek

    def _probe(self) -> VideoInfo:
        s = self._stream
        rate = s.average_rate or s.guessed_rate or s.base_rate
        fps = float(rate) if rate else 25.0
        if s.duration:
            duration_s = float(s.duration * self._time_base)
        elif self._container.duration:
            duration_s = self._container.duration / av.time_base
        else:
            duration_s = self._scan_duration_s()
        if not duration_s > 0 or not math.isfinite(duration_s):
            raise VideoError(f"{self.path}: the video has no duration (no frames)")
        sar = s.sample_aspect_ratio
        pixel_aspect = float(sar) if sar else 1.0
        return VideoInfo(self.path, int(s.width), int(s.height), fps, duration_s, pixel_aspect)

    def _scan_duration_s(self) -> float:
        """End time of the last packet, for streams whose header carries no duration (raw streams)."""
        end = 0
        self._fresh = False           # the demuxer is now at the end: the first frame_at seeks back
        for packet in self._container.demux(self._stream):
            if packet.pts is not None:
                end = max(end, packet.pts + (packet.duration or 0))
        return float((end - self._start_pts) * self._time_base)

    def close(self) -> None:
        """Release the decoder; idempotent."""
        if self._container is not None:
            self._container.close()
        self._container = None
        self._frames = None
        self._current = self._pending = None

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wrap(self, t_s: float) -> float:
        """`t_s` folded into 0 .. duration (the loop)."""
        return math.fmod(float(t_s), self.info.duration_s) % self.info.duration_s if math.isfinite(t_s) else 0.0

    def frame_at(self, t_s: float) -> av.VideoFrame:
        """The frame on screen at media time `t_s` (looped). Raises VideoError when decoding fails."""
        t = self.wrap(t_s)
        try:
            if self._container is None:
                self._open()
            return self._frame_at(t)
        except (av.FFmpegError, OSError, ValueError) as exc:
            self._frames = None
            self._current = self._pending = None
            raise VideoError(f"{self.path}: cannot decode at {t:.2f} s: {_one_line(exc)}") from None

    def needs_seek(self, t_s: float) -> bool:
        """True when `frame_at(t_s)` would seek; False when it decodes forward from the frame shown now."""
        return self._container is None or self._needs_seek(self.wrap(t_s))

    def _needs_seek(self, t: float) -> bool:
        cur = self._current
        return cur is None or t < cur[0] - 1e-6 or t - cur[0] > SEEK_AHEAD_S

    def _frame_at(self, t: float) -> av.VideoFrame:
        eps = 1e-6
        if self._needs_seek(t):
            self._seek(t)
        while True:
            if self._pending is None:
                self._pending = self._decode_next()
                if self._pending is None:          # end of file: the last frame stays up
                    break
            if self._current is not None and self._pending[0] > t + eps:
                break
            self._current, self._pending = self._pending, None
        if self._current is None:
            raise VideoError(f"{self.path}: no frame decodes")
        return self._current[1]

    def _seek(self, t: float) -> None:
        offset = self._start_pts + int(t / self._time_base)
        if t > 0 or not self._fresh:
            self._container.seek(offset, stream=self._stream, backward=True, any_frame=False)
            self.seeks += 1
        self._fresh = False
        self._frames = self._container.decode(self._stream)
        self._current = self._pending = None

    def _decode_next(self) -> tuple[float, av.VideoFrame] | None:
        try:
            frame = next(self._frames)
        except StopIteration:
            return None
        self.decoded += 1
        pts = frame.pts if frame.pts is not None else frame.dts
        if pts is None:               # no timestamps at all: count frames at the nominal rate
            start_s = (self._current[0] + 1.0 / self.info.fps) if self._current else 0.0
        else:
            start_s = float((pts - self._start_pts) * self._time_base)
        return start_s, frame


class Prefetcher:
    """Opens a file and decodes up to a start time on its own thread, so a planned cut costs one frame.

    `request(key, path, t_s)` (cheap, any thread) asks for a `VideoSource` of `path` positioned at
    media time `t_s`: the thread opens the file and calls `frame_at(t_s)`, so the seek and the decode
    since the keyframe happen ahead of time. `take(key, t_s)` (the render thread) hands the ready
    source over and forgets it, waits while that key is being decoded, and returns None where there is
    none (not requested, failed, the file gone meanwhile, or `t_s` not reachable without a seek): the
    caller then seeks itself, which gives the same frame, only later. At most MAX_READY sources wait
    (the newest requests win); the thread starts on the first request and stops on `close()`.
    """

    MAX_READY = 2

    def __init__(self, name: str = "vj-video-prefetch"):
        self.name = name
        self.done = 0                 # sources positioned
        self.failures = 0             # requests whose file did not open or decode
        self.last_error: str | None = None
        self._cond = threading.Condition()
        self._wanted: tuple[object, Path, float] | None = None     # the newest request not started
        self._working: object | None = None                        # the key being decoded now
        self._ready: dict[object, VideoSource] = {}                # insertion order = request order
        self._closed = False
        self._thread: threading.Thread | None = None

    def request(self, key: object, path: str | os.PathLike, t_s: float) -> None:
        """Ask for `path` positioned at `t_s` under `key`; a no-op when that key is already ready or under way."""
        with self._cond:
            if self._closed or key in self._ready or key == self._working:
                return
            self._wanted = (key, Path(path), float(t_s))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def take(self, key: object, t_s: float, timeout_s: float = 10.0) -> VideoSource | None:
        """The source prefetched under `key`, ready for `frame_at(t_s)` without a seek, or None."""
        with self._cond:
            if self._wanted is not None and self._wanted[0] == key:
                self._wanted = None           # not started: the caller's own seek is as fast
            self._cond.wait_for(lambda: self._working != key, timeout_s)
            src = self._ready.pop(key, None) if self._working != key else None
        if src is None:
            return None
        if not src.path.is_file() or src.needs_seek(t_s):   # deleted meanwhile: fail as an unprefetched cut would
            src.close()
            return None
        return src

    def wait_idle(self, timeout_s: float = 10.0) -> bool:
        """Block until no request waits or decodes (tests, benchmarks); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._wanted is None and self._working is None, timeout_s)

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the thread (after the decode in progress) and close the ready sources; idempotent."""
        with self._cond:
            self._closed = True
            self._wanted = None
            ready, self._ready = list(self._ready.values()), {}
            thread = self._thread
            self._cond.notify_all()
        for src in ready:
            src.close()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._wanted is not None or self._closed)
                if self._closed:
                    return
                (key, path, t_s), self._wanted = self._wanted, None
                self._working = key
            src, error = None, None
            try:
                src = VideoSource(path)
                src.frame_at(t_s)
            except Exception as exc:  # noqa: BLE001 - the thread must outlive any bad file; render re-raises it
                error = str(exc) if isinstance(exc, VideoError) else f"{path}: {type(exc).__name__}: {_one_line(exc)}"
                if src is not None:
                    src.close()
                    src = None
            with self._cond:
                self._working = None
                if error is not None:
                    self.failures += 1
                    self.last_error = error
                    log.debug("prefetch failed: %s", error)
                elif self._closed:
                    src.close()
                else:
                    self.done += 1
                    self._ready[key] = src
                    while len(self._ready) > self.MAX_READY:
                        self._ready.pop(next(iter(self._ready))).close()
                self._cond.notify_all()


def list_webcams() -> list[str]:
    """The /dev/video* device nodes present, sorted (empty where there are none)."""
    return sorted(glob.glob("/dev/video*"), key=lambda p: (len(p), p))


def resolve_webcam(device: str) -> str:
    """`webcam` (the first device) or `/dev/videoN` -> a device path that exists, else VideoError."""
    found = list_webcams()
    if device in ("webcam", "camera", ""):
        if not found:
            raise VideoError("no webcam: this machine has no /dev/video* device")
        return found[0]
    if not Path(device).exists():
        have = ", ".join(found) if found else "none"
        raise VideoError(f"webcam {device} does not exist (video devices here: {have})")
    return device


class _WebcamReader:
    """State shared with the reader thread (not the source itself, so the source can be garbage-collected)."""

    def __init__(self, container):
        self.container = container
        self.cond = threading.Condition()
        self.latest: av.VideoFrame | None = None
        self.error: str | None = None
        self.stopped = False

    def run(self) -> None:
        try:
            for frame in self.container.decode(video=0):
                with self.cond:
                    if self.stopped:
                        break
                    self.latest = frame
                    self.cond.notify_all()
        except (av.FFmpegError, OSError, ValueError) as exc:
            with self.cond:
                self.error = _one_line(exc)
                self.cond.notify_all()
        finally:
            with self.cond:
                self.stopped = True
                self.cond.notify_all()

    def stop(self) -> None:
        with self.cond:
            self.stopped = True
        self.container.close()


class WebcamSource:
    """A V4L2 camera through PyAV; `frame_at` ignores the time and returns the newest frame.

    A reader thread takes every frame the camera delivers, so no stale frames queue up in the driver
    (latency stays one frame). Not deterministic: a camera is live.
    """

    def __init__(self, device: str = "webcam", width_px: int | None = None, height_px: int | None = None,
                 fps: float | None = None):
        self.path = Path(resolve_webcam(device))
        options = {}
        if width_px and height_px:
            options["video_size"] = f"{int(width_px)}x{int(height_px)}"
        if fps:
            options["framerate"] = str(fps)
        try:
            container = av.open(str(self.path), format="v4l2", options=options)
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise VideoError(f"webcam {self.path}: cannot open: {_one_line(exc)}") from None
        if not container.streams.video:
            container.close()
            raise VideoError(f"webcam {self.path}: no video stream")
        s = container.streams.video[0]
        rate = s.average_rate or s.guessed_rate
        self.info = VideoInfo(self.path, int(s.width), int(s.height), float(rate) if rate else 30.0, math.inf)
        self._reader = _WebcamReader(container)
        self._thread = threading.Thread(target=self._reader.run, name="vj-webcam", daemon=True)
        self._thread.start()
        self._finalizer = weakref.finalize(self, self._reader.stop)
        self.frame_at(0.0, timeout_s=WEBCAM_FIRST_FRAME_S)

    @property
    def duration_s(self) -> float:
        return math.inf

    def frame_at(self, t_s: float = 0.0, timeout_s: float = 1.0) -> av.VideoFrame:
        """The newest frame (waits up to timeout_s for the first one); VideoError once the camera is gone."""
        r = self._reader
        with r.cond:
            r.cond.wait_for(lambda: r.latest is not None or r.stopped, timeout_s)
            if r.error is not None or (r.stopped and r.latest is None):
                raise VideoError(f"webcam {self.path}: {r.error or 'stopped delivering frames'}")
            if r.latest is None:
                raise VideoError(f"webcam {self.path}: no frame within {timeout_s:.1f} s")
            return r.latest

    def close(self) -> None:
        self._finalizer()
