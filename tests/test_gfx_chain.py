"""The effect chain on real GL: golden images, compile errors, missing files, audio textures, buffer reuse."""

import os
from pathlib import Path

import numpy as np
import pytest
from gl_helpers import GOLDEN, SHADERS, assert_close, gl, isf, random_image, render, shipped  # noqa: F401

from vj.audio.features import Features
from vj.gfx import shadertest
from vj.gfx.chain import Chain, fit_viewport, read_rgb
from vj.gfx.png import read_png, write_png
from vj.gfx.upload import TextureUploader
from vj.gfx.watch import ShaderWatcher

FILL = '{"INPUTS": [{"NAME": "inputImage", "TYPE": "image"}, {"NAME": "level", "TYPE": "float", "DEFAULT": 0.5}]}'
GOOD = "void main() {\n    gl_FragColor = vec4(level, 0.25, 0.0, 1.0);\n}\n"
BROKEN = "void main() {\n    vec4 c = vec4(level);\n    gl_FragColor = c + undefinedThing;\n}\n"


# Golden bounds are in 8-bit levels. GL leaves the precision of bilinear filtering to the implementation: llvmpipe
# weights unorm8 texels in 8 bits, and on CPUs without SSE4.1 (x86-64 baseline, QEMU's default CPU) it truncates, so
# each filtered fetch of an 8-bit image reads up to 1.3 levels low, 0.5 on average (0.8 and 0 with SSE4.1).
TRUNCATED_FETCH_BIAS, FETCH_ERR = 0.5, 1.3


def check_golden(actual: np.ndarray, name: str, tmp_path: Path, max_mean: float, max_abs: int):
    """Compare with tests/golden/<name>.png; VJ_UPDATE_GOLDEN=1 writes it instead."""
    path = GOLDEN / f"{name}.png"
    if os.environ.get("VJ_UPDATE_GOLDEN") == "1":
        GOLDEN.mkdir(exist_ok=True)
        write_png(path, actual)
        pytest.skip(f"wrote {path}; look at it before committing")
    if not path.exists():
        pytest.fail(f"golden image {path} is missing: run `VJ_UPDATE_GOLDEN=1 .venv/bin/pytest "
                    f"tests/test_gfx_chain.py` to create it, and look at it before committing")
    expected = read_png(path)[:, :, :3]
    assert expected.shape == actual.shape, f"{name}: golden is {expected.shape}, render is {actual.shape}"
    diff = np.abs(actual.astype(int) - expected.astype(int))
    if diff.mean() > max_mean or diff.max() > max_abs:
        write_png(tmp_path / f"{name}.actual.png", actual)
        pytest.fail(f"{name}: differs from the golden image (mean {diff.mean():.2f} > {max_mean} or max "
                    f"{diff.max()} > {max_abs}); this render is in {tmp_path / (name + '.actual.png')}; "
                    f"if the change is intended, run with VJ_UPDATE_GOLDEN=1")


def test_golden_typical_chain(gl, tmp_path):
    image = shadertest.test_pattern(64, 36)
    effects = [("kaleido", shipped("kaleidoscope")), ("grade", shipped("colorgrade")),
               ("bloom", shipped("bloom")), ("ca", shipped("chromatic"))]
    frame = {"/fx/kaleido/sides": 5.0, "/fx/kaleido/spin": 0.0, "/fx/grade/paletteMix": 0.35,
             "/fx/grade/palette": 1, "/fx/grade/saturation": 1.3, "/fx/bloom/threshold": 0.4,
             "/fx/ca/amount": 0.02}
    (out,) = render(gl, effects, image, frame)
    # The longest path has 8 filtered fetches of 8-bit images: kaleido, ca and bloom's 6 (bright pass, down4, down8,
    # blurH, blurV, the final one), the last 6 scaled by intensity 1.2. Mean: their bias, 0.5 * (2 + 6 * 1.2) = 4.6.
    # Max: their error, 1.3 * 9.2 = 12, doubled where bloom's smoothstep (slope 7.5 at the threshold, averaged by
    # the down passes) meets it. Measured worst: mean 2.1, max 7 (no SSE4.1), 0 with it. A missing effect, swapped
    # channels or a 1-px shift give max 52..230 (a missing ca: mean 4.1, max 100).
    bias, err = TRUNCATED_FETCH_BIAS * (2 + 6 * 1.2), FETCH_ERR * (2 + 6 * 1.2)
    check_golden(out, "chain-kaleido-grade-bloom-chromatic-64x36", tmp_path, max_mean=bias, max_abs=round(2 * err))


