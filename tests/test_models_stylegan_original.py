"""StyleGAN against the original code: pickles and images that NVlabs' own code made, loaded by vj.

tests/fixtures/original was written by `scripts/compare-original.py --fixtures` with the original
NVlabs stylegan2-ada-pytorch and stylegan3 code: tiny networks with every weight and buffer moved off
its initial value, pickled through NVlabs' torch_utils.persistence in a training snapshot's layout
(G, D, G_ema, augment_pipe, training_set_kwargs), each module's source replaced by a placeholder line
(no NVlabs code is committed), and G_ema(z, c, truncation_psi, noise_mode) for seeds in float32 on the
CPU, z = numpy RandomState(seed).randn(1, z_dim).
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from test_engine import ctx, engine  # noqa: F401  (fixtures: an offline engine on Mesa EGL)
from test_models_stylegan import float32_bound, one_torch_thread  # noqa: F401  (one_torch_thread: autouse)
from vj.audio.features import Features
from vj.models.registry import create_generator
from vj.models.sample import sample
from vj.models.stylegan.load import CheckpointError, load_generator
from vj.presets import PresetError, parse_preset

FIXTURES = Path(__file__).parent / "fixtures" / "original"
CASES = json.loads((FIXTURES / "cases.json").read_text())


def assert_like_original(got, want, G):
    """got is the original code's image but for another CPU's float32 summation order: float32_bound(G) of
    its RMS (~2e-4 for these nets; a wrong layer, channel, seed or truncation is off by >1e-2)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape
    rms = float(np.sqrt(np.mean(want ** 2)))
    assert rms > 0.01                                   # a picture, not a blank the comparison would pass
    np.testing.assert_allclose(got, want, rtol=0, atol=float32_bound(G) * rms)


def case_id(case):
    cls = "" if case["cls"] is None else f"-c{case['cls']}"
    return f"{case['name']}-s{case['seed']}-p{case['psi']}{cls}-{case['noise']}"


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_vj_gives_the_original_codes_image(case):
    want = np.load(FIXTURES / case["ref"])
    got = sample(FIXTURES / case["file"], seed=case["seed"], psi=case["psi"], class_idx=case["cls"],
                 noise=case["noise"])
    assert_like_original(got, want, load_generator(FIXTURES / case["file"]).G)


def test_the_cases_cover_every_family_seed_truncation_class_and_noise_mode():
    families = {load_generator(FIXTURES / f).family for f in {c["file"] for c in CASES}}
    assert families == {"stylegan2", "stylegan3-t", "stylegan3-r"}
    assert {c["psi"] for c in CASES} == {1.0, 0.6} and {c["seed"] for c in CASES} == {0, 5}
    assert {c["noise"] for c in CASES} == {"const", "none"}
    assert {c["cls"] for c in CASES if c["name"].startswith("sg2ada")} == {0, 2}


def test_the_inputs_matter():
    """Each knob changes the original's image, so matching all cases means matching each knob."""
    ref = {case_id(c): np.load(FIXTURES / c["ref"]) for c in CASES}
    differ = lambda a, b: float(np.abs(ref[a] - ref[b]).max()) > 1e-3      # noqa: E731
    assert differ("sg3-t-16-s0-p1.0-const", "sg3-t-16-s5-p1.0-const")                      # seed
    assert differ("sg3-r-16-s0-p1.0-const", "sg3-r-16-s0-p0.6-const")                      # truncation
    assert differ("sg2ada-cond-skip-16-s0-p1.0-c0-const", "sg2ada-cond-skip-16-s0-p1.0-c2-const")   # class
    assert differ("sg2ada-cond-skip-16-s0-p1.0-c0-const", "sg2ada-cond-skip-16-s0-p1.0-c0-none")    # noise


def test_the_snapshots_other_networks_are_named_not_loaded():
    path = FIXTURES / "sg3-t-16.pkl"
    with pytest.raises(CheckpointError, match=r"'D' is a single Discriminator object, expected a Generator"):
        load_generator(path, network="D")
    with pytest.raises(CheckpointError, match=r"'G' is a NoneType"):
        load_generator(path, network="G")


