"""Spout out (Windows): the output as a Spout sender, through the SpoutGL package. UNTESTED: no Windows here.

Spout shares a GPU texture between programs on one Windows machine (Resolume, TouchDesigner, OBS with the
Spout2 plugin). This sender hands Spout the frames the show already reads back for recording (RGB, top row
first) with `sendImage`, which uploads them into Spout's shared texture; SpoutGL makes the OpenGL context it
needs on this thread. Nothing here runs on Linux or macOS: `SpoutSender` raises a clear error there.
"""

from __future__ import annotations

import numpy as np

from vj.share.base import QueuedSender, require

GL_RGBA = 0x1908


class SpoutError(RuntimeError):
    """Spout cannot start; one line saying why."""


class SpoutSender(QueuedSender):
    kind = "spout"

    def __init__(self, name: str, width_px: int, height_px: int, fps: float, queue_frames: int = 2):
        require(SpoutError, "Spout", "win32", "Windows", "SpoutGL", "spout")
        self._spout = None
        super().__init__(name, width_px, height_px, fps, queue_frames)

    def _open(self) -> None:
        import SpoutGL
        self._spout = SpoutGL.SpoutSender()
        self._spout.setSenderName(self.name)

    def _send(self, rgb: np.ndarray) -> None:
        h, w = rgb.shape[:2]
        if not self._spout.sendImage(self._rgba(rgb), w, h, GL_RGBA, False, 0):
            raise SpoutError("Spout refused the frame (sendImage returned false)")
        self._spout.setFrameSync(self.name)

    def _close(self) -> None:
        if self._spout is not None:
            self._spout.releaseSender()
            self._spout = None
