"""Ableton Link: vj as one peer of the session that the DJ's or the band's software keeps the tempo in.

`LinkSession` is one Link peer (the `aalink` package; its wheel carries Ableton's Link library). Link keeps a
beat timeline shared by every peer on the network: at any moment each peer can ask which beat it is, and they
all agree within a millisecond or so; any peer may change the tempo and the others follow at once.

`LinkSync` is what the show does with it once a frame (main thread):
- while other peers are there and the performer has not chosen to lead, the picture's tempo, beat and bar phase
  come from the session, read at the moment the frame will be seen (the show's measured output latency ahead),
  so a flash on the beat lights when the peer's beat sounds; the tracker keeps analysing and stays on the HUD;
- when vj is alone, or `/link/lead` is on, the picture follows vj's own tempo (tracker, taps, MIDI clock in) and
  vj publishes that tempo to the session; alone, it also moves the session's beats onto its own, so that a peer
  joining later lands on the music's beat;
- `/link/tempo` shows the session's tempo; a performer setting it changes the tempo of the whole session (and,
  while vj leads, its own);
- `/link/peers` shows how many other peers there are; `/link/enabled` leaves and rejoins the session.

Link sends multicast on every network interface; the tests run it in a loopback-only network namespace.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import warnings
from dataclasses import dataclass

from vj.audio.features import Features
from vj.params import Param, Registry
from vj.sync.beatclock import BeatFollower

log = logging.getLogger(__name__)

MIN_BPM, MAX_BPM = 20.0, 999.0      # the tempo range Link itself accepts
PUBLISH_BPM = 0.05                  # vj's own tempo is published when it differs from the session's by more
ALIGN_S = 0.010                     # alone, vj moves the session's beats onto its own when they are further apart
START_TIMEOUT_S = 5.0

LINK_PARAMS = [
    Param("/link/enabled", True, kind="bool", description="join the Ableton Link session (off: leave it; the "
          "picture follows vj's own beat tracker)"),
    Param("/link/lead", False, kind="bool", description="lead: publish vj's own tempo (tracker, taps, MIDI clock) "
          "to the session even while other peers are there; the picture then follows vj's own beat"),
    Param("/link/peers", 0, 0, 999, kind="int", description="other Link peers in the session (shown; writing it "
          "does nothing)"),
    Param("/link/tempo", 120.0, MIN_BPM, MAX_BPM, unit="bpm", description="the Link session's tempo; setting it "
          "changes the tempo of every peer"),
]


class LinkError(RuntimeError):
    """Link cannot start; the message is one line saying why."""


@dataclass(frozen=True)
class LinkReading:
    """The session at one moment, as this peer sees it."""

    enabled: bool
    peers: int                      # other peers (0: alone)
    bpm: float                      # the session's tempo
    beat: float                     # beat position at the moment asked for (bars start at multiples of quantum)
    quantum: float                  # beats per bar


class LinkSession:
    """One Ableton Link peer. Reads and writes are cheap and may come from any thread.

    aalink wants an asyncio loop (it resolves `sync()` futures and calls callbacks on it); the session runs one on
    its own daemon thread and creates the peer inside it. `close()` leaves the session and stops the thread.
    """

    def __init__(self, bpm: float = 120.0, quantum: int = 4, enabled: bool = True):
        try:
            import aalink
        except ImportError:
            raise LinkError("Ableton Link: the aalink package is not installed (pip install aalink)") from None
        if not MIN_BPM <= bpm <= MAX_BPM:
            raise LinkError(f"Ableton Link: tempo {bpm} is outside {MIN_BPM:.0f}..{MAX_BPM:.0f} BPM")
        if int(quantum) < 1:
            raise LinkError(f"Ableton Link: quantum must be a whole number of beats >= 1, got {quantum}")
        self.quantum = int(quantum)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="vj-link", daemon=True)
        self._thread.start()

        async def make():             # inside the running loop, so aalink finds it without being handed one
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return aalink.Link(float(bpm))
        try:
            self._link = asyncio.run_coroutine_threadsafe(make(), self._loop).result(START_TIMEOUT_S)
        except Exception as exc:
            self._stop_loop()
            raise LinkError(f"Ableton Link: cannot start: {exc}") from None
        self._link.quantum = float(self.quantum)
        self._link.enabled = bool(enabled)
        self._closed = False

    @property
    def enabled(self) -> bool:
        return not self._closed and bool(self._link.enabled)

    @enabled.setter
    def enabled(self, on: bool) -> None:
        if not self._closed:
            self._link.enabled = bool(on)

    def reading(self, ahead_s: float = 0.0) -> LinkReading:
        """The session now, with the beat position `ahead_s` seconds from now (the tempo is taken as steady over
        that little time: at 180 BPM and 0.1 s ahead a tempo change in between moves it by well under 1 ms)."""
        link = self._link
        bpm = float(link.tempo)
        beat = float(link.beat) + ahead_s * bpm / 60.0
        return LinkReading(bool(link.enabled), int(link.num_peers), bpm, beat, float(self.quantum))

    def set_tempo(self, bpm: float) -> None:
        """Change the session's tempo (every peer follows)."""
        self._link.tempo = float(min(max(bpm, MIN_BPM), MAX_BPM))

    def request_beat(self, beat: float) -> None:
        """Map beat position `beat` to now. Alone, the timeline moves there; with peers Link keeps the session's
        phase (it only lets a peer choose where its count starts), so this never disturbs other peers."""
        self._link.request_beat(float(beat))

    def close(self) -> None:
        """Leave the session and stop the loop thread; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._link.enabled = False
        self._link = _Closed()        # aalink joins its scheduler thread when the peer is freed
        self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=2.0)
        if not self._thread.is_alive():
            self._loop.close()


class _Closed:
    """What a closed session reads: alone, disabled, nothing moves."""

    enabled = False
    tempo = 120.0
    beat = 0.0
    num_peers = 0

    def request_beat(self, beat: float) -> None:
        pass


class LinkSync:
    """The show's use of a LinkSession, once a frame on the main thread (see the module docstring)."""

    def __init__(self, session: LinkSession):
        self.session = session
        self.follower = BeatFollower()
        self.following = False        # this frame's beat came from the session
        self.reading: LinkReading | None = None
        self._shown_tempo: float | None = None   # what /link/tempo was last set to from the session
        self._published = 0.0                    # the own tempo last published

    def step(self, registry: Registry, features: Features, own_bpm: float,
             ahead_s: float) -> tuple[Features, float | None]:
        """This frame's features (beat fields from the session while following) and a tempo the performer asked
        for through /link/tempo, which vj's own tempo should take while it leads (None: no request)."""
        enabled = bool(registry.get("/link/enabled"))
        if enabled != self.session.enabled:
            self.session.enabled = enabled
            log.info("Ableton Link: %s the session", "joined" if enabled else "left")
        request = None
        wanted = float(registry.get("/link/tempo"))
        if enabled and self._shown_tempo is not None and abs(wanted - self._shown_tempo) > 1e-6:
            self.session.set_tempo(wanted)
            request = self._published = wanted
        r = self.reading = self.session.reading(ahead_s)
        self.following = enabled and r.peers > 0 and not registry.get("/link/lead")
        if self.following:
            features = self.follower.apply(features, r.beat, r.bpm, int(r.quantum))
        else:
            self.follower.reset()
            if enabled and request is None:
                self._lead(features, own_bpm, r)
        registry.set("/link/peers", r.peers, "link")
        if enabled and (self._shown_tempo is None or abs(r.bpm - self._shown_tempo) > 1e-6 or request is not None):
            registry.set("/link/tempo", r.bpm, "link")
            self._shown_tempo = float(registry.get("/link/tempo"))
        return features, request

    def _lead(self, f: Features, own_bpm: float, r: LinkReading) -> None:
        """Publish vj's own tempo; alone, also put the session's beats where vj's fall."""
        if own_bpm > 0 and abs(own_bpm - r.bpm) > PUBLISH_BPM and abs(own_bpm - self._published) > PUBLISH_BPM:
            self.session.set_tempo(own_bpm)
            self._published = own_bpm
        if r.peers == 0 and f.beat and own_bpm > 0:
            # A beat is seen now: the session's position now should be a whole beat, and on the bar where vj
            # counts one. `r.beat` is at the moment the frame is seen, as vj's beat is reported.
            q = int(r.quantum)
            in_bar = (f.beat_in_bar - 1) % q if f.beat_in_bar else 0
            target = math.floor((r.beat - in_bar) / q + 0.5) * q + in_bar
            if abs(r.beat - target) * 60.0 / own_bpm > ALIGN_S:
                # request_beat maps a beat to *now*; the frame is seen ahead of now by the same amount either way.
                self.session.request_beat(float(self.session.reading().beat) + (target - r.beat))

    def status(self) -> str:
        """One HUD line: the session's tempo and peers, who the picture follows, and the tracker's own tempo."""
        r = self.reading
        if r is None or not r.enabled:
            return "link    off"
        who = "following" if self.following else "leading" if r.peers else "alone"
        return f"link    {r.bpm:5.1f} bpm  {r.peers} peer{'s' if r.peers != 1 else ''}  {who}"
