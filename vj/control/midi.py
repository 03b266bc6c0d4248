"""MIDI in: controller messages become Changes through per-controller TOML mappings; learn; clock in.

Three parts, each usable alone:
- `MidiMap` (parse/load/dump): the mapping file of one controller, validated with file:line errors.
- `MidiRouter`: turns one decoded message into Changes on the `ControlHub` (`hub.send`), makes learned
  mappings, and feeds `MidiClock`. It only reads the frozen snapshot; it never touches engine state.
- `MidiInput`: opens an rtmidi input port by name (ALSA sequencer where there is one, else JACK), runs
  the router from rtmidi's callback thread, and re-opens the port when the controller comes back, or
  when the JACK server itself was restarted (see `MidiInput._server_gone`).
"""

from __future__ import annotations

import logging
import math
import os
import re
import sys
import threading
import time
import tomllib
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable

import tomli_w

from vj.control.state import COMMANDS, ControlHub, is_command
from vj.files import write_atomic
from vj.modulation import CURVES
from vj.params import Param, Value

log = logging.getLogger(__name__)

MIDI_DIR = Path(__file__).resolve().parent.parent.parent / "midi"

# The commands MIDI adds (declared with the others in vj.control.state.COMMANDS).
MIDI_COMMANDS: dict[str, tuple[str, str]] = {k: v for k, v in COMMANDS.items() if k.startswith("/cmd/midi/")}

KINDS = ("cc", "cc14", "note", "bend")
# Endless encoders send how far they turned, not where they are; the three usual codings of the ticks:
RELATIVE = {
    "relative": lambda v: v if v < 64 else v - 128,            # two's complement: 1 = +1, 127 = -1
    "relative_offset": lambda v: v - 64,                       # binary offset: 65 = +1, 63 = -1
    "relative_signed": lambda v: -(v & 63) if v & 64 else v,   # sign-magnitude: 1 = +1, 65 = -1
}
MODES = {
    "cc": ("absolute", "toggle", "momentary", *RELATIVE),   # toggle/momentary: buttons that send 127 / 0
    "cc14": ("absolute",),
    "note": ("velocity", "toggle", "momentary", "trigger"),
    "bend": ("absolute",),
}
_NUMBER_KEY = {"cc": "cc", "cc14": "cc", "note": "note", "bend": None}
_COMMON_KEYS = {"path", "channel", "min", "max", "curve", "mode", "arg", "step"}
_TOP_KEYS = {"controller", "port", *KINDS}
_PATH_RE = re.compile(r"^(/[A-Za-z0-9_.\-]+)+$")
ALSA_SEQ = "/dev/snd/seq"         # rtmidi's ALSA backend needs the sequencer device
PRESS = 64                        # a CC at or above this is a pressed button (MIDI's on/off switch rule)
LEARN_14BIT_S = 0.1               # an LSB (cc+32) this soon after a learned MSB makes the mapping 14-bit


class MidiMapError(ValueError):
    """A mapping file that cannot be used; the message names the file, the line where known, and why."""


# ---- mapping files -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mapping:
    """One control -> one param path (or /cmd/ command).

    `number` is the CC (the MSB's CC for cc14) or the note; 0 for bend. `channel` is 1..16, None for any.
    `min`/`max` are in the param's units (None: the param's own range). `curve` shapes 0..1 first.
    """

    kind: str
    number: int
    path: str
    channel: int | None = None
    min: float | None = None
    max: float | None = None
    curve: str = "linear"
    mode: str = ""                # "" : the kind's default (absolute, or velocity/trigger for notes)
    arg: Value = None             # the command's argument, for /cmd/ paths
    line: int = 0                 # where it was read from, for messages
    step: float | None = None     # relative modes: param units per encoder tick (None: range / 127, ints 1)

    @property
    def source(self) -> tuple[str, int | None, int]:
        return (self.kind, self.channel, self.number)

    @property
    def effective_mode(self) -> str:
        if self.mode:
            return self.mode
        if is_command(self.path):
            return "trigger"
        return "velocity" if self.kind == "note" else "absolute"

    def describe(self) -> str:
        ch = f" ch{self.channel}" if self.channel else ""
        num = "" if self.kind == "bend" else f" {self.number}"
        return f"{self.kind}{num}{ch} -> {self.path}"


@dataclass(frozen=True)
class MidiMap:
    controller: str = ""
    port: str = ""                # the input to open when none is named on the command line
    mappings: tuple[Mapping, ...] = ()
    path: Path | None = None


def _toml_line(exc: tomllib.TOMLDecodeError, text: str) -> int | None:
    m = re.search(r"line (\d+)", str(exc))
    if m:
        return int(m.group(1))
    return max(len(text.splitlines()), 1) if "end of document" in str(exc) else None


class _Lines:
    """Finds the line of the i-th [[kind]] table, and of a key inside it, in the file's text."""

    def __init__(self, text: str):
        self.lines = text.splitlines()
        self.headers: dict[str, list[int]] = {}
        for i, line in enumerate(self.lines, 1):
            m = re.match(r"\s*\[\[\s*([A-Za-z0-9_.\-]+)\s*\]\]", line)
            if m:
                self.headers.setdefault(m.group(1), []).append(i)

    def top(self, key: str) -> int | None:
        for i, line in enumerate(self.lines, 1):
            if re.match(rf"\s*(\[\[?\s*)?\"?{re.escape(key)}\"?\s*(=|\]\]?)", line):
                return i
        return None

    def table(self, kind: str, index: int, key: str | None = None) -> int | None:
        starts = self.headers.get(kind, [])
        if index >= len(starts):              # inline arrays (`cc = [{...}]`, as tomli_w writes them)
            return self.top(kind) or self.top(kind.rsplit(".", 1)[-1])
        start = starts[index]
        if key is None:
            return start
        for i in range(start, len(self.lines)):
            line = self.lines[i]
            if re.match(r"\s*\[", line):
                break
            if re.match(rf"\s*{re.escape(key)}\s*=", line):
                return i + 1
        return start


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


