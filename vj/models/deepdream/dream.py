"""The DeepDream operations, as pure functions of tensors: feedback warp, gradient ascent, level balance."""

from __future__ import annotations

import math
import threading
import warnings
from typing import Callable, List

import numpy as np
import torch
import torch.nn.functional as F

MIN_OCTAVE_PX = 32                    # an octave never shrinks the short side below this (deep layers need room)
GRAD_CLIP = 4.0                       # normalised gradients beyond this many mean-abs units are clipped


def warp(image: torch.Tensor, zoom: float, angle_rad: float, shift: tuple[float, float]) -> torch.Tensor:
    """(N, 3, H, W) zoomed (> 1 magnifies) and turned about the centre, then moved by shift (frame widths/heights).

    Rotation is done in square pixels, so non-square frames do not shear; edges reflect.
    """
    n, _, h, w = image.shape
    if zoom == 1.0 and angle_rad == 0.0 and shift == (0.0, 0.0):
        return image
    aspect = w / h
    c, s = math.cos(angle_rad) / zoom, math.sin(angle_rad) / zoom
    theta = image.new_tensor([[c, -s / aspect, -2.0 * shift[0]],
                              [s * aspect, c, 2.0 * shift[1]]]).unsqueeze(0).expand(n, 2, 3)   # (N, 2, 3)
    grid = F.affine_grid(theta, list(image.shape), align_corners=False)                        # (N, H, W, 2)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def objective(act: torch.Tensor, channel: int = -1) -> torch.Tensor:
    """What the ascent maximises: the mean square of the layer (channel -1) or of one channel (wrapped)."""
    if channel >= 0 and act.dim() >= 2:
        act = act[:, channel % act.shape[1]]
    return act.float().pow(2).mean()


def jitter_offsets(seed: int, frame_index: int, steps: int, max_px: int) -> list[tuple[int, int]]:
    """(dy, dx) rolls for each step of a frame: the same for the same seed and frame, whatever ran before."""
    if max_px <= 0:
        return [(0, 0)] * steps
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(frame_index) & 0xFFFFFFFF, 0x6A17])
    return [(int(dy), int(dx)) for dy, dx in rng.integers(-max_px, max_px + 1, size=(steps, 2))]


def octave_size(height_px: int, width_px: int, scale: float) -> tuple[int, int]:
    """(h, w) of an octave `scale` (<= 1) of the frame, the short side kept at MIN_OCTAVE_PX or more."""
    scale = max(scale, MIN_OCTAVE_PX / min(height_px, width_px))
    if scale >= 1.0:
        return height_px, width_px
    return max(1, round(height_px * scale)), max(1, round(width_px * scale))


def ascend(activation: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, *, steps: int, step: float,
           scale: float = 1.0, offsets: list[tuple[int, int]] | None = None, channel: int = -1) -> torch.Tensor:
    """`steps` gradient-ascent steps on (N, 3, H, W) image in 0..1 at octave `scale`; returns the new image.

    Each step: resize to the octave, roll by the jitter offset, take the gradient of the objective,
    roll back, normalise it by its mean magnitude (so `step` is in image units whatever the layer's
    scale), clip, resize to the frame and add. The image is clamped to 0..1 after every step.
    Needs grad mode (the worker renders in inference mode: the caller leaves it first).
    """
    _, _, h, w = image.shape
    oh, ow = octave_size(h, w, scale)
    return _Ascent(_Activation(activation))(image, _rolls(offsets, steps), oh, ow, float(step), int(channel))


def _rolls(offsets: list[tuple[int, int]] | None, steps: int) -> list[list[int]]:
    """The (dy, dx) jitter roll of each of `steps` steps: offsets in turn, none when there are none."""
    offsets = offsets if offsets else [(0, 0)]
    return [[int(dy), int(dx)] for dy, dx in (offsets[i % len(offsets)] for i in range(steps))]


