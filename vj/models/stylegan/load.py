"""Loads StyleGAN checkpoints without running pickled code: NVlabs network pickles and rosinality `.pt` files.

NVlabs pickles (stylegan2-ada-pytorch, stylegan3) store each network as a
`torch_utils.persistence` object: `_reconstruct_persistent_obj(meta)` where `meta` carries the
whole source of the defining module, which NVlabs' loader `exec`s. We never do: a restricted
unpickler resolves only the names on an explicit allow-list, maps the persistence hook to a stub
that keeps the class name, constructor kwargs and tensors, and everything else raises
`UnsafePickleError` naming the module and class. The stubs are then rebuilt as our own
`sg2`/`sg3` Generator from the kwargs, and the tensors copied in by name (every one must match).
Rosinality checkpoints are torch.save zips, read with `torch.load(weights_only=True)` and their
tensors renamed (and equivalently rescaled) into the NVlabs layout.
"""

from __future__ import annotations

import argparse
import codecs
import collections
import io
import logging
import math
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vj.models.stylegan import sg2, sg3

log = logging.getLogger(__name__)

_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C     # first object of a pre-1.6 torch.save file
# Constructor kwargs some NVlabs forks add that only matter for training; dropped with a log line.
_TRAINING_ONLY_KWARGS = {"freeze_layers", "freeze_embed", "epochs"}


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle references a global outside the allow-list (it could run code)."""


class CheckpointError(ValueError):
    """A file that is not a loadable StyleGAN checkpoint, or does not fit our networks; one line."""


# ---------------------------------------------------------------------------------------------
# Stand-ins for the pickled NVlabs objects.

class EasyDict(dict):
    """dnnlib.EasyDict: a dict with attribute access (only the data; no methods run on load)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass
class PersistentStub:
    """What `_reconstruct_persistent_obj(meta)` becomes here: the class name and pickled `__dict__`, no code."""

    class_name: str
    state: dict[str, Any]
    version: int | None = None
    source_chars: int = 0             # length of the embedded module source (kept only for messages)

    @property
    def init_kwargs(self) -> dict[str, Any]:
        return _plain(self.state.get("_init_kwargs") or {})

    @property
    def init_args(self) -> tuple:
        return tuple(self.state.get("_init_args") or ())

    def child(self, name: str) -> "PersistentStub | None":
        mods = self.state.get("_modules") or {}
        sub = mods.get(name)
        return sub if isinstance(sub, PersistentStub) else None

    def tensors(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Parameters and persistent buffers of this module and its children, by state_dict name."""
        out: dict[str, torch.Tensor] = {}
        skip = set(self.state.get("_non_persistent_buffers_set") or ())
        for group in ("_parameters", "_buffers"):
            for name, t in (self.state.get(group) or {}).items():
                if isinstance(t, torch.Tensor) and name not in skip:
                    out[prefix + name] = t.detach()
        for name, sub in (self.state.get("_modules") or {}).items():
            if isinstance(sub, PersistentStub):
                out.update(sub.tensors(f"{prefix}{name}."))
            elif sub is not None:
                raise CheckpointError(f"submodule {prefix}{name} is a {type(sub).__name__}, not a persistent module")
        return out


@dataclass
class _TFNetworkStub:
    """dnnlib.tflib.network.Network from a TensorFlow-era StyleGAN pickle: recognised, not supported."""

    state: dict = field(default_factory=dict)

    def __setstate__(self, state):
        self.state = state if isinstance(state, dict) else {}


def _reconstruct_persistent_obj(meta: Any) -> PersistentStub:
    """Our replacement for torch_utils.persistence._reconstruct_persistent_obj: records, never executes."""
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("class_name"), str):
        raise CheckpointError("persistent object without the expected {type: 'class', class_name, state} metadata")
    state = meta.get("state")
    if not isinstance(state, dict):
        raise CheckpointError(f"persistent {meta['class_name']} has no state dict")
    src = meta.get("module_src")
    return PersistentStub(class_name=meta["class_name"], state=dict(state), version=meta.get("version"),
                          source_chars=len(src) if isinstance(src, str) else 0)


def _load_storage_from_bytes(b: bytes):
    """torch.storage._load_from_bytes, but through torch's weights-only unpickler."""
    if not isinstance(b, (bytes, bytearray)):
        raise CheckpointError("tensor storage is not a byte string")
    return torch.load(io.BytesIO(bytes(b)), map_location="cpu", weights_only=True)


def _numpy_attr(name: str):
    core = getattr(np, "_core", None) or np.core
    return getattr(core.multiarray, name)


def _allowed_globals() -> dict[tuple[str, str], Any]:
    allowed: dict[tuple[str, str], Any] = {
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
        ("dnnlib.util", "EasyDict"): EasyDict,
        ("dnnlib", "EasyDict"): EasyDict,
        ("dnnlib.tflib.network", "Network"): _TFNetworkStub,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "bytearray"): bytearray,
        ("_codecs", "encode"): codecs.encode,
        ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
        ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
        ("torch", "Size"): torch.Size,
        ("torch", "device"): torch.device,
        ("torch", "Tensor"): torch.Tensor,
        ("torch.nn.parameter", "Parameter"): torch.nn.Parameter,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }
    for opt in ("_rebuild_parameter_with_state",):
        if hasattr(torch._utils, opt):
            allowed[("torch._utils", opt)] = getattr(torch._utils, opt)
    if hasattr(torch._tensor, "_rebuild_from_type_v2"):
        allowed[("torch._tensor", "_rebuild_from_type_v2")] = torch._tensor._rebuild_from_type_v2
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "_reconstruct")] = _numpy_attr("_reconstruct")
        allowed[(mod, "scalar")] = _numpy_attr("scalar")
    for dt in ("float16", "float32", "float64", "bfloat16", "int64", "int32", "uint8", "bool"):
        allowed[("torch", dt)] = getattr(torch, dt)
    for st in ("FloatStorage", "HalfStorage", "DoubleStorage", "LongStorage", "IntStorage", "ByteStorage",
               "BoolStorage", "BFloat16Storage"):
        if hasattr(torch, st):
            allowed[("torch", st)] = getattr(torch, st)
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """pickle.Unpickler that resolves only allow-listed globals; anything else is refused, unresolved."""

    _allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        target = self._allowed.get((module, name))
        if target is None:
            raise UnsafePickleError(f"refusing to load {module}.{name}: not on the allow-list for StyleGAN pickles "
                                    "(it could run code)")
        return target

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("refusing a persistent id in a plain pickle")