def known_commands() -> set[str]:
    return set(COMMANDS) | set(MIDI_COMMANDS)


def parse_mapping_tables(data: dict, lines: "_Lines", err, prefix: str = "") -> list[Mapping]:
    """The [[cc]], [[note]], [[cc14]] and [[bend]] tables of `data`, checked; `err(reason, line)` makes the error.

    `prefix` is where the tables sit in the file ("midi." in a preset's [[midi.cc]]), so lines point into it.
    """
    mappings: list[Mapping] = []
    commands = known_commands()
    for kind in KINDS:
        tables = data.get(kind, [])
        if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
            raise err(f"`{prefix}{kind}` must be an array of tables ([[{prefix}{kind}]])",
                      lines.top(f"{prefix}{kind}"))
        num_key = _NUMBER_KEY[kind]
        allowed = _COMMON_KEYS | ({num_key} if num_key else set())
        for i, t in enumerate(tables):
            def at(key: str | None = None) -> int | None:
                return lines.table(f"{prefix}{kind}", i, key)

            extra = sorted(set(t) - allowed)
            if extra:
                raise err(f"unknown key {extra[0]!r} in [[{prefix}{kind}]]; allowed: {', '.join(sorted(allowed))}",
                          at(extra[0]))
            target = t.get("path")
            if not isinstance(target, str) or not _PATH_RE.match(target):
                raise err(f"[[{prefix}{kind}]] needs `path`, a param path like \"/fx/kaleidoscope/sides\" or a /cmd/ "
                          f"command", at("path"))
            if is_command(target) and target not in commands:
                raise err(f"unknown command {target!r}; known: {', '.join(sorted(commands))}", at("path"))
            number = 0
            if num_key:
                number = t.get(num_key)
                top = 31 if kind == "cc14" else 127
                if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number <= top:
                    raise err(f"[[{prefix}{kind}]] needs `{num_key}`, a whole number 0..{top}"
                              + (" (the MSB; its LSB is cc + 32)" if kind == "cc14" else ""), at(num_key))
            channel = t.get("channel")
            if channel is not None and (isinstance(channel, bool) or not isinstance(channel, int)
                                        or not 1 <= channel <= 16):
                raise err(f"`channel` must be 1..16 (leave it out for any channel), got {channel!r}", at("channel"))
            for key in ("min", "max"):
                if key in t and not _is_number(t[key]):
                    raise err(f"`{key}` must be a finite number, got {t[key]!r}", at(key))
            curve = t.get("curve", "linear")
            if curve not in CURVES:
                raise err(f"unknown curve {curve!r}; known: {', '.join(CURVES)}", at("curve"))
            mode = t.get("mode", "")
            if mode and mode not in MODES[kind]:
                raise err(f"unknown mode {mode!r} for [[{prefix}{kind}]]; one of {', '.join(MODES[kind])}", at("mode"))
            if is_command(target) and mode not in ("", "trigger"):
                raise err(f"a /cmd/ path fires on a press: leave `mode` out (got {mode!r})", at("mode"))
            if mode in RELATIVE and (is_command(target) or curve != "linear"):
                raise err(f"mode {mode!r} turns a param by steps: it takes no /cmd/ path and no curve",
                          at("curve" if curve != "linear" else "path"))
            step = t.get("step")
            if step is not None and (mode not in RELATIVE or not _is_number(step) or step <= 0):
                raise err(f"`step` is the size of one tick of a relative encoder (mode = "
                          f"{' / '.join(repr(r) for r in RELATIVE)}), a number > 0; got {step!r}", at("step"))
            if is_command(target) and kind in ("cc14", "bend"):
                raise err(f"[[{prefix}{kind}]] cannot trigger a command: use [[cc]] or [[note]]", at("path"))
            arg = t.get("arg")
            if arg is not None and not is_command(target):
                raise err("`arg` is for /cmd/ paths only", at("arg"))
            if arg is not None and not isinstance(arg, (str, int, float, bool)):
                raise err(f"`arg` must be a string, number or boolean, got {arg!r}", at("arg"))
            mappings.append(Mapping(kind, number, target, channel, t.get("min"), t.get("max"), curve, mode, arg,
                                    at() or 0, step))
    _check_overlaps(mappings, err)
    return mappings


def parse_midi_map(text: str, path: Path | str | None = None) -> MidiMap:
    """Read a mapping file's text; raise MidiMapError naming file:line and the reason."""
    path = Path(path) if path is not None else None
    where = str(path) if path else "midi map"

    def err(reason: str, line: int | None) -> MidiMapError:
        return MidiMapError(f"{where}:{line}: {reason}" if line else f"{where}: {reason}")

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise err(f"not valid TOML: {exc}", _toml_line(exc, text)) from None
    lines = _Lines(text)
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise err(f"unknown key {unknown[0]!r}; a mapping file has {', '.join(sorted(_TOP_KEYS))}",
                  lines.top(unknown[0]))
    for key in ("controller", "port"):
        if key in data and not isinstance(data[key], str):
            raise err(f"`{key}` must be a string", lines.top(key))

    mappings = parse_mapping_tables(data, lines, err)
    return MidiMap(str(data.get("controller", path.stem if path else "")), str(data.get("port", "")),
                   tuple(mappings), path)


