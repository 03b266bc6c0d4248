"""Scene files (TOML) <-> model choice, effect chain, param values, routes and controller mappings, validated
before use."""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import tomli_w

from vj.control.midi import Mapping as MidiMapping
from vj.control.midi import MidiMapError, mapping_tables, parse_midi_tables
from vj.control.osc import alias_problem
from vj.control.state import is_command
from vj.modulation import CURVES, Route, RouteError
from vj.params import Registry, Value

PRESET_DIR = Path(__file__).resolve().parent.parent / "presets"
_TOP_KEYS = {"name", "description", "model", "effects", "values", "routes", "osc", "midi"}


class PresetError(ValueError):
    """A preset that cannot be used; the message names the file, the line where known, and the reason."""


@dataclass(frozen=True)
class EffectSpec:
    shader: str                       # file stem in shaders/ or a path to a .fs file
    name: str                         # instance name: its params live under /fx/<name>/


@dataclass(frozen=True)
class Preset:
    name: str
    description: str = ""
    model: str = "cppn"
    model_settings: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    effects: tuple[EffectSpec, ...] = ()
    values: Mapping[str, Value] = field(default_factory=lambda: MappingProxyType({}))
    routes: tuple[Route, ...] = ()
    osc_aliases: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))  # [osc.alias]
    midi: tuple[MidiMapping, ...] = ()  # [[midi.cc]], ...: on top of the controller's map while active
    path: Path | None = None
    text: str = ""                    # the file's text, to point at lines in error messages

    def line_of(self, needle: str) -> int | None:
        """The first line with `needle` outside a comment (else anywhere: the needle may hold a '#')."""
        lines = self.text.splitlines()
        for i, line in enumerate(lines, 1):
            if needle in line.split("#", 1)[0]:
                return i
        for i, line in enumerate(lines, 1):
            if needle in line:
                return i
        return None

    def error(self, reason: str, needle: str | None = None, line: int | None = None) -> PresetError:
        where = str(self.path) if self.path else f"preset {self.name!r}"
        line = line or (self.line_of(needle) if needle else None)
        return PresetError(f"{where}:{line}: {reason}" if line else f"{where}: {reason}")

    def validate(self, registry: Registry) -> None:
        """Check every value and route against the registry; raise PresetError on the first problem."""
        for path, value in self.values.items():
            if path not in registry:
                raise self.error(f"unknown param {path!r}", f'"{path}"')
            try:
                registry.param(path).coerce(value)
            except ValueError as exc:
                raise self.error(str(exc), f'"{path}"') from None
        for r in self.routes:
            try:
                r.validate(registry)
            except RouteError as exc:
                raise self.error(str(exc), r.target) from None
        def param(path: str):
            return registry.param(path) if path in registry else None

        for alias, target in self.osc_aliases.items():
            why = alias_problem(alias, target, param)
            if why:
                raise self.error(why, f'"{alias}"')
        for m in self.midi:
            if is_command(m.path):
                continue                              # checked against the commands when parsed
            p = param(m.path)
            if p is None or not p.scalar:
                why = "unknown param" if p is None else f"a {p.kind} param is not one value"
                raise self.error(f"MIDI mapping {m.describe()}: {why}", line=m.line)


def preset_search_dirs(extra: Path | None = None) -> list[Path]:
    dirs = [Path.cwd() / "presets", PRESET_DIR]
    if extra is not None:
        dirs.insert(0, extra)
    seen, out = set(), []
    for d in dirs:
        if d.resolve() not in seen:
            seen.add(d.resolve())
            out.append(d)
    return out


def list_presets(dirs: list[Path] | None = None) -> list[str]:
    names: set[str] = set()
    for d in dirs or preset_search_dirs():
        if d.is_dir():
            names.update(p.stem for p in d.glob("*.toml"))
    return sorted(names)


def find_preset(spec: str, dirs: list[Path] | None = None) -> Path:
    """`spec` is a preset name (looked up in the preset folders) or a path to a .toml file."""
    p = Path(spec)
    if p.suffix == ".toml" or "/" in spec:
        if not p.is_file():
            raise PresetError(f"preset file not found: {spec}")
        return p
    for d in dirs or preset_search_dirs():
        cand = d / f"{spec}.toml"
        if cand.is_file():
            return cand
    known = ", ".join(list_presets(dirs)) or "none"
    raise PresetError(f"unknown preset {spec!r}; available: {known}")


def load_preset(spec: str, dirs: list[Path] | None = None) -> Preset:
    path = find_preset(spec, dirs)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PresetError(f"{path}: cannot read: {exc}") from None
    return parse_preset(text, path)


