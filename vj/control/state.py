"""What control servers see of the engine, and the command paths they can send.

The main thread is the only writer of parameter state. Once per frame it publishes a frozen
`ControlSnapshot` on the `ControlHub` (one reference assignment); OSC feedback, OSCQuery, the web page
and MIDI read the newest snapshot from their own threads and never touch the registry. Everything they
want changed goes onto `hub.changes` as a `Change`: a param path sets a value, a `/cmd/...` path runs a
command on the main thread (see COMMANDS).
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from vj.params import Change, Param, Value

# Commands: path -> (argument description, what it does). Arguments arrive as the Change's value
# (None when there is none). The engine and the show register a handler for each.
COMMANDS: dict[str, tuple[str, str]] = {
    "/cmd/preset/load": ("name", "load a preset by name (validated first; a bad one changes nothing)"),
    "/cmd/preset/next": ("", "load the next preset"),
    "/cmd/preset/prev": ("", "load the previous preset"),
    "/cmd/preset/save": ("name", "write the current state as presets/NAME.toml"),
    "/cmd/model/switch": ("name", "switch the scene's model to this generator (cppn, stylegan, ...), built in the "
                          "background and faded in; its /model/ params start at their defaults"),
    "/cmd/tap": ("", "tap tempo: a few taps set the BPM and the beat phase"),
    "/cmd/resync": ("", "the next beat is a downbeat"),
    "/cmd/blackout": ("bool (optional)", "toggle the blackout, or set it"),
    "/cmd/freeze": ("bool (optional)", "toggle the freeze, or set it"),
    "/cmd/record/start": ("path (optional)", "start recording the show"),
    "/cmd/record/stop": ("", "stop recording"),
    "/cmd/midi/learn": ("path (optional)", "MIDI learn: the next CC, note or pitch bend drives PATH; no PATH cancels"),
    "/cmd/midi/save": ("", "write the MIDI mappings, learned ones included, to the controller's TOML file"),
}

FEATURE_KEYS = ("level", "bass", "mid", "high", "onset", "beat", "beat_phase", "bpm")


def is_command(path: str) -> bool:
    return path.startswith("/cmd/")


@dataclass(frozen=True)
class ControlSnapshot:
    """The engine as control servers see it at one frame. Immutable; replaced, never changed."""

    version: int = 0                                   # grows whenever params or their base values change
    params: tuple[Param, ...] = ()                     # every declared param, sorted by path
    values: Mapping[str, Value] = field(default_factory=lambda: MappingProxyType({}))   # base values by path
    features: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))  # FEATURE_KEYS
    preset: str = ""                                   # the active preset's name
    presets: tuple[str, ...] = ()                      # the presets one can load
    # OSC address aliases of the active preset ([osc.alias]): "/1/fader1" -> "/norm/fx/kaleidoscope/sides"
    aliases: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    t_s: float = 0.0                                   # show clock
    frame: int = 0

    def param(self, path: str) -> Param | None:
        for p in self.params:
            if p.path == path:
                return p
        return None


class ControlHub:
    """The hand-over point between the main thread and every control server.

    `changes` is the engine's change queue. `publish` (main thread) replaces the snapshot and wakes
    waiters; `snapshot` (any thread) is the newest one; `wait_newer(version)` blocks until the param
    state moves past `version` or the timeout passes.
    """

    def __init__(self, changes: "queue.Queue[Change] | None" = None, max_queue: int = 10000):
        self.changes: queue.Queue[Change] = changes if changes is not None else queue.Queue()
        self.max_queue = max_queue
        self._snapshot = ControlSnapshot()
        self._cond = threading.Condition()

    @property
    def snapshot(self) -> ControlSnapshot:
        return self._snapshot

    def publish(self, snapshot: ControlSnapshot) -> None:
        changed = snapshot.version != self._snapshot.version
        self._snapshot = snapshot
        if changed:
            with self._cond:
                self._cond.notify_all()

    def wait_newer(self, version: int, timeout_s: float) -> ControlSnapshot:
        with self._cond:
            self._cond.wait_for(lambda: self._snapshot.version != version, timeout=timeout_s)
        return self._snapshot

    def send(self, path: str, value: Value = None, source: str = "") -> bool:
        """Queue a change or a command; False (and nothing queued) when the queue is full."""
        if self.changes.qsize() >= self.max_queue:
            return False
        self.changes.put(Change(path, value, source))
        return True
