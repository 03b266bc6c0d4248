"""Any span of an offline job's frames, rendered alone: fast-forwarded to its start, warmed up, emitted (issue 20).

A `FrameProgram` says what each frame of an offline job gets: its analysis samples, its time, the cues or session
events applied before it, and whether those change the scene (the frames prepared before a scene change compose
with the old scene, as in every offline render). `render_span` plays frames [0, stop) of a program and hands
frames [first, stop) to `emit`:

- frames before `first` are skipped (`Engine.skip`: analysis, beat tracker, modulation, the model's walk, the
  blackout fade and the effects' frame counters run; no picture), which costs about 1/20 of a rendered frame;
- except the frame before each scene change, rendered and dropped: the change dissolves from that picture;
- and, where pictures carry from frame to frame (`Engine.carries_pictures`: shader feedback, DeepDream, freeze,
  a morph), the `warm_frames` before `first`, rendered and dropped, so that the feedback has built up again.

A span whose first frame does not depend on a skipped picture matches a whole render exactly, frame for frame;
`SpanReport.exact_start` says which it was. `vj render` itself is the span [0, n).

`render_live_span` does the same for a `LiveProgram`, the live frame sequence of `vj replay`: a span is a range
of the recording's output frames; the live frames behind them run one by one (no pipeline), each taking the model
image of an earlier frame's args, so skipped frames keep the args a later image is rendered from, and the two
newest images taken while skipping (the model fader blends between two) are rendered again before the first
rendered frame.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import moderngl
import numpy as np

from vj.engine import Engine, OfflinePipeline

# Frames the offline pipeline prepares ahead of the one it composes (OfflinePipeline's depth): a span that ends
# at `stop` prepares this many more, so that its last frames compose after the same prepares as in a whole render.
SETTLE_FRAMES = 2


class FrameProgram(Protocol):
    """What each frame of an offline job gets; pure in the frame index except `before`, which is called once per
    frame, in order, from frame 0."""

    n_frames: int
    fps: float

    def cuts_at(self, i: int) -> bool:
        """True when frame i's cues or events change the scene (or run a command): the frames prepared before are
        composed first."""

    def holds_at(self, i: int) -> bool:
        """True when frame i's cues or events may keep the picture of the frame before (a scene change dissolves
        from it, a freeze holds it): a span renders that frame even where it skips the others."""

    def before(self, i: int) -> None:
        """Apply frame i's cues or events to the engine (before its prepare)."""

    def mono(self, i: int) -> np.ndarray:
        """The samples frame i's analysis reads (n,) float32: the audio of its own display interval."""


class LiveProgram(Protocol):
    """A live frame sequence replayed (vj.replay): `n_live` live frames, and `n_frames` output frames at `fps`, each
    a copy of a live frame's picture; pure in the indices except `before`, called once per live frame, in order."""

    n_frames: int
    n_live: int
    fps: float
    tick_frame: list[int]    # output frame k shows live frame tick_frame[k] (non-decreasing)

    def holds_at(self, n: int) -> bool:
        """As FrameProgram.holds_at, for live frame n."""

    def before(self, n: int) -> None:
        """Apply live frame n's events to the engine (before its prepare)."""

    def mono(self, n: int) -> np.ndarray:
        """The samples live frame n's analysis reads."""

    def times(self, n: int) -> tuple[float, float]:
        """Live frame n's (t_s, dt_s)."""

    def takes(self, n: int) -> int | None:
        """The live frame whose model args make the image frame n takes (None: it takes none)."""

    def keeps(self, n: int) -> bool:
        """True when a later frame takes the image of frame n's args."""


@dataclass(frozen=True)
class SpanReport:
    first: int
    stop: int                # one past the last frame emitted (the tail included)
    rendered: int            # frames rendered, the emitted ones included
    skipped: int
    exact_start: bool        # frame `first` depends on no skipped picture: equal to a whole render's
    tail: int                # frames emitted past the span for the next span's cross-fade


class _Start:
    """Which frames before `first` a span renders, and whether its first frame comes out exact: a frame is exact
    when it reads no earlier picture, or when the frame before it was rendered and exact."""

    def __init__(self, first: int, warm_frames: int):
        self.first, self.warm_from = first, first - warm_frames
        self.rendering = first == 0       # from here on every frame renders (the warm-up, then the span)
        self.ok = True                    # the picture the engine would hold is the true one of the frame before

    def step(self, i: int, carries: bool, cut_next: bool) -> bool:
        """Frame i (< first, or == first) with what the engine carries now: True when the span renders it."""
        if not self.rendering and i >= self.warm_from and carries:
            self.rendering = True
        if self.rendering or i >= self.first or cut_next:     # the frame before a scene change: its picture dissolves
            self.ok = self.ok or not carries
            return True
        self.ok = False
        return False


