"""ISF loading: the JSON header, params, errors with file and line, and files written for other ISF hosts."""

import numpy as np
import pytest
from gl_helpers import SHADERS, assert_close, gl, isf, render  # noqa: F401  (gl: the fixture)

from vj.gfx import glsl
from vj.gfx.isf import ISFError, effect_name, load_isf, parse_isf

# Written the way ISF Editor / VDMX files are: GLSL 1.20, gl_FragColor, texture2D, varying, vv_ names,
# a .vs with isf_vertShaderInit(), PASSES with TARGET/PERSISTENT/FLOAT and WIDTH/HEIGHT expressions.
FOREIGN_FS = """/*{
\t"CREDIT": "by somebody else",
\t"ISFVSN": "2",
\t"CATEGORIES": ["Blur"],
\t"DESCRIPTION": "test: half-size pass, float accumulator, custom vertex shader",
\t"INPUTS": [
\t\t{"NAME": "inputImage", "TYPE": "image"},
\t\t{"NAME": "blurAmount", "TYPE": "float", "MIN": 1.0, "MAX": 4.0, "DEFAULT": 2.0},
\t\t{"NAME": "decay", "TYPE": "float", "DEFAULT": 0.5},
\t\t{"NAME": "tint", "TYPE": "color", "DEFAULT": [1.0, 0.5, 0.25, 1.0]},
\t\t{"NAME": "where", "TYPE": "point2D", "DEFAULT": [0.5, 0.5], "MIN": [0, 0], "MAX": [1, 1]}
\t],
\t"PASSES": [
\t\t{"TARGET": "halfSize", "WIDTH": "floor($WIDTH/$blurAmount)", "HEIGHT": "floor($HEIGHT/$blurAmount)"},
\t\t{"TARGET": "accum", "PERSISTENT": true, "FLOAT": true},
\t\t{}
\t]
}*/
#version 120
#ifdef GL_ES
precision mediump float;
#endif

varying vec2 left_coord;

void main() {
\tif (PASSINDEX == 0)\t{
\t\tgl_FragColor = IMG_THIS_NORM_PIXEL(inputImage);
\t}
\telse if (PASSINDEX == 1)\t{
\t\tvec4 prev = IMG_NORM_PIXEL(accum, vv_FragNormCoord);
\t\tvec4 small = IMG_PIXEL(halfSize, vv_FragNormCoord * IMG_SIZE(halfSize));
\t\tvec4 sample = small;   // `sample` is a keyword in GLSL 3.30 but not in 1.20
\t\tgl_FragColor = (FRAMEINDEX == 0) ? sample : mix(sample, prev, decay);
\t}
\telse\t{
\t\tgl_FragColor = texture2D(accum, left_coord) * tint;
\t}
}
"""
FOREIGN_VS = """varying vec2 left_coord;

void main() {
\tvv_vertShaderInit();
\tleft_coord = isf_FragNormCoord;
}
"""


def test_foreign_host_style_file_runs_unchanged(gl, tmp_path):
    (tmp_path / "Soft Accumulate.fs").write_text(FOREIGN_FS)
    (tmp_path / "Soft Accumulate.vs").write_text(FOREIGN_VS)
    shader = load_isf(tmp_path / "Soft Accumulate.fs")
    assert shader.name == "Soft_Accumulate"
    assert [p.target for p in shader.passes] == ["halfSize", "accum", None]
    assert shader.passes[1].persistent and shader.passes[1].float
    assert shader.vertex_source is not None
    colour = np.array([200, 100, 40], np.uint8)
    image = np.broadcast_to(colour, (18, 32, 3)).copy()
    outs = render(gl, [("soft", shader)], image, [{}, {}, {"/fx/soft/blurAmount": 4.0}])
    expected = np.broadcast_to(np.round(colour * np.array([1.0, 0.5, 0.25])).astype(np.uint8), (18, 32, 3))
    # A flat picture: every fetch reads the same level, the fp16 accumulator holds it within 0.06 level and the
    # products by the tint are whole levels (200, 50, 10): exact. Measured exact on every CPU setting.
    for out in outs:
        assert_close(out, expected, atol=0, what="foreign shader output")


