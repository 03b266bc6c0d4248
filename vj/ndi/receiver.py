"""NdiSource: an NDI source, found by name, as live video input with WebcamSource's interface; it reconnects by name.

A reader thread polls libndi's frame synchroniser (which always holds the sender's newest frame) and copies
each new frame out; `frame_at` converts the newest one to rgb24 when it is asked for, once per frame.

When the sender goes away (no new frame for STALE_S, or for GONE_FRAMES with no connection left: a sender
that crashed or closed drops its connection at once) the source keeps answering with the last good frame
and `status` says it is waiting. libndi reconnects a receiver to a source of the
same full name by itself once its discovery lists it again (within about 5 s on this runtime: it asks the
configured addresses that often); the reader looks the name up too, so a sender that comes back under
another host ("OTHERHOST (NAME)") or one that libndi does not pick up again is connected to explicitly.
`reconnects` counts the times frames came back after the sender had been away.

Frames arrive as UYVY (8-bit 4:2:2 Y'CbCr, BT.709, limited range: what NDI carries, half the bytes of RGBA)
and are converted in swscale. libndi's own conversion to RGBA was measured to be off: 2 levels dark at
white and 15 levels short in blue on saturated blue (it scales Cb by about 2.0 instead of 2.1124); the
swscale conversion here puts flat colours within one code of each Y'CbCr component (tests/test_ndi.py).
"""

from __future__ import annotations

import logging
import math
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace, Interpolation, VideoReformatter

from vj.ndi.runtime import NdiError, connect, cyndilib, find_source, lookup, source_names
from vj.video.source import VideoError, VideoInfo

log = logging.getLogger(__name__)

STALE_S = 1.0                         # no new frame for this long: the sender is away (paused, hung or gone)
GONE_FRAMES = 3                       # no new frame for this many frame times and no connection: away already
LOOKUP_EVERY_S = 0.5                  # while it is away, look its name up this often
RECONNECT_AFTER_S = 1.0               # listed again this long without libndi reconnecting: connect ourselves
POLL_FRAMES = 0.25                    # the reader asks for a new frame four times per frame of the sender
POLL_MIN_S, POLL_MAX_S = 0.002, 0.01
FIRST_FRAME_S = 2.0                   # a source that is listed sends its first frame within this, at least

# Exact Y'CbCr -> RGB (ACCURATE_RND) with chroma repeated over each pixel pair (POINT + FULL_CHR_H_INT).
# swscale's fast unscaled path is 2 levels dark at white; interpolating chroma between pairs smears colour
# edges by half a pair. 12 ms for 1080p on a 2-core machine against 2 ms for the fast path, once per new frame.
EXACT = Interpolation.POINT | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
SCALED = Interpolation.AREA | Interpolation.ACCURATE_RND


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


@dataclass(frozen=True)
class _Raw:
    """One received frame, copied out of libndi: rows of `fourcc` pixels, no padding."""

    fourcc: str                       # "UYVY", "RGBA", "RGBX", "BGRA" or "BGRX"
    width_px: int
    height_px: int
    fps: float
    data: np.ndarray                  # (height_px, width_px * bytes per pixel) uint8


