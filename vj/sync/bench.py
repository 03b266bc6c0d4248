"""`vj bench midiclock`: how evenly MIDI clock out leaves vj and arrives at a receiver on JACK MIDI (prints ms).

A receiver (a virtual JACK MIDI input, as a drum machine would be) takes the pulses of a MidiClockOut that a
60 fps loop feeds a steady 120 BPM, in two runs side by side: the frame loop idle between frames, and the frame
loop busy with 8 ms of pure Python per frame (the worst case for the clock thread, which needs the interpreter
lock to send). Per run:
- sent: how far each pulse left the clock thread from its due time (the thread's own measure);
- arrived: how far each interval between arriving pulses is from 1/24 beat. rtmidi hands JACK each event at
  the start of the next process cycle and stamps arrivals with the cycle's time, so both ends are quantised to
  the JACK period: up to one period per interval, whatever the sender does. A smaller period (`--jack-period`)
  shrinks that.
"""

from __future__ import annotations

import time

import numpy as np

from vj.audio.servers import JackServer
from vj.sync.midiclock import CLOCK, PPQN, MidiClockOut

BPM = 120.0
BUSY_S = 0.008


def _run(port: str, receiver, seconds: float, busy: bool) -> tuple[dict, np.ndarray]:
    arrivals: list[float] = []
    acc = [0.0]

    def take(event, _):
        msg, delta = event
        acc[0] += delta
        if msg == [CLOCK]:
            arrivals.append(acc[0])
    receiver.set_callback(take)
    clock = MidiClockOut(port, api="jack").start()
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            now = time.monotonic()
            clock.follow(((now - t0) * BPM / 60.0 % 4.0) / 4.0, BPM, 4, now, True)
            if busy:
                end = now + BUSY_S
                while time.monotonic() < end:      # pure Python: holds the interpreter lock
                    pass
            time.sleep(max(0.0, now + 1 / 60 - time.monotonic()))
        sent = clock.jitter_ms()
    finally:
        clock.close()
        receiver.cancel_callback()
    intervals = np.diff(np.asarray(arrivals[2:]))       # the first pulses race the port connecting
    return sent, np.abs(intervals - 60.0 / (BPM * PPQN)) * 1e3


def print_midiclock_bench(seconds: float = 10.0, period_frames: int = 256) -> dict:
    """Run both loads and print a table; returns {load: (sent, arrived deviations)}."""
    import rtmidi
    server = JackServer(period_frames=period_frames).start()
    results = {}
    try:
        rx = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name="vj-bench-rx")
        rx.ignore_types(sysex=False, timing=False, active_sense=False)
        rx.open_virtual_port("clock_in")
        period_ms = 1e3 * period_frames / server.sample_rate_hz
        print(f"MIDI clock out at {BPM:.0f} BPM ({60e3 / (BPM * PPQN):.2f} ms a pulse), JACK period "
              f"{period_frames} frames = {period_ms:.2f} ms, {seconds:.0f} s a run")
        print(f"{'frame loop':<22}{'sent p50':>10}{'p99':>8}{'max':>8}   {'arrived p50':>12}{'p99':>8}{'max':>8}  (ms)")
        for name, busy in (("idle", False), (f"busy {BUSY_S * 1e3:.0f} ms/frame", True)):
            sent, arrived = _run("vj-bench-rx:clock_in", rx, seconds, busy)
            results[name] = (sent, arrived)
            if not len(arrived) or not sent:
                print(f"{name:<22}no pulses arrived")
                continue
            a = np.percentile(arrived, [50, 99])
            print(f"{name:<22}{sent['p50']:10.2f}{sent['p99']:8.2f}{sent['max']:8.2f}   "
                  f"{a[0]:12.2f}{a[1]:8.2f}{arrived.max():8.2f}")
        rx.close_port()
        rx.delete()
    finally:
        server.stop()
    return results
