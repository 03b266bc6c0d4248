"""Imports point downward only (STYLE.md): walked with ast, so a stray import fails here."""

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "vj"
HEAVY = ("torch", "moderngl", "glfw")
LAYER = {"config": 0, "clock": 0, "params": 0, "audio": 1, "control": 1, "modulation": 1, "presets": 1, "video": 1,
         "models": 2, "gfx": 2, "output": 3, "engine": 4, "show": 5, "bench": 5, "timeline": 5, "session": 4,
         "replay": 5, "cli": 6, "scene": 3, "watchdog": 0, "showstate": 5, "supervisor": 6, "spare": 6}


def imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def layer_of(module: str):
    parts = module.split(".")
    return LAYER.get(parts[1]) if parts[0] == "vj" and len(parts) > 1 else None


FILES = sorted(p for p in PKG.rglob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PKG)))
def test_imports_point_downward(path):
    rel = path.relative_to(PKG)
    own = LAYER.get(rel.parts[0].removesuffix(".py"))
    if own is None:
        return
    for mod in imports(path):
        if rel.parts[0] in ("audio", "control", "video"):
            assert mod.split(".")[0] not in HEAVY, f"{rel} imports {mod}: audio/ and control/ stay light"
        other = layer_of(mod)
        if other is not None and mod.split(".")[1] != rel.parts[0].removesuffix(".py"):
            assert other <= own, f"{rel} (layer {own}) imports {mod} (layer {other})"
