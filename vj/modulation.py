"""Routes from audio features to params: base + sum(amount * curve(source)), clamped, smoothed in seconds."""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Iterable, Mapping

from vj.audio.features import SOURCE_NAMES, Features
from vj.clock import smooth
from vj.params import Registry, Value

CURVES: dict[str, Callable[[float], float]] = {
    "linear": lambda x: x,
    "square": lambda x: x * x,
    "cube": lambda x: x * x * x,
    "sqrt": lambda x: math.sqrt(max(x, 0.0)),
    "smooth": lambda x: (lambda c: c * c * (3.0 - 2.0 * c))(min(max(x, 0.0), 1.0)),
    "invert": lambda x: 1.0 - x,
    "gate": lambda x: 1.0 if x >= 0.5 else 0.0,
}


class RouteError(ValueError):
    """A route names an unknown source, target or curve."""


@dataclass(frozen=True)
class Route:
    """`target` moves by `amount` (in the target's own units) times `curve(source)`."""

    source: str
    target: str
    amount: float
    curve: str = "linear"

    def validate(self, registry: Registry) -> None:
        if self.source not in SOURCE_NAMES:
            raise RouteError(f"unknown source {self.source!r}; known: {', '.join(SOURCE_NAMES)}")
        if self.target not in registry:
            raise RouteError(f"unknown target {self.target!r}")
        kind = registry.param(self.target).kind
        if kind not in ("float", "int", "enum", "bool"):
            raise RouteError(f"target {self.target!r} is a {kind}; routes drive numbers only")
        if self.curve not in CURVES:
            raise RouteError(f"unknown curve {self.curve!r}; known: {', '.join(CURVES)}")
        if not math.isfinite(self.amount):
            raise RouteError(f"amount of {self.source} -> {self.target} is not a finite number")


@dataclass(frozen=True)
class ParamFrame:
    """The effective value of every param for one frame: what shaders and the model read."""

    values: Mapping[str, Value]
    t_s: float = 0.0
    dt_s: float = 0.0
    frame_index: int = 0

    def __getitem__(self, path: str) -> Value:
        return self.values[path]

    def get(self, path: str, default: Value = None) -> Value:
        return self.values.get(path, default)


class Modulator:
    """Evaluates the routes once per frame; only the main thread calls it."""

    def __init__(self, registry: Registry):
        self.registry = registry
        self.routes: tuple[Route, ...] = ()
        self._state: dict[str, float] = {}

    def set_routes(self, routes: Iterable[Route]) -> None:
        routes = tuple(routes)
        for r in routes:
            r.validate(self.registry)
        self.routes = routes

    def reset(self) -> None:
        self._state.clear()

    def evaluate(self, features: Features, dt_s: float, t_s: float = 0.0, frame_index: int = 0) -> ParamFrame:
        base = self.registry.values()
        sources = features.sources()
        offsets: dict[str, float] = {}
        for r in self.routes:
            if r.target in base:
                offsets[r.target] = offsets.get(r.target, 0.0) + r.amount * CURVES[r.curve](sources[r.source])
        out: dict[str, Value] = dict(base)
        for p in self.registry.params():
            if not p.scalar or p.kind == "event":
                continue
            path = p.path
            if p.kind == "bool":
                if path in offsets:
                    out[path] = (float(base[path]) + offsets[path]) >= 0.5
                continue
            target = min(max(float(base[path]) + offsets.get(path, 0.0), p.min), p.max)
            if p.smoothing_s > 0.0:
                # A param seen for the first time starts from its base value, so a route eases in.
                cur = self._state.get(path, float(base[path]))
                target = smooth(cur, target, dt_s, p.smoothing_s)
                self._state[path] = target
            out[path] = int(round(target)) if p.kind in ("int", "enum") else target
        return ParamFrame(MappingProxyType(out), t_s, dt_s, frame_index)
