"""The generators: shapes and range, determinism, reactivity to the music, and a colourful picture."""

import pickle

import numpy as np
import pytest
import torch

from vj.audio.features import Features
from vj.models.base import read_params
from vj.models.cppn import CPPNArgs, CPPNGenerator
from vj.models.registry import create_generator
from vj.params import Registry

W, H = 64, 36        # small: the network is per pixel, so behaviour is the same as at 256x144
FPS = 30


def features_at(i, loud):
    """Frame i of a 120 bpm pulse (loud) or of silence."""
    t = i / FPS
    if not loud:
        return Features(t_s=t)
    beat = (t * 2.0) % 1.0
    return Features(t_s=t, level=0.8, bass=float(np.exp(-4.0 * beat)), onset=beat < 1 / FPS,
                    onset_strength=0.8, silence=0.0)


def play(gen, n, loud, frame=None):
    """Advance n frames at 30 fps and render each; returns (n, H, W, 3) float32."""
    frames = []
    for i in range(n):
        args = gen.advance(frame or {}, features_at(i, loud), 1 / FPS)
        frames.append(gen.render(args)[0].permute(1, 2, 0).numpy())
    return np.stack(frames)


@pytest.mark.parametrize("name", ["cppn", "plasma"])
@pytest.mark.parametrize("size", [(W, H), (36, 64), (17, 5)])
def test_output_shape_dtype_range(name, size):
    gen = create_generator(name, width_px=size[0], height_px=size[1])
    assert gen.output_size == size
    out = gen.render(gen.advance({}, Features(), 1 / FPS))
    assert out.shape == (1, 3, size[1], size[0]) and out.dtype == torch.float32
    assert torch.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0


@pytest.mark.parametrize("name", ["cppn", "plasma"])
def test_params_are_declarable_under_model(name):
    gen = create_generator(name, width_px=W, height_px=H)
    params = gen.params()
    assert len({p.path for p in params}) == len(params)
    assert all(p.path.startswith("/model/") for p in params)
    reg = Registry()
    reg.declare_all(params)
    assert read_params(reg.values(), params) == dict(reg.values())


def test_same_seed_and_inputs_give_identical_frames():
    a = play(CPPNGenerator(W, H, seed=3), 12, loud=True)
    b = play(CPPNGenerator(W, H, seed=3), 12, loud=True)
    assert np.array_equal(a, b)


def test_different_seeds_differ():
    base = play(CPPNGenerator(W, H, seed=0), 1, loud=False)[0]
    other_weights = play(CPPNGenerator(W, H, seed=1), 1, loud=False)[0]
    other_walk = play(CPPNGenerator(W, H, seed=0), 1, loud=False, frame={"/model/seed": 5})[0]
    assert np.abs(base - other_weights).mean() > 0.05
    assert np.abs(base - other_walk).mean() > 0.05


def test_reset_replays_the_same_frames():
    gen = CPPNGenerator(W, H)
    first = play(gen, 6, loud=True)
    gen.reset()
    assert np.array_equal(first, play(gen, 6, loud=True))


def test_loud_music_moves_the_picture_much_more_than_silence():
    quiet = play(CPPNGenerator(W, H), 45, loud=False)
    loud = play(CPPNGenerator(W, H), 45, loud=True)
    quiet_change = np.abs(np.diff(quiet, axis=0)).mean()
    loud_change = np.abs(np.diff(loud, axis=0)).mean()
    # Scene statistics, not rounding: 0.005 and 15x on every CPU setting.
    assert 0.0 < quiet_change < 0.02           # silence: a calm, slow drift, but not frozen
    assert loud_change > 4.0 * quiet_change


def test_frames_are_colourful_not_grey():
    gen = CPPNGenerator(W, H)
    for pos in (0.0, 0.5, 1.3, 2.7):
        img = gen.render(CPPNArgs(z=tuple(gen.walk.path(0, pos))))[0].permute(1, 2, 0).numpy()
        chroma = img.max(axis=2) - img.min(axis=2)
        assert chroma.mean() > 0.25, f"washed out at walk position {pos}"
        assert img.std() > 0.15, f"flat at walk position {pos}"


def test_render_is_pure_and_args_pickle():
    gen = CPPNGenerator(W, H)
    args = gen.advance({"/model/zoom": 2.0, "/model/hue": 0.3}, features_at(0, True), 1 / FPS)
    pos = gen.walk.pos
    first = gen.render(args)
    assert gen.walk.pos == pos
    again = pickle.loads(pickle.dumps(args))
    assert again == args
    assert torch.equal(gen.render(again), first)
    with pytest.raises(AttributeError):
        args.zoom = 1.0


def test_view_params_reach_the_args_and_bad_values_fall_back():
    gen = CPPNGenerator(W, H)
    args = gen.advance({"/model/zoom": 9.0, "/model/detail": "lots", "/model/hue": 0.25}, Features(), 0.1)
    assert args.zoom == 4.0 and args.detail == 0.5 and args.hue == 0.25
    assert len(args.z) == gen.z_dim


def test_render_rejects_foreign_args():
    gen = CPPNGenerator(W, H)
    plasma = create_generator("plasma", width_px=W, height_px=H)
    with pytest.raises(AssertionError):
        gen.render(plasma.advance({}, Features(), 0.1))


def test_chunked_render_matches_one_batch():
    # Two GEMM shapes, so not bit-identical on every CPU (MKL's SSE4.2 path differs by 9e-8). A frame's float32
    # error against a float64 forward is <= 1.1e-5 (the palette's cos turns an ulp of a logit into ~pi ulps),
    # so two orderings are within 2.2e-5; chunk rows off by one or a per-chunk light mean are off by >= 0.3.
    one = CPPNGenerator(W, H, chunk_px=W * H)
    chunked = CPPNGenerator(W, H, chunk_px=100)
    args = one.advance({}, features_at(0, True), 1 / FPS)
    torch.testing.assert_close(chunked.render(args), one.render(args), atol=5e-5, rtol=0)
