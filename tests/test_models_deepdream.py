"""DeepDream: torchvision-compatible GoogLeNet, weights/TorchScript loading, the ascent and the feedback loop."""

from __future__ import annotations

import logging
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from vj.audio.features import Features
from vj.models.deepdream import dream
from vj.models.deepdream import generator as dd_generator
from vj.models.deepdream.backbone import BackboneError, load_googlenet, random_googlenet
from vj.models.deepdream.generator import SOURCE_PREFIX, DeepDreamGenerator
from vj.models.deepdream.googlenet import LAYERS, GoogLeNet
from vj.models.registry import available_generators, create_generator
from vj.models.worker import ModelWorker
from vj.params import Registry
from vj.presets import find_preset, load_preset

TINY = dict(net_width=0.125)          # GoogLeNet with 1/8 of the channels: same layers, fast on a CPU


# Written down from torchvision/models/googlenet.py (GoogLeNet.__init__, aux_logits=True):
# stem convs (in, out, kernel) and Inception(in, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj).
TV_STEM = {"conv1": (3, 64, 7), "conv2": (64, 64, 1), "conv3": (64, 192, 3)}
TV_INCEPTION = {
    "inception3a": (192, 64, 96, 128, 16, 32, 32),
    "inception3b": (256, 128, 128, 192, 32, 96, 64),
    "inception4a": (480, 192, 96, 208, 16, 48, 64),
    "inception4b": (512, 160, 112, 224, 24, 64, 64),
    "inception4c": (512, 128, 128, 256, 24, 64, 64),
    "inception4d": (512, 112, 144, 288, 32, 64, 64),
    "inception4e": (528, 256, 160, 320, 32, 128, 128),
    "inception5a": (832, 256, 160, 320, 32, 128, 128),
    "inception5b": (832, 384, 192, 384, 48, 128, 128),
}
TV_AUX = {"aux1": 512, "aux2": 528}   # InceptionAux(in, 1000): conv 1x1 -> 128, fc1 2048 -> 1024, fc2 -> 1000


def torchvision_shapes(with_aux: bool = True) -> dict[str, tuple[int, ...]]:
    """Every key of torchvision's googlenet state dict with its shape, built from the tables above."""
    shapes: dict[str, tuple[int, ...]] = {}

    def basic(prefix: str, cin: int, cout: int, k: int) -> None:    # BasicConv2d: conv (no bias) + bn
        shapes[f"{prefix}.conv.weight"] = (cout, cin, k, k)
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.bn.{name}"] = (cout,)
        shapes[f"{prefix}.bn.num_batches_tracked"] = ()

    for name, (cin, cout, k) in TV_STEM.items():
        basic(name, cin, cout, k)
    for name, (cin, c1, c3r, c3, c5r, c5, pp) in TV_INCEPTION.items():
        basic(f"{name}.branch1", cin, c1, 1)
        basic(f"{name}.branch2.0", cin, c3r, 1)
        basic(f"{name}.branch2.1", c3r, c3, 3)
        basic(f"{name}.branch3.0", cin, c5r, 1)
        basic(f"{name}.branch3.1", c5r, c5, 3)          # 3x3, not 5x5: torchvision issue 906
        basic(f"{name}.branch4.1", cin, pp, 1)          # branch4.0 is the max pool
    if with_aux:
        for name, cin in TV_AUX.items():
            basic(f"{name}.conv", cin, 128, 1)
            shapes[f"{name}.fc1.weight"], shapes[f"{name}.fc1.bias"] = (1024, 2048), (1024,)
            shapes[f"{name}.fc2.weight"], shapes[f"{name}.fc2.bias"] = (1000, 1024), (1000,)
    shapes["fc.weight"], shapes["fc.bias"] = (1000, 1024), (1000,)
    return shapes