class _NdiReader:
    """State shared with the reader thread (not the source itself, so the source can be garbage-collected).

    The thread is the only user of the cyndilib receiver and frame; it releases them when it ends.
    """

    def __init__(self, name: str, full_name: str, receiver, video, fourccs: dict):
        self.name = name
        self.full_name = full_name    # "HOST (NAME)" of the sender connected to now
        self.receiver = receiver
        self.video = video            # the frame synchroniser's frame (VideoFrameSync)
        self.fourccs = fourccs        # cyndilib FourCC -> our name, for the formats this reader takes
        self.cond = threading.Condition()
        self.latest: _Raw | None = None
        self.frames = 0               # new frames received
        self.reconnects = 0           # times frames came back after the sender had been away
        self.away = False
        self.status = f"ndi {name}: connecting to {full_name}"
        self.error: str | None = None
        self.stopped = False
        self.thread: threading.Thread | None = None
        self._listed_since_s: float | None = None     # the away sender listed again since (monotonic s)

    def run(self) -> None:
        last_key = None
        last_new_s = time.monotonic()
        next_lookup_s = 0.0
        poll_s = POLL_MAX_S / 2
        frame_s = 1 / 30
        try:
            while not self.stopped:
                now = time.monotonic()
                raw, key = self._capture(last_key)
                if raw is not None:
                    last_key, last_new_s = key, now
                    frame_s = 1 / raw.fps if raw.fps > 0 else frame_s
                    poll_s = min(max(POLL_FRAMES * frame_s, POLL_MIN_S), POLL_MAX_S)
                    self._publish(raw)
                else:
                    quiet_s = now - last_new_s
                    if self.latest is None:       # still connecting: only a long silence counts
                        gone = quiet_s > STALE_S
                    else:                         # a crashed sender drops its connections at once
                        gone = self.away or quiet_s > STALE_S or (
                            quiet_s > GONE_FRAMES * frame_s and self.receiver.get_num_connections() == 0)
                        if gone and not self.away:
                            self._set_away()
                    if gone and now >= next_lookup_s:
                        next_lookup_s = now + LOOKUP_EVERY_S
                        self._look_again(now)
                time.sleep(poll_s)
        except Exception as exc:  # the thread's boundary: frame_at reports it, the show goes on
            with self.cond:
                self.error = _reason(exc)
                self.status = f"ndi {self.name}: stopped: {self.error}"
            log.exception("ndi %s: the reader stopped", self.name)
        finally:
            self._release()
            with self.cond:
                self.stopped = True
                self.cond.notify_all()

    def _capture(self, last_key):
        """(a new frame, its key), or (None, last_key) when the synchroniser still holds the frame seen last."""
        video = self.video
        self.receiver.frame_sync.capture_video()
        key = (video.get_timestamp_posix(), video.get_timecode_posix())     # a new frame has a new timestamp
        arr = np.asarray(video)       # the captured frame; dropping this view frees it in libndi (cyndilib)
        try:
            w, h = video.xres, video.yres
            if w <= 0 or h <= 0 or not arr.size or key == last_key:
                return None, last_key
            fourcc = self.fourccs.get(video.get_fourcc())
            if fourcc is None:
                raise NdiError(f"NDI: the sender sends {video.get_fourcc()!r}, which this receiver does not convert")
            row_bytes = w * (2 if fourcc == "UYVY" else 4)
            stride = video.get_line_stride() or row_bytes
            rows = np.array(arr[:stride * h].reshape(h, stride)[:, :row_bytes])               # (h, row_bytes)
            try:
                fps = float(video.get_frame_rate())
            except ZeroDivisionError:     # a sender that declares no rate
                fps = 0.0
            return _Raw(fourcc, w, h, fps, rows), key
        finally:
            del arr

    def _publish(self, raw: _Raw) -> None:
        with self.cond:
            back = self.away
            self.latest = raw
            self.frames += 1
            self.away = False
            if back:
                self.reconnects += 1
            self.status = (f"ndi {self.name}: receiving {raw.width_px}x{raw.height_px} at {raw.fps:g} fps "
                           f"from {self.full_name}")
            self.cond.notify_all()
        if back:
            log.info("ndi %s: the sender is back (%s)", self.name, self.full_name)

    def _set_away(self) -> None:
        with self.cond:
            self.away = True
            self.status = f"ndi {self.name}: waiting for the sender"
        log.warning("ndi %s: no frame for %.1f s, waiting for the sender (showing the last frame)", self.name, STALE_S)

    def _look_again(self, now: float) -> None:
        """Look the name up while the sender is away; connect when it is listed and libndi has not connected."""
        full = lookup(self.name, prefer=self.full_name)
        if full is None:
            self._listed_since_s = None
            return
        if full != self.full_name:    # the name is back, from another host
            if connect(self.receiver, full):
                log.info("ndi %s: connecting to %s", self.name, full)
                self.full_name = full
            return
        if self.receiver.get_num_connections() > 0:
            self._listed_since_s = None   # connected: a paused sender, or frames are on their way
            return
        if self._listed_since_s is None:
            self._listed_since_s = now
        elif now - self._listed_since_s >= RECONNECT_AFTER_S:
            self._listed_since_s = now
            log.info("ndi %s: %s is listed again, connecting", self.name, full)
            connect(self.receiver, full)

    def _release(self) -> None:
        receiver, self.receiver, self.video = self.receiver, None, None
        if receiver is not None:
            # Disconnect now; the receiver and its frame synchroniser refer to each other, so libndi's
            # objects themselves go at the garbage collector's next pass.
            receiver.set_source(None)

    def stop(self) -> None:
        with self.cond:
            self.stopped = True
        thread = self.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()


