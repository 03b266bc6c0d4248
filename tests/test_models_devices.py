"""The models on the GPU when there is one (else on the CPU) against their CPU references.

The checks a GPU machine should pass before its speed figures mean anything: the StyleGAN fixtures that the
original NVlabs code rendered (tests/fixtures/original) come out the same on the device, every backend and
half precision stays close to eager fp32, and the DeepDream loop runs there and stays finite. Without CUDA
they run on the CPU (fp16 skipped), which is how StyleGAN3 under torch.compile was found broken.
VJ_TEST_DEVICE=cpu|cuda picks the device.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from test_models_stylegan import float32_bound
from vj.audio.features import Features
from vj.models.registry import create_generator
from vj.models.sample import sample
from vj.models.stylegan.load import load_generator

DEVICE = os.environ.get("VJ_TEST_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
FIXTURES = Path(__file__).parent / "fixtures" / "original"
CASES = [c for c in json.loads((FIXTURES / "cases.json").read_text()) if c["seed"] == 5 and c["noise"] == "const"]


def rel_err(got, want) -> float:
    """max |got - want| over the RMS of want."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.abs(got - want).max() / np.sqrt(np.mean(want ** 2)))


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['name']}-p{c['psi']}-c{c['cls']}")
def test_the_original_codes_images_on_the_device(case):
    G = load_generator(FIXTURES / case["file"]).G.to(DEVICE)
    z = torch.from_numpy(np.random.RandomState(case["seed"]).randn(1, G.z_dim)).float().to(DEVICE)
    c = torch.zeros(1, G.c_dim, device=DEVICE)
    if case["cls"] is not None:
        c[0, case["cls"]] = 1
    want = np.load(FIXTURES / case["ref"])
    with torch.no_grad():
        fp32 = G(z, c, truncation_psi=case["psi"], noise_mode=case["noise"], force_fp32=True).cpu()
        mixed = G(z, c, truncation_psi=case["psi"], noise_mode=case["noise"]).cpu()
    # The fixture's CPU summed in other orders: on the CPU, float32_bound (u times the net's accumulation
    # lengths, 5e-5..2e-4 here; a wrong layer or channel is off by ~1). On CUDA, cuDNN may run fp32 convolutions
    # in TF32 (operands rounded to 2^-11 ~ 5e-4, float32 sums): ~5e-4 for each of the ~15 conv layers, 7e-3.
    cpu_limit = float32_bound(G)
    assert rel_err(fp32, want) < (1e-2 if DEVICE == "cuda" else cpu_limit)
    # As NVlabs runs it on a GPU: the num_fp16_res highest-resolution blocks in fp16, whose activations round
    # to 2^-11 at ~6 steps in each of up to ~15 layers: ~4e-2. On the CPU, fp32: the same call as above.
    assert rel_err(mixed, want) < (5e-2 if DEVICE == "cuda" else cpu_limit)
    # `vj model sample --device DEVICE` is this call, with the same kernels in this process: equal (1e-6 is
    # ~4 float32 ulps of the largest outputs, ~3; a wrong seed, psi, class or noise mode moves it by >1e-3).
    got = sample(FIXTURES / case["file"], seed=case["seed"], psi=case["psi"], class_idx=case["cls"],
                 noise=case["noise"], device=DEVICE)
    np.testing.assert_allclose(got, mixed.numpy(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("net", ["sg3-t-16", "sg2ada-cond-skip-16"])
@pytest.mark.parametrize("backend, precision", [("trace", "fp32"), ("compile", "fp32"), ("eager", "bf16"),
                                                ("eager", "fp16"), ("compile", "fp16")])
def test_backends_and_half_precision_stay_close_to_eager_fp32(net, backend, precision):
    if precision == "fp16" and DEVICE != "cuda":
        pytest.skip("fp16 is CUDA only")
    if backend == "compile" and DEVICE == "cpu" and not (shutil.which("c++") or shutil.which("g++")):
        pytest.skip("torch.compile on the CPU needs a C++ compiler")
    make = lambda **kw: create_generator("stylegan", width_px=16, height_px=16, device=DEVICE,     # noqa: E731
                                         checkpoint=str(FIXTURES / f"{net}.pkl"), keyframes=[5, 0], **kw)
    ref, fast = make(backend="eager", precision="fp32"), make(backend=backend, precision=precision)
    frame = {"/model/psi": 0.6, "/model/speed": 0.7, "/model/class": 2}       # class: for the conditional net
    for gen in (ref, fast):
        gen.reset()
    if precision != "fp32":
        # bf16 (u = 2^-9 ~ 2e-3) or fp16 (2^-11) at ~4 roundings in each of ~11 layers: sqrt(44) * u ~ 1.3e-2 of
        # the RMS, its maximum over the pixels ~3-4 times that. A skipped layer is off by ~1.
        limit = 5e-2
    elif DEVICE == "cuda":
        limit = 1e-3          # TF32 convs in both (2^-11 ~ 5e-4 per operand, rounded alike): 2 * 2^-11
    else:
        limit = float32_bound(ref.G)          # other orders of the same float32 sums (the render is 0..1)
    for i in range(3):                                   # the compiled paths' first calls and replays
        features = Features(t_s=i / 30)
        want = ref.render(ref.advance(frame, features, 1 / 30)).float().cpu()
        got = fast.render(fast.advance(frame, features, 1 / 30)).float().cpu()
        assert got.shape == want.shape == (1, 3, 16, 16)
        assert rel_err(got, want) < limit, (i, rel_err(got, want))


def test_the_deepdream_loop_runs_on_the_device_and_stays_finite():
    gen = create_generator("deepdream", width_px=64, height_px=36, device=DEVICE, net_width=0.25, source="cppn")
    gen.reset()
    frame = {"/model/steps": 2, "/model/step": 0.02}
    images = []
    for i in range(4):
        out = gen.render(gen.advance(frame, Features(t_s=i / 30, onset=i == 1), 1 / 30))
        assert out.device.type == torch.device(DEVICE).type
        images.append(out.float().cpu())
    last = images[-1]
    assert torch.isfinite(last).all() and 0.0 <= float(last.min()) and float(last.max()) <= 1.0
    assert float(last.std()) > 0.02                      # a picture, not a flat field
    assert float((images[-1] - images[0]).abs().mean()) > 1e-3   # the loop moves
