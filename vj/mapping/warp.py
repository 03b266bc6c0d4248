"""The warp pass: one output's picture, sampled from the master texture through its mesh, with blend, mask and trim."""

from __future__ import annotations

import moderngl
import numpy as np

from vj.gfx.png import PNGError, read_png
from vj.mapping.geometry import mesh_cells, minification
from vj.mapping.spec import SIDES, OutputSpec, OutputsError

MIPMAP_ABOVE = 1.5        # picture pixels per output pixel past which plain bilinear filtering would alias

_VS = """
#version 330
in vec2 in_pos;                  // output position, 0..1, y down
in vec3 in_h0;                   // rows of the cell's homography: output position -> picture (0..1, y down)
in vec3 in_h1;
in vec3 in_h2;
out vec2 pos;
out vec3 q;                      // the homography applied here: it is affine in the position, so interpolating it
                                 // is exact, and each pixel only divides
void main() {
    pos = in_pos;
    q = transpose(mat3(in_h0, in_h1, in_h2)) * vec3(in_pos, 1.0);
    gl_Position = vec4(in_pos.x * 2.0 - 1.0, 1.0 - in_pos.y * 2.0, 0.0, 1.0);
}
"""

_FS = """
// One output's fragment; compiled per set of features (the #defines WarpPass puts in front): Mesa's llvmpipe runs
// every branch of a shader, taken or not, so features an output does not use cost nothing only when compiled out.
uniform sampler2D master;
uniform vec4 source;             // x, y, w, h of the master picture, y down
uniform vec4 blend_width;        // left, right, top, bottom, shares of the output's picture
uniform vec4 blend_gamma;
uniform vec4 blend_power;
uniform vec3 trim;               // colour gains times brightness
#ifdef MASK
uniform sampler2D mask;
#endif
#ifdef CALIBRATE
uniform float grid_cells;        // calibration: a grid over the picture and the overlay's handles
uniform sampler2D overlay;       // output space, top row first; alpha blended
#endif
in vec2 pos;
in vec3 q;
out vec4 color;

float ramp(float t, float p) {   // vj.mapping.spec.blend_ramp: ramp(t) + ramp(1 - t) = 1
    t = clamp(t, 0.0, 1.0);
    return t < 0.5 ? 0.5 * pow(2.0 * t, p) : 1.0 - 0.5 * pow(2.0 * (1.0 - t), p);
}

float edge(float d, int i) {     // one soft edge, as light: the ramp through the projector's gamma
    return pow(ramp(d / blend_width[i], blend_power[i]), 1.0 / blend_gamma[i]);
}

void main() {
    vec2 uv = q.xy / q.z;        // the exact projective map, per pixel (q is interpolated exactly: it is affine)
    vec2 m = source.xy + clamp(uv, 0.0, 1.0) * source.zw;
    vec3 c = texture(master, vec2(m.x, 1.0 - m.y)).rgb * trim;    // the master's row 0 is its bottom
#ifdef BLEND_LEFT
    c *= edge(uv.x, 0);
#endif
#ifdef BLEND_RIGHT
    c *= edge(1.0 - uv.x, 1);
#endif
#ifdef BLEND_TOP
    c *= edge(uv.y, 2);
#endif
#ifdef BLEND_BOTTOM
    c *= edge(1.0 - uv.y, 3);
#endif
#ifdef MASK
    vec4 k = texture(mask, pos);                                   // uploaded top row first
    c *= dot(k.rgb, vec3(0.2126, 0.7152, 0.0722)) * k.a;
#endif
#ifdef CALIBRATE                 // 1 px lines at every 1/grid_cells of the picture, wherever the warp puts them
    vec2 g = clamp(uv, 0.0, 1.0) * grid_cells;
    vec2 d = abs(fract(g + 0.5) - 0.5) / max(fwidth(g), vec2(1e-6));
    c = mix(c * 0.35, vec3(1.0), 1.0 - clamp(min(d.x, d.y), 0.0, 1.0));
#endif
    bool inside = q.z > 0.0 && all(greaterThanEqual(uv, vec2(-1e-4))) && all(lessThanEqual(uv, vec2(1.0 + 1e-4)));
    c = inside ? c : vec3(0.0);
#ifdef CALIBRATE
    vec4 o = texture(overlay, pos);
    c = mix(c, o.rgb, o.a);
#endif
    color = vec4(clamp(c, 0.0, 1.0), 1.0);
}
"""


