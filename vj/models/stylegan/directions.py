"""Named directions in a StyleGAN's W space: PCA over mapped samples (GANSpace-style) or rows of a `.npy` file.

Each direction is a unit vector in W with the standard deviation of the mapped latents along it, so a
param of 1 moves W by one standard deviation whatever the model. Nothing is cached on disk: the PCA
runs on a few thousand mapped samples at construction (well under a second for the released models).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from vj.params import Param

log = logging.getLogger(__name__)

DEFAULT_COUNT = 8                     # directions PCA keeps
DEFAULT_SAMPLES = 4096                # mapped W samples the PCA (and a file's sigmas) are computed from
DIRECTION_RANGE = 5.0                 # the params run -5..5 standard deviations


@dataclass(frozen=True)
class Directions:
    """K unit directions in W, their standard deviations, names and the W layers they act on."""

    vectors: np.ndarray               # (K, w_dim) float32, unit rows
    sigma: np.ndarray                 # (K,) float32: std of the mapped W along each row
    names: tuple[str, ...]            # param names: /model/dir/<name>
    layers: tuple[int, int] | None    # [start, end) of the ws the directions move; None: all

    def params(self) -> list[Param]:
        return [Param(f"/model/dir/{name}", 0.0, -DIRECTION_RANGE, DIRECTION_RANGE, smoothing_s=0.2, unit="sd",
                      description=f"push W along direction {i} (standard deviations of the model's W)")
                for i, name in enumerate(self.names)]

    def basis(self) -> np.ndarray:
        """(K, w_dim): sigma_i * d_i, so w + a @ basis moves a_i standard deviations along each direction."""
        return (self.vectors * self.sigma[:, None]).astype(np.float32)

    def layer_mask(self, num_ws: int) -> np.ndarray:
        """(num_ws, 1) float32: 1 for the ws the directions move, 0 elsewhere."""
        mask = np.zeros((num_ws, 1), np.float32)
        start, end = self.layers if self.layers is not None else (0, num_ws)
        mask[start:end] = 1.0
        return mask


def sample_w(G: torch.nn.Module, n: int, seed: int) -> np.ndarray:
    """(n, w_dim) float64: W of n seeded latents (conditional models: a random class each), untruncated."""
    rng = np.random.RandomState(seed)
    z = torch.from_numpy(rng.randn(n, G.z_dim)).float()
    c = None
    if G.c_dim > 0:
        c = torch.from_numpy(np.eye(G.c_dim, dtype=np.float32)[rng.randint(0, G.c_dim, n)])
    device = next(G.parameters()).device
    with torch.inference_mode():
        ws = G.mapping(z.to(device), c.to(device) if c is not None else None)
    w = ws[:, 0] if ws.ndim == 3 else ws
    return w.double().cpu().numpy()


def pca(w: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The `count` principal components of samples w (n, d), largest variance first: (count, d) unit rows and
    (count,) standard deviations."""
    n, d = w.shape
    if not 1 <= count <= min(n - 1, d):
        raise ValueError(f"directions: cannot take {count} PCA components of {n} samples in {d} dims")
    centred = w - w.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    return vt[:count].astype(np.float32), (s[:count] / np.sqrt(n - 1)).astype(np.float32)


def load_vectors(path: Path, w_dim: int) -> np.ndarray:
    """(K, w_dim) float64 unit rows from a .npy file; ValueError with one line naming the file otherwise."""
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ValueError(f"directions {path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"directions {path}: not a readable .npy array ({exc})") from None
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != w_dim or arr.shape[0] < 1 or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"directions {path}: expected a (K, {w_dim}) array of numbers, got shape {arr.shape}")
    arr = arr.astype(np.float64)
    norms = np.linalg.norm(arr, axis=1)
    if not np.all(np.isfinite(arr)) or np.any(norms < 1e-12):
        raise ValueError(f"directions {path}: rows must be finite and non-zero")
    return arr / norms[:, None]


def build_directions(G: torch.nn.Module, spec: str, count: int = DEFAULT_COUNT, samples: int = DEFAULT_SAMPLES,
                     seed: int = 0, names: Sequence[str] | None = None,
                     layers: Sequence[int] | None = None) -> Directions:
    """`spec` "pca" (the `count` top components of `samples` mapped W) or a path to a (K, w_dim) .npy file."""
    w = sample_w(G, int(samples), seed)
    if spec == "pca":
        vectors, sigma = pca(w, int(count))
        source = f"PCA of {samples} W samples"
    else:
        path = Path(spec).expanduser()
        vectors = load_vectors(path, int(G.w_dim))
        sigma = ((w - w.mean(axis=0)) @ vectors.T).std(axis=0, ddof=1)
        vectors, sigma = vectors.astype(np.float32), sigma.astype(np.float32)
        source = str(path)
    k = len(vectors)
    if names is None:
        names = [str(i) for i in range(k)]
    names = tuple(str(n) for n in names)
    if len(names) != k or len(set(names)) != k or not all(n and "/" not in n and " " not in n for n in names):
        raise ValueError(f"direction_names: need {k} distinct names without '/' or spaces, got {list(names)}")
    num_ws = int(G.num_ws)
    span = None
    if layers is not None:
        if len(layers) != 2 or not 0 <= int(layers[0]) < int(layers[1]) <= num_ws:
            raise ValueError(f"direction_layers: need [start, end] with 0 <= start < end <= {num_ws}, "
                             f"got {list(layers)}")
        span = (int(layers[0]), int(layers[1]))
    log.info("stylegan: %d W directions from %s", k, source)
    return Directions(vectors=vectors, sigma=sigma, names=names, layers=span)
