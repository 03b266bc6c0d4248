"""Encoder throughput: how many frames per second the Recorder sustains (prints numbers, asserts nothing)."""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

from vj.output.recorder import Recorder, usable_cores


def sample_frames(width_px: int, height_px: int, n: int = 24, grain: float = 6.0) -> list[np.ndarray]:
    """`n` moving colour fields (H, W, 3) uint8, never static; `grain`: noise sigma in 8-bit steps."""
    y, x = np.mgrid[0:height_px, 0:width_px].astype(np.float32)
    x /= width_px
    y /= height_px
    rng = np.random.default_rng(0)
    frames = []
    for i in range(n):
        t = i / n * 2 * np.pi
        r = np.sin(9 * x + 3 * np.sin(t) + 4 * y)
        g = np.sin(7 * y - 2 * t + 5 * x * y)
        b = np.sin(11 * (x - 0.5) ** 2 + 13 * (y - 0.5) ** 2 - t)
        img = np.stack([r, g, b], axis=-1) * 110 + 128
        if grain > 0:   # fine detail, as from a generator or feedback effects: costs x264 the most
            img += rng.normal(0, grain, img.shape).astype(np.float32)
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return frames


def encoder_fps(width_px: int, height_px: int, preset: str, n_frames: int = 150, fps: float = 30.0,
                grain: float = 6.0) -> float:
    """Frames per second through Recorder (blocking: no drops) including RGB->YUV and audio."""
    frames = sample_frames(width_px, height_px, grain=grain)
    audio = np.zeros((round(48000 / fps), 2), np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        rec = Recorder(os.path.join(tmp, "bench.mp4"), width_px, height_px, fps, preset=preset, blocking=True)
        t0 = time.perf_counter()
        for i in range(n_frames):
            rec.add_video(frames[i % len(frames)], i)
            rec.add_audio(audio)
        rec.close()
        elapsed_s = time.perf_counter() - t0
        if rec.error:
            raise RuntimeError(rec.error)
    return n_frames / elapsed_s


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m vj.output.bench", description=__doc__)
    ap.add_argument("--size", default="1280x720", help="WxH (default 1280x720)")
    ap.add_argument("--presets", default="ultrafast,veryfast")
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--grain", type=float, default=6.0, help="noise sigma of the test frames (0: smooth)")
    args = ap.parse_args(argv)
    w, h = (int(v) for v in args.size.lower().split("x"))
    print(f"encoder {w}x{h}, {args.frames} frames, grain {args.grain:g}, {usable_cores()} cores")
    for preset in args.presets.split(","):
        print(f"  {preset:10s} {encoder_fps(w, h, preset, args.frames, grain=args.grain):7.1f} fps")


if __name__ == "__main__":
    main()