def test_expression_sizes_follow_inputs(gl):
    from vj.gfx.chain import Chain
    from vj.gfx.upload import TextureUploader
    shader = parse_isf(FOREIGN_FS, "soft", vertex_source=FOREIGN_VS)
    chain = Chain(gl, 40, 20)
    up = TextureUploader(gl)
    try:
        chain.set_effects([("soft", shader)])
        tex = up.upload(np.zeros((20, 40, 3), np.uint8))
        chain.render(tex, {})
        assert chain.effect("soft").targets["halfSize"].size == (20, 10)
        chain.render(tex, {"/fx/soft/blurAmount": 4.0})
        assert chain.effect("soft").targets["halfSize"].size == (10, 5)
        assert chain.effect("soft").targets["accum"].size == (40, 20)
        assert chain.effect("soft").targets["accum"].dtype == "f2"
    finally:
        chain.release()
        up.release()


def test_params_from_inputs():
    shader = isf("void main() { gl_FragColor = vec4(0.0); }", """{
        "INPUTS": [
            {"NAME": "inputImage", "TYPE": "image"},
            {"NAME": "amount", "TYPE": "float", "MIN": 0.0, "MAX": 2.0, "DEFAULT": 0.5, "LABEL": "Amount"},
            {"NAME": "nodefault", "TYPE": "float", "MIN": -1.0, "MAX": 1.0},
            {"NAME": "on", "TYPE": "bool", "DEFAULT": true},
            {"NAME": "mode", "TYPE": "long", "VALUES": [0, 1, 2], "LABELS": ["a", "b", "c"], "DEFAULT": 1},
            {"NAME": "sparse", "TYPE": "long", "VALUES": [1, 4, 9], "LABELS": ["one", "four", "nine"], "DEFAULT": 4},
            {"NAME": "count", "TYPE": "long", "MIN": 2, "MAX": 8, "DEFAULT": 3},
            {"NAME": "tint", "TYPE": "color", "DEFAULT": [1.0, 0.5, 0.0]},
            {"NAME": "pos", "TYPE": "point2D", "DEFAULT": [0.25, 0.75], "MIN": [0, 0], "MAX": [1, 1]},
            {"NAME": "hit", "TYPE": "event"},
            {"NAME": "wave", "TYPE": "audio"},
            {"NAME": "fft", "TYPE": "audioFFT", "MAX": 16}
        ]}""")
    params = {p.path: p for p in shader.params("/fx/x")}
    assert set(params) == {f"/fx/x/{n}" for n in
                           ("amount", "nodefault", "on", "mode", "sparse", "count", "tint", "pos", "hit")}
    a = params["/fx/x/amount"]
    assert (a.kind, a.default, a.min, a.max, a.description) == ("float", 0.5, 0.0, 2.0, "Amount")
    assert params["/fx/x/nodefault"].default == -1.0
    assert (params["/fx/x/on"].kind, params["/fx/x/on"].default) == ("bool", True)
    m = params["/fx/x/mode"]
    assert (m.kind, m.default, m.min, m.max, m.labels) == ("enum", 1, 0, 2, ("a", "b", "c"))
    s = params["/fx/x/sparse"]   # not consecutive: the param is the index, the uniform gets VALUES[index]
    assert (s.kind, s.default, s.min, s.max, s.labels) == ("enum", 1, 0, 2, ("one", "four", "nine"))
    assert shader.input("sparse").uniform_value(2) == 9
    assert s.coerce("nine") == 2
    c = params["/fx/x/count"]
    assert (c.kind, c.default, c.min, c.max) == ("int", 3, 2, 8)
    assert params["/fx/x/tint"].default == (1.0, 0.5, 0.0, 1.0)
    p = params["/fx/x/pos"]
    assert (p.kind, p.default, p.min, p.max) == ("point2d", (0.25, 0.75), 0.0, 1.0)
    assert params["/fx/x/hit"].kind == "event"
    assert shader.input("fft").samples == 16