def load_mask(spec: OutputSpec) -> np.ndarray | None:
    """The output's mask image as (H, W, 4) uint8, row 0 at the top; OutputsError naming the file if unreadable."""
    if spec.mask is None:
        return None
    try:
        img = read_png(spec.mask)
    except (OSError, PNGError) as exc:
        raise OutputsError(f"output {spec.name!r}: mask {str(spec.mask)!r} cannot be read: {exc}") from None
    if img.ndim == 2:
        img = img[:, :, None]
    c = img.shape[2]
    if c in (1, 2):      # grey (+ alpha)
        grey = np.repeat(img[:, :, :1], 3, axis=2)
        alpha = img[:, :, 1:2] if c == 2 else np.full_like(img[:, :, :1], 255)
        img = np.concatenate([grey, alpha], axis=2)
    elif c == 3:
        img = np.concatenate([img, np.full_like(img[:, :, :1], 255)], axis=2)
    return np.ascontiguousarray(img)


def cell_vertices(spec: OutputSpec) -> np.ndarray:
    """Two triangles per mesh cell: (6 * cells, 11) float32 rows of position (2) and homography rows (9)."""
    rows = []
    for quad, hinv in mesh_cells(spec.mesh_array):
        h = hinv.reshape(9) / np.abs(hinv).max()        # any scale of a homography is the same map
        for k in (0, 1, 2, 0, 2, 3):
            rows.append(np.r_[quad[k], h])
    return np.asarray(rows, np.float32)


