"""A chunk's frames as bytes: lossless FFV1 in Matroska, so a chunk crosses the cluster and lands on disk exactly."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np


class ChunkWriter:
    """RGB frames (H, W, 3) uint8 in, FFV1 (bgr0, lossless: decoding gives the same bytes back) Matroska bytes out.
    About 0.4 MB and 12 ms a 1280x720 frame on one core here."""

    def __init__(self, fps: float):
        self.fps = fps
        self._buf = io.BytesIO()
        self._container = av.open(self._buf, "w", format="matroska")
        self._stream = None
        self.frames = 0

    def add(self, rgb: np.ndarray) -> None:
        """A frame at the engine's master size (the writer on the driver scales it as a one-machine render does)."""
        if self._stream is None:
            self._stream = self._container.add_stream("ffv1", rate=max(1, round(self.fps)))  # the rate only labels
            self._stream.height, self._stream.width = rgb.shape[:2]
            self._stream.pix_fmt = "bgr0"
            self._stream.options = {"slices": "4", "threads": "1"}
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = self.frames
        self._container.mux(self._stream.encode(frame))
        self.frames += 1

    @property
    def size_bytes(self) -> int:
        return self._buf.tell()

    def finish(self) -> bytes:
        if self._stream is not None:
            self._container.mux(self._stream.encode())
        self._container.close()
        return self._buf.getvalue()


def read_chunk(parts: list[bytes | Path]) -> Iterator[np.ndarray]:
    """The frames of a chunk's parts, in order, (H, W, 3) uint8."""
    for part in parts:
        with av.open(io.BytesIO(part) if isinstance(part, bytes) else str(part)) as container:
            for frame in container.decode(video=0):
                yield frame.to_ndarray(format="rgb24")
