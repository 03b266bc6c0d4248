"""`python -m vj.video.bench [FILE]`: decode + fit cost per frame, sequential, after jumps and on cuts, in ms.

The cut benchmark plays FILE the way the `video` generator does, in real time (a 30 fps show, a cut
to a seeded random start every second), once seeking on the cut and once with the cut prefetched, and
times the render of each cut frame; the other frames show what the prefetch thread costs beside it.
Without FILE it writes a synthetic 1280x720 H.264 clip (10 s at 25 fps, a keyframe every 2 s) to a
temporary folder first, so the numbers compare between machines.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from vj.video.clips import CutPlan
from vj.video.source import Prefetcher, VideoSource, fit_frame


def synthetic_clip(path: Path, width_px: int = 1280, height_px: int = 720, fps: int = 25, seconds: int = 10) -> Path:
    """Moving gradients with noise, so the encoder has real work to do."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height_px, 0:width_px].astype(np.float32)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = width_px, height_px, "yuv420p"
        s.options = {"g": str(2 * fps), "preset": "ultrafast"}
        for i in range(fps * seconds):
            img = np.stack([(xx + 8 * i) % 256, (yy + 5 * i) % 256, (xx + yy) % 256], axis=-1)
            img += rng.normal(0, 12, img.shape).astype(np.float32)
            frame = av.VideoFrame.from_ndarray(np.clip(img, 0, 255).astype(np.uint8), format="rgb24")
            c.mux(s.encode(frame))
        c.mux(s.encode())
    return path


def bench(path: Path, width_px: int, height_px: int, jumps: int = 20) -> dict[str, float]:
    with VideoSource(path) as src:
        fps, n = src.info.fps, int(src.duration_s * src.info.fps)
        seq_ms = []
        for i in range(n):
            t0 = time.perf_counter()
            fit_frame(src.frame_at(i / fps), width_px, height_px)
            seq_ms.append((time.perf_counter() - t0) * 1000.0)
        rng = np.random.default_rng(1)
        jump_ms = []
        for t in rng.uniform(0.0, src.duration_s, jumps):
            src.frame_at(0.0)
            t0 = time.perf_counter()
            fit_frame(src.frame_at(float(t)), width_px, height_px)
            jump_ms.append((time.perf_counter() - t0) * 1000.0)
    return {"sequential_median_ms": float(np.median(seq_ms)), "jump_median_ms": float(np.median(jump_ms)),
            "jump_max_ms": float(np.max(jump_ms))}


def bench_cuts(path: Path, width_px: int, height_px: int, prefetch: bool, cuts: int = 12,
               cut_every_s: float = 1.0, show_fps: float = 30.0) -> dict[str, float]:
    """Play FILE paced at show_fps, cutting to the `CutPlan`'s seeded start every cut_every_s; ms per frame.

    The same steps as the `video` generator on one file (which lives a layer up): after cut k the
    next start is requested from the `Prefetcher`, and the cut frame takes the positioned decoder.
    """
    src = VideoSource(path)
    plan = CutPlan(1, [src.duration_s])
    every = max(1, round(cut_every_s * show_fps))
    cut_ms, other_ms = [], []
    hits = seeks = 0
    prefetcher = Prefetcher() if prefetch else None
    try:
        media_t_s, next_s = 0.0, time.perf_counter()
        for i in range(1, cuts * every + 1):
            k = i // every
            is_cut = i % every == 0
            media_t_s = plan.start_s(k) if is_cut else media_t_s + 1.0 / show_fps
            if prefetcher is not None and (is_cut or i == 1):
                prefetcher.request(k + 1, path, plan.start_s(k + 1))       # advance: a request, no decoding
            t0 = time.perf_counter()
            if is_cut and prefetcher is not None:
                ready = prefetcher.take(k, media_t_s)
                if ready is not None:
                    src.close()
                    src, hits = ready, hits + 1
            before = src.seeks
            fit_frame(src.frame_at(media_t_s), width_px, height_px)
            seeks += src.seeks - before
            (cut_ms if is_cut else other_ms).append((time.perf_counter() - t0) * 1000.0)
            next_s += 1.0 / show_fps
            time.sleep(max(0.0, next_s - time.perf_counter()))       # real time: the prefetch gets its wall time
    finally:
        src.close()
        if prefetcher is not None:
            prefetcher.close()
    return {"cut_median_ms": float(np.median(cut_ms)), "cut_max_ms": float(np.max(cut_ms)),
            "other_median_ms": float(np.median(other_ms)), "other_max_ms": float(np.max(other_ms)),
            "hits": hits, "cuts": len(cut_ms), "seeks": seeks}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vj.video.bench", description=__doc__)
    ap.add_argument("file", nargs="?", help="a video file (default: a synthetic 720p clip)")
    ap.add_argument("--size", action="append", default=None, help="output WxH, repeatable (default 256x144, 512x288)")
    ap.add_argument("--cuts", type=int, default=12, help="cuts timed per mode, one a second (0: skip; default 12)")
    opts = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(opts.file) if opts.file else synthetic_clip(Path(tmp) / "synthetic_720p.mp4")
        with VideoSource(path) as src:
            info = src.info
        print(f"{path.name}: {info.width_px}x{info.height_px}, {info.fps:g} fps, {info.duration_s:.1f} s")
        for size in opts.size or ["256x144", "512x288"]:
            w, h = (int(v) for v in size.lower().split("x"))
            r = bench(path, w, h)
            print(f"to {w}x{h}: sequential median {r['sequential_median_ms']:.1f} ms/frame; "
                  f"jump median {r['jump_median_ms']:.1f} ms, max {r['jump_max_ms']:.1f} ms")
        if opts.cuts > 0:
            w, h = (int(v) for v in (opts.size or ["256x144"])[0].lower().split("x"))
            for prefetch in (False, True):
                r = bench_cuts(path, w, h, prefetch, cuts=opts.cuts)
                label = "prefetched" if prefetch else "seek on cut"
                print(f"cuts to {w}x{h}, {label:>11}: cut frame median {r['cut_median_ms']:.1f} ms, "
                      f"worst {r['cut_max_ms']:.1f} ms; other frames median {r['other_median_ms']:.1f} ms, "
                      f"worst {r['other_max_ms']:.1f} ms; {r['seeks']} seeks in render, "
                      f"{r['hits']}/{r['cuts']} cuts prefetched")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
