"""One compiled ISF shader: its program, pass targets and persistent (feedback) buffers, rendered per frame."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import moderngl
import numpy as np

from vj.audio.features import SILENT, SOURCE_NAMES
from vj.gfx import glsl
from vj.gfx.audiotex import AudioTextures
from vj.gfx.context import bind_default_framebuffer
from vj.gfx.expr import ExpressionError
from vj.gfx.isf import ISFInput, ISFShader
from vj.gfx.png import PNGError, read_png

log = logging.getLogger(__name__)

_MISSING = object()

# Engine-fed feature uniforms a shader may declare itself: `uniform float vj_<source>;` for every scalar
# feature (Features.sources()) and `uniform float vj_chroma[12];` (C first). Set only where declared.
FEATURE_UNIFORMS = {f"vj_{name}": name for name in SOURCE_NAMES}
CHROMA_UNIFORM = "vj_chroma"
_GL_FLOAT, _GL_BOOL = 0x1406, 0x8B56


class EffectCompileError(RuntimeError):
    """A shader that did not compile or link; `message` cites file:line, `line` is the first .fs line."""

    def __init__(self, message: str, line: int | None):
        self.message = message
        self.line = line
        super().__init__(message)


@dataclass(frozen=True)
class FrameGlobals:
    """What every pass of every effect gets this frame."""

    time_s: float
    dt_s: float
    date: tuple[float, float, float, float]   # year, month, day, seconds into the day
    features: Mapping[str, float] = field(default_factory=SILENT.sources)   # Features.sources() of the frame
    chroma: tuple[float, ...] = (0.0,) * 12                                  # Features.chroma, C first


class Target:
    """A pass target as two textures: passes read the previous contents while writing the new ones."""

    def __init__(self, ctx: moderngl.Context, name: str, persistent: bool, is_float: bool):
        self.ctx = ctx
        self.name = name
        self.persistent = persistent
        self.dtype = "f2" if is_float else "f1"   # FLOAT passes: RGBA16F
        self.size: tuple[int, int] | None = None
        self.textures: list[moderngl.Texture] = []
        self.fbos: list[moderngl.Framebuffer] = []
        self.front = 0

    def ensure(self, size: tuple[int, int]) -> None:
        """(Re)allocate at `size`, cleared to transparent black; nothing happens while the size holds."""
        if size == self.size:
            return
        self.release()
        for _ in range(2):
            tex = self.ctx.texture(size, 4, dtype=self.dtype)
            tex.filter = (moderngl.LINEAR, moderngl.LINEAR)
            tex.repeat_x = False
            tex.repeat_y = False
            fbo = self.ctx.framebuffer(color_attachments=[tex])
            fbo.clear(0.0, 0.0, 0.0, 0.0)
            self.textures.append(tex)
            self.fbos.append(fbo)
        self.size = size
        self.front = 0

    @property
    def read(self) -> moderngl.Texture:
        return self.textures[self.front]

    @property
    def write(self) -> moderngl.Framebuffer:
        return self.fbos[1 - self.front]

    def swap(self) -> None:
        self.front = 1 - self.front

    def adopt(self, other: "Target") -> None:
        """Take over another target's textures (a recompiled effect keeps its feedback on screen)."""
        self.release()
        self.textures, self.fbos, self.size, self.front = other.textures, other.fbos, other.size, other.front
        other.textures, other.fbos, other.size = [], [], None

    def release(self) -> None:
        if self.fbos:
            bind_default_framebuffer(self.ctx)
        for obj in self.fbos + self.textures:
            obj.release()
        self.textures, self.fbos, self.size = [], [], None


