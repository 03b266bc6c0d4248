"""ISF `audio` and `audioFFT` input textures from a Features snapshot: width = samples, height 1, value in red."""

from __future__ import annotations

import moderngl
import numpy as np

from vj.audio.features import Features


def resample(values: np.ndarray, width: int) -> np.ndarray:
    """`values` (n,) brought to `width` samples: segment means when shrinking, linear when growing."""
    n = len(values)
    if n == width:
        return values
    if n == 0:
        return np.zeros(width, dtype=np.float32)
    if width < n:
        edges = np.linspace(0, n, width + 1).astype(np.int64)
        sums = np.add.reduceat(values, edges[:-1])
        return (sums / np.maximum(np.diff(edges), 1)).astype(np.float32)
    x = (np.arange(width, dtype=np.float32) + 0.5) / width * n - 0.5
    return np.interp(x, np.arange(n, dtype=np.float32), values).astype(np.float32)


class AudioTextures:
    """One R32F texture per (kind, width), created on first use and rewritten once per frame."""

    def __init__(self, ctx: moderngl.Context):
        self.ctx = ctx
        self._textures: dict[tuple[str, int], moderngl.Texture] = {}
        self._written: dict[tuple[str, int], int] = {}
        self._features: Features | None = None
        self._frame = 0

    def update(self, features: Features) -> None:
        """Take this frame's features; textures are written lazily when an effect asks for them."""
        self._features = features
        self._frame += 1

    def _data(self, kind: str) -> np.ndarray:
        f = self._features
        if f is None:
            return np.zeros(1, dtype=np.float32)
        if kind == "audio":
            # ISF: "each column represents a single sample of the wave, centered around 0.5"
            return 0.5 + 0.5 * np.asarray(f.waveform, dtype=np.float32)
        return np.asarray(f.spectrum, dtype=np.float32)

    def texture(self, kind: str, samples: int | None) -> moderngl.Texture:
        """The texture for an input of type `kind` ("audio"/"audioFFT"); `samples` is its MAX, if any."""
        data = self._data(kind)
        width = int(samples) if samples else max(len(data), 1)
        key = (kind, width)
        tex = self._textures.get(key)
        if tex is None:
            tex = self.ctx.texture((width, 1), 1, dtype="f4")
            tex.filter = (moderngl.LINEAR, moderngl.LINEAR)
            tex.repeat_x = False
            tex.repeat_y = False
            tex.swizzle = "RRR1"
            self._textures[key] = tex
        if self._written.get(key) != self._frame:
            tex.write(np.ascontiguousarray(resample(data, width), dtype=np.float32).tobytes())
            self._written[key] = self._frame
        return tex

    def release(self) -> None:
        for tex in self._textures.values():
            tex.release()
        self._textures.clear()
        self._written.clear()
