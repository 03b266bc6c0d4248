"""StyleGAN: the ops against explicit references, NVlabs/rosinality checkpoints made here, the restricted unpickler."""

import argparse
import io
import math
import os
import pickle
import sys
import types
import zipfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vj.audio.features import Features
from vj.models.registry import create_generator
from vj.models.stylegan import ops, sg2, sg3
from vj.models.stylegan.generator import StyleGANArgs, StyleGANGenerator, random_generator, seed_latent
from vj.models.stylegan.load import CheckpointError, load_generator, rosinality_to_nvlabs
from vj.models.stylegan.tiny import CHANNELS, MLP_LAYERS, SIZE, STYLE_DIM, rosinality_state_dict
from vj.params import Registry

U32 = 2.0 ** -24                    # float32 unit roundoff


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """One torch thread for the module's tests (the machine is shared; tiny nets need no more), then as before."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def float32_bound(G: torch.nn.Module) -> float:
    """How far two float32 runs of G with other kernels (summation order, FMA, SIMD width) may differ, over the
    output's RMS: a sum of K terms rounds by at most K*u of its (normalised, ~1) output in any order, and
    the errors of the network's sums add up: u times the sum of K over its weights (fan-in) and FIR filters."""
    K = 0
    for name, t in G.state_dict().items():
        if name.endswith("filter"):
            K += t.numel() * (2 if t.ndim == 1 else 1)       # a 1-D filter runs twice: rows, then columns
        elif name.endswith("weight") and t.ndim >= 2:
            K += t[0].numel()                                 # (O, I[, kh, kw]): fan-in I*kh*kw
    return K * U32


SG2_KWARGS = dict(z_dim=16, c_dim=0, w_dim=16, img_resolution=16, img_channels=3,
                  mapping_kwargs=dict(num_layers=2),
                  synthesis_kwargs=dict(channel_base=128, channel_max=16, num_fp16_res=2, conv_clamp=256))
SG3_KWARGS = dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, channel_base=256,
                  channel_max=16, num_layers=4, num_critical=1, margin_size=4, mapping_kwargs=dict(num_layers=2))


def seeded(seed, fn, *args, **kwargs):
    """fn(*args) with torch's global RNG seeded, restored afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return fn(*args, **kwargs)


def shake(G, seed):
    """Give every parameter and buffer (filters excepted) non-trivial values, so copying by name matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in G.state_dict().items():
            if name.endswith(("resample_filter", "up_filter", "down_filter")):
                continue
            if name.endswith("magnitude_ema"):
                t.fill_(0.5 + torch.rand((), generator=g).item())
            else:
                t.add_(0.1 * torch.randn(t.shape, generator=g))
    return G.eval()


# ---------------------------------------------------------------------------------------------
# Ops against explicit references.

def upfirdn_reference(x, f, up, down, pad, gain=1.0, flip_filter=False):
    """Per-pixel numpy loops: zero-insert, pad/crop, true 2-D convolution (or correlation), decimate."""
    x = x.double().numpy()
    f2 = f.double().numpy()
    if f2.ndim == 1:
        f2 = np.outer(f2, f2)
    f2 = f2 * gain
    n, c, h, w = x.shape
    u = np.zeros((n, c, h * up, w * up))
    u[:, :, ::up, ::up] = x
    x0, x1, y0, y1 = pad
    u = np.pad(u, ((0, 0), (0, 0), (max(y0, 0), max(y1, 0)), (max(x0, 0), max(x1, 0))))
    u = u[:, :, max(-y0, 0): u.shape[2] - max(-y1, 0), max(-x0, 0): u.shape[3] - max(-x1, 0)]
    k = f2 if flip_filter else f2[::-1, ::-1]
    fh, fw = k.shape
    out = np.zeros((n, c, u.shape[2] - fh + 1, u.shape[3] - fw + 1))
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            out[:, :, i, j] = (u[:, :, i:i + fh, j:j + fw] * k).sum(axis=(2, 3))
    return torch.from_numpy(out[:, :, ::down, ::down].copy())


@pytest.mark.parametrize("up,down,pad,taps,gain,flip", [
    (1, 1, (1, 2, 0, 1), [1, 3, 3, 1], 1.0, False),
    (2, 1, (2, 1, 2, 1), [1, 3, 3, 1], 4.0, False),
    (1, 2, (1, 1, 1, 1), [1, 2, 5, 1], 1.0, True),           # asymmetric taps: flip matters
    (2, 2, (-1, 3, 0, 2), [1, 2, 5, 1], 4.0, False),         # negative padding crops
    (2, 1, (5, 4, 5, 4), list(range(1, 11)), 4.0, False),    # 10 taps: separable path
])
def test_upfirdn2d_matches_an_explicit_loop(up, down, pad, taps, gain, flip):
    x = torch.randn(2, 3, 7, 6, generator=torch.Generator().manual_seed(1))
    f = ops.setup_filter(taps)
    assert f.ndim == (1 if len(taps) >= 8 else 2)
    got = ops.upfirdn2d(x, f, up=up, down=down, padding=pad, gain=gain, flip_filter=flip)
    ref = upfirdn_reference(x, f, up, down, pad, gain=gain, flip_filter=flip)
    assert got.shape == ref.shape
    # float32 sums of n taps (a 1-D filter: rows then columns) and the gain: within (n + 1) * u of the sum of
    # |terms| on any CPU; a wrong flip, pad or phase is off by ~0.1.
    n = f.numel() * (2 if f.ndim == 1 else 1) + 1
    terms = upfirdn_reference(x.abs(), f.abs(), up, down, pad, gain=gain, flip_filter=flip)
    torch.testing.assert_close(got.double(), ref, atol=n * U32 * float(terms.max()), rtol=0)


