"""`vj bench`: per-stage timings and whole-pipeline rates measured side by side in one run."""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vj.audio.analyzer import Analyzer
from vj.audio.demo import demo_track
from vj.config import AudioConfig, RenderConfig
from vj.engine import Engine, OfflinePipeline
from vj.gfx.context import create_headless_context, describe, release_context
from vj.output.recorder import Recorder
from vj.show import render_offline


ENCODERS = ("quick", "veryfast", "ultrafast")     # the render default first, then x264's two usual ones
RENDER_SECONDS = 8.0                               # the shortest whole-pipeline render


def _scene_frames(engine: Engine, track: np.ndarray, sr: int, fps: float, n: int, start_s: float) -> list:
    """`n` consecutive frames of the loaded scene on the demo track from `start_s`, as the recorder receives them."""
    movie: list[np.ndarray] = []
    pipe = OfflinePipeline(engine)

    def emit(tex) -> None:
        movie.append(engine.read_rgb(tex))
    for i in range(n):
        a, b = (int(round((start_s + k / fps) * sr)) for k in (i, i + 1))
        pipe.push(track[a:b], i / fps, 1.0 / fps, emit)
    pipe.finish(emit)
    return movie


def _frame_paths(engine: Engine, raw, frames: int, out) -> dict[str, float]:
    """CUDA only: model output (on the GPU) -> GL texture, finished, per frame path, side by side."""
    from vj.gfx.upload import TextureUploader
    from vj.models.worker import ModelWorker
    rates = {}
    for path in ("host", "pinned", "interop"):
        worker = ModelWorker(engine.worker.generator, name=f"vj-bench-{path}", frame_path=path)
        uploader = TextureUploader(engine.ctx)
        try:
            def step():
                with torch.inference_mode():
                    image, gl_rgba = worker.to_frame(raw)
                uploader.upload(image, gl_rgba)
                engine.ctx.finish()
            times = _time(step, frames)
            out(f"  to texture {path:8s} {_stats(times)}")
            rates[f"frame_path_{path}_fps"] = 1.0 / float(np.median(times))
        except Exception as exc:     # noqa: BLE001 - interop is refused where GL is not on the GPU; say so
            out(f"  to texture {path:8s} failed: {exc}")
        finally:
            uploader.release()
            worker.close()
    return rates


def _stats(samples_s: list[float]) -> str:
    a = np.asarray(samples_s) * 1e3
    p50, p99 = np.percentile(a, 50), np.percentile(a, 99)
    return f"p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  ({1000.0 / p50:6.1f} /s)"


