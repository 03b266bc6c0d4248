"""The "stylegan" generator: a StyleGAN2/3 checkpoint (or a small random network) walked by the music."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vj.audio.features import Features
from vj.models.backends import BackendError, check_choice, compile_forward, default_backend
from vj.models.base import Generator, ModelArgs, Value, assert_image, output_size_px, resolve_device, read_params
from vj.models.shared import SHARED, digest
from vj.models.stylegan import sg2
from vj.models.stylegan.directions import DEFAULT_COUNT, DEFAULT_SAMPLES, Directions, build_directions
from vj.models.stylegan.load import LoadedGenerator, load_generator
from vj.models.walk import LatentWalk, _impulse_decay, walk_params
from vj.params import Param

log = logging.getLogger(__name__)

# The network used when no checkpoint is given: StyleGAN2 to 256 px with tapered channels
# (64 up to 64 px, then 32, 16), random weights from `seed`. It draws abstract colour fields,
# not faces: it is there so scenes and tests run without a multi-hundred-MB download.
RANDOM_NET = dict(z_dim=64, c_dim=0, w_dim=64, img_resolution=256, img_channels=3,
                  mapping_kwargs=dict(num_layers=4),
                  synthesis_kwargs=dict(channel_base=4096, channel_max=64, conv_clamp=256))
RANDOM_NOISE_STRENGTH = 0.1           # learned noise strengths start at 0; give the random net some grain
W_AVG_SAMPLES = 1024                  # mapped latents averaged for the random net's truncation centre
BEND_RESOLUTIONS = (16, 32)           # blocks whose features get bend params unless `bend_layers` says otherwise
# (StyleGAN3: the last layer sampled at each of these rates.)
BEND_KEYS = ("scale", "rotate", "tx", "ty")
BEND_IDENTITY = (1.0, 0.0, 0.0, 0.0)  # scale, rotate_deg, tx, ty that leave the features as they are
CHROMA_TEMPERATURE = 0.1              # softmax temperature of chroma (0..1) -> class weights: one strong bin wins


@dataclass(frozen=True)
class StyleGANArgs(ModelArgs):
    """One StyleGAN frame: the latent plus truncation, W pulse, noise strength and class."""

    psi: float = 0.7                  # truncation: 0 = the average image, 1 = untruncated
    pulse: float = 0.0                # W pushed away from the average by this fraction (onset/beat envelope)
    noise: float = 1.0                # multiplier of the learned per-layer noise strengths (StyleGAN2)
    class_idx: int = 0                # conditional models: which class (one-hot c)
    class_vector: tuple[float, ...] | None = None   # conditional models: the (c_dim,) c, replacing class_idx's one-hot
    directions: tuple[float, ...] = ()  # per W direction: how many standard deviations to push along it
    layer_noise: tuple[float, ...] = ()  # StyleGAN2: per block resolution, multiplier of `noise` (1 = as global)
    bend: tuple[tuple[float, float, float, float], ...] = ()  # per bent block: scale, rotate_deg, tx, ty


def stylegan_params(c_dim: int, noise_res: Sequence[int] = (), bend_names: Sequence[str] = ()) -> list[Param]:
    """The generator's params; `noise_res`: block resolutions with their own noise params; `bend_names`: the
    bent blocks or layers as their params name them ("16": StyleGAN2's 16 px block, "L3": StyleGAN3's layer 3)."""
    params = walk_params(speed=0.1) + [
        Param("/model/psi", 0.7, 0.0, 1.5, smoothing_s=0.3,
              description="truncation: 0 = the average image, 1 = the full variety (less tidy)"),
        Param("/model/noise", 1.0, 0.0, 3.0, smoothing_s=0.2,
              description="strength of the per-layer noise (fine grain: hair, texture); StyleGAN2 only"),
        Param("/model/pulse_onset", 0.4, 0.0, 2.0,
              description="W-space pulse each onset gives: features more pronounced for a moment"),
        Param("/model/pulse_beat", 0.0, 0.0, 2.0, description="W-space pulse each beat gives"),
        Param("/model/pulse_attack_s", 0.02, 0.001, 1.0, unit="s", description="rise time of a pulse"),
        Param("/model/pulse_release_s", 0.35, 0.01, 4.0, unit="s", description="decay time of a pulse"),
    ]
    if c_dim > 0:
        params.append(Param("/model/class", 0, 0, c_dim - 1, kind="int",
                            description="class of a conditional model"))
        params.append(Param("/model/chroma_class", 0.0, 0.0, 1.0, smoothing_s=0.3,
                            description="blend the class towards the notes playing (pitch class k -> class k mod "
                                        "classes)"))
    for res in noise_res:
        params.append(Param(f"/model/noise/{res}", 1.0, 0.0, 3.0, smoothing_s=0.2,
                            description=f"noise of the {res} px block, times /model/noise"))
    for name in bend_names:
        what = f"layer {name}" if name.startswith("L") else f"the {name} px block"
        params += [
            Param(f"/model/bend/{name}/scale", 1.0, 0.1, 4.0, smoothing_s=0.1,
                  description=f"zoom of {what}'s features (network bending)"),
            Param(f"/model/bend/{name}/rotate", 0.0, -180.0, 180.0, unit="deg", smoothing_s=0.1,
                  description=f"rotation of {what}'s features"),
            Param(f"/model/bend/{name}/tx", 0.0, -1.0, 1.0, smoothing_s=0.1,
                  description=f"horizontal shift of {what}'s features (1 = half the width)"),
            Param(f"/model/bend/{name}/ty", 0.0, -1.0, 1.0, smoothing_s=0.1,
                  description=f"vertical shift of {what}'s features (1 = half the height)"),
        ]
    return params


def chroma_classes(chroma: np.ndarray, c_dim: int) -> np.ndarray:
    """(c_dim,) weights summing to 1: a softmax of the 12 chroma bins, pitch class k folded onto class k mod c_dim."""
    chroma = np.asarray(chroma, np.float64).reshape(-1)
    e = np.exp((chroma - chroma.max()) / CHROMA_TEMPERATURE)
    weights = np.zeros(c_dim)
    np.add.at(weights, np.arange(chroma.size) % c_dim, e / e.sum())
    return weights


def random_generator(seed: int = 0, **overrides) -> sg2.Generator:
    """The small StyleGAN2 with random weights used when no checkpoint is given (deterministic in `seed`)."""
    kwargs = {**RANDOM_NET, **overrides}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G = sg2.Generator(**kwargs).eval().requires_grad_(False)
        with torch.no_grad():
            for name, p in G.named_parameters():
                if name.endswith("noise_strength"):
                    p.fill_(RANDOM_NOISE_STRENGTH)
            z = torch.randn(W_AVG_SAMPLES, G.z_dim)
            c = torch.zeros(W_AVG_SAMPLES, G.c_dim) if G.c_dim else None
            G.mapping.w_avg.copy_(G.mapping(z, c)[:, 0].mean(0))
    return G


class StyleGANGenerator(Generator):
    """A StyleGAN network as a vj Generator.

    advance (main thread): the latent walk over seeded keyframes (vj.models.walk), speed rising with
    loudness, bass push and onset kicks; plus a pulse envelope (attack/release, exact for any dt) fed
    by onsets and beats. render (worker): z -> mapping -> truncation -> pulse in W
    (w + pulse * (w - w_avg)) -> synthesis with constant noise -> (1, 3, H, W) in 0..1, centre-cropped
    to the output aspect and resized when the output size is not the network's.
    """

    name = "stylegan"

    def __init__(self, width_px: int = 256, height_px: int = 144, checkpoint: str | None = None, seed: int = 0,
                 network: str = "G_ema", device: str = "auto", trace: bool = True, backend: str = "auto",
                 precision: str = "fp32", directions: str | None = None, direction_count: int = DEFAULT_COUNT,
                 direction_samples: int = DEFAULT_SAMPLES, direction_names: Sequence[str] | None = None,
                 direction_layers: Sequence[int] | None = None, bend_layers: Sequence[int] | None = None,
                 keyframes: Sequence[int] | str | None = None, loop: bool = True):
        """`backend` and `precision`: see vj.models.backends ("auto": trace on the CPU, compile on CUDA;
        `trace=False` is the old spelling of backend "eager").

        `keyframes`: the faces to walk through, as NVlabs seeds ([12, 85, 3]: z = RandomState(seed).randn,
        so keyframe k shows exactly what `vj model sample --seed` and NVlabs' gen_images.py show for that
        seed) or a .npy file of (K, z_dim) latents. `loop` (default true) closes the path: after the last
        keyframe the walk curves smoothly back into the first; false stops on the last one. Without
        keyframes the walk goes through an endless seeded sequence picked by /model/seed.

        `directions`: "pca" (the `direction_count` top principal components of `direction_samples` mapped
        W, GANSpace-style) or a (K, w_dim) .npy file; each becomes /model/dir/<i> (or <name> from
        `direction_names`), in standard deviations of W, applied after truncation to all ws or to
        `direction_layers` = [start, end). Audio pushes them with ordinary routes, e.g. in a scene:
        `[[routes]] source = "bass", target = "/model/dir/0", amount = 3.0` ("bass makes it wilder").
        `bend_layers`: StyleGAN2 block resolutions with /model/bend/<res>/... params (default 16 and 32 px);
        for StyleGAN3, layer indices (3 or "L3") with /model/bend/L<i>/... params (default: the last layer
        sampled at 16 and the last at 32, the coarse structure, as the default StyleGAN2 blocks).
        """
        self.width_px, self.height_px = output_size_px(width_px, height_px)
        self.seed = int(seed)
        self.device = resolve_device(device)
        if backend == "auto":
            backend = default_backend(self.device) if trace else "eager"
        check_choice(backend, precision, self.device)
        self.backend, self.precision = backend, precision
        if checkpoint:
            loaded = load_generator(Path(checkpoint).expanduser(), network=network)
            log.info("stylegan: %s (%s, %d px, z %d, c %d)", loaded.source, loaded.family,
                     loaded.G.img_resolution, loaded.G.z_dim, loaded.G.c_dim)
        else:
            loaded = LoadedGenerator(G=random_generator(seed), family="stylegan2", kwargs=dict(RANDOM_NET),
                                     source="random")
            log.info("stylegan: no checkpoint given, using a small randomly initialised StyleGAN2 "
                     "(%d px, seed %d): abstract patterns, not a trained model", RANDOM_NET["img_resolution"], seed)
        self.loaded = loaded
        # Scenes on the same network share its latent space: a preset morph slerps between their latents
        # (vj.models.base.Generator.latent_space). The random network's weights depend on the seed.
        self.latent_key = ("stylegan", str(Path(checkpoint).expanduser().resolve()), network) if checkpoint \
            else ("stylegan-random", int(seed))
        self.G = loaded.G.to(self.device).eval().requires_grad_(False)
        self.z_dim, self.c_dim = int(self.G.z_dim), int(self.G.c_dim)
        self.img_resolution, self.img_channels = int(self.G.img_resolution), int(self.G.img_channels)
        if self.z_dim < 1:
            raise ValueError(f"{loaded.source}: a generator without a latent (z_dim 0) cannot be walked")
        self.directions: Directions | None = None
        if directions:
            self.directions = build_directions(self.G, str(directions), count=direction_count,
                                               samples=direction_samples, seed=self.seed, names=direction_names,
                                               layers=direction_layers)
        # Per-block noise needs sg2's blocks (StyleGAN3 has no noise). Bending takes sg2's blocks by resolution
        # and sg3's layers by index (its layers are not resolution blocks).
        is_sg2 = isinstance(self.G.synthesis, sg2.SynthesisNetwork)
        self.noise_res = tuple(self.G.synthesis.block_resolutions) if is_sg2 else ()
        self.bend_res = _bend_targets(self.G.synthesis, bend_layers)
        self.bend_names = tuple(str(r) if is_sg2 else f"L{r}" for r in self.bend_res)
        self._net = _Forward(self.G, self.directions, self.noise_res, self.bend_res)
        # What _net computes: its numbers (G's and the directions'), its architecture and how it runs.
        self._compile_key = ("stylegan", digest(self._net), loaded.family, repr(loaded.kwargs), self.noise_res,
                             self.bend_res, str(self.device), backend, precision)
        self._params = stylegan_params(self.c_dim, self.noise_res, self.bend_names)
        if self.directions is not None:
            self._params += self.directions.params()
        self.walk = LatentWalk(self.z_dim, base_seed=self.seed, keyframes=_keyframe_latents(keyframes, self.z_dim),
                               loop=_flag(loop, "loop"))
        self._compiled_fn = None
        self.reset()

    def reset(self) -> None:
        self.walk.reset()
        self._pulse_store = 0.0       # u: impulses not yet risen into the envelope
        self._pulse_env = 0.0         # e: the envelope that follows u
        self._last_onset_t_s = math.nan
        self._last_beat_t_s = math.nan

    def advance(self, frame: Mapping[str, Value], features: Features, dt_s: float) -> StyleGANArgs:
        v = read_params(frame, self._params)
        dt_s = max(float(dt_s), 0.0)
        z = self.walk.advance(v, features, dt_s)
        # A Features snapshot seen on several frames counts once (same t_s).
        if features.onset and features.t_s != self._last_onset_t_s:
            self._pulse_store += v["/model/pulse_onset"]
        if features.beat and features.t_s != self._last_beat_t_s:
            self._pulse_store += v["/model/pulse_beat"]
        self._last_onset_t_s = features.t_s if features.onset else math.nan
        self._last_beat_t_s = features.t_s if features.beat else math.nan
        a, r, g = _impulse_decay(dt_s, v["/model/pulse_attack_s"], v["/model/pulse_release_s"])
        self._pulse_env = a * self._pulse_env + g * self._pulse_store
        self._pulse_store *= r
        class_idx = int(v.get("/model/class", 0))
        class_vector = None
        mix = float(v.get("/model/chroma_class", 0.0))
        if self.c_dim > 0 and mix > 0.0 and float(np.max(features.chroma)) > 1e-6:   # silence keeps the class
            c = (1.0 - mix) * np.eye(self.c_dim)[min(max(class_idx, 0), self.c_dim - 1)]
            class_vector = tuple(float(x) for x in c + mix * chroma_classes(features.chroma, self.c_dim))
        dirs = tuple(float(v[p.path]) for p in self.directions.params()) if self.directions is not None else ()
        return StyleGANArgs(z=tuple(float(x) for x in z), walk_pos=self.walk.pos, psi=v["/model/psi"],
                            pulse=float(self._pulse_env), noise=v["/model/noise"], class_idx=class_idx,
                            class_vector=class_vector, directions=dirs,
                            layer_noise=tuple(float(v[f"/model/noise/{r}"]) for r in self.noise_res),
                            bend=tuple(tuple(float(v[f"/model/bend/{name}/{k}"]) for k in BEND_KEYS)
                                       for name in self.bend_names))

    def render(self, args: ModelArgs) -> torch.Tensor:
        assert isinstance(args, StyleGANArgs), f"StyleGANGenerator.render needs StyleGANArgs, got {type(args).__name__}"
        assert len(args.z) == self.z_dim, f"latent has {len(args.z)} dims, expected {self.z_dim}"
        inputs = self._inputs(args)
        with torch.inference_mode():
            img = self._compiled()(*inputs)                                                        # (1, C, R, R)
            img = self._to_output(img)                                                    # (1, 3, H, W)
        return assert_image(img, self.width_px, self.height_px)     # on the model's device: see FRAME_PATHS

    def synthesize(self, args: StyleGANArgs) -> torch.Tensor:
        """The raw network output for args, eager: (1, img_channels, R, R), about -1..1."""
        with torch.inference_mode():
            return self._forward(*self._inputs(args))

    def _inputs(self, args: StyleGANArgs) -> tuple[torch.Tensor, ...]:
        """(1, z_dim) z, (1, c_dim) c (one-hot or args.class_vector), psi, pulse, noise as 0-d tensors, then
        (K,) direction amounts, (blocks,) per-block noise, (bent blocks, 4) bends; the last three are
        (1,) zeros when the network has none (the module ignores them) and take defaults when args lack them."""
        dev = self.device
        z = torch.tensor(args.z, dtype=torch.float32, device=dev).unsqueeze(0)
        c = torch.zeros(1, self.c_dim, device=dev)
        if self.c_dim > 0 and args.class_vector is not None:
            assert len(args.class_vector) == self.c_dim, \
                f"class vector has {len(args.class_vector)} dims, expected {self.c_dim}"
            c = torch.tensor(args.class_vector, dtype=torch.float32, device=dev).unsqueeze(0)
        elif self.c_dim > 0:
            c[0, min(max(int(args.class_idx), 0), self.c_dim - 1)] = 1.0
        scalars = [torch.tensor(float(v), device=dev) for v in (args.psi, args.pulse, args.noise)]
        k = len(self.directions.names) if self.directions is not None else 0
        dirs = args.directions or (0.0,) * k
        layer_noise = args.layer_noise or (1.0,) * len(self.noise_res)
        bend = args.bend or (BEND_IDENTITY,) * len(self.bend_res)
        assert len(dirs) == k and len(layer_noise) == len(self.noise_res) and len(bend) == len(self.bend_res), \
            "directions, layer_noise or bend do not match the generator's"
        extra = [torch.tensor(dirs or (0.0,), dtype=torch.float32, device=dev),
                 torch.tensor(layer_noise or (1.0,), dtype=torch.float32, device=dev),
                 torch.tensor(bend or (BEND_IDENTITY,), dtype=torch.float32, device=dev).reshape(-1, 4)]
        return (z, c, *scalars, *extra)

    def _forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self._net(*inputs)

    def _compiled(self):
        """The forward pass through the chosen backend, built on first use (on the loader thread when the
        engine switches models live, so a trace or a compile never stalls the show), once for the process
        for each network (vj.models.shared: torch never frees a trace)."""
        if self._compiled_fn is None:
            self._compiled_fn = SHARED.get(self._compile_key, self._compile)
        return self._compiled_fn

    def _compile(self):
        example = self._inputs(StyleGANArgs(z=(0.0,) * self.z_dim))
        try:
            return compile_forward(self._net, example, self.backend, self.precision)
        except BackendError:
            raise
        except Exception as exc:                        # noqa: BLE001 - any tracing failure: run eager instead
            log.warning("stylegan: %s backend failed (%s: %s); rendering eagerly", self.backend,
                        type(exc).__name__, exc)
            return self._net

    def _to_output(self, img: torch.Tensor) -> torch.Tensor:
        """(1, C, R, R) about -1..1 -> (1, 3, H, W) in 0..1: centre crop to the output aspect, then resize."""
        if img.shape[1] == 1:
            img = img.repeat(1, 3, 1, 1)
        img = img[:, :3]
        res = img.shape[-1]
        aspect = self.width_px / self.height_px
        if aspect >= 1.0:
            crop_w, crop_h = res, max(1, round(res / aspect))
        else:
            crop_w, crop_h = max(1, round(res * aspect)), res
        y0, x0 = (res - crop_h) // 2, (res - crop_w) // 2
        img = img[:, :, y0:y0 + crop_h, x0:x0 + crop_w]
        if (crop_h, crop_w) != (self.height_px, self.width_px):
            img = F.interpolate(img, size=(self.height_px, self.width_px), mode="bilinear", align_corners=False,
                                antialias=True)
        return ((img + 1.0) * 0.5).clamp(0.0, 1.0).to(torch.float32)


class _Forward(torch.nn.Module):
    """z, c, psi, pulse, noise [, dirs, layer_noise, bend] -> the raw image: mapping, truncation, pulse and
    directions in W, synthesis with constant noise (per-block strengths) and bent block features.

    A module of its own (owning G) so every backend can trace, compile, export or cast it: everything that
    changes per frame is an input tensor; what the module was built with (directions, which blocks) is fixed.
    The last three inputs are optional so the plain five-input call still works.
    """

    def __init__(self, G: torch.nn.Module, directions: Directions | None = None, noise_res: Sequence[int] = (),
                 bend_res: Sequence[int] = ()):
        super().__init__()
        self.G = G
        self.has_w_avg = hasattr(G.mapping, "w_avg")
        self.c_dim = int(G.c_dim)
        self.noise_res, self.bend_res = tuple(noise_res), tuple(bend_res)
        self.has_dirs = directions is not None
        if directions is not None:
            self.register_buffer("dir_basis", torch.from_numpy(directions.basis()))               # (K, w_dim)
            self.register_buffer("dir_mask", torch.from_numpy(directions.layer_mask(int(G.num_ws))))  # (num_ws, 1)

    def forward(self, z: torch.Tensor, c: torch.Tensor, psi: torch.Tensor, pulse: torch.Tensor,
                noise: torch.Tensor, dirs: torch.Tensor | None = None, layer_noise: torch.Tensor | None = None,
                bend: torch.Tensor | None = None) -> torch.Tensor:
        ws = self.G.mapping(z, c if self.c_dim > 0 else None)                               # (1, num_ws, w_dim)
        if self.has_w_avg:
            w_avg = self.G.mapping.w_avg
            ws = w_avg.lerp(ws, psi)
            ws = ws + pulse * (ws - w_avg)
        if self.has_dirs and dirs is not None:
            ws = ws + self.dir_mask * (dirs @ self.dir_basis)           # all amounts 0: adds exact zeros
        kwargs = {}
        if self.noise_res and layer_noise is not None:
            kwargs["noise_scales"] = {r: noise * layer_noise[i] for i, r in enumerate(self.noise_res)}
        if self.bend_res and bend is not None:
            kwargs["bends"] = {r: _Bend(bend[i]) for i, r in enumerate(self.bend_res)}
        return self.G.synthesis(ws, noise_mode="const", noise_scale=noise, **kwargs)


class _Bend:
    """Network bending of one block's features (N, C, H, W): zoom by scale, rotate, translate (tx, ty in
    half-widths) through an affine grid_sample. At scale 1, rotation 0, shift 0 the features come back
    unchanged bit for bit (torch.where, so the choice is in the graph, not frozen into a trace)."""

    def __init__(self, p: torch.Tensor):
        self.p = p                                                       # (4,) scale, rotate_deg, tx, ty

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        scale, rot, tx, ty = self.p.unbind(0)
        a = rot * (math.pi / 180.0)
        inv = 1.0 / scale                                                # output samples the input: inverse map
        cos, sin = torch.cos(a) * inv, torch.sin(a) * inv
        theta = torch.stack([torch.stack([cos, -sin, -tx]), torch.stack([sin, cos, -ty])]).unsqueeze(0)
        grid = F.affine_grid(theta.expand(x.shape[0], 2, 3).to(x.dtype), list(x.shape), align_corners=False)
        bent = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        identity = (self.p == torch.tensor(BEND_IDENTITY, dtype=self.p.dtype, device=self.p.device)).all()
        return torch.where(identity, x, bent)


def _bend_targets(synthesis: torch.nn.Module, bend_layers: Sequence[int | str] | None) -> tuple[int, ...]:
    """Sorted keys of the bent blocks (StyleGAN2: resolutions) or layers (StyleGAN3: indices, ToRGB excluded)."""
    if isinstance(synthesis, sg2.SynthesisNetwork):
        blocks = tuple(synthesis.block_resolutions)
        wanted = [r for r in BEND_RESOLUTIONS if r in blocks] if bend_layers is None else bend_layers
        bad = [r for r in wanted if not str(r).isdigit() or int(r) not in blocks]
        if bad:
            raise ValueError(f"bend_layers: {bad} not among the network's blocks {list(blocks)}")
        return tuple(sorted({int(r) for r in wanted}))
    rates = [int(getattr(synthesis, name).out_sampling_rate) for name in synthesis.layer_names[:-1]]
    if bend_layers is None:
        wanted = [max(i for i, r in enumerate(rates) if r == rate) for rate in BEND_RESOLUTIONS if rate in rates]
    else:
        wanted = [_layer_index(r) for r in bend_layers]
    bad = [r for r in wanted if not isinstance(r, int) or not 0 <= r < len(rates)]
    if bad:
        raise ValueError(f"bend_layers: {bad} not among the network's layers 0..{len(rates) - 1} "
                         f"(StyleGAN3 layers by index: {', '.join(synthesis.layer_names[:-1])})")
    return tuple(sorted(set(wanted)))


def _layer_index(key: int | str) -> int | str:
    """A StyleGAN3 layer as a preset names it (3, "3", "L3") -> 3; anything else comes back as it was."""
    text = str(key)
    text = text[1:] if text[:1] in "lL" else text
    return int(text) if text.isdigit() else key


def _keyframe_latents(keyframes: Sequence[int] | str | None, z_dim: int) -> np.ndarray | None:
    """(K, z_dim) float64 latents for the `keyframes` setting: NVlabs seeds, or a .npy of latents."""
    if keyframes is None:
        return None
    if isinstance(keyframes, (str, Path)):
        path = Path(keyframes).expanduser()
        try:
            z = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ValueError(f"keyframes {str(path)!r}: not a readable .npy file of latents ({exc})") from None
        z = np.asarray(z, dtype=np.float64)
        if z.ndim == 1:
            z = z[None]                                     # one latent
        elif z.ndim == 3 and z.shape[1] == 1:
            z = z[:, 0]                                     # (K, 1, z_dim), as seed_latent stacks
        if z.ndim != 2 or z.shape[0] < 1 or z.shape[1] != z_dim:
            raise ValueError(f"keyframes {str(path)!r}: expected (K, {z_dim}) latents for this network, "
                             f"got shape {tuple(np.shape(z))}")
        return z
    if (not isinstance(keyframes, (list, tuple)) or not keyframes
            or not all(isinstance(k, int) and not isinstance(k, bool) and 0 <= k < 2 ** 32 for k in keyframes)):
        raise ValueError(f"keyframes must be a list of seeds (integers 0..2^32-1) or a .npy file of latents, "
                         f"got {keyframes!r}")
    return np.concatenate([seed_latent(k, z_dim) for k in keyframes])


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value


def seed_latent(seed: int, z_dim: int) -> np.ndarray:
    """(1, z_dim) float64: NVlabs' z for a seed, numpy RandomState(seed).randn(1, z_dim)."""
    return np.random.RandomState(seed).randn(1, z_dim)
