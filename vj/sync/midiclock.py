"""MIDI clock out: 24 pulses per beat, Start/Continue/Stop and song position from the show's beat, for drum
machines, sequencers and lighting desks that follow vj.

The main thread hands over the beat once a frame (`follow`): its place in the bar and tempo at the moment the
frame is seen. A thread of its own sends each pulse at its time from the newest timeline, so pulses never wait for a frame:
between frames they run on at the tempo. The frame-to-frame phase of the beat tracker wobbles by a hop or so;
the timeline takes a quarter of each small difference per frame (a phase-locked loop of about 4 frames), and
re-anchors at once after a jump of more than a tenth of a beat (a tap, a nudge, Link taking over).

Starting (`/midiclock/run` on, or the first known tempo) sends Song Position Pointer to the next sixteenth of
the bar and Continue on it, so the receiver starts in step within a sixteenth instead of waiting for a bar;
stopping sends Stop. Pulses keep coming while stopped (receivers show the tempo from them, as most do).

The port is an output opened by name (as MIDI in: exact, else a substring, "" the first one) through
rtmidi, on JACK here; a missing port is retried by the same thread. `jitter_ms()` reports how far pulses were
sent from their times.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from vj.control.midi import choose_api, match_port
from vj.params import Param

log = logging.getLogger(__name__)

PPQN = 24                        # MIDI clock pulses per quarter note
CLOCK, START, CONTINUE, STOP, SONG_POSITION = 0xF8, 0xFA, 0xFB, 0xFC, 0xF2
PLL_GAIN = 0.25                  # share of a small phase difference taken per frame
JUMP_BEATS = 0.1                 # a larger difference re-anchors at once
SPIN_S = 0.0015                  # the last this-much before a pulse is waited out by spinning, not sleeping
RETRY_S = 1.0                    # a missing port is looked for again this often
SWITCH_S = 0.001                 # the interpreter's switch interval while the clock runs

MIDI_CLOCK_PARAMS = [
    Param("/midiclock/run", True, kind="bool", description="MIDI clock out: on sends Continue (from the song "
          "position of the next sixteenth of the bar), off sends Stop; pulses carry on either way"),
]


@dataclass(frozen=True)
class Timeline:
    """Where the beat is: position `beat` (beats, unwrapped) at monotonic time `t_s`, moving at `bpm`."""

    t_s: float
    beat: float
    bpm: float
    beats_per_bar: int
    running: bool

    def beat_at(self, t_s: float) -> float:
        return self.beat + (t_s - self.t_s) * self.bpm / 60.0

    def time_of(self, beat: float) -> float:
        return self.t_s + (beat - self.beat) * 60.0 / self.bpm


class MidiClockOut:
    """Sends MIDI clock on its own thread from the timeline the show hands it each frame."""

    def __init__(self, port: str, api: str = "auto", client_name: str = "vj-clock"):
        self.want = port
        self.api = api
        self.client_name = client_name
        self.port_name: str | None = None
        self.status = "midi clock: not started"
        self.pulses = 0
        self.starts = 0
        # How far the frames have moved the timeline off its tempo so far, in beats (the PLL's share of each phase
        # difference, or a whole jump; signed): pulses between two times are 24 a beat of the tempo plus 24 a beat
        # of what this moved in between.
        self.shifted_beats = 0.0
        self._errors_s: deque[float] = deque(maxlen=4096)    # send time minus due time, per pulse
        self._timeline: Timeline | None = None
        self._pos: float | None = None         # main thread: unwrapped beat position of the last frame
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._out = None
        self._thread: threading.Thread | None = None

    # -- main thread --

    def start(self) -> "MidiClockOut":
        # A thread that wakes for a pulse waits for the interpreter lock for up to the switch interval (5 ms by
        # default) while the frame loop runs Python: 1 ms keeps a pulse within about that of its time (`vj bench
        # midiclock`, busy loop: p99 5.6 -> 2.2 ms). It costs the show nothing measurable: headless 640x360
        # default-scene frames took 3.41-3.50 ms at 1 ms against 3.55-3.60 ms at 5 ms. Put back by close().
        self._switch_s = sys.getswitchinterval()
        sys.setswitchinterval(min(self._switch_s, SWITCH_S))
        self._thread = threading.Thread(target=self._run, name="vj-midi-clock", daemon=True)
        self._thread.start()
        return self

    def follow(self, bar_phase: float, bpm: float, beats_per_bar: int, seen_at_s: float, running: bool) -> None:
        """Where the bar is at monotonic time `seen_at_s` (phase 0..1 through the bar) and the tempo (bpm 0:
        unknown, no pulses); `running`: Continue/Stop."""
        bar = max(1, int(beats_per_bar))
        if not bpm > 0:
            self._pos = None
            self._publish(None)
            return
        pos = bar_phase * bar                           # beats into the bar
        if self._pos is not None:                       # unwrap: a frame moves far less than half a bar
            pos += math.floor(self._pos / bar) * bar
            if pos < self._pos - bar / 2:
                pos += bar
            elif pos > self._pos + bar / 2:
                pos -= bar
        self._pos = pos
        old = self._timeline
        if old is not None and old.bpm == bpm and old.running == running and old.beats_per_bar == bar:
            at = old.beat_at(seen_at_s)
            err = pos - at
            if abs(err) <= JUMP_BEATS:
                pos = at + PLL_GAIN * err
            self.shifted_beats += pos - at
        self._publish(Timeline(seen_at_s, pos, float(bpm), bar, bool(running)))

    def jitter_ms(self) -> dict[str, float]:
        """How far pulses went out from their due times (ms): median, 99th percentile and worst |error|."""
        e = np.abs(np.asarray(self._errors_s)) * 1e3
        if not len(e):
            return {}
        return {"p50": float(np.percentile(e, 50)), "p99": float(np.percentile(e, 99)), "max": float(e.max()),
                "pulses": float(len(e))}

    def close(self) -> None:
        """Send Stop, close the port and join the thread; idempotent."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
            sys.setswitchinterval(self._switch_s)

    def _publish(self, tl: Timeline | None) -> None:
        self._timeline = tl                 # one reference: the thread reads whole snapshots (habit 2)
        self._wake.set()

    # -- the clock thread --

    def _run(self) -> None:
        next_pulse: int | None = None       # index of the next pulse on the beat position (pulse k at beat k/24)
        playing = False
        next_try = 0.0
        try:
            while not self._stop.is_set():
                if self._out is None:
                    if time.monotonic() >= next_try:
                        self._open()
                        next_try = time.monotonic() + RETRY_S
                    if self._out is None:
                        self._stop.wait(0.1)
                        continue
                tl = self._timeline
                if tl is None:
                    if playing:
                        self._send(STOP)
                        playing = False
                    next_pulse = None
                    self._wake.wait(0.1)
                    self._wake.clear()
                    continue
                now = time.monotonic()
                pos = tl.beat_at(now)
                if next_pulse is None or next_pulse / PPQN < pos - 1.0:
                    next_pulse = math.ceil(pos * PPQN)          # first pulse, or a jump ahead: carry on from here
                if tl.running != playing:
                    if not tl.running:
                        self._send(STOP)
                        playing = False
                    elif next_pulse % (PPQN // 4) == 0:
                        # Song position counts sixteenths (6 pulses); Continue makes the next pulse play it.
                        bar16 = 4 * tl.beats_per_bar
                        sixteenth = (next_pulse // (PPQN // 4)) % bar16
                        self._send(SONG_POSITION, sixteenth & 0x7F, sixteenth >> 7)
                        self._send(CONTINUE)
                        playing = True
                        self.starts += 1
                due = tl.time_of(next_pulse / PPQN)
                wait = due - time.monotonic()
                if wait > SPIN_S:
                    # Wake early for a new timeline or a stop; otherwise sleep to just before the pulse.
                    if self._wake.wait(min(wait - SPIN_S, 0.05)):
                        self._wake.clear()
                    continue
                while time.monotonic() < due:
                    pass
                sent = time.monotonic()
                if self._send(CLOCK):
                    self._errors_s.append(sent - due)
                    self.pulses += 1
                next_pulse += 1
        finally:
            if self._out is not None:
                if playing:
                    self._send(STOP)
                self._close_port()

    def _open(self) -> None:
        rt_api, name = choose_api(self.api)
        if rt_api is None:
            self._set_status(f"midi clock: off ({name})")
            return
        try:
            import rtmidi
            os.environ.setdefault("JACK_NO_START_SERVER", "1")
            out = rtmidi.MidiOut(rt_api, name=self.client_name)
            port = match_port(out.get_ports(), self.want)
            if port is None:
                out.delete()
                self._set_status(f"midi clock: waiting for output {self.want!r}")
                return
            out.open_port(out.get_ports().index(port), "clock_out")
        except (ImportError, OSError, ValueError, RuntimeError) as exc:
            self._set_status(f"midi clock: off ({name}: {exc})")
            return
        self._out, self.port_name = out, port
        self._set_status(f"midi clock: sending to {port}")

    def _send(self, *data: int) -> bool:
        if self._out is None:
            return False
        try:
            self._out.send_message(list(data))
            return True
        except (OSError, ValueError, RuntimeError) as exc:     # the port went away: find it again
            self._set_status(f"midi clock: {self.port_name} lost ({exc}); retrying")
            self._close_port()
            return False

    def _close_port(self) -> None:
        out, self._out, self.port_name = self._out, None, None
        if out is not None:
            try:
                out.close_port()
                out.delete()
            except (OSError, ValueError, RuntimeError):
                pass

    def _set_status(self, status: str) -> None:
        if status != self.status:
            self.status = status
            log.info(status)
