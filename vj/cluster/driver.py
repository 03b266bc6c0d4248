"""The driver of a cluster render: plans the chunks, hands them to Ray, keeps what comes back, and encodes the one
output in order, with the audio, as the one-machine render does."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from vj.cluster.frames import read_chunk
from vj.cluster.job import Job
from vj.cluster.store import ChunkStore, ClusterError
from vj.cluster.worker import Chunk, chunk_task
from vj.output.frames import is_frame_sequence
from vj.show import FrameEmitter, Progress, RenderReport, finish_writer, open_writer

log = logging.getLogger(__name__)

INSTALL = "pip install 'ray==2.60.0' (or: pip install 'vj[cluster]')"
# Generators that want a GPU of their own when the cluster has GPUs; the others render on CPU workers.
GPU_MODELS = frozenset({"stylegan", "deepdream"})
MAX_RETRIES = 3         # a chunk whose worker dies (killed, out of memory, node lost) is rendered again, by Ray
STATUS_TIMEOUT_S = 10.0  # how long the driver waits for the status board's answer before counting it as silence


def _ray():
    try:
        import ray
    except ImportError:
        raise ClusterError(f"--cluster needs Ray, which is not installed: {INSTALL}") from None
    return ray


def connect(address: str, num_cpus: int | None = None) -> None:
    """`local`: a Ray instance of this machine's own; `auto`: the cluster this machine joined (`ray start`);
    `HOST:PORT`: a cluster's head (GCS address); `ray://HOST:PORT`: through Ray Client (needs ray[client])."""
    ray = _ray()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return
    kwargs = {"include_dashboard": False, "log_to_driver": True, "configure_logging": False}
    try:
        if address == "local":
            ray.init(num_cpus=num_cpus, **kwargs)
        else:
            ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ClusterError(f"cannot reach the Ray cluster at {address!r}: {str(exc).splitlines()[0]}") from None


def plan(n_frames: int, fps: float, chunk_s: float, warm_s: float, overlap_s: float) -> list[Chunk]:
    """Chunks of chunk_s, the last one shorter; each but the last renders overlap_s more for the next one's
    cross-fade, where that one starts from a warmed-up, not an exact, picture."""
    if chunk_s <= 0:
        raise ClusterError(f"--chunk-s must be above 0, got {chunk_s:g}")
    size = max(1, int(round(chunk_s * fps)))
    warm = max(0, int(round(warm_s * fps)))
    overlap = min(max(0, int(round(overlap_s * fps))), size)
    return [Chunk(k, first, min(first + size, n_frames), min(overlap, n_frames - min(first + size, n_frames)), warm)
            for k, first in enumerate(range(0, n_frames, size))]


def job_models(bundle: dict[str, bytes]) -> set[str]:
    """The generators the presets in a job's bundle play."""
    import tomllib
    names = set()
    for name, data in bundle.items():
        if name.endswith(".toml"):
            try:
                names.add(str(tomllib.loads(data.decode()).get("model", {}).get("name", "")))
            except (ValueError, UnicodeDecodeError, AttributeError):
                continue
    return names - {""}


def task_resources(models: set[str], cluster_gpus: float) -> dict:
    """One GPU a task where a scene plays a GPU model and the cluster has GPUs (Ray then sets CUDA_VISIBLE_DEVICES
    to it, and the model's device "auto" finds it; CUDA only, untested here); else a CPU a task."""
    gpu = bool(models & GPU_MODELS) and cluster_gpus > 0
    return {"num_cpus": 1, "num_gpus": 1 if gpu else 0}


class _Report:
    """What a worker calls with its status: a message to the driver's status board (a Ray actor)."""

    def __init__(self, board):
        self.board = board

    def __call__(self, status: dict) -> None:
        self.board.report.remote(status)


class ClusterProgress:
    """One bar over the whole job and a line per running chunk (which node, how far), on stderr when it is a
    terminal (or when forced); each finished chunk is logged."""

    def __init__(self, total: int, chunks: int, enabled: bool | None):
        self.total, self.chunks = total, chunks
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.t0 = time.perf_counter()
        self._lines = 0

    def update(self, rendered: int, finished: int, running: list[dict]) -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.t0
        fps = rendered / elapsed if elapsed > 0 else 0.0
        eta = (self.total - rendered) / fps if fps > 0 else 0.0
        fill = int(30 * rendered / max(self.total, 1))
        lines = [f"cluster [{'#' * fill}{'.' * (30 - fill)}] {rendered}/{self.total} frames {fps:5.1f} fps "
                 f"ETA {eta:4.0f} s  chunks {finished}/{self.chunks} done, {len(running)} running"]
        lines += [f"  {s['node']}:{s['pid']}  chunk {s['chunk']}  " + (
                  f"fast-forward at frame {s['at']}" if s["stage"] == "fast-forward" else
                  f"{s['stage']} {s['done']}/{s['frames']}") for s in sorted(running, key=lambda s: s["chunk"])]
        up = f"\x1b[{self._lines}F" if self._lines else ""
        sys.stderr.write(up + "".join(f"\x1b[2K{line}\n" for line in lines) + "\x1b[J")   # [J: lines left over
        sys.stderr.flush()
        self._lines = len(lines)


