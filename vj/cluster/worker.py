"""One chunk of a cluster render, on a worker: the job's engine rebuilt from its bundle, the span rendered, encoded."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vj.audio.sources import load_track
from vj.chunks import render_live_span, render_span
from vj.cluster.frames import ChunkWriter
from vj.cluster.job import Job
from vj.show import cut_track, headless_engine, track_program

_UNPACK_LOCK = threading.Lock()
_TRACK: dict = {}        # the last track this worker process decoded: its next chunk of the job needs it again
# A chunk comes back in parts of about this size, each its own object: the driver holds one part at a time (a
# 30 s chunk of 4K frames is gigabytes), and Ray spills parts it cannot keep in memory to the worker's disk.
PART_BYTES = 256 * 1024 * 1024
KEEP_JOB_S = 7 * 24 * 3600     # a job's unpacked inputs stay this long after its last chunk on the machine


@dataclass(frozen=True)
class Chunk:
    """Frames [first, stop) of the job, plus up to `tail` frames after them for the next chunk's cross-fade (only
    when the next chunk cannot start exactly); `warm` frames rendered before `first` where pictures carry
    (vj.chunks)."""
    index: int
    first: int
    stop: int
    tail: int
    warm: int


@dataclass(frozen=True)
class ChunkResult:
    index: int
    first: int
    frames: int              # emitted: stop - first, and the tail when the next chunk needs one
    exact_start: bool        # the first frame equals a whole render's (no carried picture was skipped)
    parts: list              # vj.cluster.frames: FFV1 Matroska bytes, or Ray object refs to them (chunk_task)
    node: str
    pid: int
    rendered: int
    skipped: int
    elapsed_s: float


def unpack(bundle: dict[str, bytes], digest: str) -> Path:
    """The bundle's files in a folder of this machine's (once per job and machine: named by the digest). Job folders
    untouched for KEEP_JOB_S are removed on the way."""
    for name in bundle:
        if ".." in Path(name).parts or Path(name).is_absolute():
            raise ValueError(f"bundle file name {name!r} leaves the job folder")
    tmp = Path(tempfile.gettempdir())
    root = tmp / f"vj-job-{digest[:16]}"
    with _UNPACK_LOCK:
        if root.is_dir():
            os.utime(root)
            return root
        for old in tmp.glob("vj-job-*"):
            try:
                if time.time() - old.stat().st_mtime > KEEP_JOB_S:
                    shutil.rmtree(old, ignore_errors=True)
            except OSError:
                continue
        part = Path(tempfile.mkdtemp(prefix=root.name + ".", dir=tmp))
        for name, data in bundle.items():
            path = part / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        try:
            part.rename(root)
        except OSError:         # another process on this machine was first: its copy is the same
            shutil.rmtree(part, ignore_errors=True)
    return root


def build_program(job: Job, root: Path, engine):
    """The job's FrameProgram on `engine`, exactly as the one-machine render builds it."""
    if job.kind == "render":
        from vj.timeline import load_timeline
        audio = job.audio if job.audio == "demo" else str(root / job.audio)
        key = (audio, job.audio_cfg.sample_rate_hz)
        if key not in _TRACK:
            _TRACK.clear()
            _TRACK[key] = load_track(audio, job.audio_cfg.sample_rate_hz)[0]
        track = cut_track(audio, job.audio_cfg.sample_rate_hz, job.fps, job.start_s, job.duration_s, _TRACK[key])
        cues = load_timeline(root / job.timeline) if job.timeline else None
        return track_program(engine, track, str(root / job.preset), job.fps, cues)
    if job.kind in ("replay", "live-replay"):
        from vj.replay import LiveReplayProgram, ReplayProgram, _Events
        from vj.session import Session
        session = Session(root / job.session)
        kind = LiveReplayProgram if job.kind == "live-replay" else ReplayProgram
        return kind(session, _Events(session, engine), session.audio(), job.fps)
    raise ValueError(f"unknown job kind {job.kind!r}")


def chunk_task(job: Job, bundle: dict[str, bytes], digest: str, chunk: Chunk, report=None) -> ChunkResult:
    """render_chunk as a Ray task: each part goes into the object store as it is finished."""
    import ray
    return render_chunk(job, bundle, digest, chunk, report, put=ray.put)


def render_chunk(job: Job, bundle: dict[str, bytes], digest: str, chunk: Chunk, report=None,
                 put: Callable[[bytes], object] = lambda data: data, part_bytes: int = PART_BYTES) -> ChunkResult:
    """Render `chunk` of `job`. `report(dict)` (the driver's status board) hears how far it is, every half second;
    `put` takes each finished part (of about part_bytes)."""
    t0 = time.perf_counter()
    root = unpack(bundle, digest)
    status = {"chunk": chunk.index, "node": socket.gethostname(), "pid": os.getpid(), "done": 0, "at": -1,
              "frames": chunk.stop + chunk.tail - chunk.first, "stage": "starting"}
    last = [0.0]

    def tell(force: bool = False) -> None:
        now = time.monotonic()
        if report is not None and (force or now - last[0] >= 0.5):
            last[0] = now
            report(dict(status))

    tell(True)
    presets = "session/presets" if job.session else None
    live = job.kind == "live-replay"    # the live engine: the model fader blends the images the show took
    with headless_engine(job.render_cfg, job.audio_cfg, live=live, shader_dirs=(root / "shaders",),
                         preset_dirs=[root / presets] if presets else None) as engine:
        program = build_program(job, root, engine)
        writer = [ChunkWriter(job.fps)]
        parts = []

        def played(i: int) -> None:        # every frame, skipped or not: the driver sees the chunk move
            status["at"] = i
            status["stage"] = "fast-forward" if i < chunk.first else "rendering"
            tell()

        def emit(i: int, tex) -> None:
            writer[0].add(engine.read_rgb(tex))
            status["done"] += 1
            if writer[0].size_bytes >= part_bytes:
                parts.append(put(writer[0].finish()))
                writer[0] = ChunkWriter(job.fps)

        span = (render_live_span if live else render_span)(engine, program, chunk.first, chunk.stop, emit,
                                                            warm_frames=chunk.warm, tail_frames=chunk.tail,
                                                            on_frame=played)
        if writer[0].frames:
            parts.append(put(writer[0].finish()))
    status["stage"] = "done"
    tell(True)
    return ChunkResult(chunk.index, chunk.first, span.stop - span.first, span.exact_start, parts, status["node"],
                       os.getpid(), span.rendered, span.skipped, time.perf_counter() - t0)
