"""Full-screen quad helpers: draw a texture to a framebuffer, the missing-shader checker, and read-back."""

from __future__ import annotations

import moderngl
import numpy as np

# Clip-space corners of a full-screen triangle strip: (x, y) pairs, and the vertex shader that draws it.
QUAD = np.array([-1.0, -1.0, 1.0, -1.0, -1.0, 1.0, 1.0, 1.0], dtype="f4")

QUAD_VS = """#version 330 core
in vec2 VERTEXDATA;
out vec2 uv;
void main() {
    gl_Position = vec4(VERTEXDATA, 0.0, 1.0);
    uv = VERTEXDATA * 0.5 + 0.5;
}
"""
_BLIT_FS = """#version 330 core
uniform sampler2D image;
in vec2 uv;
out vec4 color;
void main() { color = vec4(texture(image, uv).rgb, 1.0); }
"""
# Magenta/black squares of `cell_px` pixels: impossible to mistake for a real effect.
_CHECKER_FS = """#version 330 core
uniform float cell_px;
in vec2 uv;
out vec4 color;
void main() {
    vec2 cell = floor(gl_FragCoord.xy / cell_px);
    float on = mod(cell.x + cell.y, 2.0);
    color = vec4(on, 0.0, on, 1.0);
}
"""
CHECKER_CELLS = 16.0    # checker squares across the width


def fit_viewport(src_w: int, src_h: int, dst_w: int, dst_h: int) -> tuple[int, int, int, int]:
    """(x, y, w, h) of the largest src-aspect rectangle centred in dst (letterbox or pillarbox)."""
    scale = min(dst_w / src_w, dst_h / src_h)
    w, h = max(1, round(src_w * scale)), max(1, round(src_h * scale))
    return ((dst_w - w) // 2, (dst_h - h) // 2, w, h)


class Blitter:
    """Draws textures onto whatever framebuffer is bound; GL objects are made once and reused."""

    def __init__(self, ctx: moderngl.Context, quad: moderngl.Buffer | None = None):
        self.ctx = ctx
        self._own_quad = quad is None
        self.quad = quad if quad is not None else ctx.buffer(QUAD.tobytes())
        self.blit_prog = ctx.program(vertex_shader=QUAD_VS, fragment_shader=_BLIT_FS)
        self.blit_prog["image"].value = 0
        self.checker_prog = ctx.program(vertex_shader=QUAD_VS, fragment_shader=_CHECKER_FS)
        self._blit_vao = ctx.vertex_array(self.blit_prog, [(self.quad, "2f", "VERTEXDATA")])
        self._checker_vao = ctx.vertex_array(self.checker_prog, [(self.quad, "2f", "VERTEXDATA")])

    def draw(self, texture: moderngl.Texture, viewport: tuple[int, int, int, int] | None = None) -> None:
        """Draw `texture` (scaled, linear filtering) into the bound framebuffer's viewport."""
        if viewport is not None:
            self.ctx.viewport = viewport
        self.ctx.disable(moderngl.BLEND | moderngl.DEPTH_TEST | moderngl.CULL_FACE)
        texture.use(0)
        self._blit_vao.render(moderngl.TRIANGLE_STRIP)

    def copy(self, texture: moderngl.Texture, fbo: moderngl.Framebuffer) -> None:
        """Scale `texture` into `fbo`, all of it."""
        fbo.use()
        self.draw(texture)

    def checker(self, fbo: moderngl.Framebuffer) -> None:
        """Fill `fbo` with the loud magenta/black fallback pattern."""
        fbo.use()
        self.ctx.disable(moderngl.BLEND | moderngl.DEPTH_TEST | moderngl.CULL_FACE)
        self.checker_prog["cell_px"].value = max(1.0, fbo.size[0] / CHECKER_CELLS)
        self._checker_vao.render(moderngl.TRIANGLE_STRIP)

    def release(self) -> None:
        for obj in (self._blit_vao, self._checker_vao, self.blit_prog, self.checker_prog):
            obj.release()
        if self._own_quad:
            self.quad.release()


def read_rgb(texture: moderngl.Texture) -> np.ndarray:
    """(H, W, 3) uint8 pixels of a texture, row 0 at the top of the picture (for the recorder)."""
    w, h = texture.size
    c = texture.components
    dtype = texture.dtype
    raw = texture.read(alignment=1)
    if dtype == "f1":
        a = np.frombuffer(raw, dtype=np.uint8).reshape(h, w, c)
    else:
        np_dtype = {"f2": np.float16, "f4": np.float32}.get(dtype)
        if np_dtype is None:
            raise ValueError(f"read_rgb: unsupported texture dtype {dtype!r}")
        f = np.frombuffer(raw, dtype=np_dtype).reshape(h, w, c).astype(np.float32)
        a = (np.clip(f, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if c == 1:
        a = np.repeat(a, 3, axis=2)
    return np.ascontiguousarray(a[::-1, :, :3])
