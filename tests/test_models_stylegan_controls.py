"""StyleGAN controls: W directions (PCA or .npy), chroma -> class, per-block noise, network bending."""

import dataclasses

import numpy as np
import pytest
import torch

from test_models_stylegan import (SG3_KWARGS, float32_bound, one_torch_thread, seeded, shake,  # noqa: F401
                                  tiny_random)                                     # one_torch_thread: autouse
from vj.audio.features import Features
from vj.models.stylegan import sg2, sg3
from vj.models.stylegan.directions import build_directions
from vj.models.stylegan.generator import StyleGANArgs, StyleGANGenerator, _Bend, _Forward, random_generator
from vj.params import Registry

W, H, FPS = 24, 16, 30
DIRS = dict(directions="pca", direction_count=4, direction_samples=256)


@pytest.fixture
def tiny(monkeypatch):
    """StyleGANGenerator on a 16 px random net (blocks 4, 8, 16); c_dim=N makes it conditional."""
    import vj.models.stylegan.generator as gen_mod

    def make(c_dim=0, **kw):
        net = random_generator(0, img_resolution=16, c_dim=c_dim, synthesis_kwargs=dict(channel_base=128,
                                                                                       channel_max=16))
        monkeypatch.setattr(gen_mod, "random_generator", lambda seed=0: net)
        return StyleGANGenerator(**{"width_px": W, "height_px": H, **kw})
    return make


def args_of(gen, frame=None, features=None):
    """The first frame's args after a reset: the same latent every call, only the frame's params differ."""
    gen.reset()
    return gen.advance(frame or {}, features or Features(t_s=1.0), 1 / FPS)


def differ(a, b):
    return float((a - b).abs().mean())


def test_pca_directions_are_orthonormal_and_ordered_by_variance():
    G = tiny_random(0)
    d = build_directions(G, "pca", count=6, samples=512, seed=3)
    v = d.vectors.astype(np.float64)
    np.testing.assert_allclose(v @ v.T, np.eye(6), atol=1e-5)      # float32 entries: ~64 * u ~ 4e-6 at most
    assert np.all(np.diff(d.sigma) <= 0) and d.sigma[-1] > 0
    # sigma is the spread of the mapped W along each direction, and the first beats any random direction.
    from vj.models.stylegan.directions import sample_w
    w = sample_w(G, 512, 3)
    # The same float32 W projected twice: sums over 512 samples, 512 * u ~ 3e-5 at most.
    np.testing.assert_allclose(((w - w.mean(0)) @ v.T).std(0, ddof=1), d.sigma, rtol=1e-4)
    r = np.random.RandomState(0).randn(G.w_dim)
    assert d.sigma[0] > ((w - w.mean(0)) @ (r / np.linalg.norm(r))).std()
    assert d.names == tuple("012345") and d.layers is None


def test_a_direction_push_changes_the_image_and_zero_is_identical(tiny):
    plain = tiny()
    gen = tiny(**DIRS, direction_names=["a", "b", "c", "d"])
    paths = {p.path for p in gen.params()}
    assert {"/model/dir/a", "/model/dir/d"} <= paths and "/model/dir/0" not in paths
    Registry().declare_all(gen.params())
    args = args_of(gen)
    assert args.directions == (0.0,) * 4
    base = gen.render(args)
    assert torch.equal(base, plain.render(dataclasses.replace(args, directions=())))
    pushed = gen.render(args_of(gen, {"/model/dir/a": 3.0}))
    assert differ(pushed, base) > 1e-3
    # Only the first layer: a smaller, different change.
    coarse = tiny(**DIRS, direction_layers=[0, 1])
    only_first = coarse.render(dataclasses.replace(args, directions=(3.0, 0.0, 0.0, 0.0)))
    assert 0 < differ(only_first, base) and differ(only_first, pushed) > 1e-4