class WarpPass:
    """Renders one output: `render(master, target, viewport)`. GL objects live in `ctx` (the output's own context,
    which may share the master texture with the show's); `release()` frees them."""

    def __init__(self, ctx: moderngl.Context, spec: OutputSpec, mask: np.ndarray | None = None):
        self.ctx = ctx
        self._variants: dict[tuple, tuple[moderngl.Program, moderngl.VertexArray]] = {}   # by feature set
        self._vbo = None
        self._mask_tex = None
        self._overlay = None
        self.calibrate = False
        self.sampler = ctx.sampler(filter=(moderngl.LINEAR, moderngl.LINEAR), repeat_x=False, repeat_y=False)
        self.mipmaps = False
        self.spec = spec
        self.set_spec(spec)
        self.set_mask(mask)
        # The calibration twin of the playing variant, made now: pressing c during a show compiles nothing.
        self._variant((*self._features()[:-1], True))

    def _features(self) -> tuple:
        return (*(self.spec.blend[s].width > 0 for s in SIDES), self._mask_tex is not None,
                self.calibrate and self._overlay is not None)

    def _variant(self, key: tuple) -> tuple[moderngl.Program, moderngl.VertexArray]:
        if key not in self._variants:
            names = [f"BLEND_{s.upper()}" for s in SIDES] + ["MASK", "CALIBRATE"]
            defines = "".join(f"#define {n}\n" for n, on in zip(names, key) if on)
            prog = self.ctx.program(vertex_shader=_VS, fragment_shader="#version 330\n" + defines + _FS)
            vao = self.ctx.vertex_array(prog, [(self._vbo, "2f 3f 3f 3f", "in_pos", "in_h0", "in_h1", "in_h2")])
            self._variants[key] = (prog, vao)
        return self._variants[key]

    def set_mask(self, mask: np.ndarray | None) -> None:
        """The mask as `load_mask` gives it, or None for none."""
        if self._mask_tex is not None:
            self._mask_tex.release()
            self._mask_tex = None
        if mask is not None:
            h, w = mask.shape[:2]
            self._mask_tex = self.ctx.texture((w, h), 4, np.ascontiguousarray(mask).tobytes(), alignment=1)
            self._mask_tex.filter = (moderngl.LINEAR, moderngl.LINEAR)
            self._mask_tex.repeat_x = self._mask_tex.repeat_y = False

    def set_spec(self, spec: OutputSpec) -> None:
        """Take a new mapping for this output (a reloaded file, a dragged corner); the mask is `set_mask`'s."""
        data = cell_vertices(spec)
        if self._vbo is not None and self._vbo.size == data.nbytes:
            self._vbo.write(data.tobytes())
        else:                                   # another mesh size: every variant's vertex array is remade
            self._release_variants()
            if self._vbo is not None:
                self._vbo.release()
            self._vbo = self.ctx.buffer(data.tobytes())
        self._n_vertices = len(data)
        self.spec = spec
        self._uniforms = {
            "source": spec.source,
            "blend_width": tuple(spec.blend[s].width for s in SIDES),
            "blend_gamma": tuple(spec.blend[s].gamma for s in SIDES),
            "blend_power": tuple(spec.blend[s].power for s in SIDES),
            "trim": tuple(c * spec.brightness for c in spec.color),
            "master": 0, "mask": 1, "overlay": 2, "grid_cells": 8.0,
        }
        self._minify_for = None

    def set_overlay(self, rgba: np.ndarray | None) -> None:
        """Calibration on with this overlay ((H, W, 4) uint8 in output space, top row first), or off with None."""
        self.calibrate = rgba is not None
        if rgba is None:
            return
        h, w = rgba.shape[:2]
        if self._overlay is None or self._overlay.size != (w, h):
            if self._overlay is not None:
                self._overlay.release()
            self._overlay = self.ctx.texture((w, h), 4, alignment=1)
            self._overlay.filter = (moderngl.NEAREST, moderngl.NEAREST)
        self._overlay.write(np.ascontiguousarray(rgba, np.uint8).tobytes(), alignment=1)

    def needs_mipmaps(self, master_size: tuple[int, int], out_size: tuple[int, int]) -> bool:
        """True when this output shrinks the picture enough that the master needs mipmaps to stay unaliased."""
        key = (master_size, out_size)
        if self._minify_for != key:
            _, _, sw, sh = self.spec.source
            self.mipmaps = minification(self.spec.mesh_array, out_size,
                                        (sw * master_size[0], sh * master_size[1])) > MIPMAP_ABOVE
            self.sampler.filter = ((moderngl.LINEAR_MIPMAP_LINEAR if self.mipmaps else moderngl.LINEAR),
                                   moderngl.LINEAR)
            self.sampler.anisotropy = 8.0 if self.mipmaps else 1.0
            self._minify_for = key
        return self.mipmaps

    def render(self, master: moderngl.Texture, target: moderngl.Framebuffer,
               viewport: tuple[int, int, int, int]) -> None:
        """Draw into `target` at `viewport`; black where the warp shows no picture. The caller builds the master's
        mipmaps first when `needs_mipmaps` says so."""
        target.use()
        target.viewport = viewport
        target.clear(0.0, 0.0, 0.0, 1.0, viewport=viewport)
        self.needs_mipmaps(master.size, viewport[2:])
        prog, vao = self._variant(self._features())
        for name, value in self._uniforms.items():
            if name in prog:
                prog[name].value = value
        master.use(0)
        self.sampler.use(0)
        if self._mask_tex is not None:
            self._mask_tex.use(1)
        if self.calibrate and self._overlay is not None:
            self._overlay.use(2)
        self.ctx.disable(moderngl.BLEND)
        vao.render(moderngl.TRIANGLES, vertices=self._n_vertices)
        self.sampler.clear(0)

    def _release_variants(self) -> None:
        for prog, vao in self._variants.values():
            vao.release()
            prog.release()
        self._variants.clear()

    def release(self) -> None:
        self._release_variants()
        for obj in (self._vbo, self._mask_tex, self._overlay, self.sampler):
            if obj is not None:
                obj.release()
        self._vbo = self._mask_tex = self._overlay = None
