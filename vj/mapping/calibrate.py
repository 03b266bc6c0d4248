"""Calibration: the outputs' corners as params (OSC, OSCQuery, MIDI, web), the keys and mouse that move them, the
handles drawn over each output, and the corners written back into the outputs file."""

from __future__ import annotations

import re
from dataclasses import replace
from types import MappingProxyType

import numpy as np

from vj.mapping.geometry import GeometryError, mesh_problem
from vj.mapping.pattern import stamp_text
from vj.mapping.spec import POINT_RANGE, SIDES, OutputSpec, OutputsFile, output_headers
from vj.params import Change, Param, Value

CALIBRATE = "/output/calibrate"
PICK_PX = 24                       # a click this close to a handle takes it
STEP_PX = {"": 1.0, "shift+": 10.0, "alt+": 0.1}      # arrow keys: 1 px, 10 px, a tenth of a pixel
_ARROWS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}


def point_paths(spec: OutputSpec) -> list[tuple[str, int, int]]:
    """(param path, row, col) of every point of the output's warp: /output/NAME/corner/1..4 (top left, top right,
    bottom right, bottom left) for a corner pin, /output/NAME/point/ROW/COL (from 1) for a mesh."""
    m = spec.mesh_array
    if spec.is_corner_pin:
        return [(f"/output/{spec.name}/corner/{k + 1}", r, c) for k, (r, c) in enumerate(((0, 0), (0, 1), (1, 1), (1, 0)))]
    return [(f"/output/{spec.name}/point/{r + 1}/{c + 1}", r, c) for r in range(m.shape[0]) for c in range(m.shape[1])]


def output_params(outputs: OutputsFile) -> list[Param]:
    """The params of calibration: the mode and, per output, its points, its blend widths and its brightness."""
    params = [Param(CALIBRATE, False, kind="bool", description="projection outputs: show the calibration grid and "
                    "numbered handles (key c); arrows move the selected handle, tab the next output, 1-4 a corner")]
    for spec in outputs.outputs:
        for path, r, c in point_paths(spec):
            params.append(Param(path, tuple(spec.mesh_array[r, c]), *POINT_RANGE, kind="point2d",
                                description=f"output {spec.name}: where this point of the picture lands "
                                            "(0..1 of the output, y down); written back to the outputs file"))
        for side in SIDES:
            params.append(Param(f"/output/{spec.name}/blend/{side}", spec.blend[side].width, 0.0, 0.5,
                                description=f"output {spec.name}: soft edge on the {side}, a share of its picture "
                                            "(0: hard); its gamma and curve stay the file's"))
        params.append(Param(f"/output/{spec.name}/brightness", spec.brightness, 0.0, 4.0,
                            description=f"output {spec.name}: brightness trim"))
    return params


def values_of(spec: OutputSpec) -> dict[str, Value]:
    m = spec.mesh_array
    out: dict[str, Value] = {path: (float(m[r, c, 0]), float(m[r, c, 1])) for path, r, c in point_paths(spec)}
    for side in SIDES:
        out[f"/output/{spec.name}/blend/{side}"] = spec.blend[side].width
    out[f"/output/{spec.name}/brightness"] = spec.brightness
    return out


def spec_from(spec: OutputSpec, values) -> tuple[OutputSpec, str | None]:
    """The output with its points, blend widths and brightness from `values` (a registry snapshot), and why not if
    the new points
    fold the picture over (then the spec comes back unchanged)."""
    m = spec.mesh_array.copy()
    for path, r, c in point_paths(spec):
        v = values.get(path)
        if v is not None:
            m[r, c] = v
    b = float(values.get(f"/output/{spec.name}/brightness", spec.brightness))
    blend = {side: replace(spec.blend[side], width=float(values.get(f"/output/{spec.name}/blend/{side}",
                                                                     spec.blend[side].width)))
             for side in SIDES}
    if np.array_equal(m, spec.mesh_array) and b == spec.brightness and blend == dict(spec.blend):
        return spec, None
    try:
        why = mesh_problem(m)
    except GeometryError as exc:
        why = str(exc)
    if why:
        return spec, f"output {spec.name!r}: that move would fold the picture ({why}); not taken"
    mesh = tuple(tuple((float(x), float(y)) for x, y in row) for row in m)
    return replace(spec, mesh=mesh, brightness=b, blend=MappingProxyType(blend)), None


# -- writing back ----------------------------------------------------------------------------