def _channels_meet(a: int | None, b: int | None) -> bool:
    return a is None or b is None or a == b


def _check_overlaps(mappings: list[Mapping], err) -> None:
    seen: dict[tuple, Mapping] = {}
    for m in mappings:
        key = (m.kind, m.channel, m.number, m.path)
        if key in seen:
            raise err(f"{m.describe()} is mapped twice (also on line {seen[key].line})", m.line)
        seen[key] = m
    for m in mappings:
        if m.kind != "cc14":
            continue
        for o in mappings:
            if o.kind == "cc" and o.number in (m.number, m.number + 32) and _channels_meet(o.channel, m.channel):
                raise err(f"cc {o.number} is half of the 14-bit pair cc14 {m.number} (line {m.line})", o.line)


def parse_midi_tables(tables: Any, text: str, where: str, prefix: str = "midi.") -> tuple[Mapping, ...]:
    """Mapping arrays kept inside another TOML file (a preset's [[midi.cc]], ...), checked as a mapping file's
    are; MidiMapError names `where`, the line in `text` and the reason."""
    def err(reason: str, line: int | None) -> MidiMapError:
        return MidiMapError(f"{where}:{line}: {reason}" if line else f"{where}: {reason}")

    lines = _Lines(text)
    table = prefix.rstrip(".")
    if not isinstance(tables, dict):
        raise err(f"[{table}] must be a table of mapping arrays ([[{prefix}cc]], ...)", lines.top(table))
    unknown = sorted(set(tables) - set(KINDS))
    if unknown:
        raise err(f"unknown key {unknown[0]!r} in [{table}]; it holds {', '.join(f'[[{prefix}{k}]]' for k in KINDS)}",
                  lines.top(f"{prefix}{unknown[0]}") or lines.top(unknown[0]))
    return tuple(parse_mapping_tables(tables, lines, err, prefix))


def overlay_mappings(base: Iterable[Mapping], top: Iterable[Mapping]) -> tuple[Mapping, ...]:
    """`top`'s mappings plus those of `base` on controls `top` leaves free: a preset's mapping for a control wins."""
    def controls(m: Mapping) -> list[tuple[str, int]]:          # the messages a mapping reads
        return [("cc", m.number), ("cc", m.number + 32)] if m.kind == "cc14" else [(m.kind, m.number)]

    top = tuple(top)
    taken = [(c, t.channel) for t in top for c in controls(t)]
    kept = tuple(b for b in base
                 if not any(c in controls(b) and _channels_meet(ch, b.channel) for c, ch in taken))
    return kept + top


def load_midi_map(spec: str | Path) -> MidiMap:
    """`spec` is a path to a .toml file, or a name looked up as midi/NAME.toml (here, then in the repo)."""
    p = Path(spec)
    if not p.is_file() and p.suffix != ".toml" and "/" not in str(spec):
        for d in (Path.cwd() / "midi", MIDI_DIR):
            if (d / f"{spec}.toml").is_file():
                p = d / f"{spec}.toml"
                break
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MidiMapError(f"{p}: cannot read: {exc}") from None
    return parse_midi_map(text, p)


def mapping_tables(mappings: Iterable[Mapping]) -> dict[str, list[dict[str, Any]]]:
    """The mappings as TOML-ready arrays of tables by kind (kinds without mappings are left out)."""
    data: dict[str, list[dict[str, Any]]] = {}
    for kind in KINDS:
        rows = []
        for m in mappings:
            if m.kind != kind:
                continue
            row: dict[str, Any] = {}
            if _NUMBER_KEY[kind]:
                row[_NUMBER_KEY[kind]] = m.number
            if m.channel is not None:
                row["channel"] = m.channel
            row["path"] = m.path
            for key in ("min", "max", "step"):
                if getattr(m, key) is not None:
                    row[key] = getattr(m, key)
            if m.curve != "linear":
                row["curve"] = m.curve
            if m.mode:
                row["mode"] = m.mode
            if m.arg is not None:
                row["arg"] = m.arg
            rows.append(row)
        if rows:
            data[kind] = rows
    return data


def dump_midi_map(midi_map: MidiMap) -> str:
    """TOML text for a mapping file (used by save; comments of an edited file are not kept)."""
    data: dict[str, Any] = {}
    if midi_map.controller:
        data["controller"] = midi_map.controller
    if midi_map.port:
        data["port"] = midi_map.port
    data.update(mapping_tables(midi_map.mappings))
    return "# vj MIDI mappings (see README, MIDI). Written by /cmd/midi/save.\n" + tomli_w.dumps(data)


# ---- clock in ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClockState:
    """What the MIDI clock says at one moment. Immutable; `MidiClock.state()` makes a new one."""

    bpm: float = 0.0              # smoothed tempo from the 24-ppq ticks; 0 until known
    phase: float = 0.0            # beat phase 0..1, 0 on a beat counted from Start / song position
    beats: float = 0.0            # quarter notes since Start (or since the song position)
    running: bool = False         # the transport plays and ticks arrive
    age_s: float = math.inf       # since the last tick


@dataclass(frozen=True)
class _Ticks:
    """The clock's published state: replaced by the MIDI thread, read by any (habit 2)."""

    wall_s: float                 # time.monotonic() of the last tick (or transport message)
    ticks: int                    # the last tick's position since Start; -1 right after Start
    bpm: float
    transport: bool | None        # None: no Start/Stop seen yet (joined while the sender plays)
    have_tick: bool


