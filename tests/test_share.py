"""The queued frame sender under NDI, Syphon and Spout: never blocks, drops and counts, fails once and clearly."""

import sys
import threading
import time

import numpy as np
import pytest

from vj.share.base import QueuedSender


class SlowSender(QueuedSender):
    kind = "test"

    def __init__(self, *a, delay_s=0.05, fail_after=None, **kw):
        self.delay_s, self.fail_after, self.got = delay_s, fail_after, []
        self.opened = self.closed = 0
        super().__init__(*a, **kw)

    def _open(self):
        self.opened += 1

    def _send(self, rgb):
        if self.fail_after is not None and len(self.got) >= self.fail_after:
            raise OSError("No space left on device")
        time.sleep(self.delay_s)
        self.got.append(int(rgb[0, 0, 0]))

    def _close(self):
        self.closed += 1


def frame(i):
    return np.full((4, 6, 3), i % 256, np.uint8)


def test_send_never_waits_for_a_slow_receiver_and_counts_what_it_drops():
    s = SlowSender("t", 6, 4, 30.0, queue_frames=2, delay_s=0.05)
    worst = 0.0
    for i in range(40):
        t = time.perf_counter()
        s.send(frame(i))
        worst = max(worst, time.perf_counter() - t)
    # A copy of 72 bytes into a queue: far below the 50 ms the receiver takes per frame.
    assert worst < 0.01
    s.close()
    assert s.dropped > 0 and s.sent + s.dropped == 40 and s.sent == len(s.got)
    assert s.got == sorted(s.got)                 # frames go out in order
    assert (s.opened, s.closed) == (1, 1)


def test_a_failing_receiver_stops_sending_with_one_line_and_the_caller_goes_on():
    s = SlowSender("t", 6, 4, 30.0, delay_s=0.0, fail_after=3)
    for i in range(10):
        s.send(frame(i))
        time.sleep(0.005)
    deadline = time.monotonic() + 5
    while s.error is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert s.error == "OSError: No space left on device"
    assert s.send(frame(99)) is False
    s.close()
    assert s.closed == 1 and s.got == [0, 1, 2]


def test_close_joins_the_thread_every_time():
    before = threading.active_count()
    for _ in range(20):
        s = SlowSender("t", 6, 4, 30.0, delay_s=0.0)
        s.send(frame(1))
        s.close()
        s.close()
    assert threading.active_count() == before


@pytest.mark.skipif(sys.platform in ("darwin", "win32"), reason="checks the refusal on other systems")
def test_syphon_and_spout_refuse_clearly_where_they_do_not_exist():
    from vj.share.spout import SpoutError, SpoutSender
    from vj.share.syphon import SyphonError, SyphonSender
    with pytest.raises(SyphonError, match="Syphon is macOS only"):
        SyphonSender("vj", 64, 36, 30.0)
    with pytest.raises(SpoutError, match="Spout is Windows only"):
        SpoutSender("vj", 64, 36, 30.0)