def test_golden_feedback_chain_over_frames(gl, tmp_path):
    image = shadertest.test_pattern(64, 36)
    effects = [("tunnel", shipped("tunnel")), ("feedback", shipped("feedback")), ("mirror", shipped("mirror"))]
    frame = {"/fx/tunnel/wet": 0.6, "/fx/mirror/mode": 1}
    out = render(gl, effects, image, [frame] * 6)[-1]
    # One filtered 8-bit fetch (tunnel, wet 0.6: 0.8 level), feedback's fp16 buffer over 6 frames (<= 0.5 level),
    # the render's and the golden's rounding (0.5 each): max 3, mean bias 0.3 + 0.5 < 1. Measured worst: mean 0.06,
    # max 1 (no SSE4.1). Rendering 5 or 7 frames instead of 6 gives mean 4.5..4.9, max 30..33.
    check_golden(out, "chain-tunnel-feedback-mirror-6frames-64x36", tmp_path, max_mean=1.0, max_abs=3)


def test_broken_shader_keeps_last_good_program_and_reports_the_line(gl, tmp_path, caplog):
    path = tmp_path / "fill.fs"
    path.write_text(f"/*{FILL}*/\n{GOOD}")
    chain = Chain(gl, 8, 4)
    up = TextureUploader(gl)
    try:
        tex = up.upload(np.zeros((4, 8, 3), np.uint8))
        chain.set_effects([("fill", path)])
        assert chain.errors == {}
        good = read_rgb(chain.render(tex, {}))
        assert_level(good[0, 0], (0.5, 0.25, 0.0))
        path.write_text(f"/*{FILL}*/\n{BROKEN}")   # the error is on line 4 of the file
        assert chain.reload("fill", path) is False
        err = chain.errors["fill"]
        assert "fill.fs:4:" in err and "undefinedThing" in err, err
        assert "fill.fs:4:" in caplog.text
        still = read_rgb(chain.render(tex, {"/fx/fill/level": 1.0}))
        assert_level(still[0, 0], (1.0, 0.25, 0.0), "the last good program keeps running")
        # The same through set_effects with a parsed shader, and recovery once fixed.
        chain.set_effects([("fill", isf(BROKEN, FILL, "fill"))])
        assert "fill.fs:4:" in chain.errors["fill"]
        path.write_text(f"/*{FILL}*/\n{GOOD}")
        assert chain.reload("fill", path) is True
        assert chain.errors == {}
    finally:
        chain.release()
        up.release()


def assert_level(pixel: np.ndarray, rgb: tuple, what: str = "pixel") -> None:
    """An 8-bit pixel within one 8-bit rounding (0.5 level) of a float colour; 0.5 * 255 is a tie: 127 or 128."""
    diff = np.abs(pixel.astype(float) - 255 * np.asarray(rgb))
    assert diff.max() <= 0.5 + 1e-3, f"{what}: {tuple(pixel)} is not {tuple(255 * np.asarray(rgb))} within 0.5"


def _is_fallback_checker(img: np.ndarray) -> bool:
    magenta = (img == (255, 0, 255)).all(axis=2)
    black = (img == (0, 0, 0)).all(axis=2)
    return bool((magenta | black).all() and magenta.any() and black.any())


def test_missing_shader_shows_the_fallback_pattern(gl, tmp_path):
    chain = Chain(gl, 64, 36)
    up = TextureUploader(gl)
    try:
        tex = up.upload(random_image(36, 64))
        chain.set_effects([("grade", shipped("colorgrade")), ("gone", tmp_path / "nope.fs")])
        assert "not found" in chain.errors["gone"]
        out = read_rgb(chain.render(tex, {}))
        assert _is_fallback_checker(out)
    finally:
        chain.release()
        up.release()


