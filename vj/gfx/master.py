"""The master stage: output grade and blackout into an 8-bit framebuffer at the chain's size, readback, and the blit to a window."""

from __future__ import annotations

import moderngl
import numpy as np

from vj.gfx.blit import fit_viewport
from vj.gfx.context import bind_default_framebuffer

_VS = """
#version 330
in vec2 in_pos;
out vec2 uv;
void main() {
    uv = in_pos * 0.5 + 0.5;
    gl_Position = vec4(in_pos, 0.0, 1.0);
}
"""

_FS = """
#version 330
uniform sampler2D src;
uniform float gain;
uniform float saturation;
uniform float contrast;
in vec2 uv;
out vec4 color;
void main() {
    vec3 c = texture(src, uv).rgb;
    c = mix(vec3(dot(c, vec3(0.2126, 0.7152, 0.0722))), c, saturation);
    c = (c - 0.5) * contrast + 0.5;
    color = vec4(clamp(c * gain, 0.0, 1.0), 1.0);
}
"""


class MasterPass:
    """Last stage of every frame. Its 8-bit RGBA target is what the window shows and the recorder reads."""

    def __init__(self, ctx: moderngl.Context, width_px: int, height_px: int):
        self.ctx = ctx
        self.prog = ctx.program(vertex_shader=_VS, fragment_shader=_FS)
        quad = np.array([-1, -1, 1, -1, -1, 1, 1, 1], dtype="f4")
        self._vbo = ctx.buffer(quad.tobytes())
        self.vao = ctx.vertex_array(self.prog, [(self._vbo, "2f", "in_pos")])
        self.texture: moderngl.Texture | None = None
        self.fbo: moderngl.Framebuffer | None = None
        self._scaled: moderngl.Framebuffer | None = None   # made on first use of read_rgb(size)
        self.resize(width_px, height_px)

    def resize(self, width_px: int, height_px: int) -> None:
        if self.texture is not None and self.texture.size == (width_px, height_px):
            return
        if self.fbo is not None:
            bind_default_framebuffer(self.ctx)  # releasing a bound framebuffer breaks the next one made
            self.fbo.release()
            self.texture.release()
        self.texture = self.ctx.texture((width_px, height_px), 4, dtype="f1")
        self.texture.filter = (moderngl.LINEAR, moderngl.LINEAR)
        self.fbo = self.ctx.framebuffer(color_attachments=[self.texture])

    @property
    def size(self) -> tuple[int, int]:
        return self.texture.size

    def render(self, src: moderngl.Texture, gain: float, saturation: float = 1.0,
               contrast: float = 1.0) -> moderngl.Texture:
        """Output grade (a pass paid for anyway, so grading here costs nothing extra) and the scale to output size."""
        self.fbo.use()
        self.fbo.viewport = (0, 0, *self.texture.size)
        src.use(0)
        self.prog["src"].value = 0
        self.prog["gain"].value = float(gain)
        self.prog["saturation"].value = float(saturation)
        self.prog["contrast"].value = float(contrast)
        self.ctx.disable(moderngl.BLEND)
        self.vao.render(moderngl.TRIANGLE_STRIP)
        return self.texture

    def read_rgb(self, size: tuple[int, int] | None = None) -> np.ndarray:
        """(H, W, 3) uint8, row 0 at the top, at the master's size or scaled to `size` (screenshots).

        The recorder takes the master's own size and scales on its encoder thread: on llvmpipe one
        full-screen pass at 1280x720 cost ~16 ms of CPU, more than the whole swscale conversion.
        """
        fbo = self.fbo
        if size is not None and tuple(size) != self.texture.size:
            fbo = self._scaled_target(tuple(size))
            self.blit_to(fbo, (0, 0, *size))
        w, h = fbo.size
        data = fbo.read(components=3, alignment=1)
        return np.ascontiguousarray(np.frombuffer(data, np.uint8).reshape(h, w, 3)[::-1])

    def _scaled_target(self, size: tuple[int, int]) -> moderngl.Framebuffer:
        if self._scaled is None or self._scaled.size != size:
            if self._scaled is not None:
                bind_default_framebuffer(self.ctx)
                self._scaled.color_attachments[0].release()
                self._scaled.release()
            tex = self.ctx.texture(size, 4, dtype="f1")
            self._scaled = self.ctx.framebuffer(color_attachments=[tex])
        return self._scaled

    def blit_to(self, target: moderngl.Framebuffer, viewport: tuple[int, int, int, int]) -> None:
        """Draw the master picture into `target` (a window), letterboxed inside `viewport`."""
        target.use()
        target.clear(0.0, 0.0, 0.0, 1.0)
        x, y, w, h = viewport
        fx, fy, fw, fh = fit_viewport(*self.texture.size, w, h)
        target.viewport = (x + fx, y + fy, fw, fh)
        self.texture.use(0)
        self.prog["src"].value = 0
        self.prog["gain"].value = 1.0
        self.prog["saturation"].value = 1.0
        self.prog["contrast"].value = 1.0
        self.vao.render(moderngl.TRIANGLE_STRIP)
