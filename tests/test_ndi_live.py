"""NDI out from the live show: a receiver in this process gets the output, without the HUD, at the show's rate.

Apart from tests/test_ndi.py on purpose: with discovery by the loopback address (no mDNS here, tests/conftest.py),
a process lists the sources of only one NDI process on the machine, so this test runs when no other NDI peer
process is alive (test_ndi.py's module peer is gone once its module ends).
"""

import os
import time

import numpy as np
import pytest

from ndi_helpers import FPS, H, RAMP_MEAN_BOUND, W, wait_for
from xvfb import xvfb_display  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("loopback_only")     # NDI multicasts: only inside the loopback-only namespace
RUN = f"vjtest{os.getpid()}"



@pytest.mark.slow
def test_the_live_show_publishes_its_output_without_the_hud_at_its_frame_rate(xvfb_display, monkeypatch):  # noqa: F811
    from vj.config import AudioConfig, ControlConfig, RenderConfig, SyncConfig
    from vj.ndi.receiver import NdiSource
    from vj.ndi.sender import AUDIO_FRAME_S
    from vj.show import LiveShow
    monkeypatch.setenv("DISPLAY", xvfb_display)
    name = f"{RUN}-show"
    show = LiveShow("demo", "default", RenderConfig(width_px=W, height_px=H, render_scale=1.0), AudioConfig(),
                    ControlConfig(osc_port=0), hud=True, sync=SyncConfig(ndi_name=name, ndi_audio=True))
    try:
        # A picture with something in it (the first frames are black until the model's first image), then held.
        wait_for(lambda: (show.frame(), show.engine.read_rgb().std() > 20)[1], 30.0, 0.0)
        show.engine.registry.set("/master/freeze", True)     # hold the picture: every frame is the same
        for _ in range(3):
            show.frame()
        with NdiSource(name, timeout_s=10.0) as src:
            wait_for(lambda: (show.frame(), src.frames_received > 0)[1], 10.0, 0.0)
            ndi = show.ndi
            frame_samples = round(show.source.sample_rate_hz * AUDIO_FRAME_S)     # one NDI audio frame

            def audio_caught_up():        # what the show queued has gone out, but for a part of an NDI frame
                return ndi.audio_samples_queued - ndi.audio_samples_sent < frame_samples
            assert wait_for(audio_caught_up, 10.0), (ndi.audio_samples_queued, ndi.audio_samples_sent)
            sent0, got0, t0 = show.ndi.sent, src.frames_received, time.monotonic()
            audio0, read0 = ndi.audio_samples_sent, show.source.samples_read
            while time.monotonic() - t0 < 2.0:      # a 30 fps show (under Xvfb frames are not held to a display)
                t = time.monotonic()
                show.frame()
                time.sleep(max(0.0, t + 1 / FPS - time.monotonic()))
            shown, read = show.frames, show.source.samples_read - read0
            wait_for(lambda: show.ndi.sent + show.ndi.dropped >= shown - 8 and
                     src.frames_received - got0 >= 0.8 * (show.ndi.sent - sent0) and audio_caught_up(), 10.0)
            sent, got = show.ndi.sent - sent0, src.frames_received - got0
            audio = ndi.audio_samples_sent - audio0
            rgb = src.frame_at().to_ndarray()
        want = show.engine.read_rgb()
        assert want.std() > 20                                # not a black or flat frame
        # The HUD (white text top left, on the window) is not in what NDI sends: the whole picture, its corner
        # included, is the master's within the codec's error. NDI's codec is lossy (8-bit 4:2:2 Y'CbCr, rate
        # controlled), so exact 8-bit RGB cannot come back; the bound is ndi_helpers' sanity bound on the mean
        # (measured here: 2.15 on this picture, max 42 at edges). The HUD's text in the corner (white on the
        # picture over about a fifth of it) would put that corner's mean near 30.
        diff = np.abs(rgb.astype(np.int16) - want.astype(np.int16))
        assert diff.mean() <= RAMP_MEAN_BOUND and diff[:40, :120].mean() <= RAMP_MEAN_BOUND, diff.mean()
        # Every frame the show made went out (the queue of 4 drops only when the sender falls behind) and the
        # receiver got at least 80 % of them at the show's rate (it takes the newest: a frame that arrives while
        # the receiver's thread is busy is replaced by the next).
        assert sent >= 10 and got >= 0.8 * sent, (sent, got, show.ndi.dropped)
        # The show's audio went along (--ndi-audio): every sample the show read in those frames (2 s of the track,
        # played on the wall clock: at least the 2 s less the frame before them) went out, less at most a part of an
        # NDI audio frame at either end, and none was dropped.
        assert read >= (2.0 - 1 / FPS) * show.source.sample_rate_hz and abs(audio - read) < frame_samples, (audio, read, frame_samples)
        assert show.ndi.audio_dropped == 0
        line = next(s for s in show.hud_stats()["sync"] if s.startswith("ndi"))
        assert line.startswith(f"ndi     {name}: ") and " sent, " in line
    finally:
        show.close()
