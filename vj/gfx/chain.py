"""The effect chain: ISF effects in order over ping-pong buffers, from the model frame to one output texture."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import moderngl

from vj.audio.features import SILENT, Features
from vj.gfx.audiotex import AudioTextures
from vj.gfx.blit import QUAD, Blitter, fit_viewport, read_rgb
from vj.gfx.context import bind_default_framebuffer
from vj.gfx.effect import Effect, EffectCompileError, FrameGlobals
from vj.gfx.isf import ISFError, ISFShader, load_isf
from vj.params import Param

log = logging.getLogger(__name__)

__all__ = ["Chain", "read_rgb", "fit_viewport"]

EffectSpec = ISFShader | str | Path


@dataclass
class _Slot:
    """One named place in the chain. `effect` is the last good compile; None renders the fallback checker."""

    name: str
    effect: Effect | None
    shader: ISFShader | None       # what was last asked for (may differ from effect.shader after an error)
    error: str | None = None


class _Buffer:
    def __init__(self, ctx: moderngl.Context, size: tuple[int, int], dtype: str):
        self.ctx = ctx
        self.texture = ctx.texture(size, 4, dtype=dtype)
        self.texture.filter = (moderngl.LINEAR, moderngl.LINEAR)
        self.texture.repeat_x = False
        self.texture.repeat_y = False
        self.fbo = ctx.framebuffer(color_attachments=[self.texture])

    def release(self) -> None:
        bind_default_framebuffer(self.ctx)
        self.fbo.release()
        self.texture.release()


class Chain:
    """Renders `source` through the effects. GL objects are made when effects or sizes change, never per frame.

    Errors never leave `render`: a shader that fails to compile keeps its last good program (or shows
    the magenta/black checker when it never compiled or its file is missing), and the reason is in
    `errors[name]` and the log, with .fs line numbers.
    """

    def __init__(self, ctx: moderngl.Context, width_px: int, height_px: int, hdr: bool = False):
        self.ctx = ctx
        self.width_px = int(width_px)
        self.height_px = int(height_px)
        self.dtype = "f2" if hdr else "f1"     # ping-pong buffers between effects; RGBA8 unless hdr
        self.quad = ctx.buffer(QUAD.tobytes())
        self.blitter = Blitter(ctx, self.quad)
        self.audio = AudioTextures(ctx)
        self._slots: list[_Slot] = []
        self._buffers = self._make_buffers()
        self.errors: dict[str, str] = {}
        self.frame_index = 0
        # Called after every effect pass; the engine sets a GIL-free glFinish on software rasterisers
        # (vj.gfx.context.gil_free_finish).
        self.after_pass: Callable[[], None] | None = None

    # ------------------------------------------------------------------------------------ set-up

    def _make_buffers(self) -> list[_Buffer]:
        size = (self.width_px, self.height_px)
        return [_Buffer(self.ctx, size, self.dtype) for _ in range(2)]

    @property
    def names(self) -> list[str]:
        return [s.name for s in self._slots]

    def effect(self, name: str) -> Effect | None:
        for s in self._slots:
            if s.name == name:
                return s.effect
        return None

    def params(self) -> list[Param]:
        """Params of every effect in the chain, at /fx/<name>/<INPUT>."""
        out: list[Param] = []
        for s in self._slots:
            shader = s.effect.shader if s.effect is not None else s.shader
            if shader is not None:
                out.extend(shader.params(f"/fx/{s.name}"))
        return out

    def set_effects(self, effects: Sequence[tuple[str, EffectSpec]]) -> None:
        """Make the chain these (name, ISFShader or .fs path) effects, in order.

        Effects whose name and source are unchanged are kept as they are (buffers and all). Raises
        ValueError for a repeated name (their params would share paths); everything else is reported
        in `errors`.
        """
        names = [n for n, _ in effects]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"effect names must be unique in a chain, repeated: {', '.join(dupes)}")
        old = {s.name: s for s in self._slots}
        slots = [self._build(name, spec, old.get(name)) for name, spec in effects]
        keep = {id(s.effect) for s in slots if s.effect is not None}
        for s in self._slots:
            if s.effect is not None and id(s.effect) not in keep:
                s.effect.release()
        self._slots = slots
        self.errors = {s.name: s.error for s in slots if s.error}

    def reload(self, name: str, spec: EffectSpec) -> bool:
        """Recompile one effect from a new shader or its file (hot reload). True if it compiled."""
        for i, s in enumerate(self._slots):
            if s.name == name:
                new = self._build(name, spec, s, force=True)
                if s.effect is not None and new.effect is not s.effect:
                    s.effect.release()
                self._slots[i] = new
                self.errors.pop(name, None)
                if new.error:
                    self.errors[name] = new.error
                return new.error is None
        raise KeyError(f"no effect named {name!r} in the chain")

    def _build(self, name: str, spec: EffectSpec, old: _Slot | None, force: bool = False) -> _Slot:
        last_good = old.effect if old is not None else None
        shader: ISFShader | None
        if isinstance(spec, ISFShader):
            shader = spec
        else:
            try:
                shader = load_isf(spec, name)
            except FileNotFoundError:
                # A missing file shows the checker, except during a hot reload: editors that save by
                # rename make the file vanish for a moment, and the last good version should stay up.
                return self._failed(name, last_good if force else None, None,
                                    f"{Path(spec).name}: shader file not found ({spec})")
            except (ISFError, OSError) as exc:
                return self._failed(name, last_good, None, str(exc))
        if not force and last_good is not None and last_good.shader == shader:
            return _Slot(name, last_good, shader)
        try:
            effect = Effect(self.ctx, name, shader, self.quad, inherit=last_good)
        except EffectCompileError as exc:
            return self._failed(name, last_good, shader, exc.message)
        except ISFError as exc:
            return self._failed(name, last_good, shader, str(exc))
        for w in effect.warnings:
            log.warning("effect %s: %s", name, w)
        return _Slot(name, effect, shader)

    def _failed(self, name: str, last_good: Effect | None, shader: ISFShader | None, message: str) -> _Slot:
        what = "keeping the last good version" if last_good is not None else "showing the fallback pattern"
        log.error("effect %s: %s (%s)", name, message, what)
        return _Slot(name, last_good, shader, message)

    def resize(self, width_px: int, height_px: int) -> None:
        """New output size; effect targets follow on the next render."""
        if (int(width_px), int(height_px)) == (self.width_px, self.height_px):
            return
        for b in self._buffers:
            b.release()
        self.width_px, self.height_px = int(width_px), int(height_px)
        self._buffers = self._make_buffers()

    # ------------------------------------------------------------------------------------ per frame

    def render(self, source: moderngl.Texture, frame: Mapping[str, Any], features: Features = SILENT,
               time_s: float = 0.0, dt_s: float = 0.0) -> moderngl.Texture:
        """The source (model frame) through every effect; returns a width_px x height_px texture.

        The returned texture stays valid until the next render or resize.
        """
        self.ctx.disable(moderngl.BLEND | moderngl.DEPTH_TEST | moderngl.CULL_FACE)
        self.audio.update(features)
        lt = time.localtime()
        g = FrameGlobals(float(time_s), float(dt_s),
                         (float(lt.tm_year), float(lt.tm_mon), float(lt.tm_mday),
                          float(lt.tm_hour * 3600 + lt.tm_min * 60 + lt.tm_sec)),
                         features.sources(), tuple(float(c) for c in features.chroma))
        a, b = self._buffers
        current = source
        for slot in self._slots:
            out = b if current is a.texture else a
            if slot.effect is None:
                self.blitter.checker(out.fbo)
                current = out.texture
                continue
            try:
                slot.effect.after_pass = self.after_pass
                current = slot.effect.render(current, source, out.fbo, frame, g, self.audio)
            except (moderngl.Error, ValueError, TypeError, KeyError) as exc:
                # The frame boundary for one effect: report once, pass its input through, keep going.
                message = f"{slot.shader.file_name if slot.shader else slot.name}: render failed: {exc}"
                if slot.error != message:
                    slot.error = message
                    self.errors[slot.name] = message
                    log.error("effect %s: %s", slot.name, message)
        if current is source or current.size != (self.width_px, self.height_px):
            out = b if current is a.texture else a
            self.blitter.copy(current, out.fbo)
            current = out.texture
        self.frame_index += 1
        return current

    @property
    def feeds_back(self) -> bool:
        """True when a pass reads what an earlier frame left in a PERSISTENT buffer (a frame then depends on the last)."""
        return any(s.effect is not None and any(t.persistent for t in s.effect.targets.values()) for s in self._slots)

    def skip(self) -> None:
        """Count a frame without rendering it (Engine.skip): FRAMEINDEX and TIMEDELTA go on as if it had been."""
        for slot in self._slots:
            if slot.effect is not None:
                slot.effect.frame_index += 1
        self.frame_index += 1

    def output(self, texture: moderngl.Texture, viewport: tuple[int, int, int, int] | None = None) -> None:
        """Draw `texture` into the bound framebuffer (the window), in `viewport` if given."""
        self.blitter.draw(texture, viewport)

    def release(self) -> None:
        for s in self._slots:
            if s.effect is not None:
                s.effect.release()
        self._slots = []
        for buf in self._buffers:
            buf.release()
        self.audio.release()
        self.blitter.release()
        self.quad.release()
