"""`vj outputs render`: each output of an outputs file drawn from a test pattern or an image, to PNG files, headless."""

from __future__ import annotations

import os
from pathlib import Path

import moderngl
import numpy as np

from vj.gfx.context import bind_default_framebuffer, create_headless_context, release_context
from vj.gfx.png import PNGError, read_png, write_png
from vj.mapping.pattern import grid_pattern
from vj.mapping.spec import OutputsError, OutputsFile, load_outputs
from vj.mapping.warp import WarpPass, load_mask

DEFAULT_MASTER_PX = (1920, 1080)


def master_picture(pattern: str, size_px: tuple[int, int] | None) -> np.ndarray:
    """(H, W, 3) uint8: the grid at `size_px` (default 1920x1080), or a PNG (its own size; `size_px` must match)."""
    if pattern == "grid":
        w, h = size_px or DEFAULT_MASTER_PX
        return grid_pattern(w, h, label="master")
    try:
        img = read_png(pattern)
    except (OSError, PNGError) as exc:
        raise OutputsError(f"{pattern}: cannot read the pattern image: {exc}") from None
    img = img[:, :, None] if img.ndim == 2 else img
    img = np.repeat(img[:, :, :1], 3, axis=2) if img.shape[2] < 3 else img[:, :, :3]
    if size_px is not None and (img.shape[1], img.shape[0]) != tuple(size_px):
        raise OutputsError(f"{pattern}: the image is {img.shape[1]}x{img.shape[0]}, not the --size asked for")
    return np.ascontiguousarray(img)


def upload_master(ctx: moderngl.Context, rgb: np.ndarray) -> moderngl.Texture:
    """The picture as a texture laid out like the show's master (RGBA8, row 0 at the bottom)."""
    h, w = rgb.shape[:2]
    rgba = np.concatenate([rgb, np.full((h, w, 1), 255, np.uint8)], axis=2)[::-1]
    tex = ctx.texture((w, h), 4, np.ascontiguousarray(rgba).tobytes(), alignment=1)
    tex.filter = (moderngl.LINEAR, moderngl.LINEAR)
    return tex


def render_output_images(outputs: OutputsFile, master_rgb: np.ndarray,
                         ctx: moderngl.Context | None = None) -> dict[str, np.ndarray]:
    """Each output's picture {name: (H, W, 3) uint8, row 0 at the top} at its `size`, through the same warp
    pass the live windows use."""
    own = ctx is None
    ctx = ctx or create_headless_context()
    try:
        master = upload_master(ctx, master_rgb)
        images = {}
        for spec in outputs.outputs:
            warp = WarpPass(ctx, spec, load_mask(spec))
            tex = ctx.texture(spec.size_px, 4, dtype="f1")
            fbo = ctx.framebuffer(color_attachments=[tex])
            try:
                if warp.needs_mipmaps(master.size, spec.size_px):
                    master.build_mipmaps()
                warp.render(master, fbo, (0, 0, *spec.size_px))
                w, h = spec.size_px
                data = fbo.read(components=3, alignment=1)
                images[spec.name] = np.frombuffer(data, np.uint8).reshape(h, w, 3)[::-1].copy()
            finally:
                bind_default_framebuffer(ctx)
                fbo.release()
                tex.release()
                warp.release()
        master.release()
        return images
    finally:
        if own:
            release_context(ctx)


def render_outputs(path: str | os.PathLike, out_dir: str | os.PathLike, pattern: str = "grid",
                   size_px: tuple[int, int] | None = None) -> list[Path]:
    """Write DIR/<name>.png for every output in the file (and DIR/master.png, what they were cut from)."""
    outputs = load_outputs(path)
    master = master_picture(pattern, size_px)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "master.png"]
    write_png(written[0], master)
    for name, img in render_output_images(outputs, master).items():
        written.append(out / f"{name}.png")
        write_png(written[-1], img)
    return written