def _plain(x: Any) -> Any:
    """EasyDict/OrderedDict/numpy scalars -> plain dicts and Python numbers, recursively."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_plain(v) for v in x)
    if isinstance(x, np.generic):
        return x.item()
    return x


# ---------------------------------------------------------------------------------------------
# Entry points.

@dataclass
class LoadedGenerator:
    """A generator rebuilt from a checkpoint: our module (eval mode, no grad) and what it came from."""

    G: torch.nn.Module                # sg2.Generator or sg3.Generator
    family: str                       # "stylegan2", "stylegan3-t", "stylegan3-r" or "rosinality"
    kwargs: dict[str, Any]            # the constructor kwargs used
    source: str                       # path and network name
    notes: tuple[str, ...] = ()       # anything estimated rather than loaded


def load_generator(path: str | Path, network: str = "G_ema") -> LoadedGenerator:
    """Load an NVlabs network pickle (`network` inside it) or a rosinality `.pt` checkpoint (its `g_ema`).

    Raises CheckpointError (a ValueError) with the path and what was found for a file of the wrong
    kind, and with the module.class for a pickle that references anything outside the allow-list.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    with open(path, "rb") as f:
        head = f.read(8)
    if zipfile.is_zipfile(path):
        return _load_rosinality(path, _torch_load(path))
    if not head.startswith(b"\x80"):
        raise CheckpointError(f"{path}: not a StyleGAN checkpoint: found {_describe_head(head)}, "
                              "expected a network pickle (.pkl) or a torch checkpoint (.pt)")
    try:
        with open(path, "rb") as f:
            data = RestrictedUnpickler(f).load()
    except UnsafePickleError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, TypeError, ValueError,
            RuntimeError) as exc:
        raise CheckpointError(f"{path}: unreadable pickle: {type(exc).__name__}: {exc}") from None
    if isinstance(data, int) and data == _TORCH_LEGACY_MAGIC:
        return _load_rosinality(path, _torch_load(path))
    return _load_nvlabs(path, data, network)


