"""Xvfb for tests: the `xvfb_display` fixture (':N' of a running 1280x720 Xvfb for the test module).

In a test module:

    from xvfb import xvfb_display  # noqa: F401

    def test_something(xvfb_display, monkeypatch):
        monkeypatch.setenv("DISPLAY", xvfb_display)

or, with `from xvfb import display, xvfb_display`, `def test_window(display)`: DISPLAY set, glfw checked after.

Or anywhere: `with running_xvfb() as display: ...`. Tests are skipped where Xvfb is not installed.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from collections.abc import Iterator

import numpy as np
import pytest

from vj.output.xvfb import SCREEN, XvfbError, running_xvfb  # noqa: F401  (re-exported for tests)


@pytest.fixture(scope="module")
def xvfb_display() -> Iterator[str]:
    """DISPLAY string of an Xvfb (1280x720x24, GLX) running for the test module."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed")
    with running_xvfb() as display:
        yield display


@pytest.fixture
def display(xvfb_display, monkeypatch):  # noqa: F811  (the fixture above)
    """The Xvfb's DISPLAY set for one test, which must leave glfw terminated (every window closed)."""
    from vj.output import window as window_mod
    monkeypatch.setenv("DISPLAY", xvfb_display)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    yield xvfb_display
    assert window_mod._glfw_users == 0, "a test left glfw initialised"


def xwd_root(display: str) -> np.ndarray:
    """(h, w, 3) uint8 screenshot of the whole X screen through `xwd -root` (what was presented)."""
    raw = subprocess.run(["xwd", "-root", "-silent", "-display", display], check=True,
                         capture_output=True, timeout=30).stdout
    header = struct.unpack(">25I", raw[:100])
    header_size, width, height, byte_order = header[0], header[4], header[5], header[7]
    bytes_per_pixel, bytes_per_line, masks, ncolors = header[11] // 8, header[12], header[14:17], header[19]
    start = header_size + 12 * ncolors
    # Xvfb sends 4 bytes a pixel, or 3 (packed, lines still padded) once GLX is in use.
    lines = np.frombuffer(raw[start:start + bytes_per_line * height], np.uint8).reshape(height, bytes_per_line)
    pixels = lines[:, :width * bytes_per_pixel].reshape(height, width, bytes_per_pixel).astype(np.uint32)
    order = range(bytes_per_pixel) if byte_order == 0 else reversed(range(bytes_per_pixel))
    words = sum(pixels[..., i] << (8 * k) for k, i in enumerate(order))
    channels = [(words & mask) >> (int(mask).bit_length() - 8) for mask in masks]   # 8-bit masks
    return np.stack(channels, axis=-1).astype(np.uint8)
