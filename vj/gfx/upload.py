"""Model frames (numpy images) to GL textures, reusing the texture while the size stays the same."""

from __future__ import annotations

import moderngl
import numpy as np


class TextureUploader:
    """Uploads (H, W, 3) float32 0..1 or uint8 images, row 0 at the top, into one reused RGBA texture.

    The rows are flipped on the way in so that GL's t=0 (ISF's isf_FragNormCoord.y = 0) is the bottom
    of the picture. Data goes through a reused RGBA staging array: llvmpipe samples RGBA textures
    faster than RGB ones (RGB32F costs ~40% more per tap). 8-bit data uses dtype 'f1' (normalised):
    'u1' would be an integer texture that samples as 0 through a float sampler2D.
    """

    def __init__(self, ctx: moderngl.Context):
        self.ctx = ctx
        self.texture: moderngl.Texture | None = None
        self._staging: np.ndarray | None = None      # (H, W, 4), flipped, alpha preset
        self._key: tuple | None = None

    def upload(self, image: np.ndarray) -> moderngl.Texture:
        a = np.asarray(image)
        if a.ndim != 3 or a.shape[2] not in (3, 4) or a.shape[0] < 1 or a.shape[1] < 1:
            raise ValueError(f"expected an (H, W, 3) image, got shape {a.shape}")  # (H, W, 3|4)
        if a.dtype == np.uint8:
            dtype, np_dtype, opaque = "f1", np.uint8, 255
        elif a.dtype in (np.float32, np.float64, np.float16):
            dtype, np_dtype, opaque = "f4", np.float32, 1.0
        else:
            raise ValueError(f"expected float32 0..1 or uint8 pixels, got {a.dtype}")
        h, w, c = a.shape
        key = (w, h, dtype)
        if key != self._key:
            if self.texture is not None:
                self.texture.release()
            self.texture = self.ctx.texture((w, h), 4, dtype=dtype)
            self.texture.filter = (moderngl.LINEAR, moderngl.LINEAR)
            self.texture.repeat_x = False
            self.texture.repeat_y = False
            self._staging = np.empty((h, w, 4), dtype=np_dtype)
            self._key = key
        staging = self._staging
        flipped = a[::-1]
        if c == 3:
            staging[:, :, 3] = opaque
        if dtype == "f1":
            staging[:, :, :c] = flipped
        else:
            # A model overshooting 1.0 would blow out bloom and feedback: clip on the way in.
            np.clip(flipped, 0.0, 1.0, out=staging[:, :, :c])
        self.texture.write(staging)
        return self.texture

    def release(self) -> None:
        if self.texture is not None:
            self.texture.release()
            self.texture = None
            self._staging = None
            self._key = None