class MidiClock:
    """24-ppq MIDI clock, Start/Stop/Continue and song position in -> tempo estimate and beat phase.

    `feed` runs on the MIDI thread only. The tempo is a least-squares fit of tick times over the last
    `window_beats` beats (timestamps from rtmidi, not from when Python ran), then smoothed with a time
    constant in seconds. A gap longer than `timeout_s` restarts the fit and stops `running`.
    """

    PPQ = 24

    def __init__(self, window_beats: float = 4.0, smooth_s: float = 0.3, timeout_s: float = 0.5):
        self.timeout_s = timeout_s
        self.smooth_s = smooth_s
        self._times: deque[float] = deque(maxlen=max(int(window_beats * self.PPQ), 8))
        self._bpm = 0.0
        self._ticks = -1
        self._transport: bool | None = None
        self._last_t: float | None = None
        self._pub: _Ticks | None = None

    def reset_window(self) -> None:
        """Forget the tick times (after re-opening the port: the first timestamp is not comparable)."""
        self._times.clear()
        self._last_t = None

    def feed(self, kind: str, t_s: float, wall_s: float, pos: int = 0) -> None:
        """One realtime message: kind is clock, start, stop, continue or songpos (pos in 16ths)."""
        have_tick = self._pub.have_tick if self._pub else False
        if kind == "start":
            self._transport = True
            self._ticks = -1                      # the next tick is the first beat
        elif kind == "continue":
            self._transport = True
        elif kind == "stop":
            self._transport = False
        elif kind == "songpos":
            self._ticks = pos * 6 - 1             # a MIDI beat (16th) is 6 ticks; the next tick is there
        elif kind == "clock":
            have_tick = True
            if self._last_t is not None and t_s - self._last_t > self.timeout_s:
                self._times.clear()
            self._last_t = t_s
            self._times.append(t_s)
            self._ticks += 1
            raw = self._fit()
            if raw > 0.0:
                if self._bpm <= 0.0 or len(self._times) < self._times.maxlen:
                    self._bpm = raw               # while the window fills, the fit is the best guess
                else:
                    dt = 60.0 / (raw * self.PPQ)
                    self._bpm += (raw - self._bpm) * (1.0 - math.exp(-dt / self.smooth_s))
        else:
            return
        self._pub = _Ticks(wall_s, self._ticks, self._bpm, self._transport, have_tick)

    def _fit(self) -> float:
        n = len(self._times)
        if n < 12:                                # half a beat: jitter dominates below that
            return 0.0
        xs = range(n)
        mx = (n - 1) / 2.0
        my = sum(self._times) / n
        sxx = sum((x - mx) ** 2 for x in xs)
        sxy = sum((x - mx) * (y - my) for x, y in zip(xs, self._times))
        interval = sxy / sxx
        return 60.0 / (interval * self.PPQ) if interval > 1e-4 else 0.0

    def state(self, now_s: float | None = None) -> ClockState:
        """The clock at `now_s` (time.monotonic()); between ticks the phase moves on at the tempo."""
        p = self._pub
        if p is None:
            return ClockState()
        now = time.monotonic() if now_s is None else now_s
        age = max(now - p.wall_s, 0.0) if p.have_tick else math.inf
        fresh = age <= self.timeout_s
        running = fresh and p.transport is not False
        pos = float(max(p.ticks, 0))
        if running and p.bpm > 0.0 and p.ticks >= 0:
            pos += min(age * p.bpm * self.PPQ / 60.0, 1.0)   # not past the next tick
        beats = pos / self.PPQ
        return ClockState(p.bpm, beats % 1.0, beats, running, age)

    @property
    def bpm(self) -> float:
        return self.state().bpm

    @property
    def phase(self) -> float:
        return self.state().phase

    @property
    def running(self) -> bool:
        return self.state().running


# ---- messages -> Changes -------------------------------------------------------------------------