def test_npy_directions_load_and_a_wrong_shape_is_one_line_naming_the_file(tiny, tmp_path):
    good = tmp_path / "dirs.npy"
    np.save(good, np.random.RandomState(1).randn(3, 64) * 5.0)
    gen = tiny(directions=str(good))
    assert [p.path for p in gen.params() if "/dir/" in p.path] == [f"/model/dir/{i}" for i in range(3)]
    norms = np.linalg.norm(gen.directions.vectors.astype(np.float64), axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-6)            # float32 entries: within u ~ 6e-8 of 1
    assert differ(gen.render(args_of(gen, {"/model/dir/2": -4.0})), gen.render(args_of(gen))) > 1e-3
    bad = tmp_path / "wrong.npy"
    np.save(bad, np.zeros((3, 5)))
    for path, says in [(bad, r"wrong\.npy: expected a \(K, 64\) array.*shape \(3, 5\)"),
                       (tmp_path / "missing.npy", "missing.npy: no such file")]:
        with pytest.raises(ValueError, match=says) as err:
            tiny(directions=str(path))
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="direction_names"):
        tiny(directions=str(good), direction_names=["x", "y"])


def test_chroma_class_peaks_at_the_strong_pitch_class(tiny):
    assert "/model/chroma_class" not in {p.path for p in tiny().params()}
    gen = tiny(c_dim=3)
    chroma = np.full(12, 0.1)
    chroma[4] = 1.0                                   # E: pitch class 4 -> class 4 mod 3 = 1
    notes = Features(t_s=1.0, chroma=chroma)
    off = args_of(gen, {"/model/class": 0}, notes)
    assert off.class_vector is None
    full = args_of(gen, {"/model/class": 0, "/model/chroma_class": 1.0}, notes)
    c = np.array(full.class_vector)
    assert c.shape == (3,) and abs(c.sum() - 1) < 1e-9 and np.argmax(c) == 1 and c[1] > 0.9
    half = np.array(args_of(gen, {"/model/class": 0, "/model/chroma_class": 0.5}, notes).class_vector)
    assert abs(half[0] - 0.5) < 0.05 and abs(half[1] - 0.5) < 0.05
    assert args_of(gen, {"/model/chroma_class": 1.0}, Features(t_s=1.0)).class_vector is None    # silence
    # The blended class reaches the network: full chroma class 1 draws class 1's one-hot image.
    one_hot_1 = gen.render(dataclasses.replace(off, class_idx=1))
    exact_1 = gen.render(dataclasses.replace(off, class_vector=(0.0, 1.0, 0.0)))
    assert torch.equal(one_hot_1, exact_1)
    assert differ(gen.render(full), gen.render(off)) > 1e-3


def test_per_block_noise_at_zero_everywhere_equals_global_noise_zero(tiny):
    gen = tiny()
    assert gen.noise_res == (4, 8, 16)
    assert {f"/model/noise/{r}" for r in (4, 8, 16)} <= {p.path for p in gen.params()}
    args = args_of(gen)
    assert args.layer_noise == (1.0, 1.0, 1.0)
    silent = gen.render(args_of(gen, {f"/model/noise/{r}": 0.0 for r in (4, 8, 16)}))
    assert torch.equal(silent, gen.render(dataclasses.replace(args, noise=0.0)))
    loud16 = gen.render(args_of(gen, {"/model/noise/16": 3.0}))
    assert differ(loud16, gen.render(args)) > 1e-4


def test_bending_at_identity_is_bit_exact_and_rotating_the_last_block_changes_the_image(tiny):
    gen = tiny(backend="eager")
    assert gen.bend_res == (16,)                      # the default (16, 32) px blocks this net has
    args = args_of(gen)
    assert args.bend == ((1.0, 0.0, 0.0, 0.0),)
    inputs = gen._inputs(args)
    with torch.inference_mode():
        assert torch.equal(gen.synthesize(args), _Forward(gen.G)(*inputs[:5]))
    x = torch.randn(1, 5, 8, 8)
    # float32 sin/cos of a half turn and the grid put the samples <= ~1e-6 px off the pixels, times steps of
    # <= ~6 between neighbours: ~6e-6; a wrong direction or centre is off by ~1.
    torch.testing.assert_close(_Bend(torch.tensor([1.0, 180.0, 0.0, 0.0]))(x), x.flip(-1, -2), atol=1e-5, rtol=0)
    turned = gen.render(args_of(gen, {"/model/bend/16/rotate": 180.0}))
    assert differ(turned, gen.render(args)) > 1e-3
    with pytest.raises(ValueError, match=r"bend_layers: \[64\] not among"):
        tiny(bend_layers=[64])


