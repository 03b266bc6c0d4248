"""`vj replay`: a live session folder (vj.session) rendered again offline, deterministically, at any size and rate.

Two ways, both on the session's own audio, presets and shader copies:

- Without `fps`, the live frame sequence runs again: the same audio blocks, t_s and dt_s per frame, every
  event before the same frame, and each frame takes the model image the live show took (the live worker
  is latest-wins, so that image came from an earlier frame's args, which the log names). Frames go to the
  file on the same ticks as the live recorder's, so at the live size this reproduces the live recording
  within codec error; at another size the events still land on the same frames.
- With `fps`, a fixed-rate offline loop like `vj render`: frame j sees the audio up to (j + 1) / fps, each
  event is applied before the first frame whose audio passes its audio position, and every frame gets its
  own model image.

What is not exact: a model built in the background during the show showed its first image on the frame
it landed; the replay shows the new model from the next image it takes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from pathlib import Path

import numpy as np

from vj.audio.downmix import Downmix
from vj.chunks import render_live_span, render_span
from vj.config import RenderConfig
from vj.control.state import is_command
from vj.engine import Engine
from vj.gfx.isf import ISFError, load_isf
from vj.output.recorder import Recorder, due_ticks
from vj.params import Change
from vj.presets import PresetError
from vj.session import Session, SessionError
from vj.show import FrameEmitter, Progress, RenderReport, finish_writer, headless_engine

log = logging.getLogger(__name__)


class _Events:
    """Applies session events to a replay engine, as the live show applied them."""

    def __init__(self, session: Session, engine: Engine):
        self.session = session
        self.engine = engine

    def apply(self, events: list[dict]) -> None:
        # Shader files reload before a frame's changes are drained, as the live engine's hot reload does.
        for ev in sorted(events, key=lambda e: e["kind"] != "shader"):
            kind = ev["kind"]
            if kind == "shader":
                self._shader(ev)
            elif kind == "preset":
                self._preset(ev)
            elif kind == "change":
                self._change(ev)
            elif kind == "bpm":
                self.engine.analyzer.beats.set_bpm(ev.get("bpm"))
            elif kind == "latency":
                self.engine.output_latency_s = float(ev.get("s", 0.0))

    def _preset(self, ev: dict) -> None:
        engine = self.engine
        try:
            preset = self.session.preset(ev)
            if ev.get("switch") and engine.preset is not None:
                engine._switch_now(preset)      # the live switch's morph and fade, without waiting for a beat again
            else:
                engine.load_preset(preset)
        except (PresetError, SessionError) as exc:
            if engine.preset is None:
                raise
            log.error("replay: %s (the scene stays)", exc)

    def _shader(self, ev: dict) -> None:
        name, path = ev["effect"], self.session.shader_path(ev["file"])
        try:
            shader = load_isf(path, name)
            if self.engine.chain.reload(name, shader):
                self.engine.registry.declare_all(shader.params(f"/fx/{name}"))
        except (ISFError, OSError, KeyError) as exc:
            log.error("replay: shader %s: %s", path.name, exc)

    def _change(self, ev: dict) -> None:
        path, value = ev["path"], ev.get("value")
        change = Change(path, tuple(value) if isinstance(value, list) else value, ev.get("source", ""))
        if is_command(path):
            # Scene and model changes are replayed from their "preset" events (synchronously: a live model switch
            # lands when its loader thread is done, which a replay must not depend on); recording and MIDI
            # commands belong to the show.
            if path.startswith(("/cmd/preset/", "/cmd/model/")) or path not in self.engine.commands:
                return
            self.engine.run_command(change)
        else:
            self.engine.registry.apply(change)


def _cuts(events: list[dict]) -> bool:
    """The events change the scene or a shader (vj.chunks: FrameProgram.cuts_at)."""
    return any(ev["kind"] in ("preset", "shader") for ev in events)


def _holds(events: list[dict]) -> bool:
    """The events may keep the picture of the frame before: a scene change dissolves from it, a freeze holds it."""
    return _cuts(events) or any(ev["kind"] == "change" and ev.get("path") in ("/master/freeze", "/cmd/freeze")
                                for ev in events)


def _block(samples: np.ndarray, start: int, end: int) -> np.ndarray:
    """(end - start, ch) samples, silence past the end of what the session kept."""
    out = samples[start:end]
    if len(out) < end - start:
        out = np.concatenate([out, np.zeros((end - start - len(out), samples.shape[1]), np.float32)])
    return out


class SessionMono:
    """Slices of the session's audio mixed down as the live show heard them from its start (vj.audio.downmix):
    asked in order, the downmix goes on; asked out of order (a chunk of a split render), it runs again from the
    start."""

    def __init__(self, samples: np.ndarray) -> None:
        self.samples = samples                # (n, channels)
        self._mix = Downmix()
        self._end = 0

    def __call__(self, start: int, end: int) -> np.ndarray:
        if start != self._end:
            self._mix.reset()
            for i in range(0, start, 1 << 20):                     # a million samples at a time
                self._mix(_block(self.samples, i, min(start, i + (1 << 20))))
        self._end = end
        return self._mix(_block(self.samples, start, end))


def replay_config(session: Session, size: tuple[int, int] | None = None, render_scale: float | None = None,
                  encoder_preset: str | None = None) -> RenderConfig:
    """The session's render settings with a replay's overrides: size, render scale, encoder preset."""
    cfg = session.render_config
    w, h = size or (cfg.width_px, cfg.height_px)
    scale = render_scale or session.settings.get("render_scale") or cfg.render_scale
    return dataclasses.replace(cfg, width_px=w, height_px=h, render_scale=scale,
                               encoder_preset=encoder_preset or cfg.encoder_preset)


def replay_session(folder: str | Path, out: str | Path, *, size: tuple[int, int] | None = None,
                   fps: float | None = None, render_scale: float | None = None, codec: str = "h264",
                   encoder_preset: str | None = None, progress: bool | None = None) -> RenderReport:
    """Render the session in `folder` to `out`; without `fps` the live frame sequence runs again (module docstring)."""
    session = Session(folder)
    cfg = replay_config(session, size, render_scale, encoder_preset)
    w, h = cfg.width_px, cfg.height_px
    audio_cfg = session.audio_config
    sr = session.sample_rate_hz
    samples = session.audio()
    out_fps = fps or float(session.settings.get("record_fps") or cfg.fps)
    total = session.frames[-1].audio

    with headless_engine(cfg, audio_cfg, live=fps is None, preset_dirs=[session.folder / "presets"]) as engine:
        events = _Events(session, engine)
        recorder = Recorder(out, w, h, out_fps, sr, samples.shape[1], blocking=True, preset=cfg.encoder_preset,
                            codec=codec)
        with contextlib.closing(recorder):
            t0 = time.perf_counter()
            if fps is None:
                written = _replay_live(session, engine, events, recorder, samples, out_fps, progress)
            else:
                written = _replay_fixed(session, engine, events, recorder, samples, fps, progress)
            finish_writer(recorder)
            elapsed = time.perf_counter() - t0
    return RenderReport(Path(out), written, total / sr, elapsed)


def _replay_live(session: Session, engine: Engine, events: _Events, recorder: Recorder, samples: np.ndarray,
                 out_fps: float, progress: bool | None) -> int:
    program = LiveReplayProgram(session, events, samples, out_fps)
    emit = FrameEmitter(engine, recorder, Progress(program.n_frames, progress, label="replay"), audio=program.audio,
                        tick=program.tick)
    render_live_span(engine, program, 0, program.n_frames, emit)
    recorder.add_audio(program.audio_tail())
    return emit.written


class LiveReplayProgram:
    """`vj replay`'s live frame sequence (vj.chunks.LiveProgram): live frame n gets the session's audio block, t_s,
    dt_s and events, and takes the model image its log names; output frame k is the live recorder's k-th frame
    (`tick(k)`: its index in the file, on the recording's clock), with the audio since the one before."""

    def __init__(self, session: Session, events: _Events | None, samples: np.ndarray, fps: float):
        frames = session.frames
        self.fps, self.samples, self.events, self.frames = fps, samples, events, frames
        self._downmix = SessionMono(samples)
        self.n_live = len(frames)
        index = {f.i: n for n, f in enumerate(frames)}
        self._takes = [index.get(f.model) if f.model is not None else None for f in frames]
        self._keeps = {n for n in self._takes if n is not None}
        self._events: list[list[dict]] = [[] for _ in frames]
        for ev in session.events:
            if ev["frame"] in index:
                self._events[index[ev["frame"]]].append(ev)
        self.tick_frame: list[int] = []
        self._ticks: list[int] = []
        next_tick = 0
        for n, f in enumerate(frames):
            for tick in due_ticks(f.t_s, fps, next_tick):
                self.tick_frame.append(n)
                self._ticks.append(tick)
                next_tick = tick + 1
        self.n_frames = len(self._ticks)

    def tick(self, k: int) -> int:
        return self._ticks[k]

    def holds_at(self, n: int) -> bool:
        return _holds(self._events[n])

    def before(self, n: int) -> None:
        self.events.apply(self._events[n])

    def times(self, n: int) -> tuple[float, float]:
        return self.frames[n].t_s, self.frames[n].dt_s

    def takes(self, n: int) -> int | None:
        return self._takes[n]

    def keeps(self, n: int) -> bool:
        return n in self._keeps

    def _audio_end(self, n: int) -> int:
        return self.frames[n].audio if n >= 0 else 0

    def mono(self, n: int) -> np.ndarray:
        return self._downmix(self._audio_end(n - 1), self._audio_end(n))

    def audio(self, k: int) -> np.ndarray:
        """The session's samples from output frame k - 1's live frame to output frame k's (none after the first of
        several output frames of one live frame)."""
        before = self.tick_frame[k - 1] if k else -1
        return _block(self.samples, self._audio_end(before), self._audio_end(self.tick_frame[k]))

    def audio_tail(self) -> np.ndarray:
        """The samples after the last output frame's live frame, to the session's end."""
        last = self.tick_frame[-1] if self.tick_frame else -1
        return _block(self.samples, self._audio_end(last), self._audio_end(self.n_live - 1))


class ReplayProgram:
    """`vj replay --fps`'s frames (vj.chunks.FrameProgram): frame j sees the session's audio up to (j + 1) / fps,
    and each event is applied before the first frame whose audio passes the event's audio position."""

    def __init__(self, session: Session, events: _Events | None, samples: np.ndarray, fps: float):
        sr = session.sample_rate_hz
        total = session.frames[-1].audio
        self.fps, self.samples, self.events = fps, samples, events
        self._downmix = SessionMono(samples)
        self.n_frames = max(1, math.ceil(total / sr * fps))
        self._ends = [min(int(round((j + 1) / fps * sr)), total) for j in range(self.n_frames)]
        pending = list(session.events)
        self._due: list[list[dict]] = []
        prev = 0
        for upto in self._ends:
            due = []
            while pending and pending[0]["audio"] < max(upto, prev + 1):
                due.append(pending.pop(0))
            self._due.append(due)
            prev = upto

    def cuts_at(self, j: int) -> bool:
        return _cuts(self._due[j])

    def holds_at(self, j: int) -> bool:
        return _holds(self._due[j])

    def before(self, j: int) -> None:
        self.events.apply(self._due[j])

    def audio(self, j: int) -> np.ndarray:
        return _block(self.samples, self._ends[j - 1] if j else 0, self._ends[j])

    def mono(self, j: int) -> np.ndarray:
        return self._downmix(self._ends[j - 1] if j else 0, self._ends[j])


def _replay_fixed(session: Session, engine: Engine, events: _Events, recorder: Recorder, samples: np.ndarray,
                  fps: float, progress: bool | None) -> int:
    program = ReplayProgram(session, events, samples, fps)
    emit = FrameEmitter(engine, recorder, Progress(program.n_frames, progress, label="replay"), audio=program.audio)
    render_span(engine, program, 0, program.n_frames, emit)
    return emit.written
