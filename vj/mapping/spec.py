"""Outputs files: the TOML that lists each projector output, checked, with errors that name file and line."""

from __future__ import annotations

import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import numpy as np

from vj.mapping.geometry import GeometryError, mesh_problem

SIDES = ("left", "right", "top", "bottom")
_OUTPUT_KEYS = {"name", "monitor", "size", "position", "source", "corners", "mesh", "blend", "mask",
                "brightness", "color"}
_BLEND_KEYS = {"width", "gamma", "power"}
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
MAX_MESH = 33                     # points a side: a curved screen needs a handful, a typo 10^6
POINT_RANGE = (-1.0, 2.0)          # where a point may sit: off its output too (a projector wider than its screen)
DEFAULT_SIZE_PX = (1280, 720)

EXAMPLE = """\
# One [[output]] table per projector or screen; coordinates are 0..1 with y down.
[[output]]
name = "main"
monitor = 0                                   # index or part of the name; leave out for a window
size = [1280, 720]                            # window size (and `vj outputs render` size)
source = [0.0, 0.0, 1.0, 1.0]                 # x, y, w, h of the master picture shown
corners = [[0, 0], [1, 0], [1, 1], [0, 1]]    # where the picture's TL, TR, BR, BL corners land
"""


class OutputsError(ValueError):
    """An outputs file that cannot be used; the message names the file, the line where known, and the reason."""


@dataclass(frozen=True)
class Blend:
    """One soft edge: `width` as a share of the output's picture (0: hard edge), `gamma` of the projector (the
    ramp is applied as ramp ** (1 / gamma), so that light, not pixel values, adds up to flat), and `power`,
    the steepness of the ramp's S curve (1: linear)."""
    width: float = 0.0
    gamma: float = 2.2
    power: float = 2.0


@dataclass(frozen=True)
class OutputSpec:
    name: str
    monitor: int | str | None = None
    size_px: tuple[int, int] = DEFAULT_SIZE_PX
    position_px: tuple[int, int] | None = None
    source: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)   # x, y, w, h of the master, y down
    mesh: tuple = (((0.0, 0.0), (1.0, 0.0)), ((0.0, 1.0), (1.0, 1.0)))  # (rows, cols, 2) output points, y down
    blend: Mapping[str, Blend] = field(default_factory=lambda: MappingProxyType({s: Blend() for s in SIDES}))
    mask: Path | None = None
    brightness: float = 1.0
    color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    line: int = 0                                                       # of its [[output]] header

    @property
    def mesh_array(self) -> np.ndarray:
        return np.asarray(self.mesh, float)

    @property
    def is_corner_pin(self) -> bool:
        return self.mesh_array.shape[:2] == (2, 2)

    @property
    def corners(self) -> np.ndarray:
        """The four outer corners TL, TR, BR, BL (4, 2)."""
        m = self.mesh_array
        return np.array([m[0, 0], m[0, -1], m[-1, -1], m[-1, 0]])


@dataclass(frozen=True)
class OutputsFile:
    path: Path | None
    outputs: tuple[OutputSpec, ...]
    text: str = ""

    def get(self, name: str) -> OutputSpec | None:
        return next((o for o in self.outputs if o.name == name), None)


def output_headers(text: str) -> list[int]:
    """Line numbers (1-based) of the [[output]] headers, in order."""
    return [i for i, line in enumerate(text.splitlines(), 1) if re.match(r"^\s*\[\[\s*output\s*\]\]", line)]


class _Where:
    """Points at lines: the header of output `index`, or the first line in its block that sets `key`."""

    def __init__(self, path: Path | None, text: str):
        self.path, self.lines, self.headers = path, text.splitlines(), output_headers(text)

    def line(self, index: int | None, key: str | None = None) -> int | None:
        if index is None or index >= len(self.headers):
            return None
        start = self.headers[index]
        end = self.headers[index + 1] if index + 1 < len(self.headers) else len(self.lines) + 1
        if key:
            for n in range(start, end):
                if re.match(rf"^\s*{re.escape(key)}\s*[=.]", self.lines[n - 1].split("#", 1)[0]):
                    return n
        return start

    def error(self, reason: str, index: int | None = None, key: str | None = None) -> OutputsError:
        where = str(self.path) if self.path else "outputs"
        n = self.line(index, key)
        return OutputsError(f"{where}:{n}: {reason}" if n else f"{where}: {reason}")


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _point(v: Any) -> tuple[float, float] | None:
    if isinstance(v, list) and len(v) == 2 and all(_number(c) for c in v):
        return float(v[0]), float(v[1])
    return None


