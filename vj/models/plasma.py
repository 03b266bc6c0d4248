"""A cheap analytic generator (sums of sines through a cosine palette): the fallback and a second model to switch to."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import torch

from vj.audio.features import Features
from vj.models.base import Generator, ModelArgs, Value, assert_image, output_size_px, pixel_grid, read_params
from vj.models.walk import LatentWalk, walk_params
from vj.params import Param

TAU = 2.0 * math.pi
_WAVES = 6                            # sine waves summed; the latent sets their phases


@dataclass(frozen=True)
class PlasmaArgs(ModelArgs):
    """One plasma frame: the wave phases (z, 6 dims), magnification and palette turn."""

    zoom: float = 1.0
    hue: float = 0.0


class PlasmaGenerator(Generator):
    """Classic demo-scene plasma: a few plane and radial sine waves whose phases follow the latent walk."""

    name = "plasma"

    def __init__(self, width_px: int = 256, height_px: int = 144, seed: int = 0):
        self.width_px, self.height_px = output_size_px(width_px, height_px)
        self.seed = int(seed)
        self._params = walk_params(speed=0.1) + [
            Param("/model/zoom", 1.0, 0.25, 4.0, unit="x", smoothing_s=0.3, description="magnification"),
            Param("/model/hue", 0.0, 0.0, 1.0, unit="turn", smoothing_s=0.2, description="turns the palette"),
        ]
        self.walk = LatentWalk(_WAVES, base_seed=seed)
        g = torch.Generator().manual_seed(self.seed)
        self._k = torch.randn(2, _WAVES, generator=g) * 2.5                     # (2, WAVES) wave vectors
        self._grid = pixel_grid(self.width_px, self.height_px)                   # (N, 2)

    def reset(self) -> None:
        self.walk.reset()

    def advance(self, frame: Mapping[str, Value], features: Features, dt_s: float) -> PlasmaArgs:
        v = read_params(frame, self._params)
        z = self.walk.advance(v, features, dt_s)
        return PlasmaArgs(z=tuple(float(x) for x in z), walk_pos=self.walk.pos,
                          zoom=v["/model/zoom"], hue=v["/model/hue"])

    def render(self, args: ModelArgs) -> torch.Tensor:
        assert isinstance(args, PlasmaArgs), f"PlasmaGenerator.render needs PlasmaArgs, got {type(args).__name__}"
        assert len(args.z) == _WAVES, f"latent has {len(args.z)} dims, expected {_WAVES}"
        with torch.inference_mode():
            z = torch.tensor(args.z, dtype=torch.float32)                      # (WAVES,)
            p = self._grid / max(args.zoom, 1e-3)                               # (N, 2)
            waves = torch.sin(p @ self._k + z)                                  # (N, WAVES)
            centre = 0.5 * torch.stack([torch.sin(z[0] * 0.7), torch.cos(z[1] * 0.7)])  # (2,)
            ring = torch.sin(4.0 * (p - centre).norm(dim=1) + z[2])             # (N,)
            t = (waves.sum(dim=1) + ring) / (_WAVES + 1)                         # (N,) in -1..1
            phase = torch.tensor([0.0, 0.33, 0.67])                             # (3,)
            rgb = 0.5 + 0.5 * torch.cos(TAU * (t[:, None] * 1.5 + phase + args.hue))  # (N, 3)
            image = rgb.t().reshape(1, 3, self.height_px, self.width_px)
        return assert_image(image, self.width_px, self.height_px)
