"""Session folders: what a live show heard, what it was told and what it showed, written off the frame loop for `vj replay`.

A live run with `--session DIR` writes (see also docs/SESSIONS.md):

    settings.json   vj version, start time, RenderConfig and AudioConfig as used, the engine's render
                    scale, the audio rate and channels, the recording given with --record (if any)
    audio.flac      the input audio exactly as the show analysed it: 24-bit FLAC, and while a session is
                    written the show analyses the same 24-bit samples (`quantize_audio`), so a replay
                    hears what the show heard, bit for bit
    frames.jsonl    one line per live frame, in order:
                      {"i": frame, "audio": samples consumed up to the end of this frame, "t": t_s, "dt": dt_s,
                       "model": the frame whose model args made the image taken this frame, or null (none taken)}
    events.jsonl    one line per event, in the order they were applied:
                      {"frame": i, "audio": samples consumed before frame i, "kind": ..., ...}
                    kind "change"  a Change applied at the start of frame i: "path", "value", "source" (osc, midi,
                                   key, web, ...); /cmd/... commands are changes too
                    kind "preset"  the scene swapped in during frame i: "file" (presets/...), "shaders" ({effect:
                                   shaders/... or null when it had none}), "model", "switch" (true: a performer's
                                   switch with its morph and fade; false: a plain load or a hot reload)
                    kind "shader"  an effect recompiled from an edited file: "effect", "file"
                    kind "bpm"     the MIDI clock set the tempo ("bpm": number) or let it go (null)
                    kind "latency" the measured audio-to-light latency changed ("s"): beats are reported that
                                   much early while /audio/lookahead_auto is on
                    kind "record"  a recording started ("path") or stopped ("path": null)
                    kind "restart" the show restarted after a crash and this folder continues "continues" (the
                                   dead show's folder, which got restart.json); "reason" (vj.showstate)
    presets/NNN-NAME.toml   the text of every preset version swapped in, as the engine parsed it
    shaders/NAME-HASH.fs    every shader version compiled (and its .vs), named by content

Copies are taken when a file is loaded, so editing the originals later does not change a replay. Images an
ISF file imports are not copied (they are read from their original place at replay).

Writing never blocks the frame loop: `SessionWriter` queues everything for its own thread, which flushes the
line files at least once a second (a crash loses at most the last second). A write error stops the session
with one log line; the show goes on. `Session` reads a folder back, a line cut off by a crash included.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from vj import __version__
from vj.config import AudioConfig, RenderConfig
from vj.gfx.isf import ISFShader
from vj.output.recorder import AUDIO_LAYOUTS, FLAC_SCALE, flac_samples
from vj.presets import Preset, dump_preset, parse_preset

log = logging.getLogger(__name__)

FLUSH_S = 1.0
_STOP = object()


class SessionError(Exception):
    """A session folder that cannot be written or read; the message is one line saying why."""


def quantize_audio(block: np.ndarray) -> np.ndarray:
    """(n, ch) float32 -> the same samples at the 24 bits audio.flac keeps (exact in float32)."""
    return (flac_samples(block).astype(np.float64) / (FLAC_SCALE << 8)).astype(np.float32)


def _json_value(v):
    """Param values as JSON: tuples become lists (`Session` turns them back)."""
    return list(v) if isinstance(v, tuple) else v


class SessionWriter:
    """Writes one session folder from the live show. Main thread: `audio`, `frame`, `event`, `copy_*`; never blocks."""

    def __init__(self, folder: str | Path, settings: dict, sample_rate_hz: int, channels: int = 2):
        self.folder = Path(folder)
        self.sample_rate_hz = int(sample_rate_hz)
        self.channels = int(channels)
        self.error: str | None = None
        self.audio_samples = 0            # samples queued so far (the "audio" position of frames and events)
        self._presets = 0
        self._shaders: dict[tuple[str, str], str] = {}     # (name, source hash) -> relative path
        if self.folder.exists() and (not self.folder.is_dir() or any(self.folder.iterdir())):
            raise SessionError(f"session folder {self.folder} already exists and is not empty")
        try:
            for sub in ("presets", "shaders"):
                (self.folder / sub).mkdir(parents=True, exist_ok=True)
            settings = {"vj_version": __version__, "created": time.strftime("%Y-%m-%d %H:%M:%S"),
                        "audio_rate_hz": self.sample_rate_hz, "channels": self.channels, **settings}
            (self.folder / "settings.json").write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            raise SessionError(f"cannot write session folder {self.folder}: {exc.strerror or exc}") from None
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="vj-session", daemon=True)
        self._thread.start()
        log.info("session: writing %s", self.folder)

    # -- main thread ---------------------------------------------------------------------------

    def audio(self, block: np.ndarray) -> None:
        """The block the frame loop read, (n, ch) float32, already `quantize_audio`d."""
        self.audio_samples += len(block)
        if self.error is None and len(block):
            self._queue.put(("audio", np.array(block, np.float32, copy=True)))

    def frame(self, index: int, t_s: float, dt_s: float, model: int | None) -> None:
        self._line("frames.jsonl", {"i": index, "audio": self.audio_samples, "t": t_s, "dt": dt_s, "model": model})

    def event(self, frame: int, audio: int, kind: str, **data) -> None:
        self._line("events.jsonl", {"frame": frame, "audio": audio, "kind": kind,
                                    **{k: _json_value(v) for k, v in data.items()}})

    def copy_preset(self, preset: Preset) -> str:
        """Keep this version of the preset's text; returns its path in the folder."""
        self._presets += 1
        stem = preset.path.stem if preset.path is not None else "preset"
        rel = f"presets/{self._presets:03d}-{stem}.toml"
        self._put_file(rel, preset.text or dump_preset(preset))
        return rel

    def copy_shader(self, shader: ISFShader) -> str:
        """Keep this version of a shader (by content: the same source is written once); returns its .fs path."""
        stem = shader.path.stem if shader.path is not None else shader.name
        digest = hashlib.sha1((shader.fragment_source + "\0" + (shader.vertex_source or "")).encode()).hexdigest()[:10]
        key = (stem, digest)
        if key not in self._shaders:
            rel = f"shaders/{stem}-{digest}.fs"
            self._shaders[key] = rel
            self._put_file(rel, shader.fragment_source)
            if shader.vertex_source is not None:
                self._put_file(rel[:-3] + ".vs", shader.vertex_source)
        return self._shaders[key]

    def close(self, timeout_s: float | None = 10.0) -> None:
        """Write what is queued and finish audio.flac."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout_s)

    def _line(self, name: str, obj: dict) -> None:
        if self.error is None:
            self._queue.put(("line", name, json.dumps(obj, separators=(",", ":"), default=str)))

    def _put_file(self, rel: str, text: str) -> None:
        if self.error is None:
            self._queue.put(("file", rel, text))

    # -- writer thread -------------------------------------------------------------------------

    def _run(self) -> None:
        files: dict[str, object] = {}
        audio = None
        flushed = time.monotonic()
        try:
            while True:
                try:
                    item = self._queue.get(timeout=FLUSH_S / 2)
                except queue.Empty:
                    item = None
                if item is _STOP:
                    break
                if item is not None and item[0] == "audio":
                    audio = audio or _FlacWriter(self.folder / "audio.flac", self.sample_rate_hz, item[1].shape[1])
                    audio.write(item[1])
                elif item is not None and item[0] == "line":
                    f = files.get(item[1])
                    if f is None:
                        f = files[item[1]] = open(self.folder / item[1], "a", encoding="utf-8")
                    f.write(item[2] + "\n")
                elif item is not None:
                    (self.folder / item[1]).write_text(item[2], encoding="utf-8")
                if time.monotonic() - flushed >= FLUSH_S:
                    flushed = time.monotonic()
                    for f in files.values():
                        f.flush()
            if audio is not None:
                audio.close()
        except (OSError, av.FFmpegError, ValueError) as exc:
            where = getattr(exc, "filename", None) or self.folder
            self.error = f"session stopped writing {where}: {getattr(exc, 'strerror', None) or exc}"
            log.error("%s (the show goes on)", self.error)
            while True:      # free what is still queued
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
        finally:
            for f in files.values():
                try:
                    f.close()
                except OSError:
                    pass


class _FlacWriter:
    """audio.flac through PyAV: 24-bit samples in the codec's fixed frame size."""

    def __init__(self, path: Path, sample_rate_hz: int, channels: int):
        self.container = av.open(str(path), "w", format="flac")
        self.stream = self.container.add_stream("flac", rate=sample_rate_hz)
        self.stream.layout = AUDIO_LAYOUTS[channels]
        self.stream.format = "s32"
        self.fifo = av.AudioFifo()
        self.pts = 0

    def write(self, block: np.ndarray) -> None:
        frame = av.AudioFrame.from_ndarray(flac_samples(block).reshape(1, -1), format="s32",
                                           layout=self.stream.layout)
        frame.sample_rate = self.stream.rate
        frame.pts = self.pts
        self.pts += len(block)
        self.fifo.write(frame)
        size = self.stream.codec_context.frame_size or 4608
        while self.fifo.samples >= size:
            self.container.mux(self.stream.encode(self.fifo.read(size)))

    def close(self) -> None:
        if self.fifo.samples:
            self.container.mux(self.stream.encode(self.fifo.read()))
        self.container.mux(self.stream.encode(None))
        self.container.close()