class MidiRouter:
    """One decoded MIDI message (a mido.Message) -> Changes on the hub; MIDI learn; clock messages.

    `handle` runs on the MIDI thread. It reads only `hub.snapshot` (frozen) and its own state, guarded by
    a lock because `arm` and `save` come from the main thread.
    """

    def __init__(self, hub: ControlHub, midi_map: MidiMap | None = None, clock: MidiClock | None = None,
                 source: str = "midi"):
        self.hub = hub
        self.map = midi_map or MidiMap()
        self.clock = clock or MidiClock()
        self.source = source
        self._lock = threading.Lock()
        self._index: dict[tuple, list[Mapping]] = {}
        self._msb: dict[tuple[int, int], int] = {}          # (channel, cc 0..31) -> last MSB
        self._cc_last: dict[tuple[int, int], int] = {}      # (channel, cc) -> last value, for press edges
        self._toggles: dict[str, tuple[int, Value]] = {}    # path -> (snapshot frame, value sent)
        self._turned: dict[str, tuple[int, Value]] = {}     # relative encoders: the same, per path
        self._armed: str | None = None
        self._learn14: tuple[int, int, float] | None = None  # (channel, msb cc, deadline) after learning a cc
        self._params: tuple[tuple | None, dict[str, Param]] = (None, {})
        self._reported: set[str] = set()
        self.counts = {"received": 0, "sent": 0, "unmapped": 0, "dropped": 0, "refused": 0}
        self.last = ""                                       # the last control message, for the HUD / log
        self.learned: Mapping | None = None
        self.dirty = False                                   # learned mappings not saved yet
        self.preset_mappings: tuple[Mapping, ...] = ()       # the active preset's, on top of `map` (not saved)
        self._reindex()

    # -- mappings --

    def _reindex(self) -> None:
        index: dict[tuple, list[Mapping]] = {}
        for m in overlay_mappings(self.map.mappings, self.preset_mappings):
            index.setdefault(m.source, []).append(m)
        self._index = index

    def _lookup(self, kind: str, channel: int, number: int) -> list[Mapping]:
        return self._index.get((kind, channel, number), []) + self._index.get((kind, None, number), [])

    @property
    def mappings(self) -> tuple[Mapping, ...]:
        return self.map.mappings

    def set_map(self, midi_map: MidiMap) -> None:
        with self._lock:
            self.map = midi_map
            self._reindex()

    def set_preset_mappings(self, mappings: Iterable[Mapping]) -> None:
        """The active preset's mappings, on top of the controller's map (replacing the previous preset's)."""
        with self._lock:
            self.preset_mappings = tuple(mappings)
            self._reindex()

    # -- learn --

    @property
    def armed(self) -> str | None:
        return self._armed

    def arm(self, path: str | None) -> str | None:
        """The next CC, note-on or pitch bend drives `path` (None or "" cancels). Returns why not, or None."""
        if not path:
            with self._lock:
                self._armed = None
            return None
        path = str(path).strip()
        if is_command(path):
            if path not in known_commands() or path.startswith("/cmd/midi/"):
                return f"cannot learn {path!r}: not a command a control can trigger"
        else:
            params = self._param_table()
            if params and path not in params:
                return f"cannot learn {path!r}: no such param"
            p = params.get(path)
            if p is not None and not p.scalar:
                return f"cannot learn {path!r}: a {p.kind} is not one value"
        with self._lock:
            self._armed = path
        log.info("midi learn: move a control for %s", path)
        return None

    def _learn(self, msg, channel: int, wall_s: float) -> bool:
        """Make a mapping from `msg` for the armed path; True when the message was used up by learning."""
        path = self._armed
        p = self._param_table().get(path)
        kind_of = "command" if is_command(path) else (p.kind if p else "float")
        if msg.type == "control_change":
            mode = {"bool": "toggle", "event": "momentary"}.get(kind_of, "")
            m = Mapping("cc", msg.control, path, channel, mode=mode)
            self._learn14 = (channel, msg.control, wall_s + LEARN_14BIT_S) if msg.control < 32 else None
        elif msg.type == "note_on" and msg.velocity > 0:
            mode = {"bool": "toggle", "event": "trigger"}.get(kind_of, "")
            m = Mapping("note", msg.note, path, channel, mode=mode)
        elif msg.type == "pitchwheel" and kind_of != "command":
            m = Mapping("bend", 0, path, channel)
        else:
            return msg.type in ("note_off", "note_on")        # a release while armed is not a control
        self._add_learned(m)
        return True

    def _add_learned(self, m: Mapping, drop: Iterable[tuple] = ()) -> None:
        """Add `m`, replacing whatever the same control (on its channel, or on any) did before."""
        gone = [m.source, *drop]
        kept = tuple(o for o in self.map.mappings
                     if not any(o.kind == k and o.number == n and _channels_meet(o.channel, c) for k, c, n in gone))
        self.map = replace(self.map, mappings=kept + (m,))
        # A control learned now drives the learned path even where the active preset mapped it.
        self.preset_mappings = overlay_mappings(self.preset_mappings, [m])[:-1]
        self._reindex()
        self._armed = None
        self.learned = m
        self.dirty = True
        log.info("midi learn: %s", m.describe())

    def save(self, path: Path | str | None = None) -> Path:
        """Write the mappings as TOML (atomically) to `path`, the file they came from, or midi/NAME.toml."""
        with self._lock:
            midi_map = self.map
        target = Path(path) if path else midi_map.path
        if target is None:
            name = re.sub(r"[^A-Za-z0-9_.-]+", "-", midi_map.controller or "controller").strip("-.") or "controller"
            target = Path.cwd() / "midi" / f"{name}.toml"
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, dump_midi_map(midi_map))
        with self._lock:
            self.map = replace(self.map, path=target)
            self.dirty = False
        log.info("midi: %d mappings saved to %s", len(midi_map.mappings), target)
        return target

    # -- routing --

    def _param_table(self) -> dict[str, Param]:
        params = self.hub.snapshot.params           # the engine re-publishes the same tuple until params change
        if self._params[0] is not params:
            self._params = (params, {p.path: p for p in params})
        return self._params[1]

    def _report(self, key: str, message: str) -> None:
        self.counts["refused"] += 1
        if key not in self._reported:
            self._reported.add(key)
            log.warning(message)

    def handle(self, msg, t_s: float | None = None, wall_s: float | None = None) -> int:
        """Route one message; returns the number of Changes queued. `t_s`: the message's own timestamp."""
        wall = time.monotonic() if wall_s is None else wall_s
        kind = msg.type
        if kind in ("clock", "start", "stop", "continue", "songpos"):
            self.clock.feed(kind, wall if t_s is None else t_s, wall, getattr(msg, "pos", 0))
            return 0
        if kind not in ("control_change", "note_on", "note_off", "pitchwheel"):
            return 0                              # aftertouch, program change, sysex, active sensing
        self.counts["received"] += 1
        channel = msg.channel + 1
        with self._lock:
            if kind == "control_change":
                self.last = f"cc {msg.control} = {msg.value} ch{channel}"
                if self._learn14 and self._upgrade14(msg, channel, wall):
                    return 0
            elif kind == "pitchwheel":
                self.last = f"bend {msg.pitch} ch{channel}"
            else:
                self.last = f"{kind} {msg.note} vel {msg.velocity} ch{channel}"
            if self._armed is not None and self._learn(msg, channel, wall):
                return 0
            out = self._route(msg, channel)
        if not out and kind != "note_off":
            self.counts["unmapped"] += 1
        sent = 0
        for path, value in out:
            if self.hub.send(path, value, self.source):
                sent += 1
            else:
                self.counts["dropped"] += 1
        self.counts["sent"] += sent
        return sent

    def _upgrade14(self, msg, channel: int, wall_s: float) -> bool:
        ch, msb, deadline = self._learn14
        if wall_s > deadline:
            self._learn14 = None
            return False
        if ch != channel or msg.control != msb + 32:
            return False
        self._learn14 = None
        learned = self.learned
        m = Mapping("cc14", msb, learned.path, channel)
        self._add_learned(m, drop=[("cc", channel, msb), ("cc", channel, msb + 32)])
        return True

    def _route(self, msg, channel: int) -> list[tuple[str, Value]]:
        out: list[tuple[str, Value]] = []
        kind = msg.type
        if kind == "control_change":
            cc, v = msg.control, msg.value
            if cc < 32:
                self._msb[(channel, cc)] = v              # an MSB resets the LSB to 0 (MIDI 1.0)
                for m in self._lookup("cc14", channel, cc):
                    self._emit(m, out, x=(v << 7) / 16383.0)
            elif cc < 64:
                msb = self._msb.get((channel, cc - 32), 0)
                for m in self._lookup("cc14", channel, cc - 32):
                    self._emit(m, out, x=((msb << 7) | v) / 16383.0)
            prev = self._cc_last.get((channel, cc), 0)
            self._cc_last[(channel, cc)] = v
            for m in self._lookup("cc", channel, cc):
                mode = m.effective_mode
                if mode == "absolute":
                    self._emit(m, out, x=v / 127.0)
                elif mode in RELATIVE:
                    self._turn(m, out, RELATIVE[mode](v))
                elif v >= PRESS > prev:
                    self._emit(m, out, press=True)
                elif mode == "momentary" and v < PRESS <= prev:
                    self._emit(m, out, press=False)
        elif kind in ("note_on", "note_off"):
            on = kind == "note_on" and msg.velocity > 0
            for m in self._lookup("note", channel, msg.note):
                if m.effective_mode == "velocity":
                    if on:
                        self._emit(m, out, x=msg.velocity / 127.0)
                elif on or m.effective_mode == "momentary":
                    self._emit(m, out, press=on)
        elif kind == "pitchwheel":
            for m in self._lookup("bend", channel, 0):
                self._emit(m, out, x=(msg.pitch + 8192) / 16383.0)
        return out

    def _emit(self, m: Mapping, out: list, x: float | None = None, press: bool | None = None) -> None:
        """Append the (path, value) that mapping `m` makes of a 0..1 position `x` or a press/release."""
        if is_command(m.path):
            if press:
                out.append((m.path, m.arg))
            return
        p = self._param_table().get(m.path)
        if p is None:
            self._report(f"unknown:{m.path}", f"midi: {m.describe()}: no such param (yet): ignored")
            return
        if not p.scalar:
            self._report(f"kind:{m.path}", f"midi: {m.describe()}: a {p.kind} param is not one value: ignored")
            return
        mode = m.effective_mode
        if mode == "toggle":
            snap = self.hub.snapshot
            frame, sent = self._toggles.get(m.path, (None, None))
            current = sent if frame == snap.frame else snap.values.get(m.path, p.default)
            on = bool(current) if p.kind in ("bool", "event") else self._position(m, p, current) >= 0.5
            value = self._value(m, p, 0.0 if on else 1.0)
            self._toggles[m.path] = (snap.frame, value)
        elif mode in ("momentary", "trigger"):
            if p.kind == "event" and not press:
                return
            value = self._value(m, p, 1.0 if press else 0.0)
        else:
            value = self._value(m, p, x)
        out.append((m.path, value))

    def _turn(self, m: Mapping, out: list, ticks: int) -> None:
        """A relative encoder turned by `ticks`: move the param from where it is by ticks * step, within range.

        Where it is: the value this router sent last while the engine has not published a new frame (the
        ticks of one frame add up), else the engine's value (another controller may have moved it).
        """
        p = self._param_table().get(m.path)
        if p is None or p.kind not in ("float", "int", "enum"):
            why = "no such param (yet)" if p is None else f"a {p.kind} param cannot be turned by steps"
            self._report(f"relative:{m.path}", f"midi: {m.describe()}: {why}: ignored")
            return
        if ticks == 0:
            return
        lo, hi = sorted(self._range(m, p))
        step = m.step if m.step is not None else (1.0 if p.kind != "float" else (hi - lo) / 127.0)
        snap = self.hub.snapshot
        frame, sent = self._turned.get(m.path, (None, None))
        current = sent if frame == snap.frame else snap.values.get(m.path, p.default)
        value = p.coerce(min(max(float(current) + ticks * step, lo), hi))
        self._turned[m.path] = (snap.frame, value)
        out.append((m.path, value))

    @staticmethod
    def _range(m: Mapping, p: Param) -> tuple[float, float]:
        return (p.min if m.min is None else m.min), (p.max if m.max is None else m.max)

    def _position(self, m: Mapping, p: Param, value: Value) -> float:
        lo, hi = self._range(m, p)
        try:
            return 0.0 if hi == lo else (float(value) - lo) / (hi - lo)
        except (TypeError, ValueError):
            return 0.0

    def _value(self, m: Mapping, p: Param, x: float) -> Value:
        y = min(max(CURVES[m.curve](x), 0.0), 1.0)
        if p.kind in ("bool", "event"):
            return y >= 0.5
        lo, hi = self._range(m, p)
        return p.coerce(lo + y * (hi - lo))