def test_upsample_and_downsample_keep_a_constant_image_constant():
    f = ops.setup_filter([1, 3, 3, 1])
    x = torch.full((1, 2, 8, 8), 0.7)
    up = ops.upsample2d(x, f)
    down = ops.downsample2d(x, f)
    assert up.shape == (1, 2, 16, 16) and down.shape == (1, 2, 4, 4)
    # 16 taps round by <= 16 * u * 0.7 ~ 7e-7, inside float32's default atol 1e-5; a wrong gain is off by 0.1.
    torch.testing.assert_close(up[:, :, 2:-2, 2:-2], torch.full((1, 2, 12, 12), 0.7))
    torch.testing.assert_close(down[:, :, 1:-1, 1:-1], torch.full((1, 2, 2, 2), 0.7))


@pytest.mark.parametrize("up,down,k,groups", [(2, 1, 3, 1), (2, 1, 3, 2), (1, 2, 3, 1), (2, 1, 1, 1), (1, 2, 1, 1)])
@pytest.mark.parametrize("flip_weight", [True, False])
def test_conv2d_resample_fast_paths_equal_the_general_composition(up, down, k, groups, flip_weight):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 4, 8, 8, generator=g)
    w = torch.randn(6, 4 // groups, k, k, generator=g)
    f = ops.setup_filter([1, 3, 3, 1])
    pad = k // 2
    got = ops.conv2d_resample(x, w, f=f, up=up, down=down, padding=pad, groups=groups, flip_weight=flip_weight)
    # The same operation spelled out: zero-insert + FIR, convolve, FIR + decimate.
    fw = 4
    px0, px1 = pad, pad
    if up > 1:
        px0 += (fw + up - 1) // 2
        px1 += (fw - up) // 2
    if down > 1:
        px0 += (fw - down + 1) // 2
        px1 += (fw - down) // 2

    def spelled_out(x, w):
        y = ops.upfirdn2d(x, f if up > 1 else None, up=up, padding=[px0, px1, px0, px1], gain=up ** 2)
        y = F.conv2d(y, w if flip_weight else w.flip([2, 3]), groups=groups)
        return ops.upfirdn2d(y, f, down=down) if down > 1 else y
    y = spelled_out(x, w)
    assert got.shape == y.shape == (1, 6, 8 * up // down, 8 * up // down)
    # Two orders of the same sums (k*k*4/groups weights, two 16-tap FIRs): each within n * u of the sum of
    # |terms|; a wrong flip, pad or group is off by ~1.
    n = k * k * 4 // groups + 2 * 16 + 2
    terms = float(spelled_out(x.abs(), w.abs()).max())
    torch.testing.assert_close(got, y, atol=2 * n * U32 * terms, rtol=0)


def test_bias_act_is_bias_lrelu_gain_clamp():
    x = torch.tensor([[-3.0, -0.5, 0.0, 0.5, 300.0]])
    b = torch.tensor([0.25])
    got = ops.bias_act(x, b, dim=0, act="lrelu", gain=2.0, clamp=100.0)
    want = [(-2.75 * 0.2) * 2, (-0.25 * 0.2) * 2, 0.25 * 2, 0.75 * 2, 100.0]
    # Three roundings (add, slope, gain) of float32: within the default rtol 1.3e-6 (~11 ulp).
    torch.testing.assert_close(got, torch.tensor([want]))
    assert ops.bias_act(x, act="lrelu")[0, 3].item() == pytest.approx(0.5 * math.sqrt(2))   # default gain sqrt 2
    with pytest.raises(ValueError, match="unknown activation"):
        ops.bias_act(x, act="gelu")


@pytest.mark.parametrize("up", [1, 2])
@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_conv_fused_equals_non_fused_and_the_formula(up, demodulate):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 5, 6, 6, generator=g)
    weight = torch.randn(4, 5, 3, 3, generator=g)
    styles = torch.rand(3, 5, generator=g) + 0.5
    res = 6 * up
    noise = torch.randn(res, res, generator=g) * 0.3
    f = ops.setup_filter([1, 3, 3, 1])
    kw = dict(up=up, padding=1, resample_filter=f, demodulate=demodulate, flip_weight=(up == 1))
    fused = ops.modulated_conv2d(x, weight, styles, noise=noise, fused_modconv=True, **kw)
    unfused = ops.modulated_conv2d(x, weight, styles, noise=noise, fused_modconv=False, **kw)
    assert fused.shape == (3, 4, res, res)
    # Each path rounds its sums (45 weights, the 45-term norm, a 16-tap FIR, style and noise) by at most
    # K * u of the sum of |terms|, in its own order; a wrong style, norm or flip is off by ~1.
    K = 2 * 45 + 16 + 3
    conv = lambda x, w: ops.conv2d_resample(x, w, f=f, up=up, padding=1, flip_weight=(up == 1))  # noqa: E731
    refs, terms = [], []
    # Per sample: an ordinary conv with weight * style, rows scaled to unit norm.
    for n in range(3):
        wn = weight * styles[n].reshape(1, -1, 1, 1)
        if demodulate:
            wn = wn / (wn.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).sqrt()
        refs.append(conv(x[n:n + 1], wn) + noise)
        terms.append(float((conv(x[n:n + 1].abs(), wn.abs()) + noise.abs()).max()))
    torch.testing.assert_close(fused, unfused, atol=2 * K * U32 * max(terms), rtol=0)
    for n in range(3):
        torch.testing.assert_close(fused[n:n + 1], refs[n], atol=2 * K * U32 * terms[n], rtol=0)


def test_filtered_lrelu_reference_behaviour():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(1, 3, 10, 10, generator=g)
    b = torch.tensor([0.1, -0.2, 0.3])
    # No filters, no resampling: bias, leaky ReLU, gain, clamp.
    plain = ops.filtered_lrelu(x, b=b, gain=2.0, slope=0.1, clamp=0.5)
    # The same three roundings (bias, slope, gain): within the float32 default rtol 1.3e-6.
    torch.testing.assert_close(plain, (F.leaky_relu(x + b.reshape(1, 3, 1, 1), 0.1) * 2.0).clamp(-0.5, 0.5))
    # With filters: the documented output size, and a positive constant stays constant inside.
    fu = torch.as_tensor(ops.firwin_lowpass(12, 3.0, 2.0, 16.0), dtype=torch.float32)
    fd = torch.as_tensor(ops.firwin_lowpass(12, 3.0, 2.0, 16.0), dtype=torch.float32)
    c = torch.full((1, 3, 32, 32), 0.4)
    out = ops.filtered_lrelu(c, fu=fu, fd=fd, up=2, down=2, padding=11, gain=math.sqrt(2), slope=0.2)
    assert out.shape == (1, 3, (64 + 22 - 11 - 11 + 1) // 2, (64 + 22 - 11 - 11 + 1) // 2)
    inner = out[:, :, 10:-10, 10:-10]
    # Symmetric even-length taps: both polyphase halves have the same DC gain, so a constant stays constant
    # but for rounding, 4 passes of 12 taps: 48 * u * 0.57 ~ 2e-6 (a wrong gain or slope is off by >1e-2).
    torch.testing.assert_close(inner, torch.full_like(inner, 0.4 * math.sqrt(2)), atol=1e-5, rtol=0)
    neg = ops.filtered_lrelu(-c, fu=fu, fd=fd, up=2, down=2, padding=11, gain=math.sqrt(2), slope=0.2)
    torch.testing.assert_close(neg[:, :, 10:-10, 10:-10], -0.2 * inner, atol=1e-5, rtol=0)
    # In the linear region (slope 1) it is just the two FIR passes: the same 48 taps, maybe summed in
    # another order, each within 48 * u of the sum of |terms|.
    lin = ops.filtered_lrelu(x, fu=fu, fd=fd, up=2, down=2, padding=11, gain=1.0, slope=1.0)
    chain = ops.upfirdn2d(ops.upfirdn2d(x, fu, up=2, padding=11, gain=4), fd, down=2)
    terms = float(ops.upfirdn2d(ops.upfirdn2d(x.abs(), fu.abs(), up=2, padding=11, gain=4), fd.abs(), down=2).max())
    torch.testing.assert_close(lin, chain, atol=2 * 48 * U32 * terms, rtol=0)


def test_kaiser_lowpass_matches_scipy_firwin():
    signal = pytest.importorskip("scipy.signal")
    for numtaps, cutoff, width, fs in [(12, 2.0, 2.3, 16), (24, 8.5, 3.1, 64), (6, 1.0, 1.0, 4)]:
        want = signal.firwin(numtaps=numtaps, cutoff=cutoff, width=width, fs=fs)
        # float64 (u = 1.1e-16): Bessel series and sinc in two libraries, ~1e-15 apart; a wrong beta is 1e-3 off.
        np.testing.assert_allclose(ops.firwin_lowpass(numtaps, cutoff, width, fs), want, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# The networks.

def test_mapping_network_by_hand():
    m = sg2.MappingNetwork(z_dim=2, c_dim=0, w_dim=2, num_ws=3, num_layers=1, lr_multiplier=0.01)
    with torch.no_grad():
        m.fc0.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, -4.0]]) / 0.01)   # stored / lr_multiplier
        m.fc0.bias.copy_(torch.tensor([0.5, -1.0]) / 0.01)
        m.w_avg.copy_(torch.tensor([1.0, 1.0]))
    z = torch.tensor([[3.0, 4.0]])
    # z / rms(z) = [0.8485, 1.1314]; times 1/sqrt(2) = [0.6, 0.8]. Row 0: 0.6 + 1.6 + 0.5 = 2.7,
    # row 1: 1.8 - 3.2 - 1 = -2.4 -> leaky 0.2 -> -0.48; both times sqrt(2).
    w = m(z, None)
    want = torch.tensor([2.7 * math.sqrt(2), -0.48 * math.sqrt(2)])
    assert w.shape == (1, 3, 2)
    torch.testing.assert_close(w[0], want.expand(3, 2))
    # Truncation psi 0.5 towards w_avg [1, 1], only the first ws with truncation_cutoff=1.
    wt = m(z, None, truncation_psi=0.5, truncation_cutoff=1)
    torch.testing.assert_close(wt[0, 0], 1 + 0.5 * (want - 1))
    torch.testing.assert_close(wt[0, 1:], want.expand(2, 2))
    # StyleGAN3's mapping network computes the same for the same weights.
    m3 = sg3.MappingNetwork(z_dim=2, c_dim=0, w_dim=2, num_ws=3, num_layers=1, lr_multiplier=0.01)
    m3.load_state_dict(m.state_dict())
    torch.testing.assert_close(m3(z, None, truncation_psi=0.5), 1 + 0.5 * (want - 1).expand(1, 3, 2))


