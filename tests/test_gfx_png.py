"""PNG read/write in numpy + zlib: round trips, every row filter, and clear errors."""

import struct
import zlib

import numpy as np
import pytest

from vj.gfx.png import PNGError, decode_png, encode_png, read_png, write_png


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_round_trip(tmp_path, channels):
    img = np.random.default_rng(channels).integers(0, 256, (7, 11, channels), dtype=np.uint8)
    write_png(tmp_path / "x.png", img)
    back = read_png(tmp_path / "x.png")
    assert back.shape == (7, 11, channels) and (back == img).all()


def _filtered_png(img: np.ndarray, kinds: list[int]) -> bytes:
    """A PNG whose rows use the given filter types, encoded the way other writers do."""
    h, w, c = img.shape
    rows = img.reshape(h, w * c).astype(int)
    out = bytearray()
    prev = np.zeros(w * c, dtype=int)
    for y in range(h):
        kind = kinds[y % len(kinds)]
        cur = rows[y]
        left = np.concatenate([np.zeros(c, int), cur[:-c]])
        upleft = np.concatenate([np.zeros(c, int), prev[:-c]])
        if kind == 0:
            f = cur
        elif kind == 1:
            f = cur - left
        elif kind == 2:
            f = cur - prev
        elif kind == 3:
            f = cur - (left + prev) // 2
        else:
            p = left + prev - upleft
            pa, pb, pc = abs(p - left), abs(p - prev), abs(p - upleft)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, upleft))
            f = cur - pred
        out.append(kind)
        out.extend((f % 256).astype(np.uint8).tobytes())
        prev = cur

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    colour = {3: 2, 4: 6}[c]
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(bytes(out))) + chunk(b"IEND", b""))


@pytest.mark.parametrize("channels", [3, 4])
def test_decodes_every_row_filter(channels):
    img = np.random.default_rng(7).integers(0, 256, (10, 9, channels), dtype=np.uint8)
    back = decode_png(_filtered_png(img, [0, 1, 2, 3, 4]))
    assert (back == img).all()


def test_errors_are_clear():
    with pytest.raises(PNGError, match="signature"):
        decode_png(b"GIF89a....")
    data = bytearray(encode_png(np.zeros((2, 2, 3), np.uint8)))
    data[24] = 16   # bit depth byte of IHDR
    with pytest.raises(PNGError, match="8-bit"):
        decode_png(bytes(data))
    with pytest.raises(ValueError, match="uint8"):
        encode_png(np.zeros((2, 2, 3), np.float32))