def test_every_shipped_shader_declares_params_under_its_name():
    for path in sorted(SHADERS.glob("*.fs")):
        shader = load_isf(path)
        assert shader.credit == "vj" and shader.description and shader.categories, path.name
        assert shader.isf_version == "2.0", path.name
        for p in shader.params(f"/fx/{shader.name}"):
            assert p.path.startswith(f"/fx/{path.stem}/")
            if p.kind == "float":
                assert p.min < p.max and p.min <= p.default <= p.max, p.path


@pytest.mark.parametrize("text, line, words", [
    ("/*{\n  \"INPUTS\": [\n    {\"NAME\": \"a\", \"TYPE\": \"float\"},\n  ]\n}*/\nvoid main(){}", 4,
     "bad JSON"),
    ("void main(){}\n", 1, "no JSON header"),
    ("/*{\"INPUTS\": [\n {\"NAME\": \"a\", \"TYPE\": \"float\"},\n {\"NAME\": \"b\", \"TYPE\": \"vec3\"}\n]}*/\n",
     3, "unknown TYPE 'vec3'"),
    ("/*{\"INPUTS\": [],\n \"PASSES\": [\n  {\"TARGET\": \"x\",\n   \"WIDTH\": \"__import__('os')\"}]}*/\n", 4,
     "not allowed"),
    ("/*{\"PASSES\": [{\"TARGET\": \"b\", \"WIDTH\": \"$WIDTH.real\"}]}*/\n", 1, "not allowed"),
    ("/*{\"PASSES\": [{\"TARGET\": \"b\", \"WIDTH\": \"$nothere / 2\"}]}*/\n", 1, "unknown name"),
    ("/*{\"PASSES\": [\n{\"TARGET\": \"half\"}]}*/\n", 2, "reserved GLSL word"),
    ("/*{\"INPUTS\": [{\"NAME\": \"a\", \"TYPE\": \"float\", \"DEFAULT\": \"big\"}]}*/\n", 1, "DEFAULT must be"),
    ("/*{\"INPUTS\": [{\"NAME\": \"a\", \"TYPE\": \"float\"}, {\"NAME\": \"a\", \"TYPE\": \"bool\"}]}*/\n", 1,
     "declared twice"),
    ("/*{\"INPUTS\": [{\"NAME\": \"img\", \"TYPE\": \"image\"}]}*/\nvoid main() {\n"
     "  gl_FragColor = IMG_PIXEL(img);\n}\n", 3, "IMG_PIXEL takes 2 or 3"),
    ("/*{\"INPUTS\": 5}*/\n", 1, "INPUTS must be"),
    ("[1, 2]", 1, "no JSON header"),
    ("/*[1, 2]*/", 1, "must be a JSON object"),
])
def test_errors_name_file_line_and_reason(text, line, words):
    with pytest.raises(ISFError) as info:
        parse_isf(text, "broken")
    err = info.value
    assert err.file == "broken.fs"
    assert err.line == line, str(err)
    assert words in err.reason, str(err)
    assert str(err).startswith(f"broken.fs:{line}: ")


@pytest.mark.parametrize("text, line, words", [
    ("/*{\"INPUTS\": [\n {\"NAME\": \"a\", \"TYPE\": \"float\",\n  \"VJ_FEATURE\": \"bas\"}]}*/\n", 3,
     "unknown VJ_FEATURE 'bas'"),
    ("/*{\"INPUTS\": [\n {\"NAME\": \"c\", \"TYPE\": \"color\", \"VJ_FEATURE\": \"bass\"}]}*/\n", 2,
     "needs TYPE float"),
])
def test_feature_input_errors(text, line, words):
    with pytest.raises(ISFError) as info:
        parse_isf(text, "broken")
    assert info.value.line == line and words in info.value.reason, str(info.value)


