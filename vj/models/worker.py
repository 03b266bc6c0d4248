"""The latest-wins model worker: renders a generator's args on its own thread, never raising into the caller."""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from dataclasses import dataclass

import numpy as np
import torch

from vj.models.base import Generator, ModelArgs, assert_image

log = logging.getLogger(__name__)

_FPS_WINDOW = 30                      # completed frames the fps counter averages over
# How a frame rendered on a GPU reaches the GL texture (vj.gfx.upload). "host": as float32 (H, W, 3) through
# host memory, like CPU frames. "pinned": converted on the GPU to 8-bit RGBA, rows bottom-first as GL wants
# them, then copied into a page-locked host buffer (a quarter of the bytes, DMA without a staging copy) and
# written to the texture from there. "interop": the same 8-bit RGBA stays on the GPU and is copied into the
# GL texture through CUDA-GL interop, never touching host memory. "auto": interop where the GL context runs
# on an NVIDIA GPU, else pinned. Frames rendered on the CPU always take the host path.
# CUDA only: the pinned and interop paths run on CUDA machines alone (tests there: tests/test_cuda_frames.py).
FRAME_PATHS = ("auto", "host", "pinned", "interop")
_PINNED_RING = 4                      # pinned buffers in turn: the one uploading, the newest, two in flight


@dataclass(frozen=True)
class ModelResult:
    """One rendered frame. On error `image` is black and `error` says why in one line."""

    stamp: int                        # the stamp `submit` returned for these args
    image: np.ndarray | torch.Tensor  # (H, W, 3) float32 0..1, C-contiguous, read-only; or see `gl_rgba`
    error: str | None
    elapsed_s: float                  # time spent rendering
    # True: `image` is (H, W, 4) uint8 RGBA with row 0 at the bottom, GL's layout: a pinned host array
    # (frame path "pinned") or a CUDA tensor (frame path "interop").
    gl_rgba: bool = False
    oom: bool = False                 # the render ran out of (GPU) memory: the engine lowers the model's size


