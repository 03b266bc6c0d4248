"""Model frames to GL textures by each frame path (vj.models.worker.FRAME_PATHS).

The 8-bit GL-layout conversion and its upload run everywhere; the pinned and interop paths themselves need
CUDA (and, for interop, GL on the NVIDIA driver) and are skipped on machines without it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gl_helpers import gl  # noqa: F401  (the fixture)
from vj.gfx.context import resolve_frame_path
from vj.gfx.upload import TextureUploader
from vj.models.base import Generator, ModelArgs
from vj.models.worker import ModelWorker, gl_rgba8

H, W = 9, 16
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA only: no CUDA device here")


def model_output(device: str = "cpu") -> torch.Tensor:
    """(1, 3, H, W): a gradient with a distinct top row, a NaN and values past 0..1 to clamp."""
    g = torch.Generator().manual_seed(3)
    out = torch.rand((1, 3, H, W), generator=g) * 1.2 - 0.1
    out[0, :, 0, :] = torch.tensor([1.0, 0.0, 0.5])[:, None]       # top row: magenta-ish
    out[0, 1, 4, 7] = float("nan")
    return out.to(device)


def texture_rgb(tex) -> np.ndarray:
    """(H, W, 3) float 0..1 of a texture, row 0 at the top (as the frame was given)."""
    dtype = np.uint8 if tex.dtype == "f1" else np.float32
    a = np.frombuffer(tex.read(), dtype).reshape(tex.height, tex.width, 4)[::-1, :, :3].astype(np.float64)
    return a / 255.0 if dtype == np.uint8 else a


class Fixed(Generator):
    """A generator that returns one fixed output, on a chosen device."""

    name = "fixed"

    def __init__(self, device: str = "cpu"):
        self.device = device
        self.width_px, self.height_px = W, H

    def advance(self, frame, features, dt_s):
        return ModelArgs(z=(0.0,), walk_pos=0.0)

    def render(self, args):
        return model_output(self.device)

    def reset(self):
        pass


def test_gl_rgba8_is_the_host_frame_flipped_rounded_with_opaque_alpha():
    out = model_output()
    rgba = gl_rgba8(out).numpy()
    assert rgba.shape == (H, W, 4) and rgba.dtype == np.uint8
    assert (rgba[:, :, 3] == 255).all()
    want = np.nan_to_num(out[0].permute(1, 2, 0).numpy(), nan=0.0).clip(0, 1)[::-1]
    assert np.abs(rgba[:, :, :3] / 255.0 - want).max() <= 0.5 / 255 + 1e-6
    assert tuple(rgba[-1, 0, :3]) == (255, 0, 128)                 # the top row is GL's last
    assert rgba[H - 1 - 4, 7, 1] == 0                              # the NaN became 0


def test_an_uploaded_gl_rgba_frame_shows_as_the_host_path_does(gl):
    # Both uploads land as the same picture (to 8-bit rounding): the pinned and interop paths write exactly
    # these bytes, from pinned memory or from the GPU.
    out = model_output()
    host, fast = TextureUploader(gl), TextureUploader(gl)
    try:
        with ModelWorker(Fixed(), frame_path="pinned") as worker:
            image, gl_layout = worker.to_frame(out)                # a CPU tensor: the host path
        assert gl_layout is False and image.dtype == np.float32
        a = texture_rgb(host.upload(image))
        b = texture_rgb(fast.upload(gl_rgba8(out).numpy(), gl_rgba=True))
        assert np.abs(a - b).max() <= 0.5 / 255 + 1e-6
        assert fast.texture.dtype == "f1" and fast.texture.components == 4
        with pytest.raises(ValueError, match=r"\(H, W, 4\) uint8 RGBA"):
            fast.upload(np.zeros((H, W, 3), np.uint8), gl_rgba=True)
    finally:
        host.release()
        fast.release()


def test_cpu_frames_take_the_host_path_whatever_the_frame_path(gl):
    for path in ("host", "pinned", "interop"):
        with ModelWorker(Fixed(), frame_path=path) as worker:
            res = worker.render_now(ModelArgs(z=(0.0,), walk_pos=0.0))
        assert res.error is None and res.gl_rgba is False and res.image.shape == (H, W, 3)
    with pytest.raises(ValueError, match="frame_path must be one of host, pinned, interop"):
        ModelWorker(Fixed(), frame_path="auto")


def test_auto_frame_path_is_pinned_off_the_nvidia_driver(gl):
    assert "nvidia" not in gl.info["GL_VENDOR"].lower()
    assert resolve_frame_path(gl, "auto") == "pinned"
    assert resolve_frame_path(gl, "interop") == "interop"


@needs_cuda
@pytest.mark.parametrize("path", ["pinned", "interop"])
def test_cuda_frames_reach_the_texture_as_on_the_host_path(gl, path):
    # CUDA only. Interop also needs this GL context on the NVIDIA driver (EGL there); elsewhere it must fail
    # with CudaGLError, which the engine answers by falling back to pinned.
    from vj.gfx.cudagl import CudaGLError
    with ModelWorker(Fixed("cuda"), frame_path=path) as worker:
        res = worker.render_now(ModelArgs(z=(0.0,), walk_pos=0.0))
    assert res.error is None and res.gl_rgba is True
    assert isinstance(res.image, np.ndarray) == (path == "pinned")
    up = TextureUploader(gl)
    try:
        try:
            got = texture_rgb(up.upload(res.image, gl_rgba=True))
        except CudaGLError:
            assert "nvidia" not in gl.info["GL_VENDOR"].lower(), "interop refused on the NVIDIA driver"
            pytest.skip("interop: this GL context is not on the NVIDIA driver")
        want = np.nan_to_num(model_output()[0].permute(1, 2, 0).numpy(), nan=0.0).clip(0, 1)
        assert np.abs(got - want).max() <= 0.5 / 255 + 1e-6
    finally:
        up.release()