# ---- ports ---------------------------------------------------------------------------------------


class PortList(list):
    """MIDI input port names; when empty, `reason` says why. `api` names the backend used."""

    def __init__(self, names: Iterable[str] = (), api: str = "", reason: str = ""):
        super().__init__(names)
        self.api = api
        self.reason = reason


def _jack_server_stamp() -> tuple | None:
    """Which JACK server runs: the (folder, name, inode) of its sockets, None when none runs.

    A restarted jackd makes new sockets, so the stamp changes even when it comes back between two polls.
    """
    server = os.environ.get("JACK_DEFAULT_SERVER", "default")
    uid = os.getuid() if hasattr(os, "getuid") else 0
    found = []
    for d in dict.fromkeys(("/dev/shm", os.environ.get("TMPDIR", "/tmp"), "/tmp")):
        try:
            with os.scandir(d) as entries:
                found += [(d, e.name, e.inode()) for e in entries if e.name.startswith(f"jack_{server}_{uid}_")]
        except OSError:
            continue
    return tuple(sorted(found)) or None


def _jack_may_run() -> bool:
    """A JACK (or PipeWire) socket is there, so probing with a client is worth its stderr noise."""
    if _jack_server_stamp() is not None:
        return True
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return bool(runtime) and os.path.exists(os.path.join(runtime, "pipewire-0"))


