"""`vj bench cluster`: what splitting a render costs, how good its seams are, and what a long job would take."""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import numpy as np

from vj.chunks import render_span
from vj.cluster.commands import render_on_cluster
from vj.cluster.driver import connect, plan
from vj.cluster.frames import ChunkWriter, read_chunk
from vj.config import AudioConfig, RenderConfig
from vj.gfx.png import read_png
from vj.output.recorder import Recorder
from vj.show import cut_track, headless_engine, render_offline, track_program

# The 4-minute 4K DeepDream job the issue asks about, and what one of its frames costs on a GPU. NOT MEASURED (no
# GPU here): issue 21's target is DeepDream at 1280x720 with 2 steps a frame at 30 fps (33 ms); 4K has 9 times
# the pixels, offline quality about 5 times the steps and octaves that add a third: 33 ms x 9 x 5 x 1.33.
JOB_S, JOB_FPS, JOB_SIZE = 240.0, 30.0, (3840, 2160)
DREAM_FRAME_S = 2.0


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two (H, W, 3) uint8 pictures on their luma, with the usual 11-tap Gaussian window (sigma 1.5)."""
    def luma(x):
        return x.astype(np.float64) @ np.array([0.299, 0.587, 0.114])

    g = np.exp(-0.5 * (np.arange(-5, 6) / 1.5) ** 2)
    g /= g.sum()

    def blur(x):
        x = np.apply_along_axis(lambda r: np.convolve(r, g, mode="valid"), 1, x)
        return np.apply_along_axis(lambda c: np.convolve(c, g, mode="valid"), 0, x)
    x, y = luma(a), luma(b)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s.mean())


def _pngs(folder: Path) -> list[np.ndarray]:
    return [read_png(p) for p in sorted(folder.glob("*.png"))]


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _frame_costs(cfg: RenderConfig, preset: str, frames: int = 60) -> tuple[float, float]:
    """(seconds a frame rendered, seconds a frame skipped) of `preset` here, measured one after the other on fresh
    engines after a first run that compiles the shaders and warms torch up."""
    acfg = AudioConfig()
    track = cut_track("demo", acfg.sample_rate_hz, cfg.fps, 0.0, frames / cfg.fps + 1)
    times = []
    for first, stop in ((0, 10), (0, frames), (frames - 1, frames)):
        with headless_engine(cfg, acfg, live=False) as engine:
            program = track_program(engine, track, preset, cfg.fps)
            times.append(_timed(lambda: render_span(engine, program, first, stop, lambda i, t: engine.read_rgb(t))))
    frame_s = times[1] / frames
    return frame_s, max(times[2] - frame_s, 0.0) / (frames - 1)


def _transport_costs(preset: str, size: tuple[int, int], frames: int = 4, h264: bool = True,
                     render_scale: float | None = 1.0) -> dict[str, float]:
    """Seconds a frame at `size` (times render_scale) for the worker's FFV1 encode, the driver's FFV1 decode and its
    H.264 encode, on pictures of `preset` (the content decides FFV1's size and speed); each coder's start-up is
    counted out (a first frame coded before the timing)."""
    cfg = RenderConfig(width_px=size[0], height_px=size[1], fps=JOB_FPS, render_scale=render_scale)
    acfg = AudioConfig()
    track = cut_track("demo", acfg.sample_rate_hz, JOB_FPS, 0.0, 4.0)
    pictures: list[np.ndarray] = []
    with headless_engine(cfg, acfg, live=False) as engine:
        program = track_program(engine, track, preset, JOB_FPS)
        render_span(engine, program, 60, 60 + frames, lambda i, t: pictures.append(engine.read_rgb(t)))
    writer = ChunkWriter(JOB_FPS)
    writer.add(pictures[0])
    enc = _timed(lambda: [writer.add(p) for p in pictures])
    data = writer.finish()
    decoded = read_chunk([data])
    next(decoded)
    dec = _timed(lambda: list(decoded))
    costs = {"ffv1_encode_s": enc / frames, "ffv1_decode_s": dec / frames, "ffv1_bytes": len(data) / (frames + 1)}
    if h264:
        with tempfile.TemporaryDirectory() as tmp:
            rec = Recorder(Path(tmp) / "x.mp4", size[0], size[1], JOB_FPS, acfg.sample_rate_hz, 2, blocking=True)
            rec.add_video(pictures[0], 0)
            costs["h264_encode_s"] = _timed(lambda: ([rec.add_video(p, i + 1) for i, p in enumerate(pictures)],
                                                     rec.close())) / frames
    return costs


def project(gpus: int, frame_s: float, skip_s: float, chunk_fixed_s: float, join_s: float, ffv1_s: float,
            warm_s: float = 3.0, overlap_s: float = 0.5) -> dict[str, float]:
    """The 4-minute 4K DeepDream job on `gpus` GPUs: chunks of min(30 s, the job / gpus) so that every GPU has one;
    each renders its frames, its warm-up and its tail (DeepDream always needs them), fast-forwards to its start and
    encodes FFV1; the driver joins and encodes H.264 frame by frame as chunks arrive, so the job takes the longer
    of the two, plus the last chunk's join."""
    n = int(JOB_S * JOB_FPS)
    chunk_s = min(30.0, JOB_S / gpus)
    chunks = plan(n, JOB_FPS, chunk_s, warm_s, overlap_s)
    waves = math.ceil(len(chunks) / gpus)
    per_chunk = [(c.stop - c.first + c.tail + min(c.warm, c.first)) * (frame_s + ffv1_s)
                 + max(0, c.first - c.warm) * skip_s + chunk_fixed_s for c in chunks]
    render = waves * max(per_chunk)
    join = n * join_s
    last = (chunks[-1].stop - chunks[-1].first) * join_s
    return {"gpus": gpus, "chunks": len(chunks), "chunk_s": chunk_s, "render_h": render / 3600,
            "join_h": join / 3600, "total_h": (max(render, join - last) + last) / 3600,
            "warm_share": sum(min(c.warm, c.first) for c in chunks) / n}


def run_cluster_bench(cfg: RenderConfig, *, preset: str = "default", seconds: float = 20.0, chunk_s: float = 5.0,
                      warm_s: float = 3.0, overlap_s: float = 0.5, out=print) -> dict:
    acfg = AudioConfig()
    out(f"vj bench cluster: {preset} at {cfg.width_px}x{cfg.height_px}, {seconds:g} s at {cfg.fps:g} fps of the demo "
        f"track, chunks of {chunk_s:g} s (warm-up {warm_s:g} s, cross-fade {overlap_s:g} s where pictures feed "
        f"back); Ray local")
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        opts = dict(chunk_s=chunk_s, warm_s=warm_s, overlap_s=overlap_s, progress=False)
        # Overhead of the split: a cluster of one worker against the plain render, the same job, side by side.
        # Both timed whole, from the call to the finished file (the engine and scene built, the Ray tasks started).
        connect("local", num_cpus=1)
        n = cut_track("demo", acfg.sample_rate_hz, cfg.fps, 0.0, seconds).n_frames
        plain = _timed(lambda: render_offline("demo", tmp / "plain.mp4", preset, cfg, acfg, duration_s=seconds,
                                              progress=False))
        alone: list[dict] = []        # its chunks' own figures: rendered, skipped, elapsed (for the per-chunk cost)
        one = _timed(lambda: render_on_cluster("demo", tmp / "one.mp4", preset, cfg, acfg, cluster="local",
                                               duration_s=seconds, on_chunk=alone.append, **opts))
        figures["split_overhead"] = one / plain
        out(f"  plain render          {plain:7.2f} s ({n / plain:5.1f} fps)")
        out(f"  cluster of 1 worker   {one:7.2f} s ({n / one:5.1f} fps): {one / plain:.2f}x the plain render")
        _disconnect()
        # Seams: the whole render and a split one as PNG frames (exact pixels), compared frame by frame.
        connect("local")
        render_offline("demo", f"{tmp / 'whole'}/", preset, cfg, acfg, duration_s=seconds, progress=False)
        chunks: list[dict] = []
        two = _timed(lambda: render_on_cluster("demo", f"{tmp / 'split'}/", preset, cfg, acfg, cluster="local",
                                               duration_s=seconds, on_chunk=chunks.append, **opts))
        _disconnect()
        out(f"  cluster of 2 workers  {two:7.2f} s ({n / two:5.1f} fps) on this machine's {_cores()} cores "
            f"(PNG frames: not comparable with the two above)")
        whole, split = _pngs(tmp / "whole"), _pngs(tmp / "split")
        err = np.array([np.abs(a.astype(int) - b).max() for a, b in zip(whole, split)])
        starts = sorted(c["first"] for c in chunks if c["first"] > 0)
        exact = [c["first"] for c in chunks if c["exact_start"] and c["first"] > 0]
        overlap = int(round(overlap_s * cfg.fps))
        out(f"  seams at frames {starts}: {len(exact)} start exactly")
        for s in starts:
            region = range(s, min(s + overlap + 1, len(err)))
            out(f"    frame {s}: max error {err[s]} levels; over its cross-fade max {err[list(region)].max()}, "
                f"SSIM min {min(ssim(whole[i], split[i]) for i in region):.4f}")
        away = np.ones(len(err), bool)
        for s in starts:
            away[s:s + overlap + 1] = False
        first_seam = starts[0] if starts else len(err)
        after = np.where(away & (np.arange(len(err)) >= first_seam), err, 0)
        out(f"  before the first seam: max error {err[:first_seam].max()} levels; away from seams after it: max "
            f"{after.max()} (frame {int(after.argmax())}), mean over all frames "
            f"{float(np.mean([np.abs(a.astype(int) - b).mean() for a, b in zip(whole, split)])):.3f}")
        figures["seam_max_error"] = float(err[starts].max()) if starts else 0.0

    frame_s, skip_s = _frame_costs(cfg, preset)
    own = _transport_costs(preset, (cfg.width_px, cfg.height_px), frames=20, h264=False,
                           render_scale=cfg.render_scale)["ffv1_encode_s"]
    # What a chunk of the one-worker run spent beyond its frames: the Ray task, the job folder, the engine and scene
    # (the worker's first chunk also imports torch and the rest).
    fixed = [c["elapsed_s"] - c["rendered"] * frame_s - c["skipped"] * skip_s - c["frames"] * own for c in alone]
    chunk_fixed_s = max(0.0, float(np.median(fixed)))
    out(f"  per frame here: rendered {frame_s * 1e3:.1f} ms, skipped {skip_s * 1e3:.2f} ms "
        f"({frame_s / max(skip_s, 1e-9):.0f}x less), FFV1 {own * 1e3:.1f} ms; per chunk {chunk_fixed_s:.2f} s to "
        f"start (Ray task, job folder, engine, scene)")
    t = _transport_costs(preset, JOB_SIZE)
    out(f"  per 4K frame here: FFV1 encode {t['ffv1_encode_s'] * 1e3:.0f} ms ({t['ffv1_bytes'] / 1e6:.1f} MB), "
        f"driver FFV1 decode {t['ffv1_decode_s'] * 1e3:.0f} ms + H.264 encode {t['h264_encode_s'] * 1e3:.0f} ms")
    join_s = t["ffv1_decode_s"] + t["h264_encode_s"]
    out(f"  projection: 4 min of 4K DeepDream at {JOB_FPS:g} fps, {DREAM_FRAME_S:g} s a frame on a GPU (assumed, "
        f"not measured)")
    for g in (1, 8, 64):
        p = project(g, DREAM_FRAME_S, skip_s, chunk_fixed_s, join_s, t["ffv1_encode_s"])
        out(f"    {g:3d} GPU(s): {p['chunks']:3d} chunks of {p['chunk_s']:5.2f} s, rendering {p['render_h']:6.2f} h, "
            f"driver join {p['join_h']:5.2f} h -> {p['total_h']:6.2f} h (warm-up adds {p['warm_share']:.0%})")
        figures[f"projected_h_{g}"] = p["total_h"]
    return figures


def _disconnect() -> None:
    import ray
    ray.shutdown()


def _cores() -> int:
    import os
    return len(os.sched_getaffinity(0))
