"""The "deepdream" generator: a feedback loop that dreams on its previous frame, mixed with a source generator."""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import threading
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch

from vj.audio.features import Features
from vj.models.base import Generator, ModelArgs, Value, assert_image, output_size_px, resolve_device, read_params
from vj.models.deepdream import dream
from vj.models.deepdream.backbone import (Backbone, load_googlenet, load_inception_v3, load_torchscript,
                                          random_googlenet)
from vj.models.shared import SHARED, digest
from vj.models.walk import _impulse_decay
from vj.params import Param

log = logging.getLogger(__name__)

SOURCE_PREFIX = "/model/source/"      # the source generator's /model/x params appear as /model/source/x
NETWORKS = ("googlenet", "inception_v3")    # what `weights` holds: a torchvision state dict of one of these
DEFAULT_LAYER = "inception3b"         # chosen by eye for the random net: larger forms than conv3, cheaper than 4x
REFERENCE_FPS = 30.0                  # /model/blend is the share mixed in per frame at this rate (dt-corrected)
BALANCE_S = 3.0                       # time constant of the auto-level that keeps the loop bounded
MAX_CHANNEL = 1023
_warned_random = False

_ASCENTS_LOCK = threading.Lock()      # a backbone's ascents are shared by the scenes that dream on it


def _activation(backbone: Backbone, layer: str, image: torch.Tensor) -> torch.Tensor:
    return backbone.activation(image, layer)


@dataclass(frozen=True)
class DreamArgs(ModelArgs):
    """One DeepDream frame. The view is cumulative (zoom, angle, shift since reset): render applies the change
    since the frame it rendered last, so frames dropped by the latest-wins worker lose no motion."""

    frame_index: int = 0              # frames advanced since reset: seeds the jitter, picks the octave
    t_s: float = 0.0                  # time since reset
    zoom_log: float = 0.0             # ln of the total magnification
    angle_rad: float = 0.0            # total rotation
    shift: tuple[float, float] = (0.0, 0.0)   # total translation, in frame widths/heights
    step: float = 0.02                # ascent step in image units (0..1), onset boost included
    steps: int = 2
    layer: str = DEFAULT_LAYER
    channel: int = -1                 # -1 = the whole layer
    octave_scale: float = 1.4
    octaves: int = 3
    jitter_px: int = 6
    blend: float = 0.08               # share of the source per frame at REFERENCE_FPS
    source: ModelArgs | None = None   # the source generator's args (None: "self")


def deepdream_params(layers: tuple[str, ...], default_layer: str) -> list[Param]:
    return [
        Param("/model/step", 0.02, 0.0, 0.1, smoothing_s=0.2,
              description="how far each ascent step moves the image (0..1 units): stronger dreaming"),
        Param("/model/steps", 2, 0, 8, kind="int", description="gradient-ascent steps per frame (cost grows with it)"),
        Param("/model/layer", layers.index(default_layer), 0, len(layers) - 1, kind="enum", labels=layers,
              description="the layer whose activation is maximised: early = fine texture, late = larger forms"),
        Param("/model/channel", -1, -1, MAX_CHANNEL, kind="int",
              description="one channel of the layer to maximise (wraps to its size); -1 = the whole layer"),
        Param("/model/octave_scale", 1.4, 1.0, 2.0, unit="x", description="size ratio between octaves"),
        Param("/model/octaves", 3, 1, 6, kind="int",
              description="octaves, one per frame in turn: coarse ones grow large forms"),
        Param("/model/jitter_px", 6, 0, 32, kind="int", unit="px",
              description="random shift per step (against grid artefacts)"),
        Param("/model/zoom", 1.08, 0.5, 2.0, unit="x/s", smoothing_s=0.3,
              description="feedback magnification per second (> 1 flies in)"),
        Param("/model/rotate", 2.0, -90.0, 90.0, unit="deg/s", smoothing_s=0.3,
              description="feedback rotation per second"),
        Param("/model/translate", (0.0, 0.0), -0.5, 0.5, kind="point2d", unit="frame/s", smoothing_s=0.3,
              description="feedback drift per second (x right, y up)"),
        Param("/model/blend", 0.08, 0.0, 1.0, smoothing_s=0.2,
              description="share of the source mixed into the feedback each frame (at 30 fps); 1 = no feedback"),
        Param("/model/step_onset", 1.5, 0.0, 4.0,
              description="extra step size at each onset, in multiples of /model/step"),
        Param("/model/zoom_bass", 0.15, 0.0, 1.0, unit="1/s",
              description="extra zoom rate (ln units per second) at full bass"),
        Param("/model/pulse_release_s", 0.3, 0.01, 4.0, unit="s", description="decay time of the onset boost"),
    ]