def _new_client(api: int, name: str):
    import rtmidi
    # libjack would otherwise try to start a JACK server of its own when none runs.
    os.environ.setdefault("JACK_NO_START_SERVER", "1")
    return rtmidi.MidiIn(api, name=name, queue_size_limit=4096)


def choose_api(api: str = "auto") -> tuple[int | None, str]:
    """The rtmidi API to use and its name, or (None, why no MIDI API works). Never raises."""
    try:
        import rtmidi
    except ImportError as exc:
        return None, f"python-rtmidi is not installed ({exc})"
    names = {"alsa": rtmidi.API_LINUX_ALSA, "jack": rtmidi.API_UNIX_JACK, "coremidi": rtmidi.API_MACOSX_CORE,
             "winmm": rtmidi.API_WINDOWS_MM}
    compiled = set(rtmidi.get_compiled_api())
    if api != "auto":
        if api not in names:
            return None, f"unknown MIDI API {api!r}; one of auto, {', '.join(names)}"
        if names[api] not in compiled:
            return None, f"this python-rtmidi has no {api} support"
        if api == "jack" and not _jack_may_run():
            return None, "no JACK server running"
        return names[api], api
    if not sys.platform.startswith("linux"):
        return rtmidi.API_UNSPECIFIED, "system"
    if os.path.exists(ALSA_SEQ) and rtmidi.API_LINUX_ALSA in compiled:
        return rtmidi.API_LINUX_ALSA, "alsa"
    if rtmidi.API_UNIX_JACK not in compiled:
        return None, "no ALSA sequencer (/dev/snd/seq) and this python-rtmidi has no JACK support"
    if not _jack_may_run():
        return None, "no ALSA sequencer (/dev/snd/seq) and no JACK server running"
    return rtmidi.API_UNIX_JACK, "jack"


def list_midi_ports(api: str = "auto") -> PortList:
    """MIDI input ports (for `vj devices`); [] with `.reason` when no MIDI API works. Never raises."""
    rt_api, name = choose_api(api)
    if rt_api is None:
        return PortList(reason=name)
    try:
        client = _new_client(rt_api, "vj-list")
        try:
            names = client.get_ports()
        finally:
            client.delete()
    except (OSError, ValueError, RuntimeError) as exc:      # rtmidi's errors derive from these
        return PortList(api=name, reason=f"{name}: {exc}")
    return PortList(names, api=name, reason="" if names else f"{name}: no MIDI inputs")


def match_port(names: Iterable[str], want: str | None) -> str | None:
    """The port `want` names: exact, else the first containing it (case-insensitive); any when empty."""
    names = list(names)
    if not want:
        real = [n for n in names if "through" not in n.lower()]   # ALSA's Midi Through is not a controller
        return real[0] if real else None
    if want in names:
        return want
    low = want.lower()
    for n in names:
        if low in n.lower():
            return n
    return None