def parse_preset(text: str, path: Path | None = None) -> Preset:
    where = str(path) if path else "preset"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PresetError(f"{where}: not valid TOML: {exc}") from None
    stub = Preset(name=str(data.get("name", path.stem if path else "preset")), path=path, text=text)
    unknown = set(data) - _TOP_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise stub.error(f"unknown key {key!r}; a preset has {', '.join(sorted(_TOP_KEYS))}", key)

    model = data.get("model", {})
    if isinstance(model, str):
        model = {"name": model}
    if not isinstance(model, dict) or not isinstance(model.get("name", "cppn"), str):
        raise stub.error("[model] must be a table with a `name`", "model")
    model_settings = {k: v for k, v in model.items() if k != "name"}

    effects = []
    raw_effects = data.get("effects", [])
    if not isinstance(raw_effects, list):
        raise stub.error("`effects` must be an array of tables ([[effects]])", "effects")
    names: set[str] = set()
    for i, e in enumerate(raw_effects):
        if isinstance(e, str):
            e = {"shader": e}
        if not isinstance(e, dict) or not isinstance(e.get("shader"), str):
            raise stub.error(f"effect #{i + 1} needs a `shader` (a name in shaders/ or a .fs path)", "shader")
        name = str(e.get("name", Path(e["shader"]).stem))
        if name in names:
            raise stub.error(f"two effects are called {name!r}; give one a `name`", name)
        names.add(name)
        effects.append(EffectSpec(e["shader"], name))

    values = data.get("values", {})
    if not isinstance(values, dict):
        raise stub.error("[values] must be a table of \"/param/path\" = value", "values")
    for k, v in values.items():
        if isinstance(v, float) and not math.isfinite(v):
            raise stub.error(f"value of {k!r} is not a finite number", f'"{k}"')

    routes = []
    raw_routes = data.get("routes", [])
    if not isinstance(raw_routes, list):
        raise stub.error("`routes` must be an array of tables ([[routes]])", "routes")
    for r in raw_routes:
        if not isinstance(r, dict) or not {"source", "target"} <= set(r):
            raise stub.error("a route needs `source` and `target` (and `amount`, `curve`)", "[[routes]]")
        extra = set(r) - {"source", "target", "amount", "curve"}
        if extra:
            raise stub.error(f"unknown route key {sorted(extra)[0]!r}", sorted(extra)[0])
        amount = r.get("amount", 1.0)
        if isinstance(amount, bool) or not isinstance(amount, (int, float)):
            raise stub.error(f"route amount must be a number, got {amount!r}", str(r["target"]))
        curve = str(r.get("curve", "linear"))
        if curve not in CURVES:
            raise stub.error(f"unknown curve {curve!r}; known: {', '.join(CURVES)}", curve)
        routes.append(Route(str(r["source"]), str(r["target"]), float(amount), curve))

    osc = data.get("osc", {})
    if not isinstance(osc, dict) or set(osc) - {"alias"} or not isinstance(osc.get("alias", {}), dict):
        key = sorted(set(osc) - {"alias"})[0] if isinstance(osc, dict) and set(osc) - {"alias"} else "alias"
        raise stub.error('[osc] holds one table, [osc.alias]: "/address/sent" = "/param/path"',
                         f"osc.{key}" if stub.line_of(f"osc.{key}") else "osc")
    aliases = osc.get("alias", {})
    for alias, target in aliases.items():
        if not isinstance(target, str):
            raise stub.error(f"alias {alias!r}: the target must be a string (a param path, /norm/<path> or a "
                             f"/cmd/ command)", f'"{alias}"')

    try:
        midi = parse_midi_tables(data.get("midi", {}), text, where)
    except MidiMapError as exc:
        raise PresetError(str(exc)) from None

    return Preset(
        name=stub.name, description=str(data.get("description", "")), model=str(model.get("name", "cppn")),
        model_settings=MappingProxyType(model_settings), effects=tuple(effects),
        values=MappingProxyType(dict(values)), routes=tuple(routes),
        osc_aliases=MappingProxyType(dict(aliases)), midi=midi, path=path, text=text,
    )


def dump_preset(preset: Preset) -> str:
    """TOML text for a preset (used by save)."""
    data: dict[str, Any] = {"name": preset.name}
    if preset.description:
        data["description"] = preset.description
    data["model"] = {"name": preset.model, **dict(preset.model_settings)}
    data["effects"] = [{"shader": e.shader, "name": e.name} for e in preset.effects]
    data["values"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in preset.values.items()}
    data["routes"] = [{"source": r.source, "target": r.target, "amount": r.amount, "curve": r.curve}
                      for r in preset.routes]
    if preset.osc_aliases:
        data["osc"] = {"alias": dict(preset.osc_aliases)}
    if preset.midi:
        data["midi"] = mapping_tables(preset.midi)
    return tomli_w.dumps(data)
