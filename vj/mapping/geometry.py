"""Warp geometry: homographies from four point pairs, mesh cells, and how much a warp shrinks the picture."""

from __future__ import annotations

import numpy as np

Point = tuple[float, float]


class GeometryError(ValueError):
    """Points that make no usable warp (a quad that folds over itself or has three points in a line)."""


def homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 3x3 matrix H with H @ (x, y, 1) ~ (x', y', 1) for four src points (4, 2) onto dst points (4, 2).

    Solved as the 8x8 linear system with H[2, 2] = 1 (Hartley & Zisserman's DLT with that normalisation),
    which holds for every quad that does not send a corner to infinity, as a pinned projector never does.
    """
    src, dst = np.asarray(src, float).reshape(4, 2), np.asarray(dst, float).reshape(4, 2)
    a = np.zeros((8, 8))
    b = np.zeros(8)
    for i, ((x, y), (u, v)) in enumerate(zip(src, dst)):
        a[2 * i] = (x, y, 1, 0, 0, 0, -u * x, -u * y)
        a[2 * i + 1] = (0, 0, 0, x, y, 1, -v * x, -v * y)
        b[2 * i], b[2 * i + 1] = u, v
    try:
        h = np.linalg.solve(a, b)
    except np.linalg.LinAlgError:
        raise GeometryError("three of the four points lie on one line") from None
    return np.append(h, 1.0).reshape(3, 3)


def apply(h: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map points (n, 2) through the homography h; (n, 2)."""
    p = np.asarray(points, float).reshape(-1, 2)
    q = np.c_[p, np.ones(len(p))] @ np.asarray(h, float).T
    return q[:, :2] / q[:, 2:3]


def check_quad(quad: np.ndarray) -> str | None:
    """Why the quad (4, 2) in order around its edge cannot be a warp target, or None when it can (convex)."""
    q = np.asarray(quad, float).reshape(4, 2)
    edges = np.roll(q, -1, axis=0) - q
    turns = edges[:, 0] * np.roll(edges, -1, axis=0)[:, 1] - edges[:, 1] * np.roll(edges, -1, axis=0)[:, 0]
    scale = max(float(np.ptp(q[:, 0])), float(np.ptp(q[:, 1])), 1e-12)
    if np.any(np.abs(turns) < 1e-9 * scale * scale):
        return "two of its points meet or three lie on one line"
    if not (np.all(turns > 0) or np.all(turns < 0)):
        return "its edges cross or it is not convex"
    return None


UNIT_SQUARE = np.array([(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)])


def mesh_cells(mesh: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each cell of a (rows, cols, 2) mesh of output points as (its output quad (4, 2), the homography from
    the output to the picture's unit square (3, 3)).

    Mesh point (i, j) shows the picture at (j / (cols - 1), i / (rows - 1)); a cell maps its own quad onto its
    own rectangle of the picture exactly (projectively), so a 2 x 2 mesh is a plain corner pin.
    """
    m = np.asarray(mesh, float)
    rows, cols = m.shape[:2]
    cells = []
    for i in range(rows - 1):
        for j in range(cols - 1):
            quad = np.array([m[i, j], m[i, j + 1], m[i + 1, j + 1], m[i + 1, j]])
            x0, x1 = j / (cols - 1), (j + 1) / (cols - 1)
            y0, y1 = i / (rows - 1), (i + 1) / (rows - 1)
            rect = np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])
            cells.append((quad, homography(quad, rect)))
    return cells


def mesh_problem(mesh: np.ndarray) -> str | None:
    """Why a mesh cannot be used, naming the first bad cell, or None."""
    m = np.asarray(mesh, float)
    for i in range(m.shape[0] - 1):
        for j in range(m.shape[1] - 1):
            why = check_quad(np.array([m[i, j], m[i, j + 1], m[i + 1, j + 1], m[i + 1, j]]))
            if why:
                return f"cell ({i}, {j}): {why}" if m.shape[:2] != (2, 2) else why
    return None


def minification(mesh: np.ndarray, out_px: tuple[int, int], src_px: tuple[float, float]) -> float:
    """The most picture pixels that one output pixel covers along an axis anywhere on the mesh (1: same size).

    `out_px`: the output's (width, height); `src_px`: the (width, height) in master pixels of the part of the
    master picture it shows. Measured at the corners of every cell, where a projective map is most stretched.
    """
    w, h = out_px
    worst = 0.0
    for quad, hinv in mesh_cells(mesh):
        for x, y in quad:
            # Jacobian of output px -> picture px, by central differences of a tenth of an output pixel
            d = 0.1
            p = np.array([(x, y), (x + d / w, y), (x, y + d / h)])
            q = apply(hinv, p) * np.asarray(src_px, float)
            worst = max(worst, float(np.hypot(*(q[1] - q[0])) / d), float(np.hypot(*(q[2] - q[0])) / d))
    return worst
