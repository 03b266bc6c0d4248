"""Image-sequence output for editors: numbered PNG frames in a folder plus the audio beside them as a WAV."""

from __future__ import annotations

import logging
import os
import re
import threading
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import Interpolation

from vj.files import write_atomic
from vj.gfx.png import encode_png
from vj.output.recorder import RecorderError, _reason, check_audio, check_frame

log = logging.getLogger(__name__)

DEFAULT_PATTERN = "%06d.png"       # 000000.png, 000001.png, ...: editors import it as one clip
AUDIO_NAME = "audio.wav"
# zlib level 3: about 3x faster than the default 6 on rendered frames for files ~10% larger; the
# frames are an intermediate for an editor, not an archive.
PNG_LEVEL = 3
_PATTERN = re.compile(r"%(0?\d*)d")


def is_frame_sequence(out: str | os.PathLike) -> bool:
    """True when `out` asks for an image sequence: an existing folder, a path ending in a slash, or a
    file name with a frame-number pattern such as frames/%05d.png."""
    text = os.fspath(out)
    return text.endswith(("/", os.sep)) or Path(text).is_dir() or bool(_PATTERN.search(Path(text).name))


def split_sequence_path(out: str | os.PathLike) -> tuple[Path, str]:
    """(folder, file-name pattern) for a sequence path; ValueError for a pattern this writer cannot use."""
    text = os.fspath(out)
    p = Path(text)
    if text.endswith(("/", os.sep)) or p.is_dir() or not _PATTERN.search(p.name):
        return p, DEFAULT_PATTERN
    if len(_PATTERN.findall(p.name)) != 1 or p.name.count("%") != 1:
        raise ValueError(f"{text}: a frame pattern needs exactly one %d (like frames/%06d.png)")
    if p.suffix.lower() != ".png":
        raise ValueError(f"{text}: only PNG frames are written (the pattern must end in .png)")
    return p.parent, p.name


class FrameSequence:
    """Writes numbered PNG frames and a 16-bit WAV of the audio into a folder; `add_video` waits for a
    free slot instead of dropping frames (offline use, like `Recorder(blocking=True)`).

    Frame `frame_index` goes to `pattern % frame_index`, scaled to width_px x height_px; frames are
    encoded on `workers` threads (zlib releases the GIL), at most `queue_frames` at a time. After a
    write error `error` holds one line and `add_*` return False. The constructor raises RecorderError
    when the folder cannot be made or already holds frames (a shorter render would leave stale ones).
    """

    def __init__(self, path: str | os.PathLike, width_px: int, height_px: int, fps: float,
                 audio_rate_hz: int = 48000, audio_channels: int = 2, *, workers: int = 2, queue_frames: int = 8):
        if width_px <= 0 or height_px <= 0:
            raise ValueError(f"frame size must be positive, got {width_px}x{height_px}")
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        if not 0 <= audio_channels <= 8:
            raise ValueError(f"audio_channels must be 0..8 (0: no audio), got {audio_channels}")
        self.folder, self.pattern = split_sequence_path(path)
        self.path = self.folder
        self.width_px, self.height_px = int(width_px), int(height_px)
        self.fps = fps
        self.audio_rate_hz = int(audio_rate_hz)
        self.audio_channels = int(audio_channels)
        self.frames_written = 0
        self.dropped_frames = 0        # out-of-order indices only: nothing is dropped for speed
        self.audio_samples_written = 0
        self.error: str | None = None
        self._closed = False
        self._last_index = -1
        self._lock = threading.Lock()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RecorderError(f"cannot write frames to {self.folder}: {_reason(exc)}") from None
        first = self.folder / (self.pattern % 0)
        if first.exists():
            raise RecorderError(f"{self.folder} already holds frames ({first.name}); remove them or use another folder")
        self._wav = None
        if self.audio_channels:
            try:
                self._wav = wave.open(str(self.folder / AUDIO_NAME), "wb")
            except OSError as exc:
                raise RecorderError(f"cannot write {self.folder / AUDIO_NAME}: {_reason(exc)}") from None
            self._wav.setnchannels(self.audio_channels)
            self._wav.setsampwidth(2)
            self._wav.setframerate(self.audio_rate_hz)
        self._slots = threading.Semaphore(max(1, queue_frames))
        self._pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="vj-frames")

    @property
    def accepting(self) -> bool:
        return not self._closed and self.error is None

    def frame_path(self, frame_index: int) -> Path:
        return self.folder / (self.pattern % frame_index)

    def add_video(self, rgb: np.ndarray, frame_index: int) -> bool:
        """Queue one frame (H, W, 3) uint8, top row first; waits while `queue_frames` are being written."""
        check_frame(rgb)
        if not self.accepting:
            return False
        frame_index = int(frame_index)
        if frame_index <= self._last_index:
            self.dropped_frames += 1
            return False
        while not self._slots.acquire(timeout=0.1):
            if self.error is not None:
                return False
        self._last_index = frame_index
        self._pool.submit(self._write, np.array(rgb, copy=True, order="C"), frame_index)
        return True

    def add_audio(self, samples: np.ndarray) -> bool:
        """Append audio (n, channels) float32 in -1..1 to the WAV (16-bit PCM, which every editor reads)."""
        if self._wav is None:
            return False
        samples = check_audio(samples, self.audio_channels)
        if not self.accepting:
            return False
        pcm = np.round(np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2")
        try:
            self._wav.writeframes(pcm.tobytes())
        except OSError as exc:
            self._fail(exc)
            return False
        self.audio_samples_written += len(samples)
        return True

    def close(self, timeout_s: float | None = None) -> None:
        """Wait for the queued frames and finish the WAV header. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._pool.shutdown(wait=True)
        if self._wav is not None:
            try:
                self._wav.close()
            except OSError as exc:
                self._fail(exc)

    def __enter__(self) -> FrameSequence:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _write(self, rgb: np.ndarray, frame_index: int) -> None:
        try:
            if self.error is not None:
                return
            if rgb.shape[:2] != (self.height_px, self.width_px):
                # The engine hands over frames at its render scale: scale them as the recorder's swscale does.
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
                    width=self.width_px, height=self.height_px, format="rgb24",
                    interpolation=Interpolation.BILINEAR)
                rgb = frame.to_ndarray()
            path = self.frame_path(frame_index)
            write_atomic(path, encode_png(rgb, PNG_LEVEL))     # an editor watching the folder never sees half a frame
            with self._lock:
                self.frames_written += 1
        except Exception as exc:  # the writer thread's boundary: report once, the caller sees `error`
            self._fail(exc)
        finally:
            self._slots.release()

    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            if self.error is None:
                self.error = f"writing frames to {self.folder} stopped: {_reason(exc)}"
                log.error("%s", self.error)