class NdiSource:
    """The NDI source `name` ("HOST (NAME)" or NAME) as a live video source; `frame_at` ignores the time.

    `width_px`/`height_px` scale frames in the conversion (None: the sender's size). Opening waits up to
    `timeout_s` for the name to be listed and again for its first frame; VideoError (listing the sources
    that were found) when it is not. Not deterministic: a live source. Not thread-safe: one thread (the model
    worker) calls frame_at.
    """

    def __init__(self, name: str, width_px: int | None = None, height_px: int | None = None, timeout_s: float = 5.0):
        self.name = name
        self.path = Path(f"ndi:{name}")
        self.width_px = int(width_px) if width_px else None
        self.height_px = int(height_px) if height_px else None
        try:
            full_name = find_source(name, timeout_s)
            if full_name is None:
                found = ", ".join(source_names()) or "none"
                raise VideoError(f"ndi {name}: no NDI source of that name within {timeout_s:g} s "
                                 f"(sources found: {found})")
            receiver, video, fourccs = self._open_receiver()
            if not connect(receiver, full_name):
                raise VideoError(f"ndi {name}: {full_name} went away while connecting")
        except NdiError as exc:
            raise VideoError(f"ndi {name}: {exc}") from None
        self._reader = _NdiReader(name, full_name, receiver, video, fourccs)
        self._reader.thread = threading.Thread(target=self._reader.run, name="vj-ndi-receive", daemon=True)
        self._reader.thread.start()
        self._finalizer = weakref.finalize(self, self._reader.stop)
        self._reformatter = VideoReformatter()
        self._shown: tuple[_Raw, av.VideoFrame] | None = None      # the last raw frame and its conversion
        try:
            self.frame_at(timeout_s=max(float(timeout_s), FIRST_FRAME_S))
        except VideoError as exc:
            self.close()
            raise VideoError(f"ndi {name}: found {full_name} but {str(exc).removeprefix(f'ndi {name}: ')}") from None
        raw = self._reader.latest
        self.info = VideoInfo(self.path, self.width_px or raw.width_px, self.height_px or raw.height_px,
                              raw.fps or 30.0, math.inf)

    @staticmethod
    def _open_receiver():
        nd = cyndilib()
        fourcc = nd.wrapper.FourCC
        try:
            # UYVY from senders without alpha, RGBA from those with it (libndi does not send alpha as UYVY).
            receiver = nd.receiver.Receiver(color_format=nd.wrapper.RecvColorFormat.UYVY_RGBA,
                                            bandwidth=nd.wrapper.RecvBandwidth.highest)
            video = nd.video_frame.VideoFrameSync()
            receiver.frame_sync.set_video_frame(video)
        except MemoryError:           # cyndilib's way of saying that libndi returned NULL
            raise NdiError("NDI: the NDI runtime refused a receiver") from None
        fourccs = {fourcc.UYVY: "UYVY", fourcc.RGBA: "RGBA", fourcc.RGBX: "RGBX",
                   fourcc.BGRA: "BGRA", fourcc.BGRX: "BGRX"}
        return receiver, video, fourccs

    @property
    def duration_s(self) -> float:
        return math.inf

    @property
    def status(self) -> str:
        """One human-readable line: receiving, waiting for the sender, or stopped."""
        return self._reader.status

    @property
    def reconnects(self) -> int:
        return self._reader.reconnects

    @property
    def frames_received(self) -> int:
        return self._reader.frames

    @property
    def full_name(self) -> str:
        return self._reader.full_name

    def frame_at(self, t_s: float = 0.0, timeout_s: float = 1.0) -> av.VideoFrame:
        """The newest frame as rgb24 (waiting up to timeout_s for the first); the last one while its sender is away."""
        r = self._reader
        with r.cond:
            r.cond.wait_for(lambda: r.latest is not None or r.stopped, timeout_s)
            raw, error = r.latest, r.error
        if error is not None:
            raise VideoError(f"ndi {self.name}: {error}")
        if raw is None:
            raise VideoError(f"ndi {self.name}: " + ("closed" if r.stopped else f"no frame within {timeout_s:.1f} s"))
        if self._shown is None or self._shown[0] is not raw:
            try:
                self._shown = (raw, self._to_rgb(raw))
            except (av.FFmpegError, ValueError) as exc:
                raise VideoError(f"ndi {self.name}: cannot convert a {raw.fourcc} frame: {exc}") from None
        return self._shown[1]

    def _to_rgb(self, raw: _Raw) -> av.VideoFrame:
        w, h = raw.width_px, raw.height_px
        out_w, out_h = self.width_px or w, self.height_px or h
        same = (out_w, out_h) == (w, h)
        if raw.fourcc == "UYVY":
            frame = av.VideoFrame(w, h, "uyvy422")
            plane = frame.planes[0]
            np.frombuffer(plane, np.uint8).reshape(h, plane.line_size)[:, :2 * w] = raw.data
            return self._reformatter.reformat(frame, width=out_w, height=out_h, format="rgb24",
                                              src_colorspace=Colorspace.ITU709, src_color_range=ColorRange.MPEG,
                                              dst_color_range=ColorRange.JPEG, interpolation=EXACT if same else SCALED)
        fmt = "rgba" if raw.fourcc in ("RGBA", "RGBX") else "bgra"
        frame = av.VideoFrame.from_ndarray(raw.data.reshape(h, w, 4), format=fmt)
        return self._reformatter.reformat(frame, width=out_w, height=out_h, format="rgb24",
                                          interpolation=Interpolation.POINT if same else Interpolation.AREA)

    def close(self) -> None:
        """Stop the reader thread and disconnect; idempotent."""
        self._finalizer()

    def __enter__(self) -> NdiSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