# ---- engine-fed features: vj_* uniforms and VJ_FEATURE inputs ----------------------------------------------

FEATURE_FS = """
uniform float vj_bass;
uniform float vj_beat_phase;
uniform bool vj_beat;
void main() {
    gl_FragColor = vec4(vj_bass, vj_beat_phase, 0.5 * loud + (vj_beat ? 0.5 : 0.0), 1.0);
}
"""
FEATURE_HEADER = """{"INPUTS": [
    {"NAME": "inputImage", "TYPE": "image"},
    {"NAME": "loud", "TYPE": "float", "DEFAULT": 0.9, "MIN": 0.0, "MAX": 1.0, "VJ_FEATURE": "level"},
    {"NAME": "gain", "TYPE": "float", "DEFAULT": 1.0}
]}"""
BLACK = np.zeros((2, 4, 3), np.uint8)


def test_feature_uniforms_and_inputs_reach_the_shader(gl):
    from vj.audio.features import SILENT, Features
    shader = isf(FEATURE_FS, FEATURE_HEADER)
    # A VJ_FEATURE input is the engine's, not a param; the other one stays a param.
    assert [p.path for p in shader.params("/fx/t")] == ["/fx/t/gain"]
    assert shader.input("loud").feature == "level"
    cases = [(Features(bass=0.25, beat_phase=0.5, level=0.75, beat=True), [64, 128, 223]),
             (Features(bass=1.0, beat_phase=0.1, level=0.2, beat=False), [255, 26, 26]),
             (SILENT, [0, 0, 0])]                                         # silence: the features, not DEFAULT
    for features, rgb in cases:
        # A stray frame value for the feature-fed input is ignored.
        (out,) = render(gl, [("t", shader)], BLACK, {"/fx/t/loud": 0.1}, features=features)
        # 1 level: 127.5 and 25.5 are rounding ties (either neighbour is right); the rest rounds exactly.
        np.testing.assert_allclose(out.reshape(-1, 3), np.tile(rgb, (8, 1)), atol=1)


def test_chroma_uniform_array_reaches_the_shader(gl, caplog):
    from vj.audio.features import Features
    shader = isf("""
uniform float vj_chroma[12];
uniform vec2 vj_mid;   // wrong type: reported and left unset, the rest still works
void main() {
    int pc = int(floor(isf_FragNormCoord.x * 12.0));
    gl_FragColor = vec4(vj_chroma[pc], vj_mid.x, 0.0, 1.0);
}
""", '{"INPUTS": [{"NAME": "inputImage", "TYPE": "image"}]}')
    chroma = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 0.05])
    with caplog.at_level("WARNING"):
        (out,) = render(gl, [("t", shader)], np.zeros((1, 12, 3), np.uint8), features=Features(chroma=chroma, mid=0.5))
    np.testing.assert_allclose(out[0, :, 0], np.round(chroma * 255), atol=1)     # 25.5, 76.5, ...: ties
    assert (out[0, :, 1] == 0).all()
    assert [r.getMessage() for r in caplog.records if "vj_mid" in r.getMessage()], caplog.text


def test_translation_keeps_line_numbers_and_modernises():
    shader = parse_isf(FOREIGN_FS, "soft", vertex_source=FOREIGN_VS)
    src = glsl.translate(shader)
    body = src.fragment.split("#line 1 1\n", 1)[1]
    assert body.count("\n") == FOREIGN_FS.count("\n")
    for old in ("gl_FragColor", "texture2D", "varying", "#version 120", "vv_FragNormCoord", "IMG_"):
        assert old not in body, old
    assert src.fragment.startswith("#version 330 core\n")
    assert "isf_kw_sample" in body
    assert "out vec2 left_coord;" in src.vertex and "isf_vertShaderInit();" in src.vertex


def test_effect_name_from_file():
    assert effect_name("/x/Bad TV (v2).fs") == "Bad_TV_v2"
    assert effect_name("kaleidoscope.fs") == "kaleidoscope"
