"""Prints the render cost of a generator: `python -m vj.models.bench [name] [--size 256x144] [--frames 40]`."""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from vj.audio.features import Features
from vj.models.registry import DEFAULT_GENERATOR, available_generators, create_generator
from vj.models.worker import ModelWorker


def bench_generator(name: str = DEFAULT_GENERATOR, width_px: int = 256, height_px: int = 144,
                    frames: int = 40, warmup: int = 3, **settings) -> dict[str, float]:
    """Render `frames` frames of a loud walk through the worker's code path; times in milliseconds."""
    gen = create_generator(name, width_px=width_px, height_px=height_px, **settings)
    worker = ModelWorker(gen, frame_path="pinned")       # on the CPU the host path: the frame path is for CUDA
    times_ms = []
    first_ms = 0.0
    try:
        for i in range(warmup + frames):
            f = Features(t_s=i / 30, level=0.7, bass=0.5, onset=i % 15 == 0)
            args = gen.advance({}, f, 1 / 30)
            t0 = time.perf_counter()
            result = worker.render_now(args)
            if result.error is not None:
                raise RuntimeError(result.error)
            if i == 0:
                first_ms = (time.perf_counter() - t0) * 1000.0
            if i >= warmup:
                times_ms.append((time.perf_counter() - t0) * 1000.0)
    finally:
        worker.close()
    t = np.asarray(times_ms)
    return {"min_ms": float(t.min()), "median_ms": float(np.median(t)), "p90_ms": float(np.percentile(t, 90)),
            "p99_ms": float(np.percentile(t, 99)), "first_ms": first_ms}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vj.models.bench", description=__doc__)
    ap.add_argument("name", nargs="?", default=DEFAULT_GENERATOR, choices=available_generators())
    ap.add_argument("--size", action="append", default=None, help="WxH, repeatable (default 256x144 and 512x288)")
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads first (default: torch's)")
    opts = ap.parse_args(argv)
    if opts.threads is not None:
        torch.set_num_threads(max(1, opts.threads))
    print(f"torch threads: {torch.get_num_threads()}")
    for size in opts.size or ["256x144", "512x288"]:
        w, h = (int(v) for v in size.lower().split("x"))
        r = bench_generator(opts.name, w, h, frames=opts.frames)
        print(f"{opts.name} {w}x{h}: median {r['median_ms']:.1f} ms  min {r['min_ms']:.1f} ms  "
              f"p90 {r['p90_ms']:.1f} ms  ({1000.0 / r['median_ms']:.0f} fps)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
