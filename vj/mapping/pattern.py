"""Test patterns for mapping: a grid with coloured corners and labels, and numbered handles over an output."""

from __future__ import annotations

import numpy as np

from vj.gfx.hud import CELL_H, CELL_W, glyph_bitmap

CORNER_COLOURS = ((255, 40, 40), (40, 220, 40), (60, 90, 255), (255, 220, 0))   # TL, TR, BR, BL


def stamp_text(img: np.ndarray, text: str, x: int, y: int, scale: int, rgb=(255, 255, 255)) -> None:
    """Write `text` into img (H, W, 3) uint8 with its top-left at (x, y), each font pixel scale x scale."""
    h, w = img.shape[:2]
    for k, ch in enumerate(text):
        bits = np.kron(glyph_bitmap(ch), np.ones((scale, scale), bool))
        x0 = x + k * CELL_W * scale
        ys, xs = np.nonzero(bits)
        ys, xs = ys + y, xs + x0
        ok = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
        img[ys[ok], xs[ok]] = rgb


def grid_pattern(width_px: int, height_px: int, cells: int = 16, label: str = "") -> np.ndarray:
    """(H, W, 3) uint8, row 0 at the top: 1 px white lines at every 1/cells of each side (the last at the far
    edge), a circle, a coloured square in each corner (TL red, TR green,
    BR blue, BL yellow: which way round an output is) and `label` with the size in the middle."""
    w, h = int(width_px), int(height_px)
    img = np.full((h, w, 3), 24, np.uint8)
    for k in range(cells + 1):
        x = min(w - 1, round(k * (w - 1) / cells))
        y = min(h - 1, round(k * (h - 1) / cells))
        img[:, x] = 255
        img[y, :] = 255
    yy, xx = np.mgrid[0:h, 0:w]
    r = min(w, h) * 0.4
    ring = np.abs(np.hypot(xx - (w - 1) / 2, yy - (h - 1) / 2) - r) < 1.0
    img[ring] = (255, 160, 0)
    side = max(4, min(w, h) // 12)
    for (cy, cx), rgb in zip(((0, 0), (0, w - side), (h - side, w - side), (h - side, 0)), CORNER_COLOURS):
        img[cy:cy + side, cx:cx + side] = rgb
    text = f"{label} {w}x{h}".strip()
    scale = max(1, min(w, h) // 120)
    stamp_text(img, text, (w - len(text) * CELL_W * scale) // 2, h // 2 + CELL_H * scale, scale)
    return img
