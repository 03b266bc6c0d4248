"""Recorder: H.264 + AAC in a fragmented MP4, or lossless FFV1 + FLAC in MKV, on its own encoder thread behind a bounded queue.

Beside a recording to a file path the recorder keeps a plain-text log, `PATH.log`: when it started and with
what settings, and when it stopped, how many frames it wrote and dropped, and why it stopped.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from fractions import Fraction
from typing import BinaryIO

import av
import numpy as np
from av.video.reformatter import ColorPrimaries, ColorRange, Colorspace, ColorTrc, Interpolation, VideoReformatter

log = logging.getLogger(__name__)

X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium",
                "slow", "slower", "veryslow", "placebo")
# vj's own encoder presets: an x264 preset with some of its tools turned back on. `quick`: ultrafast with the
# deblocking filter, CABAC and 8x8 transforms. On vj's fast-moving frames (zoom, rotation, feedback) motion
# search finds little, so veryfast's extra search buys almost nothing: at 1280x720 quick took half veryfast's
# CPU time per frame (21-28 ms against 39-52 ms) at the same SSIM to within 0.007 and 1.0-1.3x the file size,
# where plain ultrafast (no deblocking) lost 0.01-0.045 SSIM at 1.3-1.7x the size (three presets' frames).
VJ_PRESETS = {"quick": ("ultrafast", "deblock=1:cabac=1:8x8dct=1:partitions=i8x8,i4x4")}
ENCODER_PRESETS = ("quick",) + X264_PRESETS
# On a machine with this many cores or fewer x264 encodes its fast presets on one thread. The other stages (model, shaders,
# the rest of the pipeline) already keep the cores busy, and x264's frame threads then cost more than they
# give: 1280x720 renders of the default scene on 2 cores, eight paired 8 s runs with quick: -6 to +32 %,
# median +13 % (29.2-30.9 fps against 22.6-26.9 in the quietest three). One x264 thread still encodes 720p
# quick at about 70 fps. Live recordings dropped as many frames either way (57-84 against 62-141 of 600).
# Only the fast presets: one thread of veryfast manages 26 fps at 720p, below what the pipeline needs.
FEW_CORES = 2
ONE_THREAD_PRESETS = ("quick", "ultrafast", "superfast")

# empty_moov + frag_keyframe: the header goes first and every keyframe starts a fragment that is
# complete on disk, so a killed process leaves a file that plays up to the last fragment.
# flush_packets: each finished fragment goes to the file at once instead of waiting in AVIO's buffer.
CONTAINER_OPTIONS = {"movflags": "frag_keyframe+empty_moov+default_base_moof", "flush_packets": "1"}
# Matroska (FFV1): a cluster at least every second, each flushed as it closes, so a killed process loses
# at most about a second (the default lets clusters grow to 5 s).
MKV_OPTIONS = {"cluster_time_limit": "1000", "flush_packets": "1"}

AAC_FRAME_SAMPLES = 1024          # the AAC encoder takes exactly this many samples per frame
AAC_BIT_RATE_PER_CHANNEL = 96_000
AUDIO_LAYOUTS = {1: "mono", 2: "stereo", 3: "3.0", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}

# Codecs: (container format, video codec, pixel format, audio codec). FFV1 keeps every pixel (RGB, intra-frame
# only, so any frame can be cut on) for editing; files are about 10x larger than H.264.
CODECS = {
    "h264": ("mp4", "libx264", "yuv420p", "aac"),
    "ffv1": ("matroska", "ffv1", "bgr0", "flac"),
}
FLAC_SCALE = 2 ** 23              # FLAC keeps 24 bits: samples are stored as int32 with the low 8 bits zero

_STOP = object()


def check_frame(rgb: np.ndarray) -> None:
    """A caller's error, raised at once: frames for a writer are (H, W, 3) uint8, at least 2x2."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] < 2 or rgb.shape[1] < 2 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 frame, got {rgb.shape} {rgb.dtype}")


