"""The watchdog: notices a frame loop iteration or a model render that runs too long, and says where it is stuck."""

from __future__ import annotations

import logging
import sys
import sysconfig
import threading
import time
import traceback

log = logging.getLogger(__name__)

FRAME_STALL_S = 1.0        # a frame loop iteration longer than this is a stall the audience sees (a frozen picture)
_STDLIB = tuple({sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]})
POLL_S = 0.1               # how often the watchdog thread looks: a stall is caught within FRAME_STALL_S + POLL_S


def thread_stack(thread: threading.Thread | int | None) -> str:
    """The Python stack of a running thread, innermost call last ("" when it is not running)."""
    ident = thread.ident if isinstance(thread, threading.Thread) else thread
    frame = sys._current_frames().get(ident) if ident is not None else None
    return "".join(traceback.format_stack(frame)) if frame is not None else ""


def stack_where(stack: str) -> str:
    """The innermost `file:line in function` of a formatted stack outside Python's own library (a thread stuck in
    `Event.wait` is stuck where it called it), for a one-line HUD message."""
    calls = []
    for line in stack.splitlines():
        line = line.strip()
        if line.startswith('File "'):
            path, _, rest = line[6:].partition('", line ')
            number, _, func = rest.partition(", in ")
            calls.append((path, f"{path.rsplit('/', 1)[-1]}:{number} in {func}"))
    for path, where in reversed(calls):
        if not path.startswith(_STDLIB):
            return where
    return calls[-1][1] if calls else "?"


class FrameWatchdog:
    """A daemon thread that watches the frame loop's heartbeat and dumps the frame loop's stack when it stalls.

    The frame loop calls `tick()` at the start of every iteration (cheap: one float store). When no tick came for
    FRAME_STALL_S the watchdog logs the stuck thread's stack, once per stall; the loop itself, once it runs again,
    reads `take_stall()` to show the stall on the HUD. Nothing here can unstick the loop: a stalled loop keeps the
    last picture it swapped on screen, and the stack says what to fix.
    """

    def __init__(self, stall_s: float = FRAME_STALL_S, poll_s: float = POLL_S):
        self.stall_s = stall_s
        self.poll_s = poll_s
        self.stalls = 0
        self._ident = threading.get_ident()         # the thread that makes this is the one watched
        self._last = time.monotonic()
        self._reported_at: float | None = None      # the tick whose stall was reported
        self._pending: tuple[float, str] | None = None       # (stall seconds so far, where) for the HUD
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vj-watchdog", daemon=True)
        self._thread.start()

    def tick(self) -> None:
        """The frame loop is alive: a new iteration starts now."""
        now = time.monotonic()
        if self._reported_at is not None and self._reported_at == self._last:
            with self._lock:                        # the stall just ended: record how long it lasted
                where = self._pending[1] if self._pending else "?"
                self._pending = (now - self._last, where)
                self._reported_at = None
            log.warning("frame loop: the stall at %s ended after %.1f s", where, now - self._last)
        self._last = now

    def take_stall(self) -> tuple[float, str] | None:
        """(seconds, where) of the newest stall since the last call, or None."""
        with self._lock:
            pending, self._pending = self._pending, None
            return pending

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1.0)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            last = self._last
            late = time.monotonic() - last
            if late < self.stall_s or self._reported_at == last:
                continue
            stack = thread_stack(self._ident)
            where = stack_where(stack)
            with self._lock:
                self.stalls += 1
                self._reported_at = last
                self._pending = (late, where)
            log.error("frame loop: no frame for %.1f s (the screen holds the last picture); it is stuck at %s:\n%s",
                      late, where, stack.rstrip())