def _fmt(v: float) -> str:
    return f"{round(float(v), 5):g}"


def _geometry_line(spec: OutputSpec) -> str:
    m = spec.mesh_array
    if spec.is_corner_pin:
        return "corners = [" + ", ".join(f"[{_fmt(x)}, {_fmt(y)}]" for x, y in spec.corners) + "]"
    rows = ",\n    ".join("[" + ", ".join(f"[{_fmt(x)}, {_fmt(y)}]" for x, y in row) + "]" for row in m)
    return f"mesh = [\n    {rows},\n]"


def _blend_line(spec: OutputSpec) -> str | None:
    """The blend table as the file would say it: widths, and gamma/power beside them where every side shares them."""
    sides = [(s, spec.blend[s]) for s in SIDES if spec.blend[s].width > 0]
    if not sides:
        return None
    gammas = {b.gamma for _, b in sides}
    powers = {b.power for _, b in sides}
    if len(gammas) == 1 and len(powers) == 1:
        parts = [f"{s} = {_fmt(b.width)}" for s, b in sides] + [f"gamma = {_fmt(gammas.pop())}"]
        if powers != {2.0}:
            parts.append(f"power = {_fmt(powers.pop())}")
    else:
        parts = [f"{s} = {{ width = {_fmt(b.width)}, gamma = {_fmt(b.gamma)}, power = {_fmt(b.power)} }}"
                 for s, b in sides]
    return "blend = { " + ", ".join(parts) + " }"


def _value_span(lines: list[str], start: int) -> int:
    """The index after the last line of the key = value that starts on lines[start] (arrays may span lines)."""
    depth, k = 0, start
    while k < len(lines):
        body = lines[k].split("#", 1)[0]
        depth += body.count("[") - body.count("]")
        k += 1
        if depth <= 0:
            return k
    return k


def rewrite(text: str, old: OutputSpec | None, spec: OutputSpec) -> str:
    """The outputs file's text with those of this output's points, blend and brightness that differ from `old` (what
    the text says of it; None: all of them) replaced (or added after its name); every other line, comments
    included, as it was. Text only: no parse, no disk."""
    changed = {"corners|mesh": old is None or not np.array_equal(old.mesh_array, spec.mesh_array),
               "blend": old is None or dict(old.blend) != dict(spec.blend),
               "brightness": old is None or old.brightness != spec.brightness}
    lines = text.split("\n")
    headers = [n - 1 for n in output_headers(text)]
    for n, h in enumerate(headers):
        end = headers[n + 1] if n + 1 < len(headers) else len(lines)
        if not any(re.match(rf'^\s*name\s*=\s*["\']{re.escape(spec.name)}["\']', lines[i]) for i in range(h, end)):
            continue
        block = lines[h:end]
        for key, new in (("corners|mesh", _geometry_line(spec)), ("blend", _blend_line(spec)),
                         ("brightness", f"brightness = {_fmt(spec.brightness)}")):
            if not changed[key]:
                continue
            at = next((i for i, line in enumerate(block) if re.match(rf"^\s*({key})\s*=", line)), None)
            if new is None:                          # no blend left: drop the line
                if at is not None:
                    del block[at:_value_span(block, at)]
                continue
            if at is None:
                if key == "brightness" and spec.brightness == 1.0:
                    continue
                name_at = next(i for i, line in enumerate(block) if re.match(r"^\s*name\s*=", line))
                block[name_at + 1:name_at + 1] = new.split("\n")
            else:
                comment = ""
                first = block[at]
                if "#" in first and _value_span(block, at) == at + 1:
                    comment = "  #" + first.split("#", 1)[1]
                block[at:_value_span(block, at)] = (new + comment).split("\n")
        return "\n".join(lines[:h] + block + lines[end:])
    raise KeyError(spec.name)


# -- handles -----------------------------------------------------------------------------------