def test_shader_that_never_compiled_shows_the_fallback_with_its_line(gl):
    chain = Chain(gl, 32, 16)
    up = TextureUploader(gl)
    try:
        chain.set_effects([("bad", isf(BROKEN, FILL, "bad"))])
        assert "bad.fs:4:" in chain.errors["bad"]
        assert _is_fallback_checker(read_rgb(chain.render(up.upload(random_image(16, 32)), {})))
    finally:
        chain.release()
        up.release()


def test_empty_chain_passes_the_source_through_at_chain_size(gl):
    img = random_image(4, 8, seed=3)
    (out,) = render(gl, [], img)
    # Exact: texel-centre fetches of integer levels carry ~1e-5 level of float error, 0.5 from any rounding boundary.
    assert_close(out, img, atol=0, what="empty chain")
    (big,) = render(gl, [], img, size=(16, 8))
    assert big.shape == (8, 16, 3)


def test_resize_and_buffers_are_reused(gl):
    chain = Chain(gl, 32, 16)
    up = TextureUploader(gl)
    try:
        chain.set_effects([("bloom", shipped("bloom")), ("fb", shipped("feedback"))])
        seen, targets = set(), None
        for i in range(6):
            tex = up.upload(random_image(9, 16, seed=i))
            out = chain.render(tex, {}, time_s=i / 30, dt_s=1 / 30)
            seen.add(out.glo)
            now = {n: tuple(t.glo for t in tgt.textures) for e in ("bloom", "fb")
                   for n, tgt in chain.effect(e).targets.items()}
            assert targets is None or now == targets, "pass targets were reallocated between frames"
            targets = now
        assert len(seen) <= 2 and up.texture.glo == tex.glo
        chain.resize(40, 20)
        assert chain.render(tex, {}).size == (40, 20)
        assert chain.effect("fb").targets["feedbackBuffer"].size == (40, 20)
    finally:
        chain.release()
        up.release()


def test_audio_and_fft_textures_reach_the_shader(gl):
    shader = isf("""void main() {
    float x = isf_FragNormCoord.x;
    gl_FragColor = vec4(IMG_NORM_PIXEL(fft, vec2(x, 0.5)).r, IMG_NORM_PIXEL(wave, vec2(x, 0.5)).r,
                        IMG_NORM_PIXEL(fft4, vec2(x, 0.5)).r, 1.0);
}""", '{"INPUTS": [{"NAME": "fft", "TYPE": "audioFFT"}, {"NAME": "wave", "TYPE": "audio"},'
      ' {"NAME": "fft4", "TYPE": "audioFFT", "MAX": 4}]}', "scope")
    spectrum = np.array([0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0], np.float32)
    waveform = np.array([-1.0, -0.5, 0.0, 0.5, 1.0, 0.5, 0.0, -0.5], np.float32)
    features = Features(spectrum=spectrum, waveform=waveform)
    (out,) = render(gl, [("scope", shader)], np.zeros((2, 8, 3), np.uint8), features=features)
    row = out[0].astype(float) / 255
    # 1/255: the output's 8-bit rounding (0.5 level) plus the audio textures' precision (fp16 at worst: 0.06 level).
    np.testing.assert_allclose(row[:, 0], spectrum, atol=1 / 255)
    np.testing.assert_allclose(row[:, 1], 0.5 + 0.5 * waveform, atol=1 / 255)
    # MAX 4: pairs of bands averaged into 4 columns, each covering two output pixels (linear filtered).
    pairs = spectrum.reshape(4, 2).mean(axis=1)
    np.testing.assert_allclose(row[[0, 7], 2], pairs[[0, 3]], atol=1 / 255)


def test_other_image_inputs_get_the_model_frame(gl):
    img = random_image(4, 8, seed=5)
    other = isf("void main() { gl_FragColor = IMG_THIS_PIXEL(modelImage); }",
                '{"INPUTS": [{"NAME": "inputImage", "TYPE": "image"}, {"NAME": "modelImage", "TYPE": "image"}]}',
                "other")
    (out,) = render(gl, [("neg", shipped("flash")), ("other", other)], img, {"/fx/neg/invert": 1.0})
    assert_close(out, img, atol=0, what="second image input")      # exact: texel-centre fetches of integer levels
    (neg,) = render(gl, [("neg", shipped("flash"))], img, {"/fx/neg/invert": 1.0})
    assert_close(neg, 255 - img, atol=1, what="inverted")   # float32 arithmetic, one 8-bit rounding: < 1 level


