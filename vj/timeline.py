"""Timelines for offline renders (music videos): TOML cues at times, bars or beats that switch presets,
models and seeds, set and ramp params and run commands, all checked before the first frame renders."""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import tomllib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import numpy as np

from vj.analyze import analyze_samples
from vj.config import AudioConfig
from vj.engine import PERFORMER_PATHS, Engine
from vj.params import Change, Param, Registry, Value
from vj.presets import Preset, PresetError, load_preset

log = logging.getLogger(__name__)

_TOP_KEYS = {"description", "bpm", "offset_s", "beats_per_bar", "at"}
_WHEN_KEYS = ("time", "bar", "beat")
_ACTION_KEYS = ("preset", "model", "set", "ramp", "cmd")
_OPTION_KEYS = ("transition_beats", "transition_s", "over_beats", "over_s", "curve")
CURVES = ("linear", "smooth")
# The engine's morph is at most 64 beats at its own tempo estimate (up to 215 BPM): 16 s always fits.
MAX_TRANSITION_S = 16.0
MAX_TRANSITION_BEATS = 64.0
# Scene changes go through `preset = ...` so the timeline knows which params exist when; recording is the CLI's.
_BLOCKED_COMMANDS = ("/cmd/preset/", "/cmd/record/")
_HEADER = re.compile(r"^\s*\[\[\s*at\s*\]\]")
_CLOCK = re.compile(r"^(?:(\d+):)?(\d+):(\d+(?:\.\d*)?)$")


class TimelineError(ValueError):
    """A timeline that cannot be used; the message names the file, the line where known, and the reason."""


@dataclass(frozen=True)
class Cue:
    """One [[at]] table: when (a time, or a bar and/or beat) and what (any of the actions)."""

    index: int                                   # position in the file: equal times apply in file order
    line: int | None                             # of its [[at]] header (None when written inline)
    end_line: int | None = None                  # of the next cue's header
    time_s: float | None = None
    bar: float | None = None                     # 1 = the first bar
    beat: float | None = None                    # with `bar`: beat in that bar (1 = its first); alone: beat count
    preset: str | None = None
    model: Mapping[str, Any] | None = None
    set: Mapping[str, Value] = field(default_factory=lambda: MappingProxyType({}))
    ramp: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    over_beats: float | None = None
    over_s: float | None = None
    curve: str = "linear"
    transition_beats: float | None = None
    transition_s: float | None = None
    cmd: tuple[tuple[str, Value], ...] = ()


@dataclass(frozen=True)
class Timeline:
    cues: tuple[Cue, ...]
    bpm: float | None = None                     # explicit tempo: wins over the analysis of the audio
    offset_s: float = 0.0                        # with bpm: where bar 1 starts
    beats_per_bar: int = 4
    description: str = ""
    path: Path | None = None
    text: str = ""

    def error(self, reason: str, line: int | None = None) -> TimelineError:
        where = str(self.path) if self.path else "timeline"
        return TimelineError(f"{where}:{line}: {reason}" if line else f"{where}: {reason}")

    def cue_error(self, cue: Cue, reason: str, needle: str | None = None) -> TimelineError:
        """An error in `cue`, pointing at the line in it that mentions `needle` (else its header)."""
        line = _line_of(self.text, needle, cue.line, cue.end_line) if cue.line else None
        return self.error(f"cue #{cue.index + 1}: {reason}", line)

    @property
    def uses_beats(self) -> bool:
        return any(c.bar is not None or c.beat is not None or c.over_beats is not None
                   or c.transition_beats is not None for c in self.cues)


# ---- parsing ----------------------------------------------------------------------------------------


