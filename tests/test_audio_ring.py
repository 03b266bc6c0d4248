"""RingBuffer: a writer thread and a reader that keeps up lose nothing; one that falls behind is told."""

import threading
import time

import numpy as np
import pytest

from vj.audio.ring import RingBuffer


def _counter_blocks(n_blocks, block, channels=2):
    """Blocks whose samples count up 0, 1, 2, ... (the same value on every channel)."""
    for b in range(n_blocks):
        vals = np.arange(b * block, (b + 1) * block, dtype=np.float32)
        yield np.repeat(vals[:, None], channels, axis=1)


def test_wraps_and_keeps_order():
    ring = RingBuffer(1000, 2)
    got = []
    for blk in _counter_blocks(40, 256):
        ring.write(blk)
        got.append(ring.read_new())
    out = np.concatenate(got)
    assert out.dtype == np.float32 and out.shape == (40 * 256, 2)
    np.testing.assert_array_equal(out[:, 0], np.arange(40 * 256))
    assert ring.total_frames == 40 * 256 and ring.overruns == 0


def test_writer_thread_read_in_time_loses_nothing():
    ring = RingBuffer(48000, 2)
    n_blocks, block = 400, 256
    done = threading.Event()
    got = []

    def writer():
        for i, blk in enumerate(_counter_blocks(n_blocks, block)):
            # "In time" by construction, not by the scheduler: never more than half the ring ahead of the reader
            # (a busy machine may starve the reader thread for longer than the whole ring lasts).
            while i * block - sum(len(g) for g in got) > 48000 // 2:
                time.sleep(0.001)
            ring.write(blk)
            if i % 8 == 0:
                time.sleep(0.0005)
        done.set()

    th = threading.Thread(target=writer)
    th.start()
    while not done.is_set():
        got.append(ring.read_new())
        time.sleep(0.001)
    th.join()
    got.append(ring.read_new())
    out = np.concatenate(got)
    np.testing.assert_array_equal(out[:, 0], np.arange(n_blocks * block))
    np.testing.assert_array_equal(out[:, 0], out[:, 1])
    assert ring.overruns == 0 and ring.dropped_frames == 0


def test_reader_that_falls_behind_gets_the_newest_and_a_count():
    ring = RingBuffer(1000, 1)
    th = threading.Thread(target=lambda: [ring.write(b) for b in _counter_blocks(20, 256, channels=1)])
    th.start()
    th.join()
    out = ring.read_new()
    total = 20 * 256
    assert len(out) == 1000
    np.testing.assert_array_equal(out[:, 0], np.arange(total - 1000, total))
    assert ring.overruns == 1 and ring.dropped_frames == total - 1000
    assert len(ring.read_new()) == 0


def test_block_larger_than_capacity_keeps_its_tail():
    ring = RingBuffer(100, 1)
    ring.write(np.arange(30, dtype=np.float32)[:, None])
    ring.write(np.arange(30, 280, dtype=np.float32)[:, None])
    out = ring.read_new()
    np.testing.assert_array_equal(out[:, 0], np.arange(180, 280))
    assert ring.dropped_frames == 180 and ring.total_frames == 280


def test_bad_sizes_raise():
    with pytest.raises(ValueError):
        RingBuffer(0, 2)
