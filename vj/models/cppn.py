"""The default generator: a CPPN with fixed seeded weights, walked through its latent space by the music."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Mapping

import torch

from vj.audio.features import Features
from vj.models.base import Generator, ModelArgs, Value, assert_image, output_size_px, pixel_grid, read_params
from vj.models.shared import SHARED
from vj.models.walk import LatentWalk, walk_params
from vj.params import Param

TAU = 2.0 * math.pi
# Chosen by eye on contact sheets of many seeds and walk positions (see the module tests for the
# "colourful, not grey" guard). Weight scales are multiples of 1/sqrt(fan_in): higher = busier forms.
WARP = 8                              # sine waves in the domain warp
W_IN, W_HID, W_Z, W_OUT = 1.6, 1.8, 0.9, 2.0
ACTIVATIONS = ("sin", "tanh", "gauss")  # hidden layer i uses ACTIVATIONS[i % 3]
MIX = 0.25                            # share of the network's own RGB; the rest is the cosine palette
LIGHT_GAIN, LIGHT_BIAS = 2.0, 1.0     # contrast and brightness of the light channel


@dataclass(frozen=True)
class CPPNArgs(ModelArgs):
    """One CPPN frame: the latent plus the view (zoom, rotation), detail and colour shift."""

    zoom: float = 1.0                 # > 1 magnifies
    angle_rad: float = 0.0            # rotation of the plane
    detail: float = 0.5               # 0..1: frequency of the coordinate features
    hue: float = 0.0                  # 0..1: turn of the colour palette


def cppn_params() -> list[Param]:
    """The params the CPPN reads; the walk ones are shared with the other generators."""
    return walk_params(speed=0.05) + [
        Param("/model/zoom", 1.0, 0.25, 4.0, unit="x", smoothing_s=0.3,
              description="magnification of the pattern"),
        Param("/model/detail", 0.5, 0.0, 1.0, smoothing_s=0.3,
              description="fineness of the forms: low = broad blobs, high = fine filigree"),
        Param("/model/spin", 0.01, -0.5, 0.5, unit="turn/s", smoothing_s=0.5,
              description="rotation speed of the plane"),
        Param("/model/hue", 0.0, 0.0, 1.0, unit="turn", smoothing_s=0.2,
              description="turns the colour palette"),
    ]


class CPPNGenerator(Generator):
    """Compositional pattern-producing network: per-pixel coordinate features + latent z -> colour.

    Weights are drawn once from `seed`; nothing is trained or downloaded. The plane is first swirled
    by a sine domain warp; per pixel the inputs are then x, y, radius and sin/cos Fourier features
    of (x, y), and the latent z enters every layer (and the warp) as a bias. Hidden layers cycle
    through sin, tanh and gaussian activations. Five outputs per pixel: RGB logits, an index into a
    cosine palette (blended in to keep colours saturated), and a light channel for dark/bright depth.
    """

    name = "cppn"

    def __init__(self, width_px: int = 256, height_px: int = 144, seed: int = 0, hidden: int = 24,
                 layers: int = 4, z_dim: int = 12, fourier: int = 6, chunk_px: int = 8192):
        width_px, height_px = output_size_px(width_px, height_px)
        if hidden < 1 or layers < 1 or z_dim < 1 or fourier < 0 or chunk_px < 1:
            raise ValueError("hidden, layers, z_dim and chunk_px must be >= 1 and fourier >= 0")
        self.width_px, self.height_px = int(width_px), int(height_px)
        self.seed, self.hidden, self.layers = int(seed), int(hidden), int(layers)
        self.z_dim, self.fourier, self.chunk_px = int(z_dim), int(fourier), int(chunk_px)
        self._params = cppn_params()
        self.walk = LatentWalk(self.z_dim, base_seed=self.seed)
        # The settings that draw the weights; the output size and chunk_px do not change the picture of a
        # latent, and /model/seed only picks the walk's keyframes, so a preset morph can slerp across them.
        self.latent_key = ("cppn", self.seed, self.z_dim, self.hidden, self.layers, self.fourier)
        self._angle_rad = 0.0
        self._traced = None

        g = torch.Generator().manual_seed(self.seed)

        def normal(*shape: int, std: float) -> torch.Tensor:
            return torch.randn(*shape, generator=g, dtype=torch.float32) * std

        n_in = 3 + 2 * self.fourier
        # Domain warp (Quilez): q = p + sin(p @ warp_a + bias(z)) @ warp_b, swirls the plane.
        self._warp_a = normal(2, WARP, std=1.2)                                  # (2, WARP)
        self._warp_b = normal(WARP, 2, std=0.5 / math.sqrt(WARP))                # (WARP, 2)
        self._warp_z = normal(self.z_dim, WARP, std=1.0 / math.sqrt(self.z_dim)) # (z_dim, WARP)
        # Directions of the Fourier features, (2, fourier), with lengths spread over an octave range.
        dirs = normal(2, self.fourier, std=1.0)
        dirs = dirs / dirs.norm(dim=0, keepdim=True).clamp_min(1e-6)
        self._fourier_dirs = dirs * torch.linspace(0.6, 1.6, self.fourier)
        # (n_in, hidden), then (hidden, hidden) per layer; z_weights (layers, z_dim, hidden).
        self._w_in = normal(n_in, hidden, std=W_IN / math.sqrt(n_in))
        w_hidden = [normal(hidden, hidden, std=W_HID / math.sqrt(hidden)) for _ in range(layers - 1)]
        self._w_hidden = torch.stack(w_hidden) if w_hidden else torch.zeros(0, hidden, hidden)  # (layers-1, h, h)
        self._biases = normal(layers, hidden, std=0.3)
        self._w_z = normal(layers, self.z_dim, hidden, std=W_Z / math.sqrt(self.z_dim))
        self._w_out = normal(hidden, 5, std=W_OUT / math.sqrt(hidden))
        # Cosine palette colour = 0.5 + 0.5 * cos(TAU * (freq * t + phase)), (3,) each (Quilez).
        self._pal_freq = 0.5 + 0.5 * torch.rand(3, generator=g)
        self._pal_phase = torch.tensor([0.0, 0.33, 0.67]) + 0.15 * torch.rand(3, generator=g)

        self._net = _CPPNNet(self.width_px, self.height_px, self.chunk_px, self.layers)

    def reset(self) -> None:
        self.walk.reset()
        self._angle_rad = 0.0

    def advance(self, frame: Mapping[str, Value], features: Features, dt_s: float) -> CPPNArgs:
        v = read_params(frame, self._params)
        dt_s = max(float(dt_s), 0.0)
        z = self.walk.advance(v, features, dt_s)
        self._angle_rad = math.fmod(self._angle_rad + TAU * v["/model/spin"] * dt_s, TAU)
        return CPPNArgs(z=tuple(float(x) for x in z), walk_pos=self.walk.pos, zoom=v["/model/zoom"],
                        angle_rad=self._angle_rad, detail=v["/model/detail"], hue=v["/model/hue"])

    def render(self, args: ModelArgs) -> torch.Tensor:
        assert isinstance(args, CPPNArgs), f"CPPNGenerator.render needs CPPNArgs, got {type(args).__name__}"
        assert len(args.z) == self.z_dim, f"latent has {len(args.z)} dims, expected {self.z_dim}"
        c, s = math.cos(args.angle_rad), math.sin(args.angle_rad)
        inputs = (
            torch.tensor(args.z, dtype=torch.float32),                                       # (z_dim,)
            torch.tensor([[c, s], [-s, c]], dtype=torch.float32) / max(args.zoom, 1e-3),    # (2, 2) view
            torch.tensor([0.5 + 4.0 * args.detail], dtype=torch.float32),                   # (1,) frequency scale
            torch.tensor([args.hue], dtype=torch.float32),                                  # (1,) palette turn
        )
        with torch.inference_mode():
            image = self._compiled()(*inputs)                                               # (1, 3, H, W)
        return assert_image(image, self.width_px, self.height_px)

    def weights(self) -> tuple[torch.Tensor, ...]:
        """This seed's weights, in the order _CPPNNet.forward takes them after its four frame inputs."""
        return (self._warp_a, self._warp_b, self._warp_z, self._fourier_dirs, self._w_in, self._w_hidden,
                self._biases, self._w_z, self._w_out, self._pal_freq, self._pal_phase)

    def _compiled(self):
        """The forward pass traced to TorchScript, one trace for every CPPN of this size and architecture.

        Why traced: TorchScript runs the whole graph without the GIL. Eager mode dispatches ~100 small ops
        per frame from Python, and while the render thread holds the GIL inside a GL call (moderngl
        does not release it) the eager worker fell from 64 to under 1 frame per second; traced it
        keeps running (and is ~1.7x faster even alone). The trace is exact: the same ops in the
        same order, so the frames are the same as the eager forward's.

        Why shared: torch keeps every trace for the process (vj.models.shared), with its executor's buffers
        (~0.9 KB per model pixel: 32 MB at 256x144); one trace per generator grew a show by that much at
        every scene change. The weights are inputs, so one trace serves every seed of a shape.
        """
        if self._traced is None:
            key = ("cppn", self.width_px, self.height_px, self.chunk_px, self.layers, self.hidden, self.z_dim,
                   self.fourier)
            traced = SHARED.get(key, self._trace)
            weights = self.weights()
            self._traced = lambda *inputs: traced(*inputs, weights)
        return self._traced

    def _trace(self) -> torch.jit.ScriptModule:
        example = (torch.zeros(self.z_dim), torch.eye(2), torch.ones(1), torch.zeros(1), self.weights())
        with torch.inference_mode(), warnings.catch_warnings():
            # torch 2.13 marks jit.trace deprecated; it is still the way to run a graph without the GIL.
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.trace(self._net, example, check_trace=False)

    def forward(self, z: torch.Tensor, view: torch.Tensor, freq_scale: torch.Tensor,
                hue: torch.Tensor) -> torch.Tensor:
        """Eager forward pass: (z_dim,), (2, 2), (1,), (1,) tensors -> (1, 3, H, W) in 0..1."""
        return self._net(z, view, freq_scale, hue, self.weights())


