"""Hot reload: notice edited shader files by polling their mtimes; the render thread recompiles between frames."""

from __future__ import annotations

import os
import time
from pathlib import Path


class ShaderWatcher:
    """Watches effect files (.fs and the .vs beside it). `poll()` is cheap and never compiles anything.

    Usage, once per frame on the render thread:
        for name, path in watcher.poll():
            chain.reload(name, path)
    """

    def __init__(self, interval_s: float = 0.5):
        self.interval_s = interval_s
        self._files: dict[str, Path] = {}
        self._stamps: dict[str, tuple] = {}
        self._next_check = 0.0

    def watch(self, effects: dict[str, Path]) -> None:
        """Replace the watched set with {effect name: .fs path}."""
        self._files = {n: Path(p) for n, p in effects.items()}
        self._stamps = {n: self._stamp(p) for n, p in self._files.items()}

    @staticmethod
    def _stamp(path: Path) -> tuple:
        out = []
        for p in (path, path.with_suffix(".vs")):
            try:
                st = os.stat(p)
                out.append((st.st_mtime_ns, st.st_size))
            except OSError:
                out.append(None)
        return tuple(out)

    def poll(self, now_s: float | None = None) -> list[tuple[str, Path]]:
        """(name, path) of effects whose files changed since the last poll (at most every interval_s)."""
        now = time.monotonic() if now_s is None else now_s
        if now < self._next_check:
            return []
        self._next_check = now + self.interval_s
        changed = []
        for name, path in self._files.items():
            stamp = self._stamp(path)
            if stamp != self._stamps.get(name):
                self._stamps[name] = stamp
                changed.append((name, path))
        return changed
