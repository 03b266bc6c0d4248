"""decode_file: any audio file PyAV (FFmpeg) can read, as stereo float32 at the engine's sample rate."""

from __future__ import annotations

import os

import av
import numpy as np


class AudioFileError(Exception):
    """A file that cannot be played; the message is one line naming the file and the problem."""


def decode_file(path: str | os.PathLike, sample_rate_hz: int) -> np.ndarray:
    """Decode the first audio stream of `path` to a `(n, 2)` float32 array at `sample_rate_hz`.

    Mono files are copied to both channels at full level (FFmpeg's own upmix would lower them by
    3 dB); files with more than two channels are mixed down by FFmpeg.
    """
    name = os.fspath(path)
    if not os.path.exists(name):
        raise AudioFileError(f"{name}: no such file")
    if os.path.isdir(name):
        raise AudioFileError(f"{name}: is a directory, not an audio file")
    try:
        container = av.open(name)
    except av.FFmpegError as exc:
        raise AudioFileError(f"{name}: not an audio file ({_reason(exc)})") from None
    with container:
        if not container.streams.audio:
            raise AudioFileError(f"{name}: no audio stream in this file")
        stream = container.streams.audio[0]
        out_channels = 1 if stream.codec_context.layout.nb_channels == 1 else 2
        resampler = av.AudioResampler(format="flt", layout="mono" if out_channels == 1 else "stereo",
                                      rate=int(sample_rate_hz))
        chunks: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                frame.pts = None         # timestamps are irrelevant here; gaps would make the resampler pad
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1, out_channels))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1, out_channels))
        except av.FFmpegError as exc:
            raise AudioFileError(f"{name}: cannot decode audio ({_reason(exc)})") from None
    if not chunks:
        raise AudioFileError(f"{name}: the audio stream holds no samples")
    samples = np.concatenate(chunks).astype(np.float32, copy=False)
    if out_channels == 1:
        samples = np.repeat(samples, 2, axis=1)
    return np.ascontiguousarray(samples)


def _reason(exc: Exception) -> str:
    """FFmpeg's reason without the file name it repeats."""
    text = getattr(exc, "strerror", None) or str(exc)
    return " ".join(str(text).split())