@pytest.mark.parametrize("architecture", ["skip", "resnet", "orig"])
def test_sg2_shapes_names_and_fused_equals_unfused(architecture):
    kw = dict(SG2_KWARGS, c_dim=4, synthesis_kwargs=dict(SG2_KWARGS["synthesis_kwargs"], architecture=architecture))
    G = shake(seeded(0, sg2.Generator, **kw), 1)
    keys = set(G.state_dict())
    assert {"mapping.embed.weight", "mapping.fc1.bias", "mapping.w_avg", "synthesis.b4.const",
            "synthesis.b4.conv1.noise_const", "synthesis.b16.conv0.affine.weight",
            "synthesis.b16.torgb.weight", "synthesis.b8.resample_filter"} <= keys
    assert ("synthesis.b8.torgb.weight" in keys) == (architecture == "skip")
    assert ("synthesis.b8.skip.weight" in keys) == (architecture == "resnet")
    assert G.num_ws == 6
    z, c = torch.randn(2, 16), torch.eye(4)[[1, 3]]
    a = G(z, c, truncation_psi=0.7, noise_mode="const")
    b = G(z, c, truncation_psi=0.7, noise_mode="const", fused_modconv=False)
    assert a.shape == (2, 3, 16, 16) and torch.isfinite(a).all()
    torch.testing.assert_close(a, b, atol=float32_bound(G) * float(b.square().mean().sqrt()), rtol=0)   # two orders
    assert not torch.allclose(a, G(z, torch.eye(4)[[0, 2]], truncation_psi=0.7, noise_mode="const"))