class DeepDreamGenerator(Generator):
    """DeepDream as a feedback loop over another generator.

    advance (main thread): integrates zoom, rotation and drift (dt-correct, bass adds zoom), the
    onset envelope that boosts the step size, and the source generator's own walk.
    render (worker): the previous output is warped by the change of view since the frame rendered
    last, mixed with the source's new frame, climbed by a few gradient-ascent steps on the chosen
    layer at this frame's octave (octaves take turns frame by frame, jitter seeded by seed and frame
    index), auto-levelled, and kept for the next frame.

    Unlike the other generators, render is NOT pure in its args: it keeps the previous output as
    worker-side state. It is deterministic for a given sequence of args (no global RNG), so offline
    renders, which render every frame's args in order, repeat exactly; `reset` clears the state.
    """

    name = "deepdream"
    keeps_pictures = True

    def __init__(self, width_px: int = 256, height_px: int = 144, source: str = "cppn",
                 source_settings: Mapping[str, Any] | None = None, weights: str | None = None,
                 network: str = "googlenet",
                 torchscript: str | None = None, layer: str | list[str] | None = None, seed: int = 0,
                 net_width: float = 1.0, transform_input: bool = True, device: str = "auto",
                 make_source: Callable[..., Generator] | None = None):
        """`make_source(name, width_px=, height_px=, **settings)` makes the source model (the registry passes
        its create_generator, so this module does not import the registry that imports it)."""
        self._make_generator = make_source
        self.width_px, self.height_px = output_size_px(width_px, height_px)
        self.seed = int(seed)
        self.device = resolve_device(device)
        wanted = tuple([layer] if isinstance(layer, str) else (layer or ()))
        if network not in NETWORKS:
            raise ValueError(f"deepdream: network must be one of {', '.join(NETWORKS)}, got {network!r}")
        if network != "googlenet" and not weights:
            raise ValueError(f"deepdream: network = {network!r} needs `weights` (its torchvision state dict)")
        self.network = network
        self.backbone, self._ascents = self._make_backbone(weights, torchscript, wanted, net_width, transform_input)
        if min(self.width_px, self.height_px) < self.backbone.min_px:
            raise ValueError(f"deepdream: {network} needs a model frame of {self.backbone.min_px} px or more a side, "
                             f"got {self.width_px}x{self.height_px} (set size under [model])")
        unknown = [n for n in wanted if n not in self.backbone.layers]
        if unknown:
            raise ValueError(f"deepdream: unknown layer {unknown[0]!r}; available: {', '.join(self.backbone.layers)}")
        # The enum offers the named layers when given (a TorchScript model has too many to list), else all.
        self.layers = wanted if (torchscript or len(wanted) > 1) else self.backbone.layers
        default_layer = wanted[0] if wanted else (self.backbone.default_layer or DEFAULT_LAYER)
        self._own_params = deepdream_params(self.layers, default_layer)
        self.source_name = source
        self.inner = self._make_source(source, dict(source_settings or {}))
        self._inner_params = self.inner.params() if self.inner is not None else []
        self._params = self._own_params + [dataclasses.replace(p, path=SOURCE_PREFIX + p.path[len("/model/"):])
                                           for p in self._inner_params]
        g = torch.Generator().manual_seed(self.seed)
        coarse = torch.rand(1, 3, max(2, self.height_px // 16), max(2, self.width_px // 16), generator=g)
        self._noise = torch.nn.functional.interpolate(coarse, size=(self.height_px, self.width_px), mode="bicubic",
                                                      align_corners=False).clamp(0.0, 1.0)      # (1, 3, H, W)
        self.reset()

    def _make_backbone(self, weights: str | None, torchscript: str | None, layers: tuple[str, ...],
                       net_width: float, transform_input: bool
                       ) -> tuple[Backbone, dict[str, Callable[..., torch.Tensor]]]:
        """The backbone and its ascents by layer. Ours (GoogLeNet) are traced, which torch never frees: a
        generator takes the backbone and ascents of the first one with the same numbers (vj.models.shared).
        A TorchScript file's own graph is not traced again, so it is loaded for each generator."""
        global _warned_random
        if weights and torchscript:
            raise ValueError("deepdream: give either `weights` (a GoogLeNet state dict) or `torchscript`, not both")
        if torchscript:
            bb = load_torchscript(torchscript, layers, device=self.device)
        elif weights:
            load = load_inception_v3 if self.network == "inception_v3" else load_googlenet
            bb = load(weights, transform_input=transform_input, device=self.device)
        else:
            bb = random_googlenet(self.seed, width=net_width, device=self.device)
            if not _warned_random:
                _warned_random = True
                log.warning("deepdream: no weights given, dreaming with a randomly initialised GoogLeNet "
                            "(seed %d): textures, not dogs; set `weights` to a torchvision googlenet .pth", self.seed)
        log.info("deepdream: backbone %s on %s", bb.source, self.device)
        if torchscript:
            return bb, {}
        key = ("deepdream", digest(bb.module), bool(transform_input) if weights else None, str(self.device))
        return SHARED.get(key, lambda: (bb, {}))

    def _ascent(self, layer: str) -> Callable[..., torch.Tensor]:
        """The gradient ascent on `layer`: compiled on first use (a layer switch compiles on the worker) for our
        GoogLeNet; a TorchScript backbone's cut graph already runs as one call and takes the eager ascent."""
        with _ASCENTS_LOCK:
            if layer not in self._ascents:
                # Bound to the backbone, not to this generator: the ascent outlives the scene.
                activation = functools.partial(_activation, self.backbone, layer)
                if isinstance(self.backbone.module, torch.jit.ScriptModule):
                    self._ascents[layer] = functools.partial(dream.ascend, activation)
                else:
                    self._ascents[layer] = dream.ScriptedAscent(activation)
            return self._ascents[layer]

    def _make_source(self, source: str, settings: dict[str, Any]) -> Generator | None:
        if source == "self":
            return None
        if source == self.name:
            raise ValueError("deepdream: the source cannot be deepdream itself (use source = \"self\")")
        if self._make_generator is None:
            raise ValueError(f"deepdream: source {source!r} needs make_source (vj.models.registry gives it)")
        return self._make_generator(source, width_px=self.width_px, height_px=self.height_px, **settings)

    def reset(self) -> None:
        """Back to the start: the view, the onset envelope, the source's walk and the kept frame."""
        self._frame_index = 0
        self._t_s = 0.0
        self._zoom_log = 0.0
        self._angle_rad = 0.0
        self._shift = (0.0, 0.0)
        self._pulse_store = 0.0
        self._pulse_env = 0.0
        self._last_onset_t_s = math.nan
        if self.inner is not None:
            self.inner.reset()
        self._state: torch.Tensor | None = None       # (1, 3, H, W) the previous output (worker side)
        self._state_view: tuple[float, float, float, tuple[float, float]] | None = None

    def advance(self, frame: Mapping[str, Value], features: Features, dt_s: float) -> DreamArgs:
        v = read_params(frame, self._own_params)
        dt_s = max(float(dt_s), 0.0)
        source_args = None
        if self.inner is not None:
            inner_frame = {p.path: frame[SOURCE_PREFIX + p.path[len("/model/"):]] for p in self._inner_params
                           if SOURCE_PREFIX + p.path[len("/model/"):] in frame}
            source_args = self.inner.advance(inner_frame, features, dt_s)
        if features.onset and features.t_s != self._last_onset_t_s:
            self._pulse_store += 1.0
        self._last_onset_t_s = features.t_s if features.onset else math.nan
        a, r, g = _impulse_decay(dt_s, 0.02, v["/model/pulse_release_s"])
        self._pulse_env = a * self._pulse_env + g * self._pulse_store
        self._pulse_store *= r
        self._t_s += dt_s
        self._zoom_log += (math.log(v["/model/zoom"]) + v["/model/zoom_bass"] * features.bass) * dt_s
        self._angle_rad = math.fmod(self._angle_rad + math.radians(v["/model/rotate"]) * dt_s, 2.0 * math.pi)
        tx, ty = v["/model/translate"]
        self._shift = (self._shift[0] + tx * dt_s, self._shift[1] + ty * dt_s)
        args = DreamArgs(
            z=source_args.z if source_args is not None else (), walk_pos=source_args.walk_pos if source_args else 0.0,
            frame_index=self._frame_index, t_s=self._t_s, zoom_log=self._zoom_log, angle_rad=self._angle_rad,
            shift=self._shift, step=v["/model/step"] * (1.0 + v["/model/step_onset"] * self._pulse_env),
            steps=v["/model/steps"], layer=self.layers[v["/model/layer"]], channel=v["/model/channel"],
            octave_scale=v["/model/octave_scale"], octaves=v["/model/octaves"], jitter_px=v["/model/jitter_px"],
            blend=v["/model/blend"], source=source_args)
        self._frame_index += 1
        return args

    def render(self, args: ModelArgs) -> torch.Tensor:
        """(1, 3, H, W) in 0..1; updates the kept frame (see the class docstring)."""
        assert isinstance(args, DreamArgs), f"DeepDreamGenerator.render needs DreamArgs, got {type(args).__name__}"
        src = None
        if self.inner is not None:
            src = self.inner.render(args.source)                                           # (1, 3, H, W)
        # The worker renders in inference mode; the ascent needs autograd, so leave it here. clone():
        # tensors made in inference mode cannot enter autograd.
        with torch.inference_mode(False), torch.enable_grad():
            src = src.detach().clone().to(self.device, torch.float32) if src is not None else None
            view = (args.t_s, args.zoom_log, args.angle_rad, args.shift)
            fed_back = 1.0                  # share of the frame that came from the feedback (to keep levelled)
            if self._state is None or self._state_view is None:
                x = src if src is not None else self._noise.to(self.device)
                dt_s = 0.0
            else:
                t0, z0, a0, s0 = self._state_view
                dt_s = max(args.t_s - t0, 0.0)
                x = dream.warp(self._state, math.exp(args.zoom_log - z0), args.angle_rad - a0,
                               (args.shift[0] - s0[0], args.shift[1] - s0[1]))
                if src is not None:
                    alpha = 1.0 - (1.0 - min(max(args.blend, 0.0), 1.0)) ** (dt_s * REFERENCE_FPS)
                    x = torch.lerp(x, src, alpha)
                    fed_back = 1.0 - alpha
            octave = args.frame_index % max(args.octaves, 1)
            scale = args.octave_scale ** -(max(args.octaves, 1) - 1 - octave)     # coarsest first, finest last
            scale = max(scale, self.backbone.min_px / min(self.width_px, self.height_px))
            offsets = dream.jitter_offsets(self.seed, args.frame_index, args.steps, args.jitter_px)
            x = self._ascent(args.layer)(x, steps=args.steps, step=args.step, scale=scale, offsets=offsets,
                                         channel=args.channel)
            x = dream.balance(x, fed_back * (1.0 - math.exp(-dt_s / BALANCE_S)))
            self._state = x.detach()
            self._state_view = view
        return assert_image(self._state.clone(), self.width_px, self.height_px)
