"""`vj bench model`: ms per frame (p50/p99) of a generator network per backend and precision, side by side.

For StyleGAN the network is a checkpoint (`--checkpoint`) or a randomly initialised one with the
architecture of the published models at `--size` (StyleGAN2: 8 mapping layers, 512 channels at most,
channel base 16384 below 512 px and 32768 from 512 px, as NVlabs' paper256/paper512/stylegan2 configs;
StyleGAN3-T: NVlabs' defaults). Random weights cost the same as trained ones. Each backend's output for
the same latent is compared with eager fp32, so a fast path that draws something else is caught.
Other generators (cppn, deepdream, ...) are timed through the worker as they run in the engine.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from vj.models.backends import BACKENDS, BackendError, compile_forward, fidelity

STYLEGAN_MODELS = ("stylegan2", "stylegan3")


@dataclass(frozen=True)
class BenchRow:
    backend: str
    precision: str
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    first_ms: float = float("nan")       # the first call: trace, compile or export included
    error: str | None = None
    max_abs: float = float("nan")         # against eager fp32, output about -1..1
    psnr_db: float = float("nan")

    def line(self) -> str:
        name = f"{self.backend:9s} {self.precision:5s}"
        if self.error:
            return f"{name} unavailable: {self.error}"
        fps = 1000.0 / self.p50_ms if self.p50_ms > 0 else 0.0
        text = (f"{name} p50 {self.p50_ms:8.1f} ms  p99 {self.p99_ms:8.1f} ms  ({fps:6.1f} fps)  first call "
                f"{self.first_ms / 1000:6.1f} s")
        if self.backend == "engine":          # the generator as the engine runs it: nothing to compare with
            return text
        return f"{text}  vs eager fp32: max |d| {self.max_abs:.2e}, PSNR {self.psnr_db:5.1f} dB"


def random_network(model: str, size: int, seed: int = 0) -> torch.nn.Module:
    """A randomly initialised generator with the published architecture at `size` px."""
    from vj.models.stylegan import sg2, sg3
    if size < 16 or size & (size - 1):
        raise ValueError(f"--size must be a power of two of at least 16, got {size}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if model == "stylegan2":
            G = sg2.Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=size, img_channels=3,
                              mapping_kwargs=dict(num_layers=8),
                              synthesis_kwargs=dict(channel_base=32768 if size >= 512 else 16384, channel_max=512,
                                                    conv_clamp=256))
        elif model == "stylegan3":
            G = sg3.Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=size, img_channels=3,
                              mapping_kwargs=dict(num_layers=2), channel_base=32768, channel_max=512)
        else:
            raise ValueError(f"unknown network {model!r}; choose one of {', '.join(STYLEGAN_MODELS)}")
    return G.eval().requires_grad_(False)


def bench_stylegan(G: torch.nn.Module, backends: list[str], precisions: list[str], frames: int = 20,
                   device: str = "auto", seed: int = 0) -> list[BenchRow]:
    """Time the StyleGAN forward pass (mapping, truncation, synthesis with constant noise), batch 1."""
    from vj.models.stylegan.generator import _Forward
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    net = _Forward(G.to(dev))
    z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).to(dev, torch.float32)
    c = torch.zeros(1, G.c_dim, device=dev)
    scalars = [torch.tensor(v, device=dev) for v in (0.7, 0.0, 1.0)]
    inputs = (z, c, *scalars)
    with torch.inference_mode():
        reference = net(*inputs)
    rows = []
    for backend in backends:
        for precision in precisions:
            rows.append(_time(net, inputs, reference, backend, precision, frames, dev))
    return rows


def _time(net, inputs, reference, backend: str, precision: str, frames: int, dev: torch.device) -> BenchRow:
    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()
    try:
        t0 = time.perf_counter()
        fn = compile_forward(net, inputs, backend, precision)
        out = fn(*inputs)
        sync()
        first_ms = (time.perf_counter() - t0) * 1e3
        for _ in range(2):
            fn(*inputs)
        times = []
        for _ in range(frames):
            t0 = time.perf_counter()
            out = fn(*inputs)
            sync()
            times.append((time.perf_counter() - t0) * 1e3)
    except BackendError as exc:
        return BenchRow(backend, precision, error=str(exc))
    except Exception as exc:  # noqa: BLE001 - a backend that breaks is a row of the table, not the end
        text = str(exc).strip().splitlines()
        return BenchRow(backend, precision, error=f"{type(exc).__name__}: {text[0] if text else ''}"[:200])
    fid = fidelity(reference, out)
    t = np.asarray(times)
    return BenchRow(backend, precision, float(np.percentile(t, 50)), float(np.percentile(t, 99)), first_ms,
                    max_abs=fid["max_abs"], psnr_db=fid["psnr_db"])


def bench_generator_rows(name: str, size: int, frames: int, settings: dict | None = None,
                         height: int | None = None) -> list[BenchRow]:
    """Any registered generator at size x height (default square) through the worker's code path (its own
    backend); on CUDA the frame is handed over as 8-bit RGBA in pinned memory (frame path "pinned")."""
    from vj.models.bench import bench_generator
    r = bench_generator(name, size, size if height is None else height, frames=frames, **(settings or {}))
    return [BenchRow("engine", "fp32", r["median_ms"], r["p99_ms"], r["first_ms"])]


def parse_settings(items: list[str]) -> dict:
    """KEY=VALUE generator settings, each VALUE read as a TOML value (a bare word is a string); never eval'd."""
    import tomllib
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ValueError(f"--set wants KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = tomllib.loads(f"v = {value.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = value.strip()
    return out


def run(model: str, size: int, backends: str, precisions: str, frames: int, checkpoint: str | None = None,
        threads: int | None = None, settings: list[str] = (), height: int | None = None) -> int:
    """Print the table; returns the exit code. `size` x `height` (default square) for generators other than
    StyleGAN; StyleGAN networks are square, `size` px."""
    if threads:
        torch.set_num_threads(threads)
    b = [x.strip() for x in backends.split(",") if x.strip()]
    p = [x.strip() for x in precisions.split(",") if x.strip()]
    for x in b:
        if x not in BACKENDS:
            raise ValueError(f"unknown backend {x!r}; choose from {', '.join(BACKENDS)}")
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    height = size if height is None else height
    stylegan = bool(checkpoint) or model in STYLEGAN_MODELS
    if stylegan and height != size:
        raise ValueError(f"StyleGAN networks are square: give --size N, not {size}x{height}")
    shown = f"{size} px" if height == size else f"{size}x{height}"
    print(f"vj bench model: {checkpoint or model}, {shown}, batch 1, {frames} frames, device {dev}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if stylegan:
        if checkpoint:
            from vj.models.stylegan.load import load_generator
            G = load_generator(checkpoint).G
            size = int(G.img_resolution)
        else:
            G = random_network(model, size)
        rows = bench_stylegan(G, b, p, frames)
    else:
        rows = bench_generator_rows(model, size, frames, parse_settings(list(settings)), height=height)
    for row in rows:
        print("  " + row.line())
    return 0 if any(r.error is None for r in rows) else 1
