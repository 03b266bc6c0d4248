"""The two ways to play a scene: live in a window (`vj run`) and offline to a file (`vj render`)."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import queue
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vj.audio.downmix import Downmix, downmix
from vj.audio.features import Features
from vj.audio.sources import load_track, open_source
from vj.chunks import render_span
from vj.clock import FrameClock
from vj.config import AudioConfig, ControlConfig, RecordConfig, RenderConfig, SyncConfig
from vj.control.midi import MIDI_COMMANDS, MidiInput
from vj.control.web import start_control_servers
from vj.engine import NOTE_S, Engine
from vj.gfx.context import create_headless_context, release_context
from vj.gfx.hud import Hud, format_stats
from vj.gfx.png import encode_png, write_png
from vj.mapping.calibrate import CALIBRATE, output_params
from vj.mapping.spec import load_outputs
from vj.mapping.windows import OutputWindows
from vj.output.recorder import Recorder, RecorderError, due_ticks
from vj.output.window import Window
from vj.params import Change
from vj.session import SessionTap, SessionWriter
from vj.showstate import Resume, supervised
from vj.sync.link import LINK_PARAMS, LinkSession, LinkSync
from vj.sync.midiclock import MIDI_CLOCK_PARAMS, MidiClockOut
from vj.timing import FrameRecord, LatencyEstimate
from vj.watchdog import FrameWatchdog

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


class FrameEmitter:
    """`render_span`'s `emit` for a writer: each frame's audio (when `audio` gives it) then its picture, read back,
    in order, at the file's next frame (or at `tick(i)`: a live replay's recording skips frames after a stall);
    counts `written`, moves the progress bar and raises OSError as soon as the writer has failed."""

    def __init__(self, engine: Engine | None, writer, bar: Progress,
                 audio: Callable[[int], np.ndarray] | None = None, tick: Callable[[int], int] | None = None):
        self.engine, self.writer, self.bar, self.audio, self.tick = engine, writer, bar, audio, tick
        self.written = 0

    def __call__(self, i: int, tex) -> None:
        self.write(i, self.engine.read_rgb(tex))

    def write(self, i: int, rgb: np.ndarray) -> None:
        """Frame i's audio and picture (H, W, 3) uint8 to the writer (the cluster's joiner writes through this too)."""
        if self.audio is not None:
            self.writer.add_audio(self.audio(i))
        self.writer.add_video(rgb, self.tick(i) if self.tick is not None else self.written)
        self.written += 1
        self.bar.update(self.written)
        if self.writer.error:
            raise OSError(self.writer.error)


@contextlib.contextmanager
def headless_engine(render_cfg: RenderConfig, audio_cfg: AudioConfig, **kwargs) -> Iterator[Engine]:
    """An Engine on its own EGL context (offline renders, replays); closed and the context released after."""
    ctx = create_headless_context()
    engine = Engine(ctx, render_cfg, audio_cfg, **kwargs)
    try:
        yield engine
    finally:
        engine.close()
        release_context(ctx)


def finish_writer(writer) -> None:
    """Close a Recorder or FrameSequence, waiting for its last frames; an error it met is raised as OSError."""
    writer.close()
    if writer.error:
        raise OSError(writer.error)


@dataclass(frozen=True)
class Track:
    """The part of a track a render plays: `seg` (n, 2) float32 from `start` (samples into `samples`), silence-padded
    to exactly n_frames display intervals."""
    samples: np.ndarray
    start: int
    seg: np.ndarray
    n_frames: int


def cut_track(audio: str, sample_rate_hz: int, fps: float, start_s: float = 0.0,
              duration_s: float | None = None, samples: np.ndarray | None = None) -> Track:
    """The frames' part of `audio` (decoded, or `samples` already decoded from it)."""
    sr = sample_rate_hz
    if samples is None:
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
    return Track(samples, start, seg, n_frames)