class ModelWorker:
    """Renders on a daemon thread, latest wins: a newer submission replaces one not yet started.

    Results carry the stamp of their args; `poll` hands out the newest finished result once and
    drops older ones. Exceptions from the generator come back inside the result (stylegan3's
    AsyncRenderer pattern), so the frame loop never sees them and the worker keeps going.
    """

    def __init__(self, generator: Generator, name: str = "vj-model-worker", torch_threads: int | None = None,
                 frame_path: str = "host"):
        """`torch_threads`, when given, calls torch.set_num_threads, which is process-wide.
        `frame_path`: how GPU frames reach GL, one of FRAME_PATHS less "auto" (the engine resolves that).

        Why offer it: on a 2-core CPU shared with another busy process (llvmpipe, an encoder), torch's
        default of one OpenMP thread per core collapsed (CPPN 256x144: median ~600 ms a frame at 2
        threads against ~30 ms at 1 thread); with the cores to itself 2 threads are ~1.5x faster.
        """
        self.generator = generator
        if frame_path not in FRAME_PATHS[1:]:
            raise ValueError(f"frame_path must be one of {', '.join(FRAME_PATHS[1:])}, got {frame_path!r}")
        self.frame_path = frame_path  # the engine sets "pinned" here when interop fails on the GL side
        self._pinned: list[torch.Tensor] = []
        self._pinned_next = 0
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
        self._elapsed: collections.deque[float] = collections.deque(maxlen=_FPS_WINDOW)
        self._render_t0: float | None = None       # when the render on the thread began (monotonic); None idle
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

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def running_s(self) -> float:
        """How long the render on the worker's thread has been running; 0 when it is idle."""
        t0 = self._render_t0
        return time.monotonic() - t0 if t0 is not None else 0.0

    def typical_s(self) -> float | None:
        """The median time of the last few finished renders, or None before the first has finished."""
        with self._cond:
            times = sorted(self._elapsed)
        return times[len(times) // 2] if times else None

    def carry_times_from(self, other: ModelWorker) -> None:
        """Start with `other`'s recent render times: a worker that replaces a stuck one renders the same network,
        already traced, so it is held to the same times, not to a first render's."""
        with other._cond:
            times = list(other._elapsed)
        with self._cond:
            self._elapsed.extend(times)

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
        _lower_priority()
        while True:
            with self._cond:
                while self._pending is None and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                stamp, args = self._pending
                self._pending = None
                self._rendering = True
                self._render_t0 = time.monotonic()
            result = self._render(stamp, args)
            with self._cond:
                self._rendering = False
                self._render_t0 = None
                self._elapsed.append(result.elapsed_s)
                if self._closed:         # abandoned while it rendered (the watchdog replaced it): drop the frame
                    return
                self.frames_done += 1
                self._done_times.append(time.monotonic())
                if self._result is None or self._result.stamp < result.stamp:
                    self._result = result
                self._cond.notify_all()

    def _render(self, stamp: int, args: ModelArgs) -> ModelResult:
        """Run the generator on `args`; any exception becomes the result's one-line error."""
        width_px, height_px = self.generator.output_size
        t0 = time.perf_counter()
        gl_rgba = oom = False
        try:
            with torch.inference_mode():
                out = assert_image(self.generator.render(args), width_px, height_px)   # (1, 3, H, W)
                image, gl_rgba = self.to_frame(out)
            error = None
        except torch.OutOfMemoryError as exc:
            # Keep nothing of the failed call: the exception's traceback holds its frames and their tensors
            # (the activations that did not fit); only the message leaves this block.
            error, oom = _one_line(exc), True
            exc.__traceback__ = None
            del exc
            _free_cached(self.generator)
            image = np.zeros((height_px, width_px, 3), dtype=np.float32)
            self._report(error)
        except Exception as exc:  # the frame loop must never see a model's exception
            image = np.zeros((height_px, width_px, 3), dtype=np.float32)
            error = _one_line(exc)
            self._report(error)
        elapsed_s = time.perf_counter() - t0
        if isinstance(image, np.ndarray):
            image.setflags(write=False)
        self.last_elapsed_s = elapsed_s
        if error is not None:
            self.errors += 1
            self.last_error = error
        return ModelResult(stamp=stamp, image=image, error=error, elapsed_s=elapsed_s, gl_rgba=gl_rgba, oom=oom)

    def to_frame(self, out: torch.Tensor) -> tuple[np.ndarray | torch.Tensor, bool]:
        """A generator's (1, 3, H, W) output as ModelResult's (image, gl_rgba), by this worker's frame path."""
        if out.device.type == "cuda" and self.frame_path != "host":
            return self._gpu_frame(out), True
        hwc = out[0].detach().permute(1, 2, 0).to("cpu", torch.float32)        # (H, W, 3)
        hwc = torch.nan_to_num(hwc, nan=0.0, posinf=1.0, neginf=0.0).clamp_(0.0, 1.0)
        return np.ascontiguousarray(hwc.numpy()), False

    def _gpu_frame(self, out: torch.Tensor) -> np.ndarray | torch.Tensor:
        """CUDA only. A finished (H, W, 4) uint8 GL-layout frame: a CUDA tensor ("interop") or a pinned host
        array ("pinned"). The worker waits for the GPU here, so whatever the main thread receives is complete."""
        rgba = gl_rgba8(out)
        if self.frame_path == "interop":
            torch.cuda.current_stream(out.device).synchronize()
            return rgba
        if not self._pinned or self._pinned[0].shape != rgba.shape:
            self._pinned = [torch.empty(rgba.shape, dtype=torch.uint8, pin_memory=True) for _ in range(_PINNED_RING)]
        host = self._pinned[self._pinned_next]
        self._pinned_next = (self._pinned_next + 1) % len(self._pinned)
        host.copy_(rgba, non_blocking=True)
        torch.cuda.current_stream(out.device).synchronize()
        return host.numpy()

    def _report(self, error: str) -> None:
        if error not in self._reported:
            self._reported.add(error)
            log.warning("model %s: render failed: %s", self.generator.name or "?", error)


WORKER_NICE = 10                      # how much lower the live worker thread runs than the frame loop (Linux)


def _lower_priority() -> None:
    """Run the calling thread WORKER_NICE steps nicer: latest wins, so the frame loop and the audio callback
    come first and the model takes the CPU left over. Linux only (there a thread is a task with its own
    nice value); elsewhere, or where refused, it stays as it was."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(),
                       min(19, os.getpriority(os.PRIO_PROCESS, 0) + WORKER_NICE))
    except (AttributeError, OSError):
        pass


def gl_rgba8(out: torch.Tensor) -> torch.Tensor:
    """(1, 3, H, W) float 0..1 (any device) -> (H, W, 4) uint8 RGBA on the same device, rows bottom-first
    (GL's layout, as TextureUploader writes host frames), NaN as 0, rounded to nearest, alpha 255."""
    rgb = torch.nan_to_num(out[0].detach().float(), nan=0.0, posinf=1.0, neginf=0.0).clamp_(0.0, 1.0)
    rgba = torch.empty((rgb.shape[1], rgb.shape[2], 4), dtype=torch.uint8, device=out.device)
    rgba[:, :, :3] = rgb.permute(1, 2, 0).flip(0).mul(255.0).add_(0.5).to(torch.uint8)
    rgba[:, :, 3] = 255
    return rgba


def _free_cached(generator: Generator) -> None:
    """After an out-of-memory error: hand the blocks torch's CUDA allocator caches back to the driver, so the
    smaller model the engine builds next can have them. CUDA only; nothing to do on the CPU."""
    device = getattr(generator, "device", None)
    if torch.cuda.is_available() and getattr(device, "type", device) == "cuda":
        torch.cuda.empty_cache()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