def render_job_on_cluster(job: Job, bundle: dict[str, bytes], out: str | Path, audio: Callable[[int], np.ndarray],
                          *, address: str = "local", chunk_s: float = 30.0, warm_s: float = 3.0,
                          overlap_s: float = 0.5, resume: bool = False, progress: bool | None = None,
                          audio_tail: np.ndarray | None = None, channels: int = 2,
                          tick: Callable[[int], int] | None = None,
                          on_chunk: Callable[[dict], None] | None = None, stall_s: float = 600.0) -> RenderReport:
    """Render `job` on the cluster at `address` into `out` (a video file or a PNG frame folder): `audio(i)` is the
    audio muxed with frame i, `tick(i)` its index in the file (default: i; a live replay's recording skipped frames
    after a stall); `on_chunk(meta)` hears of each chunk as it is joined (vj.cluster.store's .json).
    Raises ClusterError with one line when the cluster or a chunk fails for good, or when nothing has moved for
    `stall_s` (a chunk's frames, a finished chunk): a cluster whose head died leaves its driver waiting."""
    ray = _ray()
    digest = job.digest(bundle)
    chunks = plan(job.n_frames, job.fps, chunk_s, warm_s, overlap_s)
    store = ChunkStore(out, digest, resume)
    done = store.finished()
    if done:
        log.info("cluster: resuming: %d of %d chunks were already rendered", len(done), len(chunks))
        print(f"cluster: resuming: {len(done)} of {len(chunks)} chunks were already rendered", file=sys.stderr)
    connect(address)
    resources = task_resources(job_models(bundle), ray.cluster_resources().get("GPU", 0))
    log.info("cluster: %d chunks of %d frames, each task on %s", len(chunks), chunks[0].stop - chunks[0].first,
             "a GPU of its own" if resources["num_gpus"] else "one CPU")
    task = ray.remote(chunk_task).options(**resources, max_retries=MAX_RETRIES, retry_exceptions=False)
    board = ray.remote(num_cpus=0)(_StatusBoard).remote()
    bundle_ref = ray.put(bundle)
    refs = {task.remote(job, bundle_ref, digest, c, _Report(board)): c.index for c in chunks if c.index not in done}
    lost: dict[int, int] = {}
    bar = ClusterProgress(job.n_frames, len(chunks), progress)
    t0 = time.perf_counter()
    # A video is written under a hidden name and renamed when whole: a driver that dies (Ray ends it when it loses
    # the cluster's head) leaves no video cut short under the name asked for.
    target = partial_path(out) or out
    remove_partial(out)
    joiner = _Joiner(lambda: open_writer(target, job.render_cfg, job.audio_cfg.sample_rate_hz, channels,
                                         fps=job.fps, codec=job.codec), audio, tick)
    whole = False
    moved, seen = time.monotonic(), None
    try:
        while joiner.next < len(chunks):
            while joiner.next < len(chunks) and joiner.next in done:
                k = joiner.next
                joiner.add(chunks[k], done[k], store.parts(k, done[k]))
                if on_chunk is not None:
                    on_chunk(done[k])
            if joiner.next >= len(chunks):
                break
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=0.5)
            for ref in ready:
                k = refs.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:
                    cause = exc.cause if getattr(exc, "cause", None) is not None else exc
                    raise ClusterError(f"chunk {k} failed on the cluster: {str(cause).splitlines()[0]}") from None
                except ray.exceptions.RayError as exc:
                    raise ClusterError(f"chunk {k} was lost (its worker died, and again in {MAX_RETRIES} retries): "
                                       f"{str(exc).splitlines()[0]}") from None
                try:
                    done[k] = store.save(result, ray.get)
                except ray.exceptions.RayError as exc:      # its parts went with their worker: render it again
                    lost[k] = lost.get(k, 0) + 1
                    if lost[k] > MAX_RETRIES:
                        raise ClusterError(f"chunk {k}'s frames were lost {lost[k]} times: "
                                           f"{str(exc).splitlines()[0]}") from None
                    log.warning("cluster: chunk %d's frames were lost with their worker; rendering it again", k)
                    refs[task.remote(job, bundle_ref, digest, chunks[k], _Report(board))] = k
                    continue
                log.info("cluster: chunk %d done on %s pid %d (%d frames rendered, %d skipped, %.1f s)", k,
                         result.node, result.pid, result.rendered, result.skipped, result.elapsed_s)
            try:
                statuses = ray.get(board.snapshot.remote(), timeout=STATUS_TIMEOUT_S)
            except (ray.exceptions.RayError, ray.exceptions.GetTimeoutError):
                statuses = {}
            now_seen = (len(done), tuple(sorted((k, s["at"], s["stage"]) for k, s in statuses.items())))
            if now_seen != seen:
                moved, seen = time.monotonic(), now_seen
            elif time.monotonic() - moved > stall_s:
                raise ClusterError(f"the cluster has shown no progress for {stall_s:g} s (its head or its workers "
                                   f"stopped answering); {len(done)} of {len(chunks)} chunks are done")
            running = [s for s in statuses.values() if s["stage"] != "done" and s["chunk"] not in done]
            rendered = sum(chunks[k].stop - chunks[k].first for k in done) + sum(
                min(s["done"], chunks[s["chunk"]].stop - chunks[s["chunk"]].first) for s in running)
            bar.update(rendered, len(done), running)
        joiner.finish(audio_tail)
        if target != out:
            os.replace(target, out)
            if Path(f"{target}.log").exists():       # the recorder's log (vj.output.recorder) goes with it
                os.replace(f"{target}.log", f"{out}.log")
        whole = True
    finally:
        try:
            for ref in refs:
                ray.cancel(ref, force=True)
            ray.kill(board)
        except ray.exceptions.RayError:      # the cluster is gone: nothing left to stop
            pass
        joiner.close()
        if not whole:
            remove_partial(out)
            if store.finished():
                log.error("cluster: the finished chunks are kept in %s: run again with --resume", store.folder)
            else:
                store.remove()              # nothing to resume from
    bar.update(job.n_frames, len(chunks), [])
    store.remove()
    return RenderReport(Path(out), joiner.written, job.n_frames / job.fps, time.perf_counter() - t0)


