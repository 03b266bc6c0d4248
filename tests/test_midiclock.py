"""MIDI clock out through a real JACK server: pulse rate, Continue from the song position, Stop, tempo changes."""

import threading
import time

import numpy as np
import pytest

from test_midi import jack, unique  # noqa: F401  (fixture)
from xvfb import xvfb_display  # noqa: F401  (fixture)
from vj.sync.midiclock import CLOCK, CONTINUE, PPQN, SONG_POSITION, STOP, MidiClockOut

rtmidi = pytest.importorskip("rtmidi")


class Receiver:
    """A drum machine: a virtual JACK MIDI input that keeps every message with its arrival time (JACK's clock)."""

    def __init__(self):
        self.client = unique("drum")
        self.midi = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name=self.client)
        self.midi.ignore_types(sysex=False, timing=False, active_sense=False)
        self.midi.open_virtual_port("clock_in")
        self.t_s = 0.0
        self.messages: list[tuple[float, list[int]]] = []
        self.lock = threading.Lock()
        self.midi.set_callback(self._take)

    def _take(self, event, _):
        msg, delta = event
        with self.lock:
            self.t_s += delta          # rtmidi's delta times: JACK's time of each process cycle
            self.messages.append((self.t_s, msg))

    def taken(self):
        with self.lock:
            return list(self.messages)

    def close(self):
        self.midi.cancel_callback()
        self.midi.close_port()
        self.midi.delete()


def play(clock: MidiClockOut, seconds: float, bpm: float, start_beat: float = 0.0, running: bool = True,
         t0: float | None = None, fps: float = 60.0):
    """A frame loop handing the clock a steady beat: position start_beat at t0, 4 beats a bar."""
    t0 = time.monotonic() if t0 is None else t0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        now = time.monotonic()
        pos = start_beat + (now - t0) * bpm / 60.0
        clock.follow((pos % 4.0) / 4.0, bpm, 4, now, running)
        time.sleep(1.0 / fps)
    return t0


@pytest.fixture
def wired(jack):  # noqa: F811
    rx = Receiver()
    clock = MidiClockOut(f"{rx.client}:clock_in", api="jack").start()
    yield rx, clock
    clock.close()
    rx.close()


def pulses(messages):
    return [t for t, m in messages if m == [CLOCK]]


def pulse_period(ticks) -> tuple[float, int]:
    """The pulse period as the median of (t[i + h] - t[i]) / h, h = half the pulses, and h. Each pair spans half
    the run, so stamps off by at most J move each quotient, and the median, by at most J / h (as the run's two ends
    did for first-to-last); a pulse a busy machine sent late moves only the pair it is in, and the median passes
    over it."""
    t = np.asarray(ticks, dtype=np.float64)
    h = len(t) // 2
    return float(np.median((t[h:2 * h] - t[:h]) / h)), h


def test_pulses_at_24_per_beat_start_from_the_song_position_and_stop(wired, jack):  # noqa: F811
    rx, clock = wired
    # Start 2.6 beats into a bar at 120 BPM: the next sixteenth is the 11th of the bar (ceil(2.6 * 4)).
    t0 = play(clock, 2.5, 120.0, start_beat=2.6)
    assert clock.status.startswith("midi clock: sending to")
    msgs = rx.taken()
    kinds = [m[0] for _, m in msgs if m != [CLOCK]]
    assert kinds[:2] == [SONG_POSITION, CONTINUE]
    spp = next(m for _, m in msgs if m[0] == SONG_POSITION)
    assert spp[1] | spp[2] << 7 == 11
    ticks = pulses(msgs)
    # The pulse rate is the tempo's, to the pulse: 2.5 s at 120 BPM is 120 pulses, less the part of a frame before
    # the port opened and what is still on its way (a JACK period, 5.3 ms, is a quarter of a pulse).
    assert 110 <= len(ticks) <= 121, len(ticks)
    period_s = 60.0 / (120.0 * PPQN)
    mean, h = pulse_period(ticks)
    # JACK moves each event to a process cycle: each stamp is off by up to one period (256/48000 s).
    slack_s = jack.period_frames / jack.sample_rate_hz / h
    assert abs(mean - period_s) < slack_s + 0.002 * period_s, (mean, period_s)
    # Continue goes out just before the pulse of that sixteenth (6 pulses a sixteenth): no pulse between them.
    i_cont = next(i for i, (_, m) in enumerate(msgs) if m == [CONTINUE])
    assert msgs[i_cont + 1][1] == [CLOCK]
    # The thread sends each pulse at its time: half of them within a millisecond (a median, so a busy machine's
    # odd late wake-up does not decide it; `vj bench midiclock` prints the whole spread).
    assert clock.jitter_ms()["p50"] < 1.0, clock.jitter_ms()

    stop_at = len(rx.taken())
    play(clock, 0.3, 120.0, start_beat=2.6, running=False, t0=t0)
    after = rx.taken()[stop_at:]
    assert [STOP] in [m for _, m in after]
    assert len(pulses(after)) > 5                         # pulses carry on while stopped
    play(clock, 0.3, 120.0, start_beat=2.6, running=True, t0=t0)
    assert clock.starts == 2


