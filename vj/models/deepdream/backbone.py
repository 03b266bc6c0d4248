"""The network DeepDream climbs: our GoogLeNet (random or a torchvision state dict) or any TorchScript classifier.

Files are read without running pickled code: state dicts through `torch.load(weights_only=True)`,
TorchScript through `torch.jit.load` (its own format, no pickled globals). A file of the wrong kind
raises BackboneError with one line naming the file and the problem.
"""

from __future__ import annotations

import logging
import pickle
import re
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from vj.models.deepdream.googlenet import IMAGENET_MEAN, IMAGENET_STD, LAYERS, GoogLeNet
from vj.models.deepdream.inception import DEFAULT_LAYER as INCEPTION_DEFAULT
from vj.models.deepdream.inception import LAYERS as INCEPTION_LAYERS
from vj.models.deepdream.inception import MIN_PX as INCEPTION_MIN_PX
from vj.models.deepdream.inception import InceptionV3
from vj.models.stylegan.load import CheckpointError, copy_tensors
from vj.models.stylegan.load import _describe_head as describe_head

log = logging.getLogger(__name__)

_OPTIONAL_KEY = re.compile(r"(^aux[12]\.|^AuxLogits\.|\.num_batches_tracked$)")   # absent from aux_logits=False saves
_MAX_LISTED = 60                      # layer names shown in an error before "... (N more)"


class BackboneError(ValueError):
    """A weights or TorchScript file that cannot be used, or a layer it does not have; one line."""


@dataclass
class Backbone:
    """A network and the layers DeepDream may climb; `activation` is differentiable in its input."""

    layers: tuple[str, ...]           # names `activation` accepts
    source: str                       # what it came from, for logs ("random GoogLeNet seed 0", a path)
    device: torch.device
    _run: Callable[[torch.Tensor, str], torch.Tensor]
    module: torch.nn.Module | None = None
    default_layer: str | None = None  # the layer dreamt on when the preset names none (None: the generator's)
    min_px: int = 0                   # the smallest input side every layer works at (octaves stay above it)

    def activation(self, image: torch.Tensor, layer: str) -> torch.Tensor:
        """(N, 3, H, W) image in 0..1 -> the named layer's output, (N, C, ...); ImageNet-normalised on the way in."""
        mean = image.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = image.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
        return self._run((image - mean) / std, layer)


def random_googlenet(seed: int = 0, width: float = 1.0, device: str | torch.device = "cpu") -> Backbone:
    """Our GoogLeNet with seeded random weights: no file, draws textures rather than dogs."""
    net = GoogLeNet(width=width).init_random(seed).eval().requires_grad_(False).to(device)
    return Backbone(layers=LAYERS, source=f"random GoogLeNet (seed {seed}, width {width:g})",
                    device=torch.device(device), _run=net.features, module=net)


def load_googlenet(path: str | Path, transform_input: bool = True, device: str | torch.device = "cpu") -> Backbone:
    """A torchvision `googlenet` state dict (.pth), or a checkpoint dict holding one under 'state_dict'.

    The keys must be torchvision's (aux1/aux2 and batch-norm counters may be missing; a 'module.'
    prefix from DataParallel is dropped) with its shapes. `transform_input` as torchvision sets it
    for its pretrained weights.
    """
    path = Path(path).expanduser()
    net = _load_state(GoogLeNet(transform_input=transform_input), path, "GoogLeNet")
    net = net.eval().requires_grad_(False).to(device)
    return Backbone(layers=LAYERS, source=str(path), device=torch.device(device), _run=net.features, module=net)


def load_inception_v3(path: str | Path, transform_input: bool = True, device: str | torch.device = "cpu") -> Backbone:
    """A torchvision `inception_v3` state dict (.pth), as load_googlenet reads GoogLeNet's."""
    path = Path(path).expanduser()
    net = _load_state(InceptionV3(transform_input=transform_input), path, "Inception-v3")
    net = net.eval().requires_grad_(False).to(device)
    return Backbone(layers=INCEPTION_LAYERS, source=str(path), device=torch.device(device), _run=net.features,
                    module=net, default_layer=INCEPTION_DEFAULT, min_px=INCEPTION_MIN_PX)


def _load_state(net: torch.nn.Module, path: Path, what: str) -> torch.nn.Module:
    """`net` with the tensors of the state dict at `path` (strict: torchvision's keys and shapes)."""
    data = _load_tensors(path)
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not data:
        raise BackboneError(f"{path}: not a state dict: found {_describe(data)}")
    state = {}
    for k, v in data.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise BackboneError(f"{path}: not a state dict: entry {k!r} is {type(v).__name__}, not a tensor")
        state[k[len("module."):] if k.startswith("module.") else k] = v
    # Keys a torchvision save may lack (aux heads, batch-norm counters) keep the net's own values.
    state = {**{k: v for k, v in net.state_dict().items() if _OPTIONAL_KEY.search(k)}, **state}
    try:
        copy_tensors(net, state, f"{path}: not a torchvision {what} state dict")
    except CheckpointError as exc:
        raise BackboneError(str(exc)) from None
    return net


