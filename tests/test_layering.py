"""Imports point downward only (STYLE.md): walked with ast, so a stray import fails here."""

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "vj"
HEAVY = ("torch", "moderngl", "glfw")
LAYER = {"config": 0, "clock": 0, "params": 0, "audio": 1, "control": 1, "modulation": 1, "presets": 1, "video": 1,
         "sync": 1, "ndi": 1, "share": 1,
         "models": 2, "catalog": 2, "gfx": 2, "output": 3, "engine": 4, "chunks": 4, "show": 5, "bench": 5, "timeline": 5, "session": 4,
         "replay": 5, "cluster": 5, "cli": 6, "scene": 3, "mapping": 3, "watchdog": 0, "files": 0, "showstate": 5, "supervisor": 6, "spare": 6}


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
        if rel.parts[0] in ("audio", "control", "video", "ndi"):
            assert mod.split(".")[0] not in HEAVY, f"{rel} imports {mod}: audio/, control/, video/ and ndi/ stay light"
        other = layer_of(mod)
        if other is not None and mod.split(".")[1] != rel.parts[0].removesuffix(".py"):
            assert other <= own, f"{rel} (layer {own}) imports {mod} (layer {other})"


def _runtime_imports(path):
    """vj modules `path` imports at run time, at any depth (imports under `if TYPE_CHECKING:` left out)."""
    tree = ast.parse(path.read_text())
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for child in node.body for n in ast.walk(child)}
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("vj."))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("vj"):
            for a in node.names:      # `from vj.gfx import glsl` imports the module vj.gfx.glsl
                sub = f"{node.module}.{a.name}"
                yield sub if (PKG.parent / (sub.replace(".", "/") + ".py")).exists() else node.module


def test_no_module_imports_itself_round_a_circle():
    name = {p: ".".join(p.relative_to(PKG.parent).with_suffix("").parts).removesuffix(".__init__") for p in FILES}
    graph = {name[p]: {m for m in _runtime_imports(p) if m != name[p]} for p in FILES}
    circles = set()

    def walk(mod, trail):
        for nxt in graph.get(mod, ()):
            if nxt in trail:
                circle = trail[trail.index(nxt):]
                circles.add(" -> ".join(circle + [nxt]))
            elif len(trail) < 12:
                walk(nxt, trail + [nxt])
    for mod in graph:
        walk(mod, [mod])
    # A module may import its own package's __init__ (vj.models -> vj.models.x is the package, not a circle).
    real = sorted(c for c in circles if not all(a.startswith(b) or b.startswith(a)
                                                for a, b in zip(c.split(" -> "), c.split(" -> ")[1:])))
    assert not real, "import circles:\n" + "\n".join(real[:10])
