"""The two ways to play a scene: live in a window (`vj run`) and offline to a file (`vj render`)."""

from __future__ import annotations

import dataclasses
import logging
import queue
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vj.audio.sources import load_track, open_source
from vj.clock import FrameClock
from vj.config import AudioConfig, ControlConfig, RenderConfig
from vj.control.osc import OSCServer
from vj.engine import Engine, OfflinePipeline
from vj.gfx.context import create_headless_context, release_context
from vj.gfx.png import write_png
from vj.output.recorder import Recorder
from vj.output.window import Window

log = logging.getLogger(__name__)


class Progress:
    """A one-line progress bar with fps and ETA on stderr (only when it is a terminal, or when forced)."""

    def __init__(self, total: int, enabled: bool | None = None, label: str = "render"):
        self.total = total
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.label = label
        self.t0 = time.perf_counter()
        self._last = 0.0

    def update(self, done: int) -> None:
        now = time.perf_counter()
        if not self.enabled or (now - self._last < 0.2 and done < self.total):
            return
        self._last = now
        elapsed = now - self.t0
        fps = done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - done) / fps if fps > 0 else 0.0
        width = 30
        fill = int(width * done / max(self.total, 1))
        sys.stderr.write(f"\r{self.label} [{'#' * fill}{'.' * (width - fill)}] {done}/{self.total} frames "
                         f"{fps:5.1f} fps  ETA {eta:4.0f} s ")
        if done >= self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


@dataclass(frozen=True)
class RenderReport:
    path: Path
    frames: int
    duration_s: float
    elapsed_s: float

    @property
    def fps(self) -> float:
        return self.frames / self.elapsed_s if self.elapsed_s > 0 else 0.0


def render_offline(audio: str, out: Path, preset: str, render_cfg: RenderConfig, audio_cfg: AudioConfig, *,
                   start_s: float = 0.0, duration_s: float | None = None, progress: bool | None = None,
                   changes_at: list[tuple[float, str, object]] | None = None) -> RenderReport:
    """Render `audio` through `preset` to a video file, frame-exact: duration x fps frames, audio muxed in.

    `changes_at` holds (time_s, path, value) param changes applied at those times (used by tests).
    """
    sr = audio_cfg.sample_rate_hz
    fps = render_cfg.fps
    samples, _ = load_track(audio, sr)
    start = int(round(max(start_s, 0.0) * sr))
    available_s = (len(samples) - start) / sr
    if available_s <= 0:
        raise ValueError(f"--start {start_s:g} s is past the end of the audio ({len(samples) / sr:.1f} s)")
    duration = available_s if duration_s is None else min(duration_s, available_s)
    n_frames = max(1, int(round(duration * fps)))
    seg_len = int(round(n_frames / fps * sr))
    seg = np.zeros((seg_len, 2), np.float32)
    part = samples[start:start + seg_len]
    seg[:len(part)] = part
    mono = seg.mean(axis=1)

    ctx = create_headless_context()
    engine = Engine(ctx, render_cfg, audio_cfg, live=False)
    recorder = None
    try:
        engine.load_preset(preset)
        recorder = Recorder(out, render_cfg.width_px, render_cfg.height_px, fps, sr, 2, blocking=True,
                            preset=render_cfg.encoder_preset)
        pipe = OfflinePipeline(engine)
        bar = Progress(n_frames, progress)
        pending = sorted(changes_at or [], key=lambda c: c[0])
        written = 0

        def emit(tex) -> None:
            nonlocal written
            recorder.add_video(engine.read_rgb(tex), written)
            written += 1
            bar.update(written)

        t0 = time.perf_counter()
        prev = 0
        for i in range(n_frames):
            t = i / fps
            while pending and pending[0][0] <= t:
                _, path, value = pending.pop(0)
                engine.registry.set(path, value, "timeline")
            # Each frame sees the audio up to the end of its own display interval.
            upto = min(int(round((i + 1) / fps * sr)), seg_len)
            recorder.add_audio(seg[prev:upto])
            pipe.push(mono[prev:upto], t, 1.0 / fps, emit)
            prev = upto
            if recorder.error:
                raise OSError(recorder.error)
        pipe.finish(emit)
        if prev < seg_len:
            recorder.add_audio(seg[prev:])
        recorder.close()
        if recorder.error:
            raise OSError(recorder.error)
        elapsed = time.perf_counter() - t0
    finally:
        if recorder is not None:
            recorder.close()
        engine.close()
        release_context(ctx)
    return RenderReport(Path(out), n_frames, n_frames / fps, elapsed)


