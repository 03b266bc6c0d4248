"""Compiled forward passes behind one switch: eager, TorchScript trace, torch.compile, ONNX Runtime, TensorRT.

`compile_forward(module, example, backend, precision)` returns a callable with the module's signature
(tensors in, one float32 tensor out, on the module's device). What each backend is for:

- `eager`: the module as it is; the reference every other backend is checked against.
- `trace`: torch.jit.trace. The default on the CPU: a traced graph runs without the GIL, so the render
  thread sitting in GL calls (moderngl holds the GIL) does not stall the model (see vj/models/cppn.py).
- `compile`: torch.compile. On CUDA with mode "reduce-overhead", which captures CUDA graphs: one
  launch a frame instead of hundreds of small kernels. The first call compiles (17-27 s on this CPU),
  so the engine builds models on its loader thread, never in front of the audience.
- `onnx`: exported with torch.onnx (the torch.export-based exporter, which needs onnxscript; the older
  TorchScript exporter cannot export StyleGAN's modulated convolution) and run by ONNX Runtime, on its CUDA provider
  where present (CUDA only, untested here), else its CPU provider.
- `tensorrt`: torch-tensorrt where installed (CUDA only; it cannot be installed on the CPU machines this
  project is tested on): a clear BackendError everywhere else.

Precision: `fp32`, `fp16` or `bf16`: autocast for eager, trace and compile; for onnx and tensorrt the
module's parameters and floating-point inputs are cast to that type. The output is float32 always. fp16 is
for CUDA (many CPU kernels have no half version); bf16 runs on both. `fidelity` measures the error of a fast path against eager fp32, which `vj bench model` prints.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import warnings
from typing import Callable, Sequence

import numpy as np
import torch

log = logging.getLogger(__name__)

# Tracing our networks warns about every shape assert it turns into a constant; the shapes are fixed per
# model, so these say nothing to a user. A filter for good: catch_warnings is not thread-safe, and the
# engine traces on its loader thread.
warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)

BACKENDS = ("eager", "trace", "compile", "onnx", "tensorrt")
PRECISIONS = ("fp32", "fp16", "bf16")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}

Forward = Callable[..., torch.Tensor]


class BackendError(ValueError):
    """A backend or precision that cannot run here; the message says why in one line."""


def default_backend(device: torch.device) -> str:
    """trace on the CPU (no GIL while it runs), compile with CUDA graphs on a GPU."""
    return "compile" if device.type == "cuda" else "trace"


def check_choice(backend: str, precision: str, device: torch.device) -> None:
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise BackendError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type != "cuda":
        raise BackendError("fp16 needs a CUDA device (the CPU has few half-precision kernels); use bf16 or fp32")
    if backend == "tensorrt":
        if device.type != "cuda":
            raise BackendError("the tensorrt backend needs a CUDA device")
        try:
            import torch_tensorrt  # noqa: F401
        except ImportError:
            raise BackendError("the tensorrt backend needs torch-tensorrt, which is not installed "
                               "(pip install torch-tensorrt matching this torch and CUDA)") from None
    if backend == "onnx":
        if precision != "fp32":
            raise BackendError("the onnx backend runs fp32 models (export a half-precision model yourself and "
                               "load it as an image model if you need one)")
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise BackendError("the onnx backend needs onnxruntime, which is not installed") from None


def compile_forward(module: torch.nn.Module, example: Sequence[torch.Tensor], backend: str = "eager",
                    precision: str = "fp32") -> Forward:
    """`module`'s forward on `example`-shaped inputs through `backend` at `precision`.

    Raises BackendError when the choice cannot run here. Shapes are fixed by `example` for every
    backend but eager (the trace, the compiled graph and the ONNX model are built for them).
    """
    device = next((t.device for t in example if isinstance(t, torch.Tensor)), torch.device("cpu"))
    check_choice(backend, precision, device)
    dtype = DTYPES[precision]
    module = module.eval()
    if dtype != torch.float32 and backend in ("onnx", "tensorrt"):
        # Those two take a module in the target precision; the others run it under autocast, which keeps
        # reductions and normalisations in fp32 where that matters.
        module = copy.deepcopy(module).to(dtype)
        cast = _caster(dtype)
    else:
        cast = _caster(torch.float32)
    example = tuple(cast(t) for t in example)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32 and backend not in
                              ("onnx", "tensorrt"))
    if backend == "eager":
        fn: Forward = module
    elif backend == "trace":
        with torch.inference_mode(), autocast, warnings.catch_warnings():
            warnings.simplefilter("ignore")       # TracerWarnings for shape asserts; jit.trace's deprecation notice
            fn = torch.jit.trace(module, example, check_trace=False)
    elif backend == "compile":
        # "reduce-overhead" is CUDA graphs: CUDA only. On the CPU the default mode (inductor C++ kernels).
        fn = torch.compile(module, mode="reduce-overhead" if device.type == "cuda" else None, fullgraph=False)
        # torch.compile is lazy: build the kernels now, under the same modes forward() runs them in, so a
        # compiler failure (inductor's C++ on a CPU without AVX2, for one) is raised here, on the caller's
        # loader thread where it can fall back, and not in the first frame.
        with torch.inference_mode(), autocast:
            fn(*example)
    elif backend == "onnx":
        fn = _onnx_forward(module, example, device)
    else:  # tensorrt (CUDA only; check_choice made sure it is importable)
        import torch_tensorrt
        fn = torch_tensorrt.compile(module, inputs=list(example), enabled_precisions={dtype})

    def forward(*inputs: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=autocast._enabled):
            return fn(*(cast(t) for t in inputs)).to(torch.float32)
    return forward


def _caster(dtype: torch.dtype) -> Callable[[torch.Tensor], torch.Tensor]:
    def cast(t):
        return t.to(dtype) if isinstance(t, torch.Tensor) and t.is_floating_point() else t
    return cast


def _onnx_forward(module: torch.nn.Module, example: tuple[torch.Tensor, ...], device: torch.device) -> Forward:
    """Export to ONNX in memory and wrap an ONNX Runtime session in a torch-in, torch-out callable."""
    import onnxruntime as ort
    names = [f"in{i}" for i in range(len(example))]
    buf = io.BytesIO()
    # The exporter (torch.export + onnxscript) logs progress and notes about absent torchvision ops: quiet it.
    quiet = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript", "onnx_ir", "torch._dynamo")]
    levels = [lg.level for lg in quiet]
    try:
        for lg in quiet:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(module, example, buf, input_names=names, output_names=["out"], dynamo=True,
                              verbose=False, external_data=False)
    except Exception as exc:  # noqa: BLE001 - any exporter failure is one line for the user
        raise BackendError(f"ONNX export failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    finally:
        for lg, level in zip(quiet, levels):
            lg.setLevel(level)
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")   # CUDA only: untested on the CPU machines
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(buf.getvalue(), opts, providers=providers)
    used = [i.name for i in session.get_inputs()]      # constant inputs (e.g. unused) may be folded away

    def run(*inputs: torch.Tensor) -> torch.Tensor:
        feed = {n: t.detach().cpu().numpy() for n, t in zip(names, inputs) if n in used}
        (out,) = session.run(["out"], feed)
        return torch.from_numpy(np.asarray(out)).to(device)
    return run


def fidelity(reference: torch.Tensor, fast: torch.Tensor) -> dict[str, float]:
    """How far a fast path's output is from the reference (both about -1..1): max and mean absolute error,
    and PSNR in dB over a value range of 2."""
    diff = (fast.float() - reference.float()).abs()
    mse = float((diff ** 2).mean())
    psnr = float("inf") if mse == 0 else 10.0 * float(np.log10(4.0 / mse))
    return {"max_abs": float(diff.max()), "mean_abs": float(diff.mean()), "psnr_db": psnr}
