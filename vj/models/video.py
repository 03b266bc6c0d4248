"""The "video" generator: a file, a folder of clips cut on the beat, a webcam or NDI, optionally through an image model.

advance (main thread, no decoding): integrates the media time (`/model/speed`, onsets can skip
ahead), counts beats and downbeats, and on a cut asks the seeded `CutPlan` for the next clip and
its start time; the args carry (clip index, media time). render (worker thread): the clip's
`VideoSource` gives the frame for that time (one decoder per recently used clip, decoding forward,
seeking only on jumps), `fit_frame` covers or letterboxes it to the output size, and an optional
`Img2ImgModel` (colourisation, style transfer, ...) is blended over it by `/model/mix`. The same
sequence of args gives the same frames (files only: a webcam or an NDI source is live).

Cuts without a freeze: the cut plan is seeded, so the next cut's clip and start are known a cut ahead.
advance asks a `Prefetcher` for them (a request, no decoding); its thread opens the clip and decodes up
to the start, and the render of the cut frame takes that positioned decoder, so the cut costs one frame
instead of a seek (600 ms median for 720p with 2 s keyframes). A prefetch not ready in time (or failed)
changes nothing but the speed: render then seeks itself and gets the same frame.

Everything that can be wrong with the inputs (missing file or folder, no playable video, a model
file that does not fit) raises a ValueError naming the file at construction, so a preset load
fails cleanly; a file that fails later makes render raise, which the worker reports.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch

from vj.audio.features import Features
from vj.models.base import Generator, ModelArgs, Value, assert_image, output_size_px, read_params
from vj.models.img2img import Img2ImgModel
from vj.ndi.receiver import NdiSource
from vj.params import Param
from vj.video.clips import CutPlan, find_clips
from vj.video.source import FITS, Prefetcher, VideoError, VideoSource, WebcamSource, fit_frame

log = logging.getLogger(__name__)

CUT_MODES = ("off", "beats", "bars")
MAX_OPEN_DECODERS = 8                 # clips whose decoder stays open; older ones are closed and reopened on use


@dataclass(frozen=True)
class VideoArgs(ModelArgs):
    """One video frame: which clip, at which media time, fitted how, with how much of the image model."""

    clip: int = 0                     # index into the generator's clips
    media_t_s: float = 0.0            # time inside the clip, 0 .. its duration
    fit: str = "cover"                # one of FITS
    mix: float = 1.0                  # 0 = the plain frame, 1 = the image model's output
    cut: int = 0                      # cuts so far (for display and tests)


def video_params(cut_default: str, fit_default: str, live: bool, has_model: bool) -> list[Param]:
    params = [Param("/model/fit", FITS.index(fit_default), 0, len(FITS) - 1, kind="enum", labels=FITS,
                    description="cover: fill the frame and crop; contain: whole picture with black bars")]
    if not live:
        params += [
            Param("/model/speed", 1.0, 0.0, 4.0, unit="x", smoothing_s=0.1,
                  description="playback rate: 1 = normal, 0 = freeze"),
            Param("/model/cut", CUT_MODES.index(cut_default), 0, len(CUT_MODES) - 1, kind="enum", labels=CUT_MODES,
                  description="cut to another clip (or another point of the file) on beats or on bars"),
            Param("/model/cut_every", 1, 1, 64, kind="int", description="cut every N beats or bars"),
            Param("/model/cut_now", False, kind="event", description="cut now"),
            Param("/model/random_start", True, kind="bool",
                  description="a cut starts at a seeded point in the clip (off: at its start)"),
            Param("/model/onset_skip_s", 0.0, 0.0, 2.0, unit="s",
                  description="jump ahead in the clip by this much on every onset (stutter)"),
        ]
    if has_model:
        params.append(Param("/model/mix", 1.0, 0.0, 1.0, smoothing_s=0.2,
                            description="blend of the image model's output over the plain frame"))
    return params


def _resolve(path: str, base_dir: str | os.PathLike | None) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() or base_dir is None else Path(base_dir).expanduser() / p


class VideoGenerator(Generator):
    """Video as a scene source. Settings: `path` (file or folder) or `device` ("webcam", /dev/videoN, "ndi:NAME").

    `prefetch` (default on) positions the next cut's decoder ahead of time on a thread; `close()` (or
    garbage collection) stops that thread.
    """

    name = "video"

    def __init__(self, width_px: int = 256, height_px: int = 144, path: str | None = None, device: str | None = None,
                 img2img: str | None = None, img2img_range: str = "0..1", img2img_multiple: int = 1,
                 img2img_scale: float = 1.0, fit: str = "cover", seed: int = 0, base_dir: str | None = None,
                 prefetch: bool = True):
        width_px, height_px = output_size_px(width_px, height_px)
        if fit not in FITS:
            raise ValueError(f"fit must be one of {', '.join(FITS)}, got {fit!r}")
        if (path is None) == (device is None):
            raise ValueError("the video generator needs either `path` (a video file or a folder of clips) "
                             "or `device` (\"webcam\", /dev/videoN or \"ndi:NAME\", an NDI source)")
        self.width_px, self.height_px, self.seed = int(width_px), int(height_px), int(seed)
        self.live = device is not None
        if self.live:
            device = str(device)
            self._webcam = NdiSource(device[4:]) if device.startswith("ndi:") else WebcamSource(device)
            self.clips = [self._webcam.info]
            self.folder = None
        else:
            self._webcam = None
            source = _resolve(str(path), base_dir)
            if source.is_dir():
                self.clips = find_clips(source)
                self.folder = source
            elif source.exists():
                with VideoSource(source) as probe:
                    self.clips = [probe.info]
                self.folder = None
            else:
                raise VideoError(f"video file or folder not found: {source}")
        self.plan = CutPlan(self.seed, [c.duration_s for c in self.clips])
        self.model = None
        if img2img:
            self.model = Img2ImgModel(_resolve(str(img2img), base_dir), value_range=img2img_range,
                                      multiple_px=img2img_multiple, scale=img2img_scale,
                                      check_size=(self.width_px, self.height_px))
        cut_default = "bars" if self.folder is not None else "off"
        self._params = video_params(cut_default, fit, self.live, self.model is not None)
        self._lock = threading.Lock()
        self._decoders: collections.OrderedDict[int, VideoSource] = collections.OrderedDict()
        self._cache: tuple | None = None      # (clip, frame object, fit, mix, image): the last render
        self.frames_decoded = 0               # by render (worker thread), prefetches not counted
        self.seeks = 0                        # seeks by render
        self.prefetch_hits = 0                # cuts rendered from a prefetched decoder
        self.prefetch_misses = 0              # cuts that had to seek in render
        self._rendered_cut = 0                # the cut of the last render (a new one tries the prefetch)
        self.prefetcher: Prefetcher | None = None
        if prefetch and not self.live:
            self.prefetcher = Prefetcher()
            # The thread holds the prefetcher, not the generator, so a dropped generator stops it.
            self._finalizer = weakref.finalize(self, self.prefetcher.close)
        self.reset()

    def reset(self) -> None:
        self._cut = 0
        self._clip = self.plan.clip(0)
        self._media_t_s = 0.0
        self._beats_since_cut = 0
        self._bars_since_cut = 0
        self._last_beat_t_s = math.nan
        self._last_onset_t_s = math.nan
        self._planned: tuple[int, bool] | None = None      # (cut, random_start) last asked of the prefetcher

    def advance(self, frame: Mapping[str, Value], features: Features, dt_s: float) -> VideoArgs:
        v = read_params(frame, self._params)
        fit = FITS[int(v["/model/fit"])]
        mix = float(v.get("/model/mix", 0.0))
        if self.live:
            return VideoArgs(z=(), fit=fit, mix=mix)
        dt_s = max(float(dt_s), 0.0)
        # A Features snapshot seen on several frames counts once (same t_s).
        new_beat = features.beat and features.t_s != self._last_beat_t_s
        new_onset = features.onset and features.t_s != self._last_onset_t_s
        self._last_beat_t_s = features.t_s if features.beat else math.nan
        self._last_onset_t_s = features.t_s if features.onset else math.nan
        if new_beat:
            self._beats_since_cut += 1
            self._bars_since_cut += 1 if features.downbeat else 0
        mode = CUT_MODES[int(v["/model/cut"])]
        every = int(v["/model/cut_every"])
        cut = bool(v["/model/cut_now"]) or (new_beat and (
            (mode == "beats" and self._beats_since_cut >= every)
            or (mode == "bars" and features.downbeat and self._bars_since_cut >= every)))
        if cut:
            self._cut += 1
            self._clip = self.plan.clip(self._cut)
            self._media_t_s = self.plan.start_s(self._cut, bool(v["/model/random_start"]))
            self._beats_since_cut = self._bars_since_cut = 0
        else:
            self._media_t_s += v["/model/speed"] * dt_s
            if new_onset:
                self._media_t_s += v["/model/onset_skip_s"]
        self._media_t_s %= self.clips[self._clip].duration_s       # loop; keeps the float small
        if self.prefetcher is not None:
            self._plan_next(bool(v["/model/random_start"]))
        return VideoArgs(z=(), walk_pos=float(self._cut), clip=self._clip, media_t_s=self._media_t_s,
                         fit=fit, mix=mix, cut=self._cut)

    def wait_prefetch(self, timeout_s: float = 10.0) -> bool:
        """Block until the prefetcher is idle (tests and benchmarks; the show never waits); False on timeout."""
        return self.prefetcher is None or self.prefetcher.wait_idle(timeout_s)

    def _plan_next(self, random_start: bool) -> None:
        """Ask the prefetcher for the next cut's clip at its start (once per cut; no decoding here)."""
        k = self._cut + 1
        if self._planned == (k, random_start):
            return
        self._planned = (k, random_start)
        clip = self.plan.clip(k)
        start_s = self.plan.start_s(k, random_start) % self.clips[clip].duration_s    # as advance will compute it
        self.prefetcher.request((k, clip), self.clips[clip].path, start_s)

    def render(self, args: ModelArgs) -> torch.Tensor:
        assert isinstance(args, VideoArgs), f"VideoGenerator.render needs VideoArgs, got {type(args).__name__}"
        assert 0 <= args.clip < len(self.clips), f"clip {args.clip} out of range 0..{len(self.clips) - 1}"
        with self._lock:
            if args.cut != self._rendered_cut and self.prefetcher is not None:
                self._rendered_cut = args.cut
                self._take_prefetched(args)
            src = self._source(args.clip)
            decoded, seeks = getattr(src, "decoded", 0), getattr(src, "seeks", 0)
            try:
                frame = src.frame_at(args.media_t_s)
            finally:
                self.frames_decoded += getattr(src, "decoded", 0) - decoded
                self.seeks += getattr(src, "seeks", 0) - seeks
            c = self._cache             # a video at 25 fps under a 60 fps show: most renders repeat a frame
            if c is not None and c[0] == args.clip and c[1] is frame and c[2:4] == (args.fit, args.mix):
                return c[4].clone()
            rgb = fit_frame(frame, self.width_px, self.height_px, args.fit,
                            self.clips[args.clip].pixel_aspect)                      # (H, W, 3) uint8
            image = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0).to(torch.float32) / 255.0  # (1, 3, H, W)
            if self.model is not None and args.mix > 0.0:
                styled = self.model(image)                                               # (1, 3, H, W) 0..1
                image = torch.lerp(image.to(styled.device), styled, float(args.mix)) if args.mix < 1.0 else styled
            image = assert_image(image.contiguous(), self.width_px, self.height_px)
            self._cache = (args.clip, frame, args.fit, args.mix, image)
            return image.clone()

    def _take_prefetched(self, args: VideoArgs) -> None:
        """Make the decoder prefetched for this cut (if ready and positioned for the frame) the clip's decoder."""
        if args.cut == 0:
            return
        src = self.prefetcher.take((args.cut, args.clip), args.media_t_s)
        if src is None:
            self.prefetch_misses += 1
            return
        self.prefetch_hits += 1
        old = self._decoders.pop(args.clip, None)
        if old is not None:
            old.close()
        self._keep(args.clip, src)

    def _source(self, clip: int) -> VideoSource | WebcamSource | NdiSource:
        """The open decoder for `clip` (opened on first use; the least recently used one closed past the cap)."""
        if self._webcam is not None:
            return self._webcam
        src = self._decoders.get(clip)
        if src is None:
            src = self._keep(clip, VideoSource(self.clips[clip].path))
        self._decoders.move_to_end(clip)
        return src

    def _keep(self, clip: int, src: VideoSource) -> VideoSource:
        """Keep `src` open as the decoder of `clip`, closing the least recently used one past the cap."""
        self._decoders[clip] = src
        while len(self._decoders) > MAX_OPEN_DECODERS:
            _, old = self._decoders.popitem(last=False)
            old.close()
        return src

    def close(self) -> None:
        """Stop the prefetch thread, close every decoder (and the webcam); render reopens files if called again."""
        if self.prefetcher is not None:
            self._finalizer()
        with self._lock:
            for src in self._decoders.values():
                src.close()
            self._decoders.clear()
            self._cache = None
            if self._webcam is not None:
                self._webcam.close()