def test_sg3_t_and_r_layers_and_output():
    for extra, radial in [({}, False), (dict(conv_kernel=1, use_radial_filters=True), True)]:
        G = shake(seeded(0, sg3.Generator, **SG3_KWARGS, **extra), 2)
        names = G.synthesis.layer_names
        assert names[0].startswith("L0_") and names[-1] == "L4_16_3" and len(names) == 5
        keys = set(G.state_dict())
        assert {"synthesis.input.freqs", "synthesis.input.affine.weight", "synthesis.input.transform",
                f"synthesis.{names[0]}.magnitude_ema", f"synthesis.{names[0]}.up_filter"} <= keys
        down = getattr(G.synthesis, names[0]).down_filter
        assert down.ndim == (2 if radial else 1)
        assert getattr(G.synthesis, names[0]).weight.shape[-1] == (1 if radial else 3)
        img = G(torch.randn(1, 8), None, truncation_psi=0.8)
        assert img.shape == (1, 3, 16, 16) and torch.isfinite(img).all() and img.std() > 0


def test_sg3_layer_names_at_1024_match_the_released_checkpoints():
    with torch.device("meta"):
        syn = sg3.SynthesisNetwork(w_dim=512, img_resolution=1024, img_channels=3)
    assert syn.layer_names == ["L0_36_512", "L1_36_512", "L2_52_512", "L3_52_512", "L4_84_512", "L5_148_512",
                               "L6_148_512", "L7_276_323", "L8_276_203", "L9_532_128", "L10_1044_81",
                               "L11_1044_51", "L12_1044_32", "L13_1024_32", "L14_1024_3"]


# ---------------------------------------------------------------------------------------------
# NVlabs-format pickles, made the way torch_utils.persistence makes them.

EVIL_SOURCE = "open({marker!r}, 'w').write('the module source ran')\nclass Generator:\n    pass\n"