def test_bad_frame_values_fall_back_to_defaults(gl):
    img = random_image(4, 8, seed=6)
    frame = {"/fx/grade/saturation": "lots", "/fx/grade/palette": None, "/fx/grade/unknown": 3}
    (out,) = render(gl, [("grade", shipped("colorgrade"))], img, frame)
    # Its YIQ matrices are inverses only to 1.5e-3 (0.4 level), then one 8-bit rounding: 1 level.
    assert_close(out, img, atol=1, what="defaults")


def test_repeated_effect_names_are_refused(gl):
    chain = Chain(gl, 8, 4)
    try:
        with pytest.raises(ValueError, match="repeated: a"):
            chain.set_effects([("a", shipped("flash")), ("a", shipped("mirror"))])
    finally:
        chain.release()


def test_unchanged_effects_are_kept_with_their_buffers(gl):
    chain = Chain(gl, 16, 8)
    try:
        chain.set_effects([("fb", shipped("feedback")), ("bloom", shipped("bloom"))])
        first, bloom = chain.effect("fb"), chain.effect("bloom")
        chain.set_effects([("grade", shipped("colorgrade")), ("fb", shipped("feedback")), ("bloom", shipped("bloom"))])
        assert chain.effect("fb") is first and chain.effect("bloom") is bloom
        assert [p.path for p in chain.params()][:1] == ["/fx/grade/hueShift"]
    finally:
        chain.release()


def test_upload_orientation_formats_and_reuse(gl):
    up = TextureUploader(gl)
    try:
        img = random_image(5, 7, seed=7)
        tex = up.upload(img)
        assert tex.dtype == "f1" and tex.size == (7, 5)
        assert_close(read_rgb(tex), img, atol=0, what="uint8 round trip, row 0 at the top")   # the same bytes
        tex2 = up.upload(img.astype(np.float32) / 255.0)
        assert_close(read_rgb(tex2), img, atol=1, what="float32 upload")    # k/255 in float32, rounded once
        glo = tex2.glo
        assert up.upload(img.astype(np.float32) / 255.0).glo == glo
        assert up.upload(random_image(6, 7)).size == (7, 6)
        with pytest.raises(ValueError):
            up.upload(np.zeros((4, 4), np.uint8))
    finally:
        up.release()


def test_output_draws_into_the_bound_framebuffer(gl):
    chain = Chain(gl, 8, 4)
    up = TextureUploader(gl)
    target = gl.texture((8, 4), 4)
    fbo = gl.framebuffer([target])
    try:
        img = random_image(4, 8, seed=8)
        out = chain.render(up.upload(img), {})
        fbo.use()
        chain.output(out)
        assert_close(read_rgb(target), img, atol=0, what="output blit")    # exact: texel-centre copy
        assert fit_viewport(16, 9, 100, 100) == (0, 22, 100, 56)
    finally:
        fbo.release()
        target.release()
        chain.release()
        up.release()


def test_shadertest_reports_pass_and_fail(gl, tmp_path):
    (tmp_path / "fill.fs").write_text(f"/*{FILL}*/\n{GOOD}")
    (tmp_path / "broken.fs").write_text(f"/*{FILL}*/\n{BROKEN}")
    (tmp_path / "badjson.fs").write_text("/*{\"INPUTS\": [}*/\n")
    results = {r.name: r for r in shadertest.test_folder(tmp_path, frames=2, size=(16, 8), ctx=gl)}
    assert results["fill"].ok
    assert not results["broken"].ok and "broken.fs:4:" in results["broken"].error
    assert not results["badjson"].ok and "badjson.fs:1:" in results["badjson"].error
    lines = []
    assert shadertest.main(tmp_path, frames=1, size=(16, 8), out=lines.append, ctx=gl) == 1
    assert "PASS fill" in lines and any(s.startswith("FAIL broken: broken.fs:4:") for s in lines)


