"""A small random StyleGAN2 checkpoint in rosinality's layout, made here: for benches and tests, no download."""

from __future__ import annotations

import argparse
import collections
import math
from pathlib import Path

import torch

CHANNELS = {4: 16, 8: 16, 16: 8, 32: 4}     # channels by resolution: min(128 / res, 16)
STYLE_DIM, MLP_LAYERS, SIZE = 12, 2, 32


def rosinality_state_dict(seed: int) -> collections.OrderedDict:
    """The tensors of a rosinality/stylegan2-pytorch Generator(SIZE, STYLE_DIM, MLP_LAYERS) with CHANNELS,
    drawn from `seed` at about the scale a trained one has (equalised-lr weights are stored unscaled)."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)          # noqa: E731
    sd = collections.OrderedDict()
    for i in range(1, MLP_LAYERS + 1):
        sd[f"style.{i}.weight"] = r(STYLE_DIM, STYLE_DIM) / 0.01
        sd[f"style.{i}.bias"] = r(STYLE_DIM) * 0.1
    sd["input.input"] = r(1, CHANNELS[4], 4, 4)
    blur = torch.tensor([1.0, 3, 3, 1])
    blur = torch.outer(blur, blur) / 64

    def styled(prefix: str, cin: int, cout: int, up: bool) -> None:
        sd[f"{prefix}.conv.weight"] = r(1, cout, cin, 3, 3)
        if up:
            sd[f"{prefix}.conv.blur.kernel"] = blur * 4
        sd[f"{prefix}.conv.modulation.weight"] = r(cin, STYLE_DIM)
        sd[f"{prefix}.conv.modulation.bias"] = 1 + 0.1 * r(cin)
        sd[f"{prefix}.noise.weight"] = 0.1 * r(1)
        sd[f"{prefix}.activate.bias"] = 0.1 * r(cout)

    def torgb(prefix: str, cin: int, up: bool) -> None:
        if up:
            sd[f"{prefix}.upsample.kernel"] = blur * 4
        sd[f"{prefix}.conv.weight"] = r(1, 3, cin, 1, 1)
        sd[f"{prefix}.conv.modulation.weight"] = r(cin, STYLE_DIM)
        sd[f"{prefix}.conv.modulation.bias"] = 1 + 0.1 * r(cin)
        sd[f"{prefix}.bias"] = 0.1 * r(1, 3, 1, 1)

    styled("conv1", CHANNELS[4], CHANNELS[4], False)
    torgb("to_rgb1", CHANNELS[4], False)
    log_size = int(math.log2(SIZE))
    for i in range(3, log_size + 1):
        k = i - 3
        styled(f"convs.{2 * k}", CHANNELS[2 ** (i - 1)], CHANNELS[2 ** i], True)
        styled(f"convs.{2 * k + 1}", CHANNELS[2 ** i], CHANNELS[2 ** i], False)
        torgb(f"to_rgbs.{k}", CHANNELS[2 ** i], True)
    for idx in range((log_size - 2) * 2 + 1):
        res = 2 ** ((idx + 5) // 2)
        sd[f"noises.noise_{idx}"] = r(1, 1, res, res)
    return sd


def write_checkpoint(path: Path, seed: int = 0) -> Path:
    """A rosinality training checkpoint file (g_ema, latent_avg, args), as its train.py saves one."""
    g = torch.Generator().manual_seed(seed + 1)
    torch.save({"g_ema": rosinality_state_dict(seed), "latent_avg": torch.randn(STYLE_DIM, generator=g) * 0.1,
                "args": argparse.Namespace(size=SIZE)}, path)
    return path
