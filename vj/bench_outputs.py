"""`vj bench outputs`: what projection outputs cost the live show: frame times with no, one and two output windows."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from vj.audio.bench import timed
from vj.config import AudioConfig, ControlConfig, RenderConfig
from vj.latency import _env

WARMUP_S = 3.0


def outputs_file(folder: Path, n: int, width_px: int, height_px: int) -> Path | None:
    """n outputs of the show's size side by side, each a keystoned half (or the whole) with a blended seam."""
    if n == 0:
        return None
    tables = []
    for k in range(n):
        x = k / n - (0.05 if k else 0.0)
        w = min(1.0 - x, 1.0 / n + (0.05 if n > 1 else 0.0) + (0.05 if k else 0.0))
        blend = "" if n == 1 else ("blend = { left = 0.08 }" if k else "blend = { right = 0.08 }")
        tables.append(f'[[output]]\nname = "out{k + 1}"\nsize = [{width_px}, {height_px}]\n'
                      f"position = [{k * 40}, {k * 40}]\nsource = [{x:.4f}, 0, {w:.4f}, 1]\n"
                      f"corners = [[0.03, 0.02], [0.98, 0.0], [1.0, 1.0], [0.0, 0.97]]\n{blend}\n")
    path = folder / f"outputs-{n}.toml"
    path.write_text("\n".join(tables))
    return path


def measure(render_cfg: RenderConfig, outputs: Path | None, seconds: float, warmup_s: float = WARMUP_S) -> dict:
    """Frame times of the default scene on the demo track, and the time the output windows took in them."""
    from vj.show import LiveShow

    show = LiveShow("demo", "default", render_cfg, AudioConfig(),
                    ControlConfig(osc_port=0, oscquery_port=0, mdns=False), outputs=outputs)
    sink: list[float] = []                  # the output windows' draw and swap times of the frame
    try:
        if show.outputs is not None:
            show.outputs.draw = timed(show.outputs.draw, sink)
            show.outputs.swap = timed(show.outputs.swap, sink)
        end = time.monotonic() + warmup_s
        while time.monotonic() < end:
            show.frame()
        times, spent = [], []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            sink.clear()
            t0 = time.perf_counter()
            show.frame()
            times.append(time.perf_counter() - t0)
            spent.append(sum(sink))
    finally:
        show.close()
    t = np.asarray(times) * 1e3
    return {"frames": len(t), "mean_ms": float(t.mean()), "p50_ms": float(np.median(t)),
            "p99_ms": float(np.percentile(t, 99)), "outputs_ms": float(np.mean(spent) * 1e3)}


def pass_times(width_px: int, height_px: int, frames: int = 200, counts=(1, 2)) -> dict[int, float]:
    """Milliseconds a frame for the warp passes alone, headless (EGL): a grid master of the given size drawn through
    `counts` outputs of that size; the same GL work the windows do, without windows, swaps or a display."""
    from vj.gfx.context import bind_default_framebuffer, create_headless_context, release_context
    from vj.mapping.pattern import grid_pattern
    from vj.mapping.render import upload_master
    from vj.mapping.spec import load_outputs
    from vj.mapping.warp import WarpPass

    ctx = create_headless_context()
    out = {}
    try:
        master = upload_master(ctx, grid_pattern(width_px, height_px))
        with tempfile.TemporaryDirectory() as tmp:
            for n in counts:
                specs = load_outputs(outputs_file(Path(tmp), n, width_px, height_px)).outputs
                passes = [WarpPass(ctx, spec) for spec in specs]
                fbos = [ctx.framebuffer(color_attachments=[ctx.texture(spec.size_px, 4)]) for spec in specs]
                for k in range(frames + 10):
                    if k == 10:                     # after a warm-up: shaders compiled, memory touched
                        t0 = time.perf_counter()
                    for p, fbo, spec in zip(passes, fbos, specs):
                        p.render(master, fbo, (0, 0, *spec.size_px))
                    # Each frame finished: llvmpipe drops a pass that a later opaque one covers before it ran,
                    # so unfinished frames into the same target would time one pass for many.
                    ctx.finish()
                out[n] = (time.perf_counter() - t0) / frames * 1e3
                bind_default_framebuffer(ctx)
                for p, fbo in zip(passes, fbos):
                    p.release()
                    fbo.color_attachments[0].release()
                    fbo.release()
        master.release()
    finally:
        release_context(ctx)
    return out


def run_outputs_bench(render_cfg: RenderConfig, seconds: float = 10.0, counts=(0, 1, 2),
                      warmup_s: float = WARMUP_S, headless: bool = False) -> dict[int, dict]:
    """Print one row per number of outputs and the cost of two against one; under Xvfb where there is no display."""
    w, h = render_cfg.width_px, render_cfg.height_px
    passes = pass_times(w, h)
    print(f"warp passes alone (headless, {w}x{h} outputs): " +
          ", ".join(f"{n} output{'s' if n > 1 else ''} {ms:.2f} ms a frame" for n, ms in passes.items()))
    if headless:
        return {}
    print(f"outputs bench: the default scene at {w}x{h} on the demo track, {seconds:g} s per row after "
          f"{warmup_s:g} s warm-up; outputs {w}x{h} each, corner-pinned, two with a blended seam")
    print(f"  {'outputs':>7s} {'frames':>7s} {'mean ms':>8s} {'p50 ms':>7s} {'p99 ms':>7s} {'in outputs ms':>14s}")
    rows = {}
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        if not os.environ.get("DISPLAY"):
            from vj.output.xvfb import running_xvfb
            display = stack.enter_context(running_xvfb(f"{w + 200}x{h + 200}x24"))
            stack.enter_context(_env("DISPLAY", display))
        for n in counts:
            r = measure(render_cfg, outputs_file(Path(tmp), n, w, h), seconds, warmup_s)
            rows[n] = r
            print(f"  {n:7d} {r['frames']:7d} {r['mean_ms']:8.1f} {r['p50_ms']:7.1f} {r['p99_ms']:7.1f} "
                  f"{r['outputs_ms']:14.1f}", flush=True)
    if 1 in rows and 2 in rows:
        one, two = rows[1], rows[2]
        print(f"  two outputs / one: frame time x{two['mean_ms'] / one['mean_ms']:.2f}, time in the outputs "
              f"x{two['outputs_ms'] / max(one['outputs_ms'], 1e-9):.2f}")
    return rows
