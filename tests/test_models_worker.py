"""The model worker: latest wins, stamps increase, errors come back in results, render_now matches."""

import threading
import time
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from vj.audio.features import Features
from vj.models.base import Generator, ModelArgs
from vj.models.cppn import CPPNGenerator
from vj.models.worker import ModelWorker

W, H = 16, 8
WAIT_S = 30.0                         # generous: a wait ends when its result is there; only a stuck worker spends it


@dataclass(frozen=True)
class NumberArgs(ModelArgs):
    value: float = 0.0                # the grey level to render; negative raises, 2 gives a bad shape


class FakeGenerator(Generator):
    """Renders a flat grey of `args.value`, slowly, and records what it rendered (a test double).

    With a `gate`, each render waits until the test opens it, so "still rendering" is a fact, not a race.
    """

    name = "fake"

    def __init__(self, delay_s=0.0, gate=None):
        self.delay_s = delay_s
        self.gate = gate
        self.rendered = []
        self.started = threading.Event()

    @property
    def output_size(self):
        return W, H

    def params(self):
        return []

    def advance(self, frame, features, dt_s):
        return NumberArgs(z=(), value=0.5)

    def reset(self):
        pass

    def render(self, args):
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(WAIT_S), "the test never opened the gate"
        time.sleep(self.delay_s)
        self.rendered.append(args.value)
        if args.value < 0:
            raise RuntimeError(f"bad value {args.value}\nsecond line of detail")
        if args.value == 2:
            return torch.zeros(1, 3, H + 1, W)
        return torch.full((1, 3, H, W), args.value)


def args(value):
    return NumberArgs(z=(), value=value)


def test_latest_wins_with_a_slow_generator():
    # The first render holds until all nine later submissions are in (a sleep would race a busy machine).
    gate = threading.Event()
    gen = FakeGenerator(gate=gate)
    with ModelWorker(gen) as worker:
        first = worker.submit(args(0.0))
        assert gen.started.wait(WAIT_S)              # the first one is rendering now
        stamps = [worker.submit(args(i / 10)) for i in range(1, 10)]
        assert stamps == sorted(stamps) and len(set(stamps)) == 9 and stamps[0] > first
        gate.set()
        result = worker.wait(stamps[-1], timeout_s=WAIT_S)
        assert result is not None and result.stamp == stamps[-1]
        assert gen.rendered == [0.0, 0.9]            # everything in between was replaced
        assert worker.dropped == 8
        np.testing.assert_allclose(result.image, 0.9)
        assert worker.poll() is None                 # taken once


def test_poll_returns_only_the_newest_finished_result():
    gen = FakeGenerator()
    with ModelWorker(gen) as worker:
        assert worker.poll() is None
        s1 = worker.submit(args(0.1))
        assert worker.wait(s1, timeout_s=WAIT_S).stamp == s1
        s2 = worker.submit(args(0.2))
        deadline = time.monotonic() + WAIT_S
        while worker.frames_done < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
        result = worker.poll()
        assert result.stamp == s2 and result.error is None
        assert worker.poll() is None
        assert worker.last_elapsed_s > 0.0


def test_result_image_is_a_frozen_contiguous_float_array():
    with ModelWorker(FakeGenerator()) as worker:
        result = worker.render_now(args(0.25))
    img = result.image
    assert img.shape == (H, W, 3) and img.dtype == np.float32 and img.flags.c_contiguous
    assert not img.flags.writeable
    np.testing.assert_allclose(img, 0.25)


def test_render_errors_come_back_in_the_result_and_the_worker_keeps_going():
    gen = FakeGenerator()
    with ModelWorker(gen) as worker:
        bad = worker.wait(worker.submit(args(-1.0)), timeout_s=WAIT_S)
        assert bad.error == "RuntimeError: bad value -1.0"
        assert bad.image.shape == (H, W, 3) and not bad.image.any()
        wrong = worker.wait(worker.submit(args(2.0)), timeout_s=WAIT_S)
        assert wrong.error.startswith("AssertionError: render returned shape (1, 3, 9, 16)")
        good = worker.wait(worker.submit(args(0.5)), timeout_s=WAIT_S)
        assert good.error is None and good.stamp > wrong.stamp > bad.stamp
        assert worker.errors == 2 and worker.frames_done == 3
        assert worker.render_now(args(-3.0)).error.startswith("RuntimeError")


def test_render_now_equals_the_threaded_result():
    gen = CPPNGenerator(64, 36)
    frames = [gen.advance({}, Features(t_s=i / 30, bass=0.7, onset=i == 1), 1 / 30) for i in range(3)]
    with ModelWorker(gen) as worker:
        for a in frames:
            threaded = worker.wait(worker.submit(a), timeout_s=WAIT_S)
            direct = worker.render_now(a)
            assert threaded.error is None and direct.error is None
            assert np.array_equal(threaded.image, direct.image)      # one traced module on both threads
            expected = gen.render(a)[0].permute(1, 2, 0).numpy()
            assert np.array_equal(direct.image, expected)


def test_fps_counts_finished_renders():
    # 4 renders, one after another, each sleeping >= 10 ms: at most 100 a second, and their 3 intervals lie
    # inside the time the test watched. fps reads 0 after 2 s idle, so a stall that long (a busy machine)
    # measures again on a fresh worker instead of asserting something weaker.
    for _ in range(10):
        with ModelWorker(FakeGenerator(delay_s=0.01)) as worker:
            t0 = time.monotonic()
            for _ in range(4):
                assert worker.wait(worker.submit(args(0.1)), timeout_s=WAIT_S) is not None
            fps = worker.fps
            watched_s = time.monotonic() - t0
        if watched_s < 2.0:
            break
    assert 3 / watched_s <= fps <= 100.0


def test_close_is_idempotent_and_submit_after_close_raises():
    worker = ModelWorker(FakeGenerator())
    worker.close()
    worker.close()
    assert not worker._thread.is_alive()
    with pytest.raises(RuntimeError):
        worker.submit(args(0.1))
    assert worker.render_now(args(0.3)).error is None     # offline rendering needs no thread


def test_the_live_worker_thread_runs_nicer_than_the_frame_loop():
    # Latest wins, so the model takes the CPU left over: the frame loop and the audio callback come first.
    import os
    from vj.models.worker import WORKER_NICE
    gen = FakeGenerator()
    with ModelWorker(gen) as worker:
        worker.wait(worker.submit(args(0.5)), timeout_s=WAIT_S)
        tid = worker._thread.native_id
        base = os.getpriority(os.PRIO_PROCESS, 0)
        assert os.getpriority(os.PRIO_PROCESS, tid) == min(19, base + WORKER_NICE)
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base     # the caller keeps its own
