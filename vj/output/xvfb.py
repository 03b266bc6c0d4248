"""Xvfb: a virtual X server (GLX on Mesa) on a free display, for a window where there is no screen.

`with running_xvfb() as display: ...` yields ':N' of a running server and stops it afterwards. The tests
use it, and so does `vj bench latency` on a machine without a display.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

SCREEN = "1280x720x24"
START_TIMEOUT_S = 15.0


class XvfbError(RuntimeError):
    """Xvfb did not come up."""


@contextlib.contextmanager
def running_xvfb(screen: str = SCREEN, timeout_s: float = START_TIMEOUT_S) -> Iterator[str]:
    """Start Xvfb on a free display, wait until it accepts clients, yield ':N', then stop it."""
    exe = shutil.which("Xvfb")
    if exe is None:
        raise XvfbError("Xvfb is not installed")
    # -displayfd: Xvfb picks a free display number itself (no race with other servers) and
    # writes it to the pipe once it is ready for clients. -noreset: by default the server resets
    # when its last client leaves, and a client connecting during the reset is refused (glfw
    # terminating in one test and starting in the next hit exactly that).
    read_fd, write_fd = os.pipe()
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [exe, "-displayfd", str(write_fd), "-screen", "0", screen, "+extension", "GLX", "-nolisten", "tcp",
         "-noreset"],
        pass_fds=(write_fd,), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
    os.close(write_fd)
    try:
        display = _read_display(read_fd, proc, timeout_s)
        if display is None:
            log.seek(0)
            tail = log.read().decode("utf-8", "replace").strip().splitlines()[-3:]
            raise XvfbError(f"Xvfb did not start within {timeout_s:.0f} s: {' | '.join(tail)}")
        yield display
    finally:
        os.close(read_fd)
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the test process dies, even by SIGKILL (no orphan servers)."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _read_display(fd: int, proc: subprocess.Popen, timeout_s: float) -> str | None:
    data = b""
    deadline = time.monotonic() + timeout_s
    while not data.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or proc.poll() is not None:
            return None
        ready, _, _ = select.select([fd], [], [], min(remaining, 0.2))
        if ready:
            chunk = os.read(fd, 64)
            if not chunk:
                return None
            data += chunk
    return f":{int(data.strip())}"
