"""`vj shaders test DIR`: compile and render every ISF file in a folder with default inputs, report PASS/FAIL."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from vj.audio.features import Features
from vj.gfx.blit import read_rgb
from vj.gfx.context import GLUnavailable, create_headless_context, gl_errors, release_context
from vj.gfx.isf import ISFError, effect_name, load_isf


@dataclass(frozen=True)
class ShaderTestResult:
    name: str
    ok: bool
    error: str | None = None


def test_pattern(width: int, height: int) -> np.ndarray:
    """A colour test image (H, W, 3) uint8: colour bars, a grey ramp, a hue sweep and a white ring."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    u, v = (x + 0.5) / width, (y + 0.5) / height
    bars = np.array([[1, 1, 1], [1, 1, 0], [0, 1, 1], [0, 1, 0], [1, 0, 1], [1, 0, 0], [0, 0, 1], [0, 0, 0]],
                    dtype=np.float32)
    img = bars[np.minimum((u * 8).astype(int), 7)]                       # top half: bars
    ramp = np.repeat(u[..., None], 3, axis=2)
    hue = u[..., None] * 6.0 + np.array([0.0, 4.0, 2.0], dtype=np.float32)
    sweep = np.clip(np.abs(np.mod(hue, 6.0) - 3.0) - 1.0, 0.0, 1.0)
    img = np.where((v > 0.5)[..., None], np.where((v > 0.75)[..., None], sweep, ramp), img)
    aspect = width / height
    r = np.hypot((u - 0.5) * aspect, v - 0.5)
    ring = np.abs(r - 0.3) < 0.02
    img[ring] = 1.0
    return (img * 255.0 + 0.5).astype(np.uint8)


def _test_features() -> Features:
    """Non-silent features so audio/audioFFT inputs carry something."""
    t = np.arange(512, dtype=np.float32) / 48000.0
    wave = 0.5 * np.sin(2 * np.pi * 220.0 * t)
    spectrum = np.linspace(1.0, 0.0, 48, dtype=np.float32)
    return Features(level=0.5, bass=0.6, mid=0.4, high=0.2, silence=0.0, spectrum=spectrum, waveform=wave)


def test_shader(ctx, path: Path, frames: int = 3, size: tuple[int, int] = (256, 144),
                source=None) -> ShaderTestResult:
    """Compile and render one ISF file; GL or compile errors make it fail."""
    from vj.gfx.chain import Chain
    from vj.gfx.upload import TextureUploader

    name = effect_name(path)
    try:
        shader = load_isf(path, name)
    except ISFError as exc:
        return ShaderTestResult(name, False, str(exc))
    except OSError as exc:
        return ShaderTestResult(name, False, f"cannot read: {exc}")
    uploader = None
    if source is None:
        uploader = TextureUploader(ctx)
        source = uploader.upload(test_pattern(*size))
    chain = Chain(ctx, size[0], size[1])
    try:
        chain.set_effects([(name, shader)])
        if chain.errors:
            return ShaderTestResult(name, False, chain.errors[name])
        frame: dict = {p.path: p.default for p in shader.params(f"/fx/{name}")}
        events = [p.path for p in shader.params(f"/fx/{name}") if p.kind == "event"]
        features = _test_features()
        out = None
        for i in range(frames):
            for e in events:               # fire events once, on the second frame
                frame[e] = i == 1
            out = chain.render(source, frame, features, time_s=i / 30.0, dt_s=1.0 / 30.0)
        if chain.errors:
            return ShaderTestResult(name, False, chain.errors[name])
        errors = gl_errors(ctx)
        if errors:
            return ShaderTestResult(name, False, f"GL error while rendering: {', '.join(errors)}")
        if out is not None:
            read_rgb(out)
        effect = chain.effect(name)
        warnings = effect.warnings if effect is not None else []
        return ShaderTestResult(name, True, "; ".join(warnings) or None)
    finally:
        chain.release()
        if uploader is not None:
            uploader.release()


test_shader.__test__ = False  # not a pytest test, despite the name


def test_folder(path: str | Path, frames: int = 3, size: tuple[int, int] = (256, 144),
                ctx=None) -> list[ShaderTestResult]:
    """Results for every .fs file in `path`, sorted by name. Raises GLUnavailable without GL.

    Without `ctx` it makes (and releases) its own headless context, which takes over as the current
    GL context: in a process that already has one, pass it.
    """
    from vj.gfx.upload import TextureUploader

    folder = Path(path)
    own = ctx is None
    if own:
        ctx = create_headless_context()
    try:
        uploader = TextureUploader(ctx)
        source = uploader.upload(test_pattern(*size))
        results = [test_shader(ctx, p, frames, size, source) for p in sorted(folder.glob("*.fs"))]
        uploader.release()
        return results
    finally:
        if own:
            release_context(ctx)


test_folder.__test__ = False


def main(path: str | Path = "shaders", frames: int = 3, size: tuple[int, int] = (256, 144),
         out: Callable[[str], None] = print, ctx=None) -> int:
    """Print `PASS name` / `FAIL name: error` per shader; exit code 0 when all pass, 1 otherwise."""
    folder = Path(path)
    if not folder.is_dir():
        out(f"FAIL {folder}: not a folder")
        return 1
    try:
        results = test_folder(folder, frames, size, ctx)
    except GLUnavailable as exc:
        out(f"FAIL {folder}: {exc}")
        return 1
    if not results:
        out(f"FAIL {folder}: no .fs files")
        return 1
    for r in results:
        if r.ok:
            out(f"PASS {r.name}" + (f" (warning: {r.error})" if r.error else ""))
        else:
            first, *rest = r.error.splitlines() if r.error else ["unknown error"]
            out(f"FAIL {r.name}: {first}")
            for line in rest:
                out(f"    {line}")
    failed = sum(not r.ok for r in results)
    out(f"{len(results) - failed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    import sys
    raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else "shaders"))
