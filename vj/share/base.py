"""QueuedSender: frames handed over by the frame loop without waiting, sent by a thread of the sender's own.

The frame loop calls `send(rgb)`: a copy goes into a bounded queue, or, when the queue is full (the receiver,
the network or the GPU is slow), the frame is dropped and counted. A thread takes frames from the queue and
calls the subclass's `_open()` once, then `_send(rgb)` per frame, then `_close()`. The first exception from
any of them is kept as `error` (one line); sending stops and the show goes on.
"""

from __future__ import annotations

import importlib.util
import logging
import queue
import sys
import threading
import weakref

import numpy as np

log = logging.getLogger(__name__)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def require(error: type[Exception], what: str, platform: str, platform_name: str, module: str, extra: str) -> None:
    """Raise `error` with one line unless this is `platform` and `module` (from the `vj[extra]` extra) is there."""
    if sys.platform != platform:          # the branch these machines take
        raise error(f"{what} is {platform_name} only (this is {sys.platform}); use --ndi")
    if importlib.util.find_spec(module) is None:
        raise error(f"{what}: the {module} module is not installed (pip install 'vj[{extra}]')")


class QueuedSender:
    """Base of the frame senders: `send()` never blocks; `sent`, `dropped`, `error`; `close()` joins the thread."""

    kind = "frames"                      # what the HUD calls it
    audio_rate_hz = None                 # frames only: the show sends these senders no audio

    def __init__(self, name: str, width_px: int, height_px: int, fps: float, queue_frames: int = 4):
        self.name = name
        self.width_px, self.height_px, self.fps = int(width_px), int(height_px), float(fps)
        self.sent = 0
        self.dropped = 0
        self.error: str | None = None
        self._rgba_buf: np.ndarray | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, queue_frames))
        self._thread = threading.Thread(target=self._run, name=f"vj-{self.kind}-send", daemon=True)
        self._thread.start()
        self._finalizer = weakref.finalize(self, QueuedSender._stop, self._queue, self._thread)

    def send(self, rgb: np.ndarray) -> bool:
        """Queue a copy of an (H, W, 3) uint8 frame; False when it was dropped or sending has failed."""
        if self.error is not None or not self._finalizer.alive:
            return False
        try:
            self._queue.put_nowait(np.array(rgb, dtype=np.uint8, copy=True))
        except queue.Full:
            self.dropped += 1
            return False
        return True

    def close(self) -> None:
        """Send what is queued, release the sender and join its thread; idempotent."""
        self._finalizer()

    @staticmethod
    def _stop(q: queue.Queue, thread: threading.Thread) -> None:
        q.put(None)                       # blocks only while the thread drains a full queue
        thread.join(5)

    def _run(self) -> None:
        try:
            self._open()
            while True:
                rgb = self._queue.get()
                if rgb is None:
                    break
                self._send(rgb)
                self.sent += 1
        except Exception as exc:          # the show goes on without this output; the HUD says why
            self.error = _one_line(exc)
            log.error("%s %s: %s (the show goes on)", self.kind, self.name, self.error)
            while self._queue.get() is not None:     # let close() finish
                pass
        finally:
            try:
                self._close()
            except Exception as exc:
                log.warning("%s %s: closing: %s", self.kind, self.name, _one_line(exc))

    def _rgba(self, rgb: np.ndarray) -> np.ndarray:
        """`rgb` as (H, W, 4) RGBA, opaque, in a buffer this sender reuses (its thread only)."""
        h, w = rgb.shape[:2]
        if self._rgba_buf is None or self._rgba_buf.shape[:2] != (h, w):
            self._rgba_buf = np.full((h, w, 4), 255, np.uint8)
        self._rgba_buf[..., :3] = rgb
        return self._rgba_buf

    # -- what a sender implements (on its thread) --

    def _open(self) -> None:
        pass

    def _send(self, rgb: np.ndarray) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        pass