def parse_outputs(text: str, path: Path | None = None) -> OutputsFile:
    """Check an outputs file's text; OutputsError on the first problem."""
    where = _Where(path, text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        reason = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise OutputsError(f"{path or 'outputs'}:{m.group(1)}: {reason}" if m else f"{path or 'outputs'}: {exc}") from None
    extra = set(data) - {"output"}
    if extra:
        key = sorted(extra)[0]
        n = next((i for i, line in enumerate(text.splitlines(), 1) if line.lstrip().startswith((key, f"[{key}"))), None)
        raise OutputsError(f"{path or 'outputs'}:{n}: unknown key {key!r} (an outputs file has [[output]] tables)"
                           if n else f"{path or 'outputs'}: unknown key {key!r}")
    tables = data.get("output")
    if not isinstance(tables, list) or not tables:
        raise where.error("no [[output]] table: " + EXAMPLE.splitlines()[0].lstrip("# "))
    outputs, names = [], set()
    base = path.parent if path is not None else Path.cwd()
    for index, t in enumerate(tables):
        spec = _output(t, index, where, base)
        if spec.name in names:
            raise where.error(f"two outputs are named {spec.name!r}", index, "name")
        names.add(spec.name)
        outputs.append(spec)
    return OutputsFile(path, tuple(outputs), text)


def _output(t: dict, index: int, where: _Where, base: Path) -> OutputSpec:
    def bad(key: str, reason: str) -> OutputsError:
        return where.error(f"output {t.get('name', index + 1)!r}: {reason}", index, key)

    unknown = sorted(set(t) - _OUTPUT_KEYS)
    if unknown:
        raise bad(unknown[0], f"unknown key {unknown[0]!r} (known: {', '.join(sorted(_OUTPUT_KEYS))})")
    name = t.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise where.error(f"output {index + 1} needs a name of letters, digits, '-' or '_' (it is also its OSC "
                          f"address /output/<name>/...)", index, "name")
    kw: dict[str, Any] = {"name": name, "line": where.line(index) or 0}

    if "monitor" in t:
        m = t["monitor"]
        if not ((isinstance(m, int) and not isinstance(m, bool) and m >= 0) or (isinstance(m, str) and m)):
            raise bad("monitor", f"monitor must be an index (0, 1, ...) or part of a monitor's name, not {m!r}")
        kw["monitor"] = m
    for key, attr in (("size", "size_px"), ("position", "position_px")):
        if key in t:
            v = t[key]
            low = 1 if key == "size" else -65536
            if not (isinstance(v, list) and len(v) == 2 and all(isinstance(c, int) and not isinstance(c, bool)
                                                                and low <= c <= 16384 for c in v)):
                raise bad(key, f"{key} must be two whole pixel numbers [x, y], not {v!r}")
            kw[attr] = (int(v[0]), int(v[1]))
    if "source" in t:
        v = t["source"]
        if not (isinstance(v, list) and len(v) == 4 and all(_number(c) for c in v)):
            raise bad("source", f"source must be [x, y, w, h] of the master picture (0..1), not {v!r}")
        x, y, w, h = map(float, v)
        if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > 1 + 1e-9 or y + h > 1 + 1e-9:
            raise bad("source", f"source {v} must lie inside the picture (0..1) with a positive size")
        kw["source"] = (x, y, w, h)
    if "corners" in t and "mesh" in t:
        raise bad("mesh", "give corners (a corner pin) or mesh (a grid), not both")
    if "corners" in t:
        pts = t["corners"]
        pts = [_point(p) for p in pts] if isinstance(pts, list) and len(pts) == 4 else None
        if pts is None or None in pts:
            raise bad("corners", "corners must be four [x, y] points: top left, top right, bottom right, bottom left")
        kw["mesh"] = ((pts[0], pts[1]), (pts[3], pts[2]))
    if "mesh" in t:
        rows = t["mesh"]
        ok = isinstance(rows, list) and 2 <= len(rows) <= MAX_MESH and all(
            isinstance(r, list) and len(r) == len(rows[0]) and 2 <= len(r) <= MAX_MESH for r in rows)
        pts = [[_point(p) for p in r] for r in rows] if ok else None
        if pts is None or any(p is None for r in pts for p in r):
            raise bad("mesh", f"mesh must be rows of [x, y] points, every row as long, 2 to {MAX_MESH} each way")
        kw["mesh"] = tuple(tuple(r) for r in pts)
    lo, hi = POINT_RANGE
    if "mesh" in kw and not all(lo <= c <= hi for row in kw["mesh"] for pt in row for c in pt):
        raise bad("mesh" if "mesh" in t else "corners",
                  "points must lie within -1..2 of the output (0..1 is the output itself)")
    if "mesh" in kw:
        try:
            why = mesh_problem(np.asarray(kw["mesh"], float))
        except GeometryError as exc:
            why = str(exc)
        if why:
            raise bad("mesh" if "mesh" in t else "corners", f"the warp cannot be used: {why}")
    if "blend" in t:
        kw["blend"] = MappingProxyType(_blend(t["blend"], bad))
    if "mask" in t:
        m = t["mask"]
        if not isinstance(m, str) or not m:
            raise bad("mask", f"mask must be the path of a PNG image, not {m!r}")
        p = Path(os.path.expanduser(m))
        p = p if p.is_absolute() else base / p
        if not p.is_file():
            raise bad("mask", f"mask image {str(p)!r} not found")
        kw["mask"] = p
    if "brightness" in t:
        v = t["brightness"]
        if not (_number(v) and 0.0 <= v <= 4.0):
            raise bad("brightness", f"brightness must be a number from 0 to 4, not {v!r}")
        kw["brightness"] = float(v)
    if "color" in t:
        v = t["color"]
        if not (isinstance(v, list) and len(v) == 3 and all(_number(c) and 0.0 <= c <= 2.0 for c in v)):
            raise bad("color", f"color must be three gains [r, g, b] from 0 to 2, not {v!r}")
        kw["color"] = tuple(float(c) for c in v)
    return OutputSpec(**kw)


def _blend(v: Any, bad) -> dict[str, Blend]:
    if not isinstance(v, dict):
        raise bad("blend", "blend must be a table, e.g. blend = { right = 0.1, gamma = 2.2 }")
    unknown = sorted(set(v) - set(SIDES) - {"gamma", "power"})
    if unknown:
        raise bad("blend", f"unknown blend key {unknown[0]!r} (sides {', '.join(SIDES)}; gamma, power)")
    shared = {k: v[k] for k in ("gamma", "power") if k in v}
    out = {}
    for side in SIDES:
        s = v.get(side, 0.0)
        s = {"width": s} if _number(s) else s
        if not isinstance(s, dict) or set(s) - _BLEND_KEYS:
            raise bad("blend", f"blend.{side} must be a width or a table of width, gamma, power")
        b = {**shared, **s}
        width, gamma, power = b.get("width", 0.0), b.get("gamma", 2.2), b.get("power", 2.0)
        if not (_number(width) and 0.0 <= width <= 0.5):
            raise bad("blend", f"blend.{side} width must be 0 to 0.5 of the output's picture, not {width!r}")
        if not (_number(gamma) and 0.5 <= gamma <= 4.0):
            raise bad("blend", f"blend gamma must be 0.5 to 4, not {gamma!r}")
        if not (_number(power) and 0.5 <= power <= 8.0):
            raise bad("blend", f"blend power must be 0.5 to 8, not {power!r}")
        out[side] = Blend(float(width), float(gamma), float(power))
    return out


def load_outputs(path: str | os.PathLike) -> OutputsFile:
    """Read and check an outputs file; OutputsError (one line) when it is missing, unreadable or wrong."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise OutputsError(f"{p}: outputs file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise OutputsError(f"{p}: cannot read the outputs file: {exc}") from None
    return parse_outputs(text, p)


def blend_ramp(t: np.ndarray, power: float) -> np.ndarray:
    """The S curve of an edge blend: 0 at the outer edge (t = 0), 1 inside (t = 1), and ramp(t) + ramp(1 - t) = 1,
    so two overlapping projectors' light sums to one across the overlap (Bourke's edge-blend curve). The shader
    computes the same curve."""
    t = np.clip(np.asarray(t, float), 0.0, 1.0)
    return np.where(t < 0.5, 0.5 * (2 * t) ** power, 1 - 0.5 * (2 * (1 - t)) ** power)
