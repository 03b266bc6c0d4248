"""Xvfb for tests: the `xvfb_display` fixture (':N' of a running 1280x720 Xvfb for the test module).

In a test module:

    from xvfb import xvfb_display  # noqa: F401

    def test_something(xvfb_display, monkeypatch):
        monkeypatch.setenv("DISPLAY", xvfb_display)

Or anywhere: `with running_xvfb() as display: ...`. Tests are skipped where Xvfb is not installed.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from vj.output.xvfb import SCREEN, XvfbError, running_xvfb  # noqa: F401  (re-exported for tests)


@pytest.fixture(scope="module")
def xvfb_display() -> Iterator[str]:
    """DISPLAY string of an Xvfb (1280x720x24, GLX) running for the test module."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed")
    with running_xvfb() as display:
        yield display
