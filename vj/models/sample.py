"""`vj model sample`: one raw generator output for a checkpoint, to check it against the original code.

Seed N means z = numpy `RandomState(N).randn(1, z_dim)` (NVlabs' convention in gen_images.py); the class
is a one-hot c; the network runs eager, on the CPU unless asked, exactly as
`G(z, c, truncation_psi=psi, noise_mode=noise)` in NVlabs' code: float32 on the CPU; on CUDA, like
NVlabs' code there, the num_fp16_res highest-resolution blocks in fp16. `.npy` gets the NCHW float32 tensor
as it leaves the network (about -1..1); `.png` gets NVlabs' conversion (x * 127.5 + 128, clamped to 0..255).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vj.models.base import resolve_device
from vj.models.stylegan.load import load_generator

NOISE_MODES = ("const", "random", "none")


def sample(checkpoint: str | Path, seed: int = 0, psi: float = 1.0, class_idx: int | None = None,
           noise: str = "const", network: str = "G_ema", device: str = "cpu") -> np.ndarray:
    """(1, C, R, R) float32: the network's output for this seed, truncation, class and noise mode."""
    if noise not in NOISE_MODES:
        raise ValueError(f"--noise must be one of {', '.join(NOISE_MODES)}, got {noise!r}")
    device = resolve_device(device)
    loaded = load_generator(checkpoint, network=network)
    G = loaded.G.to(device).eval().requires_grad_(False)
    z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).to(device, torch.float32)
    c = None
    if G.c_dim > 0:
        if class_idx is None:
            raise ValueError(f"{checkpoint}: a conditional model ({G.c_dim} classes): give --class K")
        if not 0 <= class_idx < G.c_dim:
            raise ValueError(f"--class {class_idx} is outside 0..{G.c_dim - 1}")
        c = torch.zeros(1, G.c_dim, device=device)
        c[0, class_idx] = 1.0
    elif class_idx is not None:
        raise ValueError(f"{checkpoint}: --class given, but the model is not conditional")
    with torch.no_grad():
        torch.manual_seed(seed)           # noise "random" draws from torch's generator: repeatable too
        img = G(z, c, truncation_psi=psi, noise_mode=noise)
    return img.detach().to("cpu", torch.float32).numpy()


def write_sample(image: np.ndarray, out: str | Path) -> Path:
    """Write a sample as .npy (raw NCHW float32) or .png (NVlabs' uint8 conversion, first image)."""
    out = Path(out)
    if out.suffix.lower() == ".npy":
        np.save(out, image.astype(np.float32))
    elif out.suffix.lower() == ".png":
        from vj.gfx.png import write_png
        x = np.clip(image[0].transpose(1, 2, 0) * 127.5 + 128.0, 0, 255).astype(np.uint8)   # (R, R, C)
        if x.shape[2] == 1:
            x = np.repeat(x, 3, axis=2)
        write_png(out, np.ascontiguousarray(x[:, :, :3]))
    else:
        raise ValueError(f"{out}: the output must end in .npy or .png")
    return out