def overlay(spec: OutputSpec, size_px: tuple[int, int], selected: int | None, active: bool) -> np.ndarray:
    """(H, W, 4) uint8 in output space: a ring and the number of every point (the selected one filled), and the
    output's name; `active`: this is the output the keys move."""
    w, h = size_px
    img = np.zeros((h, w, 4), np.uint8)
    rgb = img[:, :, :3]
    scale = max(2, min(w, h) // 240)            # handles and numbers big enough to find on a projector
    paths = point_paths(spec)
    m = spec.mesh_array
    r_px = 10 * scale
    for k, (_, r, c) in enumerate(paths):
        x, y = m[r, c, 0] * w, m[r, c, 1] * h
        x0, x1 = int(max(0, x - r_px - 2)), int(min(w, x + r_px + 3))
        y0, y1 = int(max(0, y - r_px - 2)), int(min(h, y + r_px + 3))
        if x0 >= x1 or y0 >= y1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        d = np.hypot(xx + 0.5 - x, yy + 0.5 - y)
        colour = (255, 200, 0) if active and k == selected else (0, 220, 255)
        ring = (np.abs(d - r_px) < 1.5 * scale) | ((d < r_px) & (k == selected))
        img[y0:y1, x0:x1][ring] = (*colour, 255)
        label = str(k + 1) if spec.is_corner_pin else f"{r + 1},{c + 1}"
        tx = int(min(max(x + r_px + 2, 0), w - 6 * scale * len(label)))
        ty = int(min(max(y + r_px + 2, 0), h - 8 * scale))
        stamp_text(rgb, label, tx, ty, scale, colour)
    stamp_text(rgb, spec.name + (" *" if active else ""), 12 * scale, h // 2, 2 * scale, (255, 255, 255))
    img[:, :, 3] = np.where(rgb.any(axis=2), 255, img[:, :, 3])
    return img


class Calibration:
    """Which output and point the keys move; turns keys and mouse drags into Changes of the point params, so they
    reach the show the way OSC does (and a session records them)."""

    def __init__(self):
        self.output = 0
        self.point = 0
        self._drag: tuple[int, int] | None = None     # (output, point) held by the mouse
        self._pending: dict[str, tuple[float, float]] = {}   # moves not yet through the registry: keys add up

    def settled(self) -> None:
        """The registry has taken every move so far (call once a frame, after the changes are drained)."""
        self._pending.clear()

    def key(self, key: str, specs: list[OutputSpec], sizes: list[tuple[int, int]]) -> Change | None | bool:
        """A Change for an arrow key, True for a key that only changed the selection, None for a key it does not
        use (the show handles that one as usual)."""
        if not specs:
            return None
        if key.endswith(":repeat"):                 # a held key: only the arrows go on moving
            key = key.removesuffix(":repeat")
            if key.split("+")[-1] not in _ARROWS:
                return None
        self.output %= len(specs)
        spec = specs[self.output]
        paths = point_paths(spec)
        if key in ("tab", "shift+tab"):
            self.output = (self.output + (1 if key == "tab" else -1)) % len(specs)
            self.point = min(self.point, len(point_paths(specs[self.output])) - 1)
            return True
        if key.isdigit() and 1 <= int(key) <= min(9, len(paths)):
            self.point = int(key) - 1
            return True
        if key in ("page_up", "page_down"):
            self.point = (self.point + (1 if key == "page_down" else -1)) % len(paths)
            return True
        for mod, step in STEP_PX.items():
            arrow = key[len(mod):] if key.startswith(mod) else None
            if arrow in _ARROWS:
                path, r, c = paths[self.point % len(paths)]
                w, h = sizes[self.output]
                dx, dy = _ARROWS[arrow]
                x, y = self._pending.get(path, spec.mesh_array[r, c])
                self._pending[path] = (float(x + dx * step / w), float(y + dy * step / h))
                return Change(path, self._pending[path], "calibration")
        return None

    def press(self, output: int, x_px: float, y_px: float, specs: list[OutputSpec], sizes: list[tuple[int, int]]) -> bool:
        """A mouse press on an output window: takes the nearest handle within PICK_PX. True if it took one."""
        spec, (w, h) = specs[output], sizes[output]
        m = spec.mesh_array
        best = min(((np.hypot(m[r, c, 0] * w - x_px, m[r, c, 1] * h - y_px), k)
                    for k, (_, r, c) in enumerate(point_paths(spec))), default=None)
        if best is None or best[0] > PICK_PX:
            return False
        self.output, self.point = output, best[1]
        self._drag = (output, best[1])
        return True

    def move(self, output: int, x_px: float, y_px: float, specs: list[OutputSpec],
             sizes: list[tuple[int, int]]) -> Change | None:
        if self._drag is None or self._drag[0] != output:
            return None
        path = point_paths(specs[output])[self._drag[1]][0]
        w, h = sizes[output]
        return Change(path, (x_px / w, y_px / h), "calibration")

    def release(self) -> None:
        self._drag = None
