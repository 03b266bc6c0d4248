"""Model frames to GL textures, reusing the texture while the size stays the same: numpy images from host
memory, or (CUDA only) 8-bit RGBA frames still on the GPU through CUDA-GL interop (vj.gfx.cudagl)."""

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
        self._interop = None                         # vj.gfx.cudagl.CudaGLTexture on self.texture, CUDA only

    def upload(self, image, gl_rgba: bool = False) -> moderngl.Texture:
        """`image`: (H, W, 3) float 0..1 or uint8, row 0 at the top; or with `gl_rgba`, (H, W, 4) uint8 RGBA
        with row 0 at the bottom (vj.models.worker.gl_rgba8), as a host array or a CUDA tensor."""
        if gl_rgba:
            return self._upload_gl_rgba(image)
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
        self._ensure((w, h, dtype), np_dtype)
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

    def _upload_gl_rgba(self, image) -> moderngl.Texture:
        h, w, c = image.shape
        if c != 4 or str(image.dtype) not in ("uint8", "torch.uint8"):
            raise ValueError(f"expected (H, W, 4) uint8 RGBA, got {tuple(image.shape)} {image.dtype}")
        self._ensure((w, h, "f1"), np.uint8)
        if isinstance(image, np.ndarray):
            self.texture.write(np.ascontiguousarray(image))
        else:                                     # a CUDA tensor: device to device, no host copy (CUDA only)
            if self._interop is None or self._interop.texture is not self.texture:
                from vj.gfx.cudagl import CudaGLTexture
                if self._interop is not None:
                    self._interop.release()
                self._interop = CudaGLTexture(self.texture)
            self._interop.write(image)
        return self.texture

    def _ensure(self, key: tuple, np_dtype) -> None:
        """The (w, h, dtype) RGBA texture and its staging array, made anew when the key changes."""
        if key == self._key:
            return
        w, h, dtype = key
        if self._interop is not None:
            self._interop.release()
            self._interop = None
        if self.texture is not None:
            self.texture.release()
        self.texture = self.ctx.texture((w, h), 4, dtype=dtype)
        self.texture.filter = (moderngl.LINEAR, moderngl.LINEAR)
        self.texture.repeat_x = False
        self.texture.repeat_y = False
        self._staging = np.empty((h, w, 4), dtype=np_dtype)
        self._key = key

    def release(self) -> None:
        if self._interop is not None:
            self._interop.release()
            self._interop = None
        if self.texture is not None:
            self.texture.release()
            self.texture = None
            self._staging = None
            self._key = None
