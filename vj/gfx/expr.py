"""A tiny safe arithmetic evaluator for ISF pass sizes ("floor($WIDTH/2)"), built on `ast`, never `eval`."""

from __future__ import annotations

import ast
import math
import re
from typing import Callable, Mapping

MAX_EXPRESSION_CHARS = 256

_FUNCTIONS: dict[str, tuple[Callable[..., float], int, int]] = {
    # name: (function, min args, max args)
    "floor": (math.floor, 1, 1),
    "ceil": (math.ceil, 1, 1),
    "round": (lambda x: math.floor(x + 0.5), 1, 1),   # DDMathParser rounds half up, not to even
    "trunc": (math.trunc, 1, 1),
    "abs": (abs, 1, 1),
    "sqrt": (math.sqrt, 1, 1),
    "pow": (math.pow, 2, 2),
    "min": (min, 1, 16),
    "max": (max, 1, 16),
    "log": (math.log, 1, 1),
    "log2": (math.log2, 1, 1),
    "exp": (math.exp, 1, 1),
    "sin": (math.sin, 1, 1),
    "cos": (math.cos, 1, 1),
    "clamp": (lambda x, lo, hi: min(max(x, lo), hi), 3, 3),
}
_CONSTANTS = {"pi": math.pi, "e": math.e}
_BINOPS: dict[type, Callable[[float, float], float]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Mod: lambda a, b: math.fmod(a, b),
}
_VAR_RE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


class ExpressionError(ValueError):
    """An expression that is not plain arithmetic over the allowed names and functions."""


class Expression:
    """A checked arithmetic expression. `names` are the variables it reads (without the `$`)."""

    def __init__(self, text: str, allowed_names: set[str] | frozenset[str]):
        if not isinstance(text, str):
            raise ExpressionError(f"expected an expression string, got {text!r}")
        if len(text) > MAX_EXPRESSION_CHARS:
            raise ExpressionError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
        self.text = text
        # `$NAME` is the ISF variable syntax; plain `NAME` is accepted too for the same names.
        source = _VAR_RE.sub(lambda m: m.group(1), text)
        if "$" in source:
            raise ExpressionError(f"stray '$' in {text!r}")
        try:
            tree = ast.parse(source.strip(), mode="eval")
        except SyntaxError as exc:
            raise ExpressionError(f"cannot parse {text!r}: {exc.msg}") from None
        except (ValueError, RecursionError, MemoryError) as exc:
            raise ExpressionError(f"cannot parse {text!r}: {exc}") from None
        self.names: set[str] = set()
        self._check(tree.body, allowed_names)
        self._tree = tree.body

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Expression) and other.text == self.text and other.names == self.names

    def __hash__(self) -> int:
        return hash(self.text)

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"

    def _check(self, node: ast.AST, allowed: set[str] | frozenset[str]) -> None:
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                raise ExpressionError(f"only numbers are allowed, not {node.value!r} in {self.text!r}")
        elif isinstance(node, ast.Name):
            if node.id not in allowed and node.id not in _CONSTANTS:
                raise ExpressionError(f"unknown name {node.id!r} in {self.text!r}")
            if node.id in allowed:
                self.names.add(node.id)
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _BINOPS:
                raise ExpressionError(f"operator {type(node.op).__name__} not allowed in {self.text!r}")
            self._check(node.left, allowed)
            self._check(node.right, allowed)
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, (ast.USub, ast.UAdd)):
                raise ExpressionError(f"operator {type(node.op).__name__} not allowed in {self.text!r}")
            self._check(node.operand, allowed)
        elif isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
                what = node.func.id if isinstance(node.func, ast.Name) else type(node.func).__name__
                raise ExpressionError(f"function {what!r} not allowed in {self.text!r}")
            if node.keywords:
                raise ExpressionError(f"keyword arguments not allowed in {self.text!r}")
            _, lo, hi = _FUNCTIONS[node.func.id]
            if not lo <= len(node.args) <= hi:
                raise ExpressionError(f"{node.func.id}() takes {lo}..{hi} arguments in {self.text!r}")
            for arg in node.args:
                self._check(arg, allowed)
        else:
            raise ExpressionError(f"{type(node).__name__} not allowed in {self.text!r}")

    def evaluate(self, variables: Mapping[str, float]) -> float:
        """The value for these variables; raises ExpressionError on maths errors (division by zero...)."""
        try:
            value = float(self._eval(self._tree, variables))
        except (ArithmeticError, ValueError, TypeError) as exc:
            raise ExpressionError(f"{self.text!r}: {exc}") from None
        if not math.isfinite(value):
            raise ExpressionError(f"{self.text!r} is not finite")
        return value

    def _eval(self, node: ast.AST, variables: Mapping[str, float]) -> float:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id in self.names:
                return float(variables[node.id])
            return _CONSTANTS[node.id]
        if isinstance(node, ast.BinOp):
            return _BINOPS[type(node.op)](self._eval(node.left, variables), self._eval(node.right, variables))
        if isinstance(node, ast.UnaryOp):
            v = self._eval(node.operand, variables)
            return -v if isinstance(node.op, ast.USub) else v
        assert isinstance(node, ast.Call)
        return _FUNCTIONS[node.func.id][0](*(self._eval(a, variables) for a in node.args))


def evaluate(text: str, variables: Mapping[str, float]) -> float:
    """Check and evaluate `text` once, with `variables` as the only allowed names."""
    return Expression(text, frozenset(variables)).evaluate(variables)
