"""The watchdog: a hung model render gets a new worker, a slow one is reported, a stalled frame loop says where."""

import logging
import threading
import time

import numpy as np
import pytest

import probe_generator as probe
from test_engine import CFG, ctx  # noqa: F401  (fixture)
from test_hot_reload import SOLID
from test_scene import PRESET, run_until
from vj import engine as engine_mod
from vj.config import AudioConfig
from vj.engine import Engine
from vj.watchdog import FrameWatchdog, stack_where


@pytest.fixture
def scene(ctx, tmp_path, monkeypatch):  # noqa: F811
    """An engine factory: `scene(model_lines)` plays a probe preset live."""
    probe.install(monkeypatch)
    (tmp_path / "solid.fs").write_text(SOLID % "IMG_NORM_PIXEL(inputImage, isf_FragNormCoord).rgb")
    made = []

    def make(model: str, live: bool = True) -> Engine:
        (tmp_path / "p.toml").write_text(PRESET % ("p", "p", model, ""))
        e = Engine(ctx, CFG, AudioConfig(), live=live, shader_dirs=(tmp_path,), preset_dirs=[tmp_path])
        made.append(e)
        e.load_preset("p")
        return e
    yield make
    probe.RELEASE.set()
    for e in made:
        e.close()


def test_a_render_that_never_returns_gets_a_new_worker_and_the_show_goes_on(scene, caplog):
    e = scene('mode = "block"\nat = 5')
    gen, first_worker = e.generator, e.worker
    run_until(e, lambda: gen.blocked.is_set())
    frames_before = e.model_frames
    with caplog.at_level(logging.WARNING, logger="vj.engine"):
        run_until(e, lambda: e.worker is not first_worker)      # HANG_S (5 s) or more after the block
    # The log names the hung model and dumps the stuck thread's stack, down to where it waits.
    text = caplog.text
    assert "replacing its worker" in text and "probe_generator.py" in text and "block_in_render" in text
    assert "probe_generator.py" in e.model_note[0] and "worker replaced" in e.model_note[0]
    assert first_worker.running_s() > 0.0                     # the old thread is still stuck: abandoned, not joined
    # The new worker renders the same generator: new pictures come again, without a restart.
    run_until(e, lambda: e.model_frames >= frames_before + 3)
    assert e.generator is gen and e.scene.model.abandoned == [first_worker]


def test_a_model_that_hangs_every_worker_stops_getting_new_ones(scene, monkeypatch):
    # Every render from the second on blocks. Shorter hang limits keep this test quick; the logic is the same.
    monkeypatch.setattr(engine_mod, "HANG_S", 0.5)
    monkeypatch.setattr(engine_mod, "SLOW_RENDER_S", 0.2)
    e = scene("")
    gen = e.generator
    run_until(e, lambda: e.model_frames >= 3)      # some renders finish first: the watchdog knows its usual time

    def block_all(args, render=gen.render):
        probe.block_in_render()
        return render(args)
    gen.render = block_all           # the workers call generator.render: from now on every one of them blocks
    run_until(e, lambda: e.model_error is not None and "switch scenes" in e.model_error)
    model = e.scene.model
    assert len(model.abandoned) == engine_mod.MAX_WORKER_REPLACEMENTS
    workers = [t for t in threading.enumerate() if t.name == "vj-model-worker"]
    for _ in range(30):             # no more threads are made, however long it stays hung
        e.step_live(None, e._frame_t_s + 1 / 30, 1 / 30)
        time.sleep(0.02)
    assert [t for t in threading.enumerate() if t.name == "vj-model-worker"] == workers
    assert len(model.abandoned) == engine_mod.MAX_WORKER_REPLACEMENTS


def test_a_slow_render_is_reported_and_its_worker_kept(scene, caplog):
    # Render 5 takes 3 s where the others take milliseconds: slow (more than SLOW_RENDER_S, 1 s), not hung
    # (less than HANG_S, 5 s). The display frames go on meanwhile, and the same worker carries on after it.
    e = scene('mode = "slow"\nat = 5\nsleep_s = 3.0')
    gen, worker = e.generator, e.worker
    run_until(e, lambda: gen.blocked.is_set())
    with caplog.at_level(logging.WARNING, logger="vj.engine"):
        run_until(e, lambda: e.model_note is not None)
        frames, stepped = None, 0
        while True:
            e.step_live(None, e._frame_t_s + 1 / 30, 1 / 30)
            if gen.renders != gen.at or worker.running_s() == 0.0:
                break                        # the slow render ended during this frame: its picture may be in it
            if frames is None:               # a picture finished before the slow render began has landed by now
                frames = e.model_frames
            else:                            # a whole frame while it ran: on the last picture
                stepped += 1
                assert e.model_frames == frames
            time.sleep(0.01)
    assert "render slow" in e.model_note[0] and "probe_generator.py" in e.model_note[0]
    assert "has run for" in caplog.text and "in render" in caplog.text
    assert stepped > 0                       # the display ran on meanwhile
    run_until(e, lambda: e.model_frames > frames)
    assert e.worker is worker and not e.scene.model.abandoned


