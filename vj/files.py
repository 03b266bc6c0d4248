"""Files written whole or not at all: a reader, a folder watcher or a crash never sees half of one."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def write_atomic(path: str | os.PathLike, data: str | bytes, *, durable: bool = False) -> None:
    """Write `data` (text as UTF-8) to a hidden file beside `path`, then rename it over `path` (atomic within a
    filesystem). `durable`: fsync before the rename, for what must outlive a power cut. On an error (a full disk, a
    read-only folder) the hidden file is removed, `path` is as it was, and the error is raised."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.vj-tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