class TrackProgram:
    """`vj render`'s frames (vj.chunks.FrameProgram): frame i sees the audio up to the end of its own display
    interval, and the timeline's cues for it run before it."""

    def __init__(self, track: Track, fps: float, sample_rate_hz: int, player=None):
        self.track, self.fps, self.player = track, fps, player
        self.n_frames = track.n_frames
        self._mono = downmix(track.seg)
        seg_len = len(track.seg)
        self._ends = [min(int(round((i + 1) / fps * sample_rate_hz)), seg_len) for i in range(self.n_frames)]

    def _bounds(self, i: int) -> slice:
        return slice(self._ends[i - 1] if i else 0, self._ends[i])

    def cuts_at(self, i: int) -> bool:
        return self.player is not None and self.player.cuts_at(i)

    def holds_at(self, i: int) -> bool:
        return self.cuts_at(i)       # scene changes and commands (freeze among them)

    def before(self, i: int) -> None:
        if self.player is not None:
            self.player.apply(i, i / self.fps)

    def mono(self, i: int) -> np.ndarray:
        return self._mono[self._bounds(i)]

    def audio(self, i: int) -> np.ndarray:
        return self.track.seg[self._bounds(i)]

    def audio_tail(self) -> np.ndarray:
        """What follows the last frame's interval (the rounding of the last one), muxed after it."""
        return self.track.seg[self._ends[-1]:]


def track_program(engine: Engine, track: Track, preset: str, fps: float, timeline=None) -> TrackProgram:
    """The engine with `preset` loaded and `timeline` (a vj.timeline.Timeline, or None) checked against it."""
    from vj.timeline import prepare_timeline
    engine.load_preset(preset)
    player = None
    if timeline is not None:
        player = prepare_timeline(timeline, engine, downmix(track.samples), fps,
                                  start_s=track.start / engine.audio_cfg.sample_rate_hz, audio_cfg=engine.audio_cfg)
    return TrackProgram(track, fps, engine.audio_cfg.sample_rate_hz, player)


def open_writer(out: Path | str, render_cfg: RenderConfig, sample_rate_hz: int, channels: int = 2, *,
                fps: float | None = None, codec: str = "h264"):
    """A blocking Recorder for a video file, or a FrameSequence for a folder of PNG frames (vj.output.frames)."""
    from vj.output.frames import FrameSequence, is_frame_sequence
    w, h, fps = render_cfg.width_px, render_cfg.height_px, fps or render_cfg.fps
    if is_frame_sequence(out):
        return FrameSequence(out, w, h, fps, sample_rate_hz, channels)
    return Recorder(out, w, h, fps, sample_rate_hz, channels, blocking=True, preset=render_cfg.encoder_preset,
                    codec=codec)


def render_offline(audio: str, out: Path | str, preset: str, render_cfg: RenderConfig, audio_cfg: AudioConfig, *,
                   start_s: float = 0.0, duration_s: float | None = None, progress: bool | None = None,
                   timeline: Path | str | None = None) -> RenderReport:
    """Render `audio` through `preset` to a video file, frame-exact: duration x fps frames, audio muxed in.

    `out` may be an image sequence instead (a folder, a path ending in /, or frames/%06d.png: PNG frames and
    audio.wav). `timeline` is a timeline file (vj.timeline) whose cues switch scenes and move params; it is
    checked completely before anything is written.
    """
    from vj.timeline import load_timeline
    fps = render_cfg.fps
    track = cut_track(audio, audio_cfg.sample_rate_hz, fps, start_s, duration_s)
    cues = load_timeline(timeline) if timeline is not None else None
    with headless_engine(render_cfg, audio_cfg, live=False) as engine:
        program = track_program(engine, track, preset, fps, cues)
        with contextlib.closing(open_writer(out, render_cfg, audio_cfg.sample_rate_hz)) as recorder:
            emit = FrameEmitter(engine, recorder, Progress(track.n_frames, progress), audio=program.audio)
            t0 = time.perf_counter()
            render_span(engine, program, 0, track.n_frames, emit)
            recorder.add_audio(program.audio_tail())
            finish_writer(recorder)
            elapsed = time.perf_counter() - t0
    return RenderReport(Path(out), track.n_frames, track.n_frames / fps, elapsed)