def check_audio(samples: np.ndarray, channels: int) -> np.ndarray:
    """(n, channels) float32 from a caller's samples ((n,) for mono is accepted); a wrong shape raises at once."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 1 and channels == 1:
        samples = samples[:, None]
    if samples.ndim != 2 or samples.shape[1] != channels:
        raise ValueError(f"expected audio (n, {channels}), got {samples.shape}")
    return samples


def usable_cores() -> int:
    """The cores this process may run on: a container or taskset limits them, os.cpu_count() shows the host's."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class RecorderError(Exception):
    """The recording cannot start; the message is one line saying why."""


def _reason(exc: BaseException) -> str:
    """One line for an encoder or file error: the OS reason when there is one."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip().splitlines()
    line = text[0] if text else ""
    if isinstance(exc, (OSError, av.FFmpegError)):
        return line or type(exc).__name__
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


class Recorder:
    """Writes timestamped RGB frames and audio to an MP4; `add_*` never block the caller.

    Live (`blocking=False`): when `queue_frames` frames wait for the encoder, new video frames are
    dropped and counted in `dropped_frames`. Offline (`blocking=True`): `add_video` waits for the
    encoder instead, so no frame is ever dropped. Audio is never dropped: it is small and the
    encoder thread takes it in order between video frames.

    Timing: video frame `frame_index` is shown at `frame_index / fps` seconds; audio sample k of
    everything passed to `add_audio` plays at `k / audio_rate_hz`. Both clocks start at 0 with the
    recording, so the caller starts `frame_index` and the audio at the same moment.

    After an encoder error (disk full, file gone) `error` holds one line, `add_*` return False and
    what was written before stays playable.

    The constructor opens the file and the codecs (a few ms) and raises RecorderError when it
    cannot. Memory: up to `queue_frames` copies of a frame wait (2.7 MB each at 1280x720).
    Always `close()`: a recorder left open keeps its thread, and its file ends at the last
    complete fragment (at most about a second is lost).
    """

    def __init__(
        self,
        path: str | os.PathLike | BinaryIO,
        width_px: int,
        height_px: int,
        fps: float,
        audio_rate_hz: int = 48000,
        audio_channels: int = 2,
        crf: int = 20,
        preset: str = "quick",
        queue_frames: int = 8,
        blocking: bool = False,
        codec: str = "h264",
    ):
        if width_px <= 0 or height_px <= 0:
            raise ValueError(f"recorder size must be positive, got {width_px}x{height_px}")
        if not fps > 0:
            raise ValueError(f"recorder fps must be positive, got {fps}")
        if codec not in CODECS:
            raise ValueError(f"unknown recording codec {codec!r}: use one of {', '.join(CODECS)}")
        if preset not in ENCODER_PRESETS:
            raise ValueError(f"unknown encoder preset {preset!r}: use one of {', '.join(ENCODER_PRESETS)}")
        if not 0 <= crf <= 51:
            raise ValueError(f"crf must be 0..51, got {crf}")
        if not 0 <= audio_channels <= 8:
            raise ValueError(f"audio_channels must be 0..8 (0: no audio), got {audio_channels}")
        if queue_frames < 1:
            raise ValueError(f"queue_frames must be at least 1, got {queue_frames}")

        self.path = path
        self.codec = codec
        self.width_px = int(width_px)
        self.height_px = int(height_px)
        # H.264 in yuv420p needs even sizes: odd ones are padded by repeating the last row/column (FFV1 in RGB does not).
        even = codec == "h264"
        self.encoded_size = (self.width_px + self.width_px % 2 * even, self.height_px + self.height_px % 2 * even)
        self.fps = Fraction(fps).limit_denominator(1001)
        self.audio_rate_hz = int(audio_rate_hz)
        self.audio_channels = int(audio_channels)
        self.blocking = blocking
        self._crf = int(crf)
        self._preset = preset
        self.queue_frames = int(queue_frames)

        self.dropped_frames = 0       # video frames not recorded (queue full or out of order)
        self.dropped_late = 0         # of those, dropped because the encoder was behind (queue full)
        self.frames_written = 0       # video frames handed to the encoder
        self.audio_samples_written = 0
        self.error: str | None = None

        self._name = os.fspath(path) if isinstance(path, (str, os.PathLike)) else getattr(path, "name", "<stream>")
        self._closed = False
        self._last_index = -1
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._video_slots = threading.Semaphore(self.queue_frames)
        self._reformatter = VideoReformatter()
        self._audio_pending = np.zeros((0, max(self.audio_channels, 1)), np.float32)  # (n, ch)
        self._audio_frame_samples = AAC_FRAME_SAMPLES
        self._started_at = time.strftime("%Y-%m-%d %H:%M:%S")
        self._container = self._open()
        self._write_log(f"started: {self.width_px}x{self.height_px} at {float(self.fps):g} fps, {self._settings()}")
        self._thread = threading.Thread(target=self._run, name="vj-recorder", daemon=True)
        self._thread.start()
        if self.encoded_size != (self.width_px, self.height_px):
            log.info("recording %dx%d padded to %dx%d (H.264 needs even sizes)",
                     self.width_px, self.height_px, *self.encoded_size)

    # -- caller side -------------------------------------------------------------------------

    @property
    def accepting(self) -> bool:
        return not self._closed and self.error is None

    def add_video(self, rgb: np.ndarray, frame_index: int) -> bool:
        """Queue one frame (H, W, 3) uint8, top row first; False when it was dropped.

        A frame of another size is scaled to the recording's size on the encoder thread, in the same
        swscale call that converts it to YUV: the engine hands over its render-scale frames as they are.
        """
        check_frame(rgb)
        if not self.accepting:
            return False
        frame_index = int(frame_index)
        if frame_index <= self._last_index:
            # The encoder needs rising timestamps; a repeated index would shift the whole file.
            self.dropped_frames += 1
            return False
        if not self._acquire_slot():
            if not self.dropped_late:
                log.warning("recording to %s: the encoder is behind, dropping frames (the show goes on)", self._name)
            self.dropped_frames += 1
            self.dropped_late += 1
            return False
        self._last_index = frame_index
        # Copy: the caller usually reuses its read-back buffer for the next frame.
        self._queue.put(("v", np.array(rgb, copy=True, order="C"), frame_index))
        return True

    def add_audio(self, samples: np.ndarray) -> bool:
        """Queue audio (n, channels) float32 in -1..1, continuous with the previous call."""
        if self.audio_channels == 0:
            return False
        samples = check_audio(samples, self.audio_channels)
        if not self.accepting:
            return False
        if len(samples):
            self._queue.put(("a", samples.copy()))
        return True

    def close(self, timeout_s: float | None = None) -> None:
        """Encode what is queued, flush both encoders and finish the file. Safe to call twice."""
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)
        self._thread.join(timeout_s)
        if self._thread.is_alive() and timeout_s:        # timeout 0: the caller does not wait, by design
            log.warning("recorder for %s still flushing after %.1f s", self._name, timeout_s)

    @property
    def finished(self) -> bool:
        """The encoder thread has ended: the file is complete (or failed: see `error`)."""
        return not self._thread.is_alive()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _acquire_slot(self) -> bool:
        if not self.blocking:
            return self._video_slots.acquire(blocking=False)
        while self.accepting:  # offline: wait for the encoder, but never past an encoder error
            if self._video_slots.acquire(timeout=0.1):
                return True
        return False

    # -- set-up ------------------------------------------------------------------------------

    def _settings(self) -> str:
        fmt, vcodec, pix_fmt, acodec = CODECS[self.codec]
        video = f"{vcodec} crf {self._crf} {self._preset}" if self.codec == "h264" else f"{vcodec} {pix_fmt} (lossless)"
        audio = f"{acodec} {self.audio_rate_hz} Hz x{self.audio_channels}" if self.audio_channels else "no audio"
        return f"{video}, {audio}, {fmt}"

    def _write_log(self, line: str) -> None:
        """Append one line to PATH.log (file paths only). A log that cannot be written never stops the recording."""
        if not isinstance(self.path, (str, os.PathLike)):
            return
        try:
            with open(f"{self._name}.log", "a", encoding="utf-8") as f:
                f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")
        except OSError as exc:
            log.warning("recording log %s.log: %s", self._name, _reason(exc))

    def _stopped_line(self, reason: str) -> str:
        late = self.dropped_late
        return (f"stopped ({reason}): {self.frames_written} frames written, {self.dropped_frames} dropped "
                f"({late} because the encoder was behind, {self.dropped_frames - late} out of order), "
                f"{self.audio_samples_written / max(self.audio_rate_hz, 1):.2f} s of audio")

    def _open(self) -> av.container.OutputContainer:
        fmt = CODECS[self.codec][0]
        options = CONTAINER_OPTIONS if fmt == "mp4" else MKV_OPTIONS
        try:
            container = av.open(self.path, "w", format=fmt, container_options=options)
        except (OSError, av.FFmpegError, ValueError) as exc:
            raise RecorderError(f"cannot record to {self._name}: {_reason(exc)}") from None
        try:
            self._add_streams(container)
            container.start_encoding()   # opens the codecs and writes the header now: errors show here
            if self._astream is not None and self._astream.codec_context.frame_size:
                self._audio_frame_samples = self._astream.codec_context.frame_size
        except (OSError, av.FFmpegError, ValueError) as exc:
            try:
                container.close()
            except (OSError, av.FFmpegError):
                pass
            raise RecorderError(f"cannot record to {self._name}: {_reason(exc)}") from None
        return container

    def _add_streams(self, container: av.container.OutputContainer) -> None:
        # bf=0: without B-frames the first frame has pts = dts = 0, so video and audio start
        # together in a fragmented file (B-frames shift the video by two frames there). The AAC
        # encoder's 1024-sample priming still makes the muxer shift both streams by 21 ms at
        # 48 kHz: frame 0 is shown that much longer and audio and video stay in sync.
        # A keyframe every second starts a fragment every second.
        _, vcodec, pix_fmt, acodec = CODECS[self.codec]
        if vcodec == "libx264":
            x264_preset, x264_params = VJ_PRESETS.get(self._preset, (self._preset, ""))
            options = {"crf": str(self._crf), "preset": x264_preset, "bf": "0"}
            if usable_cores() <= FEW_CORES and self._preset in ONE_THREAD_PRESETS:
                x264_params = ":".join(p for p in (x264_params, "threads=1") if p)
            if x264_params:
                options["x264-params"] = x264_params
            v = container.add_stream(vcodec, rate=self.fps, options=options)
        else:       # FFV1 version 3 with slices and CRCs: intra-only, every frame a keyframe, damage stays local
            v = container.add_stream(vcodec, rate=self.fps, options={"level": "3", "slicecrc": "1", "g": "1"})
        v.width, v.height = self.encoded_size
        v.pix_fmt = pix_fmt
        v.time_base = 1 / self.fps
        cc = v.codec_context
        cc.gop_size = max(1, round(float(self.fps))) if vcodec == "libx264" else 1
        # Converted with the BT.709 matrix (limited range) and tagged so, as players assume for HD.
        cc.colorspace = int(Colorspace.ITU709)
        cc.color_range = int(ColorRange.MPEG)
        cc.color_trc = int(ColorTrc.BT709)
        cc.color_primaries = int(ColorPrimaries.BT709)
        self._vstream = v
        self._astream = None
        if self.audio_channels:
            a = container.add_stream(acodec, rate=self.audio_rate_hz)
            a.layout = AUDIO_LAYOUTS[self.audio_channels]
            if acodec == "aac":
                a.bit_rate = AAC_BIT_RATE_PER_CHANNEL * self.audio_channels
            else:
                a.format = "s32"
            self._astream = a

    # -- encoder thread ----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                item = self._queue.get()
                if item is _STOP:
                    break
                if item[0] == "v":
                    try:
                        self._encode_video(item[1], item[2])
                    finally:
                        self._video_slots.release()
                else:
                    self._encode_audio(item[1])
            self._finish()
        except Exception as exc:  # the thread's boundary: whatever it was, the show goes on
            self._fail(exc)

    def _encode_video(self, rgb: np.ndarray, frame_index: int) -> None:
        w, h = self.encoded_size
        if rgb.shape[:2] == (self.height_px, self.width_px) and rgb.shape[:2] != (h, w):
            rgb = np.pad(rgb, ((0, h - rgb.shape[0]), (0, w - rgb.shape[1]), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        if self.codec == "ffv1":       # RGB stays RGB: only scaled when the size differs
            frame = self._reformatter.reformat(frame, width=w, height=h, format="bgr0",
                                               interpolation=Interpolation.BILINEAR)
        else:
            frame = self._reformatter.reformat(
                frame, width=w, height=h, format="yuv420p", interpolation=Interpolation.BILINEAR,
                dst_colorspace=Colorspace.ITU709, dst_color_range=ColorRange.MPEG,
                dst_color_trc=ColorTrc.BT709, dst_color_primaries=ColorPrimaries.BT709)
        frame.pts = frame_index
        frame.time_base = 1 / self.fps
        self._container.mux(self._vstream.encode(frame))
        self.frames_written += 1

    def _encode_audio(self, samples: np.ndarray) -> None:
        # Re-frame into exact AAC frames so that every frame's pts is its first sample's index.
        pending = np.concatenate([self._audio_pending, samples]) if len(self._audio_pending) else samples
        size = self._audio_frame_samples
        n_full = len(pending) // size * size
        for start in range(0, n_full, size):
            self._encode_audio_frame(pending[start:start + size])
        self._audio_pending = pending[n_full:]

    def _encode_audio_frame(self, chunk: np.ndarray) -> None:
        """Encode (n, ch) float32, n <= the codec's frame size (only the last frame may be short)."""
        if self._astream.codec_context.name == "flac":
            frame = av.AudioFrame.from_ndarray(flac_samples(chunk).reshape(1, -1), format="s32",
                                               layout=self._astream.layout)
        else:
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk.T), format="fltp",
                                               layout=self._astream.layout)
        frame.sample_rate = self.audio_rate_hz
        frame.pts = self.audio_samples_written
        frame.time_base = Fraction(1, self.audio_rate_hz)
        self._container.mux(self._astream.encode(frame))
        self.audio_samples_written += len(chunk)

    def _finish(self) -> None:
        if self._astream is not None:
            if len(self._audio_pending):
                self._encode_audio_frame(self._audio_pending)
                self._audio_pending = self._audio_pending[:0]
            self._container.mux(self._astream.encode(None))
        self._container.mux(self._vstream.encode(None))
        self._container.close()
        self._write_log(self._stopped_line("closed"))

    def _fail(self, exc: BaseException) -> None:
        self.error = f"recording to {self._name} stopped: {_reason(exc)}"
        if isinstance(exc, (OSError, av.FFmpegError)):
            log.error("%s", self.error)
        else:
            log.exception("%s", self.error)
        try:
            self._container.close()   # finish the last fragment if the file still takes it
        except Exception:  # the file is already broken; what was written before stays
            pass
        self._write_log(self._stopped_line(f"error: {_reason(exc)}"))
        # Producers see `error` and stop; free the frames still queued.
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break


def flac_samples(samples: np.ndarray) -> np.ndarray:
    """(n, ch) float32 -> (n, ch) int32 as FLAC stores them: 24 bits, clipped, in the high bits."""
    q = np.clip(np.round(np.asarray(samples, np.float64) * FLAC_SCALE), -FLAC_SCALE, FLAC_SCALE - 1)
    return np.ascontiguousarray(q.astype(np.int32) << 8)


MAX_REPEATS = 2                   # a recording faster than the display repeats a frame at most this many times


def due_ticks(elapsed_s: float, fps: float, next_tick: int) -> range:
    """Recording ticks that a display frame shown `elapsed_s` into the recording fills.

    Empty when its tick already has a frame (a recording slower than the display takes the first frame
    of each tick); more than one when the recording runs faster than the display (the frame repeats,
    at most MAX_REPEATS extra times: after a stall the file shows a gap rather than a burst of copies).
    """
    due = int(elapsed_s * fps)
    if due < next_tick:
        return range(0)
    return range(max(next_tick, due - MAX_REPEATS), due + 1)