class MidiInput:
    """A MIDI controller as a control input: open by name, route through a mapping file, survive replugs.

    `start()` never raises for a missing port or MIDI API: `status` says what is going on
    ("midi: listening on X", "midi: X lost; retrying", ...) and a watcher thread keeps trying every
    `poll_s`. With `virtual=True` it opens a port others connect to (jack_connect, aconnect) instead.
    A bad mapping file raises MidiMapError in the constructor, before the show starts.
    """

    def __init__(self, hub: ControlHub, port: str | None = None, mapping_file: str | Path | None = None, *,
                 api: str = "auto", client_name: str = "vj", port_label: str = "midi_in", virtual: bool = False,
                 poll_s: float = 0.25, clock: MidiClock | None = None):
        midi_map = load_midi_map(mapping_file) if mapping_file else MidiMap()
        self.want = port if port is not None else midi_map.port
        self.router = MidiRouter(hub, midi_map, clock)
        self.clock = self.router.clock
        self.api = api
        self.client_name = client_name
        self.port_label = port_label
        self.virtual = virtual
        self.poll_s = poll_s
        self.port_name: str | None = None            # the port open now
        self._rt = None
        self._t_s = 0.0                              # sum of rtmidi's delta times: the messages' own clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._status = "midi: not started"
        self._decode = None
        self.api_name = ""
        self.reconnects = 0
        self._rt_api: int | None = None
        self._server: tuple | None = None           # _jack_server_stamp() of the server the client is on

    # -- what the show calls --

    def start(self) -> "MidiInput":
        rt_api, name = choose_api(self.api)
        if rt_api is None:
            self._set_status(f"midi: off ({name})", logging.WARNING)
            return self
        try:
            import mido
            self._decode = mido.Message.from_bytes
            self._rt_api = rt_api
            self._open_client()
        except (ImportError, OSError, ValueError, RuntimeError) as exc:
            self._set_status(f"midi: off ({name}: {exc})", logging.WARNING)
            return self
        self.api_name = name
        if self.virtual:
            try:
                self._rt.open_virtual_port(self.port_label)
            except (OSError, ValueError, RuntimeError) as exc:
                self._set_status(f"midi: off (virtual port: {exc})", logging.WARNING)
                return self
            self._listen()
            self.port_name = f"{self.client_name}:{self.port_label}"
            self._set_status(f"midi: listening on {self.port_name} (virtual; connect to it)")
            return self
        self._poll()
        self._thread = threading.Thread(target=self._watch, name="vj-midi-watch", daemon=True)
        self._thread.start()
        return self

    @property
    def status(self) -> str:
        armed = self.router.armed
        return self._status + (f"; learn: move a control for {armed}" if armed else "")

    def arm(self, path: str | None) -> str | None:
        return self.router.arm(path)

    def save(self, path: str | Path | None = None) -> Path:
        return self.router.save(path)

    def command(self, path: str, value: Value) -> None:
        """Run /cmd/midi/learn or /cmd/midi/save (the show routes them here, on the main thread)."""
        if path == "/cmd/midi/learn":
            why = self.arm(value if isinstance(value, str) else None)
            if why:
                raise ValueError(why)
        elif path == "/cmd/midi/save":
            self.save(value if isinstance(value, str) and value else None)
        else:
            raise ValueError(f"not a MIDI command: {path}")

    def ports(self) -> list[str]:
        try:
            return self._rt.get_ports() if self._rt is not None else []
        except (OSError, ValueError, RuntimeError):
            return []

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        if self._rt is not None:
            self._rt.cancel_callback()
            self._rt.close_port()
            self._rt.delete()
            self._rt = None
        self.port_name = None
        self._status = "midi: closed"

    def __enter__(self) -> "MidiInput":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- inside --

    def _set_status(self, status: str, level: int = logging.INFO) -> None:
        if status != self._status:
            self._status = status
            log.log(level, status)

    def _open_client(self) -> None:
        import rtmidi
        self._server = _jack_server_stamp() if self._rt_api == rtmidi.API_UNIX_JACK else None
        self._rt = _new_client(self._rt_api, self.client_name)
        # Nothing is filtered in rtmidi: every message's delta time must reach the clock's sum.
        self._rt.ignore_types(sysex=False, timing=False, active_sense=False)

    def _server_gone(self) -> bool:
        """True when the JACK server our client was made on has stopped (or was restarted since).

        rtmidi cannot notice this itself: it sets no JACK shutdown callback, and on a dead server its
        client still lists the ports it last saw, so the port would never look lost. The server's
        sockets tell instead. The dead client is closed while no server runs (closing it after a new
        server is up crashed libjack here), and a new client is made once a server is back.
        """
        if self._server is None or self._rt is None:
            return False
        if _jack_server_stamp() == self._server:
            return False
        self._rt.cancel_callback()
        self._rt.close_port()
        self._rt.delete()
        self._rt = None
        return True

    def _listen(self) -> None:
        # close_port cancels rtmidi's callback, so every (re)open sets it again.
        self.clock.reset_window()
        self._rt.set_callback(self._on_message)

    def _on_message(self, event, _data=None) -> None:
        """rtmidi's thread: decode and route; nothing here touches engine state."""
        data, delta_s = event
        self._t_s += delta_s
        try:
            msg = self._decode(data)
        except (ValueError, TypeError):
            self.router.counts["refused"] += 1
            return
        try:
            self.router.handle(msg, t_s=self._t_s)
        except Exception:  # noqa: BLE001  the frame boundary of the MIDI thread: log, keep listening
            log.exception("midi: message %s", msg)

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_s):
            self._poll()

    def _poll(self) -> None:
        if self._server_gone():
            lost, self.port_name = self.port_name, None
            self._set_status(f"midi: the JACK server stopped{f'; {lost} lost' if lost else ''}; retrying",
                             logging.WARNING)
        if self._rt is None:
            if _jack_server_stamp() is None:
                return
            try:
                self._open_client()
            except (OSError, ValueError, RuntimeError) as exc:
                self._set_status(f"midi: cannot reach the JACK server again: {exc}; retrying", logging.WARNING)
                self._rt = None
                return
        names = self.ports()
        if self.port_name is not None:
            if self.port_name in names:
                return
            self._rt.close_port()
            lost, self.port_name = self.port_name, None
            self._set_status(f"midi: {lost} lost; retrying", logging.WARNING)
        target = match_port(names, self.want)
        if target is None:
            if not self._status.endswith("lost; retrying"):
                have = ", ".join(names) or "none"
                self._set_status(f"midi: no input matching {self.want!r} (inputs: {have}); retrying"
                                 if self.want else f"midi: no inputs yet ({self.api_name}); retrying")
            return
        try:
            self._rt.open_port(names.index(target), self.port_label)
        except (OSError, ValueError, RuntimeError) as exc:
            self._set_status(f"midi: cannot open {target}: {exc}; retrying", logging.WARNING)
            return
        self._listen()
        if self._status.endswith("lost; retrying"):
            self.reconnects += 1
        self.port_name = target
        self._set_status(f"midi: listening on {target}")
