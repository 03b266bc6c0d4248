"""`vj run` under a supervisor: the show plays in a child process, and a child that dies is replaced at once.

The supervisor is small on purpose (no torch, GL or window imports: it starts at once and has nothing to crash
in). It runs `vj run ... --no-supervise --state-file RUN/state.json`; the child keeps that file holding its live
state (vj.showstate). Once the child is on screen, a spare child starts with `--standby`: it does the imports,
which are most of a start-up, makes the audio track and the playing scene's network ahead on a niced thread
(vj.spare), and waits on its stdin. When the show dies (a signal: SIGKILL from the
out-of-memory killer, SIGSEGV in a driver; or an error exit after it was up), the supervisor writes the reason
to the spare's stdin and the spare takes over from the state file: same preset and values, same servers and
monitor, the recording and session going on in new files beside the old ones.

What ends the supervisor with the child's status: the child exits 0 (window closed, --duration done) or is
stopped on purpose (SIGINT, SIGTERM, SIGHUP; Ctrl-C exits 130); the first child fails before its first
frame (a bad option or file: trying again would only fail again); SIGINT, SIGTERM or SIGHUP to the
supervisor, which passes SIGINT on to the child so that it finishes its recording and session. Too many
crashes in a row raise CrashLoopError.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

# Give up after MAX_CRASHES within CRASH_WINDOW_S. A show that dies five times in a minute dies at or soon after
# start-up (a driver, a model that does not fit): every try costs the audience seconds of a black screen, and
# the operator is better served by the error than by a sixth restart.
MAX_CRASHES = 5
CRASH_WINDOW_S = 60.0
# The first crash in the window restarts at once (the show should be back within 3 s); each further one waits
# twice as long as the one before, from FIRST_BACKOFF_S: 0, 1, 2, 4 s, then give up. A show that dies on every
# start therefore never spins the CPU, and gives up within 7 s of waiting plus five start-ups.
FIRST_BACKOFF_S = 1.0
POLL_S = 0.05            # how often the supervisor looks at its child: the part of a restart spent noticing
STOP_GRACE_S = 30.0      # a stopped show finishes its recording and session; one still busy after this is killed
ASKED = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP})     # stop signals: a wish, not a crash
INTERRUPTED = 130        # vj's status after Ctrl-C (cli.main)
STATE_FILE = "state.json"


class CrashLoopError(RuntimeError):
    """The show crashed too often in too short a time; the message says how often and how it last died."""


class CrashPolicy:
    """How long to wait before restarting a crashed show, and when to stop trying (`crashed` returns None)."""

    def __init__(self, max_crashes: int = MAX_CRASHES, window_s: float = CRASH_WINDOW_S,
                 first_backoff_s: float = FIRST_BACKOFF_S):
        self.max_crashes = max_crashes
        self.window_s = window_s
        self.first_backoff_s = first_backoff_s
        self.recent: deque[float] = deque()        # monotonic times of the crashes within the window

    def crashed(self, now_s: float) -> float | None:
        """Note a crash at `now_s`: the seconds to wait before restarting, or None to give up."""
        while self.recent and now_s - self.recent[0] >= self.window_s:
            self.recent.popleft()
        self.recent.append(now_s)
        n = len(self.recent)
        if n >= self.max_crashes:
            return None
        return 0.0 if n == 1 else self.first_backoff_s * 2 ** (n - 2)


def describe_exit(returncode: int) -> str:
    """A child's exit status in words: 'was killed by SIGKILL', 'exited with status 1'."""
    if returncode >= 0:
        return f"exited with status {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    return f"was killed by {name}"


def exit_status(returncode: int) -> int:
    """A child's status as a shell reports it: a death by signal N is 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def ready_file(state_file: Path, pid: int) -> Path:
    """What a `--standby` child leaves beside the state file once its imports and warm-up are done."""
    return Path(state_file).with_name(f"spare-{pid}.ready")


def mark_ready(state_file: Path) -> None:
    """In a `--standby` child: its imports and warm-up (vj.spare) are done."""
    ready_file(state_file, os.getpid()).touch()


def wait_for_restart(stream: IO[str]) -> str | None:
    """In a `--standby` child: block until the supervisor says why it takes over; None when it went away instead."""
    line = stream.readline()
    if not line.strip():
        return None
    reason = json.loads(line)
    return str(reason)


def _tell(proc: subprocess.Popen, reason: str) -> bool:
    """Wake a `--standby` child (see wait_for_restart); False when it is gone."""
    try:
        proc.stdin.write((json.dumps(reason) + "\n").encode())
        proc.stdin.close()
        return True
    except OSError:          # BrokenPipeError: it died
        return False


def _stop_with_parent() -> None:
    """In a child, before exec: SIGINT (a clean stop) when the supervisor dies, even by SIGKILL."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGINT)


