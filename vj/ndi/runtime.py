"""The NDI runtime: cyndilib imported on first use, one finder per process, sources looked up by name.

cyndilib loads libndi (carried in its wheel) when it is imported, so nothing here imports it before an NDI
sender or source is asked for. The runtime reads its network settings (`ndi-config.v1.json`) from the
folder named by NDI_CONFIG_DIR, or ~/.ndi, when it first starts in a process.

NDI names a source "HOST (NAME)"; `find_source` takes either that full name or just NAME.
"""

from __future__ import annotations

import threading
import time
from types import ModuleType

LOOKUP_POLL_S = 0.05                  # how often find_source asks the finder again while it waits

_lock = threading.Lock()              # the finder and the Source pointers it hands out are shared by all threads
_finder = None


class NdiError(ValueError):
    """NDI cannot be used for this: the message says why, in one line."""


def cyndilib() -> ModuleType:
    """The cyndilib package (imported on the first call); NdiError when it or libndi is missing."""
    try:
        import cyndilib as module
    except ImportError as exc:
        if getattr(exc, "name", None) == "cyndilib":
            raise NdiError("NDI: cyndilib is not installed (pip install cyndilib)") from None
        raise NdiError(f"NDI: the NDI runtime does not load: {_one_line(exc)}") from None
    except OSError as exc:        # libndi missing or built for another CPU
        raise NdiError(f"NDI: the NDI runtime does not load: {_one_line(exc)}") from None
    return module


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _get_finder():
    """The process's finder, created on first use. Caller holds _lock.

    One finder for every sender and source: a new finder needs about half a second before it lists
    anything, while one that is kept knows the sources already. It is never `open()`ed: cyndilib's finder
    thread re-reads the list only every 5 s once there are sources, and its blocking wait holds the GIL, so
    each lookup asks libndi for the current list itself (NDIlib_find_get_current_sources does not block).
    """
    global _finder
    if _finder is None:
        try:
            _finder = cyndilib().finder.Finder()
        except MemoryError:       # cyndilib's way of saying that NDIlib_find_create_v2 returned NULL
            raise NdiError("NDI: cannot start source discovery (the NDI runtime refused a finder)") from None
    return _finder


def source_names() -> list[str]:
    """Full names ("HOST (NAME)") of the NDI sources visible now."""
    with _lock:
        return sorted(_get_finder().update_sources())


def matches(name: str, full_name: str) -> bool:
    """True when `name` is the source's full name or the NAME inside its parentheses."""
    if full_name == name:
        return True
    host, sep, rest = full_name.partition(" (")        # host names have no parentheses; stream names may
    return bool(sep) and rest.endswith(")") and rest[:-1] == name


def lookup(name: str, prefer: str | None = None) -> str | None:
    """The full name of a visible source called `name`, else None; does not wait.

    Where several hosts send the same NAME: `name` itself if it is a full name, else `prefer` (the host
    connected to before), else the first in sorted order.
    """
    found = [n for n in source_names() if matches(name, n)]
    for choice in (name, prefer):
        if choice in found:
            return choice
    return found[0] if found else None


def find_source(name: str, timeout_s: float) -> str | None:
    """The full name of the source called `name`, waiting up to timeout_s for it to appear; None if it does not."""
    deadline = time.monotonic() + max(float(timeout_s), 0.0)
    while True:
        full = lookup(name)
        if full is not None or time.monotonic() >= deadline:
            return full
        time.sleep(LOOKUP_POLL_S)


def connect(receiver, full_name: str) -> bool:
    """Point a cyndilib Receiver at the source `full_name`; False when that source is not visible now.

    Under the lock: libndi keeps a finder's source list valid only until the finder's next update, and the
    receiver reads the Source's pointer while it connects.
    """
    with _lock:
        finder = _get_finder()
        finder.update_sources()
        source = finder.get_source(full_name)
        if source is None or not source.valid:
            return False
        receiver.set_source(None)     # set_source ignores the Source it already has: drop it to connect again
        receiver.set_source(source)
        return True
