"""vj.chunks: any span of an offline render, rendered alone, against the whole render (real GL, Mesa EGL)."""

import numpy as np
import pytest

from vj.chunks import render_span
from vj.config import AudioConfig, RenderConfig
from vj.show import cut_track, headless_engine, track_program
from vj.timeline import parse_timeline

FPS = 30.0
CFG = RenderConfig(width_px=64, height_px=36, fps=FPS, render_scale=1.0, model_width_px=64, model_height_px=36)

# prism and flash have no persistent buffers; the cues cover what a span must reproduce without rendering it: a set,
# a ramp running across span starts, a scene change dissolving over 0.4 s, and a freeze held for a while.
TIMELINE = """
[[at]]
time = 0.5
set = { "/master/saturation" = 0.3 }
[[at]]
time = 0.5
ramp = { "/master/contrast" = 1.6 }
over_s = 1.5
[[at]]
time = 1.0
preset = "flash"
transition_s = 0.4
[[at]]
time = 1.9
cmd = "/cmd/freeze"
[[at]]
time = 2.2
cmd = "/cmd/freeze"
"""

# Feedback only (no bloom or kaleidoscope after it), for the arithmetic bound below.
FEEDBACK_PRESET = """name = "echo"
[model]
name = "cppn"
seed = 3
[[effects]]
shader = "feedback"
[values]
"/fx/feedback/decay" = 0.25
"/fx/feedback/wet" = 0.55
"/fx/feedback/zoom" = 1.25
"/fx/feedback/rotate" = 3.0
"""


def render(preset: str, first: int, stop: int, *, seconds: float = 3.0, timeline: str | None = None,
           warm: int = 0, tail: int = 0):
    """Frames [first, stop) (and any tail) of a render of the demo track, as (frames, SpanReport)."""
    acfg = AudioConfig()
    track = cut_track("demo", acfg.sample_rate_hz, FPS, 0.0, seconds)
    out = []
    with headless_engine(CFG, acfg, live=False) as engine:
        program = track_program(engine, track, preset, FPS, parse_timeline(timeline) if timeline else None)
        report = render_span(engine, program, first, stop, lambda i, tex: out.append((i, engine.read_rgb(tex))),
                             warm_frames=warm, tail_frames=tail)
    assert [i for i, _ in out] == list(range(first, report.stop)), "frames come out once each, in order"
    return np.stack([f for _, f in out]), report


@pytest.fixture(scope="module")
def whole_timeline():
    frames, report = render("prism", 0, 90, timeline=TIMELINE)
    assert report.exact_start and report.skipped == 0 and len(frames) == 90
    return frames


@pytest.mark.parametrize("first", [12, 29, 30, 34, 45, 58, 66, 80])
def test_a_span_equals_the_whole_render_from_its_first_frame(whole_timeline, first):
    """Before the scene change (12), on the frame before it (29) and on it (30), inside its dissolve (34), inside
    the ramp (45), while a freeze holds (58), and after everything (66, 80): exact, frame for frame. The dissolve
    and the freeze hold the picture of the frame before their cue, which a span renders; `exact_start` does not
    look that far and says False inside them (the joiner then cross-fades between equal frames)."""
    frames, report = render("prism", first, 90, timeline=TIMELINE)
    assert report.exact_start == (first not in (34, 58))
    assert report.skipped > 0 or first == 0
    for k, frame in enumerate(frames):
        assert np.array_equal(frame, whole_timeline[first + k]), f"span from {first}: frame {first + k} differs"


def test_skipping_is_cheap_in_frames_rendered(whole_timeline):
    """A span renders its own frames, the pipeline's two after them, and the frame before each scene change or
    command it skips (its picture is what the change dissolves from); every other frame before it is skipped."""
    _, report = render("prism", 80, 90, timeline=TIMELINE)
    # Cues that change the scene or run a command at frames 30, 57 and 66: the frames before them (29, 56, 65)
    # render. Frames 80..89 are the span, the last of the render (no pipeline frames after it).
    assert report.rendered == 3 + 10
    assert report.skipped == 80 - 3


@pytest.fixture(scope="module")
def echo(tmp_path_factory):
    path = tmp_path_factory.mktemp("echo") / "echo.toml"
    path.write_text(FEEDBACK_PRESET)
    frames, _ = render(str(path), 0, 120, seconds=4.0)
    return str(path), frames


def feedback_bound(warm: int) -> float:
    """Largest error (8-bit levels) a span starting on warmed-up feedback may show, from the shader's arithmetic.

    feedback.fs keeps k = decay ** (1 / fps) of the echo a frame; the buffer holds values in 0..1, so the two
    renders' buffers differ by at most 1 when the warm-up starts and by k ** warm when the span starts. Each frame
    both round to RGBA16F (half a unit in the last place: 2 ** -12 below 1), which adds at most 2 * 2 ** -12 to
    the difference a frame; that difference also decays by k, so it stays under 2 ** -11 / (1 - k). The output
    mixes `wet` of the buffer in, and the two 8-bit conversions can round apart by one more level."""
    k = 0.25 ** (1 / FPS)
    return 255 * 0.55 * (k ** warm + 2 ** -11 / (1 - k)) + 1


@pytest.mark.parametrize("warm", [0, 30, 90])
def test_feedback_span_warms_up_within_the_bound(echo, warm):
    path, whole = echo
    frames, report = render(path, 100, 120, seconds=4.0, warm=warm)
    assert not report.exact_start, "a skipped frame's feedback cannot be exact"
    assert report.skipped == 100 - warm
    err = np.abs(frames.astype(int) - whole[100:120].astype(int)).max(axis=(1, 2, 3))
    assert err.max() <= feedback_bound(warm), (warm, err.tolist())
    if warm == 0:
        assert err[0] > feedback_bound(90), "without a warm-up the first frame lacks the echo (the test can fail)"


def test_a_warm_up_reaching_frame_zero_is_exact(echo):
    path, whole = echo
    frames, report = render(path, 40, 60, seconds=4.0, warm=40)
    assert report.exact_start and report.skipped == 0
    assert np.array_equal(frames, whole[40:60])


def test_tail_only_where_the_next_span_needs_it(echo, whole_timeline):
    """The tail (frames past the span, for the next span's cross-fade) is rendered only where a span starting at
    `stop` would not start exactly."""
    path, whole = echo
    frames, report = render(path, 30, 60, seconds=4.0, warm=30, tail=6)
    assert report.tail == 6 and report.stop == 66 and len(frames) == 36
    assert np.array_equal(frames, whole[30:66]), "the tail continues the span's own take"
    frames, report = render("prism", 30, 75, timeline=TIMELINE, tail=6)
    assert report.tail == 0 and len(frames) == 45
    frames, report = render("prism", 30, 60, timeline=TIMELINE, tail=6)     # 60: the freeze holds (conservative)
    assert report.tail == 6 and len(frames) == 36


def test_deepdream_keeps_its_pictures_so_a_span_warms_up():
    """DeepDream dreams on its own previous frame (`keeps_pictures`): a span renders its warm-up and starts as a
    take of its own; without one it skips straight to its first frame, which still carries nothing over."""
    frames, report = render("dream", 30, 40, seconds=2.0, warm=10)
    assert not report.exact_start
    assert (report.rendered, report.skipped) == (10 + 10 + 2, 20)
    _, cold = render("dream", 30, 40, seconds=2.0)
    assert (cold.rendered, cold.skipped, cold.exact_start) == (10 + 2, 30, False)
    assert frames.shape == (10, 36, 64, 3) and frames.std() > 1, "a picture, not a blank"
