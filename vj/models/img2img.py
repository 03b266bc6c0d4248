"""The image-to-image model slot: a TorchScript or ONNX file that turns one RGB image into another.

Colourisation of black-and-white film, style transfer, super-resolution: any model that fits these
tensor conventions (also in docs/MODELS.md):

- Input: one tensor, NCHW float32 (float16 ONNX inputs are fed float16), N = 1, C = 3 (RGB) or 1
  (grey: Rec. 601 luma of the frame), values 0..1, or -1..1 with `value_range="-1..1"`.
- Size: an ONNX input with fixed H and W gets the frame resized to them. Otherwise (TorchScript, or
  symbolic ONNX dims) the model gets the frame at its size times `scale` (e.g. 0.25 for a 4x
  super-resolution model), rounded to a multiple of `multiple_px` when the model needs one
  (U-Nets: often 8, 16 or 32).
- Output: one tensor, (1, 3, h, w) RGB or (1, 1, h, w) grey (shown as grey), in the same value
  range as the input; any h, w (resized back to the frame's size, bilinear).
- Not supported: models that return only chroma (2 channels, e.g. Lab "ab" colourisers), several
  inputs, or batch sizes other than 1. They are refused at load with the expected and actual shapes.

The kind is read from the file's bytes, not its name: a TorchScript archive is a zip with `code/`
in it, anything else is handed to ONNX Runtime. `Img2ImgModel` runs one dummy frame when built, so
a model that does not fit fails when the preset loads (`Img2ImgError`, a ValueError naming the
file), not on stage. TorchScript archives hold no pickled Python code: `torch.jit.load` runs none.
"""

from __future__ import annotations

import logging
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vj.models.base import resolve_device

log = logging.getLogger(__name__)

VALUE_RANGES = ("0..1", "-1..1")
LUMA = (0.299, 0.587, 0.114)          # Rec. 601 weights: RGB -> grey for 1-channel models


class Img2ImgError(ValueError):
    """A model file that cannot be used as an image-to-image model; one line naming the file."""


def _one_line(exc: BaseException) -> str:
    """The useful line of an exception: TorchScript puts the model's own error on the last line."""
    text = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if len(text) > 1 and "TorchScript interpreter" in text[0]:
        return text[-1]
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def model_kind(path: Path) -> str:
    """"torchscript" or "onnx" from the file's contents; Img2ImgError for other kinds of file."""
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError) as exc:
            raise Img2ImgError(f"{path}: unreadable zip archive: {exc}") from None
        if any("/code/" in n or n.startswith("code/") for n in names):
            return "torchscript"
        if any(n.endswith("data.pkl") for n in names):
            raise Img2ImgError(f"{path}: a torch.save checkpoint (weights only), not a TorchScript model; "
                               "export the network with torch.jit.script or torch.jit.trace and .save() it")
        raise Img2ImgError(f"{path}: a zip archive that is not a TorchScript model")
    return "onnx"


