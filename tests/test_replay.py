"""A live show under Xvfb writes a session while OSC arrives from liblo's oscsend; `vj replay` renders it again.

At the live size the replay reproduces the live recording (within H.264 error); at twice the size the OSC
event still lands on the same frame; a fixed-rate replay applies it at its audio time. Also: a recorder made
slow for real drops frames while the display's frame times stay as they were.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import tomllib

import av
import numpy as np
import pytest

from vj.config import AudioConfig, ControlConfig, RecordConfig, RenderConfig
from vj.output.recorder import due_ticks
from vj.params import Change
from vj.replay import replay_session
from vj.session import Session
from vj.show import LiveShow
from xvfb import xvfb_display  # noqa: F401  (fixture)

pytestmark = [pytest.mark.skipif(shutil.which("oscsend") is None, reason="liblo-tools (oscsend) not installed"),
              pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe missing")]

CFG = RenderConfig(width_px=320, height_px=180, encoder_preset="ultrafast")
FPS = 30


def free_udp_port() -> int:
    from test_osc import free_udp_port as port
    return port()


def decode(path) -> dict[int, np.ndarray]:
    """Recording tick -> (H, W, 3) float32 frame. Rounded down: the muxer delays every frame after the first
    by the AAC encoder's priming (21 ms, 0.64 of a frame at 30 fps)."""
    with av.open(str(path)) as c:
        return {int(float(f.pts * f.time_base) * FPS + 1e-6): f.to_ndarray(format="rgb24").astype(np.float32)
                for f in c.decode(video=0)}


def first_black(frames: dict[int, np.ndarray]) -> int:
    """The first black tick after the picture came up (the show starts black until the model's first image)."""
    lit = min(t for t, f in frames.items() if f.mean() > 10)
    return min(t for t, f in frames.items() if t > lit and f.mean() < 1.0)


@pytest.fixture(scope="module")
def live(xvfb_display, tmp_path_factory):  # noqa: F811
    """A live show recorded with --record and --session; a blackout by OSC once the picture is up."""
    env = pytest.MonkeyPatch()
    env.setenv("DISPLAY", xvfb_display)     # undone below: the tests after this module must not see a dead Xvfb
    tmp = tmp_path_factory.mktemp("live")
    port = free_udp_port()
    show = LiveShow("demo", "default", CFG, AudioConfig(), ControlConfig(osc_port=port, oscquery_port=0, mdns=False),
                    record=tmp / "live.mp4", session=tmp / "session")
    sent = []
    try:
        # No fade: the blackout is black on the frame it is applied (a change logged at frame 0 like any other).
        show.engine.changes.put(Change("/master/blackout_fade_s", 0.0, "test"))
        t0, lit_frames, lit_since = time.perf_counter(), 0, 0.0
        while not sent or show.frames < sent[0] + 15 or time.perf_counter() - t_sent < 1.0:
            show.frame()
            if not sent and show.engine.read_rgb().mean() > 10:
                lit_frames += 1
                lit_since = lit_since or time.perf_counter()
            # Send once the model's picture has been up for 10 drawn frames and 1 s (a loaded machine takes seconds
            # for it): the recording then holds lit ticks before the blackout however fast frames are drawn.
            if not sent and show.engine.model_frames >= 5 and lit_frames >= 10 and time.perf_counter() - lit_since >= 1:
                sent.append(show.frames)
                t_sent = time.perf_counter()
                subprocess.run(["oscsend", "127.0.0.1", str(port), "/cmd/blackout", "T"], check=True)
            assert time.perf_counter() - t0 < 120, "the live show hangs"    # a busy machine takes ~10 s
        frames = show.frames
    finally:
        show.close()
        env.undo()
    return tmp, frames, sent[0]