def _torch_load(path: Path) -> Any:
    """torch.load with the weights-only unpickler (argparse.Namespace allowed: rosinality saves its args)."""
    try:
        safe = getattr(torch.serialization, "safe_globals", None)
        if safe is not None:
            with safe([argparse.Namespace]):
                return torch.load(path, map_location="cpu", weights_only=True)
        torch.serialization.add_safe_globals([argparse.Namespace])
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, zipfile.BadZipFile) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a loadable torch checkpoint: {first}") from None


def _describe_head(head: bytes) -> str:
    if not head:
        return "an empty file"
    if head.startswith(b"\x89PNG"):
        return "a PNG image"
    if head[:2] == b"\xff\xd8":
        return "a JPEG image"
    if head.startswith(b"\x93NUMPY"):
        return "a numpy .npy array"
    if all(32 <= c < 127 or c in (9, 10, 13) for c in head):
        return f"text starting {head.decode('ascii')!r}"
    return f"binary data starting {head.hex()}"


def _describe(data: Any) -> str:
    if isinstance(data, dict):
        keys = ", ".join(repr(k) for k in list(data)[:8])
        return f"a dict with keys [{keys}{', ...' if len(data) > 8 else ''}]"
    if isinstance(data, PersistentStub):
        return f"a single {data.class_name} object"
    return f"a {type(data).__name__}"


# ---------------------------------------------------------------------------------------------
# NVlabs pickles.

def _load_nvlabs(path: Path, data: Any, network: str) -> LoadedGenerator:
    if isinstance(data, tuple) and data and all(isinstance(d, _TFNetworkStub) for d in data):
        raise CheckpointError(f"{path}: a TensorFlow-era StyleGAN pickle; convert it first with NVlabs "
                              "stylegan2-ada-pytorch `legacy.py --source ... --dest ...`")
    if not isinstance(data, dict) or network not in data:
        raise CheckpointError(f"{path}: not an NVlabs network pickle with {network!r}: found {_describe(data)}")
    stub = data[network]
    if not isinstance(stub, PersistentStub) or stub.class_name != "Generator":
        raise CheckpointError(f"{path}: {network!r} is {_describe(stub)}, expected a Generator")
    G, family, kwargs = build_from_stub(stub, f"{path}:{network}")
    return LoadedGenerator(G=G, family=family, kwargs=kwargs, source=f"{path}:{network}")


def build_from_stub(stub: PersistentStub, where: str) -> tuple[torch.nn.Module, str, dict[str, Any]]:
    """Our Generator for an unpickled NVlabs Generator stub, with every tensor copied in by name."""
    kwargs = stub.init_kwargs
    positional = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")
    for name, value in zip(positional, stub.init_args):
        kwargs.setdefault(name, _plain(value))
    synthesis = stub.child("synthesis")
    if synthesis is None:
        raise CheckpointError(f"{where}: Generator without a synthesis network")
    sub = synthesis.state.get("_modules") or {}
    if "input" in sub:
        cls, family = sg3.Generator, "stylegan3-r" if _is_config_r(kwargs) else "stylegan3-t"
    elif "b4" in sub:
        cls, family = sg2.Generator, "stylegan2"
    else:
        raise CheckpointError(f"{where}: synthesis network with modules {sorted(sub)[:6]} is neither "
                              "StyleGAN2 (b4, b8, ...) nor StyleGAN3 (input, L0_...)")
    kwargs = _drop_training_kwargs(kwargs, where)
    try:
        G = cls(**kwargs)
    except (TypeError, ValueError, AssertionError) as exc:
        raise CheckpointError(f"{where}: cannot build a {family} generator from its settings "
                              f"{sorted(kwargs)}: {exc}") from None
    copy_tensors(G, stub.tensors(), where)
    return G.eval().requires_grad_(False), family, kwargs


def _is_config_r(kwargs: dict[str, Any]) -> bool:
    return bool(kwargs.get("use_radial_filters", False)) or kwargs.get("conv_kernel", 3) == 1


