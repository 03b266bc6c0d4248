"""`vj bench soak --trace`: the lines that say what a growing RSS is made of."""

from __future__ import annotations

import mmap

import pytest

from vj.allocator import _glibc
from vj.soak import Trace


def test_unknown_trace_names_are_refused_before_the_show_starts():
    with pytest.raises(ValueError, match="unknown rss"):
        Trace("mem,rss")


@pytest.mark.skipif(_glibc() is None, reason="smaps and mallinfo2: Linux with glibc")
def test_a_new_mapping_shows_up_by_its_size_and_malloc_by_its_arenas():
    lines: list[str] = []
    trace = Trace("mem,maps,trim", out=lines.append)
    trace.row()
    block = mmap.mmap(-1, 24 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)   # 24 MB, half touched
    block[: 12 << 20] = b"\1" * (12 << 20)
    lines.clear()
    trace.row()
    mem, maps, trim = lines
    assert "malloc: system" in mem and "arenas" in mem and "py objects" in mem
    came = dict(part.rsplit(" ", 1) for part in maps.split("(+ came, - went): ")[1].split(", "))
    assert float(came["+24"]) == pytest.approx(12.0, abs=0.5)
    assert trim.startswith("        trace  malloc_trim gave back")
    block.close()