def render_span(engine: Engine, program: FrameProgram, first: int, stop: int,
                emit: Callable[[int, moderngl.Texture], None], *, warm_frames: int = 0,
                tail_frames: int = 0, on_frame: Callable[[int], None] | None = None) -> SpanReport:
    """Play `program` on `engine` (its first scene loaded) and emit frames [first, stop) in order, and then the
    `tail_frames` after them when a span starting at `stop` would not start exactly (for its cross-fade).
    `on_frame(i)` hears of every frame played, skipped or not (a worker's status)."""
    n = program.n_frames
    first, stop = max(0, first), min(stop, n)
    dt_s = 1.0 / program.fps
    order: deque[int] = deque()
    end = [stop]                      # one past the last frame emitted: grows by the tail when it is needed

    def sink(tex: moderngl.Texture) -> None:
        i = order.popleft()
        if first <= i < end[0]:
            emit(i, tex)

    pipe = OfflinePipeline(engine)
    own, after = _Start(first, warm_frames), _Start(stop, warm_frames)   # this span's start; the next one's
    rendered = skipped = 0
    i = 0
    while i < min(end[0] + SETTLE_FRAMES, n):
        if on_frame is not None:
            on_frame(i)
        if program.cuts_at(i):        # the frames prepared before a scene change compose with the old scene
            pipe.finish(sink)
            pipe = OfflinePipeline(engine)
        program.before(i)
        carries = engine.carries_pictures()
        cut_next = i + 1 < n and program.holds_at(i + 1)
        if i <= stop:
            after.step(i, carries, cut_next)
            if i == stop and not after.ok and tail_frames > 0:
                end[0] = min(stop + tail_frames, n)
        if i > first or own.step(i, carries, cut_next):     # own.ok is settled at `first`: no step after it
            order.append(i)
            pipe.push(program.mono(i), i / program.fps, dt_s, sink)
            rendered += 1
        else:
            assert not order, "a frame was skipped while earlier ones were still in the pipeline"
            engine.skip(program.mono(i), i / program.fps, dt_s)
            skipped += 1
        i += 1
    pipe.finish(sink)
    return SpanReport(first, end[0], rendered, skipped, own.ok, end[0] - stop)


def render_live_span(engine: Engine, program: LiveProgram, first: int, stop: int,
                     emit: Callable[[int, moderngl.Texture], None], *, warm_frames: int = 0, tail_frames: int = 0,
                     on_frame: Callable[[int], None] | None = None) -> SpanReport:
    """render_span for a live frame sequence: emit output frames [first, stop) (and the tail) of `program` on a live
    `engine` (its first scene loaded). `warm_frames` and `tail_frames` count output frames; `on_frame(k)` hears
    the output frame each live frame played comes before (a worker's status)."""
    ticks = program.tick_frame
    n_out = program.n_frames
    first, stop = max(0, first), min(stop, n_out)
    n_first = ticks[first] if first < n_out else program.n_live
    n_stop = ticks[stop] if stop < n_out else program.n_live
    own = _Start(n_first, n_first - ticks[max(0, first - warm_frames)] if first < n_out else 0)
    after = _Start(n_stop, n_stop - ticks[max(0, stop - warm_frames)] if stop < n_out else 0)
    end = stop
    args_of: dict[int, object] = {}
    restore: deque[tuple[float, object]] = deque(maxlen=2)   # images taken while skipping: (arrival t_s, args)
    rendered = skipped = 0
    was_rendered = False
    n = 0
    while n < program.n_live and (n <= n_stop or (end > stop and n <= ticks[end - 1])):
        if on_frame is not None:
            on_frame(bisect_left(ticks, n))
        program.before(n)
        carries = engine.carries_pictures()
        cut_next = n + 1 < program.n_live and program.holds_at(n + 1)
        if n <= n_stop:
            after.step(n, carries, cut_next)
            if n == n_stop and not after.ok and tail_frames > 0:
                end = min(stop + tail_frames, n_out)
        t_s, dt_s = program.times(n)
        took = program.takes(n)
        if n > n_first or own.step(n, carries, cut_next):
            frame, args = engine.prepare(program.mono(n), t_s, dt_s)
            if args is not None and program.keeps(n):
                args_of[n] = args
            if not was_rendered:          # the model images the skipped frames took, as the fader held them
                for arrived_s, old in restore:
                    engine.take_model_result(engine.worker.render_now(old), arrived_s)
                restore.clear()
            if took is not None and took in args_of:
                engine.take_model_result(engine.worker.render_now(args_of.pop(took)))
            tex = engine.compose(frame)
            for k in range(max(bisect_left(ticks, n), first), min(bisect_right(ticks, n), end)):
                emit(k, tex)
            rendered += 1
            was_rendered = True
        else:
            args = engine.skip(program.mono(n), t_s, dt_s)
            if args is not None and program.keeps(n):
                args_of[n] = args
            if took is not None and took in args_of:
                restore.append((t_s, args_of.pop(took)))
            skipped += 1
            was_rendered = False
        n += 1
    return SpanReport(first, end, rendered, skipped, own.ok, end - stop)
