"""ISF 2.0 loader: the JSON header (INPUTS, PASSES, IMPORTED) of an .fs file, its optional .vs, and params."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vj.audio.features import SOURCE_NAMES
from vj.gfx import glsl
from vj.gfx.expr import Expression, ExpressionError
from vj.gfx.isferror import ISFError
from vj.params import Param

INPUT_TYPES = ("event", "bool", "long", "float", "point2D", "color", "image", "audio", "audioFFT")
IMAGE_TYPES = ("image", "audio", "audioFFT")
# Inputs usable as `$name` in WIDTH/HEIGHT expressions.
NUMERIC_TYPES = ("float", "long", "bool", "event")
MAX_TARGET_PX = 16384
# A float input with `"VJ_FEATURE": "<name>"` is fed from that audio feature (Features.sources()) instead of a
# param; other ISF hosts ignore the key and use the input's DEFAULT or slider.
FEATURE_KEY = "VJ_FEATURE"
POINT2D_RANGE = 1.0e4             # an unbounded point2D still needs a declared range
_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESERVED_NAMES = {
    "TIME", "TIMEDELTA", "FRAMEINDEX", "RENDERSIZE", "PASSINDEX", "DATE", "isf_FragNormCoord",
    "isf_FragColor", "VERTEXDATA", "WIDTH", "HEIGHT",
}


# GLSL 3.30 keywords and reserved words: an input or target with one of these names cannot compile.
GLSL_RESERVED = frozenset("""
attribute const uniform varying layout centroid flat smooth noperspective patch sample subroutine break
continue do for while switch case default if else in out inout float int void bool true false invariant
discard return mat2 mat3 mat4 mat2x2 mat2x3 mat2x4 mat3x2 mat3x3 mat3x4 mat4x2 mat4x3 mat4x4 vec2 vec3 vec4
ivec2 ivec3 ivec4 bvec2 bvec3 bvec4 uint uvec2 uvec3 uvec4 dvec2 dvec3 dvec4 double lowp mediump highp
precision sampler1D sampler2D sampler3D samplerCube sampler2DRect sampler1DShadow sampler2DShadow
sampler2DArray sampler1DArray samplerBuffer isampler2D usampler2D struct common partition active asm class
union enum typedef template this packed goto inline noinline volatile public static extern external
interface long short half fixed unsigned superp input output hvec2 hvec3 hvec4 fvec2 fvec3 fvec4
sampler3DRect filter sizeof cast namespace using row_major resource texture
""".split())


def _bad_identifier(name: str) -> str | None:
    """Why `name` cannot be a GLSL identifier declared by the loader, or None if it can."""
    if not _IDENT_RE.match(name):
        return "is not a valid GLSL identifier"
    if name in GLSL_RESERVED or name.startswith("gl_") or "__" in name:
        return "is a reserved GLSL word"
    return None


@dataclass(frozen=True)
class ISFInput:
    """One entry of INPUTS. Values are normalised: numbers as float/int, colours as 4-tuples."""

    name: str
    type: str
    label: str = ""
    default: Any = None
    min: Any = None
    max: Any = None
    identity: Any = None
    values: tuple[int, ...] = ()       # long: the values sent to the shader
    labels: tuple[str, ...] = ()       # long: their names
    samples: int | None = None         # audio/audioFFT: MAX, the texture width wanted
    feature: str | None = None         # float: fed from this feature (VJ_FEATURE), no param

    @property
    def glsl_type(self) -> str:
        return {"event": "bool", "bool": "bool", "long": "int", "float": "float", "point2D": "vec2",
                "color": "vec4", "image": "sampler2D", "audio": "sampler2D", "audioFFT": "sampler2D"}[self.type]

    @property
    def is_image(self) -> bool:
        return self.type in IMAGE_TYPES

    @property
    def long_by_index(self) -> bool:
        """A long whose VALUES are not a run of consecutive integers: its param is the index into VALUES."""
        if self.type != "long" or not self.values:
            return False
        v = list(self.values)
        return v != list(range(v[0], v[0] + len(v)))

    def param(self, prefix: str) -> Param | None:
        """The registry Param for this input under `prefix` (e.g. "/fx/kaleido"); None for images, audio and
        feature-fed inputs (the engine sets those)."""
        if self.feature is not None:
            return None
        path = f"{prefix.rstrip('/')}/{self.name}"
        desc = self.label or self.name
        t = self.type
        if t == "float":
            lo = float(self.min) if self.min is not None else 0.0
            hi = float(self.max) if self.max is not None else max(1.0, lo)
            lo, hi = min(lo, hi), max(lo, hi)
            default = float(self.default) if self.default is not None else lo
            return Param(path, min(max(default, lo), hi), lo, hi, "float", description=desc)
        if t == "bool":
            return Param(path, bool(self.default), 0.0, 1.0, "bool", description=desc)
        if t == "event":
            return Param(path, False, 0.0, 1.0, "event", description=desc)
        if t == "long":
            if self.values:
                if self.long_by_index:
                    idx = self.values.index(self.default) if self.default in self.values else 0
                    labels = self.labels or tuple(str(v) for v in self.values)
                    return Param(path, idx, 0, len(self.values) - 1, "enum", description=desc, labels=labels)
                lo, hi = self.values[0], self.values[-1]
                default = self.default if self.default in self.values else lo
                if self.labels:
                    return Param(path, default, lo, hi, "enum", description=desc, labels=self.labels)
                return Param(path, default, lo, hi, "int", description=desc)
            lo = int(self.min) if self.min is not None else 0
            hi = int(self.max) if self.max is not None else max(lo, 10)
            default = int(self.default) if self.default is not None else lo
            return Param(path, min(max(default, lo), hi), lo, hi, "int", description=desc)
        if t == "color":
            return Param(path, self.default or (0.0, 0.0, 0.0, 1.0), 0.0, 1.0, "color", description=desc)
        if t == "point2D":
            lo = min(self.min) if self.min is not None else -POINT2D_RANGE
            hi = max(self.max) if self.max is not None else POINT2D_RANGE
            default = self.default or (0.0, 0.0)
            return Param(path, tuple(min(max(v, lo), hi) for v in default), lo, hi, "point2d", description=desc)
        return None

    def uniform_value(self, value: Any) -> Any:
        """The GLSL uniform value for a param value (maps a long's index to its VALUES entry)."""
        t = self.type
        if t in ("bool", "event"):
            return bool(value)
        if t == "long":
            v = int(value)
            if self.long_by_index:
                return self.values[min(max(v, 0), len(self.values) - 1)]
            return v
        if t == "float":
            return float(value)
        return tuple(float(x) for x in value)

    @property
    def default_uniform(self) -> Any:
        if self.feature is not None:
            return float(self.default) if self.default is not None else 0.0
        p = self.param("/d")
        return None if p is None else self.uniform_value(p.default)


@dataclass(frozen=True)
class ISFPass:
    """One entry of PASSES. `width`/`height` are None for the full render size."""

    target: str | None = None
    persistent: bool = False
    float: bool = False
    width: Expression | None = None
    height: Expression | None = None

    def size(self, width_px: int, height_px: int, values: dict[str, float]) -> tuple[int, int]:
        """Pixel size of this pass for a render of width_px x height_px; raises ExpressionError."""
        env = dict(values)
        env["WIDTH"] = float(width_px)
        env["HEIGHT"] = float(height_px)
        w = self.width.evaluate(env) if self.width is not None else width_px
        h = self.height.evaluate(env) if self.height is not None else height_px
        return (min(max(int(w), 1), MAX_TARGET_PX), min(max(int(h), 1), MAX_TARGET_PX))


@dataclass(frozen=True)
class ISFShader:
    """A parsed ISF file. `fragment_source`/`vertex_source` are the raw GLSL as written (header included)."""

    name: str
    fragment_source: str
    vertex_source: str | None = None
    path: Path | None = None
    description: str = ""
    credit: str = ""
    categories: tuple[str, ...] = ()
    isf_version: str = "1.0"
    inputs: tuple[ISFInput, ...] = ()
    passes: tuple[ISFPass, ...] = (ISFPass(),)
    imported: tuple[tuple[str, Path], ...] = ()   # (sampler name, image file)
    header: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def file_name(self) -> str:
        return self.path.name if self.path is not None else f"{self.name}.fs"

    @property
    def vertex_file_name(self) -> str:
        return self.path.with_suffix(".vs").name if self.path is not None else f"{self.name}.vs"

    def input(self, name: str) -> ISFInput | None:
        for i in self.inputs:
            if i.name == name:
                return i
        return None

    @property
    def image_names(self) -> list[str]:
        """Every sampler the shader can read: image/audio inputs, pass targets, imported images."""
        names = [i.name for i in self.inputs if i.is_image]
        for p in self.passes:
            if p.target and p.target not in names:
                names.append(p.target)
        names.extend(n for n, _ in self.imported if n not in names)
        return names

    @property
    def is_filter(self) -> bool:
        return any(i.name == "inputImage" and i.type == "image" for i in self.inputs)

    def params(self, prefix: str) -> list[Param]:
        """Registry params for the controllable inputs, at `<prefix>/<INPUT>` (e.g. /fx/kaleido/sides)."""
        out = []
        for i in self.inputs:
            p = i.param(prefix)
            if p is not None:
                out.append(p)
        return out


# ---------------------------------------------------------------------------------------------- parsing

def load_isf(path: str | Path, name: str | None = None) -> ISFShader:
    """Read an ISF .fs file (and the .vs beside it, if any). Raises FileNotFoundError or ISFError."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ISFError(p.name, f"not UTF-8 text: {exc.reason}") from None
    vs_text = None
    for ext in (".vs", ".vert"):
        vs_path = p.with_suffix(ext)
        if vs_path.is_file():
            vs_text = vs_path.read_text(encoding="utf-8-sig")
            break
    return parse_isf(text, name or effect_name(p), vertex_source=vs_text, path=p)


def effect_name(path: str | Path) -> str:
    """The default effect instance name for a file: its stem, made safe for a param path."""
    stem = Path(path).stem
    safe = re.sub(r"[^A-Za-z0-9_.\-]+", "_", stem).strip("_")
    return safe or "effect"


def _line_at(text: str, offset: int) -> int:
    return text.count("\n", 0, max(offset, 0)) + 1


def _find_line(text: str, *patterns: str) -> int | None:
    """The line of the first regex pattern that matches in `text`, for error messages."""
    for pat in patterns:
        m = re.search(pat, text)
        if m:
            return _line_at(text, m.start())
    return None


def _json_str_re(key: str, value: Any) -> str:
    return rf'"{re.escape(key)}"\s*:\s*{re.escape(json.dumps(value))}'


def split_header(text: str, file: str) -> tuple[dict, int, int]:
    """(header dict, line of the opening /*, line of the closing */). Raises ISFError."""
    stripped = text.lstrip()
    start = len(text) - len(stripped)
    if not stripped.startswith("/*"):
        raise ISFError(file, "no JSON header: an ISF file must start with a /* {...} */ comment",
                       _line_at(text, start))
    end = text.find("*/", start + 2)
    if end < 0:
        raise ISFError(file, "the header comment /* is never closed with */", _line_at(text, start))
    body = text[start + 2:end]
    first_line = _line_at(text, start)
    try:
        header = json.loads(body)
    except json.JSONDecodeError as exc:
        raise ISFError(file, f"bad JSON in header: {exc.msg}", first_line + exc.lineno - 1) from None
    if not isinstance(header, dict):
        raise ISFError(file, f"the header must be a JSON object, not {type(header).__name__}", first_line)
    return header, first_line, _line_at(text, end)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


def _truthy(v: Any) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("1", "true", "yes")
    return bool(v)


def parse_isf(text: str, name: str, vertex_source: str | None = None, path: Path | None = None) -> ISFShader:
    """Parse ISF text. `name` names the effect; errors cite `path.name` (or `<name>.fs`)."""
    file = path.name if path is not None else f"{name}.fs"
    header, _, _ = split_header(text, file)

    def fail(reason: str, *patterns: str) -> ISFError:
        return ISFError(file, reason, _find_line(text, *patterns) if patterns else None)

    raw_inputs = header.get("INPUTS", [])
    if not isinstance(raw_inputs, list):
        raise fail("INPUTS must be a list of objects", r'"INPUTS"')
    inputs: list[ISFInput] = []
    seen: set[str] = set()
    for n, raw in enumerate(raw_inputs):
        if not isinstance(raw, dict):
            raise fail(f"INPUTS[{n}] must be an object", r'"INPUTS"')
        inp = _parse_input(raw, n, fail)
        if inp.name in seen:
            raise fail(f"input {inp.name!r} is declared twice", _json_str_re("NAME", inp.name))
        seen.add(inp.name)
        inputs.append(inp)

    numeric = frozenset(i.name for i in inputs if i.type in NUMERIC_TYPES) | {"WIDTH", "HEIGHT"}
    raw_passes = header.get("PASSES", [])
    if raw_passes in (None, {}):
        raw_passes = []
    if not isinstance(raw_passes, list):
        raise fail("PASSES must be a list of objects", r'"PASSES"')
    # ISF 1.0 declared persistence in a top-level PERSISTENT_BUFFERS (list of names or dict of settings).
    legacy = header.get("PERSISTENT_BUFFERS") or {}
    if isinstance(legacy, list):
        legacy = {str(k): {} for k in legacy}
    if not isinstance(legacy, dict):
        raise fail("PERSISTENT_BUFFERS must be a list or an object", r'"PERSISTENT_BUFFERS"')
    passes = []
    for n, raw in enumerate(raw_passes):
        if not isinstance(raw, dict):
            raise fail(f"PASSES[{n}] must be an object", r'"PASSES"')
        passes.append(_parse_pass(raw, n, numeric, seen, legacy, fail))
    if not passes:
        passes = [ISFPass()]

    imported = []
    raw_imported = header.get("IMPORTED", {})
    if isinstance(raw_imported, list):  # ISF 1.0: a list of {"NAME":..., "PATH":...}
        raw_imported = {d.get("NAME"): d for d in raw_imported if isinstance(d, dict)}
    if not isinstance(raw_imported, dict):
        raise fail("IMPORTED must be an object", r'"IMPORTED"')
    for key, spec in raw_imported.items():
        if not isinstance(key, str) or _bad_identifier(key):
            raise fail(f"IMPORTED name {key!r} {_bad_identifier(str(key))}", r'"IMPORTED"')
        if not isinstance(spec, dict) or not isinstance(spec.get("PATH"), str):
            raise fail(f"IMPORTED {key!r} needs a PATH string", r'"IMPORTED"')
        base = path.parent if path is not None else Path(".")
        imported.append((key, base / spec["PATH"]))

    cats = header.get("CATEGORIES", [])
    categories = tuple(str(c) for c in cats) if isinstance(cats, list) else (str(cats),)
    shader = ISFShader(
        name=name, fragment_source=text, vertex_source=vertex_source, path=path,
        description=str(header.get("DESCRIPTION", "")), credit=str(header.get("CREDIT", "")),
        categories=categories, isf_version=str(header.get("ISFVSN", "1.0")),
        inputs=tuple(inputs), passes=tuple(passes), imported=tuple(imported), header=header,
    )
    # Translating now turns source-level mistakes (a bad IMG_PIXEL call) into load-time ISFErrors.
    glsl.translate(shader)
    return shader


def _parse_input(raw: dict, n: int, fail) -> ISFInput:
    name = raw.get("NAME")
    if not isinstance(name, str) or _bad_identifier(name):
        why = _bad_identifier(name) if isinstance(name, str) else "is not a string"
        raise fail(f"INPUTS[{n}] NAME {name!r} {why}", r'"NAME"' if not isinstance(name, str)
                   else _json_str_re("NAME", name))
    where = _json_str_re("NAME", name)
    if name in _RESERVED_NAMES:
        raise fail(f"input name {name!r} is reserved by ISF", where)
    t = raw.get("TYPE")
    if t not in INPUT_TYPES:
        raise fail(f"input {name!r} has unknown TYPE {t!r} (expected one of {', '.join(INPUT_TYPES)})",
                   _json_str_re("TYPE", t) if isinstance(t, str) else where, where)
    label = str(raw.get("LABEL", ""))
    d, lo, hi, ident = raw.get("DEFAULT"), raw.get("MIN"), raw.get("MAX"), raw.get("IDENTITY")

    def num(v: Any, key: str) -> float | None:
        if v is None:
            return None
        if _number(v):
            return float(v)
        if isinstance(v, bool):
            return float(v)
        raise fail(f"input {name!r}: {key} must be a number, got {v!r}", where)

    def vec(v: Any, key: str, sizes: tuple[int, ...]) -> tuple[float, ...] | None:
        if v is None:
            return None
        if not isinstance(v, list) or len(v) not in sizes or not all(_number(x) for x in v):
            raise fail(f"input {name!r}: {key} must be a list of {' or '.join(map(str, sizes))} numbers, "
                       f"got {v!r}", where)
        return tuple(float(x) for x in v)

    feature = raw.get(FEATURE_KEY)
    if feature is not None:
        if t != "float":
            raise fail(f"input {name!r}: {FEATURE_KEY} needs TYPE float, not {t}", where)
        if feature not in SOURCE_NAMES:
            raise fail(f"input {name!r}: unknown {FEATURE_KEY} {feature!r} (expected one of "
                       f"{', '.join(SOURCE_NAMES)})", _json_str_re(FEATURE_KEY, feature)
                       if isinstance(feature, str) else where, where)
    if t == "float":
        return ISFInput(name, t, label, num(d, "DEFAULT"), num(lo, "MIN"), num(hi, "MAX"), num(ident, "IDENTITY"),
                        feature=feature)
    if t in ("bool", "event"):
        if d is not None and not isinstance(d, (bool, int, float)):
            raise fail(f"input {name!r}: DEFAULT must be true or false, got {d!r}", where)
        return ISFInput(name, t, label, bool(d) if d is not None else False)
    if t == "long":
        values = raw.get("VALUES")
        labels = raw.get("LABELS")
        vals: tuple[int, ...] = ()
        labs: tuple[str, ...] = ()
        if values is not None:
            if not isinstance(values, list) or not values or not all(_number(v) for v in values):
                raise fail(f"input {name!r}: VALUES must be a non-empty list of numbers", where)
            vals = tuple(int(v) for v in values)
            if labels is not None:
                if not isinstance(labels, list) or len(labels) != len(values):
                    raise fail(f"input {name!r}: LABELS must list one string per entry of VALUES", where)
                labs = tuple(str(x) for x in labels)
            if len(set(vals)) != len(vals):
                # Repeated values are allowed by the spec; keep the first label for each.
                keep = {}
                for i, v in enumerate(vals):
                    keep.setdefault(v, labs[i] if labs else str(v))
                vals, labs = tuple(keep), (tuple(keep.values()) if labs else ())
            if sorted(vals) != list(vals):
                order = sorted(range(len(vals)), key=lambda i: vals[i])
                vals = tuple(vals[i] for i in order)
                labs = tuple(labs[i] for i in order) if labs else ()
        dv = num(d, "DEFAULT")
        return ISFInput(name, t, label, int(dv) if dv is not None else (vals[0] if vals else None),
                        num(lo, "MIN"), num(hi, "MAX"), None, vals, labs)
    if t == "color":
        dv = vec(d, "DEFAULT", (3, 4))
        if dv is not None and len(dv) == 3:
            dv = dv + (1.0,)
        return ISFInput(name, t, label, dv, vec(lo, "MIN", (3, 4)), vec(hi, "MAX", (3, 4)))
    if t == "point2D":
        return ISFInput(name, t, label, vec(d, "DEFAULT", (2,)), vec(lo, "MIN", (2,)), vec(hi, "MAX", (2,)))
    if t in ("audio", "audioFFT"):
        samples = num(hi, "MAX")
        if samples is not None and not 1 <= samples <= MAX_TARGET_PX:
            raise fail(f"input {name!r}: MAX (number of samples) must be 1..{MAX_TARGET_PX}", where)
        return ISFInput(name, t, label, samples=int(samples) if samples else None)
    return ISFInput(name, t, label)


def _parse_pass(raw: dict, n: int, numeric: frozenset[str], input_names: set[str], legacy: dict,
                fail) -> ISFPass:
    target = raw.get("TARGET")
    if target is not None:
        if not isinstance(target, str) or _bad_identifier(target):
            why = _bad_identifier(target) if isinstance(target, str) else "is not a string"
            raise fail(f"PASSES[{n}] TARGET {target!r} {why}",
                       _json_str_re("TARGET", target) if isinstance(target, str) else r'"TARGET"')
        if target in input_names:
            raise fail(f"PASSES[{n}] TARGET {target!r} has the same name as an input",
                       _json_str_re("TARGET", target))
    persistent = _truthy(raw.get("PERSISTENT", False))
    is_float = _truthy(raw.get("FLOAT", False))
    width, height = raw.get("WIDTH"), raw.get("HEIGHT")
    if target in legacy:
        persistent = True
        spec = legacy[target] if isinstance(legacy[target], dict) else {}
        is_float = is_float or _truthy(spec.get("FLOAT", False))
        width = width if width is not None else spec.get("WIDTH")
        height = height if height is not None else spec.get("HEIGHT")

    def expression(v: Any, key: str) -> Expression | None:
        if v is None:
            return None
        text = str(v) if _number(v) else v
        try:
            return Expression(text, numeric)
        except ExpressionError as exc:
            pat = _json_str_re(key, v) if isinstance(v, str) else rf'"{key}"'
            raise fail(f"PASSES[{n}] {key}: {exc}", pat, rf'"{key}"') from None

    return ISFPass(target, persistent, is_float, expression(width, "WIDTH"), expression(height, "HEIGHT"))