class Img2ImgModel:
    """Loads the model, checks it on one dummy frame, and maps (1, 3, H, W) 0..1 -> (1, 3, H, W) 0..1.

    Call it on the worker thread; both runtimes release the GIL while they compute.
    """

    def __init__(self, path: str | os.PathLike, value_range: str = "0..1", multiple_px: int = 1,
                 scale: float = 1.0, device: str = "auto", check_size: tuple[int, int] = (256, 144)):
        self.path = Path(path).expanduser()
        if value_range not in VALUE_RANGES:
            raise Img2ImgError(f"{self.path}: value range must be one of {', '.join(VALUE_RANGES)}, "
                               f"got {value_range!r}")
        if int(multiple_px) < 1 or not 0.0 < float(scale) <= 16.0:
            raise Img2ImgError(f"{self.path}: multiple must be >= 1 and scale in 0..16, "
                               f"got {multiple_px} and {scale}")
        if not self.path.is_file():
            raise Img2ImgError(f"image model not found: {self.path}")
        self.value_range, self.multiple_px, self.scale = value_range, int(multiple_px), float(scale)
        self.device = resolve_device(device)
        self.kind = model_kind(self.path)
        self.in_channels = 3
        self.fixed_size: tuple[int, int] | None = None              # (width_px, height_px) of a fixed input
        if self.kind == "torchscript":
            self._load_torchscript()
        else:
            self._load_onnx()
        width_px, height_px = check_size
        probe = torch.full((1, 3, int(height_px), int(width_px)), 0.5)
        out = self(probe)
        log.info("img2img: %s (%s, input %s, %s)", self.path.name, self.kind,
                 "%dx%d" % self.fixed_size if self.fixed_size else "any size", value_range)
        assert tuple(out.shape) == tuple(probe.shape)

    # -- loading -----------------------------------------------------------------------------------

    def _load_torchscript(self) -> None:
        try:
            with warnings.catch_warnings():
                # torch 2.13 marks TorchScript deprecated; it is still the format image models are shared in.
                warnings.simplefilter("ignore", DeprecationWarning)
                self._module = torch.jit.load(str(self.path), map_location=self.device).eval()
        except (RuntimeError, ValueError, OSError) as exc:
            raise Img2ImgError(f"{self.path}: not a loadable TorchScript model: {_one_line(exc)}") from None

    def _load_onnx(self) -> None:
        import onnxruntime as ort     # imported here: only scenes with an ONNX model pay for it

        providers = ["CPUExecutionProvider"]
        if self.device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")               # CUDA-only path, untested here
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()        # share the worker's thread budget
        options.log_severity_level = 3                                # warnings from ORT would flood the log
        try:
            self._session = ort.InferenceSession(str(self.path), sess_options=options, providers=providers)
        except Exception as exc:      # noqa: BLE001 - ORT raises its own exception types for every failure
            suffix = self.path.suffix.lower()
            kind = "an ONNX" if suffix == ".onnx" else "an ONNX or TorchScript"
            raise Img2ImgError(f"{self.path}: not {kind} model: {_one_line(exc)}") from None
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1:
            raise Img2ImgError(f"{self.path}: expected 1 input (an NCHW image), the model has {len(inputs)}: "
                               f"{', '.join(i.name for i in inputs)}")
        inp = inputs[0]
        self._input_name, self._output_name = inp.name, outputs[0].name
        if inp.type not in ("tensor(float)", "tensor(float16)"):
            raise Img2ImgError(f"{self.path}: input {inp.name!r} is {inp.type}, expected tensor(float)")
        self._input_dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
        shape = list(inp.shape)
        fixed = [d if isinstance(d, int) and d > 0 else None for d in shape]
        if len(shape) != 4 or fixed[0] not in (None, 1) or fixed[1] not in (None, 1, 3):
            raise Img2ImgError(f"{self.path}: input shape {_shape_text(shape)} does not fit; expected "
                               "(1, 3, H, W) or (1, 1, H, W)")
        self.in_channels = fixed[1] or 3
        if fixed[2] is not None and fixed[3] is not None:
            self.fixed_size = (fixed[3], fixed[2])

    # -- running -----------------------------------------------------------------------------------

    def input_size(self, width_px: int, height_px: int) -> tuple[int, int]:
        """(width_px, height_px) the model gets for a frame of this size."""
        if self.fixed_size is not None:
            return self.fixed_size
        m = self.multiple_px                                          # nearest multiple, halves rounded up
        return (max(m, int(width_px * self.scale / m + 0.5) * m), max(m, int(height_px * self.scale / m + 0.5) * m))

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """(1, 3, H, W) float 0..1 -> (1, 3, H, W) float32 0..1 on the model's device (a CUDA frame stays on
        the GPU for the engine's frame path). Img2ImgError on a misfit."""
        assert image.dim() == 4 and image.shape[:2] == (1, 3), f"expected (1, 3, H, W), got {tuple(image.shape)}"
        height_px, width_px = int(image.shape[2]), int(image.shape[3])
        in_w, in_h = self.input_size(width_px, height_px)
        x = image.to(torch.float32)
        if (in_h, in_w) != (height_px, width_px):
            x = _resize(x, in_h, in_w)
        if self.in_channels == 1:
            x = (x * torch.tensor(LUMA).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)   # (1, 1, h, w)
        if self.value_range == "-1..1":
            x = x * 2.0 - 1.0
        y = self._run(x.contiguous())
        if y.dim() != 4 or y.shape[0] != 1 or y.shape[1] not in (1, 3):
            hint = " (2 channels: a chroma-only model, not supported)" if y.dim() == 4 and y.shape[1] == 2 else ""
            raise Img2ImgError(f"{self.path}: output shape {tuple(y.shape)} does not fit; expected "
                               f"(1, 3, h, w) or (1, 1, h, w) for input {tuple(x.shape)}{hint}")
        y = y.to(torch.float32)
        if self.value_range == "-1..1":
            y = (y + 1.0) * 0.5
        if y.shape[1] == 1:
            y = y.expand(1, 3, -1, -1)
        if tuple(y.shape[2:]) != (height_px, width_px):
            y = _resize(y, height_px, width_px)
        return torch.nan_to_num(y, nan=0.0).clamp(0.0, 1.0).contiguous()

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        """The model on (1, C, h, w); returns its raw output tensor."""
        if self.kind == "torchscript":
            try:
                with torch.inference_mode():
                    y = self._module(x.to(self.device))
            except Exception as exc:  # noqa: BLE001 - TorchScript raises RuntimeError subclasses of all kinds
                raise Img2ImgError(f"{self.path}: failed on a {tuple(x.shape)} float32 input: "
                                   f"{_one_line(exc)}") from None
            if not isinstance(y, torch.Tensor):
                raise Img2ImgError(f"{self.path}: returned {type(y).__name__}, expected one (1, 3, h, w) tensor")
            return y
        try:
            (y,) = self._session.run([self._output_name], {self._input_name: x.numpy().astype(self._input_dtype)})
        except Exception as exc:      # noqa: BLE001 - ORT raises its own exception types
            raise Img2ImgError(f"{self.path}: failed on a {tuple(x.shape)} input: {_one_line(exc)}") from None
        return torch.from_numpy(np.asarray(y, dtype=np.float32))


def _resize(x: torch.Tensor, height_px: int, width_px: int) -> torch.Tensor:
    """Bilinear resize of (1, C, h, w), antialiased when shrinking."""
    return F.interpolate(x, size=(height_px, width_px), mode="bilinear", align_corners=False, antialias=True)


def _shape_text(shape: list) -> str:
    return "(" + ", ".join(str(d) if d is not None else "?" for d in shape) + ")"