def test_a_tempo_change_changes_the_pulse_rate_and_unknown_tempo_stops_the_pulses(wired):
    rx, clock = wired
    t0 = play(clock, 1.0, 100.0)
    n = len(rx.taken())
    t1 = time.monotonic()
    play(clock, 2.0, 150.0, start_beat=(t1 - t0) * 100.0 / 60.0, t0=t1)
    ticks = pulses(rx.taken()[n + 3:])
    mean, _ = pulse_period(ticks)
    assert mean == pytest.approx(60.0 / (150.0 * PPQN), rel=0.02)
    clock.follow(0.0, 0.0, 4, time.monotonic(), True)     # the tempo is lost (silence, tracker not sure)
    time.sleep(0.2)
    n = len(rx.taken())
    time.sleep(0.3)
    tail = rx.taken()[n:]
    assert [STOP] in [m for _, m in rx.taken()] and not pulses(tail)


def test_a_missing_port_is_waited_for_and_the_clock_thread_ends_on_close(jack):  # noqa: F811
    before = threading.active_count()
    clock = MidiClockOut("no-such-drum-machine", api="jack").start()
    try:
        deadline = time.monotonic() + 5
        while "waiting" not in clock.status and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "waiting for output 'no-such-drum-machine'" in clock.status
    finally:
        clock.close()
    assert threading.active_count() == before


@pytest.mark.slow
def test_the_live_show_sends_clock_at_the_link_sessions_tempo(jack, xvfb_display, monkeypatch,  # noqa: F811
                                                               loopback_only):
    from test_link import Peer, wait_for
    from vj.config import AudioConfig, ControlConfig, RenderConfig, SyncConfig
    from vj.show import LiveShow
    monkeypatch.setenv("DISPLAY", xvfb_display)
    rx = Receiver()
    peer = Peer(128.0)
    show = None
    try:
        show = LiveShow("demo", "default", RenderConfig(width_px=160, height_px=90), AudioConfig(),
                        ControlConfig(osc_port=0), sync=SyncConfig(link=True, midi_clock_port=f"{rx.client}:clock_in",
                                                                   midi_clock_api="jack"))
        assert wait_for(lambda: (show.frame(), show.engine.registry.get("/link/peers") == 1)[1], 10.0, 0.0)
        peer.send("tempo 128")
        assert wait_for(lambda: (show.frame(), abs(show.engine.features.bpm - 128.0) < 0.01)[1], 5.0, 0.0)
        clock = show.clock_out
        show.frame()
        n, shifted0 = len(rx.taken()), clock.shifted_beats
        end = time.monotonic() + 2.5
        while time.monotonic() < end:                     # a 60 fps show
            t = time.monotonic()
            show.frame()
            time.sleep(max(0.0, t + 1 / 60 - time.monotonic()))
        shifted = clock.shifted_beats - shifted0
        ticks = pulses(rx.taken()[n:])[2:]                # from pulses sent after the first frame's timeline
        assert len(ticks) > 100
        period_s = 60.0 / (128.0 * PPQN)
        mean = (ticks[-1] - ticks[0]) / (len(ticks) - 1)
        # The pulses keep the session's tempo on the clock's timeline, which the frames shift as the show's beat
        # wobbles, and by more on a busy machine whose frames come late (`shifted`, beats): over the pulses'
        # span, the mean pulse is period * (1 - 24 * shifted / (pulses - 1)). On the stamps: JACK's period at
        # each end (2 x 5.3 ms over ~125 intervals, 0.4 % of a pulse: 1 % holds), and how late the thread sent
        # a pulse (its jitter, measured), at each end.
        want = period_s * (1.0 - PPQN * shifted / (len(ticks) - 1))
        late_s = clock.jitter_ms()["max"] / 1e3
        assert abs(mean - want) <= 0.01 * period_s + 2 * late_s / (len(ticks) - 1), (mean, want, shifted, late_s)
        assert any(line.startswith("midi clock: sending to") for line in show.hud_stats()["sync"])
    finally:
        if show is not None:
            show.close()
        peer.close()
        rx.close()