def torchvision_state_dict(seed: int = 1, with_aux: bool = True) -> dict[str, torch.Tensor]:
    """A state dict with torchvision's keys and shapes, filled with seeded values (plausible bn stats)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, shape in torchvision_shapes(with_aux).items():
        if k.endswith("num_batches_tracked"):
            out[k] = torch.tensor(7)
        elif k.endswith("running_var"):
            out[k] = 0.5 + torch.rand(shape, generator=g)
        else:
            out[k] = 0.05 * torch.randn(shape, generator=g)
    return out


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One thread, as the engine runs torch on a shared 2-core CPU (two threads collapse under load)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def features(i: int) -> Features:
    return Features(t_s=i / 30.0, level=0.6, bass=0.4 + 0.3 * np.sin(i / 5.0), onset=i % 9 == 0)


def run(gen: DeepDreamGenerator, n: int, values=None) -> list[np.ndarray]:
    worker = ModelWorker(gen)
    try:
        out = []
        for i in range(n):
            result = worker.render_now(gen.advance(values or {}, features(i), 1 / 30))
            assert result.error is None, result.error
            out.append(result.image)
        return out
    finally:
        worker.close()


# ------------------------------------------------------------------------------------------------
# The network

def test_googlenet_has_torchvisions_keys_and_shapes():
    ours = {k: tuple(v.shape) for k, v in GoogLeNet().state_dict().items()}
    expected = torchvision_shapes()
    assert list(ours) == list(expected)                    # same names, same order
    assert ours == expected
    assert len(ours) == 364
    assert ours["inception3a.branch3.1.conv.weight"] == (32, 16, 3, 3)
    assert ours["aux2.conv.conv.weight"] == (128, 528, 1, 1)
    assert GoogLeNet().channels["inception4c"] == 512 and GoogLeNet().channels["inception5b"] == 1024


def test_googlenet_transform_input_matches_torchvision_formula():
    net = GoogLeNet(transform_input=True)
    x = torch.rand(1, 3, 4, 4)
    y = net._transform_input(x)
    ref0 = x[:, 0] * (0.229 / 0.5) + (0.485 - 0.5) / 0.5
    ref2 = x[:, 2] * (0.225 / 0.5) + (0.406 - 0.5) / 0.5
    # A multiply and an add of values <= 2.3 (half an ulp: 1.2e-7 each) and constants rounded apart (3e-8);
    # another channel's constants (0.229 for 0.225) would be off by >= 1e-3.
    torch.testing.assert_close(y[:, 0], ref0, atol=1e-6, rtol=0)
    torch.testing.assert_close(y[:, 2], ref2, atol=1e-6, rtol=0)
    assert torch.equal(GoogLeNet(transform_input=False)._transform_input(x), x)


def test_state_dict_loads_and_is_used(tmp_path):
    sd = torchvision_state_dict()
    path = tmp_path / "googlenet.pth"
    torch.save(sd, path)
    bb = load_googlenet(path)
    loaded = bb.module.state_dict()
    for k in ("conv1.conv.weight", "inception5b.branch4.1.bn.running_var", "fc.bias", "aux1.fc1.weight"):
        assert torch.equal(loaded[k], sd[k])
    assert bb.module.transform_input
    # A checkpoint dict with 'state_dict', DataParallel's 'module.' prefix and no aux heads loads the same.
    wrapped = {"state_dict": {f"module.{k}": v for k, v in torchvision_state_dict(with_aux=False).items()},
               "epoch": 3}
    torch.save(wrapped, tmp_path / "ckpt.pth")
    bb2 = load_googlenet(tmp_path / "ckpt.pth")
    assert torch.equal(bb2.module.state_dict()["inception4e.branch2.1.conv.weight"],
                       sd["inception4e.branch2.1.conv.weight"])
    gen = create_generator("deepdream", width_px=48, height_px=32, weights=str(path), source="self")
    assert gen.backbone.source == str(path)
    img = run(gen, 2)[-1]
    assert img.shape == (32, 48, 3) and np.isfinite(img).all()


class Exploit:
    """Stands for a pickled object whose unpickling would import and call code."""

    def __reduce__(self):
        return (print, ("this would run",))


def _bad_files(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("just some text\n")
    wrong_keys = tmp_path / "resnet.pth"
    torch.save(nn.Sequential(nn.Conv2d(3, 8, 3), nn.Linear(8, 2)).state_dict(), wrong_keys)
    sd = torchvision_state_dict()
    sd["fc.weight"] = torch.zeros(10, 1024)
    wrong_shape = tmp_path / "googlenet_10_classes.pth"
    torch.save(sd, wrong_shape)
    code = tmp_path / "exploit.pth"
    code.write_bytes(pickle.dumps({"conv1.conv.weight": Exploit()}))
    tensor = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), tensor)
    return {text: "not a torch weights file", wrong_keys: "not a torchvision GoogLeNet state dict",
            wrong_shape: "fc.weight has shape (10, 1024), the network needs (1000, 1024)",
            code: "could run code", tensor: "not a state dict: found a single tensor",
            tmp_path / "missing.pth": "no such weights file"}


def test_wrong_weight_files_give_one_clear_line(tmp_path):
    for path, reason in _bad_files(tmp_path).items():
        with pytest.raises(ValueError) as info:
            create_generator("deepdream", width_px=32, height_px=32, weights=str(path), source="self")
        msg = str(info.value)
        assert str(path) in msg and reason in msg, msg
        assert "\n" not in msg


class TinyClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2),
                                      nn.ReLU())
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        x = self.features(x)
        return self.head(x.mean(dim=(2, 3)))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")   # torch 2.13 marks torch.jit deprecated
@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchscript_layer_is_hooked(tmp_path, how):
    torch.manual_seed(0)
    model = TinyClassifier().eval()
    ts = torch.jit.script(model) if how == "script" else torch.jit.trace(model, torch.rand(1, 3, 16, 16))
    path = tmp_path / f"tiny_{how}.pt"
    torch.jit.save(ts, str(path))
    gen = create_generator("deepdream", width_px=40, height_px=32, torchscript=str(path), layer="features.2",
                           source="self")
    assert gen.layers == ("features.2",)
    x = torch.rand(1, 3, 32, 40)
    act = gen.backbone.activation(x, "features.2")
    norm = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(
        1, 3, 1, 1)
    with torch.no_grad():
        ref = model.features[2](model.features[1](model.features[0](norm)))
    # Scripted or traced module against the eager one: two convs (K = 27, 72) on |act| <= 1.4, each side within
    # 2.5e-7 of a float64 forward, K u |act| = 6e-6 at worst; an input left unnormalised is off by ~1.
    torch.testing.assert_close(act, ref, atol=1e-5, rtol=0)
    images = run(gen, 3)
    assert not np.array_equal(images[0], images[2])          # the ascent changes the frame


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_wrong_layer_or_wrong_file(tmp_path):
    path = tmp_path / "tiny.pt"
    torch.jit.save(torch.jit.script(TinyClassifier().eval()), str(path))
    with pytest.raises(ValueError) as info:
        create_generator("deepdream", width_px=32, height_px=32, torchscript=str(path), layer="conv9")
    msg = str(info.value)
    assert str(path) in msg and "no layer 'conv9'" in msg and "features.0" in msg and "head" in msg
    # A TorchScript file given as weights, and a state dict given as TorchScript: each says what to do.
    with pytest.raises(ValueError, match="TorchScript file, not a state dict"):
        create_generator("deepdream", width_px=32, height_px=32, weights=str(path))
    sd_path = tmp_path / "googlenet.pth"
    torch.save(torchvision_state_dict(), sd_path)
    with pytest.raises(ValueError, match="not a TorchScript file"):
        create_generator("deepdream", width_px=32, height_px=32, torchscript=str(sd_path), layer="x")


# ------------------------------------------------------------------------------------------------
# The ascent and the loop

@pytest.mark.parametrize("layer,channel", [("inception3b", -1), ("inception4c", 5), ("conv3", -1)])
def test_ascent_increases_the_chosen_activation(layer, channel):
    bb = random_googlenet(seed=3, width=0.25)
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, 64, 96, generator=g) * 0.5 + 0.25

    def score(x):
        with torch.no_grad():
            return float(dream.objective(bb.activation(x, layer), channel))

    out = dream.ascend(lambda x: bb.activation(x, layer), image, steps=4, step=0.02, channel=channel,
                       offsets=dream.jitter_offsets(0, 0, 4, 3))
    assert out.shape == image.shape and float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert score(out) > 1.2 * score(image)             # measured 2.9x..3.4x on every CPU setting: no rounding matter
    # At a coarser octave too (the gradient is resized back to the frame).
    out2 = dream.ascend(lambda x: bb.activation(x, layer), image, steps=4, step=0.02, scale=0.6, channel=channel)
    assert score(out2) > score(image)


@pytest.mark.parametrize("scale, channel, steps", [(1.0, -1, 2), (0.6, 5, 3), (1.0, 2, 0)])
def test_scripted_ascent_is_the_eager_ascent(scale, channel, steps):
    # The generator climbs with ScriptedAscent (TorchScript, no GIL held); it must be ascend to float rounding.
    bb = random_googlenet(seed=3, width=0.25)
    image = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    offsets = dream.jitter_offsets(0, 7, steps, 3)

    def activation(x):
        return bb.activation(x, "inception4a")
    scripted = dream.ScriptedAscent(activation)
    with torch.enable_grad():
        want = dream.ascend(activation, image, steps=steps, step=0.03, scale=scale, offsets=offsets, channel=channel)
        # Compiled against eager is two code paths: a bound per step. Against a float64 ascent float32 is off by
        # <= 4.5e-7 after a step and 2.2e-6 after 3 (each step's normalised gradient carries the last one's
        # error on, a gain <= 3), so the two paths are within 5e-6; a slip in roll, sign or clip moves ~step.
        atol = 1e-5 * max(steps, 1)
        for _ in range(2):         # and again: the compiled module gives the same on every call
            got = scripted(image, steps=steps, step=0.03, scale=scale, offsets=offsets, channel=channel)
            torch.testing.assert_close(got, want, atol=atol, rtol=0)
    assert steps == 0 or float((want - image).abs().max()) > 1e-3


@pytest.mark.filterwarnings("ignore::DeprecationWarning")   # torch 2.13 marks torch.jit deprecated
def test_a_torchscript_backbone_climbs_eagerly_and_googlenet_compiled(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "tiny.pt"
    torch.jit.save(torch.jit.script(TinyClassifier().eval()), str(path))
    ts = create_generator("deepdream", width_px=40, height_px=32, torchscript=str(path), layer="features.2",
                          source="self")
    own = create_generator("deepdream", width_px=40, height_px=32, source="self", net_width=0.25)
    assert not isinstance(ts._ascent("features.2"), dream.ScriptedAscent)
    assert isinstance(own._ascent("inception4c"), dream.ScriptedAscent)
    assert own._ascent("inception4c") is own._ascent("inception4c")       # compiled once per layer


def test_random_backbone_says_so(caplog, monkeypatch):
    monkeypatch.setattr(dd_generator, "_warned_random", False)
    with caplog.at_level(logging.WARNING, logger="vj.models.deepdream.generator"):
        gen = create_generator("deepdream", width_px=32, height_px=32, source="self", **TINY)
    assert "random" in gen.backbone.source
    assert any("no weights" in r.getMessage() and "textures" in r.getMessage() for r in caplog.records)


def test_deterministic_for_the_same_preset_seed_and_audio():
    settings = dict(width_px=48, height_px=32, seed=4, source_settings={"seed": 2}, **TINY)
    values = {"/model/steps": 2, "/model/jitter_px": 4, "/model/rotate": 20.0, "/model/source/hue": 0.3}
    a = run(create_generator("deepdream", **settings), 8, values)
    gen = create_generator("deepdream", **settings)
    b = run(gen, 8, values)
    for x, y in zip(a, b):
        assert np.array_equal(x, y)                              # the same code twice: bit-identical on any CPU
    assert not np.array_equal(a[1], a[7])
    gen.reset()
    assert np.array_equal(run(gen, 8, values)[-1], a[-1])        # reset clears the feedback state
    other = run(create_generator("deepdream", **{**settings, "seed": 5}), 8, values)
    assert not np.array_equal(other[-1], a[-1])                  # the seed moves the jitter


def test_source_params_are_forwarded_under_their_own_prefix():
    gen = create_generator("deepdream", width_px=32, height_px=32, source="cppn", **TINY)
    paths = [p.path for p in gen.params()]
    assert len(paths) == len(set(paths))
    assert "/model/zoom" in paths and SOURCE_PREFIX + "zoom" in paths and SOURCE_PREFIX + "hue" in paths
    args = gen.advance({SOURCE_PREFIX + "hue": 0.7, "/model/zoom": 1.5, "/model/layer": "inception4a"},
                       features(1), 1 / 30)
    assert args.source.hue == pytest.approx(0.7)
    assert args.layer == "inception4a"
    assert args.zoom_log == pytest.approx(np.log(1.5) / 30 + 0.15 * features(1).bass / 30)
    reg = Registry()
    reg.declare_all(gen.params())                                # all valid Params, no clashes
    with pytest.raises(ValueError, match="unknown generator"):
        create_generator("deepdream", width_px=32, height_px=32, source="nope", **TINY)
    with pytest.raises(ValueError, match="cannot be deepdream"):
        create_generator("deepdream", width_px=32, height_px=32, source="deepdream", **TINY)
    assert "deepdream" in available_generators()


def test_blend_one_follows_the_source_and_onsets_boost_the_step():
    gen = create_generator("deepdream", width_px=32, height_px=32, **TINY)
    quiet = gen.advance({}, Features(t_s=0.0), 1 / 30)
    loud = gen.advance({}, Features(t_s=0.1, onset=True), 1 / 30)
    loud2 = gen.advance({}, Features(t_s=0.13, onset=True), 1 / 30)
    assert loud.step > quiet.step and loud2.step > loud.step
    gen2 = create_generator("deepdream", width_px=32, height_px=32, **TINY)
    images = run(gen2, 4, {"/model/blend": 1.0, "/model/steps": 0})
    source = gen2.inner
    source.reset()
    for i, img in enumerate(images):                             # no steps, full blend: the source itself
        src = source.render(source.advance({}, features(i), 1 / 30))[0].permute(1, 2, 0).numpy()
        # Exact: the same traced CPPN renders both sides, and lerp with weight 1 returns its end itself.
        np.testing.assert_array_equal(img, np.clip(src, 0, 1))


@pytest.mark.parametrize("source", ["self", "cppn"])
def test_feedback_loop_stays_bounded_for_1000_frames(source):
    gen = create_generator("deepdream", width_px=32, height_px=32, source=source, **TINY)
    loud = {"/model/step": 0.06, "/model/steps": 2, "/model/zoom": 1.3, "/model/rotate": 30.0,
            "/model/blend": 0.05, "/model/octaves": 1}
    worker = ModelWorker(gen)
    try:
        # Statistics, not values: the loop is chaotic, another CPU's rounding gives other frames. Measured on every
        # CPU setting: mean 0.47..0.53, std >= 0.33, at most 17% of pixels saturated.
        for i in range(1000):
            result = worker.render_now(gen.advance(loud, features(i), 1 / 30))
            assert result.error is None
            if i % 50 == 49:
                img = result.image
                assert 0.05 < float(img.mean()) < 0.95, (i, img.mean())
                assert float(img.std()) > 0.05, (i, img.std())
                assert float((img > 0.99).mean()) < 0.5 and float((img < 0.01).mean()) < 0.5
    finally:
        worker.close()


def test_dream_preset_validates(tmp_path, monkeypatch):
    from vj.scene import files_beside
    monkeypatch.setenv("VJ_MODELS", str(tmp_path))      # GoogLeNet not downloaded: random weights (missing = "random")
    preset = load_preset(str(find_preset("dream")))
    assert preset.model == "deepdream"
    settings = files_beside(dict(preset.model_settings), preset.path)     # as the scene builds it
    assert "weights" not in settings and "missing" not in settings
    gen = create_generator(preset.model, width_px=64, height_px=36, **settings)
    reg = Registry()
    reg.declare_all(gen.params())
    for path, value in preset.values.items():
        if path.startswith("/model/"):
            assert reg.set(path, value), path


# ------------------------------------------------------------------------------------------------
# Inception-v3 (torchvision's layout: tests/fixtures/inception_v3_state_dict.json lists its keys and shapes,
# written down from torchvision 0.28.0's Inception3 with aux_logits=True)

def inception_state_dict(seed: int = 2, with_aux: bool = True) -> dict[str, torch.Tensor]:
    import json
    shapes = json.loads((Path(__file__).parent / "fixtures" / "inception_v3_state_dict.json").read_text())["shapes"]
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, shape in shapes.items():
        if not with_aux and k.startswith("AuxLogits."):
            continue
        if k.endswith("num_batches_tracked"):
            out[k] = torch.tensor(0)
        elif k.endswith("running_var"):
            out[k] = torch.rand(shape, generator=g) * 0.5 + 0.75
        elif k.endswith(("running_mean", "bn.bias")):
            out[k] = torch.randn(shape, generator=g) * 0.05
        elif k.endswith("bn.weight"):
            out[k] = torch.rand(shape, generator=g) * 0.5 + 0.75
        else:                                   # convs and the classifier: He-normal, so activations keep scale
            fan_in = max(1, int(np.prod(shape[1:])))
            out[k] = torch.randn(shape, generator=g) * math.sqrt(2.0 / fan_in)
    return out


def test_inception_v3_has_torchvisions_keys_and_shapes():
    from vj.models.deepdream.inception import InceptionV3
    want = {k: tuple(v.shape) for k, v in inception_state_dict().items()}
    got = {k: tuple(v.shape) for k, v in InceptionV3().state_dict().items()}
    assert got == want


def test_inception_v3_weights_load_strictly_and_dream(tmp_path):
    from vj.models.deepdream.backbone import load_inception_v3
    path = tmp_path / "inception_v3_google-0cc3c7bd.pth"
    torch.save(inception_state_dict(with_aux=False), path)     # a save without the aux head loads too
    bb = load_inception_v3(path)
    assert bb.default_layer == "Mixed_6b" and bb.layers[-1] == "Mixed_7c"
    x = torch.rand(1, 3, 144, 256)
    assert tuple(bb.activation(x, "Mixed_6b").shape) == (1, 768, 7, 14)
    gen = DeepDreamGenerator(256, 144, weights=str(path), network="inception_v3", source="plasma", seed=3,
                             make_source=create_generator)
    assert gen.layers[gen._own_params[2].default] == "Mixed_6b"     # the enum's default is the network's
    frames = run(gen, 4)
    assert all(f.shape == (144, 256, 3) and np.isfinite(f).all() for f in frames)
    assert np.abs(frames[-1] - frames[0]).mean() > 0.001         # it moves
    googlenet = tmp_path / "googlenet.pth"
    torch.save(torchvision_state_dict(), googlenet)
    with pytest.raises(BackboneError, match="not a torchvision Inception-v3 state dict"):
        load_inception_v3(googlenet)
    with pytest.raises(ValueError, match="network = 'inception_v3' needs `weights`"):
        DeepDreamGenerator(64, 36, network="inception_v3", source="plasma", make_source=create_generator)
    # The deepest layer needs 75 px a side (Mixed_7a's unpadded stride-2 convs): octaves stop there, and a frame
    # smaller than that is refused with the setting to change.
    deep = DeepDreamGenerator(256, 144, weights=str(path), network="inception_v3", layer="Mixed_7c", source="plasma",
                              make_source=create_generator)
    assert all(np.isfinite(f).all() for f in run(deep, 6, {"/model/octaves": 6}))
    with pytest.raises(ValueError, match="inception_v3 needs a model frame of 75 px or more a side, got 64x36"):
        DeepDreamGenerator(64, 36, weights=str(path), network="inception_v3", source="plasma",
                           make_source=create_generator)
