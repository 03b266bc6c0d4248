"""glibc malloc set up for a show that runs for hours: two arenas instead of eight per core.

Why: glibc gives threads their own malloc arenas, up to eight per core (16 on 2 cores, 128 on 16), and an
arena keeps the memory it once held for its threads. A show makes threads all the time (a model worker for
each scene with a new model, encoders for each recording, web clients), and every arena in turn serves a
model's large transient tensors and frames; each then grows to the biggest working set it has met. In
`vj bench soak` (960x540, a scene change every 5 s) the memory malloc had in use stayed at ~300 MB while
the memory it held over 16 arenas grew from 430 to 780 MB in 10 minutes (RSS +100 MB per 100 scene changes
after warm-up, still rising); with two arenas it held 433 MB from minute 4 to 13 of 15 (RSS +7 MB per 100).

`limit_arenas()` must run before the process starts threads: arenas that exist stay. MALLOC_ARENA_MAX or
a glibc.malloc.arena_max in GLIBC_TUNABLES, when set, win. Elsewhere (not glibc) it does nothing.
"""

from __future__ import annotations

import ctypes
import os
import sys

ARENAS = 2                  # the main arena and one for every other thread: the soak's RSS levelled off
M_ARENA_MAX = -8            # mallopt's parameter number (malloc.h)


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version          # only glibc has it (musl, for one, has no arenas to limit)
        return libc
    except (OSError, AttributeError):
        return None


def limit_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas at `arenas` unless the environment says otherwise; True if set here."""
    if "MALLOC_ARENA_MAX" in os.environ or "glibc.malloc.arena_max" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    libc = _glibc()
    return libc is not None and libc.mallopt(M_ARENA_MAX, int(arenas)) == 1


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]


def mallinfo() -> dict[str, float] | None:
    """glibc malloc's totals over its arenas in MB: `system` (taken from the system for the arenas), `in_use`,
    `free` (held in the arenas, not in use), `mmapped` (large chunks of their own); None where not glibc."""
    libc = _glibc()
    if libc is None:
        return None
    libc.mallinfo2.restype = _MallInfo2
    mi = libc.mallinfo2()
    return {"system": mi.arena / 2**20, "in_use": mi.uordblks / 2**20, "free": mi.fordblks / 2**20,
            "mmapped": mi.hblkhd / 2**20}


def trim() -> None:
    """malloc_trim(0): give the free pages in every arena back to the system (diagnostics: it walks the heap)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def malloc_arenas() -> int | None:
    """How many arenas glibc malloc has now (the `<heap nr=` entries of malloc_info); None where not glibc."""
    libc = _glibc()
    if libc is None:
        return None
    buf, size = ctypes.c_char_p(), ctypes.c_size_t()
    libc.open_memstream.restype = ctypes.c_void_p
    fp = ctypes.c_void_p(libc.open_memstream(ctypes.byref(buf), ctypes.byref(size)))
    try:
        libc.malloc_info(0, fp)
    finally:
        libc.fclose(fp)
    try:
        return ctypes.string_at(buf, size.value).decode().count("<heap nr=")
    finally:
        libc.free(buf)
