"""The live web preview inside `vj run`: a real LiveShow under Xvfb serves a small PNG of the show over HTTP
while a page (a websocket client) is open, and the picture follows the show."""

import json
import time
import urllib.request

import numpy as np
import pytest
from websockets.sync.client import connect

from test_osc import wait_for
from vj.config import AudioConfig, ControlConfig, RenderConfig
from vj.gfx.png import decode_png
from vj.show import LiveShow, preview_step
from xvfb import xvfb_display  # noqa: F401  (fixture)

CFG = RenderConfig(width_px=320, height_px=180)


@pytest.fixture
def show(xvfb_display, monkeypatch):  # noqa: F811
    monkeypatch.setenv("DISPLAY", xvfb_display)
    s = LiveShow("demo", "default", CFG, AudioConfig(), ControlConfig(osc_port=0, web=True, web_port=0))
    yield s
    s.close()


def fetch_preview(port: int) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/preview", timeout=5) as r:
        return r.status, r.headers.get("Content-Type", ""), r.read()


def preview_after(show, port: int, seconds: float) -> np.ndarray | None:
    """Run the show's frames for `seconds`, then the preview it serves as (H, W, 3) uint8 (None: no image yet)."""
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        show.frame()
    status, ctype, body = fetch_preview(port)
    if status == 204:
        return None
    assert status == 200 and ctype == "image/png" and body.startswith(b"\x89PNG\r\n\x1a\n")
    return decode_png(body)


def test_the_web_preview_shows_the_live_picture_and_follows_it(show):
    web = show.osc.web
    assert web is not None and show.osc.osc is None           # OSC off, the page on its own
    port = web.port
    assert fetch_preview(port)[0] == 204                       # no page open: no frame is read back for it
    with connect(f"ws://127.0.0.1:{port}/ws") as ws:           # the page's websocket
        assert json.loads(ws.recv(timeout=5))["preview"] is True
        assert wait_for(lambda: web.clients)
        first = None
        for _ in range(40):                                    # the first frames are black until the model's first image
            first = preview_after(show, port, 0.25)
            if first is not None and first.max() > 0:
                break
        assert first is not None, "no preview while a page is open"
        # Every 4th pixel of the chain's picture (the chain renders at the render scale), not one flat colour.
        h, w = show.engine.read_rgb().shape[:2]
        step = preview_step(w)
        assert first.shape == (-(-h // step), -(-w // step), 3)
        assert first.std() > 10 and first.max() > 40, (first.std(), first.max())
        later = preview_after(show, port, 1.5)                 # the CPPN walks on and the demo track plays
        assert later is not None and later.shape == first.shape
        assert np.abs(later.astype(np.int16) - first.astype(np.int16)).mean() > 2

