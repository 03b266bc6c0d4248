"""Render cost of each shader and of whole chains, in ms per frame (a command that prints numbers, no asserts)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from vj.gfx.chain import Chain
from vj.gfx.context import create_headless_context, describe, release_context
from vj.gfx.isf import effect_name, load_isf
from vj.gfx.shadertest import _test_features, test_pattern
from vj.gfx.upload import TextureUploader


def time_chain(ctx, effects, size: tuple[int, int], frames: int = 10, warmup: int = 3,
               source_size: tuple[int, int] = (256, 144)) -> tuple[float, float, float]:
    """(median wall ms, best wall ms, mean CPU ms) per frame of `effects` [(name, shader)] at `size`.

    GL is finished every frame. CPU ms counts every thread of this process (llvmpipe's too): on a
    shared machine it and the best frame are the steadier numbers; the median is what the show gets.
    """
    up = TextureUploader(ctx)
    chain = Chain(ctx, *size)
    try:
        chain.set_effects(effects)
        if chain.errors:
            raise RuntimeError("; ".join(chain.errors.values()))
        tex = up.upload(test_pattern(*source_size))
        features = _test_features()
        times = []
        cpu0 = 0.0
        for i in range(warmup + frames):
            if i == warmup:
                cpu0 = time.process_time()
            t0 = time.perf_counter()
            chain.render(tex, {}, features, time_s=i / 30.0, dt_s=1.0 / 30.0)
            ctx.finish()
            if i >= warmup:
                times.append(time.perf_counter() - t0)
        cpu_ms = (time.process_time() - cpu0) / frames * 1000.0
        return float(np.median(times) * 1000.0), float(np.min(times) * 1000.0), cpu_ms
    finally:
        chain.release()
        up.release()


def bench_folder(folder: str | Path, size: tuple[int, int] = (1280, 720), frames: int = 10,
                 chains: Sequence[Sequence[str]] = (),
                 out: Callable[[str], None] = print, ctx=None) -> dict[str, tuple[float, float, float]]:
    """Print and return (median, best, CPU) ms per frame for each .fs, an empty chain and each chain.

    Without `ctx` it makes (and releases) its own headless context; in a process that already has
    one, pass it.
    """
    folder = Path(folder)
    own = ctx is None
    if own:
        ctx = create_headless_context()
    out(f"GL: {describe(ctx)}; {size[0]}x{size[1]}, median of {frames} frames after 3 warm-up")
    results: dict[str, tuple[float, float, float]] = {}
    try:
        results["(empty chain: source scaled to output)"] = time_chain(ctx, [], size, frames)
        for path in sorted(folder.glob("*.fs")):
            name = effect_name(path)
            results[name] = time_chain(ctx, [(name, load_isf(path))], size, frames)
        for stems in chains:
            effects = [(f"{s}_{i}", load_isf(folder / f"{s}.fs")) for i, s in enumerate(stems)]
            results[" + ".join(stems)] = time_chain(ctx, effects, size, frames)
        out(f"{'median':>8} {'best':>8} {'CPU':>8}  (ms per frame)")
        for name, (wall, best, cpu) in results.items():
            out(f"{wall:8.1f} {best:8.1f} {cpu:8.1f}  {name}")
        return results
    finally:
        if own:
            release_context(ctx)


if __name__ == "__main__":
    import sys
    folder = sys.argv[1] if len(sys.argv) > 1 else "shaders"
    bench_folder(folder, chains=[("kaleidoscope", "colorgrade", "bloom"),
                                 ("feedback", "chromatic", "colorgrade", "film"),
                                 ("displace", "kaleidoscope", "bloom", "flash")])