def sleepy_frame(seconds):
    time.sleep(seconds)


def test_the_frame_watchdog_dumps_the_stuck_stack_once_per_stall(caplog):
    dog = FrameWatchdog(stall_s=0.3, poll_s=0.05)
    try:
        with caplog.at_level(logging.WARNING, logger="vj.watchdog"):
            dog.tick()
            sleepy_frame(0.2)            # shorter than the stall limit: nothing
            dog.tick()
            assert dog.take_stall() is None and dog.stalls == 0
            sleepy_frame(1.0)            # one stall: reported once, while it lasts
            dog.tick()
        seconds, where = dog.take_stall()
        assert dog.stalls == 1 and seconds >= 1.0
        assert where.startswith("test_watchdog.py:") and where.endswith("in sleepy_frame")
        assert caplog.text.count("no frame for") == 1 and "sleepy_frame" in caplog.text
        assert "ended after" in caplog.text
    finally:
        dog.close()


def test_stack_where_names_the_innermost_call():
    stack = '  File "/a/b/x.py", line 3, in outer\n    f()\n  File "/a/y.py", line 9, in inner\n    g()\n'
    assert stack_where(stack) == "y.py:9 in inner"


def test_out_of_memory_steps_the_size_down_and_keeps_playing(scene, caplog):
    # 256x144 and its first step down (192x108) do not fit, 144x81 does: two steps, then pictures.
    e = scene('size = [256, 144]\nmode = "oom"\noom_above = 150')
    with caplog.at_level(logging.ERROR, logger="vj.engine"):
        run_until(e, lambda: e.generator.output_size == (144, 81) and e.model_frames > 0)
    assert [g.output_size for g in probe.MADE] == [(256, 144), (192, 108), (144, 81)]
    assert [g.closed for g in probe.MADE] == [1, 1, 0]
    assert "out of memory at 256x144; building it again at 192x108" in caplog.text
    assert "out of memory at 192x108; building it again at 144x81" in caplog.text
    assert "now 144x81" in e.model_note[0]
    # Nothing of the failed calls stays alive: not their activations, not their exceptions' frames.
    assert probe.FAILED_CALL_TENSORS and all(ref() is None for ref in probe.FAILED_CALL_TENSORS)
    # A scene change back to the same preset keeps the size that fits.
    e.switch_preset("p")
    run_until(e, lambda: e.loading is None)
    assert e.generator.output_size == (144, 81)


def test_out_of_memory_offline_steps_down_between_frames(scene):
    e = scene('size = [256, 144]\nmode = "oom"\noom_above = 200', live=False)
    rgb = []
    for i in range(3):
        e.step_offline(None, i / 30, 1 / 30)
        rgb.append(e.read_rgb())
    assert e.generator.output_size == (192, 108)
    assert e.model_error is None and np.asarray(rgb[-1]).max() > 0     # the frames after the step have pictures


def test_out_of_memory_at_the_smallest_size_says_so_and_stops_stepping(scene, caplog):
    e = scene('size = [256, 144]\nmode = "oom"\noom_above = 10')
    with caplog.at_level(logging.ERROR, logger="vj.engine"):
        run_until(e, lambda: "smallest size" in caplog.text)
    sizes = [g.output_size for g in probe.MADE]
    assert sizes[-1][1] == 64 and len(sizes) == 4           # 144 -> 108 -> 81 -> 64 (MIN_MODEL_PX)
    for _ in range(20):
        e.step_live(None, e._frame_t_s + 1 / 30, 1 / 30)
        time.sleep(0.01)
    assert len(probe.MADE) == 4 and "OutOfMemoryError" in e.model_error
    assert caplog.text.count("the smallest size it goes to") == 1
