"""Spout out (Windows): the output as a Spout sender, through the SpoutGL package. UNTESTED: no Windows here.

Spout shares a GPU texture between programs on one Windows machine (Resolume, TouchDesigner, OBS with the
Spout2 plugin). This sender hands Spout the frames the show already reads back for recording (RGB, top row
first) with `sendImage`, which uploads them into Spout's shared texture; SpoutGL makes the OpenGL context it
needs on this thread. Nothing here runs on Linux or macOS: `SpoutSender` raises a clear error there.
"""

from __future__ import annotations

import importlib.util
import sys

import numpy as np

from vj.share.base import QueuedSender

GL_RGBA = 0x1908


class SpoutError(RuntimeError):
    """Spout cannot start; one line saying why."""


class SpoutSender(QueuedSender):
    kind = "spout"

    def __init__(self, name: str, width_px: int, height_px: int, fps: float, queue_frames: int = 2):
        if sys.platform != "win32":       # the branch these machines take: Spout exists only on Windows
            raise SpoutError(f"Spout is Windows only (this is {sys.platform}); use --ndi")
        if importlib.util.find_spec("SpoutGL") is None:
            raise SpoutError("Spout: the SpoutGL package is not installed (pip install 'vj[spout]')")
        self._spout = None
        self._rgba: np.ndarray | None = None
        super().__init__(name, width_px, height_px, fps, queue_frames)

    def _open(self) -> None:
        import SpoutGL
        self._spout = SpoutGL.SpoutSender()
        self._spout.setSenderName(self.name)

    def _send(self, rgb: np.ndarray) -> None:
        h, w = rgb.shape[:2]
        if self._rgba is None or self._rgba.shape[:2] != (h, w):
            self._rgba = np.full((h, w, 4), 255, np.uint8)
        self._rgba[..., :3] = rgb
        if not self._spout.sendImage(self._rgba, w, h, GL_RGBA, False, 0):
            raise SpoutError("Spout refused the frame (sendImage returned false)")
        self._spout.setFrameSync(self.name)

    def _close(self) -> None:
        if self._spout is not None:
            self._spout.releaseSender()
            self._spout = None