class _Activation(torch.nn.Module):
    """A function image -> activation as a module, so it can be traced."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


class _Ascent(torch.nn.Module):
    """The steps of `ascend`, written so TorchScript can compile them (ScriptedAscent); run eagerly by `ascend`."""

    def __init__(self, activation: torch.nn.Module):
        super().__init__()
        self.activation = activation
        self.grad_clip = GRAD_CLIP

    def forward(self, image: torch.Tensor, offsets: List[List[int]], oh: int, ow: int, step: float,
                channel: int) -> torch.Tensor:
        h, w = image.shape[2], image.shape[3]
        x = image.detach()
        for off in offsets:
            dy, dx = off[0], off[1]
            small = x
            if oh != h or ow != w:
                small = F.interpolate(x, size=[oh, ow], mode="bilinear", align_corners=False, antialias=True)
            small = torch.roll(small, [dy, dx], [2, 3]).detach().requires_grad_(True)
            grads = torch.autograd.grad([objective(self.activation(small), channel)], [small])
            grad = grads[0]
            assert grad is not None
            grad = torch.roll(grad, [-dy, -dx], [2, 3])
            grad = (grad / (grad.abs().mean() + 1e-8)).clamp(-self.grad_clip, self.grad_clip)
            if oh != h or ow != w:
                grad = F.interpolate(grad, size=[h, w], mode="bilinear", align_corners=False)
            x = (x + step * grad.to(x.dtype)).clamp(0.0, 1.0)
        return x


class ScriptedAscent:
    """`ascend` compiled to TorchScript for one activation (one backbone layer): the same result to float
    rounding, and it runs without holding Python's GIL.

    Why: eager PyTorch takes the GIL back after every op, and the render thread holds the GIL while it waits
    inside GL calls (moderngl does not release it). Measured at 256x144, 2 steps, with one Python thread
    busy beside it: eager 3957 ms a frame, a traced backbone alone 771 ms, this 109 ms (62 ms with no such
    thread, as eager). The activation is traced on first use (shapes generalise; octaves re-use it).
    """

    def __init__(self, activation: Callable[[torch.Tensor], torch.Tensor]):
        self._activation = activation
        self._module: torch.jit.ScriptModule | None = None
        self._lock = threading.Lock()     # generators share one (deepdream.generator): trace it once

    def __call__(self, image: torch.Tensor, *, steps: int, step: float, scale: float = 1.0,
                 offsets: list[tuple[int, int]] | None = None, channel: int = -1) -> torch.Tensor:
        _, _, h, w = image.shape
        oh, ow = octave_size(h, w, scale)
        with self._lock:
            if self._module is None:
                example = torch.rand(1, 3, oh, ow, device=image.device, dtype=image.dtype, requires_grad=True)
                with warnings.catch_warnings():
                    # torch 2.13 marks jit.trace/script deprecated; they are still the way to run without the GIL.
                    warnings.simplefilter("ignore", DeprecationWarning)
                    traced = torch.jit.trace(_Activation(self._activation), (example,), check_trace=False)
                    self._module = torch.jit.script(_Ascent(traced))
        rolls = _rolls(offsets, steps)
        # Unoptimised execution: the profiling executor would switch to a re-optimised graph after a few
        # runs, whose float rounding differs, and frames would depend on how many ran before them.
        with torch.jit.optimized_execution(False):
            return self._module(image, rolls, oh, ow, float(step), int(channel))


def balance(image: torch.Tensor, amount: float, mean_target: float = 0.5, std_target: float = 0.22) -> torch.Tensor:
    """Pull the image's mean and spread (over all channels, so colour casts stay) a fraction `amount` (0..1)
    toward the targets: a gentle auto-level that keeps a feedback loop from drifting to white or black or
    washing out to grey. The gain per call is capped, so a flat frame is not blown up into noise at once.
    """
    if amount <= 0.0:
        return image
    mean = image.mean(dim=(1, 2, 3), keepdim=True)                                # (N, 1, 1, 1)
    std = image.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-4)
    gain = (1.0 + amount * (std_target / std - 1.0)).clamp(0.5, 2.0)
    new_mean = mean + amount * (mean_target - mean)
    return ((image - mean) * gain + new_mean).clamp_(0.0, 1.0)
