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

from vj.models.sample import sample
from vj.models.stylegan.load import CheckpointError, load_generator

FIXTURES = Path(__file__).parent / "fixtures" / "original"
CASES = json.loads((FIXTURES / "cases.json").read_text())

torch.set_num_threads(1)


def case_id(case):
    cls = "" if case["cls"] is None else f"-c{case['cls']}"
    return f"{case['name']}-s{case['seed']}-p{case['psi']}{cls}-{case['noise']}"


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_vj_gives_the_original_codes_image(case):
    want = np.load(FIXTURES / case["ref"])
    got = sample(FIXTURES / case["file"], seed=case["seed"], psi=case["psi"], class_idx=case["cls"],
                 noise=case["noise"])
    assert got.shape == want.shape
    rms = float(np.sqrt(np.mean(want.astype(np.float64) ** 2)))
    assert rms > 0.01                                   # a picture, not a blank the comparison would pass
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * rms)   # bit-identical here; BLAS may round


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
    np.testing.assert_array_equal(np.load(out), sample(FIXTURES / case["file"], seed=case["seed"], psi=0.6,
                                                       class_idx=case["cls"], noise=case["noise"]))
    np.testing.assert_allclose(np.load(out), np.load(FIXTURES / case["ref"]), rtol=0, atol=1e-5)
