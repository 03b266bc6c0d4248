"""Finished chunks on the driver's disk (OUT.vjchunks/), so a restarted driver (`--resume`) renders only the rest."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

from vj.cluster.job import FORMAT
from vj.cluster.worker import ChunkResult
from vj.files import write_atomic

log = logging.getLogger(__name__)


class ClusterError(RuntimeError):
    """A cluster render cannot go on: one line that names the cause."""


class ChunkStore:
    """`OUT.vjchunks/`: job.json (the job's digest) and, per finished chunk, its parts chunk-NNNNN-PPP.mkv and its
    chunk-NNNNN.json, the .json written last (atomically): a chunk counts only once all are whole. Removed when the
    output is."""

    def __init__(self, out: str | Path, digest: str, resume: bool):
        self.folder = Path(str(out).rstrip("/") + ".vjchunks")
        manifest = self.folder / "job.json"
        if self.folder.exists():
            try:
                kept = json.loads(manifest.read_text()).get("digest")
            except (OSError, ValueError):
                kept = None
            if resume and kept not in (None, digest):
                raise ClusterError(f"{self.folder} holds chunks of another job (its inputs or settings changed); "
                                   f"remove it, or render without --resume")
            if not resume:
                shutil.rmtree(self.folder)
        elif resume:
            log.warning("cluster: nothing to resume (no %s); rendering the whole job", self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        write_atomic(manifest, json.dumps({"digest": digest, "format": FORMAT}), durable=True)

    def _part(self, index: int, part: int) -> Path:
        return self.folder / f"chunk-{index:05d}-{part:03d}.mkv"

    def finished(self) -> dict[int, dict]:
        """index -> what the chunk's .json says, for every whole chunk on disk."""
        out = {}
        for meta_path in sorted(self.folder.glob("chunk-?????.json")):
            try:
                meta = json.loads(meta_path.read_text())
                index = int(meta["index"])
                if all(self._part(index, p).stat().st_size == n for p, n in enumerate(meta["parts"])):
                    out[index] = meta
            except (OSError, ValueError, KeyError, TypeError):
                continue        # a chunk half written when the driver died: rendered again
        return out

    def save(self, r: ChunkResult, fetch: Callable[[object], bytes] = lambda part: part) -> dict:
        """Write the chunk's parts (`fetch` turns each into bytes: ray.get for object refs), then its .json."""
        sizes = []
        try:
            for p, part in enumerate(r.parts):
                data = fetch(part)
                write_atomic(self._part(r.index, p), data, durable=True)
                sizes.append(len(data))
            meta = {"index": r.index, "first": r.first, "frames": r.frames, "exact_start": r.exact_start,
                    "parts": sizes, "node": r.node, "pid": r.pid, "rendered": r.rendered, "skipped": r.skipped,
                    "elapsed_s": round(r.elapsed_s, 3)}
            write_atomic(self.folder / f"chunk-{r.index:05d}.json", json.dumps(meta), durable=True)
        except OSError as exc:
            raise ClusterError(f"cannot keep chunk {r.index} in {self.folder}: {exc.strerror or exc}") from None
        return meta

    def parts(self, index: int, meta: dict) -> list[Path]:
        return [self._part(index, p) for p in range(len(meta["parts"]))]

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