@pytest.fixture
def nvlabs_modules(monkeypatch):
    """Fake `torch_utils.persistence` and `dnnlib.util` importable while a test pickles; returns a dumps()."""
    persistence = types.ModuleType("torch_utils.persistence")
    util = types.ModuleType("dnnlib.util")

    def _reconstruct_persistent_obj(meta):          # what NVlabs does: exec(meta['module_src']); never called here
        raise AssertionError("the real persistence hook must not run")
    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj

    class EasyDict(dict):
        pass
    EasyDict.__module__, EasyDict.__qualname__ = "dnnlib.util", "EasyDict"
    util.EasyDict = EasyDict

    for name, mod in [("torch_utils", types.ModuleType("torch_utils")), ("torch_utils.persistence", persistence),
                      ("dnnlib", types.ModuleType("dnnlib")), ("dnnlib.util", util)]:
        monkeypatch.setitem(sys.modules, name, mod)

    def dumps(data, init_kwargs=None, module_src="# networks_stylegan2.py source\n", protocol=4):
        class Pickler(pickle.Pickler):
            def reducer_override(self, obj):
                if isinstance(obj, torch.nn.Module):
                    state = dict(obj.__dict__)
                    state["_init_args"] = ()
                    state["_init_kwargs"] = EasyDict(init_kwargs) if obj is data.get("G_ema") else {}
                    meta = dict(type="class", version=6, module_src=module_src, class_name=type(obj).__name__,
                                state=state)
                    return _reconstruct_persistent_obj, (meta,)
                return NotImplemented
        buf = io.BytesIO()
        Pickler(buf, protocol=protocol).dump(data)
        return buf.getvalue()

    dumps.EasyDict = EasyDict
    return dumps


def nvlabs_kwargs(kwargs, easy):
    out = dict(kwargs)
    out["mapping_kwargs"] = easy(kwargs["mapping_kwargs"])
    return out


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("protocol", [3, 4])
def test_nvlabs_sg2_pickle_loads_tensors_by_name_and_reproduces_the_image(nvlabs_modules, tmp_path, protocol):
    kw = dict(SG2_KWARGS, c_dim=3)
    G = shake(seeded(0, sg2.Generator, **kw), 5)
    easy = nvlabs_modules.EasyDict
    data = {"G": None, "D": None, "G_ema": G, "augment_pipe": None,
            "training_set_kwargs": easy(path="~/datasets/x.zip", resolution=16)}
    path = write(tmp_path, "network-snapshot-000100.pkl",
                 nvlabs_modules(data, nvlabs_kwargs(kw, easy), protocol=protocol))
    for name in ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util"):
        del sys.modules[name]                         # the loader must not need NVlabs code

    loaded = load_generator(path)
    assert loaded.family == "stylegan2" and isinstance(loaded.G, sg2.Generator)
    theirs, ours = G.state_dict(), loaded.G.state_dict()
    assert set(theirs) == set(ours)
    for name, t in theirs.items():
        assert torch.equal(ours[name], t), name
    z = torch.from_numpy(seed_latent(7, 16)).float()
    c = torch.eye(3)[[2]]
    want = G(z, c, truncation_psi=0.6, noise_mode="const")
    got = loaded.G(z, c, truncation_psi=0.6, noise_mode="const")
    assert torch.equal(got, want)


def test_nvlabs_sg3_pickle_loads_as_config_r(nvlabs_modules, tmp_path):
    kw = dict(SG3_KWARGS, c_dim=2, conv_kernel=1, use_radial_filters=True, magnitude_ema_beta=0.999)
    G = shake(seeded(0, sg3.Generator, **kw), 6)
    path = write(tmp_path, "sg3-r.pkl", nvlabs_modules({"G_ema": G}, nvlabs_kwargs(kw, nvlabs_modules.EasyDict),
                                                       module_src="# networks_stylegan3.py source\n"))
    loaded = load_generator(path)
    assert loaded.family == "stylegan3-r" and isinstance(loaded.G, sg3.Generator)
    for name, t in G.state_dict().items():
        assert torch.equal(loaded.G.state_dict()[name], t), name
    z, c = torch.randn(2, 8), torch.eye(2)
    assert torch.equal(loaded.G(z, c, truncation_psi=0.5), G(z, c, truncation_psi=0.5))
    # Through the vj Generator (traced forward): the same image as the eager network, cropped to 16x8.
    gen = create_generator("stylegan", width_px=16, height_px=8, checkpoint=str(path))
    args = StyleGANArgs(z=tuple(float(v) for v in z[0]), psi=0.5, class_idx=1)
    want = ((G(z[:1], c[1:], truncation_psi=0.5)[:, :, 4:12, :] + 1) / 2).clamp(0, 1)
    # Traced, with vj's truncation: another order of the same sums (the output's RMS is below 1).
    torch.testing.assert_close(gen.render(args), want, atol=float32_bound(G), rtol=0)


def test_loader_drops_training_only_kwargs_and_refuses_unknown_ones(nvlabs_modules, tmp_path):
    easy = nvlabs_modules.EasyDict
    G = seeded(0, sg2.Generator, **SG2_KWARGS)
    kw = nvlabs_kwargs(SG2_KWARGS, easy)
    kw["mapping_kwargs"]["freeze_layers"] = 0
    assert load_generator(write(tmp_path, "fork.pkl", nvlabs_modules({"G_ema": G}, kw))).family == "stylegan2"
    kw["mystery_option"] = 3
    with pytest.raises(CheckpointError, match="mystery_option"):
        load_generator(write(tmp_path, "odd.pkl", nvlabs_modules({"G_ema": G}, kw)))