def load_torchscript(path: str | Path, layers: tuple[str, ...],
                     device: str | torch.device = "cpu") -> Backbone:
    """Any TorchScript classifier; `layers` are names of its submodules (as `named_modules` gives them).

    TorchScript modules take no forward hooks, so each layer gets its own function: the forward
    graph inlined, cut at the last node that belongs to that submodule, and pruned.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise BackboneError(f"{path}: no such TorchScript file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)    # torch 2.13 marks jit deprecated; still the format
            module = torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        raise BackboneError(f"{path}: not a TorchScript file ({_first_line(exc)}); a state dict goes in "
                            "`weights`, not `torchscript`") from None
    module = module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    names = [n for n, _ in module.named_modules() if n]
    if not layers:
        raise BackboneError(f"{path}: name a layer to dream on (`layer = ...`); available: {_list(names)}")
    for layer in layers:
        if layer not in names:
            raise BackboneError(f"{path}: no layer {layer!r}; available: {_list(names)}")
    functions = {layer: _cut_at(module, layer, path) for layer in layers}
    module = module.to(device)

    def run(x: torch.Tensor, layer: str) -> torch.Tensor:
        return functions[layer](module._c, x)

    return Backbone(layers=tuple(layers), source=str(path), device=torch.device(device), _run=run, module=module)


def _cut_at(module: torch.jit.ScriptModule, layer: str, path: Path) -> Any:
    """A TorchScript function (self, x) -> the output of submodule `layer` inside `module`'s forward."""
    graph = module.forward.graph.copy()
    torch._C._jit_pass_inline(graph)
    last = None
    for node in graph.nodes():     # top-level nodes only: a layer called inside an `if` cannot be cut at
        owner = _module_path(node.getModuleHierarchy())
        if (owner == layer or owner.startswith(layer + ".")) and node.outputsSize() == 1 \
                and isinstance(node.output().type(), torch._C.TensorType):
            last = node
    if last is None:
        raise BackboneError(f"{path}: layer {layer!r} produces no tensor in the top level of forward; "
                            "pick another layer")
    for _ in list(graph.outputs()):
        graph.eraseOutput(0)
    graph.registerOutput(last.output())
    torch._C._jit_pass_dce(graph)
    return torch._C._create_function_from_graph(f"dream_{layer.replace('.', '_')}", graph)


def _module_path(hierarchy: str) -> str:
    """'features(Sequential).3(Conv2d).SELF(Conv2d)' -> 'features.3'."""
    parts = (p.split("(")[0] for p in hierarchy.split(".")) if hierarchy else ()
    return ".".join(p for p in parts if p and p != "SELF")


def _load_tensors(path: Path) -> Any:
    """torch.load with the weights-only unpickler: tensors and plain containers, never code."""
    if not path.is_file():
        raise BackboneError(f"{path}: no such weights file")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            if any(n.endswith("constants.pkl") or "/code/" in n for n in z.namelist()):
                raise BackboneError(f"{path}: a TorchScript file, not a state dict; load it with `torchscript = ...` "
                                    "and `layer = ...`")
    else:
        with open(path, "rb") as f:
            head = f.read(8)
        if not head.startswith(b"\x80"):          # neither a torch.save zip nor a (legacy) pickle
            raise BackboneError(f"{path}: not a torch weights file: found {describe_head(head)}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+)", str(exc))
        what = f"it references {found.group(1)}" if found else _first_line(exc)
        raise BackboneError(f"{path}: refused to load: {what} (a pickle that could run code); "
                            "save a plain state dict instead") from None
    except (RuntimeError, EOFError, ValueError, KeyError, IndexError, TypeError, zipfile.BadZipFile) as exc:
        raise BackboneError(f"{path}: not a torch weights file: {_first_line(exc)}") from None


def _describe(data: Any) -> str:
    if isinstance(data, dict):
        return "an empty dict" if not data else f"a dict with keys {', '.join(repr(k) for k in list(data)[:5])}"
    if isinstance(data, torch.Tensor):
        return f"a single tensor of shape {tuple(data.shape)}"
    return f"a {type(data).__name__}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _list(names: list[str]) -> str:
    shown = ", ".join(names[:_MAX_LISTED])
    return shown + (f" ... ({len(names) - _MAX_LISTED} more)" if len(names) > _MAX_LISTED else "")
