"""Small synthesized videos (H.264 through PyAV) and tiny image models for the video and img2img tests."""

from __future__ import annotations

import warnings
from pathlib import Path

import av
import numpy as np
import torch

W, H, FPS = 64, 48, 10                # a clip's size and rate


def grey_level(i: int) -> int:
    """The grey level of frame i of `write_index_video`: frame indices survive YUV 4:2:0 as levels 8 apart."""
    return 10 + 8 * i


def frame_index(rgb: np.ndarray) -> int:
    """Inverse of grey_level, from the mean of a decoded (H, W, 3) uint8 frame.

    Rounding takes up to 3.99 levels of error; YUV rounding, H.264 at crf 12 and swscale (its C and SIMD paths
    round apart) measured <= 2 levels, and the next frame is 8 levels away.
    """
    return int(round((float(rgb.mean()) - 10.0) / 8.0))


def write_video(path: Path, frames: list[np.ndarray], fps: int = FPS, gop: int = 5) -> Path:
    """(H, W, 3) uint8 RGB frames -> an H.264 MP4 with a keyframe every `gop` frames (so seeks are real)."""
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"g": str(gop), "crf": "12"}
        for img in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")))
        c.mux(s.encode())
    return path


def write_index_video(path: Path, n: int = 30, fps: int = FPS) -> Path:
    """n flat grey frames whose level encodes the frame index (grey_level)."""
    return write_video(path, [np.full((H, W, 3), grey_level(i), np.uint8) for i in range(n)], fps)


def write_solid_video(path: Path, rgb: tuple[int, int, int], n: int = 20, fps: int = FPS) -> Path:
    """n frames of one colour with a white bar moving across (so frames differ)."""
    frames = []
    for i in range(n):
        img = np.empty((H, W, 3), np.uint8)
        img[:] = rgb
        img[: H // 8, (i * 3) % W] = 255
        frames.append(img)
    return write_video(path, frames, fps)


CLIP_COLOURS = {"a_red.mp4": (220, 20, 20), "b_green.mp4": (20, 220, 20), "c_blue.mp4": (20, 20, 220)}


def write_clip_folder(folder: Path) -> Path:
    """Three clips of distinct colours (and a stray text file that must be ignored)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, rgb in CLIP_COLOURS.items():
        write_solid_video(folder / name, rgb)
    (folder / "notes.txt").write_text("not a video\n")
    return folder


def dominant(rgb: np.ndarray) -> int:
    """0, 1 or 2: the strongest channel of an (H, W, 3) image's mean colour (which clip is on screen)."""
    return int(np.argmax(rgb.reshape(-1, 3).mean(axis=0)))


# A 1x1 conv that turns grey g into (1.0 g, 0.6 g + 0.1, 0.2 g): black-and-white film to sepia-ish.
TINT_WEIGHT = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.6, 0.0], [0.0, 0.0, 0.2]])   # (out, in)
TINT_BIAS = torch.tensor([0.0, 0.1, 0.0])


def tint_reference(image: torch.Tensor) -> torch.Tensor:
    """The tint model's arithmetic on (1, 3, H, W), written out by hand."""
    return torch.einsum("oi,bihw->bohw", TINT_WEIGHT, image) + TINT_BIAS.view(1, 3, 1, 1)


def write_tint_torchscript(path: Path) -> Path:
    conv = torch.nn.Conv2d(3, 3, kernel_size=1)
    with torch.no_grad():
        conv.weight.copy_(TINT_WEIGHT.view(3, 3, 1, 1))
        conv.bias.copy_(TINT_BIAS)
    return script_save(conv.eval(), path)


def script_save(module: torch.nn.Module, path: Path) -> Path:
    """torch.jit.script + save, without torch 2.13's deprecation warning for TorchScript."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(module).save(str(path))
    return path