def preview_step(width_px: int) -> int:
    """Pixel stride of the web page's preview: about 160 px wide whatever the render size."""
    return max(1, width_px // 160)


KEY_COMMANDS = {"right": "/cmd/preset/next", "left": "/cmd/preset/prev", "b": "/cmd/blackout",
                "space": "/cmd/freeze", "t": "/cmd/tap"}
KEY_HELP = ("keys: f fullscreen, h HUD, escape quit, left/right preset, b blackout, space freeze, "
            "t tap tempo, r record, s screenshot")


class FrameStats:
    """Rolling display frame times for the HUD: fps, p50/p99 and frames that came late."""

    def __init__(self, window: int = 240):
        self.times_s: deque[float] = deque(maxlen=window)
        self.late = 0

    def add(self, dt_s: float) -> None:
        if self.times_s and dt_s > 1.5 * float(np.median(self.times_s)) and dt_s > 0.02:
            self.late += 1      # a frame that took more than 1.5x the usual: the picture stuttered
        self.times_s.append(dt_s)

    def summary(self) -> dict:
        if not self.times_s:
            return {}
        a = np.asarray(self.times_s) * 1e3
        p50 = float(np.percentile(a, 50))
        return {"display_fps": 1000.0 / p50 if p50 > 0 else 0.0, "frame_ms_p50": p50,
                "frame_ms_p99": float(np.percentile(a, 99)), "late_frames": self.late}


class LiveShow:
    """One live session: window, engine, audio source, OSC, optional recorder and HUD. Main thread only."""

    def __init__(self, audio: str, preset: str, render_cfg: RenderConfig, audio_cfg: AudioConfig,
                 control_cfg: ControlConfig, *, fullscreen: int | None = None, record: Path | None = None,
                 screenshot: Path | None = None, hud: bool = False, record_cfg: RecordConfig = RecordConfig(),
                 session: Path | None = None, outputs: Path | None = None, sync: SyncConfig = SyncConfig()):
        self.render_cfg = render_cfg
        self.record_cfg = record_cfg
        self.screenshot = screenshot
        self.window = self.engine = self.osc = self.recorder = self.hud = self.midi = self.session = None
        self.outputs: OutputWindows | None = None       # projector windows of an outputs file (vj.mapping)
        self.watchdog: FrameWatchdog | None = None
        self.link: LinkSync | None = None               # Ableton Link (vj.sync.link)
        self.clock_out: MidiClockOut | None = None      # MIDI clock out (vj.sync.midiclock)
        self.ndi = None                                 # NDI out (NdiSender), or a Syphon/Spout QueuedSender
        self._preview_rgb: np.ndarray | None = None     # a small frame for the web page (main thread writes)
        self._rgb: np.ndarray | None = None             # this frame's read-back picture (_frame_rgb) ...
        self._rgb_frame = -1                            # ... and the frame it is of
        self._finishing: list[Recorder] = []      # stopped recorders still flushing on their own threads
        self.source = open_source(audio, audio_cfg)
        try:
            self.source.start()
            # A device may refuse the configured rate and open at its own: analyse at the rate it delivers.
            self.audio_cfg = dataclasses.replace(audio_cfg, sample_rate_hz=self.source.sample_rate_hz)
            self.window = Window(render_cfg.width_px, render_cfg.height_px, title="vj",
                                 fullscreen_monitor=fullscreen)
            self.engine = Engine(self.window.ctx, render_cfg, self.audio_cfg, live=True)
            self.engine.load_preset(preset)
            if outputs is not None:           # a broken file stops the start; edits later keep the last good one
                self.outputs = OutputWindows(self.window, load_outputs(outputs))
                self.engine.declare_show_params(output_params(self.outputs.file))
            self.osc = start_control_servers(self.engine.hub, control_cfg, preview=self._preview_png)
            for url in self.osc.urls():
                log.info("control: %s", url)
            if control_cfg.midi_port is not None or control_cfg.midi_map:
                # A missing port or MIDI system only logs (and retries); a broken mapping file stops the start.
                self.midi = MidiInput(self.engine.hub, control_cfg.midi_port, control_cfg.midi_map,
                                      api=control_cfg.midi_api).start()
                for path in MIDI_COMMANDS:
                    self.engine.commands[path] = lambda v, path=path: self.midi.command(path, v)
            self._start_sync(sync)
            if record is not None:      # here, not via start_recording: a bad --record path stops the start
                self.recorder = self._new_recorder(record)
            if session is not None:     # likewise a session folder that cannot be written
                self.session = SessionTap(SessionWriter(session, self._session_settings(record),
                                                        self.source.sample_rate_hz, 2), self.engine)
            self.hud = Hud(self.window.ctx)
        except BaseException:
            self.close()
            raise
        self.hud_visible = hud
        self.clock = FrameClock()
        self.stats = FrameStats()
        self.frames = 0
        self._downmix = Downmix()                 # the input to mono for the analysis, from the first frame on
        self._rec_frames = 0
        self._rec_t0 = 0.0
        self._midi_bpm = 0.0
        self._midi_preset = None                 # the preset whose MIDI mappings the router has
        self.engine.commands["/cmd/record/start"] = lambda v: self.start_recording(v)
        self.engine.commands["/cmd/record/stop"] = lambda v: self.stop_recording()
        self._audio_status = self.source.status
        self._recording_error_logged = False
        self._hud_lines: list = []
        self._hud_at = 0.0
        self._outputs_failed = ""                # the last error the output windows raised, logged once
        self.latency = LatencyEstimate(self.audio_cfg.block_frames / self.audio_cfg.sample_rate_hz,
                                       self.audio_cfg.hop_samples / self.audio_cfg.sample_rate_hz)
        self.probe: Callable[[], float] | None = None       # set by `vj bench latency`
        self.frame_log: list[FrameRecord] | None = None      # set to a list to keep every frame's record
        self._stall_note: tuple[str, float] | None = None    # the newest frame-loop stall, for the HUD
        self.watchdog = FrameWatchdog()         # made here: it watches the thread that runs the show

    def _start_sync(self, sync: SyncConfig) -> None:
        """Link, MIDI clock out and NDI out, as asked. A Link or NDI that cannot start stops the start with its
        reason; a MIDI clock port that is missing is only waited for (a drum machine may be plugged in later)."""
        if sync.link:
            self.link = LinkSync(LinkSession(quantum=sync.link_quantum))
            self.engine.declare_show_params(LINK_PARAMS)
            self.engine.beat_source = self._link_beat
        if sync.midi_clock_port is not None:
            self.clock_out = MidiClockOut(sync.midi_clock_port, api=sync.midi_clock_api).start()
            self.engine.declare_show_params(MIDI_CLOCK_PARAMS)
        if sync.ndi_name is not None:
            cfg = self.render_cfg
            if sync.share == "ndi":
                from vj.ndi.sender import NdiSender   # cyndilib loads the NDI runtime: only when asked for
                self.ndi = NdiSender(sync.ndi_name, cfg.width_px, cfg.height_px, cfg.fps,
                                     audio_rate_hz=self.source.sample_rate_hz if sync.ndi_audio else None)
            elif sync.share == "syphon":              # macOS only, untested here (vj/share/syphon.py)
                from vj.share.syphon import SyphonSender
                self.ndi = SyphonSender(sync.ndi_name, cfg.width_px, cfg.height_px, cfg.fps)
            else:                                     # Windows only, untested here (vj/share/spout.py)
                from vj.share.spout import SpoutSender
                self.ndi = SpoutSender(sync.ndi_name, cfg.width_px, cfg.height_px, cfg.fps)

    def _link_beat(self, f: Features) -> Features:
        """The engine's beat_source while Link runs: the session's beat while following it (vj.sync.link)."""
        beats = self.engine.analyzer.beats
        out, request = self.link.step(self.engine.registry, f, beats.latest.bpm, self.engine.lookahead_s)
        if request is not None and not self.link.following:
            beats.set_bpm(request)          # leading: the performer's tempo is vj's own too
        return out

    def run(self, duration_s: float | None = None) -> int:
        log.info("live: preset %s, audio %s; %s", self.engine.preset.name, self.source.status, KEY_HELP)
        next_report = 5.0
        while not self.window.should_close():
            self.frame()
            if self.clock.t_s >= next_report:
                next_report += 5.0
                st = self.stats.summary()
                log.info("display %.1f fps (p99 %.1f ms), model %.1f fps, audio: %s",
                         st.get("display_fps", 0.0), st.get("frame_ms_p99", 0.0), self.engine.worker.fps,
                         self.source.status)
            if duration_s is not None and self.clock.t_s >= duration_s:
                break
        if self.screenshot is not None:
            write_png(self.screenshot, self.engine.snapshot())
        return self.frames

    def frame(self) -> None:
        window, engine = self.window, self.engine
        self.watchdog.tick()
        stall = self.watchdog.take_stall()
        if stall is not None:
            self._stall_note = (f"frame loop stalled {stall[0]:.1f} s at {stall[1]}", time.monotonic())
        window.poll_events()
        self._handle_keys()
        dt = self.clock.tick()
        if self.frames:
            self.stats.add(dt)
        self.source.maintain()
        if self._finishing:
            self._drop_finished_recorders()
        if self.midi is not None:
            self._follow_midi_clock()
        if self.source.status != self._audio_status:
            self._audio_status = self.source.status
            log.warning("audio: %s", self._audio_status)
        block = self.source.read()
        if self.session is not None:         # the show analyses exactly the samples the session keeps
            block = self.session.input(self.frames, _stereo(block))
        rec = FrameRecord(time.monotonic(), self.source.samples_read)
        mono = self._downmix(block)
        # Beats are reported this much early (with /audio/lookahead_auto), to be seen when they sound.
        if self.frames % 16 == 0:
            self.latency.input_latency_s = self.source.input_latency_s
            latency_s = round((self.latency.total_ms() or 0.0) / 1e3, 3)     # whole ms: few session events
            if latency_s != engine.output_latency_s:
                engine.output_latency_s = latency_s
                if self.session is not None:           # a replay reports beats as early as the show did
                    self.session.event("latency", s=latency_s)
        try:
            engine.step_live(mono, self.clock.t_s, dt)
        except Exception as exc:  # the frame boundary: log, keep the show going on the last good state
            log.exception("frame %d failed: %s", self.frames, exc)
        if self.clock_out is not None:    # the beat as seen now + lookahead: pulses sound when the beat is seen
            f = engine.features
            bar = self.link.session.quantum if self.link is not None else engine.analyzer.beats.settings.beats_per_bar
            self.clock_out.follow(f.bar_phase, f.bpm if f.beat_in_bar else 0.0, bar,
                                  time.monotonic() + engine.lookahead_s, bool(engine.registry.get("/midiclock/run")))
        if self.midi is not None and engine.preset is not self._midi_preset:
            # The active preset's [[midi.*]] mappings lie over the controller's map; a new preset replaces them.
            self._midi_preset = engine.preset
            self.midi.router.set_preset_mappings(engine.midi_mappings)
        if self.session is not None:
            self.session.done(self.clock.t_s, dt)
        size = window.framebuffer_size
        engine.master.blit_to(window.ctx.screen, (0, 0, *size))
        if self.hud_visible:
            # Numbers that change every frame are unreadable and re-upload the text: refresh at 4 Hz.
            if self.clock.t_s - self._hud_at >= 0.25 or not self._hud_lines:
                self._hud_lines = format_stats(self.hud_stats())
                self._hud_at = self.clock.t_s
            self.hud.draw(window.ctx.screen, (0, 0, *size), self._hud_lines)
        if self.outputs is not None:
            self._outputs_step(self._draw_outputs)
        rec.t_drawn = time.monotonic()
        if self.probe is not None:       # `vj bench latency`: look at the drawn picture before it is shown
            rec.probe = self.probe()
            rec.block = mono
        self._record(block)
        if self.ndi is not None:
            self._send_ndi(block)
        web = self.osc.web if self.osc is not None else None
        if web is not None and web.clients and self.frames % 10 == 0:
            rgb = self._frame_rgb()
            step = preview_step(rgb.shape[1])
            self._preview_rgb = rgb[::step, ::step].copy()                # encoded on the web server's thread
        window.swap()
        if self.outputs is not None:
            self._outputs_step(self.outputs.swap)
        rec.t_swapped = time.monotonic()
        self.latency.add(rec)
        if self.frame_log is not None:
            self.frame_log.append(rec)
        self.frames += 1

    def _draw_outputs(self) -> None:
        for change in self.outputs.poll():        # handles dragged with the mouse: applied next frame
            self.engine.changes.put(change)
        self.outputs.follow(self.engine.registry)
        self.outputs.draw(self.engine.master.texture)

    def _outputs_step(self, step: Callable[[], None]) -> None:
        """A step of the projection outputs, at the frame boundary: a failure leaves the show window playing and
        is logged once per reason."""
        try:
            step()
        except Exception as exc:
            if str(exc) != self._outputs_failed:
                self._outputs_failed = str(exc)
                log.exception("outputs: %s", exc)
            self.window.make_current()

    def _record(self, block: np.ndarray) -> None:
        rec = self.recorder
        if rec is None:
            return
        if rec.error:
            if not self._recording_error_logged:
                self._recording_error_logged = True
                log.error("recording stopped: %s (the show goes on)", rec.error)
            return
        for tick in due_ticks(self.clock.t_s - self._rec_t0, float(rec.fps), self._rec_frames):
            rec.add_video(self._frame_rgb(), tick)
            self._rec_frames = tick + 1
        rec.add_audio(_stereo(block))

    def _frame_rgb(self) -> np.ndarray:
        """This frame's picture read back once, for the recorder, NDI and the web preview alike (none alters it)."""
        if self._rgb_frame != self.frames:
            self._rgb, self._rgb_frame = self.engine.read_rgb(), self.frames
        return self._rgb

    def _send_ndi(self, block: np.ndarray) -> None:
        """The output, without the HUD, to NDI: its thread sends, a full queue drops (counted on the HUD)."""
        ndi = self.ndi
        if ndi.error:
            return
        ndi.send(self._frame_rgb())
        if ndi.audio_rate_hz:
            ndi.add_audio(_stereo(block))

    def _preview_png(self) -> bytes | None:
        """The web page's preview (called on the web server's thread)."""
        rgb = self._preview_rgb
        return encode_png(rgb) if rgb is not None else None

    def _follow_midi_clock(self) -> None:
        """MIDI clock in sets the beat tracker's tempo while it runs (only on a real change: set_bpm re-grids)."""
        st = self.midi.clock.state()
        beats = self.engine.analyzer.beats
        if st.running and st.bpm > 0 and abs(st.bpm - self._midi_bpm) > 0.05:
            self._midi_bpm = st.bpm
            beats.set_bpm(st.bpm)
        elif not st.running and self._midi_bpm:
            self._midi_bpm = 0.0
            beats.set_bpm(None)              # the clock stopped: back to following the music
        else:
            return
        if self.session is not None:
            self.session.event("bpm", bpm=self._midi_bpm or None)

    def _new_recorder(self, path: Path) -> Recorder:
        """A recorder at the recording's own size, rate and codec (RecordConfig; default: the render's)."""
        cfg, rc = self.render_cfg, self.record_cfg
        return Recorder(path, rc.width_px or cfg.width_px, rc.height_px or cfg.height_px, rc.fps or cfg.fps,
                        self.source.sample_rate_hz, 2, preset=cfg.encoder_preset, codec=rc.codec)

    def _session_settings(self, record: Path | None) -> dict:
        rc = self.record_cfg
        return {"render": dataclasses.asdict(self.render_cfg), "audio": dataclasses.asdict(self.audio_cfg),
                "render_scale": self.engine.render_scale, "record": dataclasses.asdict(rc),
                "record_fps": rc.fps or self.render_cfg.fps,
                "recording": str(Path(record).resolve()) if record is not None else None}

    def start_recording(self, path: object = None) -> bool:
        """Start recording to `path` (default vj-DATE-TIME.mp4); /cmd/record/start and key r. Never raises."""
        if self.recorder is not None and not self.recorder.error:
            log.warning("already recording to %s", self.recorder.path)
            return False
        suffix = ".mkv" if self.record_cfg.codec == "ffv1" else ".mp4"
        out = Path(str(path)) if isinstance(path, (str, Path)) and str(path).strip() else \
            Path(f"vj-{time.strftime('%Y%m%d-%H%M%S')}{suffix}")
        try:
            rec = self._new_recorder(out)
        except (RecorderError, OSError, ValueError) as exc:
            log.error("cannot start recording: %s (the show goes on)", exc)
            return False
        if self.recorder is not None:
            self._finishing.append(self.recorder)
        self.recorder = rec
        self._rec_t0 = self.clock.t_s
        self._rec_frames = 0
        self._recording_error_logged = False
        log.info("recording to %s", out)
        if self.session is not None:
            self.session.event("record", path=str(out.resolve()))
        return True

    def stop_recording(self) -> None:
        """Stop recording; the encoder finishes the file on its own thread (the frame loop never waits)."""
        rec, self.recorder = self.recorder, None
        if rec is not None:
            rec.close(timeout_s=0)
            self._finishing.append(rec)
            log.info("recording stopped: %s (%d frames dropped)", rec.path, rec.dropped_frames)
            if self.session is not None:
                self.session.event("record", path=None)

    def _drop_finished_recorders(self) -> None:
        """Let go of stopped recorders whose encoder finished the file: their codec, scaler and threads go
        with them (kept, every recording left four FFmpeg threads and its buffers behind for the show)."""
        for rec in [r for r in self._finishing if r.finished]:
            self._finishing.remove(rec)
            if rec.error:
                log.error("recording %s: %s", rec.path, rec.error)

    def hud_stats(self) -> dict:
        """What the HUD shows; keys as `vj.gfx.hud.format_stats` documents them."""
        engine, f = self.engine, self.engine.features
        st = self.stats.summary()
        errors = [f"{name}: {msg}" for name, msg in engine.chain.errors.items()]
        if engine.model_error:
            errors.append(f"model: {engine.model_error}")
        if engine.preset_error:
            errors.append(f"preset: {engine.preset_error}")
        if self.recorder is not None and self.recorder.error:
            errors.append(f"recording: {self.recorder.error}")
        if self.session is not None and self.session.writer.error:
            errors.append(self.session.writer.error)
        if self.outputs is not None and self.outputs.last_error:
            errors.append(f"outputs: {self.outputs.last_error}")
        if self._downmix.inverted:
            errors.append("audio: the input's two channels cancel (one out of polarity); analysing the left alone")
        now = time.monotonic()
        errors += [note[0] for note in (engine.model_note, self._stall_note) if note and now - note[1] < NOTE_S]
        lat = self.latency
        lat.input_latency_s = self.source.input_latency_s
        lat.model_elapsed_s, lat.model_fps = engine.worker.last_elapsed_s, engine.worker.fps
        return {
            **st,
            "model_fps": engine.worker.fps,
            "dropped_frames": self.recorder.dropped_frames if self.recorder is not None else None,
            "audio_level_dbfs": self.source.level_dbfs,
            "audio_lost": getattr(self.source, "lost_blocks", None),
            "clipped": self.source.clipped,
            "onset": f.onset,
            "beat": f.beat,
            "bpm": f.bpm or None,
            # Built from this run's timings the way `vj bench latency` splits its measurement (vj.timing).
            "latency_ms": lat.total_ms(),
            "model_latency_ms": lat.model_path_ms(),
            "preset": (engine.preset.name if engine.preset else "") +
                      (f" (loading {engine.loading}...)" if engine.loading else ""),
            "audio_status": self.source.status + (f"; {self.midi.status}" if self.midi is not None else ""),
            "sync": self._sync_lines(),
            "errors": errors,
        }

    def _sync_lines(self) -> list[str]:
        """HUD lines for Link, MIDI clock out and NDI out (what runs)."""
        lines = []
        if self.link is not None:
            own = self.engine.analyzer.beats.latest.bpm
            lines.append(self.link.status() + (f"  (tracker {own:.1f})" if own else ""))
        if self.clock_out is not None:
            lines.append(self.clock_out.status)
        if self.ndi is not None:
            ndi = self.ndi
            error = (ndi.error or "").removeprefix(f"{ndi.kind} {ndi.name}: ")
            lines.append(f"{ndi.kind:<8}{ndi.name}: " + (error or f"{ndi.sent} sent, {ndi.dropped} dropped"))
        return lines

    def _handle_keys(self) -> None:
        engine = self.engine
        while True:
            try:
                key = self.window.keys.get_nowait()
            except queue.Empty:
                return
            took = self.outputs.key(key) if self.outputs is not None else None
            if took is not None:                  # calibrating: arrows, tab and digits move the handles
                if took is not True:
                    engine.changes.put(took)
                continue
            if key == "c" and self.outputs is not None:
                engine.changes.put(Change(CALIBRATE, not engine.registry.get(CALIBRATE), "key"))
            elif key == "f":
                self.window.toggle_fullscreen()
            elif key == "h":
                self.hud_visible = not self.hud_visible
            elif key == "escape":
                self.window.request_close()
            elif key in KEY_COMMANDS:
                # Through the change queue (drained at the start of this frame's step), so that a
                # session records keys like any other control.
                engine.changes.put(Change(KEY_COMMANDS[key], None, "key"))
            elif key == "r":
                if self.recorder is None:
                    self.start_recording()
                else:
                    self.stop_recording()
            elif key == "s":
                path = self.screenshot or Path(f"vj-{time.strftime('%Y%m%d-%H%M%S')}.png")
                write_png(path, engine.snapshot())
                log.info("screenshot saved to %s", path)

    def close(self) -> None:
        if self.watchdog is not None:
            self.watchdog.close()
        if self.session is not None:
            self.session.writer.close()
        for rec in [*self._finishing, self.recorder]:
            if rec is None:
                continue
            rec.close()
            if rec.error:
                log.error("recording %s: %s", rec.path, rec.error)
        if self.osc is not None:
            self.osc.close()
        if self.midi is not None:
            self.midi.close()
        if self.clock_out is not None:
            self.clock_out.close()
        if self.link is not None:
            self.link.session.close()
        if self.ndi is not None:
            self.ndi.close()
        self.source.stop()
        if self.hud is not None:
            self.hud.release()
        if self.outputs is not None:
            self.outputs.close()
        if self.engine is not None:
            self.engine.close()
        if self.window is not None:
            self.window.close()


def run_live(audio: str, preset: str, render_cfg: RenderConfig, audio_cfg: AudioConfig,
             control_cfg: ControlConfig, *, fullscreen: int | None = None, record: Path | None = None,
             duration_s: float | None = None, screenshot: Path | None = None, hud: bool = False,
             record_cfg: RecordConfig = RecordConfig(), session: Path | None = None,
             state_file: Path | None = None, resume: Resume | None = None, outputs: Path | None = None,
             sync: SyncConfig = SyncConfig()) -> int:
    """The live show: audio in, frames out to a window at the display's rate. Returns frames shown.

    Under `vj run`'s supervisor (vj.supervisor) it keeps `state_file` current, and a restarted show takes over
    from `resume` (vj.showstate). `outputs`: an outputs file (vj.mapping) whose windows show the picture warped.
    """
    show = LiveShow(audio, preset, render_cfg, audio_cfg, control_cfg, fullscreen=fullscreen, record=record,
                    screenshot=screenshot, hud=hud, record_cfg=record_cfg, session=session, outputs=outputs,
                    sync=sync)
    try:
        with supervised(show, state_file, resume):
            return show.run(duration_s)
    finally:
        show.close()


def _stereo(block: np.ndarray) -> np.ndarray:
    if block.ndim == 1:
        block = block[:, None]
    if block.shape[1] == 1:
        return np.repeat(block, 2, axis=1)
    return block[:, :2]