class _PassProgram:
    """The compiled program for one pass (or for all passes when the shader never reads PASSINDEX)."""

    def __init__(self, ctx: moderngl.Context, shader: ISFShader, quad: moderngl.Buffer, pass_index: int | None):
        src = glsl.translate(shader, pass_index)
        try:
            self.program = ctx.program(vertex_shader=src.vertex, fragment_shader=src.fragment)
        except moderngl.Error as exc:
            report = glsl.map_compile_error(str(exc), shader)
            raise EffectCompileError(report.message, report.line) from None
        self.vao = ctx.vertex_array(self.program, [(quad, "2f", "VERTEXDATA")], skip_errors=True)
        u = self.program
        self.u_pass = u.get("PASSINDEX", None)
        self.u_size = u.get("RENDERSIZE", None)
        self.u_time = u.get("TIME", None)
        self.u_dt = u.get("TIMEDELTA", None)
        self.u_date = u.get("DATE", None)
        self.u_frame = u.get("FRAMEINDEX", None)
        # Uniform (or None when the compiler dropped it) per non-image input, in shader.inputs order.
        self.inputs = [u.get(i.name, None) for i in shader.inputs if not i.is_image]
        # vj_* feature uniforms the code declares and uses: (feature name, uniform, declared bool); chroma.
        self.warnings: list[str] = []
        self.features: list[tuple[str, Any, bool]] = []
        for uname, source in FEATURE_UNIFORMS.items():
            uni = u.get(uname, None)
            if uni is None:
                continue
            if uni.gl_type in (_GL_FLOAT, _GL_BOOL) and uni.array_length == 1:
                self.features.append((source, uni, uni.gl_type == _GL_BOOL))
            else:
                self.warnings.append(f"{shader.file_name}: {uname} must be declared `uniform float {uname};` "
                                     "(or bool), so it is left unset")
        self.chroma: Any = None
        uni = u.get(CHROMA_UNIFORM, None)
        if uni is not None:
            if uni.gl_type == _GL_FLOAT and uni.dimension == 1 and uni.array_length <= 12:
                self.chroma = uni
            else:
                self.warnings.append(f"{shader.file_name}: {CHROMA_UNIFORM} must be declared "
                                     f"`uniform float {CHROMA_UNIFORM}[12];`, so it is left unset")
        # Samplers: a fixed texture unit per image name, bound each pass: (name, unit, _name_imgSize).
        self.samplers: list[tuple[str, int, Any]] = []
        for unit, name in enumerate(shader.image_names):
            uni = u.get(name, None)
            if uni is None:
                continue
            uni.value = unit
            self.samplers.append((name, unit, u.get(f"_{name}_imgSize", None)))
            rect = u.get(f"_{name}_imgRect", None)
            if rect is not None:
                rect.value = (0.0, 0.0, 1.0, 1.0)

    def release(self) -> None:
        self.vao.release()
        self.program.release()