def test_loading_imports_no_original_code_and_the_cli_writes_the_same_tensor(tmp_path):
    case = next(c for c in CASES if c["name"] == "sg2ada-cond-skip-16" and c["psi"] == 0.6)
    out = tmp_path / "x.npy"
    probe = ("import sys, vj.cli; rc = vj.cli.main(sys.argv[1:]); "
             "bad = [m for m in sys.modules if m.split('.')[0] in ('torch_utils', 'dnnlib', 'training', 'legacy')]; "
             "print('imported:', bad); sys.exit(rc)")
    args = ["model", "sample", str(FIXTURES / case["file"]), "--seed", str(case["seed"]), "--psi", "0.6",
            "--class", str(case["cls"]), "--noise", case["noise"], "-o", str(out)]
    run = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "imported: []" in run.stdout
    # The same code, but another process may get other kernels (thread count, what ran before): float32_bound.
    G = load_generator(FIXTURES / case["file"]).G
    here = sample(FIXTURES / case["file"], seed=case["seed"], psi=0.6, class_idx=case["cls"], noise=case["noise"])
    assert_like_original(np.load(out), here, G)
    assert_like_original(np.load(out), np.load(FIXTURES / case["ref"]), G)


# Keyframes: a preset names NVlabs seeds and the walk shows exactly those images.

def ref_image(name, seed, psi):
    return torch.from_numpy(np.load(FIXTURES / f"{name}-s{seed}-p{psi}-cNone-const.npy"))


def test_keyframe_seeds_show_the_original_codes_images_in_a_closed_loop():
    gen = create_generator("stylegan", width_px=16, height_px=16, checkpoint=str(FIXTURES / "sg3-t-16.pkl"),
                           keyframes=[5, 0], backend="eager")
    gen.reset()
    frame = {"/model/psi": 0.6, "/model/speed": 1.0, "/model/level_speed": 0.0, "/model/bass_push": 0.0}
    quiet = Features(t_s=1.0)
    seen = [gen.synthesize(gen.advance(frame, quiet, 1.0)) for _ in range(3)]    # one keyframe a second
    for got, seed in zip(seen, (0, 5, 0)):          # positions 1, 2, 3: past the last keyframe, the first again
        assert_like_original(got, ref_image("sg3-t-16", seed, 0.6), gen.loaded.G)
    half = gen.synthesize(gen.advance(frame, quiet, 0.5))                        # between keyframes
    assert float((half - ref_image("sg3-t-16", 5, 0.6)).abs().max()) > 1e-2


def test_keyframes_in_a_preset_come_from_a_file_beside_it_and_bad_ones_name_the_line(engine, tmp_path):
    latents = np.random.RandomState(3).randn(4, 8)
    np.save(tmp_path / "faces.npy", latents)
    scene = tmp_path / "faces.toml"
    scene.write_text(f'name = "faces"\n[model]\nname = "stylegan"\ncheckpoint = "{FIXTURES / "sg3-t-16.pkl"}"\n'
                     'keyframes = "faces.npy"\nloop = false\n')
    bad = tmp_path / "bad.toml"
    bad.write_text(f'name = "bad"\n[model]\nname = "stylegan"\nseed = 3\ncheckpoint = "{FIXTURES / "sg3-t-16.pkl"}"\n'
                   'keyframes = [1, "two"]\n')
    engine.load_preset(parse_preset(scene.read_text(), scene))
    walk = engine.generator.walk
    np.testing.assert_array_equal(walk.keyframes, latents)
    assert walk.loop is False
    with pytest.raises(PresetError, match=r"bad\.toml:6: model 'stylegan': keyframes must be a list of seeds"):
        engine.load_preset(parse_preset(bad.read_text(), bad))
    assert engine.preset.name == "faces"                      # the last good scene keeps playing