def test_session_folder_holds_audio_events_and_copies(live):
    tmp, frames, sent_at = live
    s = Session(tmp / "session")
    assert len(s.frames) == frames
    changes = [e for e in s.events if e["kind"] == "change"]
    assert [(e["path"], e["source"]) for e in changes] == [("/master/blackout_fade_s", "test"), ("/cmd/blackout", "osc")]
    assert changes[0]["frame"] == 0 and changes[1]["frame"] >= sent_at
    preset = next(e for e in s.events if e["kind"] == "preset")
    assert preset["frame"] == 0 and (s.folder / preset["file"]).is_file()
    # The measured latency that beats were reported early by, whenever it changed (whole ms, under a second).
    latency = [e["s"] for e in s.events if e["kind"] == "latency"]
    assert latency and all(0.0 < v < 1.0 and round(v, 3) == v for v in latency)
    assert all((s.folder / f).is_file() for f in preset["shaders"].values())
    # The audio kept is exactly what the frames consumed, and it is the demo track, not silence.
    audio = s.audio()
    assert len(audio) == s.frames[-1].audio and np.abs(audio).max() > 0.05
    settings = json.loads((s.folder / "settings.json").read_text())
    assert settings["render"]["width_px"] == 320 and settings["recording"].endswith("live.mp4")
    # Some frames took a model image submitted by an earlier frame (the live worker is latest-wins).
    assert any(f.model is not None and f.model <= f.i for f in s.frames)


def test_replay_at_the_live_size_matches_the_live_recording(live):
    tmp, _, _ = live
    replay_session(tmp / "session", tmp / "replay1x.mp4", progress=False)
    a, b = decode(tmp / "live.mp4"), decode(tmp / "replay1x.mp4")
    common = sorted(set(a) & set(b))
    assert len(common) >= 0.9 * len(a), (len(a), len(b))
    lit = [t for t in common if a[t].mean() > 10]
    assert len(lit) >= 5, "the live recording should show the picture before the blackout"
    errors = [float(np.abs(a[t] - b[t]).mean()) for t in common]
    # Levels per pixel. Both files are rendered and encoded here by the same code (measured identical); the bound
    # is H.264's error (crf 20) for a frame that comes out different and is encoded anew. Lit frames one tick
    # apart differ by 12 levels on average.
    assert np.mean(errors) < 3.0 and max(errors) < 8.0, errors


def test_replay_at_twice_the_size_lands_the_osc_event_on_the_same_frame(live):
    tmp, _, _ = live
    s = Session(tmp / "session")
    ev = next(e for e in s.events if e.get("path") == "/cmd/blackout")
    # The recording tick that shows the event's frame first: ticks taken by earlier frames stay theirs.
    next_tick = 0
    for f in s.frames:
        ticks = due_ticks(f.t_s, FPS, next_tick)
        if f.i >= ev["frame"] and len(ticks):
            event_tick = ticks[0]
            break
        next_tick = ticks[-1] + 1 if len(ticks) else next_tick
    replay_session(tmp / "session", tmp / "replay2x.mp4", size=(640, 360), progress=False)
    a, b = decode(tmp / "live.mp4"), decode(tmp / "replay2x.mp4")
    assert next(iter(b.values())).shape == (360, 640, 3)
    black = first_black(a)
    assert first_black(b) == black == event_tick, (black, first_black(b), event_tick)
    # The tick before may be missing: a stalled live frame (oscsend runs inside the loop) leaves a gap of ticks.
    assert b[max(t for t in b if t < black)].mean() > 10


def test_fixed_rate_replay_applies_the_event_at_its_audio_time(live):
    tmp, _, _ = live
    s = Session(tmp / "session")
    ev = next(e for e in s.events if e.get("path") == "/cmd/blackout")
    fps = 24
    rep = replay_session(tmp / "session", tmp / "replay24.mp4", fps=fps, progress=False)
    with av.open(str(tmp / "replay24.mp4")) as c:
        means = [f.to_ndarray(format="rgb24").mean() for f in c.decode(video=0)]
    assert rep.frames == len(means) == int(np.ceil(s.frames[-1].audio / s.sample_rate_hz * fps))
    # The first frame whose audio passes the event's position is the first black one.
    expect = int(ev["audio"] / s.sample_rate_hz * fps)
    black = next(i for i, m in enumerate(means) if m < 1.0)
    assert black == expect, (black, expect)
    assert means[expect - 1] > 10