class Supervisor:
    """Runs `command` (the child's command line, without --state-file and --standby) until it ends normally.

    `run_dir` holds the state file; by default a temporary folder, removed at the end.
    """

    def __init__(self, command: list[str], run_dir: Path | None = None, *, policy: CrashPolicy | None = None):
        self.command = list(command)
        self._own_dir = run_dir is None
        self.run_dir = Path(tempfile.mkdtemp(prefix="vj-run-")) if run_dir is None else Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.state_file = self.run_dir / STATE_FILE
        self.policy = policy or CrashPolicy()
        self.child: subprocess.Popen | None = None
        self.spare: subprocess.Popen | None = None
        self.restarts = 0
        self._up = False                          # the child has written its state: it is on screen
        self._state_stamp: int | None = None      # mtime of the state file when it was last read
        self._stop: int | None = None             # the stop signal the supervisor got
        self._kill = False                        # a second stop signal: no more waiting

    def run(self) -> int:
        """Supervise until the show ends; its exit status. CrashLoopError when it crashes too often."""
        handlers = {s: signal.signal(s, self._on_signal) for s in ASKED}
        try:
            return self._supervise()
        finally:
            for s, h in handlers.items():
                signal.signal(s, h)
            self._drop_spare()
            if self._own_dir:
                shutil.rmtree(self.run_dir, ignore_errors=True)

    def _supervise(self) -> int:
        self.child = self._spawn(standby=False)
        log.info("supervisor: the show runs as process %d and is restarted if it crashes "
                 "(vj run --no-supervise runs it without)", self.child.pid)
        while True:
            rc = self._watch(self.child)
            if self._stop is not None or rc in (0, INTERRUPTED) or (rc < 0 and -rc in ASKED):
                return exit_status(rc)
            if not self._up and self.restarts == 0:
                return exit_status(rc)      # it never got going: it said why, and would only fail again
            why = describe_exit(rc)
            delay = self.policy.crashed(time.monotonic())
            if delay is None:
                raise CrashLoopError(f"the show crashed {self.policy.max_crashes} times in "
                                     f"{self.policy.window_s:.0f} s (last: it {why}); giving up "
                                     f"(vj run --no-supervise shows the crash as it happens)")
            log.warning("the show %s; restarting it %s (crash %d within %.0f s; crash %d gives up)", why,
                        f"in {delay:.0f} s" if delay else "now", len(self.policy.recent), self.policy.window_s,
                        self.policy.max_crashes)
            if not self._sleep(delay):
                return 128 + self._stop         # stopped while no show was running
            self.restarts += 1
            self.child = self._take_over(f"the show {why} (restart {self.restarts})")

    # ---- children -----------------------------------------------------------------------------------

    def _spawn(self, standby: bool) -> subprocess.Popen:
        cmd = [*self.command, "--state-file", str(self.state_file), *(["--standby"] if standby else [])]
        # A session of its own: Ctrl-C in the terminal reaches the supervisor only, which passes one SIGINT on.
        return subprocess.Popen(cmd, stdin=subprocess.PIPE if standby else subprocess.DEVNULL,
                                start_new_session=True, preexec_fn=_stop_with_parent)

    def _take_over(self, reason: str) -> subprocess.Popen:
        """The spare (or, when there is none, a new child) goes on with the show; `reason` goes to its log."""
        proc, self.spare = self.spare, None
        ready = proc is not None and ready_file(self.state_file, proc.pid).exists()
        warm = proc is not None and proc.poll() is None and _tell(proc, reason)
        if not warm:
            if proc is not None:        # a spare that died while it waited
                proc.kill()
                proc.wait()
            proc = self._spawn(standby=True)
            _tell(proc, reason)
        self._up = False
        log.info("supervisor: process %d takes over (%s)", proc.pid,
                 "a new process" if not warm else "the spare, warmed up" if ready else
                 "the spare, still warming up")
        return proc

    def _watch(self, child: subprocess.Popen) -> int:
        """Wait for `child` to exit; meanwhile pass a stop signal on, and start a spare once the show is up."""
        asked_at: float | None = None
        while True:
            rc = child.poll()
            if rc is not None:
                self._check_up(child)       # up and killed within one poll still counts as up
                return rc
            if self._stop is not None:
                if asked_at is None:
                    asked_at = time.monotonic()
                    with contextlib.suppress(ProcessLookupError):
                        child.send_signal(signal.SIGINT)
                elif self._kill or time.monotonic() - asked_at > STOP_GRACE_S:
                    child.kill()
            elif not self._up and self._check_up(child) and (self.spare is None or self.spare.poll() is not None):
                self.spare = self._spawn(standby=True)
            time.sleep(POLL_S)

    def _check_up(self, child: subprocess.Popen) -> bool:
        """Is `child` on screen? It is once the state file names its pid (it writes it after its first frame)."""
        if self._up:
            return True
        try:
            stamp = self.state_file.stat().st_mtime_ns
            if stamp != self._state_stamp:
                self._state_stamp = stamp
                self._up = json.loads(self.state_file.read_text(encoding="utf-8")).get("pid") == child.pid
        except (OSError, ValueError, AttributeError):
            pass            # not written yet, or caught mid-replace: the next poll looks again
        return self._up

    def _drop_spare(self) -> None:
        spare, self.spare = self.spare, None
        if spare is not None and spare.poll() is None:
            spare.kill()            # it holds nothing but imports
            spare.wait()

    # ---- signals ------------------------------------------------------------------------------------

    def _on_signal(self, signum: int, _frame) -> None:
        if self._stop is None:
            self._stop = signum
        else:
            self._kill = True

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless a stop signal comes; False when one came."""
        end = time.monotonic() + seconds
        while self._stop is None and time.monotonic() < end:
            time.sleep(min(POLL_S, max(end - time.monotonic(), 0.0)))
        return self._stop is None


def supervise(argv: list[str]) -> int:
    """`vj run ARGV` (ARGV as given on the command line) under a Supervisor; its exit status."""
    return Supervisor([sys.executable, "-m", "vj.cli", *argv, "--no-supervise"]).run()


__all__ = ["CrashLoopError", "CrashPolicy", "Supervisor", "describe_exit", "exit_status", "mark_ready", "supervise",
           "wait_for_restart"]