def test_a_mismatched_tensor_is_reported_by_name(nvlabs_modules, tmp_path):
    easy = nvlabs_modules.EasyDict
    G = seeded(0, sg2.Generator, **SG2_KWARGS)
    kw = nvlabs_kwargs(SG2_KWARGS, easy)
    kw["w_dim"] = 8                                   # kwargs no longer describe the tensors
    with pytest.raises(CheckpointError, match=r"mapping\.fc1\.weight|shape"):
        load_generator(write(tmp_path, "mismatch.pkl", nvlabs_modules({"G_ema": G}, kw)))


def test_module_source_in_the_pickle_is_never_executed(nvlabs_modules, tmp_path):
    marker = tmp_path / "pwned.txt"
    G = seeded(0, sg2.Generator, **SG2_KWARGS)
    src = EVIL_SOURCE.format(marker=str(marker))
    path = write(tmp_path, "evil-src.pkl",
                 nvlabs_modules({"G_ema": G}, nvlabs_kwargs(SG2_KWARGS, nvlabs_modules.EasyDict), module_src=src))
    assert load_generator(path).family == "stylegan2"
    assert not marker.exists()


class _SystemCall:
    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return os.system, (self.cmd,)


class _ExecCall:
    def __init__(self, code):
        self.code = code

    def __reduce__(self):
        return exec, (self.code,)


