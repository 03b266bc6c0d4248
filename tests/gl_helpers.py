"""Shared GL test helpers: a real Mesa EGL context checked for GL errors around each test, render shortcuts.

In a test module:
    from gl_helpers import gl  # noqa: F401  (the fixture)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vj.gfx.chain import Chain, read_rgb
from vj.gfx.context import GLUnavailable, create_headless_context
from vj.gfx.isf import ISFShader, load_isf, parse_isf
from vj.gfx.upload import TextureUploader

SHADERS = Path(__file__).resolve().parent.parent / "shaders"
GOLDEN = Path(__file__).resolve().parent / "golden"

_ctx = None


def shared_context():
    """One context for the whole session: creating one costs ~0.3 s."""
    global _ctx
    if _ctx is None:
        try:
            _ctx = create_headless_context()
        except GLUnavailable as exc:
            pytest.skip(str(exc))
    return _ctx


@pytest.fixture
def gl():
    ctx = shared_context()
    # Other test modules make contexts of their own; moderngl only talks to the current one.
    with ctx:
        assert ctx.error == "GL_NO_ERROR", "a GL error was left pending before this test"
        yield ctx
        assert ctx.error == "GL_NO_ERROR", "this test left a GL error pending"


def shipped(name: str) -> ISFShader:
    return load_isf(SHADERS / f"{name}.fs")


def isf(body: str, header: str, name: str = "t", vertex: str | None = None) -> ISFShader:
    """An ISF shader from a JSON header (without the comment markers) and GLSL."""
    return parse_isf(f"/*{header}*/\n{body}", name, vertex_source=vertex)


def render(ctx, effects, image: np.ndarray, frames: list[dict] | dict | None = None, size=None,
           dt_s: float = 1.0 / 30.0, features=None) -> list[np.ndarray]:
    """Render `image` through `effects` [(name, shader)] once per frame dict; (H, W, 3) uint8 per frame."""
    h, w = image.shape[:2]
    size = size or (w, h)
    frames = [frames or {}] if not isinstance(frames, list) else frames
    up = TextureUploader(ctx)
    chain = Chain(ctx, *size)
    try:
        chain.set_effects(effects)
        assert not chain.errors, chain.errors
        tex = up.upload(image)
        outs = []
        for i, f in enumerate(frames):
            kw = {} if features is None else {"features": features}
            out = chain.render(tex, f, time_s=i * dt_s, dt_s=dt_s, **kw)
            outs.append(read_rgb(out))
        return outs
    finally:
        chain.release()
        up.release()


def random_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def as_float(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float64) / 255.0


def assert_close(actual: np.ndarray, expected: np.ndarray, atol: int, what: str = "image") -> None:
    """uint8 images equal within `atol` 8-bit levels; each caller derives its own.

    Copies through texel-centre fetches of integer levels are exact (atol=0): float32 puts the coordinates ~1e-6
    texel off, and llvmpipe's 8-bit filter weight only moves 1/512 texel off the centre (1e-4 texel still reads
    exact, with SSE4.1 or without).

    Rounding a float result once on each side (GL and np.round) makes them differ by one level wherever the float
    error, however small, crosses a rounding boundary: |round(x) - round(y)| < |x - y| + 1.
    """
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    diff = np.abs(actual.astype(int) - expected.astype(int))
    worst = np.unravel_index(np.argmax(diff), diff.shape)
    assert diff.max() <= atol, (f"{what}: max difference {diff.max()} at {worst} "
                                f"(got {actual[worst[:2]]}, expected {expected[worst[:2]]})")