@pytest.fixture
def tiny_sg3(monkeypatch):
    """StyleGANGenerator on a 16 px StyleGAN3-T net with non-trivial weights: layers L0..L3 at rate 16, L4 ToRGB."""
    import vj.models.stylegan.generator as gen_mod

    def make(**kw):
        net = shake(seeded(0, sg3.Generator, **SG3_KWARGS), 2)
        monkeypatch.setattr(gen_mod, "random_generator", lambda seed=0: net)
        return StyleGANGenerator(**{"width_px": W, "height_px": H, **kw})
    return make


def test_stylegan3_layers_bend_by_index_and_a_half_turn_before_torgb_turns_the_image(tiny_sg3):
    gen = tiny_sg3(backend="eager")
    assert isinstance(gen.G.synthesis, sg3.SynthesisNetwork)
    assert gen.bend_names == ("L3",) and gen.noise_res == ()   # the last layer sampled at 16; no noise inputs
    assert {f"/model/bend/L3/{k}" for k in ("scale", "rotate", "tx", "ty")} <= {p.path for p in gen.params()}
    args = args_of(gen)
    with torch.inference_mode():
        plain = _Forward(gen.G)(*gen._inputs(args)[:5])
    assert torch.equal(gen.synthesize(args), plain)                    # identity: bit for bit
    # ToRGB is a 1x1 modulated conv: features turned half a turn give the image turned half a turn.
    turned = gen.synthesize(args_of(gen, {"/model/bend/L3/rotate": 180.0}))
    # ~1e-6 px sampling error as above, through ToRGB's 16-term sums; a wrong turn is off by ~0.1.
    torch.testing.assert_close(turned, plain.flip(-1, -2), atol=1e-4, rtol=0)
    shifted = gen.synthesize(args_of(gen, {"/model/bend/L3/tx": 0.5}))
    assert differ(shifted, plain) > 1e-3 and not torch.allclose(shifted, plain.flip(-1, -2), atol=1e-3)
    # Layers are named by index, with or without the L; a layer the network lacks names the ones it has.
    assert tiny_sg3(bend_layers=["L1", 2]).bend_names == ("L1", "L2")
    with pytest.raises(ValueError, match=r"bend_layers: \[7\] not among the network's layers 0..3 .*L0_24_16"):
        tiny_sg3(bend_layers=[7])


def test_stylegan3_bending_traces_like_eager(tiny_sg3):
    traced, eager = tiny_sg3(bend_layers=[1, 3]), tiny_sg3(bend_layers=[1, 3], backend="eager")
    assert traced.backend == "trace"
    frame = {"/model/bend/L1/scale": 1.4, "/model/bend/L1/ty": -0.2, "/model/bend/L3/rotate": 25.0}
    for f in ({}, frame):
        args = args_of(traced, f)
        # Other orders of the same float32 sums (the render is 0..1).
        torch.testing.assert_close(traced.render(args), eager.render(args), atol=float32_bound(eager.G), rtol=0)
    assert differ(traced.render(args_of(traced, frame)), traced.render(args_of(traced))) > 1e-3


def test_trace_backend_takes_the_new_inputs_as_graph_inputs(tiny):
    traced = tiny(c_dim=3, **DIRS, bend_layers=[8, 16])
    eager = tiny(c_dim=3, **DIRS, bend_layers=[8, 16], backend="eager")
    assert traced.backend == "trace" and eager.backend == "eager"
    default = args_of(traced)
    limit = float32_bound(eager.G)                    # other orders of the same float32 sums (the render is 0..1)
    torch.testing.assert_close(traced.render(default), eager.render(default), atol=limit, rtol=0)
    chroma = np.zeros(12)
    chroma[2] = 1.0
    frame = {"/model/dir/1": 2.5, "/model/noise/8": 0.0, "/model/noise/16": 2.5, "/model/bend/8/scale": 1.5,
             "/model/bend/8/tx": 0.3, "/model/bend/16/rotate": 30.0, "/model/chroma_class": 0.7}
    args = args_of(traced, frame, Features(t_s=1.0, chroma=chroma))
    out = traced.render(args)
    torch.testing.assert_close(out, eager.render(args), atol=limit, rtol=0)
    assert differ(out, traced.render(default)) > 1e-3
    assert isinstance(traced.G.synthesis, sg2.SynthesisNetwork)
