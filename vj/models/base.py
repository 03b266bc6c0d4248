"""The Generator protocol every model implements, and the frozen ModelArgs it hands to the worker."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch

from vj.audio.features import Features
from vj.params import Param

Value = Any  # a param value: float | int | bool | tuple[float, ...]


@dataclass(frozen=True)
class ModelArgs:
    """Everything `render` needs for one frame: a frozen, picklable snapshot made on the main thread.

    Generators subclass it to add their own fields (all plain floats/ints/tuples).
    """

    z: tuple[float, ...]              # (z_dim,) latent vector
    walk_pos: float = 0.0             # position on the keyframe grid, in keyframes (for display/debug)


class Generator(abc.ABC):
    """A model that turns params and audio features into images.

    `advance` runs on the main thread: cheap and deterministic, it integrates the latent walk
    (the same sequence of (frame, features, dt_s) gives the same args). `render` runs on the
    worker thread: a pure function of its args, returning a (1, 3, H, W) float tensor in 0..1.
    """

    name: str = ""
    width_px: int
    height_px: int
    _params: list[Param]
    # True for a generator whose `render` starts from its own previous image (DeepDream's feedback loop): a frame's
    # picture then depends on every earlier one, and a render split into chunks cannot reproduce it exactly.
    keeps_pictures = False

    @property
    def output_size(self) -> tuple[int, int]:
        """(width_px, height_px) of every image `render` returns."""
        return self.width_px, self.height_px

    def params(self) -> list[Param]:
        """The params this generator reads, all under `/model/` (by default the list in `_params`)."""
        return list(self._params)

    @abc.abstractmethod
    def advance(self, frame: Mapping[str, Value], features: Features, dt_s: float) -> ModelArgs:
        """Integrate the walk by dt_s seconds and return the args for the new frame (main thread)."""

    @abc.abstractmethod
    def render(self, args: ModelArgs) -> torch.Tensor:
        """(1, 3, H, W) float32 in 0..1 for `args` (worker thread; must not change any state)."""

    @abc.abstractmethod
    def reset(self) -> None:
        """Go back to the start of the walk."""

    # ---- preset morphs between generators that share a latent space ----------------------------

    def latent_space(self) -> tuple | None:
        """Identity of this generator's latent space (`self.latent_key`); None = nothing to morph with.

        Two generators with equal keys must give the same picture for the same latent, so a preset
        morph between them can slerp the latent instead of only dissolving the picture.
        """
        return getattr(self, "latent_key", None)

    def current_latent(self) -> np.ndarray | None:
        """(z_dim,) float64 copy of the latent of the last `advance`; None before the first one or without a walk."""
        z = getattr(getattr(self, "walk", None), "current_z", None)
        return None if z is None else np.array(z, dtype=np.float64)

    def morph_latent_from(self, z: np.ndarray, duration_s: float) -> None:
        """Start the walk at latent z and slerp to its own latent over duration_s (from the next `advance`).

        The default hands it to `self.walk` (a LatentWalk) when there is one, else does nothing; it is
        only called when `latent_space()` of both generators is the same non-None key.
        """
        walk = getattr(self, "walk", None)
        if walk is not None and hasattr(walk, "morph_from"):
            walk.morph_from(z, duration_s)


def read_params(frame: Mapping[str, Value], params: list[Param]) -> dict[str, Value]:
    """Values of `params` by path from `frame`; a missing or unusable value falls back to the default."""
    out: dict[str, Value] = {}
    for p in params:
        v = frame.get(p.path, p.default)
        try:
            out[p.path] = p.coerce(v)
        except (ValueError, TypeError):
            out[p.path] = p.coerce(p.default)
    return out


def output_size_px(width_px: int, height_px: int) -> tuple[int, int]:
    """A generator's output size as ints; ValueError for a size that is not positive."""
    if width_px < 1 or height_px < 1:
        raise ValueError(f"output size must be positive, got {width_px}x{height_px}")
    return int(width_px), int(height_px)


def resolve_device(device: str) -> torch.device:
    """`device` as a torch.device; "auto" is CUDA where present. ValueError, in words, for a name torch does not
    know or a CUDA device this machine does not have (a preset written on a GPU machine, played on a laptop)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be auto, cpu or cuda (or cuda:N), got {device!r}") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device {device!r}: no CUDA device here (torch {torch.__version__}); "
                             "use device = \"auto\" or \"cpu\"")
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"device {device!r}: this machine has {count} CUDA device(s)")
    elif dev.type != "cpu":
        raise ValueError(f"device must be auto, cpu or cuda (or cuda:N), got {device!r}")
    return dev


def assert_image(image: torch.Tensor, width_px: int, height_px: int) -> torch.Tensor:
    """Check a generator output is (1, 3, H, W) floating point; returns it unchanged."""
    assert isinstance(image, torch.Tensor), f"render must return a torch.Tensor, got {type(image).__name__}"
    assert tuple(image.shape) == (1, 3, height_px, width_px), (
        f"render returned shape {tuple(image.shape)}, expected (1, 3, {height_px}, {width_px})")
    assert image.is_floating_point(), f"render returned dtype {image.dtype}, expected a float tensor"
    return image


def pixel_grid(width_px: int, height_px: int) -> torch.Tensor:
    """(H * W, 2) float32 pixel centres, row-major, y up, the short side spanning -1..1."""
    aspect = width_px / height_px
    xs = (torch.arange(width_px, dtype=torch.float32) + 0.5) / width_px * 2.0 - 1.0
    ys = 1.0 - (torch.arange(height_px, dtype=torch.float32) + 0.5) / height_px * 2.0
    if aspect >= 1.0:
        xs = xs * aspect
    else:
        ys = ys / aspect
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1).contiguous()
