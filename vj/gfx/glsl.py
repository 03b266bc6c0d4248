"""Translate ISF GLSL (old-style: gl_FragColor, texture2D, varying, IMG_* calls) to GL 3.3 core, map errors back."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vj.gfx.isferror import ISFError

if TYPE_CHECKING:
    from vj.gfx.isf import ISFShader

GLSL_VERSION = "#version 330 core"
FS_SOURCE_NUMBER = 1     # `#line 1 N` before the user's code
VS_SOURCE_NUMBER = 2
# The generated declarations are numbered from here, so any line at or past it is ours, not the file's.
# (Mesa drops the source-string number from semantic errors, so it cannot tell the two apart.)
PRELUDE_FIRST_LINE = 100000

_COMMENT_RE = re.compile(r"//[^\n]*|/\*.*?(?:\*/|\Z)", re.S)
_VERSION_RE = re.compile(r"^[ \t]*#[ \t]*version[ \t]+(\d+)[^\n]*", re.M)
_IMG_CALL_RE = re.compile(r"\b(IMG_THIS_NORM_PIXEL|IMG_THIS_PIXEL|IMG_NORM_PIXEL|IMG_PIXEL|IMG_SIZE)\s*\(")
_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_USER_OUT_RE = re.compile(r"^[ \t]*(?:layout\s*\([^)]*\)\s*)?out\s+(?:(?:lowp|mediump|highp)\s+)?vec4\s+\w+", re.M)
_COMMON_RENAMES = [
    (re.compile(r"\bvv_FragNormCoord\b"), "isf_FragNormCoord"),
    (re.compile(r"\bvv_vertShaderInit\b"), "isf_vertShaderInit"),
    (re.compile(r"\btexture2DRectProj\b|\btexture2DProj\b"), "textureProj"),
    (re.compile(r"\btexture2DLod\b|\btexture2DRectLod\b"), "textureLod"),
    (re.compile(r"\btexture2DRect\b|\btexture2D\b|\btextureCube\b|\btexture3D\b"), "texture"),
]
_FS_RENAMES = [
    (re.compile(r"\bgl_FragData\s*\[\s*0\s*\]"), "isf_FragColor"),
    (re.compile(r"\bgl_FragColor\b"), "isf_FragColor"),
    (re.compile(r"\bvarying\b"), "in"),
]
_VS_RENAMES = [
    (re.compile(r"\bvarying\b"), "out"),
    (re.compile(r"\battribute\b"), "in"),
]
# Plain identifiers in GLSL 1.10/1.20 that are keywords or reserved words in 3.30.
_NEW_KEYWORDS = re.compile(
    r"\b(sample|smooth|flat|noperspective|patch|subroutine|layout|common|partition|active|filter|resource)\b")


class TranslateError(ValueError):
    """A source-level mistake found while translating; `line` is 1-based in the .fs/.vs file."""

    def __init__(self, reason: str, line: int | None):
        self.reason = reason
        self.line = line
        super().__init__(reason)


@dataclass(frozen=True)
class Translated:
    """GL 3.3 core sources for one ISF shader."""

    fragment: str
    vertex: str


def strip_comments(src: str) -> str:
    """Blank out comments (the JSON header too), keeping every newline so line numbers stay put."""
    return _COMMENT_RE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), src)


def _split_call(src: str, open_idx: int) -> tuple[list[str], int]:
    """Arguments of the call whose '(' is at open_idx, and the index just past its ')'."""
    depth = 0
    args = []
    start = open_idx + 1
    for i in range(open_idx, len(src)):
        ch = src[i]
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
            if depth == 0:
                args.append(src[start:i])
                return args, i + 1
        elif ch == "," and depth == 1:
            args.append(src[start:i])
            start = i + 1
    raise ValueError("unbalanced parentheses")


def _replace_img_calls(src: str) -> str:
    """IMG_PIXEL & co. become plain `texture` calls. Innermost calls first (they start later)."""
    starts = [m for m in _IMG_CALL_RE.finditer(src)]
    for m in reversed(starts):
        func = m.group(1)
        line = src.count("\n", 0, m.start()) + 1
        try:
            args, end = _split_call(src, m.end() - 1)
        except ValueError:
            raise TranslateError(f"{func}( is never closed", line) from None
        args = [a.strip() for a in args]
        img = args[0] if args else ""
        if not _IDENT_RE.match(img):
            raise TranslateError(f"{func}: the first argument must be an image name, got {img!r}", line)
        n = len(args)
        if func in ("IMG_THIS_PIXEL", "IMG_THIS_NORM_PIXEL"):
            if n != 1:
                raise TranslateError(f"{func} takes 1 argument (an image), got {n}", line)
            new = f"texture({img}, isf_FragNormCoord)"
        elif func == "IMG_SIZE":
            if n != 1:
                raise TranslateError(f"IMG_SIZE takes 1 argument (an image), got {n}", line)
            new = f"vec2(textureSize({img}, 0))"
        else:
            if n not in (2, 3):
                raise TranslateError(f"{func} takes 2 or 3 arguments (image, coordinate[, bias]), got {n}", line)
            coord = args[1] if func == "IMG_NORM_PIXEL" else f"({args[1]}) / vec2(textureSize({img}, 0))"
            bias = f", {args[2]}" if n == 3 else ""
            new = f"texture({img}, {coord}{bias})"
        old = src[m.start():end]
        new += "\n" * (old.count("\n") - new.count("\n"))
        src = src[:m.start()] + new + src[end:]
    return src


def _prepare(src: str, renames) -> str:
    code = strip_comments(src)
    versions = [int(v) for v in _VERSION_RE.findall(code)]
    code = _VERSION_RE.sub("", code)
    if not versions or versions[0] < 130:
        code = _NEW_KEYWORDS.sub(r"isf_kw_\1", code)
    for pat, new in _COMMON_RENAMES + renames:
        code = pat.sub(new, code)
    return _replace_img_calls(code)


def declarations(shader: "ISFShader", pass_index: int | None = None) -> str:
    """Uniforms shared by both stages: ISF built-ins, inputs, samplers and their VVISF-style size uniforms.

    With `pass_index`, PASSINDEX is a compile-time constant: llvmpipe runs both sides of a branch on a
    uniform, so a 6-pass shader would pay every pass's texture taps in every pass; a constant lets the
    compiler drop the other passes' code.
    """
    passindex = "uniform int PASSINDEX;" if pass_index is None else f"const int PASSINDEX = {int(pass_index)};"
    lines = [
        passindex, "uniform vec2 RENDERSIZE;", "uniform float TIME;", "uniform float TIMEDELTA;",
        "uniform vec4 DATE;", "uniform int FRAMEINDEX;",
    ]
    for i in shader.inputs:
        if not i.is_image:
            lines.append(f"uniform {i.glsl_type} {i.name};")
    for name in shader.image_names:
        lines.append(f"uniform sampler2D {name}; uniform vec2 _{name}_imgSize; uniform vec4 _{name}_imgRect; "
                     f"uniform bool _{name}_flip;")
    return "\n".join(lines) + "\n"


_VERT_INIT = """in vec4 VERTEXDATA;
out vec2 isf_FragNormCoord;
void isf_vertShaderInit() {
    gl_Position = vec4(VERTEXDATA.xy, 0.0, 1.0);
    isf_FragNormCoord = VERTEXDATA.xy * 0.5 + 0.5;
}
"""


def uses_passindex(shader: "ISFShader") -> bool:
    """Whether the code reads PASSINDEX (if not, one program serves every pass)."""
    code = strip_comments(shader.fragment_source) + strip_comments(shader.vertex_source or "")
    return re.search(r"\bPASSINDEX\b", code) is not None


def translate(shader: "ISFShader", pass_index: int | None = None) -> Translated:
    """GL 3.3 core fragment and vertex sources (for one pass when `pass_index` is given).

    Raises ISFError for source-level mistakes.
    """
    decl = declarations(shader, pass_index)
    try:
        body = _prepare(shader.fragment_source, _FS_RENAMES)
    except TranslateError as exc:
        raise ISFError(shader.file_name, exc.reason, exc.line) from None
    out_decl = "" if _USER_OUT_RE.search(body) else "out vec4 isf_FragColor;\n"
    fragment = (f"{GLSL_VERSION}\n#line {PRELUDE_FIRST_LINE} 0\n{decl}in vec2 isf_FragNormCoord;\n{out_decl}"
                f"#line 1 {FS_SOURCE_NUMBER}\n{body}")
    if shader.vertex_source is None:
        vertex = (f"{GLSL_VERSION}\n#line {PRELUDE_FIRST_LINE} 0\n{decl}{_VERT_INIT}"
                  "void main() { isf_vertShaderInit(); }\n")
    else:
        try:
            vbody = _prepare(shader.vertex_source, _VS_RENAMES)
        except TranslateError as exc:
            raise ISFError(shader.vertex_file_name, exc.reason, exc.line) from None
        vertex = f"{GLSL_VERSION}\n#line {PRELUDE_FIRST_LINE} 0\n{decl}{_VERT_INIT}#line 1 {VS_SOURCE_NUMBER}\n{vbody}"
    return Translated(fragment, vertex)


# ------------------------------------------------------------------------------------- error mapping

# Mesa: "1:12(5): error: ..."; NVIDIA: "1(12) : error C0000: ..."; AMD/Apple/ANGLE: "ERROR: 1:12: ..."
_ERROR_PATTERNS = [
    re.compile(r"^\s*(\d+):(\d+)\((\d+)\):\s*(.*)$"),
    re.compile(r"^\s*(\d+)\((\d+)\)\s*:\s*(.*)$"),
    re.compile(r"^\s*(?:ERROR|WARNING):\s*(\d+):(\d+):\s*(.*)$"),
]


@dataclass(frozen=True)
class CompileReport:
    """A driver log rewritten with file:line positions; `line` is the first error line in the .fs (or None)."""

    message: str
    line: int | None


def map_compile_error(log_text: str, shader: "ISFShader") -> CompileReport:
    """Rewrite a GLSL compiler/linker log so positions name the .fs/.vs file and its real line numbers."""
    files = {"fragment_shader": (shader.file_name, shader.fragment_source),
             "vertex_shader": (shader.vertex_file_name, shader.vertex_source or "")}
    section = "fragment_shader"
    out: list[str] = []
    first_line = None
    for raw in log_text.splitlines():
        text = raw.strip()
        if text in files:
            section = text
            continue
        if not text or set(text) <= {"="} or text in ("GLSL Compiler failed", "GLSL Linker failed"):
            continue
        mapped = None
        for pat in _ERROR_PATTERNS:
            m = pat.match(raw)
            if m:
                line, msg = int(m.group(2)), m.group(m.lastindex)
                fname, source = files[section]
                if line >= PRELUDE_FIRST_LINE or (section == "vertex_shader" and shader.vertex_source is None):
                    mapped = f"(generated ISF declarations, {section}):{line % PRELUDE_FIRST_LINE}: {msg}"
                    break
                mapped = f"{fname}:{line}: {msg}"
                src_lines = source.splitlines()
                if 1 <= line <= len(src_lines):
                    mapped += f"\n    {line} | {src_lines[line - 1].strip()}"
                if section == "fragment_shader" and first_line is None:
                    first_line = line
                break
        out.append(mapped if mapped is not None else text)
    message = "\n".join(out) if out else log_text.strip()
    return CompileReport(message, first_line)