def _time(fn, n: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def run_bench(render_cfg: RenderConfig, audio_cfg: AudioConfig, *, frames: int = 90, preset: str = "default",
              out=print) -> dict[str, float]:
    """Prints a table; returns the headline rates (frames per second) by name."""
    w, h = render_cfg.width_px, render_cfg.height_px
    out(f"vj bench: preset {preset}, {w}x{h}, model {render_cfg.model_width_px}x{render_cfg.model_height_px}, "
        f"{frames} frames per stage")
    results: dict[str, float] = {}

    sr = audio_cfg.sample_rate_hz
    track = demo_track(sr).mean(axis=1)
    analyzer = Analyzer(audio_cfg)
    seconds = 10.0
    chunk = track[: int(seconds * sr)]
    t0 = time.perf_counter()
    hops = 0
    for i in range(0, len(chunk), audio_cfg.block_frames):
        hops += len(analyzer.process(chunk[i:i + audio_cfg.block_frames]))
    el = time.perf_counter() - t0
    out(f"  analysis        {el / hops * 1e6:8.1f} us per hop ({hops} hops), real-time factor {seconds / el:6.0f}x")

    ctx = create_headless_context()
    engine = Engine(ctx, render_cfg, audio_cfg, live=False)
    try:
        engine.load_preset(preset)
        out(f"  GL: {describe(ctx)}; shader chain at {engine.chain_size[0]}x{engine.chain_size[1]} "
            f"(render scale {engine.render_scale:g})")
        frame, args = engine.prepare(chunk[:800], 0.0, 1 / 30)
        res = engine.worker.render_now(args)
        model = _time(lambda: engine.worker.render_now(args), frames)
        out(f"  model alone     {_stats(model)}")
        results["model_fps"] = 1.0 / float(np.median(model))
        upload = _time(lambda: (engine.uploader.upload(res.image, res.gl_rgba), ctx.finish()), frames)
        out(f"  upload          {_stats(upload)}  (frame path {engine.worker.frame_path if res.gl_rgba else 'host'})")
        with torch.inference_mode():
            raw = engine.worker.generator.render(args)
        if raw.device.type == "cuda":        # CUDA only: each way from the model's output tensor to the texture
            results.update(_frame_paths(engine, raw, frames, out))
        engine.take_model_result(res)

        def chain_only():
            engine.compose(frame)
            ctx.finish()
        shaders = _time(chain_only, frames)
        out(f"  shader chain    {_stats(shaders)}  ({len(engine.preset.effects)} effects + master)")
        results["shaders_fps"] = 1.0 / float(np.median(shaders))
        readback = _time(lambda: engine.read_rgb(None), frames)
        out(f"  readback        {_stats(readback)}")
        # The encoder is timed on real consecutive frames of the scene: x264's cost depends on the motion (a
        # shifted still frame, which motion search finds exactly, costs it a fraction of a zooming, spinning one).
        movie = _scene_frames(engine, track, sr, render_cfg.fps, frames, start_s=20.0)
    finally:
        engine.close()

    with tempfile.TemporaryDirectory() as tmp:
        for enc in ENCODERS:
            rec = Recorder(Path(tmp) / f"enc-{enc}.mp4", w, h, render_cfg.fps, sr, 2, blocking=True, preset=enc)
            t0 = time.perf_counter()
            for i, rgb in enumerate(movie):
                rec.add_video(rgb, i)
            rec.close()
            el = time.perf_counter() - t0
            size_mb = (Path(tmp) / f"enc-{enc}.mp4").stat().st_size / 1e6
            out(f"  encode {enc:9s} {el / frames * 1e3:7.2f} ms per frame ({frames / el:6.1f} fps; "
                f"{movie[0].shape[1]}x{movie[0].shape[0]} scaled to {w}x{h}; {size_mb:.2f} MB)")
            results[f"encode_fps_{enc}"] = frames / el

        live_fps, model_rate, p50_ms, p99_ms = _live_rate(ctx, render_cfg, audio_cfg, preset, seconds=4.0)
        out(f"  live loop       display {live_fps:6.1f} fps, model {model_rate:6.1f} fps (no vsync, offscreen); "
            f"frame time p50 {p50_ms:.1f} ms, p99 {p99_ms:.1f} ms")
        results["live_display_fps"], results["live_model_fps"] = live_fps, model_rate
        results["live_frame_p50_ms"], results["live_frame_p99_ms"] = p50_ms, p99_ms
        slow_fps, slow_model, _, _ = _live_rate(ctx, render_cfg, audio_cfg, preset, seconds=4.0, model_delay_s=0.2)
        out(f"  live, slow model display {slow_fps:5.1f} fps, model {slow_model:6.1f} fps (model slowed by 200 ms)")
        results["live_display_fps_slow_model"] = slow_fps

        # At least 8 s each: the model's first call (a trace) and the encoder's start are in every render,
        # and over 3 s they read as a frame rate 10-15 % below the steady one.
        whole_s = max(frames / render_cfg.fps, RENDER_SECONDS)
        for enc in ENCODERS:
            cfg = dataclasses.replace(render_cfg, encoder_preset=enc)
            rep = render_offline("demo", Path(tmp) / f"whole-{enc}.mp4", preset, cfg, audio_cfg, start_s=20.0,
                                 duration_s=whole_s, progress=False)
            out(f"  whole pipeline  {rep.fps:6.1f} fps offline render, encoder {enc} ({rep.frames} frames, "
                f"{rep.duration_s / rep.elapsed_s:.2f}x real time at {render_cfg.fps:g} fps)")
            results[f"render_fps_{enc}"] = rep.fps
    release_context(ctx)
    return results


def _live_rate(ctx, render_cfg: RenderConfig, audio_cfg: AudioConfig, preset: str, seconds: float,
               model_delay_s: float = 0.0):
    """Display and model rates of the live loop (threaded model, latest wins) without vsync, and the p50/p99
    of its frame times in ms (a frame: step_live plus the GL finish)."""
    engine = Engine(ctx, render_cfg, audio_cfg, live=True)
    try:
        engine.load_preset(preset)
        if model_delay_s > 0:
            render = engine.generator.render

            def slow_render(args):
                time.sleep(model_delay_s)
                return render(args)
            engine.generator.render = slow_render
        track = demo_track(audio_cfg.sample_rate_hz).mean(axis=1)
        sr = audio_cfg.sample_rate_hz
        pos = int(20 * sr)
        t0 = last = time.perf_counter()
        n = 0
        model0 = engine.model_frames
        frame_ms = []
        while last - t0 < seconds:
            now = time.perf_counter()
            dt = now - last
            last = now
            k = int(dt * sr)
            engine.step_live(track[pos:pos + k], now - t0, dt)
            pos += k
            ctx.finish()
            frame_ms.append((time.perf_counter() - now) * 1e3)
            n += 1
        el = time.perf_counter() - t0
        return n / el, (engine.model_frames - model0) / el, float(np.percentile(frame_ms, 50)), \
            float(np.percentile(frame_ms, 99))
    finally:
        engine.close()
