"""`python -m vj.video.bench [FILE]`: decode + fit cost per frame, sequential and after jumps, in milliseconds.

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

from vj.video.source import VideoSource, fit_frame


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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vj.video.bench", description=__doc__)
    ap.add_argument("file", nargs="?", help="a video file (default: a synthetic 720p clip)")
    ap.add_argument("--size", action="append", default=None, help="output WxH, repeatable (default 256x144, 512x288)")
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
