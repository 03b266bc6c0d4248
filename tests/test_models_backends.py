"""Compiled backends give the eager network's image; `vj model sample` and `vj bench model` from the command line."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from test_models_stylegan import (SG2_KWARGS, float32_bound, nvlabs_kwargs, nvlabs_modules,  # noqa: F401
                                  one_torch_thread, seeded, shake, tiny_random)    # one_torch_thread: autouse
from vj.gfx.png import read_png
from vj.models.backends import BackendError, check_choice, compile_forward, fidelity
from vj.models.stylegan import sg2
from vj.models.stylegan.generator import StyleGANArgs, StyleGANGenerator, _Forward, seed_latent

VJ = [sys.executable, "-m", "vj.cli"] if not (Path(sys.executable).parent / "vj").exists() else \
    [str(Path(sys.executable).parent / "vj")]


@pytest.fixture(scope="module")
def net():
    G = tiny_random(3)
    f = _Forward(G)
    z = torch.from_numpy(seed_latent(5, G.z_dim)).float()
    inputs = (z, torch.zeros(1, 0), torch.tensor(0.7), torch.tensor(0.3), torch.tensor(1.0))
    with torch.inference_mode():
        ref = f(*inputs)
    return f, inputs, ref


@pytest.mark.parametrize("backend", ["trace", "onnx"])
def test_fp32_backends_draw_the_eager_image(net, backend):
    f, inputs, ref = net
    fast = compile_forward(f, inputs, backend, "fp32")
    out = fast(*inputs)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    # The graph's own kernels (ONNX Runtime's, or a fused trace) sum in other orders: float32_bound of the
    # image's RMS (~1e-4 here). A wrong or frozen input is off by ~1 (the last line).
    limit = lambda want: float32_bound(f.G) * float(want.square().mean().sqrt())        # noqa: E731
    fid = fidelity(ref, out)
    assert fid["max_abs"] < limit(ref), fid
    # A different latent gives a different image through the same compiled graph (nothing was frozen in).
    other = (torch.from_numpy(seed_latent(6, inputs[0].shape[1])).float(), *inputs[1:])
    with torch.inference_mode():
        want = f(*other)
    assert fidelity(want, fast(*other))["max_abs"] < limit(want)
    assert fidelity(ref, want)["max_abs"] > 1e-2


def test_bf16_is_close_but_not_exact(net):
    f, inputs, ref = net
    fid = fidelity(ref, compile_forward(f, inputs, "eager", "bf16")(*inputs))
    # bf16 (u = 2^-9 ~ 2e-3) at ~4 roundings in each of the ~12 layers: ~1.3e-2 of the RMS (0.9) if they
    # add at random (44 dB), 0.094 if all add up (27.6 dB); another latent's image is at ~4 dB.
    assert 0.0 < fid["max_abs"] and fid["psnr_db"] > 25.0, fid


@pytest.mark.parametrize("backend, precision, says", [
    ("tensorrt", "fp32", "needs a CUDA device"),
    ("eager", "fp16", "fp16 needs a CUDA device"),
    ("onnx", "bf16", "onnx backend runs fp32"),
    ("warp", "fp32", "unknown backend 'warp'"),
    ("eager", "fp8", "unknown precision 'fp8'"),
])
def test_choices_that_cannot_run_here_say_why(backend, precision, says):
    with pytest.raises(BackendError, match=says):
        check_choice(backend, precision, torch.device("cpu"))


def test_the_generator_takes_a_backend_setting(monkeypatch):
    import vj.models.stylegan.generator as gen_mod
    monkeypatch.setattr(gen_mod, "random_generator", lambda seed=0: tiny_random(seed))
    args = StyleGANArgs(z=tuple(seed_latent(2, tiny_random().z_dim)[0]), psi=0.8)
    images = {b: StyleGANGenerator(32, 16, backend=b).render(args) for b in ("eager", "trace", "onnx")}
    limit = float32_bound(tiny_random())               # other orders of the same sums (the render is 0..1)
    assert torch.allclose(images["trace"], images["eager"], atol=limit, rtol=0)
    assert torch.allclose(images["onnx"], images["eager"], atol=limit, rtol=0)
    with pytest.raises(ValueError, match="tensorrt backend needs a CUDA device"):
        StyleGANGenerator(32, 16, backend="tensorrt")


def test_model_sample_writes_the_networks_output_for_a_seed(nvlabs_modules, tmp_path):  # noqa: F811
    kw = dict(SG2_KWARGS, c_dim=3)
    G = shake(seeded(0, sg2.Generator, **kw), 5)
    easy = nvlabs_modules.EasyDict
    ck = tmp_path / "net.pkl"
    ck.write_bytes(nvlabs_modules({"G": None, "D": None, "G_ema": G}, nvlabs_kwargs(kw, easy)))
    out = tmp_path / "s.npy"
    r = subprocess.run(VJ + ["model", "sample", str(ck), "--seed", "7", "--psi", "0.6", "--class", "2", "-o", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    got = np.load(out)
    z = torch.from_numpy(np.random.RandomState(7).randn(1, 16)).float()
    with torch.no_grad():
        want = G(z, torch.eye(3)[[2]], truncation_psi=0.6, noise_mode="const").numpy()
    assert got.dtype == np.float32 and got.shape == (1, 3, 16, 16)
    # The same network in another process, whose thread count may pick other kernels: float32_bound.
    assert np.abs(got - want).max() < float32_bound(G) * float(np.sqrt(np.mean(want ** 2)))
    png = tmp_path / "s.png"
    r = subprocess.run(VJ + ["model", "sample", str(ck), "--seed", "7", "--psi", "0.6", "--class", "2", "-o", str(png)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    expect = np.clip(want[0].transpose(1, 2, 0) * 127.5 + 128, 0, 255).astype(np.uint8)
    assert np.abs(read_png(png).astype(int) - expect).max() <= 1     # float error may cross one 1/255 step
    # A conditional model without --class is one clear line and a failure.
    r = subprocess.run(VJ + ["model", "sample", str(ck), "-o", str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "give --class" in r.stderr and "Traceback" not in r.stderr


def test_bench_model_prints_a_row_per_backend():
    r = subprocess.run(VJ + ["bench", "model", "--model", "stylegan2", "--size", "16", "--frames", "2",
                             "--backends", "eager,onnx,tensorrt", "--precision", "fp32", "--threads", "1"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = {line.split()[0]: line for line in r.stdout.splitlines()[1:]}
    assert set(rows) == {"eager", "onnx", "tensorrt"}
    assert "p50" in rows["onnx"] and "PSNR" in rows["onnx"]
    psnr = float(rows["onnx"].split("PSNR")[1].split()[0])
    # ONNX Runtime's kernels sum in other orders: float32_bound of this 512-channel net is 2e-3 of the output's
    # RMS (~1.1), so the RMS error stays under 2.3e-3 (59 dB over the range 2); a wrong image is at ~5 dB.
    assert psnr > 55.0
    assert "unavailable: the tensorrt backend needs a CUDA device" in rows["tensorrt"]