class SessionTap:
    """Feeds a SessionWriter from a live engine (main thread): `input` before each frame, `done` after it.

    It installs itself as the engine's event sink (every Change and command as it is applied) and, after
    each frame, notes scene swaps, recompiled shaders and which frame's model args made the image taken.
    """

    def __init__(self, writer: SessionWriter, engine):
        self.writer = writer
        self.engine = engine
        self.frame = 0
        self.audio_start = 0              # samples consumed before the current frame
        self._preset = None
        self._morph = None
        self._shaders: dict[str, ISFShader | None] = {}       # effect -> the shader object last written
        self._worker = None
        self._stamps: dict[int, int] = {}                     # model stamp -> the frame that submitted it
        engine.event_sink = self._change
        self._check_scene()

    def input(self, index: int, block: np.ndarray) -> np.ndarray:
        """The block the frame loop read -> the 24-bit block it should analyse (and that the session keeps)."""
        block = quantize_audio(block)
        self.frame = index
        self.audio_start = self.writer.audio_samples
        self.writer.audio(block)
        return block

    def event(self, kind: str, **data) -> None:
        self.writer.event(self.frame, self.audio_start, kind, **data)

    def done(self, t_s: float, dt_s: float) -> None:
        self._check_scene()
        chain = self.engine.chain
        for name in chain.names:
            effect = chain.effect(name)
            shader = effect.shader if effect is not None else None
            if shader is not None and shader is not self._shaders.get(name):
                self._shaders[name] = shader
                self.event("shader", effect=name, file=self.writer.copy_shader(shader))
        if self.engine.worker is not self._worker:        # a new model: its stamps start again
            self._worker, self._stamps = self.engine.worker, {}
        submitted, taken = self.engine.model_stamps
        if submitted:
            self._stamps[submitted] = self.frame
        model = self._stamps.get(taken) if taken else None
        if taken:    # latest wins: older args will never be shown
            self._stamps = {s: f for s, f in self._stamps.items() if s > taken}
        self.writer.frame(self.frame, t_s, dt_s, model)

    def _change(self, change) -> None:
        self._check_scene()
        self.event("change", path=change.path, value=change.value, source=change.source)

    def _check_scene(self) -> None:
        engine = self.engine
        if engine.preset is None or engine.preset is self._preset:
            return
        # A performer's switch (morph or model fade) leaves a new morph behind; a plain load or hot reload does not.
        morph = getattr(engine, "_morph", None)
        switch = morph is not None and morph is not self._morph
        self._preset, self._morph = engine.preset, morph
        shaders = {}
        for e in engine.preset.effects:
            effect = engine.chain.effect(e.name)
            shader = effect.shader if effect is not None else None
            self._shaders[e.name] = shader
            shaders[e.name] = self.writer.copy_shader(shader) if shader is not None else None
        self.event("preset", file=self.writer.copy_preset(engine.preset), shaders=shaders,
                   model=engine.preset.model, switch=switch)


