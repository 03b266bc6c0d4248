"""The latest-wins model worker: renders a generator's args on its own thread, never raising into the caller."""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass

import numpy as np
import torch

from vj.models.base import Generator, ModelArgs, assert_image

log = logging.getLogger(__name__)

_FPS_WINDOW = 30                      # completed frames the fps counter averages over


@dataclass(frozen=True)
class ModelResult:
    """One rendered frame. On error `image` is black and `error` says why in one line."""

    stamp: int                        # the stamp `submit` returned for these args
    image: np.ndarray                 # (H, W, 3) float32 0..1, C-contiguous, read-only
    error: str | None
    elapsed_s: float                  # time spent rendering


class ModelWorker:
    """Renders on a daemon thread, latest wins: a newer submission replaces one not yet started.

    Results carry the stamp of their args; `poll` hands out the newest finished result once and
    drops older ones. Exceptions from the generator come back inside the result (stylegan3's
    AsyncRenderer pattern), so the frame loop never sees them and the worker keeps going.
    """

    def __init__(self, generator: Generator, name: str = "vj-model-worker", torch_threads: int | None = None):
        """`torch_threads`, when given, calls torch.set_num_threads, which is process-wide.

        Why offer it: on a 2-core CPU shared with another busy process (llvmpipe, an encoder), torch's
        default of one OpenMP thread per core collapsed (CPPN 256x144: median ~600 ms a frame at 2
        threads against ~30 ms at 1 thread); with the cores to itself 2 threads are ~1.5x faster.
        """
        self.generator = generator
        if torch_threads is not None:
            torch.set_num_threads(max(1, int(torch_threads)))
        self.frames_done = 0          # renders finished on the thread, errors included
        self.errors = 0
        self.dropped = 0              # submissions replaced before they started
        self.last_elapsed_s = 0.0
        self.last_error: str | None = None
        self._cond = threading.Condition()
        self._stamp = 0
        self._pending: tuple[int, ModelArgs] | None = None
        self._result: ModelResult | None = None
        self._done_times: collections.deque[float] = collections.deque(maxlen=_FPS_WINDOW)
        self._closed = False
        self._rendering = False
        self._reported: set[str] = set()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def fps(self) -> float:
        """Finished renders per second over the last few (0 until two have finished, or when idle 2 s)."""
        with self._cond:
            times = list(self._done_times)
        if len(times) < 2 or times[-1] <= times[0] or time.monotonic() - times[-1] > 2.0:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])

    @property
    def busy(self) -> bool:
        """True while a submission waits or renders."""
        with self._cond:
            return self._pending is not None or self._rendering

    def submit(self, args: ModelArgs) -> int:
        """Queue `args` for rendering, replacing any not yet started; returns its stamp (increasing)."""
        with self._cond:
            if self._closed:
                raise RuntimeError("ModelWorker is closed")
            self._stamp += 1
            if self._pending is not None:
                self.dropped += 1
            self._pending = (self._stamp, args)
            self._cond.notify_all()
            return self._stamp

    def poll(self) -> ModelResult | None:
        """The newest finished result not yet taken, or None."""
        with self._cond:
            result, self._result = self._result, None
            return result

    def wait(self, stamp: int, timeout_s: float | None = None) -> ModelResult | None:
        """Block until a result with at least `stamp` is ready and take it (for tests and offline use)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            while self._result is None or self._result.stamp < stamp:
                remaining = None if deadline is None else deadline - time.monotonic()
                if (remaining is not None and remaining <= 0) or (self._closed and not self._thread.is_alive()):
                    return None
                self._cond.wait(remaining if remaining is not None else 0.1)
            result, self._result = self._result, None
            return result

    def render_now(self, args: ModelArgs) -> ModelResult:
        """Render synchronously on the calling thread with the same code (offline rendering)."""
        with self._cond:
            self._stamp += 1
            stamp = self._stamp
        return self._render(stamp, args)

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the thread after the render in progress; pending args are dropped. Idempotent."""
        with self._cond:
            self._closed = True
            self._pending = None
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout_s)

    def __enter__(self) -> ModelWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                stamp, args = self._pending
                self._pending = None
                self._rendering = True
            result = self._render(stamp, args)
            with self._cond:
                self._rendering = False
                self.frames_done += 1
                self._done_times.append(time.monotonic())
                if self._result is None or self._result.stamp < result.stamp:
                    self._result = result
                self._cond.notify_all()

    def _render(self, stamp: int, args: ModelArgs) -> ModelResult:
        """Run the generator on `args`; any exception becomes the result's one-line error."""
        width_px, height_px = self.generator.output_size
        t0 = time.perf_counter()
        try:
            with torch.inference_mode():
                out = assert_image(self.generator.render(args), width_px, height_px)   # (1, 3, H, W)
                hwc = out[0].detach().permute(1, 2, 0).to("cpu", torch.float32)        # (H, W, 3)
                hwc = torch.nan_to_num(hwc, nan=0.0, posinf=1.0, neginf=0.0).clamp_(0.0, 1.0)
                image = np.ascontiguousarray(hwc.numpy())
            error = None
        except Exception as exc:  # the frame loop must never see a model's exception
            image = np.zeros((height_px, width_px, 3), dtype=np.float32)
            error = _one_line(exc)
            self._report(error)
        elapsed_s = time.perf_counter() - t0
        image.setflags(write=False)
        self.last_elapsed_s = elapsed_s
        if error is not None:
            self.errors += 1
            self.last_error = error
        return ModelResult(stamp=stamp, image=image, error=error, elapsed_s=elapsed_s)

    def _report(self, error: str) -> None:
        if error not in self._reported:
            self._reported.add(error)
            log.warning("model %s: render failed: %s", self.generator.name or "?", error)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