class Effect:
    """An ISF shader compiled for this context. Raises EffectCompileError from the constructor."""

    def __init__(self, ctx: moderngl.Context, name: str, shader: ISFShader, quad: moderngl.Buffer,
                 inherit: "Effect | None" = None):
        self.ctx = ctx
        self.name = name
        self.shader = shader
        self.prefix = f"/fx/{name}"
        self.warnings: list[str] = []
        self._programs: list[_PassProgram] = []
        try:
            if len(shader.passes) > 1 and glsl.uses_passindex(shader):
                for index in range(len(shader.passes)):
                    self._programs.append(_PassProgram(ctx, shader, quad, index))
            else:
                self._programs = [_PassProgram(ctx, shader, quad, None)] * len(shader.passes)
        except (EffectCompileError, moderngl.Error):
            for prog in {id(p): p for p in self._programs}.values():
                prog.release()
            raise
        self._distinct = list({id(p): p for p in self._programs}.values())
        for prog in self._distinct:
            self.warnings.extend(w for w in prog.warnings if w not in self.warnings)

        # Controllable inputs: (input, param path, default uniform value), same order as _PassProgram.inputs.
        self._inputs: list[tuple[ISFInput, str, Any]] = [
            (i, f"{self.prefix}/{i.name}", i.default_uniform) for i in shader.inputs if not i.is_image]
        self._uses_features = any(p.features or p.chroma is not None for p in self._distinct) or any(
            i.feature is not None for i in shader.inputs)
        self._expr_env: dict[str, float] = {}
        self._uses_expressions = any(p.width is not None or p.height is not None for p in shader.passes)
        self._image_kind = {i.name: i for i in shader.inputs if i.is_image}

        # Targets: one per distinct TARGET name; any pass marking it PERSISTENT/FLOAT makes it so.
        self.targets: dict[str, Target] = {}
        for p in shader.passes:
            if p.target:
                t = self.targets.get(p.target)
                if t is None:
                    self.targets[p.target] = Target(ctx, p.target, p.persistent, p.float)
                else:
                    t.persistent = t.persistent or p.persistent
                    if p.float:
                        t.dtype = "f2"
        if inherit is not None:
            for tname, t in self.targets.items():
                old = inherit.targets.get(tname)
                if old is not None and t.persistent and old.persistent and old.dtype == t.dtype:
                    t.adopt(old)

        self.imported: dict[str, moderngl.Texture] = {}
        for iname, path in shader.imported:
            self.imported[iname] = self._load_imported(iname, path)

        # A recompiled effect carries on counting, so FRAMEINDEX == 0 start-up code does not wipe the
        # feedback it just adopted.
        self.frame_index = inherit.frame_index if inherit is not None else 0
        self.output_texture: moderngl.Texture | None = None
        self.after_pass: Callable[[], None] | None = None   # called after each pass (Chain.after_pass)

    def _load_imported(self, name: str, path) -> moderngl.Texture:
        try:
            img = read_png(path)
        except (OSError, PNGError) as exc:
            self.warnings.append(f"{self.shader.file_name}: IMPORTED {name!r}: {exc}")
            img = np.zeros((1, 1, 4), dtype=np.uint8)
        if img.shape[2] in (1, 2):
            grey = img[:, :, :1]
            img = np.concatenate([grey, grey, grey, img[:, :, 1:] if img.shape[2] == 2 else
                                  np.full_like(grey, 255)], axis=2)
        h, w, c = img.shape
        tex = self.ctx.texture((w, h), c, np.ascontiguousarray(img[::-1]).tobytes(), dtype="f1")
        tex.filter = (moderngl.LINEAR, moderngl.LINEAR)
        return tex

    @property
    def needs_audio(self) -> bool:
        return any(i.type in ("audio", "audioFFT") for i in self.shader.inputs)

    def _set_inputs(self, frame: Mapping[str, Any], features: Mapping[str, float]) -> None:
        env = self._expr_env
        for k, (inp, path, default) in enumerate(self._inputs):
            # A VJ_FEATURE input reads the feature, a param input its path in the frame.
            v = features.get(inp.feature, _MISSING) if inp.feature is not None else frame.get(path, _MISSING)
            try:
                value = default if v is _MISSING else inp.uniform_value(v)
            except (TypeError, ValueError):
                value = default
            if value is None:
                continue
            for prog in self._distinct:
                uni = prog.inputs[k]
                if uni is not None:
                    uni.value = value
            if self._uses_expressions and inp.type in ("float", "long", "bool", "event"):
                env[inp.name] = float(value)

    def _set_features(self, g: FrameGlobals) -> None:
        """The vj_* uniforms this frame, in every program that declares them."""
        for prog in self._distinct:
            for source, uni, is_bool in prog.features:
                v = float(g.features.get(source, 0.0))
                uni.value = int(v > 0.5) if is_bool else v
            if prog.chroma is not None:
                uni = prog.chroma
                uni.value = tuple(float(c) for c in g.chroma[:uni.array_length])

    def render(self, input_tex: moderngl.Texture, source_tex: moderngl.Texture, out_fbo: moderngl.Framebuffer,
               frame: Mapping[str, Any], g: FrameGlobals, audio: AudioTextures) -> moderngl.Texture:
        """Run every pass; returns the texture holding this effect's output (out_fbo's, or the last target's).

        `input_tex` feeds `inputImage`, `source_tex` (the model frame) every other image input.
        """
        self._set_inputs(frame, g.features)
        if self._uses_features:
            self._set_features(g)
        out_w, out_h = out_fbo.size
        for p in self.shader.passes:
            if p.target:
                try:
                    size = p.size(out_w, out_h, self._expr_env)
                except ExpressionError as exc:
                    msg = f"{self.shader.file_name}: pass size: {exc}; using the full size"
                    if msg not in self.warnings:
                        self.warnings.append(msg)
                        log.warning(msg)
                    size = (out_w, out_h)
                self.targets[p.target].ensure(size)

        dt = g.dt_s if self.frame_index > 0 else 0.0
        for prog in self._distinct:
            if prog.u_time is not None:
                prog.u_time.value = g.time_s
            if prog.u_dt is not None:
                prog.u_dt.value = dt
            if prog.u_date is not None:
                prog.u_date.value = g.date
            if prog.u_frame is not None:
                prog.u_frame.value = self.frame_index

        # Images that stay the same for every pass of this frame.
        fixed: dict[str, moderngl.Texture] = {}
        for name, inp in self._image_kind.items():
            if inp.type == "image":
                fixed[name] = input_tex if name == "inputImage" else source_tex
            else:
                fixed[name] = audio.texture(inp.type, inp.samples)
        fixed.update(self.imported)

        result = out_fbo.color_attachments[0]
        last = len(self.shader.passes) - 1
        for index, p in enumerate(self.shader.passes):
            prog = self._programs[index]
            target = self.targets.get(p.target) if p.target else None
            fbo = target.write if target is not None else out_fbo
            for name, unit, size_uni in prog.samplers:
                tex = fixed.get(name)
                if tex is None:
                    t = self.targets.get(name)
                    if t is None:
                        continue
                    tex = t.read
                tex.use(unit)
                if size_uni is not None:
                    size_uni.value = tuple(float(s) for s in tex.size)
            fbo.use()
            if prog.u_pass is not None:
                prog.u_pass.value = index
            if prog.u_size is not None:
                prog.u_size.value = tuple(float(s) for s in fbo.size)
            prog.vao.render(moderngl.TRIANGLE_STRIP)
            if self.after_pass is not None:
                self.after_pass()
            if target is not None:
                target.swap()
                if index == last:
                    result = target.read
        self.frame_index += 1
        self.output_texture = result
        return result

    def release(self) -> None:
        for t in self.targets.values():
            t.release()
        for tex in self.imported.values():
            tex.release()
        for prog in self._distinct:
            prog.release()