# ---- reading ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrameEntry:
    """One live frame as frames.jsonl has it."""

    i: int
    audio: int            # samples consumed up to the end of this frame
    t_s: float
    dt_s: float
    model: int | None     # the frame whose model args made the image taken at this frame


def _read_lines(path: Path) -> list[dict]:
    """JSON lines; a last line cut off by a crash is skipped."""
    out = []
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return out
    except OSError as exc:
        raise SessionError(f"{path}: {exc.strerror or exc}") from None
    lines = text.splitlines()
    for n, line in enumerate(lines):
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            if n == len(lines) - 1:
                break
            raise SessionError(f"{path}:{n + 1}: not a JSON line") from None
    return out


def _fields(cls, data: dict) -> dict:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in names}


class Session:
    """A session folder read back: settings, frames, events, and the copies they point at."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        try:
            self.settings = json.loads((self.folder / "settings.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SessionError(f"{self.folder}: not a session folder (no settings.json)") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise SessionError(f"{self.folder}/settings.json: {getattr(exc, 'strerror', None) or exc}") from None
        self.frames = [FrameEntry(d["i"], d["audio"], d["t"], d["dt"], d.get("model"))
                       for d in _read_lines(self.folder / "frames.jsonl")]
        self.events = _read_lines(self.folder / "events.jsonl")
        if not self.frames:
            raise SessionError(f"{self.folder}: the session has no frames")
        self.sample_rate_hz = int(self.settings["audio_rate_hz"])

    @property
    def render_config(self) -> RenderConfig:
        return RenderConfig(**_fields(RenderConfig, self.settings.get("render", {})))

    @property
    def audio_config(self) -> AudioConfig:
        return dataclasses.replace(AudioConfig(**_fields(AudioConfig, self.settings.get("audio", {}))),
                                   sample_rate_hz=self.sample_rate_hz)

    def audio(self) -> np.ndarray:
        """(n, channels) float32: the samples the show analysed (n may fall short of the frames after a crash)."""
        path = self.folder / "audio.flac"
        channels = int(self.settings.get("channels", 2))
        if not path.is_file():
            return np.zeros((0, channels), np.float32)
        blocks = []
        try:
            with av.open(str(path)) as c:
                for frame in c.decode(audio=0):
                    blocks.append(frame.to_ndarray().reshape(-1, channels))     # packed s32: (1, n * ch)
        except av.FFmpegError as exc:
            if not blocks:
                raise SessionError(f"{path}: {exc}") from None
            log.warning("%s: %s (using the %d blocks before it)", path, exc, len(blocks))
        if not blocks:
            return np.zeros((0, channels), np.float32)
        return (np.concatenate(blocks).astype(np.float64) / (FLAC_SCALE << 8)).astype(np.float32)

    def preset(self, event: dict) -> Preset:
        """The preset of a "preset" event, its effects pointed at the copied shader versions."""
        path = self.folder / event["file"]
        try:
            preset = parse_preset(path.read_text(encoding="utf-8"), path)
        except OSError as exc:
            raise SessionError(f"{path}: {exc.strerror or exc}") from None
        shaders = event.get("shaders", {})
        effects = tuple(dataclasses.replace(e, shader=str(self.folder / shaders[e.name])) if shaders.get(e.name)
                        else dataclasses.replace(e, shader=str(self.folder / "shaders" / f"missing-{e.name}.fs"))
                        for e in preset.effects)
        return dataclasses.replace(preset, effects=effects)

    def shader_path(self, rel: str) -> Path:
        return self.folder / rel


__all__ = ["FrameEntry", "Session", "SessionTap", "SessionError", "SessionWriter", "quantize_audio"]