def _drop_training_kwargs(kwargs: dict[str, Any], where: str) -> dict[str, Any]:
    out = {k: v for k, v in kwargs.items() if k not in _TRAINING_ONLY_KWARGS}
    for key in ("mapping_kwargs", "synthesis_kwargs"):
        if isinstance(out.get(key), dict):
            out[key] = {k: v for k, v in out[key].items() if k not in _TRAINING_ONLY_KWARGS}
    dropped = sorted(set(kwargs) - set(out))
    if dropped:
        log.info("%s: ignoring training-only settings %s", where, dropped)
    return out


def copy_tensors(G: torch.nn.Module, tensors: dict[str, torch.Tensor], where: str) -> None:
    """Copy tensors into G by state_dict name; every name must be present on both sides with the same shape."""
    own = G.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} (e.g. {', '.join(unexpected[:3])})")
        raise CheckpointError(f"{where}: tensors do not match the network: {'; '.join(parts)}")
    for name, t in own.items():
        src = tensors[name]
        if tuple(src.shape) != tuple(t.shape):
            raise CheckpointError(f"{where}: {name} has shape {tuple(src.shape)}, the network needs {tuple(t.shape)}")
    with torch.no_grad():
        for name, t in own.items():
            t.copy_(tensors[name].to(dtype=t.dtype))


# ---------------------------------------------------------------------------------------------
# rosinality/stylegan2-pytorch checkpoints.

_ROS_CONV = re.compile(r"convs\.(\d+)\.conv\.weight")
_ROS_STYLE = re.compile(r"style\.(\d+)\.weight")
_MEAN_LATENT_SAMPLES = 4096


def _load_rosinality(path: Path, ckpt: Any) -> LoadedGenerator:
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("g_ema"), dict):
        raise CheckpointError(f"{path}: not a rosinality StyleGAN2 checkpoint (no 'g_ema' state dict): "
                              f"found {_describe(ckpt)}")
    sd = {k: v for k, v in ckpt["g_ema"].items() if isinstance(v, torch.Tensor)}
    latent_avg = ckpt.get("latent_avg")
    G, kwargs, notes = rosinality_to_nvlabs(sd, latent_avg if isinstance(latent_avg, torch.Tensor) else None,
                                            where=str(path))
    for note in notes:
        log.info("%s: %s", path, note)
    return LoadedGenerator(G=G, family="rosinality", kwargs=kwargs, source=f"{path}:g_ema", notes=tuple(notes))


