"""Syphon out (macOS): the output as a Syphon server, through the syphon-python package. UNTESTED: no Mac here.

Syphon shares a GPU texture between programs on one Mac (Resolume, MadMapper, VDMX, OBS with its Syphon
source). This server copies the frames the show already reads back for recording (RGB, top row first) into
a Metal texture and publishes it (syphon-python's Metal server; macOS 11 or later). Nothing here runs on Linux
or Windows: `SyphonSender` raises a clear error there.
"""

from __future__ import annotations

import numpy as np

from vj.share.base import QueuedSender, require


class SyphonError(RuntimeError):
    """Syphon cannot start; one line saying why."""


class SyphonSender(QueuedSender):
    kind = "syphon"

    def __init__(self, name: str, width_px: int, height_px: int, fps: float, queue_frames: int = 2):
        require(SyphonError, "Syphon", "darwin", "macOS", "syphon", "syphon")
        self._server = self._texture = None
        super().__init__(name, width_px, height_px, fps, queue_frames)

    def _open(self) -> None:
        import syphon
        from syphon.utils.raw import create_mtl_texture
        self._server = syphon.SyphonMetalServer(self.name)
        self._texture = create_mtl_texture(self._server.device, self.width_px, self.height_px)

    def _send(self, rgb: np.ndarray) -> None:
        from syphon.utils.numpy import copy_image_to_mtl_texture
        copy_image_to_mtl_texture(self._rgba(rgb), self._texture)
        self._server.publish_frame_texture(self._texture)

    def _close(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