def load_timeline(path: str | Path) -> Timeline:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TimelineError(f"{p}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    return parse_timeline(text, p)


def parse_timeline(text: str, path: Path | None = None) -> Timeline:
    """Check the file's shape (keys, types, ranges); paths and presets are checked by `prepare_timeline`."""
    stub = Timeline((), path=path, text=text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise stub.error(f"not valid TOML: {exc}") from None
    unknown = set(data) - _TOP_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise stub.error(f"unknown key {key!r}; a timeline has {', '.join(sorted(_TOP_KEYS))}",
                         _line_of(text, key, 0, None))
    bpm = data.get("bpm")
    if bpm is not None and not (_is_number(bpm) and 20.0 <= bpm <= 400.0):
        raise stub.error(f"bpm must be a number in 20..400, got {bpm!r}", _line_of(text, "bpm", 0, None))
    offset = data.get("offset_s", 0.0)
    if not _is_number(offset) or offset < 0:
        raise stub.error(f"offset_s must be a number >= 0, got {offset!r}", _line_of(text, "offset_s", 0, None))
    if "offset_s" in data and bpm is None:
        raise stub.error("offset_s needs bpm (with beats from the analysis, bar 1 is the first downbeat found)",
                         _line_of(text, "offset_s", 0, None))
    bpb = data.get("beats_per_bar", 4)
    if isinstance(bpb, bool) or not isinstance(bpb, int) or not 1 <= bpb <= 32:
        raise stub.error(f"beats_per_bar must be a whole number in 1..32, got {bpb!r}",
                         _line_of(text, "beats_per_bar", 0, None))
    raw = data.get("at", [])
    if not isinstance(raw, list):
        raise stub.error("`at` must be an array of tables ([[at]])", _line_of(text, "at", 0, None))
    if not raw:
        raise stub.error("no cues: add [[at]] tables")
    stub = dataclasses.replace(stub, beats_per_bar=bpb)
    headers = [i for i, line in enumerate(text.splitlines(), 1) if _HEADER.match(line)]
    if len(headers) != len(raw):      # `at = [{...}]` written inline: no per-cue lines to point at
        headers = []
    cues = tuple(_parse_cue(stub, i, c, headers) for i, c in enumerate(raw))
    return Timeline(cues, None if bpm is None else float(bpm), float(offset), bpb,
                    str(data.get("description", "")), path, text)


def _parse_cue(tl: Timeline, i: int, raw: Any, headers: list[int]) -> Cue:
    start = headers[i] if headers else None
    end = headers[i + 1] if headers and i + 1 < len(headers) else None

    def fail(reason: str, needle: str | None = None) -> TimelineError:
        return tl.cue_error(Cue(i, start, end), reason, needle)

    if not isinstance(raw, dict):
        raise fail("each cue must be a table ([[at]])")
    allowed = set(_WHEN_KEYS) | set(_ACTION_KEYS) | set(_OPTION_KEYS)
    unknown = set(raw) - allowed
    if unknown:
        key = sorted(unknown)[0]
        raise fail(f"unknown key {key!r}; a cue has time/bar/beat, {', '.join(_ACTION_KEYS)} and "
                   f"{', '.join(_OPTION_KEYS)}", key)
    kw: dict[str, Any] = {}
    if "time" in raw:
        if "bar" in raw or "beat" in raw:
            raise fail("give `time` or `bar`/`beat`, not both", "time")
        kw["time_s"] = _parse_time(raw["time"], lambda r: fail(r, "time"))
    elif "bar" in raw or "beat" in raw:
        for key in ("bar", "beat"):
            if key in raw and not (_is_number(raw[key]) and raw[key] >= 1):
                raise fail(f"{key} must be a number >= 1 (counting from 1), got {raw[key]!r}", key)
        if "bar" in raw and "beat" in raw and raw["beat"] >= tl.beats_per_bar + 1:
            raise fail(f"beat {raw['beat']} is not in a bar of {tl.beats_per_bar} beats", "beat")
        kw["bar"] = float(raw["bar"]) if "bar" in raw else None
        kw["beat"] = float(raw["beat"]) if "beat" in raw else None
    else:
        raise fail("a cue needs `time` (seconds or \"m:ss\"), `bar` or `beat`")
    if not any(k in raw for k in _ACTION_KEYS):
        raise fail(f"a cue needs something to do: {', '.join(_ACTION_KEYS)}")

    if "preset" in raw:
        if not isinstance(raw["preset"], str) or not raw["preset"].strip():
            raise fail("preset must be a preset name or a .toml path", "preset")
        kw["preset"] = raw["preset"].strip()
    if "model" in raw:
        model = raw["model"]
        if not isinstance(model, dict) or not model:
            raise fail("model must be a table of settings, like model = { seed = 7 }", "model")
        if "name" in model and not isinstance(model["name"], str):
            raise fail("model name must be a string", "model")
        kw["model"] = MappingProxyType(dict(model))
    if "set" in raw:
        kw["set"] = MappingProxyType(_param_table(raw["set"], "set", fail))
    if "ramp" in raw:
        kw["ramp"] = MappingProxyType(_param_table(raw["ramp"], "ramp", fail))
        if ("over_beats" in raw) == ("over_s" in raw):
            raise fail("a ramp needs its length: over_beats or over_s (one of them)", "ramp")
    elif any(k in raw for k in ("over_beats", "over_s", "curve")):
        key = next(k for k in ("over_beats", "over_s", "curve") if k in raw)
        raise fail(f"{key} belongs to a ramp", key)
    for key in ("over_beats", "over_s"):
        if key in raw:
            if not (_is_number(raw[key]) and raw[key] > 0):
                raise fail(f"{key} must be a number > 0, got {raw[key]!r}", key)
            kw[key] = float(raw[key])
    if "curve" in raw:
        if raw["curve"] not in CURVES:
            raise fail(f"unknown curve {raw['curve']!r}; known: {', '.join(CURVES)}", "curve")
        kw["curve"] = raw["curve"]
    if "transition_beats" in raw or "transition_s" in raw:
        if "preset" not in raw and "model" not in raw:
            raise fail("a transition belongs to a preset or model change", "transition")
        if "transition_beats" in raw and "transition_s" in raw:
            raise fail("give transition_beats or transition_s, not both", "transition")
        key = "transition_beats" if "transition_beats" in raw else "transition_s"
        limit = MAX_TRANSITION_BEATS if key == "transition_beats" else MAX_TRANSITION_S
        if not (_is_number(raw[key]) and 0 <= raw[key] <= limit):
            raise fail(f"{key} must be a number in 0..{limit:g}, got {raw[key]!r}", key)
        kw[key] = float(raw[key])
    if "cmd" in raw:
        kw["cmd"] = _parse_cmd(raw["cmd"], fail)
    return Cue(index=i, line=start, end_line=end, **kw)


def _param_table(value: Any, key: str, fail) -> dict[str, Any]:
    if not isinstance(value, dict) or not value:
        raise fail(f"{key} must be a table of \"/param/path\" = value", key)
    for path, v in value.items():
        if not path.startswith("/"):
            raise fail(f"{key}: {path!r} is not a param path (they start with /)", path)
        if isinstance(v, dict):
            raise fail(f"{key}: the value of {path!r} must be a number, boolean or list", path)
        for x in (v if isinstance(v, list) else [v]):
            if isinstance(x, float) and not math.isfinite(x):
                raise fail(f"{key}: the value of {path!r} is not a finite number", path)
    return dict(value)


def _parse_cmd(value: Any, fail) -> tuple[tuple[str, Value], ...]:
    items = {value: None} if isinstance(value, str) else value
    if not isinstance(items, dict) or not items:
        raise fail("cmd must be a command path (\"/cmd/blackout\") or a table of them with values", "cmd")
    out = []
    for path, v in items.items():
        if not path.startswith("/cmd/"):
            raise fail(f"cmd: {path!r} is not a command (they start with /cmd/)", "cmd")
        if path.startswith(_BLOCKED_COMMANDS):
            raise fail(f"cmd: {path} cannot run in a timeline; use preset = ... for scene changes", "cmd")
        out.append((path, v))
    return tuple(out)


def _parse_time(value: Any, fail) -> float:
    if _is_number(value):
        t = float(value)
    elif isinstance(value, str):
        text = value.strip().removesuffix("s").strip()
        m = _CLOCK.match(text)
        try:
            t = (int(m[1] or 0) * 3600 + int(m[2]) * 60 + float(m[3])) if m else float(text)
        except ValueError:
            raise fail(f"time {value!r}: use seconds (75.5) or \"m:ss\" (\"1:15.5\")") from None
    else:
        raise fail(f"time {value!r}: use seconds (75.5) or \"m:ss\" (\"1:15.5\")")
    if not (math.isfinite(t) and t >= 0):
        raise fail(f"time {value!r} must be >= 0")
    return t


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _line_of(text: str, needle: str | None, start: int | None, end: int | None) -> int | None:
    """The first line in [start, end) that mentions `needle` (as a key or a quoted path); else `start`."""
    if not needle:
        return start
    lines = text.splitlines()
    lo = (start or 1) - 1
    hi = (end - 1) if end else len(lines)
    for i in range(lo, hi):
        stripped = lines[i].split("#", 1)[0]
        if re.search(rf'(^|[\s{{,"]){re.escape(needle)}', stripped):
            return i + 1
    return start


# ---- beats and bars -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BeatGrid:
    """Beat times (0-based beat index -> seconds of the track), extrapolated past both ends at `period_s`."""

    beats_s: np.ndarray                # (n,) ascending, n >= 1
    downbeats: np.ndarray              # (m,) indices into beats_s where bars start
    period_s: float
    beats_per_bar: int
    source: str                        # for the log: where the grid came from

    @classmethod
    def from_bpm(cls, bpm: float, offset_s: float, beats_per_bar: int, duration_s: float) -> BeatGrid:
        period = 60.0 / bpm
        n = max(2, int(math.ceil(max(duration_s - offset_s, 0.0) / period)) + 2)
        return cls(offset_s + period * np.arange(n), np.arange(0, n, beats_per_bar), period, beats_per_bar,
                   f"bpm {bpm:g} from the timeline, bar 1 at {offset_s:g} s")

    @classmethod
    def from_audio(cls, mono: np.ndarray, audio_cfg: AudioConfig, beats_per_bar: int) -> BeatGrid:
        """Beats of the whole track from the same causal tracker `vj analyze` runs."""
        a = analyze_samples(mono, audio_cfg)
        if len(a.beats_s) == 0:
            raise ValueError("no beats found in the audio: set `bpm` (and `offset_s`) in the timeline")
        beats = np.asarray(a.beats_s, float)
        period = float(np.median(np.diff(beats))) if len(beats) > 1 else 60.0 / (a.bpm or 120.0)
        down = np.flatnonzero(np.asarray(a.beat_in_bar) == 1)
        if len(down) == 0:
            down = np.arange(0, len(beats), beats_per_bar)
        return cls(beats, down, period, beats_per_bar,
                   f"analysis of the audio: {len(beats)} beats at {a.bpm:.1f} BPM (median), "
                   f"bar 1 at {beats[down[0]]:.2f} s")

    def time_of_beat(self, x: float) -> float:
        b, n = self.beats_s, len(self.beats_s)
        if n == 1 or x <= 0:
            return float(b[0] + x * self.period_s)
        if x >= n - 1:
            return float(b[-1] + (x - (n - 1)) * self.period_s)
        return float(np.interp(x, np.arange(n), b))

    def beat_at(self, t_s: float) -> float:
        b, n = self.beats_s, len(self.beats_s)
        if n == 1 or t_s <= b[0]:
            return float((t_s - b[0]) / self.period_s)
        if t_s >= b[-1]:
            return float(n - 1 + (t_s - b[-1]) / self.period_s)
        return float(np.interp(t_s, b, np.arange(n)))

    def bar_start(self, bar: float) -> float:
        """Beat index where `bar` (1-based, may be fractional) starts."""
        whole = int(math.floor(bar)) - 1
        d = self.downbeats
        first = d[whole] if whole < len(d) else d[-1] + (whole - len(d) + 1) * self.beats_per_bar
        return float(first) + (bar - 1 - whole) * self.beats_per_bar

    def beats_to_s(self, t_s: float, beats: float) -> float:
        """Seconds from `t_s` to `beats` beats later."""
        return self.time_of_beat(self.beat_at(t_s) + beats) - t_s


# ---- what happens at a frame ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Switch:
    scene: Preset
    transition_s: float


@dataclass(frozen=True)
class _Set:
    path: str
    value: Value


@dataclass(frozen=True)
class _Ramp:
    path: str
    start: Value | None                # None: from the value the param has when the ramp starts
    end: Value
    t0_s: float                        # track time
    t1_s: float
    curve: str


@dataclass(frozen=True)
class _Cmd:
    path: str
    value: Value


def _ramp_value(a: Value, b: Value, x: float, curve: str) -> Value:
    if curve == "smooth":
        x = x * x * (3.0 - 2.0 * x)
    if isinstance(a, tuple):
        return tuple(p + (q - p) * x for p, q in zip(a, b))
    return a + (b - a) * x


class TimelinePlayer:
    """Applies a checked timeline to the engine, frame by frame, before each frame's `prepare`."""

    def __init__(self, engine: Engine, actions: Mapping[int, list], start_s: float, fps: float, grid: BeatGrid | None):
        self.engine = engine
        self.actions = dict(actions)
        self.start_s = start_s
        self.fps = fps
        self.grid = grid
        self._ramps: dict[str, tuple[_Ramp, Value]] = {}

    def cuts_at(self, frame_index: int) -> bool:
        """True when this frame changes the scene: the frames already prepared must be composed first."""
        return any(isinstance(a, (_Switch, _Cmd)) for a in self.actions.get(frame_index, ()))

    def apply(self, frame_index: int, t_s: float) -> None:
        """Run frame `frame_index`'s cues; `t_s` is the render time the engine's `prepare` gets next."""
        engine = self.engine
        for a in self.actions.get(frame_index, ()):
            if isinstance(a, _Switch):
                self._switch(a, t_s)
            elif isinstance(a, _Set):
                self._ramps.pop(a.path, None)          # a later set wins over a running ramp
                engine.registry.set(a.path, a.value, "timeline")
            elif isinstance(a, _Ramp):
                start = a.start if a.start is not None else engine.registry.get(a.path)
                self._ramps[a.path] = (a, start)
            else:
                engine.run_command(Change(a.path, a.value, "timeline"))
        song_t = self.start_s + t_s
        for path, (r, start) in list(self._ramps.items()):
            x = min(1.0, max(0.0, (song_t - r.t0_s) / (r.t1_s - r.t0_s)))
            engine.registry.set(path, _ramp_value(start, r.end, x, r.curve), "timeline")
            if x >= 1.0:
                del self._ramps[path]

    def _switch(self, a: _Switch, t_s: float) -> None:
        engine = self.engine
        # The engine morphs over /preset/morph_beats at its own tempo estimate: express our seconds in it.
        bpm = engine.features.bpm if engine.features.bpm > 0 else 120.0
        engine.registry.set("/preset/morph_beats", a.transition_s * bpm / 60.0, "timeline")
        if engine.switch_preset(a.scene, at_s=t_s) is None:
            raise RuntimeError(f"timeline: preset {a.scene.name!r} failed to load (see the log)")


# ---- checking against the engine ------------------------------------------------------------------


def _scene_key(p: Preset) -> tuple:
    return (str(p.path), p.name, p.model, tuple(sorted((k, repr(v)) for k, v in p.model_settings.items())))


def _check_value(param: Param, value: Value) -> Value:
    """The value coerced to the param; out-of-range numbers are errors here, not silently clamped."""
    v = param.coerce(value)
    if param.kind in ("float", "int", "enum") and not isinstance(value, str) and \
            not param.min <= float(value) <= param.max:
        raise ValueError(f"{param.path}: {value!r} is outside {param.min:g}..{param.max:g}")
    if param.kind in ("color", "point2d"):
        lo, hi = (0.0, 1.0) if param.kind == "color" else (param.min, param.max)
        if any(not lo <= float(x) <= hi for x in value):
            raise ValueError(f"{param.path}: {value!r} is outside {lo:g}..{hi:g}")
    return v


def _ramp_ends(param: Param, spec: Any) -> tuple[Value | None, Value]:
    """(start or None, end) of a ramp spec: `to`, or `[from, to]` (for colours and points: `[[..], [..]]`)."""
    if param.kind in ("float", "int", "enum"):
        if isinstance(spec, list):
            if len(spec) != 2:
                raise ValueError(f"{param.path}: a ramp is a target value or [from, to], got {spec!r}")
            return _check_value(param, spec[0]), _check_value(param, spec[1])
        return None, _check_value(param, spec)
    if param.kind in ("color", "point2d"):
        if isinstance(spec, list) and spec and all(isinstance(x, list) for x in spec):
            if len(spec) != 2:
                raise ValueError(f"{param.path}: a ramp is a target or [from, to], got {spec!r}")
            return _check_value(param, spec[0]), _check_value(param, spec[1])
        return None, _check_value(param, spec)
    raise ValueError(f"{param.path}: a {param.kind} param cannot ramp (use set)")


def prepare_timeline(timeline: Timeline, engine: Engine, mono: np.ndarray, fps: float, *, start_s: float = 0.0,
                     audio_cfg: AudioConfig | None = None) -> TimelinePlayer:
    """Resolve every cue to a frame and check it against the scene active then; raise TimelineError with
    file:line on the first problem, before anything renders.

    `engine` has the starting preset loaded; `mono` is the whole track (bars count from its start). Each
    scene the timeline uses is loaded once to learn its params (that is how the engine validates a preset),
    then the starting scene is put back as it was.
    """
    audio_cfg = audio_cfg or engine.audio_cfg
    duration_s = len(mono) / audio_cfg.sample_rate_hz
    grid = None
    if timeline.uses_beats:
        if timeline.bpm is not None:
            grid = BeatGrid.from_bpm(timeline.bpm, timeline.offset_s, timeline.beats_per_bar, duration_s)
        else:
            try:
                grid = BeatGrid.from_audio(mono, audio_cfg, timeline.beats_per_bar)
            except ValueError as exc:
                raise timeline.error(str(exc)) from None
        log.info("timeline: beats from %s", grid.source)

    timed = []
    for cue in timeline.cues:
        t = _cue_time(cue, grid)
        if t > duration_s + 1e-9:
            raise timeline.error(f"cue #{cue.index + 1} at {t:.2f} s is past the end of the audio "
                                 f"({duration_s:.2f} s)", cue.line)
        if t < 0:
            raise timeline.error(f"cue #{cue.index + 1} falls before the start of the audio ({t:.2f} s)", cue.line)
        timed.append((t, cue.index, cue))
    timed.sort(key=lambda x: (x[0], x[1]))

    initial, before = engine.preset, engine.registry
    current = initial
    registries = {_scene_key(initial): engine.registry}
    running: list[tuple[float, str, Cue]] = []         # ramps: (end time, path, cue)
    actions: dict[int, list] = defaultdict(list)
    try:
        for t, _, cue in timed:
            frame = int(math.floor((t - start_s) * fps + 0.5))
            at = max(frame, 0)            # cues before --start apply at once on the first frame
            if cue.preset is not None or cue.model is not None:
                scene = _scene(timeline, cue, current, engine)
                key = _scene_key(scene)
                if key not in registries:
                    try:
                        engine.load_preset(scene)
                    except PresetError as exc:
                        raise timeline.cue_error(cue, str(exc), "model" if cue.model else "preset") from None
                    registries[key] = engine.registry
                current = scene
                if cue.transition_beats is not None:
                    trans = grid.beats_to_s(t, cue.transition_beats)
                else:
                    trans = cue.transition_s or 0.0
                if trans > MAX_TRANSITION_S:
                    raise timeline.cue_error(cue, f"the transition lasts {trans:.1f} s; at most "
                                                  f"{MAX_TRANSITION_S:g} s", "transition")
                actions[at].append(_Switch(scene, trans if frame >= 0 else 0.0))
                reg = registries[key]
                for end, path, rcue in running:
                    if end > t and path not in reg:
                        raise timeline.cue_error(rcue, f"the ramp of {path} runs into cue #{cue.index + 1}'s "
                                                       f"preset {scene.name!r}, which has no such param", path)
            reg = registries[_scene_key(current)]
            for path, value in cue.set.items():
                actions[at].append(_Set(path, _checked(timeline, cue, reg, path, value, current)))
            for path, spec in cue.ramp.items():
                if path not in reg:
                    raise timeline.cue_error(cue, f"unknown param {path!r} in preset {current.name!r}", path)
                try:
                    start, end = _ramp_ends(reg.param(path), spec)
                except ValueError as exc:
                    raise timeline.cue_error(cue, str(exc), path) from None
                length = grid.beats_to_s(t, cue.over_beats) if cue.over_beats is not None else cue.over_s
                actions[at].append(_Ramp(path, start, end, t, t + length, cue.curve))
                running.append((t + length, path, cue))
            for path, value in cue.cmd:
                if path not in engine.commands:
                    known = sorted(c for c in engine.commands if not c.startswith(_BLOCKED_COMMANDS))
                    raise timeline.cue_error(cue, f"unknown command {path!r}; known: {', '.join(known)}", "cmd")
                actions[at].append(_Cmd(path, value))
    finally:
        if engine.preset is not initial:
            engine.load_preset(initial)
            # Loading carries the performer's values over from the last scene checked: put back the first's.
            for path, v in before.values().items():
                if path in PERFORMER_PATHS or path.startswith("/audio/"):
                    engine.registry.set(path, v)
    log.info("timeline: %d cues, %d scene(s)", len(timeline.cues), len(registries))
    return TimelinePlayer(engine, actions, start_s, fps, grid)


def _cue_time(cue: Cue, grid: BeatGrid | None) -> float:
    if cue.time_s is not None:
        return cue.time_s
    if cue.bar is not None:
        return grid.time_of_beat(grid.bar_start(cue.bar) + (cue.beat or 1.0) - 1.0)
    return grid.time_of_beat(cue.beat - 1.0)


def _scene(timeline: Timeline, cue: Cue, current: Preset, engine: Engine) -> Preset:
    """The preset a cue switches to: its `preset` (else the current scene) with its `model` settings over it."""
    base = current
    if cue.preset is not None:
        spec = cue.preset
        if timeline.path is not None and (spec.endswith(".toml") or "/" in spec) and not Path(spec).is_absolute():
            beside = timeline.path.parent / spec       # preset files named relative to the timeline
            if beside.is_file():
                spec = str(beside)
        try:
            base = load_preset(spec, engine.preset_dirs)
        except PresetError as exc:
            raise timeline.cue_error(cue, str(exc), "preset") from None
    if cue.model is None:
        return base
    settings = {k: v for k, v in cue.model.items() if k != "name"}
    name = cue.model.get("name", base.model)
    if name != base.model:
        merged = settings          # another generator: the old one's settings would not fit it
    else:
        merged = {**base.model_settings, **settings}
    return dataclasses.replace(base, model=name, model_settings=MappingProxyType(merged))


def _checked(timeline: Timeline, cue: Cue, reg: Registry, path: str, value: Value, scene: Preset) -> Value:
    if path not in reg:
        raise timeline.cue_error(cue, f"unknown param {path!r} in preset {scene.name!r}", path)
    try:
        return _check_value(reg.param(path), value)
    except ValueError as exc:
        raise timeline.cue_error(cue, str(exc), path) from None