def test_shadertest_passes_every_shipped_shader(gl):
    lines = []
    assert shadertest.main(SHADERS, frames=2, size=(32, 18), out=lines.append, ctx=gl) == 0, "\n".join(lines)
    assert sum(s.startswith("PASS ") for s in lines) == len(list(SHADERS.glob("*.fs")))


def test_watcher_reports_edited_files(tmp_path):
    path = tmp_path / "a.fs"
    path.write_text("one")
    w = ShaderWatcher(interval_s=0.0)
    w.watch({"a": path})
    assert w.poll() == []
    path.write_text("two, longer")
    assert w.poll() == [("a", path)]
    assert w.poll() == []


def test_imported_images_and_sparse_long_values_reach_the_shader(gl, tmp_path):
    logo = np.zeros((2, 2, 3), np.uint8)
    logo[0, :] = (255, 0, 0)        # top row red, bottom row blue
    logo[1, :] = (0, 0, 255)
    write_png(tmp_path / "logo.png", logo)
    (tmp_path / "stamp.fs").write_text("""/*{
        "INPUTS": [{"NAME": "sparse", "TYPE": "long", "VALUES": [1, 4, 9], "LABELS": ["a", "b", "c"], "DEFAULT": 4}],
        "IMPORTED": {"logo": {"PATH": "logo.png"}}
    }*/
    void main() {
        vec4 c = IMG_NORM_PIXEL(logo, vec2(0.5, isf_FragNormCoord.y > 0.5 ? 0.75 : 0.25));
        gl_FragColor = vec4(c.r, float(sparse) / 10.0, c.b, 1.0);
    }
    """)
    from vj.gfx.isf import load_isf
    shader = load_isf(tmp_path / "stamp.fs")
    default, last = render(gl, [("stamp", shader)], np.zeros((4, 4, 3), np.uint8), [{}, {"/fx/stamp/sparse": 2}])
    assert_level(default[0, 0], (1.0, 0.4, 0.0))
    assert_level(default[-1, 0], (0.0, 0.4, 1.0))
    assert_level(last[0, 0], (1.0, 0.9, 0.0))              # 229.5: a tie, and 9.0 / 10.0 may be 1 ulp either side


def test_reloading_a_feedback_effect_keeps_its_buffer(gl):
    chain = Chain(gl, 16, 8)
    up = TextureUploader(gl)
    try:
        chain.set_effects([("fb", shipped("feedback"))])
        chain.render(up.upload(random_image(8, 16)), {})
        before = chain.effect("fb").targets["feedbackBuffer"].textures[0].glo
        edited = shipped("feedback")
        from vj.gfx.isf import parse_isf
        edited = parse_isf(edited.fragment_source.replace("vec4 cur =", "vec4 cur  ="), "feedback")
        assert chain.reload("fb", edited)
        assert chain.effect("fb").targets["feedbackBuffer"].textures[0].glo == before
    finally:
        chain.release()
        up.release()


def test_bench_command_prints_a_line_per_shader(gl, tmp_path):
    from vj.gfx.bench import bench_folder
    (tmp_path / "fill.fs").write_text(f"/*{FILL}*/\n{GOOD}")
    lines = []
    results = bench_folder(tmp_path, size=(32, 18), frames=1, chains=[("fill", "fill")], out=lines.append,
                           ctx=gl)
    assert set(results) == {"(empty chain: source scaled to output)", "fill", "fill + fill"}
    assert all(wall >= best > 0 and cpu >= 0 for wall, best, cpu in results.values())
    assert any(line.endswith("  fill") for line in lines)


def test_hot_reload_of_a_vanished_file_keeps_the_last_good_version(gl, tmp_path):
    path = tmp_path / "fill.fs"
    path.write_text(f"/*{FILL}*/\n{GOOD}")
    chain = Chain(gl, 8, 4)
    up = TextureUploader(gl)
    try:
        chain.set_effects([("fill", path)])
        path.unlink()
        assert chain.reload("fill", path) is False and "not found" in chain.errors["fill"]
        out = read_rgb(chain.render(up.upload(np.zeros((4, 8, 3), np.uint8)), {}))
        assert_level(out[0, 0], (0.5, 0.25, 0.0))
    finally:
        chain.release()
        up.release()