@pytest.mark.parametrize("payload,names", [
    (_SystemCall, r"(posix|os)\.system"),
    (_ExecCall, r"builtins\.exec"),
])
def test_a_pickle_that_would_run_code_is_refused(tmp_path, payload, names):
    marker = tmp_path / "pwned.txt"
    cmd = f"touch {marker}" if payload is _SystemCall else f"open({str(marker)!r}, 'w').write('x')"
    path = write(tmp_path, "evil.pkl", pickle.dumps({"G_ema": payload(cmd), "G": None}))
    with pytest.raises(CheckpointError, match=names) as info:
        load_generator(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert not marker.exists()


def test_tensorflow_pickles_are_named(tmp_path, monkeypatch):
    for name in ("dnnlib", "dnnlib.tflib"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    mod = types.ModuleType("dnnlib.tflib.network")

    class Network:
        def __init__(self):
            self.name = "G"
    Network.__module__, Network.__qualname__ = "dnnlib.tflib.network", "Network"
    mod.Network = Network
    sys.modules["dnnlib.tflib.network"] = mod
    try:
        data = pickle.dumps((Network(), Network(), Network()))
    finally:
        del sys.modules["dnnlib.tflib.network"]
    with pytest.raises(CheckpointError, match="TensorFlow"):
        load_generator(write(tmp_path, "karras2019stylegan-ffhq-1024x1024.pkl", data))


@pytest.mark.parametrize("name,content,found", [
    ("notes.pkl", b"hello, not a pickle\n", "text starting"),
    ("face.pkl", b"\x89PNG\r\n\x1a\n....", "PNG"),
    ("empty.pkl", b"", "empty file"),
    ("list.pkl", pickle.dumps([1, 2, 3]), "a list"),
    ("dict.pkl", pickle.dumps({"G": None, "D": None}), "keys"),
])
def test_wrong_kind_of_file_is_a_one_line_value_error(tmp_path, name, content, found):
    path = write(tmp_path, name, content)
    with pytest.raises(ValueError, match=found) as info:
        load_generator(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_torch_zip_without_g_ema_and_a_missing_file(tmp_path):
    path = tmp_path / "classifier.pt"
    torch.save({"state_dict": {"fc.weight": torch.zeros(2, 2)}}, path)
    with pytest.raises(ValueError, match=r"classifier\.pt.*no 'g_ema'"):
        load_generator(path)
    bad_zip = tmp_path / "archive.pt"
    with zipfile.ZipFile(bad_zip, "w") as zf:
        zf.writestr("readme.txt", "not a checkpoint")
    with pytest.raises(ValueError, match=r"archive\.pt.*not a loadable torch checkpoint"):
        load_generator(bad_zip)
    with pytest.raises(ValueError, match="no such checkpoint"):
        load_generator(tmp_path / "missing.pkl")


# ---------------------------------------------------------------------------------------------
# rosinality checkpoints, checked against rosinality's forward written out here.

ROS_CH, ROS_STYLE, ROS_MLP, ROS_SIZE = CHANNELS, STYLE_DIM, MLP_LAYERS, SIZE


def rosinality_forward(sd, z, truncation=1.0, truncation_latent=None):
    """rosinality/stylegan2-pytorch Generator.forward (randomize_noise=False), written out with torch.nn.functional."""
    return torch.cat([rosinality_one(sd, z[i:i + 1], truncation, truncation_latent) for i in range(z.shape[0])])


def rosinality_one(sd, z, truncation, truncation_latent):
    """One sample (batch 1) of rosinality_forward."""
    def upfirdn(x, kernel, up, pad0, pad1):
        n, c, h, w = x.shape
        if up > 1:
            u = torch.zeros(n, c, h * up, w * up)
            u[:, :, ::up, ::up] = x
            x = u
        x = F.pad(x, [pad0, pad1, pad0, pad1])
        return F.conv2d(x, torch.flip(kernel, [0, 1]).expand(c, 1, *kernel.shape), groups=c)

    def modconv(x, prefix, style, demodulate=True, upsample=False):
        weight = sd[f"{prefix}.conv.weight"]                                   # (1, O, I, k, k)
        _, out_ch, in_ch, k, _ = weight.shape
        s = F.linear(style, sd[f"{prefix}.conv.modulation.weight"] / math.sqrt(ROS_STYLE)) \
            + sd[f"{prefix}.conv.modulation.bias"]
        weight = weight / math.sqrt(in_ch * k * k) * s.view(1, 1, in_ch, 1, 1)
        if demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8).view(1, out_ch, 1, 1, 1)
        weight = weight[0]
        if upsample:
            out = F.conv_transpose2d(x, weight.transpose(0, 1), padding=0, stride=2)
            return upfirdn(out, sd[f"{prefix}.conv.blur.kernel"], 1, 1, 1)
        return F.conv2d(x, weight, padding=k // 2)

    def styled(x, prefix, style, noise, upsample=False):
        out = modconv(x, prefix, style, upsample=upsample)
        out = out + sd[f"{prefix}.noise.weight"] * noise
        return F.leaky_relu(out + sd[f"{prefix}.activate.bias"].view(1, -1, 1, 1), 0.2) * math.sqrt(2)

    def to_rgb(x, prefix, style, skip=None):
        out = modconv(x, prefix, style, demodulate=False) + sd[f"{prefix}.bias"]
        if skip is not None:
            out = out + upfirdn(skip, sd[f"{prefix}.upsample.kernel"], 2, 2, 1)
        return out

    x = z * torch.rsqrt(torch.mean(z ** 2, dim=1, keepdim=True) + 1e-8)
    for i in range(1, ROS_MLP + 1):
        x = F.linear(x, sd[f"style.{i}.weight"] * (0.01 / math.sqrt(ROS_STYLE)))
        x = F.leaky_relu(x + sd[f"style.{i}.bias"] * 0.01, 0.2) * math.sqrt(2)
    if truncation < 1:
        x = truncation_latent + truncation * (x - truncation_latent)
    noise = [sd[f"noises.noise_{i}"] for i in range(len([k for k in sd if k.startswith("noises.")]))]
    out = sd["input.input"].repeat(z.shape[0], 1, 1, 1)
    out = styled(out, "conv1", x, noise[0])
    skip = to_rgb(out, "to_rgb1", x)
    for k in range(int(math.log2(ROS_SIZE)) - 2):
        out = styled(out, f"convs.{2 * k}", x, noise[2 * k + 1], upsample=True)
        out = styled(out, f"convs.{2 * k + 1}", x, noise[2 * k + 2])
        skip = to_rgb(out, f"to_rgbs.{k}", x, skip)
    return skip


def test_rosinality_weights_give_rosinality_images():
    sd = rosinality_state_dict(8)
    latent_avg = torch.randn(ROS_STYLE, generator=torch.Generator().manual_seed(9))
    G, kwargs, notes = rosinality_to_nvlabs(sd, latent_avg)
    assert kwargs["img_resolution"] == ROS_SIZE and notes == []
    assert kwargs["synthesis_kwargs"]["channel_base"] == 128 and kwargs["synthesis_kwargs"]["channel_max"] == 16
    z = torch.randn(2, ROS_STYLE, generator=torch.Generator().manual_seed(10))
    want = rosinality_forward(sd, z, truncation=0.7, truncation_latent=latent_avg)
    got = G(z, None, truncation_psi=0.7, noise_mode="const")
    assert got.shape == want.shape == (2, 3, ROS_SIZE, ROS_SIZE)
    # rosinality's transposed conv vs NVlabs' zero-insert + FIR: other orders of the same sums.
    torch.testing.assert_close(got, want, atol=float32_bound(G) * float(want.square().mean().sqrt()), rtol=0)


def test_rosinality_checkpoint_file_loads_and_extra_tensors_are_refused(tmp_path):
    sd = rosinality_state_dict(11)
    path = tmp_path / "550000.pt"
    torch.save({"g_ema": sd, "args": argparse.Namespace(size=ROS_SIZE)}, path)
    loaded = load_generator(path)
    assert loaded.family == "rosinality" and loaded.notes           # no latent_avg: estimated, and said so
    z = torch.randn(1, ROS_STYLE)
    want = rosinality_forward(sd, z)
    torch.testing.assert_close(loaded.G(z, None, noise_mode="const"), want,
                               atol=float32_bound(loaded.G) * float(want.square().mean().sqrt()), rtol=0)
    sd["convs.0.extra.weight"] = torch.zeros(1)
    torch.save({"g_ema": sd, "latent_avg": torch.zeros(ROS_STYLE)}, path)
    with pytest.raises(ValueError, match="does not use"):
        load_generator(path)


# ---------------------------------------------------------------------------------------------
# The vj Generator.

W, H, FPS = 24, 16, 30


def tiny_random(seed=0):
    return random_generator(seed, img_resolution=16, synthesis_kwargs=dict(channel_base=128, channel_max=16))


@pytest.fixture
def tiny(monkeypatch):
    """StyleGANGenerator whose "no checkpoint" network is 16 px (the real default is 256 px)."""
    import vj.models.stylegan.generator as gen_mod
    monkeypatch.setattr(gen_mod, "random_generator", lambda seed=0: tiny_random(seed))
    return lambda **kw: StyleGANGenerator(**{"width_px": W, "height_px": H, **kw})


def features_at(i, loud):
    t = i / FPS
    if not loud:
        return Features(t_s=t)
    beat = (t * 2.0) % 1.0
    return Features(t_s=t, level=0.8, bass=float(np.exp(-4.0 * beat)), onset=beat < 1 / FPS, beat=beat < 1 / FPS,
                    onset_strength=0.8, silence=0.0)


def play(gen, n, loud, frame=None):
    return np.stack([gen.render(gen.advance(frame or {}, features_at(i, loud), 1 / FPS))[0].numpy()
                     for i in range(n)])


def test_registry_builds_the_random_network_and_says_so(tiny, caplog):
    with caplog.at_level("INFO"):
        gen = create_generator("stylegan", width_px=W, height_px=H)
    assert gen.name == "stylegan" and gen.output_size == (W, H)
    assert "randomly initialised" in caplog.text
    out = gen.render(gen.advance({}, Features(), 1 / FPS))
    assert out.shape == (1, 3, H, W) and out.dtype == torch.float32
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1 and out.std() > 0.01


def test_params_declare_and_class_param_only_for_conditional(tiny):
    gen = tiny()
    params = gen.params()
    assert all(p.path.startswith("/model/") for p in params) and len({p.path for p in params}) == len(params)
    assert "/model/class" not in {p.path for p in params}
    Registry().declare_all(params)
    assert "/model/psi" in {p.path for p in params}


def test_same_inputs_same_frames_and_reset_replays(tiny):
    a = play(tiny(), 8, loud=True)
    b = play(tiny(), 8, loud=True)
    assert np.array_equal(a, b)
    gen = tiny()
    first = play(gen, 5, loud=True)
    gen.reset()
    assert np.array_equal(first, play(gen, 5, loud=True))


def test_onsets_pulse_in_w_space_and_decay(tiny):
    gen = tiny()
    quiet = [gen.advance({}, Features(t_s=i / FPS), 1 / FPS).pulse for i in range(5)]
    assert quiet == [0.0] * 5
    hit = Features(t_s=1.0, onset=True, level=0.5)
    pulses = [gen.advance({"/model/pulse_onset": 1.0}, hit if i == 0 else Features(t_s=1 + i / FPS), 1 / FPS).pulse
              for i in range(40)]
    peak = int(np.argmax(pulses))
    assert pulses[peak] > 0.3 and peak < 5 and pulses[-1] < 0.05 * pulses[peak]
    args = gen.advance({}, Features(t_s=5.0), 1 / FPS)
    base = gen.render(args)
    pulsed = gen.render(StyleGANArgs(**{**args.__dict__, "pulse": 0.8}))
    assert (pulsed - base).abs().mean() > 1e-3


def test_truncation_zero_gives_the_average_image_for_any_latent(tiny):
    gen = tiny()
    a = gen.render(StyleGANArgs(z=tuple(gen.walk.path(0, 0.0)), psi=0.0))
    b = gen.render(StyleGANArgs(z=tuple(gen.walk.path(3, 2.5)), psi=0.0))
    torch.testing.assert_close(a, b)
    c = gen.render(StyleGANArgs(z=tuple(gen.walk.path(3, 2.5)), psi=1.0))
    assert (c - b).abs().mean() > 1e-3


def test_checkpoint_setting_loads_a_conditional_model(nvlabs_modules, tmp_path):
    kw = dict(SG2_KWARGS, c_dim=3)
    G = shake(seeded(0, sg2.Generator, **kw), 12)
    path = write(tmp_path, "cond.pkl", nvlabs_modules({"G_ema": G}, nvlabs_kwargs(kw, nvlabs_modules.EasyDict)))
    gen = create_generator("stylegan", width_px=16, height_px=16, checkpoint=str(path))
    assert "/model/class" in {p.path for p in gen.params()}
    args = gen.advance({"/model/class": 2, "/model/psi": 1.0, "/model/pulse_onset": 0.0}, Features(), 1 / FPS)
    assert args.class_idx == 2
    z = torch.tensor(args.z, dtype=torch.float32)[None]
    want = ((G(z, torch.eye(3)[[2]], noise_mode="const") + 1) / 2).clamp(0, 1)
    # Traced, with vj's truncation: another order of the same sums (the output's RMS is below 1).
    torch.testing.assert_close(gen.render(args), want, atol=float32_bound(G), rtol=0)
    with pytest.raises(ValueError, match="generator 'stylegan'|no such checkpoint"):
        create_generator("stylegan", checkpoint=str(tmp_path / "missing.pkl"))