class _CPPNNet(torch.nn.Module):
    """The CPPN's maths for one output size and depth; the weights are inputs, so any seed runs through it."""

    def __init__(self, width_px: int, height_px: int, chunk_px: int, layers: int):
        super().__init__()
        self.width_px, self.height_px, self.chunk_px, self.layers = width_px, height_px, chunk_px, layers
        self.grid = pixel_grid(width_px, height_px)                                 # (N, 2), N = H * W

    def forward(self, z: torch.Tensor, view: torch.Tensor, freq_scale: torch.Tensor, hue: torch.Tensor,
                weights: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """(z_dim,), (2, 2), (1,), (1,) tensors and CPPNGenerator.weights() -> (1, 3, H, W) in 0..1."""
        warp_a, warp_b, warp_z, fourier_dirs, w_in, w_hidden, biases, w_z, w_out, pal_freq, pal_phase = weights
        layer_bias = biases + torch.einsum("z,lzh->lh", z, w_z)                  # (layers, hidden)
        freq = fourier_dirs * freq_scale                                        # (2, fourier)
        warp_bias = z @ warp_z                                                  # (WARP,)
        n = self.width_px * self.height_px                                      # a constant, also when traced
        chunks = [self._render_rows(self.grid[start:min(start + self.chunk_px, n)], view, freq, layer_bias,
                                    warp_bias, warp_a, warp_b, w_in, w_hidden, w_out)
                  for start in range(0, n, self.chunk_px)]
        out = self._colour(torch.cat(chunks, dim=0), hue, pal_freq, pal_phase)  # (N, 3)
        return out.t().reshape(1, 3, self.height_px, self.width_px)             # (1, 3, H, W)

    def _render_rows(self, grid: torch.Tensor, view: torch.Tensor, freq: torch.Tensor, layer_bias: torch.Tensor,
                     warp_bias: torch.Tensor, warp_a: torch.Tensor, warp_b: torch.Tensor, w_in: torch.Tensor,
                     w_hidden: torch.Tensor, w_out: torch.Tensor) -> torch.Tensor:
        """(n, 2) pixel coordinates -> (n, 5) raw outputs: RGB logits, palette index, light."""
        p = grid @ view                                                          # (n, 2)
        p = p + torch.sin(torch.addmm(warp_bias, p, warp_a)) @ warp_b            # (n, 2) warped
        r = p.norm(dim=1, keepdim=True)                                          # (n, 1)
        phase = p @ freq                                                         # (n, fourier)
        x = torch.cat([p, r, torch.sin(phase), torch.cos(phase)], dim=1)         # (n, 3 + 2 * fourier)
        h = torch.addmm(layer_bias[0], x, w_in)                                  # (n, hidden)
        for i in range(1, self.layers):
            h = self._activate(h, i - 1)
            h = torch.addmm(layer_bias[i], h, w_hidden[i - 1])
        h = self._activate(h, self.layers - 1)
        return h @ w_out                                                         # (n, 5)

    @staticmethod
    def _colour(o: torch.Tensor, hue: torch.Tensor, pal_freq: torch.Tensor, pal_phase: torch.Tensor) -> torch.Tensor:
        """(N, 5) raw outputs -> (N, 3) colours in 0..1: sigmoid RGB blended with a cosine palette.

        The light channel is centred on its frame mean, so no latent leaves the whole frame dark.
        """
        rgb = torch.sigmoid(o[:, :3])
        t = o[:, 3:4]                                                            # (N, 1) palette index
        pal = 0.5 + 0.5 * torch.cos(TAU * (t * pal_freq + pal_phase + hue))
        light_raw = o[:, 4:5]
        light = torch.sigmoid(LIGHT_GAIN * (light_raw - light_raw.mean()) + LIGHT_BIAS)  # (N, 1)
        return (MIX * rgb + (1.0 - MIX) * pal) * (0.08 + 0.92 * light)

    @staticmethod
    def _activate(h: torch.Tensor, i: int) -> torch.Tensor:
        kind = ACTIVATIONS[i % len(ACTIVATIONS)]
        if kind == "sin":
            return h.sin_()
        if kind == "tanh":
            return h.tanh_()
        return h.square_().neg_().exp_()                                        # gaussian