KEY_HELP = "keys: f fullscreen, escape quit, left/right preset, b blackout, space freeze, s screenshot"


def run_live(audio: str, preset: str, render_cfg: RenderConfig, audio_cfg: AudioConfig,
             control_cfg: ControlConfig, *, fullscreen: int | None = None, record: Path | None = None,
             duration_s: float | None = None, screenshot: Path | None = None) -> int:
    """The live show: audio in, frames out to a window at the display's rate. Returns frames shown."""
    source = open_source(audio, audio_cfg)
    source.start()
    # A device may refuse the configured rate and open at its own: analyse at the rate it delivers.
    audio_cfg = dataclasses.replace(audio_cfg, sample_rate_hz=source.sample_rate_hz)
    window = engine = osc = recorder = None
    frames = 0
    try:
        window = Window(render_cfg.width_px, render_cfg.height_px, title="vj", fullscreen_monitor=fullscreen)
        engine = Engine(window.ctx, render_cfg, audio_cfg, live=True)
        engine.load_preset(preset)
        if control_cfg.osc_port:
            osc = OSCServer(engine.changes, control_cfg.osc_host, control_cfg.osc_port).start()
        if record is not None:
            recorder = Recorder(record, render_cfg.width_px, render_cfg.height_px, render_cfg.fps,
                                source.sample_rate_hz, 2, preset=render_cfg.encoder_preset)
        log.info("live: preset %s, audio %s; %s", engine.preset.name, source.status, KEY_HELP)
        clock = FrameClock()
        next_report = 5.0
        rec_frames = 0
        while not window.should_close():
            window.poll_events()
            _handle_keys(window, engine, screenshot)
            dt = clock.tick()
            block = source.read()
            mono = block.mean(axis=1) if block.ndim == 2 else block
            try:
                engine.step_live(mono, clock.t_s, dt)
            except Exception as exc:  # the frame boundary: log, keep the show going on the last good state
                log.exception("frame %d failed: %s", frames, exc)
            engine.master.blit_to(window.ctx.screen, (0, 0, *window.framebuffer_size))
            if recorder is not None and not recorder.error:
                due = int(clock.t_s * render_cfg.fps)
                if due >= rec_frames:
                    recorder.add_video(engine.read_rgb(None), due)
                    rec_frames = due + 1
                recorder.add_audio(_stereo(block))
            window.swap()
            frames += 1
            if clock.t_s >= next_report:
                next_report += 5.0
                log.info("display %.1f fps, model %d frames, audio: %s", frames / clock.t_s,
                         engine.model_frames, source.status)
            if duration_s is not None and clock.t_s >= duration_s:
                break
        if screenshot is not None:
            write_png(screenshot, engine.snapshot())
    finally:
        if recorder is not None:
            recorder.close()
            if recorder.error:
                log.error("recording: %s", recorder.error)
        if osc is not None:
            osc.close()
        source.stop()
        if engine is not None:
            engine.close()
        if window is not None:
            window.close()
    return frames


def _stereo(block: np.ndarray) -> np.ndarray:
    if block.ndim == 1:
        block = block[:, None]
    if block.shape[1] == 1:
        return np.repeat(block, 2, axis=1)
    return block[:, :2]


def _handle_keys(window: Window, engine: Engine, screenshot: Path | None) -> None:
    while True:
        try:
            key = window.keys.get_nowait()
        except queue.Empty:
            return
        if key == "f":
            window.toggle_fullscreen()
        elif key == "escape":
            window.request_close()
        elif key == "right":
            engine.step_preset(+1)
        elif key == "left":
            engine.step_preset(-1)
        elif key == "b":
            engine.registry.set("/master/blackout", not engine.registry.get("/master/blackout"), "key")
        elif key == "space":
            engine.registry.set("/master/freeze", not engine.registry.get("/master/freeze"), "key")
        elif key == "s":
            path = screenshot or Path(f"vj-{time.strftime('%Y%m%d-%H%M%S')}.png")
            write_png(path, engine.snapshot())
            log.info("screenshot saved to %s", path)