def partial_path(out: Path | str) -> Path | None:
    """The hidden name a cluster render writes a video under until it is whole (None for a PNG frame folder)."""
    if is_frame_sequence(out):
        return None
    return Path(out).with_name(f".{Path(out).stem}.vjpart{Path(out).suffix}")


def remove_partial(out: Path | str) -> None:
    """The hidden video a driver writes into, and its recorder log (a driver that died may have left them)."""
    part = partial_path(out)
    if part is not None:
        part.unlink(missing_ok=True)
        Path(f"{part}.log").unlink(missing_ok=True)


class _StatusBoard:
    """A Ray actor: the newest status of every chunk, as its worker last reported it."""

    def __init__(self):
        self.statuses: dict[int, dict] = {}

    def report(self, status: dict) -> None:
        self.statuses[status["chunk"]] = status

    def snapshot(self) -> dict[int, dict]:
        return dict(self.statuses)


class _Joiner:
    """Writes the chunks' frames in order: each frame with its audio; a chunk that starts from a warmed-up picture
    (not exact) cross-fades from the previous chunk's tail over the overlap."""

    def __init__(self, open_writer: Callable[[], object], audio: Callable[[int], np.ndarray],
                 tick: Callable[[int], int] | None = None):
        self.open_writer, self.audio, self.tick = open_writer, audio, tick
        self.out: FrameEmitter | None = None   # made with the first frame: a job that fails before leaves no file
        self.next = 0
        self._tail: list[np.ndarray] = []

    @property
    def writer(self):
        return self.out.writer if self.out is not None else None

    @property
    def written(self) -> int:
        return self.out.written if self.out is not None else 0

    def add(self, chunk: Chunk, meta: dict, parts: list[Path]) -> None:
        own = chunk.stop - chunk.first
        if meta["frames"] not in (own, own + chunk.tail):
            raise ClusterError(f"chunk {chunk.index}: {meta['frames']} frames where the plan has {own} (+{chunk.tail})")
        tail, fade = [], [] if meta["exact_start"] else self._tail
        if not meta["exact_start"] and not fade and chunk.first > 0:
            log.warning("cluster: chunk %d starts from a warmed-up picture, but the one before it left no "
                        "overlap to cross-fade from (--overlap-s 0?): a hard cut at frame %d", chunk.index, chunk.first)
        j = -1
        for j, rgb in enumerate(read_chunk(parts)):
            i = chunk.first + j
            if i >= chunk.stop:
                tail.append(rgb)
                continue
            if j < len(fade):
                w = np.float32((j + 1) / (len(fade) + 1))
                rgb = np.rint(fade[j].astype(np.float32) * (1 - w) + rgb.astype(np.float32) * w).astype(np.uint8)
            if self.out is None:       # the same path a one-machine render's frames take: audio, picture, error
                self.out = FrameEmitter(None, self.open_writer(), Progress(0, enabled=False), self.audio, self.tick)
            self.out.write(i, rgb)
        if j + 1 != meta["frames"]:
            raise ClusterError(f"chunk {chunk.index}: its files in {parts[0].parent} end early")
        self._tail = tail
        self.next += 1

    def finish(self, audio_tail: np.ndarray | None) -> None:
        if audio_tail is not None and len(audio_tail):
            self.writer.add_audio(audio_tail)
        finish_writer(self.writer)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
