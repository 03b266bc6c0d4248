"""The HUD: a bitmap-font text overlay (fps, frame times, audio meter, errors) drawn over the live output."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import moderngl
import numpy as np

# The font: 6x8 pixel cells, glyphs 5 px wide and 7 tall (capitals and digits) with one row for
# descenders. One glyph is 8 rows of 2 hex digits; bit 7 of a row is its leftmost pixel.
# Slots 0..94 are ASCII 32..126, then the box drawn for unknown characters, then a solid block
# (U+2588, used as a lit marker).
CELL_W, CELL_H = 6, 8      # font pixels per character cell
LINE_H = 10                # font pixels from one text line to the next (2 px gap)
PAD = 3                    # font pixels of panel around the text
METER_COLS = 16            # a meter bar is this many character cells wide
MAX_COLS = 160             # longer lines are cut
MAX_LINES = 48             # further lines are dropped
BLOCK = "\u2588"           # lit marker
_FONT_HEX = (
    "0000000000000000 2020202020002000 5050500000000000 5050F850F8505000 2078A07028F02000 C0C8102040981800 6090A040A8906800 2020400000000000"
    "1020404040201000 4020101010204000 0020A870A8200000 002020F820200000 0000000000602040 000000F800000000 0000000000606000 0008102040800000"
    "708898A8C8887000 2060202020207000 708808102040F800 F810201008887000 10305090F8101000 F880F00808887000 304080F088887000 F808102040404000"
    "7088887088887000 7088887808106000 0060600060600000 0060600060204000 1020408040201000 0000F800F8000000 4020100810204000 7088081020002000"
    "70880868A8A87000 70888888F8888800 F08888F08888F000 7088808080887000 E09088888890E000 F88080F08080F800 F88080F080808000 708880B888887800"
    "888888F888888800 7020202020207000 3810101010906000 8890A0C0A0908800 808080808080F800 88D8A8A888888800 8888C8A898888800 7088888888887000"
    "F08888F080808000 70888888A8906800 F08888F0A0908800 788080700808F000 F820202020202000 8888888888887000 8888888888502000 888888A8A8A85000"
    "8888502050888800 8888885020202000 F80810204080F800 7040404040407000 0080402010080000 7010101010107000 2050880000000000 00000000000000F8"
    "4020100000000000 0000700878887800 8080B0C88888F000 0000708080887000 0808689888887800 00007088F8807000 304840E040404000 0000788888780870"
    "8080B0C888888800 2000602020207000 1000301010109060 808090A0C0A09000 6020202020207000 0000D0A8A8888800 0000B0C888888800 0000708888887000"
    "0000F08888F08080 0000788888780808 0000B0C880808000 000078807008F000 4040E04040483000 0000888888986800 0000888888502000 00008888A8A85000"
    "0000885020508800 0000888888780870 0000F8102040F800 1020204020201000 2020202020202000 4020201020204000 000040A810000000 F88888888888F800"
    "F8F8F8F8F8F8F800"
)
_GLYPHS = "".join(_FONT_HEX.split())
N_GLYPHS = len(_GLYPHS) // (2 * CELL_H)
UNKNOWN_GLYPH = 95
BLOCK_GLYPH = 96


def glyph_index(ch: str) -> int:
    """Atlas slot of a character: printable ASCII, the block, or the unknown-character box."""
    o = ord(ch)
    if 32 <= o <= 126:
        return o - 32
    return BLOCK_GLYPH if ch == BLOCK else UNKNOWN_GLYPH


def _glyph_indices(text: str) -> np.ndarray:
    """glyph_index of every character as an (len(text),) int64 array; vectorised because a Python
    call per character was most of the cost of re-laying out changed lines."""
    cp = np.frombuffer(text.encode("utf-32-le"), np.uint32).astype(np.int64)
    out = np.where(cp == ord(BLOCK), BLOCK_GLYPH, UNKNOWN_GLYPH)
    printable = (cp >= 32) & (cp <= 126)
    out[printable] = cp[printable] - 32
    return out


def glyph_bitmap(ch: str) -> np.ndarray:
    """(CELL_H, CELL_W) bool pixels of a character, row 0 at the top."""
    i = glyph_index(ch) * 2 * CELL_H
    rows = bytes.fromhex(_GLYPHS[i:i + 2 * CELL_H])
    bits = np.unpackbits(np.frombuffer(rows, np.uint8)[:, None], axis=1)  # (8, 8), MSB first
    return bits[:, :CELL_W].astype(bool)


def _atlas() -> np.ndarray:
    """(CELL_H, N_GLYPHS * CELL_W) uint8, 255 where a glyph pixel is set; glyphs side by side."""
    rows = np.frombuffer(bytes.fromhex(_GLYPHS), np.uint8).reshape(N_GLYPHS, CELL_H)
    bits = np.unpackbits(rows[:, :, None], axis=2)[:, :, :CELL_W]          # (glyph, y, x)
    return np.ascontiguousarray(bits.transpose(1, 0, 2).reshape(CELL_H, N_GLYPHS * CELL_W) * 255)


WHITE = (0.92, 0.92, 0.92)
GREY = (0.6, 0.6, 0.6)
GREEN = (0.3, 0.9, 0.35)
AMBER = (1.0, 0.72, 0.2)
RED = (1.0, 0.25, 0.2)


@dataclass(frozen=True)
class HudLine:
    """One line of HUD text; `meter` (0..1) draws a bar of METER_COLS cells after the text."""

    text: str
    color: tuple[float, float, float] = WHITE
    meter: float | None = None
    meter_color: tuple[float, float, float] = GREEN


# Everything is one instanced draw of rectangles, in this order (blending follows primitive order):
# the panel, each meter's track and fill, then one cell per visible character. A rectangle is
# (x, y, w, h) in font pixels from the panel's top-left corner, y down; glyph < 0 means solid colour.
INSTANCE_FLOATS = 9         # rect (4), glyph (1), rgba (4)
_VS = """#version 330 core
in vec2 corner;              // (0..1, 0..1) of the unit quad
in vec4 rect;                // per instance
in float glyph;
in vec4 rgba;
uniform vec2 top_left;       // framebuffer pixels of the panel's top-left corner (GL y up)
uniform vec4 view;           // the GL viewport (x, y, w, h) the draw is clipped to
uniform float scale;         // framebuffer pixels per font pixel
out vec2 font_px;            // font pixels from the rectangle's top-left
flat out float v_glyph;
flat out vec4 v_color;
void main() {
    font_px = corner * rect.zw;
    vec2 fb = top_left + vec2(rect.x + font_px.x, -(rect.y + font_px.y)) * scale;
    gl_Position = vec4((fb - view.xy) / view.zw * 2.0 - 1.0, 0.0, 1.0);
    v_glyph = glyph;
    v_color = rgba;
}
"""
# font_px arrives at pixel centres, (k + 0.5) / scale: never a whole number, so floor() is exact.
_FS = f"""#version 330 core
uniform sampler2D atlas;     // ({N_GLYPHS * CELL_W}, {CELL_H}) R8: glyph pixels, row 0 at the top
in vec2 font_px;
flat in float v_glyph;
flat in vec4 v_color;
out vec4 color;
void main() {{
    if (v_glyph >= 0.0) {{
        ivec2 t = ivec2(floor(font_px)) + ivec2(int(v_glyph) * {CELL_W}, 0);
        if (texelFetch(atlas, t, 0).r < 0.5) discard;
    }}
    color = v_color;
}}
"""
TRACK = (0.22, 0.22, 0.22, 0.9)    # the empty part of a meter bar


class Hud:
    """Draws HUD lines at the top-left of a viewport over a translucent panel, in one draw call.

    The glyph atlas is uploaded once. The lines become one rectangle per visible character plus the
    panel and the meter bars, written to a vertex buffer only when the lines differ from the last
    draw (`uploads` counts the writes). Only the panel and the glyph cells are rasterised: on llvmpipe
    this cost about half of one quad whose shader worked out the character of every panel pixel
    (and a sixth of that shader written with int division, which llvmpipe does a pixel at a time).
    """

    PANEL = (0.0, 0.0, 0.0, 0.6)     # rgb and opacity: a white picture shows through at 40%

    def __init__(self, ctx: moderngl.Context):
        self.ctx = ctx
        self.prog = ctx.program(vertex_shader=_VS, fragment_shader=_FS)
        self.prog["atlas"].value = 0
        atlas = _atlas()
        self._atlas = ctx.texture((atlas.shape[1], atlas.shape[0]), 1, atlas.tobytes(), dtype="f1", alignment=1)
        self._atlas.filter = (moderngl.NEAREST, moderngl.NEAREST)
        self._quad = ctx.buffer(np.array([0, 0, 1, 0, 0, 1, 1, 1], dtype="f4").tobytes())
        self._instances = ctx.buffer(reserve=256 * INSTANCE_FLOATS * 4, dynamic=True)
        self._vao = ctx.vertex_array(self.prog, [(self._quad, "2f", "corner"),
                                                 (self._instances, "4f 1f 4f/i", "rect", "glyph", "rgba")])
        self._lines: tuple[HudLine, ...] | None = None
        self._count = 0                  # instances in the buffer
        self._size = (0, 0)              # panel size in font pixels
        self.uploads = 0                 # times the instance buffer was written

    def draw(self, target: moderngl.Framebuffer, viewport: tuple[int, int, int, int],
             lines: list[HudLine | str], scale: int = 2) -> None:
        """Draw `lines` at the top-left of `viewport` (framebuffer pixels, GL's bottom-left origin).

        `scale` is framebuffer pixels per font pixel; it is lowered (to 1 at least) while the panel
        would not fit inside the viewport, and the panel is clipped to the viewport.

        Alpha-blended over what is there. Leaves the enable flags (BLEND, DEPTH_TEST, CULL_FACE...),
        the bound framebuffer and `target.viewport` as it found them; the blend function and equation
        end at moderngl's defaults (DEFAULT_BLENDING, FUNC_ADD). Binds the atlas to texture unit 0.
        """
        self._update(lines)
        if self._count == 0:
            return
        x, y, w, h = (int(v) for v in viewport)
        # A small window (a preview, a test) would vanish under a 2x panel: shrink to fit, not below 1.
        fit = min(w // max(1, self._size[0]), h // max(1, self._size[1]))
        scale = max(1, min(int(scale), fit))
        pw, ph = self._size[0] * scale, self._size[1] * scale
        x0, y0 = x, max(y, y + h - ph)
        x1, y1 = min(x + pw, x + w), y + h
        if x1 <= x0 or y1 <= y0:
            return
        ctx = self.ctx
        saved_viewport = target.viewport
        scope = ctx.scope(target, enable_only=moderngl.BLEND)  # restores the flags and framebuffer
        try:
            with scope:
                try:
                    target.viewport = (x0, y0, x1 - x0, y1 - y0)
                    ctx.blend_func = moderngl.DEFAULT_BLENDING       # src alpha over the picture
                    ctx.blend_equation = moderngl.FUNC_ADD
                    self._atlas.use(0)
                    self.prog["top_left"].value = (float(x), float(y + h))
                    self.prog["view"].value = (float(x0), float(y0), float(x1 - x0), float(y1 - y0))
                    self.prog["scale"].value = float(scale)
                    self._vao.render(moderngl.TRIANGLE_STRIP, instances=self._count)
                finally:
                    # moderngl cannot report the blend function or equation (its getters raise, and
                    # the context's stored copy is never updated), so they go back to the values
                    # moderngl sets on a new context; every pass in vj sets its own anyway.
                    target.viewport = saved_viewport
                    ctx.blend_func = moderngl.DEFAULT_BLENDING
                    ctx.blend_equation = moderngl.FUNC_ADD
        finally:
            scope.release()

    def _update(self, lines: list[HudLine | str]) -> None:
        norm = tuple((ln if isinstance(ln, HudLine) else HudLine(str(ln))) for ln in lines[:MAX_LINES])
        if norm == self._lines:
            return
        self._lines = norm
        if not norm:
            self._count = 0
            return
        items, self._size = _layout(norm)
        data = items.tobytes()
        if len(data) > self._instances.size:
            self._instances.orphan(max(len(data), 2 * self._instances.size))
        self._instances.write(data)
        self._count = len(items)
        self.uploads += 1

    def release(self) -> None:
        for obj in (self._vao, self._instances, self._quad, self.prog, self._atlas):
            obj.release()


def _layout(lines: tuple[HudLine, ...]) -> tuple[np.ndarray, tuple[int, int]]:
    """(n, 9) float32 instances (the panel, meters, then characters) and the panel's size in font pixels.

    Vectorised over all characters at once: this runs whenever a number on the HUD changes.
    """
    texts = [ln.text[:MAX_COLS] for ln in lines]
    lens = np.array([len(t) for t in texts], np.int64)                         # (lines,)
    codes = _glyph_indices("".join(texts))                                     # (chars,)
    line = np.repeat(np.arange(len(texts)), lens)
    col = np.arange(len(codes)) - np.repeat(np.cumsum(lens) - lens, lens)
    at = np.flatnonzero(codes)                                                 # spaces draw nothing
    colors = np.array([(*ln.color[:3], 1.0) for ln in lines], np.float32)      # (lines, 4)
    glyphs = np.empty((len(at), INSTANCE_FLOATS), np.float32)
    glyphs[:, 0] = PAD + col[at] * CELL_W
    glyphs[:, 1] = PAD + line[at] * LINE_H
    glyphs[:, 2:4] = (CELL_W, CELL_H)
    glyphs[:, 4] = codes[at]
    glyphs[:, 5:] = colors[line[at]]

    cols = 0
    solid = [(0.0, 0.0, 0.0, 0.0, -1.0, *Hud.PANEL)]               # the panel; its size is set below
    for i, (ln, n) in enumerate(zip(lines, lens.tolist())):
        cols = max(cols, n + (0 if ln.meter is None else 1 + METER_COLS))
        if ln.meter is not None:
            m = float(ln.meter)
            m = min(1.0, max(0.0, m)) if math.isfinite(m) else 0.0
            x, top, bar_w = PAD + (n + 1) * CELL_W, PAD + i * LINE_H, METER_COLS * CELL_W
            solid.append((x, top + 1, bar_w, CELL_H - 2, -1.0, *TRACK))
            if m > 0.0:
                solid.append((x, top + 1, m * bar_w, CELL_H - 2, -1.0, *ln.meter_color[:3], 1.0))
    size = (2 * PAD + cols * CELL_W, 2 * PAD + len(lines) * LINE_H - (LINE_H - CELL_H))
    solid[0] = (0.0, 0.0, *size, *solid[0][4:])
    return np.concatenate([np.array(solid, np.float32), glyphs]), size


TEXT_COLS = 72                     # errors and names are cut to this many characters
MAX_ERRORS = 3
_BAD_STATUS = ("lost", "error", "fail", "closed", "unavailable", "no device")


def format_stats(stats: Mapping[str, object]) -> list[HudLine]:
    """The standard HUD lines from a stats dict. Missing keys and None values are skipped.

    Keys (all optional):
      display_fps       float   frames shown per second
      model_fps         float   model frames finished per second
      frame_ms_p50      float   median frame time, ms
      frame_ms_p99      float   99th-percentile frame time, ms
      dropped_frames    int     frames the recorder dropped (amber when > 0)
      audio_level_dbfs  float   input level in dBFS; a meter spans -60..0
      clipped           bool    input clipped recently: the audio line turns red and says CLIP
      audio_lost        int     input blocks lost (overflows); a line in amber once it is above 0
      onset             bool    an onset this frame (lit marker)
      beat              bool    a beat this frame (lit marker)
      bpm               float   tempo estimate
      latency_ms        float   estimated audio-to-screen latency, ms (shader-param path)
      model_latency_ms  float   what visuals driven through the model add to it, ms
      preset            str     active preset name
      audio_status      str     audio source state, e.g. "device lost" (amber when it sounds bad)
      sync              list[str]  Link, MIDI clock out and NDI out, a line each (amber when it sounds bad)
      errors            list[str]  shown in red, at most 3 lines, each on one line cut to TEXT_COLS
    """
    lines: list[HudLine] = []
    num = _numbers(stats)
    if "display_fps" in num:
        lines.append(HudLine(f"display {num['display_fps']:6.1f} fps"))
    if "model_fps" in num:
        lines.append(HudLine(f"model   {num['model_fps']:6.1f} fps"))
    frame = [f"{name} {num[key]:5.1f} ms" for name, key in (("p50", "frame_ms_p50"), ("p99", "frame_ms_p99"))
             if key in num]
    if frame:
        lines.append(HudLine("frame   " + "  ".join(frame)))
    if "dropped_frames" in num:
        dropped = int(num["dropped_frames"])
        lines.append(HudLine(f"dropped {dropped:6d} frames", AMBER if dropped > 0 else WHITE))
    clipped = bool(stats.get("clipped"))
    if "audio_level_dbfs" in num:
        db = num["audio_level_dbfs"]
        level = min(1.0, max(0.0, (db + 60.0) / 60.0)) if db > -math.inf else 0.0
        meter_color = RED if clipped or db > -3.0 else AMBER if db > -12.0 else GREEN
        text = f"audio   {db:6.1f} dBFS " + ("CLIP" if clipped else "    ")
        lines.append(HudLine(text, RED if clipped else WHITE, level, meter_color))
    elif clipped:
        lines.append(HudLine("audio   CLIP", RED))
    if num.get("audio_lost", 0) > 0:
        lines.append(HudLine(f"lost    {int(num['audio_lost']):6d} audio blocks", AMBER))
    marks = [f"{name} {BLOCK if stats[name] else '-'}" for name in ("onset", "beat")
             if stats.get(name) is not None]
    if "bpm" in num:
        marks.append(f"{num['bpm']:5.1f} bpm")
    if marks:
        lines.append(HudLine("  ".join(marks)))
    if "latency_ms" in num:
        model = f"  (model +{num['model_latency_ms']:.0f})" if num.get("model_latency_ms") else ""
        lines.append(HudLine(f"latency ~{num['latency_ms']:.0f} ms{model}"))
    if stats.get("preset") is not None:
        lines.append(HudLine("preset  " + _one_line(str(stats["preset"]))))
    if stats.get("audio_status") is not None:
        status = str(stats["audio_status"])
        bad = any(word in status.lower() for word in _BAD_STATUS)
        lines.append(HudLine("audio: " + _one_line(status), AMBER if bad else GREY))
    for line in stats.get("sync") or ():
        bad = any(word in str(line).lower() for word in _BAD_STATUS)
        lines.append(HudLine(_one_line(str(line)), AMBER if bad else GREY))
    errors = [e for e in (stats.get("errors") or ()) if str(e).strip()]
    if len(errors) > MAX_ERRORS:
        shown = [_one_line(str(e)) for e in errors[:MAX_ERRORS - 1]]
        shown.append(f"... {len(errors) - MAX_ERRORS + 1} more errors")
    else:
        shown = [_one_line(str(e)) for e in errors]
    lines.extend(HudLine(e, RED) for e in shown)
    return lines


def _numbers(stats: Mapping[str, object]) -> dict[str, float]:
    """The numeric keys as floats; None, NaN and values that are not numbers are left out."""
    out = {}
    for key in ("display_fps", "model_fps", "frame_ms_p50", "frame_ms_p99", "dropped_frames", "audio_lost",
                "audio_level_dbfs", "bpm", "latency_ms", "model_latency_ms"):
        value = stats.get(key)
        if value is None or isinstance(value, (str, bytes)):
            continue
        try:
            f = float(value)
        except (TypeError, ValueError):
            continue
        if not math.isnan(f) and (f > -math.inf or key == "audio_level_dbfs") and f < math.inf:
            out[key] = f
    return out


def _one_line(text: str) -> str:
    """Whitespace (newlines of a compiler log included) collapsed, cut to TEXT_COLS with '...'."""
    flat = " ".join(text.split())
    return flat if len(flat) <= TEXT_COLS else flat[:TEXT_COLS - 3] + "..."