def test_slow_encoder_drops_recording_frames_not_display_frames(xvfb_display, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("DISPLAY", xvfb_display)
    show = LiveShow("demo", "default", CFG, AudioConfig(), ControlConfig(osc_port=0),
                    record_cfg=RecordConfig(width_px=160, height_px=90, fps=15))
    release, timed_out = threading.Event(), []
    try:
        for _ in range(10):     # warm up: the model's first frames, shader compiles
            show.frame()
        path = tmp_path / "slow.mp4"
        assert show.start_recording(path)
        slots = show.recorder.queue_frames
        encode = show.recorder._encode_video

        def stuck(rgb, index):   # a real encode that cannot start until the show has dropped frames
            if not release.wait(60):
                timed_out.append(index)     # only a display that waits for the encoder gets here
            encode(rgb, index)
        show.recorder._encode_video = stuck
        # The recording ticks by the clock, so drops come however slowly frames are drawn; no timing is asserted.
        while not show.hud_stats()["dropped_frames"] and not timed_out:
            show.frame()
        release.set()
        dropped = show.hud_stats()["dropped_frames"]
        show.stop_recording()
    finally:
        release.set()
        show.close()
    assert not timed_out, "the display waited for the stuck encoder"
    assert dropped > 0
    log_text = (tmp_path / "slow.mp4.log").read_text()
    assert "started: 160x90 at 15 fps" in log_text
    stopped = next(line for line in log_text.splitlines() if "stopped" in line)
    written = int(stopped.split(" frames written")[0].split()[-1])
    assert int(stopped.split(" dropped")[0].split()[-1]) >= dropped
    with av.open(str(path)) as c:
        st = c.streams.video[0]
        assert (st.width, st.height) == (160, 90)
        n = sum(1 for _ in c.decode(video=0))
    assert n == written == slots        # the queue's frames, encoded once the encoder moved; the rest dropped


def test_replay_takes_scene_and_model_changes_from_preset_events_only():
    """A logged /cmd/model/switch must not start a background model load in a replay (its landing frame would
    depend on thread timing): the "preset" event that followed it carries the swap."""
    from test_engine import CFG
    from vj.engine import Engine
    from vj.gfx.context import create_headless_context, release_context
    from vj.replay import _Events

    ctx = create_headless_context()     # this test's own: a module-wide EGL context upsets the glfw windows here
    e = Engine(ctx, CFG, AudioConfig(), live=True)
    try:
        e.load_preset("default")
        gen = e.generator
        _Events(None, e).apply([
            {"kind": "change", "frame": 0, "audio": 0, "path": "/cmd/model/switch", "value": "plasma"},
            {"kind": "change", "frame": 0, "audio": 0, "path": "/cmd/preset/next", "value": None},
            {"kind": "change", "frame": 0, "audio": 0, "path": "/master/brightness", "value": 0.5, "source": "osc"},
        ])
        assert e.loading is None and e.generator is gen and e.preset.name == "Default"
        assert e.registry.get("/master/brightness") == 0.5
    finally:
        e.close()
        release_context(ctx)


# ---- spans of the live frame sequence (vj.chunks.render_live_span), as a cluster's workers render them ----------

def live_span(folder, first: int, stop: int, warm: int = 0, tail: int = 0):
    """Output frames [first, stop) (and any tail) of the live-sequence replay of `folder`, rendered alone, as
    (frames, SpanReport, program)."""
    from vj.chunks import render_live_span
    from vj.replay import LiveReplayProgram, _Events, replay_config
    from vj.show import headless_engine
    s = Session(folder)
    cfg = replay_config(s)
    out = []
    with headless_engine(cfg, s.audio_config, live=True, preset_dirs=[s.folder / "presets"]) as engine:
        program = LiveReplayProgram(s, _Events(s, engine), s.audio(), float(s.settings.get("record_fps") or cfg.fps))
        report = render_live_span(engine, program, first, stop, lambda k, tex: out.append((k, engine.read_rgb(tex))),
                                  warm_frames=warm, tail_frames=tail)
    assert [k for k, _ in out] == list(range(first, report.stop)), "frames come out once each, in order"
    return np.stack([f for _, f in out]), report, program


def toml_text(d: dict) -> str:
    """A preset's tables back to TOML (strings, numbers, booleans, lists of them, tables, arrays of tables)."""
    def value(v):
        return json.dumps(v) if not isinstance(v, list) else "[" + ", ".join(value(x) for x in v) + "]"
    lines = [f"{json.dumps(k)} = {value(v)}" for k, v in d.items() if not isinstance(v, (dict, list)) or
             (isinstance(v, list) and not any(isinstance(x, dict) for x in v))]
    for k, v in d.items():
        if isinstance(v, dict):
            lines += [f"[{k}]"] + [f"{json.dumps(a)} = {value(b)}" for a, b in v.items()]
        elif isinstance(v, list) and any(isinstance(x, dict) for x in v):
            for t in v:
                lines += [f"[[{k}]]"] + [f"{json.dumps(a)} = {value(b)}" for a, b in t.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def still_session(live, tmp_path_factory):
    """The live session with the feedback effect taken out of its scene (kaleidoscope and bloom stay, and the model
    fader's blend): no picture carries from frame to frame but the model images, which the log names."""
    folder = tmp_path_factory.mktemp("still") / "session"
    shutil.copytree(live[0] / "session", folder)
    for preset in (folder / "presets").glob("*.toml"):
        d = tomllib.loads(preset.read_text())
        fx = [e for e in d["effects"] if e["shader"] != "feedback"]
        assert len(fx) < len(d["effects"]) and d["values"]["/master/model_blend"] == 1.0
        d["effects"] = fx
        d["values"] = {k: v for k, v in d["values"].items() if not k.startswith("/fx/feedback/")}
        d["routes"] = [r for r in d.get("routes", []) if not r["target"].startswith("/fx/feedback/")]
        preset.write_text(toml_text(d))
    return folder


def test_any_span_of_the_live_sequence_equals_the_whole_replay(still_session, live):
    whole, report, program = live_span(still_session, 0, 10 ** 6)
    n = program.n_frames
    assert report.exact_start and report.skipped == 0 and len(whole) == n
    s = Session(still_session)
    ev = next(e for e in s.events if e.get("path") == "/cmd/blackout")
    blackout = next(k for k in range(n) if s.frames[program.tick_frame[k]].i >= ev["frame"])
    assert whole[blackout - 1].mean() > 10 and whole[blackout].mean() < 1.0
    # Spans from the middle of the picture, on the blackout's frame and just before, and after it: skipped frames
    # keep the model args their images come from, the two newest images are rendered again for the fader (its
    # blend is 1: each frame mixes the two), and every span is exact, frame for frame.
    for first in sorted({n // 3, blackout - 1, blackout, (blackout + n) // 2}):
        stop = min(first + 7, n)
        frames, rep, _ = live_span(still_session, first, stop)
        assert rep.exact_start and rep.skipped > 0 and rep.tail == 0, (first, rep)
        diff = np.abs(frames.astype(np.int16) - whole[first:stop].astype(np.int16)).max(axis=(1, 2, 3))
        assert diff.max() == 0, (first, diff)


def test_a_live_sequence_span_with_feedback_warms_up_and_leaves_a_tail(live):
    folder = live[0] / "session"
    whole, _, program = live_span(folder, 0, 10 ** 6)
    n = program.n_frames
    first, stop = n // 2, n // 2 + 6
    # The default scene's feedback reads the frame before: a span that starts after skipped frames is not exact,
    # and the span before it renders a tail for the cross-fade; with a warm-up back to the start it is exact.
    cold, rep, _ = live_span(folder, first, stop, warm=3)
    assert not rep.exact_start and rep.rendered < len(program.frames)
    before, rep_before, _ = live_span(folder, 0, first, tail=4)
    assert rep_before.tail == 4 and len(before) == first + 4
    assert np.array_equal(before, whole[:first + 4])
    warm, rep_warm, _ = live_span(folder, first, stop, warm=first)
    assert rep_warm.exact_start and np.array_equal(warm, whole[first:stop])
    assert np.abs(cold.astype(np.int16) - whole[first:stop]).max() > 0      # the warm-up is what made it exact
