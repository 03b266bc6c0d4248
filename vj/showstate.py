"""The live show's state file under `vj run`'s supervisor: written once a second off the frame loop, and what a
restarted show takes over from it.

The file (JSON, replaced atomically) holds what the audience would miss after a crash:

    pid         the process that wrote it (the supervisor knows from it that the show is on screen)
    preset      {"file": the preset's file or null, "name": ..., "toml": the scene as it plays, model switches
                and edits included (vj.presets.dump_preset)}
    values      every param's base value except events (one-frame pulses), as the control servers see them
    recording   the file being recorded, or null
    session     the session folder being written, or null
    fullscreen  the monitor the window is fullscreen on, or null
    hud         whether the HUD is shown
    played_s    seconds the show has played, over all its restarts (what is left of --duration)

A restarted show records into a new file beside the old one (`show.mp4` -> `show.restart1.mp4`): the old
one is a fragmented MP4 (or Matroska) that plays up to the crash, and overwriting it would lose the show so far.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vj.files import write_atomic
from vj.params import Change
from vj.presets import Preset, PresetError, dump_preset, parse_preset

log = logging.getLogger(__name__)

STATE_PERIOD_S = 1.0      # a crash loses at most this much of the performer's last moves
_RESTART = re.compile(r"\.restart\d+$")


def continuation(path: Path) -> Path:
    """Where a file or folder goes on after a restart: the first free `NAME.restartN[.SUFFIX]` beside it
    (`show.mp4` -> `show.restart1.mp4`; `show.restart1.mp4` -> `show.restart2.mp4`)."""
    path = Path(path)
    suffix = "" if path.is_dir() else path.suffix
    stem = _RESTART.sub("", path.name[:len(path.name) - len(suffix)])
    n = 1
    while (cand := path.with_name(f"{stem}.restart{n}{suffix}")).exists():
        n += 1
    return cand


def _beside(path: Path | None) -> Path | None:
    """`path` itself while it does not exist yet, else its continuation: never overwrite what a show wrote."""
    return None if path is None else continuation(path) if path.exists() else path


def read_state(path: Path) -> dict:
    """The state a show left in `path`; {} when there is none (it died before its first frame) or it is unreadable."""
    try:
        state = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("restart: cannot read the show's state %s (%s); starting as the command line says", path, exc)
        return {}
    return state if isinstance(state, dict) else {}


def _restored_preset(state: dict | None, fallback: str | Preset) -> str | Preset:
    if not isinstance(state, dict):
        return fallback
    path = Path(state["file"]) if state.get("file") else None
    try:
        # Parsed with the file's path: model files and shaders next to it resolve as they did, hot reload follows it.
        return parse_preset(str(state["toml"]), path)
    except (KeyError, PresetError) as exc:
        log.warning("restart: the scene as it played cannot be read back (%s); loading %s", exc, path or fallback)
        return str(path) if path is not None else fallback


@dataclass(frozen=True)
class Resume:
    """What a restarted show takes over from the one that died (`load`), and puts into the new one (`apply`)."""

    reason: str
    preset: str | Preset
    record: Path | None = None              # where the recording goes on, or None
    session: Path | None = None             # the session folder the new show writes, or None
    old_session: Path | None = None         # the one the dead show wrote
    fullscreen: int | None = None
    hud: bool = False
    played_s: float = 0.0
    duration_s: float | None = None         # what is left of --duration
    values: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, state_file: Path, reason: str, *, preset: str, record: Path | None, session: Path | None,
             fullscreen: int | None, hud: bool, duration_s: float | None) -> Resume:
        """From the state file; what it lacks (a show that died before its first frame) from the command line."""
        state = read_state(state_file)
        if state:
            preset = _restored_preset(state.get("preset"), preset)
            record = Path(state["recording"]) if state.get("recording") else None
            session = Path(state["session"]) if state.get("session") else None
            fullscreen, hud = state.get("fullscreen"), bool(state.get("hud", hud))
        values = state.get("values") if isinstance(state.get("values"), dict) else {}
        played_s = float(state.get("played_s", 0.0))
        return cls(reason, preset, record=_beside(record), session=_beside(session),
                   old_session=session if session is not None and session.is_dir() else None,
                   fullscreen=fullscreen if isinstance(fullscreen, int) else None, hud=hud, played_s=played_s,
                   duration_s=None if duration_s is None else max(duration_s - played_s, 0.0), values=values)

    def start_args(self) -> dict:
        """`run_live`'s keywords for the new show (the same names as the command line's)."""
        return dict(preset=self.preset, fullscreen=self.fullscreen, record=self.record, session=self.session,
                    hud=self.hud, duration_s=self.duration_s)

    def apply(self, show) -> None:
        """Set the values again (as changes from "restore", so a session records them) and note the restart."""
        for path, value in self.values.items():
            show.engine.changes.put(Change(path, tuple(value) if isinstance(value, list) else value, "restore"))
        # The dead show's session folder cannot be continued in place: its audio.flac ends where the process
        # died (a FLAC stream cannot be appended to) and its events.jsonl may end in half a line. So the new
        # show writes a session of its own, replayable alone, that starts with a "restart" event naming the old
        # one, and the old folder gets restart.json pointing at the new one.
        if show.session is not None:
            show.session.event("restart", reason=self.reason,
                               continues=str(self.old_session) if self.old_session is not None else None)
        if self.old_session is not None and self.session is not None:
            note = {"continued_in": str(self.session), "reason": self.reason,
                    "time": time.strftime("%Y-%m-%d %H:%M:%S")}
            try:
                (self.old_session / "restart.json").write_text(json.dumps(note, indent=2) + "\n", encoding="utf-8")
            except OSError as exc:
                log.warning("restart: cannot note the restart in %s: %s", self.old_session, exc.strerror or exc)
        where = [f"recording goes on in {self.record}" if self.record else "",
                 f"session goes on in {self.session}" if self.session else ""]
        log.warning("restarted after %s: preset %s, %d values restored%s", self.reason, show.engine.preset.name,
                    len(self.values), "".join(f"; {w}" for w in where if w))


class StateWriter:
    """Keeps a state file current (at most once per `period_s`, when something changed) from its own thread.

    It reads only what the main thread hands over whole: the control servers' frozen snapshot, the frozen
    preset, and attributes the main thread replaces (recorder, window monitor, HUD flag, clock); the frame
    loop never waits for the disk.
    """

    def __init__(self, path: Path, show, played_s: float = 0.0, period_s: float = STATE_PERIOD_S):
        self.path = Path(path)
        self.show = show
        self.played_s = played_s
        self.period_s = period_s
        self.writes = 0
        self._text = ""
        self._preset: Preset | None = None
        self._preset_state: dict | None = None
        self._failed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vj-state", daemon=True)

    def start(self) -> StateWriter:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def snapshot(self) -> dict | None:
        """The state as JSON-ready data; None before the first frame (nothing to restore yet)."""
        show = self.show
        snap = show.engine.hub.snapshot
        preset = show.engine.preset
        if not snap.values or preset is None:
            return None
        if preset is not self._preset:             # dumped once per scene, not every second
            self._preset = preset
            self._preset_state = {"file": str(preset.path.resolve()) if preset.path else None, "name": preset.name,
                                  "toml": dump_preset(preset)}
        events = {p.path for p in snap.params if p.kind == "event"}
        rec, session = show.recorder, show.session
        return {"pid": os.getpid(), "preset": self._preset_state,
                "values": {k: v for k, v in snap.values.items() if k not in events},
                "recording": str(Path(rec.path).resolve()) if rec is not None else None,
                "session": str(session.writer.folder.resolve()) if session is not None else None,
                "fullscreen": show.window.on_monitor, "hud": bool(show.hud_visible),
                "played_s": round(self.played_s + show.clock.t_s, 3)}

    def write(self) -> bool:
        """Write the state if it changed; True when the file was replaced."""
        state = self.snapshot()
        if state is None:
            return False
        text = json.dumps(state, indent=1, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v))
        if text == self._text:
            return False
        write_atomic(self.path, text)         # a reader sees the old state or the new one, never half of one
        self._text = text
        self.writes += 1
        return True

    def _run(self) -> None:
        while True:
            try:
                self.write()
                self._failed = False
            except (OSError, TypeError, ValueError) as exc:   # the thread's boundary: the show goes on without it
                if not self._failed:
                    self._failed = True
                    log.error("cannot write the show's state to %s: %s (a restart after a crash would start "
                              "from the command line)", self.path, getattr(exc, "strerror", None) or exc)
            if self._stop.wait(self.period_s):
                return


@contextlib.contextmanager
def supervised(show, state_file: Path | None, resume: Resume | None) -> Iterator[None]:
    """Around a live show's run: take over from `resume` and keep `state_file` current (each when given)."""
    if resume is not None:
        resume.apply(show)
    writer = StateWriter(state_file, show, resume.played_s if resume else 0.0).start() if state_file else None
    try:
        yield
    finally:
        if writer is not None:
            writer.close()


__all__ = ["Resume", "STATE_PERIOD_S", "StateWriter", "continuation", "read_state", "supervised"]