def test_the_faces_example_plays_an_original_code_network_and_bass_moves_it(engine, tmp_path, monkeypatch):
    """presets/examples/faces.toml on the StyleGAN3-T fixture: its seeds, directions and routes load, and
    a bass-heavy moment gives another picture than a quiet one at the same walk position."""
    example = Path(__file__).resolve().parent.parent / "presets" / "examples" / "faces.toml"
    monkeypatch.setenv("VJ_MODELS", str(tmp_path / "models"))
    scene = tmp_path / "faces.toml"
    scene.write_text(example.read_text())               # checkpoint = "catalog:stylegan2-ffhq-512"
    with pytest.raises(PresetError, match=r"faces\.toml:\d+: model 'stylegan': catalog model stylegan2-ffhq-512 is "
                                          r"not downloaded: run `vj models get stylegan2-ffhq-512` \(or start with "
                                          r"--fetch\)"):
        engine.load_preset(parse_preset(scene.read_text(), scene))
    # The fixture where the catalog model would be (what `vj models get` leaves; it is not checked again here).
    (tmp_path / "models" / "stylegan2-ffhq-512").mkdir(parents=True)
    (tmp_path / "models" / "stylegan2-ffhq-512" / "stylegan2-ffhq-512x512.pkl").write_bytes(
        (FIXTURES / "sg3-t-16.pkl").read_bytes())
    engine.load_preset(parse_preset(scene.read_text(), scene))
    gen = engine.generator
    assert gen.name == "stylegan" and gen.loaded.family == "stylegan3-t"
    assert len(gen.walk.keyframes) == 5 and gen.walk.loop
    assert "/model/dir/0" in {p.path for p in gen.params()}
    quiet, loud = Features(t_s=1.0), Features(t_s=1.0, bass=1.0)
    frame = dict(engine.registry.values())           # the preset's values; the bass route by hand below
    assert frame["/model/psi"] == pytest.approx(0.65)
    gen.reset()
    a = gen.synthesize(gen.advance({**frame, "/model/dir/0": 0.0}, quiet, 1 / 30))
    gen.reset()
    b = gen.synthesize(gen.advance({**frame, "/model/dir/0": 2.5}, loud, 1 / 30))
    assert float((a - b).abs().mean()) > 0.01
    for i in range(3):
        engine.step_offline(None, i / 30, 1 / 30)
    picture = engine.read_rgb(None).astype(np.float32)
    assert picture.std() > 5                         # a picture, not a flat field


def test_deepdream_over_stylegan_finds_the_sources_checkpoint_beside_the_preset(engine, tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "faces.pkl").write_bytes((FIXTURES / "sg3-t-16.pkl").read_bytes())
    scene = tmp_path / "dream-faces.toml"
    scene.write_text('name = "dream-faces"\n[model]\nname = "deepdream"\nsource = "stylegan"\nnet_width = 0.25\n'
                     'source_settings = { checkpoint = "models/faces.pkl", keyframes = [5], backend = "eager" }\n')
    engine.load_preset(parse_preset(scene.read_text(), scene))
    inner = engine.generator.inner
    assert inner.name == "stylegan" and inner.loaded.family == "stylegan3-t"
    assert Path(inner.loaded.source.split(":")[0]) == tmp_path / "models" / "faces.pkl"
    frame = {"/model/source/psi": 0.6, "/model/source/speed": 0.0}
    args = engine.generator.advance(frame, Features(t_s=1.0), 1 / 30)
    assert_like_original(inner.synthesize(args.source), ref_image("sg3-t-16", 5, 0.6), inner.loaded.G)
    missing = tmp_path / "missing.toml"
    missing.write_text(scene.read_text().replace("models/faces.pkl", "models/nowhere.pkl"))
    with pytest.raises(PresetError,
                       match=r"missing\.toml:6: model 'deepdream': models/nowhere\.pkl: no such checkpoint"):
        engine.load_preset(parse_preset(missing.read_text(), missing))
