"""PNG read/write for 8-bit grey, RGB and RGBA images in pure numpy + zlib (screenshots, golden images)."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}      # PNG colour type -> samples per pixel (8-bit only)
_COLOUR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}


class PNGError(ValueError):
    """A file that is not a PNG this module can read (8-bit, non-interlaced, no palette)."""


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(image: np.ndarray, level: int = 6) -> bytes:
    """PNG bytes for an (H, W), (H, W, 1|2|3|4) uint8 image; row 0 is the top."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise ValueError(f"encode_png needs uint8 data, got {a.dtype}")
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in _COLOUR_TYPE or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"encode_png needs (H, W, 1..4) data, got shape {a.shape}")
    h, w, c = a.shape
    # Filter type 0 (None) on every row: a zero byte in front of each row.
    raw = np.zeros((h, 1 + w * c), dtype=np.uint8)
    raw[:, 1:] = a.reshape(h, w * c)
    header = struct.pack(">IIBBBBB", w, h, 8, _COLOUR_TYPE[c], 0, 0, 0)
    return (_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw.tobytes(), level))
            + _chunk(b"IEND", b""))


def write_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an (H, W, 3|4) uint8 image (row 0 at the top) as a PNG file."""
    Path(path).write_bytes(encode_png(image))


def decode_png(data: bytes) -> np.ndarray:
    """(H, W, C) uint8 from PNG bytes; C is 1 (grey), 2 (grey+alpha), 3 (RGB) or 4 (RGBA)."""
    if not data.startswith(_SIGNATURE):
        raise PNGError("not a PNG file (bad signature)")
    pos = len(_SIGNATURE)
    header = None
    idat = []
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if len(body) != length:
            raise PNGError(f"truncated {kind!r} chunk")
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    if header is None:
        raise PNGError("no IHDR chunk")
    w, h, depth, colour, _, _, interlace = header
    if depth != 8 or colour not in _CHANNELS:
        raise PNGError(f"only 8-bit grey/RGB/RGBA PNGs are supported (bit depth {depth}, colour type {colour})")
    if interlace:
        raise PNGError("interlaced PNGs are not supported")
    c = _CHANNELS[colour]
    try:
        raw = zlib.decompress(b"".join(idat))
    except zlib.error as exc:
        raise PNGError(f"corrupt image data: {exc}") from None
    stride = w * c
    if len(raw) != h * (stride + 1):
        raise PNGError(f"image data has {len(raw)} bytes, expected {h * (stride + 1)}")
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(h, stride + 1)
    out = np.zeros((h, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.uint8)
    for y in range(h):
        kind, line = rows[y, 0], rows[y, 1:]
        if kind == 0:
            cur = line.copy()
        elif kind == 1:    # Sub: running sum along the row per channel, modulo 256
            cur = np.cumsum(line.reshape(w, c), axis=0, dtype=np.uint64).astype(np.uint8).reshape(stride)
        elif kind == 2:    # Up
            cur = line + prev
        elif kind in (3, 4):
            cur = _unfilter_sequential(kind, line, prev, c)
        else:
            raise PNGError(f"unknown filter type {kind} in row {y}")
        out[y] = cur
        prev = cur
    return out.reshape(h, w, c)


def _unfilter_sequential(kind: int, line: np.ndarray, prev: np.ndarray, bpp: int) -> np.ndarray:
    """Average (3) and Paeth (4) depend on the decoded left neighbour: plain Python ints, row by row."""
    cur = bytearray(line.tobytes())
    up = prev.tobytes()
    for i in range(len(cur)):
        left = cur[i - bpp] if i >= bpp else 0
        if kind == 3:
            cur[i] = (cur[i] + ((left + up[i]) >> 1)) & 0xFF
        else:
            ul = up[i - bpp] if i >= bpp else 0
            p = left + up[i] - ul
            pa, pb, pc = abs(p - left), abs(p - up[i]), abs(p - ul)
            pred = left if pa <= pb and pa <= pc else (up[i] if pb <= pc else ul)
            cur[i] = (cur[i] + pred) & 0xFF
    return np.frombuffer(bytes(cur), dtype=np.uint8)


def read_png(path: str | os.PathLike) -> np.ndarray:
    """(H, W, C) uint8 from a PNG file, row 0 at the top."""
    return decode_png(Path(path).read_bytes())