def rosinality_to_nvlabs(sd: dict[str, torch.Tensor], latent_avg: torch.Tensor | None = None,
                         lr_mlp: float = 0.01, where: str = "rosinality") -> tuple[sg2.Generator, dict, list[str]]:
    """An sg2.Generator computing what rosinality's Generator computes with the same weights.

    Renames the tensors and folds rosinality's runtime weight scale 1/sqrt(fan_in) into the stored
    weight of the demodulated convs (NVlabs applies no such scale there, and demodulation makes the
    two formulas identical); ToRGB keeps its weight (both scale the styles instead).
    """
    notes: list[str] = []
    styles = sorted(int(m.group(1)) for k in sd if (m := _ROS_STYLE.fullmatch(k)))
    convs = sorted(int(m.group(1)) for k in sd if (m := _ROS_CONV.fullmatch(k)))
    if not styles or "input.input" not in sd or len(convs) % 2:
        raise CheckpointError(f"{where}: 'g_ema' does not have rosinality's Generator layout")
    n_mlp = len(styles)
    style_dim = int(sd["style.1.weight"].shape[0])
    log_size = len(convs) // 2 + 2
    size = 2 ** log_size
    ch = {4: int(sd["input.input"].shape[1])}
    for i in range(3, log_size + 1):
        ch[2 ** i] = int(sd[f"convs.{2 * (i - 3)}.conv.weight"].shape[1])
    channel_max = max(ch.values())
    below = [r * c for r, c in ch.items() if c < channel_max]
    channel_base = min(below) if below else channel_max * size
    if any(min(channel_base // r, channel_max) != c for r, c in ch.items()):
        raise CheckpointError(f"{where}: channel counts {ch} do not follow min(base / res, max)")
    kwargs = dict(z_dim=style_dim, c_dim=0, w_dim=style_dim, img_resolution=size, img_channels=3,
                  mapping_kwargs=dict(num_layers=n_mlp, lr_multiplier=lr_mlp),
                  synthesis_kwargs=dict(channel_base=channel_base, channel_max=channel_max, architecture="skip"))
    G = sg2.Generator(**kwargs)

    used: set[str] = set()

    def take(key: str) -> torch.Tensor:
        if key not in sd:
            raise CheckpointError(f"{where}: 'g_ema' has no {key}")
        used.add(key)
        return sd[key].float()

    def scale(w: torch.Tensor) -> float:                  # rosinality's 1/sqrt(in_channels * k * k)
        return 1.0 / math.sqrt(w.shape[2] * w.shape[3] * w.shape[4])

    t: dict[str, torch.Tensor] = {}
    for i in range(n_mlp):
        t[f"mapping.fc{i}.weight"] = take(f"style.{i + 1}.weight")
        t[f"mapping.fc{i}.bias"] = take(f"style.{i + 1}.bias")

    def styled(dst: str, src: str, noise_idx: int) -> None:
        w = take(f"{src}.conv.weight")                     # (1, O, I, k, k)
        t[f"{dst}.weight"] = w[0] * scale(w)
        t[f"{dst}.affine.weight"] = take(f"{src}.conv.modulation.weight")
        t[f"{dst}.affine.bias"] = take(f"{src}.conv.modulation.bias")
        t[f"{dst}.noise_strength"] = take(f"{src}.noise.weight").reshape(())
        t[f"{dst}.noise_const"] = take(f"noises.noise_{noise_idx}")[0, 0]
        t[f"{dst}.bias"] = take(f"{src}.activate.bias")
        t[f"{dst}.resample_filter"] = G.state_dict()[f"{dst}.resample_filter"]
        used.add(f"{src}.conv.blur.kernel")

    def torgb(dst: str, src: str) -> None:
        t[f"{dst}.weight"] = take(f"{src}.conv.weight")[0]
        t[f"{dst}.affine.weight"] = take(f"{src}.conv.modulation.weight")
        t[f"{dst}.affine.bias"] = take(f"{src}.conv.modulation.bias")
        t[f"{dst}.bias"] = take(f"{src}.bias").reshape(-1)
        used.add(f"{src}.upsample.kernel")

    t["synthesis.b4.const"] = take("input.input")[0]
    t["synthesis.b4.resample_filter"] = G.state_dict()["synthesis.b4.resample_filter"]
    styled("synthesis.b4.conv1", "conv1", 0)
    torgb("synthesis.b4.torgb", "to_rgb1")
    for i in range(3, log_size + 1):
        res, k = 2 ** i, i - 3
        t[f"synthesis.b{res}.resample_filter"] = G.state_dict()[f"synthesis.b{res}.resample_filter"]
        styled(f"synthesis.b{res}.conv0", f"convs.{2 * k}", 2 * k + 1)
        styled(f"synthesis.b{res}.conv1", f"convs.{2 * k + 1}", 2 * k + 2)
        torgb(f"synthesis.b{res}.torgb", f"to_rgbs.{k}")

    leftover = sorted(set(sd) - used)
    if leftover:
        raise CheckpointError(f"{where}: 'g_ema' has tensors this layout does not use: {', '.join(leftover[:4])}")

    if latent_avg is not None:
        t["mapping.w_avg"] = latent_avg.float().reshape(-1)
    else:
        t["mapping.w_avg"] = torch.zeros(style_dim)
    copy_tensors(G, t, where)
    G.eval().requires_grad_(False)
    if latent_avg is None:
        with torch.no_grad():
            z = torch.randn(_MEAN_LATENT_SAMPLES, style_dim, generator=torch.Generator().manual_seed(0))
            G.mapping.w_avg.copy_(G.mapping(z, None)[:, 0].mean(0))
        notes.append(f"no latent_avg in the checkpoint: the truncation centre is the mean of "
                     f"{_MEAN_LATENT_SAMPLES} mapped seeded latents (as rosinality's generate.py does, seeded)")
    return G, kwargs, notes
