"""Param, Registry, Change: the single namespace every control input, preset and shader shares."""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Iterable, Mapping

log = logging.getLogger(__name__)

KINDS = ("float", "int", "bool", "color", "point2d", "event", "enum")
_PATH_RE = re.compile(r"^(/[A-Za-z0-9_.\-]+)+$")

Value = Any  # float | int | bool | tuple[float, ...]


@dataclass(frozen=True)
class Param:
    """One controllable value. `path` is its OSC address, preset key and MIDI target alike."""

    path: str
    default: Value
    min: float = 0.0
    max: float = 1.0
    kind: str = "float"
    unit: str = ""
    smoothing_s: float = 0.0          # dt-correct lag applied after modulation
    description: str = ""
    labels: tuple[str, ...] = ()      # enum/int: names of the values min..max

    def __post_init__(self):
        if not _PATH_RE.match(self.path):
            raise ValueError(f"bad param path {self.path!r}: use /words/separated/by/slashes")
        if self.kind not in KINDS:
            raise ValueError(f"{self.path}: unknown kind {self.kind!r}")
        if self.kind in ("float", "int", "enum") and not self.min <= self.max:
            raise ValueError(f"{self.path}: min {self.min} > max {self.max}")

    def coerce(self, value: Value) -> Value:
        """Return `value` converted and clamped to this param, or raise ValueError saying why."""
        k = self.kind
        if k in ("bool", "event"):
            if isinstance(value, str):
                low = value.strip().lower()
                if low in ("1", "true", "on", "yes"):
                    return True
                if low in ("0", "false", "off", "no"):
                    return False
                raise ValueError(f"{self.path}: expected a boolean, got {value!r}")
            if isinstance(value, (bool, int, float)) and math.isfinite(float(value)):
                return bool(value)
            raise ValueError(f"{self.path}: expected a boolean, got {value!r}")
        if k in ("color", "point2d"):
            n = 4 if k == "color" else 2
            if not isinstance(value, (list, tuple)):
                raise ValueError(f"{self.path}: expected {n} numbers, got {value!r}")
            vals = [float(v) for v in value if isinstance(v, (int, float)) and not isinstance(v, bool)]
            if k == "color" and len(vals) == 3 and len(value) == 3:
                vals.append(1.0)
            if len(vals) != n or len(value) not in (n, 3 if k == "color" else n):
                raise ValueError(f"{self.path}: expected {n} numbers, got {value!r}")
            if not all(math.isfinite(v) for v in vals):
                raise ValueError(f"{self.path}: not a finite number in {value!r}")
            if k == "color":
                return tuple(min(max(v, 0.0), 1.0) for v in vals)
            return tuple(min(max(v, self.min), self.max) for v in vals)
        if k == "enum" and isinstance(value, str) and value in self.labels:
            return int(self.min) + self.labels.index(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{self.path}: expected a number, got {value!r}")
        v = float(value)
        if not math.isfinite(v):
            raise ValueError(f"{self.path}: not a finite number: {value!r}")
        v = min(max(v, self.min), self.max)
        return int(round(v)) if k in ("int", "enum") else v

    def normalise(self, value: Value) -> float:
        """Map a scalar value to 0..1 across the range (for faders)."""
        span = self.max - self.min
        return 0.0 if span <= 0 else (float(value) - self.min) / span

    def denormalise(self, x: float) -> Value:
        return self.coerce(self.min + float(x) * (self.max - self.min))

    @property
    def scalar(self) -> bool:
        return self.kind in ("float", "int", "enum", "bool", "event")


@dataclass(frozen=True)
class Change:
    """A request to set one param, produced by any control input and applied on the main thread."""

    path: str
    value: Value
    source: str = ""                  # "osc", "midi", "preset", "key", ...


@dataclass
class Registry:
    """Declared params and their base values. Only the main thread writes to it."""

    _params: dict[str, Param] = field(default_factory=dict)
    _values: dict[str, Value] = field(default_factory=dict)
    _reported: set[str] = field(default_factory=set)
    rejected: int = 0
    version: int = 0                  # grows with every declare, removal and value change (for observers)

    def declare(self, param: Param) -> Param:
        """Add a param; re-declaring the same path keeps the current value if it still fits."""
        old = self._params.get(param.path)
        self._params[param.path] = param
        self.version += 1
        if old is not None and param.path in self._values:
            try:
                self._values[param.path] = param.coerce(self._values[param.path])
                return param
            except ValueError:
                pass
        self._values[param.path] = param.coerce(param.default)
        return param

    def declare_all(self, params: Iterable[Param]) -> None:
        for p in params:
            self.declare(p)

    def remove_prefix(self, prefix: str) -> None:
        for path in [p for p in self._params if p.startswith(prefix)]:
            del self._params[path]
            self._values.pop(path, None)
            self.version += 1

    def __contains__(self, path: str) -> bool:
        return path in self._params

    def __len__(self) -> int:
        return len(self._params)

    def param(self, path: str) -> Param:
        return self._params[path]

    def params(self, prefix: str = "/") -> list[Param]:
        return [p for path, p in sorted(self._params.items()) if path.startswith(prefix)]

    def get(self, path: str) -> Value:
        return self._values[path]

    def values(self) -> Mapping[str, Value]:
        """A read-only snapshot of the base values."""
        return MappingProxyType(dict(self._values))

    def set(self, path: str, value: Value, source: str = "") -> bool:
        """Set a base value, clamped to range. Unknown paths and bad values are reported once and ignored."""
        p = self._params.get(path)
        if p is None:
            self._report(f"unknown:{path}", f"unknown param {path!r} (from {source or 'somewhere'}): ignored")
            return False
        try:
            v = p.coerce(value)
        except (ValueError, TypeError) as exc:
            self._report(f"bad:{path}", f"{exc} (from {source or 'somewhere'}): ignored")
            return False
        if self._values.get(path) != v:
            self._values[path] = v
            self.version += 1
        return True

    def apply(self, change: Change) -> bool:
        return self.set(change.path, change.value, change.source)

    def reset(self, prefix: str = "/") -> None:
        for path, p in self._params.items():
            if path.startswith(prefix):
                self._values[path] = p.coerce(p.default)
                self.version += 1

    def _report(self, key: str, message: str) -> None:
        self.rejected += 1
        if key not in self._reported:
            self._reported.add(key)
            log.warning(message)
