"""NdiSender: the show's frames (and audio) published as an NDI source, sent from its own thread behind a bounded queue.

`send(rgb)` only copies the frame into the queue and returns: the frame loop never waits for NDI. The thread
turns each frame into RGBX in one swscale pass (scaling it too when its size is not the declared one) and
hands it to libndi, which compresses it (SpeedHQ, 8-bit 4:2:2 Y'CbCr, BT.709) and sends it to every
receiver. A full queue drops the frame and counts it; an error stops the sender with one line in `error`
while the show goes on.

Why RGBX: libndi takes RGBA, RGBX, BGRA, BGRX or Y'CbCr. RGB to RGBX is a byte shuffle (0.5 ms for 1080p in
swscale, against 3.3 ms to make UYVY ourselves) and libndi's own RGBX to Y'CbCr costs about 1 ms more than
taking UYVY: 5.2 against 6.8 ms of CPU per 1080p frame in all. RGBX rather than RGBA: no alpha plane to
compress and send.
"""

from __future__ import annotations

import logging
import queue
import threading
import weakref
from fractions import Fraction

import av
import numpy as np
from av.video.reformatter import Interpolation, VideoReformatter

from vj.ndi.runtime import NdiError, cyndilib

log = logging.getLogger(__name__)

AUDIO_QUEUE_BLOCKS = 64               # audio blocks waiting for the thread; more are dropped (the thread is stuck)
# Audio goes to NDI in frames of exactly this length: cyndilib 0.1.3 keeps the channel stride of its buffer
# (the longest frame) when a shorter frame is written, so libndi would read the second channel from the
# wrong place. 10 ms: the latency this re-framing adds at most.
AUDIO_FRAME_S = 0.01

_STOP = object()


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def ndi_frame_rate(fps: float) -> Fraction:
    """`fps` as the fraction NDI declares: NTSC rates (23.976, 29.97, 59.94) as N * 1000/1001, others close to fps."""
    ntsc = round(fps * 1.001)
    if abs(fps - round(fps)) > 0.005 and abs(fps - ntsc / 1.001) < 0.005:
        return Fraction(ntsc * 1000, 1001)
    return Fraction(fps).limit_denominator(1001)


class _SendWorker:
    """State shared with the sending thread (not the sender itself, so a forgotten sender can be collected)."""

    def __init__(self, name: str, ndi_sender, width_px: int, height_px: int, queue_frames: int, audio_channels: int,
                 audio_frame_samples: int):
        self.name = name
        self.ndi = ndi_sender
        self.width_px, self.height_px = width_px, height_px
        self.audio_channels = audio_channels
        self.audio_frame_samples = audio_frame_samples
        self.audio_pending = np.zeros((0, max(audio_channels, 1)), np.float32)     # (n, ch) short of a frame
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.video_slots = threading.Semaphore(queue_frames)
        self.audio_slots = threading.Semaphore(AUDIO_QUEUE_BLOCKS)
        self.reformatter = VideoReformatter()
        self.sent = 0
        self.audio_samples_sent = 0
        self.error: str | None = None
        self.closed = False
        self.thread: threading.Thread | None = None

    def run(self) -> None:
        try:
            while True:
                item = self.queue.get()
                if item is _STOP:
                    break
                kind, data = item
                if kind == "v":
                    try:
                        self._send_video(data)
                    finally:
                        self.video_slots.release()
                else:
                    try:
                        self._send_audio(data)
                    finally:
                        self.audio_slots.release()
        except Exception as exc:  # the thread's boundary: whatever it was, the show goes on without NDI
            self.error = f"ndi {self.name}: sending stopped: {_reason(exc)}"
            log.error("%s", self.error)
            self._drain()

    def _send_video(self, rgb: np.ndarray) -> None:
        w, h = self.width_px, self.height_px
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        # rgb0 is libndi's RGBX byte order (R, G, B, 255); a frame of another size is scaled in the same pass.
        frame = self.reformatter.reformat(frame, width=w, height=h, format="rgb0", interpolation=Interpolation.BILINEAR)
        plane = frame.planes[0]
        data = np.frombuffer(plane, np.uint8)
        if plane.line_size != w * 4:            # swscale pads rows for alignment; NDI's frame has none
            data = np.ascontiguousarray(data.reshape(h, plane.line_size)[:, :w * 4]).reshape(-1)
        self.ndi.write_video(data)
        self.sent += 1

    def _send_audio(self, samples: np.ndarray) -> None:
        pending = np.concatenate([self.audio_pending, samples]) if len(self.audio_pending) else samples
        size = self.audio_frame_samples
        n_full = len(pending) // size * size
        for start in range(0, n_full, size):
            self.ndi.write_audio(np.ascontiguousarray(pending[start:start + size].T))  # NDI audio is planar: (ch, n)
            self.audio_samples_sent += size
        self.audio_pending = pending[n_full:]

    def _drain(self) -> None:
        while True:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                return
            if item is not _STOP:
                (self.video_slots if item[0] == "v" else self.audio_slots).release()

    def stop(self) -> None:
        """Send what is queued, end the thread, release the NDI sender. Idempotent; safe from any thread."""
        if not self.closed:
            self.closed = True
            self.queue.put(_STOP)
        thread = self.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
            if self.ndi is not None:
                self.ndi.close()
                self.ndi = None


