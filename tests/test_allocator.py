"""glibc malloc: the `vj` command caps the arenas that threads spread a long show's memory over."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from vj.allocator import _glibc

pytestmark = pytest.mark.skipif(_glibc() is None, reason="glibc malloc only")

# Twelve threads alive at once, each allocating outside Python's small-object pool, then the arena count.
THREADS = """
import threading
from vj.allocator import malloc_arenas
go = threading.Event()
def work():
    held = [bytearray(200_000) for _ in range(20)]
    go.wait()
threads = [threading.Thread(target=work) for _ in range(12)]
for t in threads:
    t.start()
import time
time.sleep(0.3)
print(malloc_arenas())
go.set()
for t in threads:
    t.join()
"""


def _arenas(before: str, env: dict | None = None) -> int:
    out = subprocess.run([sys.executable, "-c", before + THREADS], capture_output=True, text=True, timeout=120,
                         env={k: v for k, v in os.environ.items() if k not in ("MALLOC_ARENA_MAX", "GLIBC_TUNABLES")}
                         | (env or {}))
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split()[-1])


def test_threads_get_arenas_of_their_own_by_default():
    # What the cap is for: glibc makes up to 8 arenas a core, so twelve threads get more than two.
    assert _arenas("") > 2


def test_the_vj_command_caps_the_arenas_before_its_threads_start():
    assert _arenas("import vj.cli\nvj.cli.main(['presets'])\n") <= 2


def test_malloc_arena_max_in_the_environment_wins():
    assert _arenas("from vj.allocator import limit_arenas\nassert not limit_arenas()\n",
                   {"MALLOC_ARENA_MAX": "4"}) == 4
