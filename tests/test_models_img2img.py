"""The image-to-image model slot: TorchScript and ONNX files the tests make, checked against the same arithmetic."""

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper

from video_synth import script_save, tint_reference, write_tint_torchscript
from vj.models.img2img import Img2ImgError, Img2ImgModel, model_kind

W, H = 40, 24


def image(seed=0, w=W, h=H):
    """(1, 3, h, w) float32 in 0..1."""
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed))


def write_onnx(path, nodes, inputs, outputs, initializers=()):
    """An ONNX model from onnx.helper pieces: inputs/outputs are (name, shape) float tensors."""
    graph = helper.make_graph(
        nodes, path.stem, [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs], list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def const(name, array):
    a = np.asarray(array, np.float32)
    return helper.make_tensor(name, TensorProto.FLOAT, a.shape, a.ravel().tolist())


GAIN, OFFSET = np.array([0.5, 1.0, 1.5], np.float32), np.array([0.2, -0.1, 0.0], np.float32)


def write_affine_onnx(path, shape=(1, 3, "h", "w")):
    """y = x * GAIN + OFFSET per channel."""
    return write_onnx(path, [helper.make_node("Mul", ["x", "gain"], ["m"]),
                             helper.make_node("Add", ["m", "offset"], ["y"])],
                      [("x", list(shape))], [("y", [1, 3, None, None])],
                      [const("gain", GAIN.reshape(1, 3, 1, 1)), const("offset", OFFSET.reshape(1, 3, 1, 1))])


def affine_reference(x):
    return np.clip(x * GAIN.reshape(1, 3, 1, 1) + OFFSET.reshape(1, 3, 1, 1), 0.0, 1.0)


def write_conv_onnx(path, out_channels, in_channels=3, shape=None, seed=0):
    """A 1x1 conv with seeded weights; returns (path, weight (out, in))."""
    wgt = np.random.default_rng(seed).uniform(0.0, 0.6, (out_channels, in_channels)).astype(np.float32)
    write_onnx(path, [helper.make_node("Conv", ["x", "w"], ["y"])],
               [("x", list(shape or [1, in_channels, "h", "w"]))], [("y", [1, out_channels, None, None])],
               [const("w", wgt.reshape(out_channels, in_channels, 1, 1))])
    return path, wgt


def test_torchscript_model_matches_its_arithmetic(tmp_path):
    path = write_tint_torchscript(tmp_path / "tint.pt")
    model = Img2ImgModel(path, check_size=(W, H))
    assert model.kind == "torchscript" and model.fixed_size is None
    x = image(1)
    out = model(x)
    assert out.shape == (1, 3, H, W) and out.dtype == torch.float32
    # Conv against einsum: a diagonal 3x3 weight and a bias on values <= 1.1, two roundings (6e-8 each) a side;
    # the 0.1 bias or a swapped channel would be off by >= 0.1.
    torch.testing.assert_close(out, tint_reference(x).clamp(0, 1), atol=1e-6, rtol=0)
    grey = torch.full((1, 3, H, W), 0.5)
    assert model(grey)[0, :, 0, 0].tolist() == pytest.approx([0.5, 0.4, 0.1], abs=1e-6)   # 0.6 * 0.5 + 0.1: 2 roundings


def test_onnx_model_with_dynamic_size_matches_numpy(tmp_path):
    model = Img2ImgModel(write_affine_onnx(tmp_path / "affine.onnx"), check_size=(W, H))
    assert model.kind == "onnx" and model.fixed_size is None
    x = image(2)
    # ONNX Runtime against numpy: a multiply and an add of values <= 1.5, one rounding each (<= 1.2e-7) a side.
    np.testing.assert_allclose(model(x).numpy(), affine_reference(x.numpy()), atol=1e-6, rtol=0)


def test_fixed_size_onnx_input_gets_the_frame_resized_to_it_and_back(tmp_path):
    path, wgt = write_conv_onnx(tmp_path / "fixed16.onnx", 3, shape=[1, 3, 16, 16])
    model = Img2ImgModel(path, check_size=(W, H))
    assert model.fixed_size == (16, 16) and model.input_size(W, H) == (16, 16)
    x = image(3)
    small = F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False, antialias=True)
    y = torch.einsum("oi,bihw->bohw", torch.from_numpy(wgt), small)
    expected = F.interpolate(y, size=(H, W), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
    # The same resizes on both sides; the 1x1 conv (K = 3, weights <= 0.6: sums <= 1.8) against einsum is within
    # 2 * 3u * 1.8 = 6.4e-7, and the resize back only averages it; shrinking without antialias is off by 0.18.
    torch.testing.assert_close(model(x), expected, atol=2e-6, rtol=0)


def test_minus_one_to_one_models_are_scaled_in_and_out(tmp_path):
    path = write_onnx(tmp_path / "negate.onnx", [helper.make_node("Neg", ["x"], ["y"])],
                      [("x", [1, 3, "h", "w"])], [("y", [1, 3, "h", "w"])])
    model = Img2ImgModel(path, value_range="-1..1", check_size=(W, H))
    x = image(4)
    torch.testing.assert_close(model(x), 1.0 - x, atol=1e-6, rtol=0)   # -(2x - 1) = 1 - 2x -> 1 - x: 3 roundings <= 1
    plain = Img2ImgModel(path, check_size=(W, H))
    assert plain(x).max() == 0.0                                       # 0..1 model: -x clamps to black


def test_one_channel_output_is_shown_grey_and_one_channel_input_gets_luma(tmp_path):
    path, wgt = write_conv_onnx(tmp_path / "to_grey.onnx", 1)
    x = image(5)
    out = Img2ImgModel(path, check_size=(W, H))(x)
    expected = torch.einsum("oi,bihw->bohw", torch.from_numpy(wgt), x).clamp(0, 1)
    # ONNX conv against einsum, K = 3, weights <= 0.6 on 0..1 (sums <= 1.8): within 2 * 3u * 1.8 = 6.4e-7.
    torch.testing.assert_close(out, expected.expand(1, 3, H, W), atol=1e-6, rtol=0)
    path, wgt = write_conv_onnx(tmp_path / "from_grey.onnx", 3, in_channels=1)
    model = Img2ImgModel(path, check_size=(W, H))
    assert model.in_channels == 1
    luma = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
    # A 3-term sum <= 1 (3u = 1.8e-7 a side) times a weight <= 0.6; the RGB mean or BGR order is off by >= 0.06.
    torch.testing.assert_close(model(x), (torch.from_numpy(wgt).view(1, 3, 1, 1) * luma).clamp(0, 1),
                               atol=1e-6, rtol=0)


class NeedsMultipleOf8(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[2] % 8 != 0 or x.shape[3] % 8 != 0:
            raise RuntimeError("height and width must be multiples of 8")
        return F.avg_pool2d(x, 8).repeat_interleave(8, dim=2).repeat_interleave(8, dim=3)


def test_declared_multiple_and_scale_set_the_input_size(tmp_path):
    path = tmp_path / "unet8.pt"
    script_save(NeedsMultipleOf8(), path)
    with pytest.raises(Img2ImgError, match=r"unet8\.pt: failed on a \(1, 3, 20, 30\) float32 input: .*multiples of 8"):
        Img2ImgModel(path, check_size=(30, 20))
    model = Img2ImgModel(path, multiple_px=8, check_size=(30, 20))
    assert model.input_size(30, 20) == (32, 24)
    assert model(image(6, 30, 20)).shape == (1, 3, 20, 30)
    sr = Img2ImgModel(write_affine_onnx(tmp_path / "sr.onnx"), scale=0.25, check_size=(64, 32))
    assert sr.input_size(64, 32) == (16, 8)


def test_model_kind_comes_from_the_contents_not_the_name(tmp_path):
    ts = write_tint_torchscript(tmp_path / "tint.onnx")             # a TorchScript file with the wrong suffix
    assert model_kind(ts) == "torchscript"
    torch.testing.assert_close(Img2ImgModel(ts, check_size=(W, H))(image(7)), tint_reference(image(7)).clamp(0, 1),
                               atol=1e-6, rtol=0)                   # as in the first test


@pytest.mark.parametrize("name, content, message", [
    ("notes.onnx", b"just some text\n" * 10, r"notes\.onnx: not an ONNX model: "),
    ("model.bin", b"\x00\x01\x02" * 40, r"model\.bin: not an ONNX or TorchScript model: "),
])
def test_a_file_of_the_wrong_kind_is_refused_with_its_name(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(Img2ImgError, match=message):
        Img2ImgModel(path)


def test_a_weights_checkpoint_is_not_a_torchscript_model(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(torch.nn.Conv2d(3, 3, 1).state_dict(), str(path))
    with pytest.raises(Img2ImgError, match=r"weights\.pt: a torch\.save checkpoint .*torch\.jit\.script"):
        Img2ImgModel(path)


def test_models_that_do_not_fit_name_expected_and_actual_shapes(tmp_path):
    four, _ = write_conv_onnx(tmp_path / "rgba.onnx", 4)
    with pytest.raises(Img2ImgError, match=r"rgba\.onnx: output shape \(1, 4, 24, 40\) does not fit; "
                                           r"expected \(1, 3, h, w\) or \(1, 1, h, w\)"):
        Img2ImgModel(four, check_size=(W, H))
    chroma, _ = write_conv_onnx(tmp_path / "ab.onnx", 2)
    with pytest.raises(Img2ImgError, match=r"ab\.onnx: output shape \(1, 2, .*chroma-only model, not supported"):
        Img2ImgModel(chroma, check_size=(W, H))
    rgba_in, _ = write_conv_onnx(tmp_path / "rgba_in.onnx", 3, in_channels=4)
    with pytest.raises(Img2ImgError, match=r"rgba_in\.onnx: input shape \(1, 4, h, w\) does not fit"):
        Img2ImgModel(rgba_in)
    two = write_onnx(tmp_path / "two_inputs.onnx", [helper.make_node("Add", ["x", "s"], ["y"])],
                     [("x", [1, 3, "h", "w"]), ("s", [1])], [("y", [1, 3, "h", "w"])])
    with pytest.raises(Img2ImgError, match=r"two_inputs\.onnx: expected 1 input .*has 2: x, s"):
        Img2ImgModel(two)


def test_bad_settings_and_missing_files(tmp_path):
    with pytest.raises(Img2ImgError, match=r"image model not found: .*absent\.onnx"):
        Img2ImgModel(tmp_path / "absent.onnx")
    path = write_affine_onnx(tmp_path / "affine.onnx")
    with pytest.raises(Img2ImgError, match=r"value range must be one of 0\.\.1, -1\.\.1"):
        Img2ImgModel(path, value_range="0..255")
    assert issubclass(Img2ImgError, ValueError)                      # what a preset load catches
