"""Model frames to a texture, optionally cross-fading between the two newest (live output).

A model running at 10 fps under a 60 fps display steps visibly; blending from the previous model frame to
the newest over one model-frame interval turns the steps into motion, at the price of showing each new
frame fully one interval later. `blend` (0..1) is the fraction of that interval the fade takes: 0 cuts.
"""

from __future__ import annotations

import moderngl

from vj.gfx.blit import QUAD, QUAD_VS
from vj.gfx.context import bind_default_framebuffer
from vj.gfx.upload import TextureUploader

_MIX_FS = """#version 330 core
uniform sampler2D older;
uniform sampler2D newer;
uniform float amount;
in vec2 uv;
out vec4 color;
void main() { color = vec4(mix(texture(older, uv).rgb, texture(newer, uv).rgb, amount), 1.0); }
"""
MAX_INTERVAL_S = 0.5     # a model slower than this fades over half a second, not over its whole interval


class TextureMixer:
    """Mixes two textures into its own texture: `mix(older, newer, k)` is older * (1 - k) + newer * k.

    The result has `newer`'s size (older is sampled with linear filtering). One framebuffer, remade only
    when the size changes.
    """

    def __init__(self, ctx: moderngl.Context):
        self.ctx = ctx
        self._prog = ctx.program(vertex_shader=QUAD_VS, fragment_shader=_MIX_FS)
        self._prog["older"].value = 0
        self._prog["newer"].value = 1
        self._quad = ctx.buffer(QUAD.tobytes())
        self._vao = ctx.vertex_array(self._prog, [(self._quad, "2f", "VERTEXDATA")])
        self._fbo: moderngl.Framebuffer | None = None
        self._out: moderngl.Texture | None = None

    def mix(self, older: moderngl.Texture, newer: moderngl.Texture, k: float) -> moderngl.Texture:
        if self._out is None or self._out.size != newer.size:
            self._release_target()
            self._out = self.ctx.texture(newer.size, 4, dtype="f1")
            self._out.filter = (moderngl.LINEAR, moderngl.LINEAR)
            self._out.repeat_x = self._out.repeat_y = False
            self._fbo = self.ctx.framebuffer(color_attachments=[self._out])
        self._fbo.use()
        self.ctx.viewport = (0, 0, *newer.size)
        self.ctx.disable(moderngl.BLEND | moderngl.DEPTH_TEST | moderngl.CULL_FACE)
        older.use(0)
        newer.use(1)
        self._prog["amount"].value = float(k)
        self._vao.render(moderngl.TRIANGLE_STRIP)
        return self._out

    def _release_target(self) -> None:
        if self._fbo is not None:
            bind_default_framebuffer(self.ctx)      # never leave a deleted framebuffer bound
        for obj in (self._fbo, self._out):
            if obj is not None:
                obj.release()
        self._fbo = self._out = None

    def release(self) -> None:
        self._release_target()
        for obj in (self._vao, self._quad, self._prog):
            obj.release()


class ModelFader:
    """Holds the two newest model frames as textures; `texture()` gives the one to show at time t_s."""

    def __init__(self, ctx: moderngl.Context):
        self.ctx = ctx
        self._uploaders = (TextureUploader(ctx), TextureUploader(ctx))
        self._newest = -1                      # index of the uploader holding the newest frame
        self._frames = 0
        self._arrived_s = 0.0                  # clock time the newest frame arrived
        self.interval_s = 0.0                  # time between the two newest arrivals
        self._mixer = TextureMixer(ctx)

    def push(self, image, t_s: float, gl_rgba: bool = False) -> moderngl.Texture:
        """A new model frame arrived at clock time t_s; returns its texture (`gl_rgba`: see TextureUploader)."""
        uploader = self._uploaders[(self._newest + 1) % 2]
        tex = uploader.upload(image, gl_rgba)        # raises before the newest index moves
        self._newest = (self._newest + 1) % 2
        if self._frames:
            self.interval_s = min(max(t_s - self._arrived_s, 0.0), MAX_INTERVAL_S)
        self._arrived_s = t_s
        self._frames += 1
        return tex

    @property
    def newest(self) -> moderngl.Texture | None:
        return self._uploaders[self._newest].texture if self._newest >= 0 else None

    def amount(self, t_s: float, dt_s: float, blend: float) -> float:
        """How far the fade to the newest frame is (1: done), counting the frame being drawn."""
        fade_s = blend * self.interval_s
        if fade_s <= 0.0 or self._frames < 2:
            return 1.0
        return min(1.0, max(0.0, (t_s - self._arrived_s + dt_s) / fade_s))

    def texture(self, t_s: float, dt_s: float, blend: float) -> moderngl.Texture | None:
        """The newest frame, or a mix of the previous and the newest while a fade runs."""
        newest = self.newest
        k = self.amount(t_s, dt_s, blend)
        if newest is None or k >= 1.0:
            return newest
        older = self._uploaders[1 - self._newest].texture
        if older is None or older.size != newest.size:
            return newest
        return self._mixer.mix(older, newest, k)

    def release(self) -> None:
        self._mixer.release()
        for up in self._uploaders:
            up.release()