class NdiSender:
    """Publishes (H, W, 3) uint8 frames as the NDI source `name` at `width_px` x `height_px`, `fps`.

    Counters: `sent` (frames handed to NDI), `dropped` (frames not queued: the queue was full, or the
    sender had stopped), `error` (one line; None while fine). With `audio_rate_hz`, `add_audio` sends the
    show's audio alongside: `audio_samples_queued` counts what it took, `audio_samples_sent` what went out (in
    whole NDI audio frames: the rest waits for the next block), `audio_dropped` blocks that found the queue full.
    """

    kind = "ndi"                      # what the HUD calls it (as the Syphon and Spout senders)

    def __init__(self, name: str, width_px: int, height_px: int, fps: float, audio_rate_hz: int | None = None,
                 audio_channels: int = 2, queue_frames: int = 4):
        if not name or not name.strip():
            raise NdiError("NDI: the source name must not be empty")
        if int(width_px) < 2 or int(height_px) < 2 or not fps > 0 or int(queue_frames) < 1:
            raise NdiError(f"NDI: cannot send {width_px}x{height_px} at {fps} fps with a queue of {queue_frames}")
        self.name = name
        self.width_px, self.height_px = int(width_px), int(height_px)
        self.fps = ndi_frame_rate(fps)
        self.audio_rate_hz = int(audio_rate_hz) if audio_rate_hz else None
        self.audio_channels = int(audio_channels) if self.audio_rate_hz else 0
        self.queue_frames = int(queue_frames)
        self.dropped = 0
        self.audio_dropped = 0
        self.audio_samples_queued = 0
        ndi_sender = self._open()
        self.source_name: str = ndi_sender.name                 # "HOST (NAME)", as receivers list it
        self._worker = _SendWorker(name, ndi_sender, self.width_px, self.height_px, self.queue_frames,
                                   self.audio_channels, self._audio_frame_samples())
        self._worker.thread = threading.Thread(target=self._worker.run, name="vj-ndi-send", daemon=True)
        self._worker.thread.start()
        self._finalizer = weakref.finalize(self, self._worker.stop)

    def _open(self):
        nd = cyndilib()
        try:
            # clock_video off: the show's frame loop is the clock. libndi's own pacing would block this thread on
            # every frame and keep a queue's worth of frames (and latency) waiting behind it.
            sender = nd.sender.Sender(self.name, clock_video=False, clock_audio=False)
            video = nd.video_frame.VideoSendFrame()
            video.set_resolution(self.width_px, self.height_px)
            video.set_fourcc(nd.wrapper.FourCC.RGBX)
            video.set_frame_rate(self.fps)
            sender.set_video_frame(video)
            if self.audio_rate_hz:
                audio = nd.audio_frame.AudioSendFrame(self._audio_frame_samples())
                audio.sample_rate = self.audio_rate_hz
                audio.num_channels = self.audio_channels
                sender.set_audio_frame(audio)
            sender.open()
        except Exception as exc:  # noqa: BLE001 - cyndilib raises bare Exception, MemoryError for a NULL from libndi
            raise NdiError(f"NDI: cannot start the sender {self.name!r}: {_reason(exc)}") from None
        return sender

    def _audio_frame_samples(self) -> int:
        return max(1, round((self.audio_rate_hz or 0) * AUDIO_FRAME_S))

    # -- caller side -------------------------------------------------------------------------

    @property
    def sent(self) -> int:
        return self._worker.sent

    @property
    def error(self) -> str | None:
        return self._worker.error

    @property
    def audio_samples_sent(self) -> int:
        return self._worker.audio_samples_sent

    @property
    def receivers(self) -> int:
        """How many receivers are connected now (libndi answers from any thread)."""
        ndi = self._worker.ndi
        return ndi.get_num_connections(0) if ndi is not None else 0

    @property
    def accepting(self) -> bool:
        return not self._worker.closed and self._worker.error is None

    def send(self, rgb: np.ndarray) -> bool:
        """Queue one (H, W, 3) uint8 frame, top row first; False when it was dropped. Never waits."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] < 2 or rgb.shape[1] < 2 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 frame, got {rgb.shape} {rgb.dtype}")
        if not self.accepting or not self._worker.video_slots.acquire(blocking=False):
            if self.accepting and not self.dropped:
                log.warning("ndi %s: the sender is behind, dropping frames (the show goes on)", self.name)
            self.dropped += 1
            return False
        # Copy: the caller reuses its read-back buffer for the next frame.
        self._worker.queue.put(("v", np.array(rgb, copy=True, order="C")))
        return True

    def add_audio(self, samples: np.ndarray) -> bool:
        """Queue audio (n, channels) float32 in -1..1, continuous with the previous call; False when not sent."""
        if not self.audio_rate_hz:
            return False
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim == 1 and self.audio_channels == 1:
            samples = samples[:, None]
        if samples.ndim != 2 or samples.shape[1] != self.audio_channels:
            raise ValueError(f"expected audio (n, {self.audio_channels}), got {samples.shape}")
        if not self.accepting or not len(samples):
            return False
        if not self._worker.audio_slots.acquire(blocking=False):
            self.audio_dropped += 1
            return False
        self._worker.queue.put(("a", samples.copy()))
        self.audio_samples_queued += len(samples)
        return True

    def close(self) -> None:
        """Send what is queued, stop the thread and release the NDI sender (receivers see the source go). Idempotent."""
        self._finalizer()

    def __enter__(self) -> NdiSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
