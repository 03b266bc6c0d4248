"""BeatTracker: a causal online beat tracker fed one onset-strength value per hop (pure numpy).

How it works (after Stark, Davies & Plumbley, "Real-time beat-synchronous analysis of musical audio",
DAFx 2009, the method behind BTrack, with a wider tempo range and a tempo prior):

- Tempo, once per beat: the autocorrelation of the last few seconds of onset strength (local mean
  removed, half-wave rectified) is read through a comb of four harmonics and the half period (the
  beat's 8ths) at every candidate beat period, weighted by a log-Gaussian prior around 135 BPM. A
  forward Viterbi step over log-spaced tempo states (Gaussian transitions plus a small chance of a
  jump) keeps the tempo steady through fills and half-time bars and still lets it follow a real tempo
  change within a few beats. Optionally (`backbeat_gain`), tempi whose snares repeat every beat are
  disfavoured, which puts drum and bass at 174.
- Beats: a cumulative score C(n) = (1 - a) * odf(n) + a * max_v w(v) * C(n - v) over the last half
  to two beat periods (Ellis' dynamic programming, run forward only; rebuilt over the last seconds at
  the new period when the tempo changes). Half a beat after each beat, the score is projected one beat
  into the future with no new onsets; the best point of that projection, weighted by a Gaussian around
  one period after the last beat, is the next beat. Beats are therefore predicted about half a beat
  ahead, which `lookahead_s` uses to report them early.
- Bars: beats are counted modulo `beats_per_bar`; the downbeat is the position whose beats score
  highest on harmonic change (over one beat and over two) and low-band onsets, less mid-band (snare)
  ones, with weights fitted on the beat corpus (`DOWNBEAT_WEIGHTS`), summed over the last few bars.
  The same evidence summed in threes and fours with a slower leak says when to count in 3 (a waltz):
  `detect_triple`.
- Manual control wins over all of it: tap tempo, a set BPM, phase nudges, resync (the next beat is a
  downbeat) and lock (a free-running metronome at the current tempo and phase).

Times are in seconds at the interface; inside, the clock is the hop counter `n` (stream time n * hop_s).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vj.audio.barpointer import BarPointer, PointerState


STEER_AFTER = 3          # hops after a beat at which it is compared with the bar pointer's (32 ms at 48 kHz)
STEER_GAIN = 0.5         # ... and the share of the difference the grid moves
STEER_TEMPO_GAIN = 0.1   # ... and the share its period changes by
# Downbeat evidence of a beat: log(1 + kick), log(1 + snare) (band onset maxima near it over their recent mean),
# the harmonic change at it over one beat and over two. Fitted by scripts/fit-downbeats.py on the beat corpus's
# 61 pieces in 4/4, both renders, at the annotated beats: out of fold by piece the bar is right at 0.770 and
# 0.723 of beats (FluidR3, TimGM6mb) where the hand-set (1, -0.5, 4, 0) before it managed 0.690 and 0.490;
# the whole analysis's downbeat F went from 0.557 / 0.477 to 0.600 / 0.619.
DOWNBEAT_WEIGHTS = (1.4, -0.4, 11.0, 31.0)
# Counting in 3: the same evidence summed in threes beside fours; each meter's margin is its best position's lead
# over the next, over the mean size of its sums. The tracker counts in 3 once the 3s lead by TRIPLE_LEAD for
# TRIPLE_BEATS beats running (from beat 24 on), and in 4 again once the 4s lead as long. At the corpus's annotated
# beats the lead stayed under 0.32 on every beat of the 122 renders in 4/4 (p99 0.16), and held above 0.3 for
# 8 beats in 3 of the 6 renders in 3/4 (the jazz waltz in both soundfonts, the country waltz in one).
TRIPLE_LEAD = 0.3
TRIPLE_BEATS = 8
GAP_HEARD_S = 1.5        # the longest silence between sounds that still counts towards `warmup_s` (a beat at 40 BPM)


@dataclass(frozen=True)
class BeatSettings:
    """Tuning of the beat tracker; times in seconds, tempi in BPM."""

    min_bpm: float = 55.0
    max_bpm: float = 215.0
    # The comb averages a tempo's harmonics, and a slower candidate's (2, 4, 6, 8 beats) land where the pattern
    # repeats whole while a faster one's odd ones do not, so the comb leans to the slower octave; a prior above
    # the music's centre (the beat corpus: 121 BPM geometric mean) evens that out. 120 read 8 of its 64 pieces
    # at half tempo (DnB, country two-beat, mambo); 135 brought mean F from 0.822 / 0.855 (FluidR3 / TimGM6mb
    # renders) to 0.867 / 0.879, 128 and 142 fell between. It costs a doubled 86 BPM hip-hop piece.
    prior_bpm: float = 135.0            # centre of the log-Gaussian tempo prior ...
    prior_octaves: float = 0.9          # ... and its standard deviation in octaves
    tempo_step: float = 0.01            # relative spacing of the tempo states (1 %)
    tempo_drift_octaves: float = 0.02   # a tempo moves this much per beat without needing a jump
    # A tempo change is followed within 8 beats (120 -> 140 and 140 -> 110 BPM: 5-7 beats) by these two: the
    # autocorrelation forgets the old tempo over ~2 beats' worth of taper, and a jump is cheap enough that a
    # few beats of clear evidence win. Steady tempi are held by the comb (4 harmonics) and the prior.
    tempo_jump: float = 0.1             # a jump to a far tempo is this likely per beat, relative to staying
    history_s: float = 8.0              # onset strength kept for the tempo autocorrelation ...
    taper_s: float = 1.25               # ... where products of onsets this old weigh 1/e
    phase_reset_ratio: float = 0.04     # a tempo change larger than this (log ratio) re-picks the phase
    odf_mean_s: float = 0.16            # local mean removed before the autocorrelation
    backbeat_gain: float = 0.0          # > 0 (try 2): disfavour tempi whose snares repeat every beat (DnB at 174,
                                        # not 87); off by default: it can halve the tempo in half-time sections
    # The comb also reads the autocorrelation at half the period (the beat's 8ths), weighted as this share of
    # a harmonic: 0.4 read the beat corpus's 80 BPM pieces at 80 instead of 106 (4:3) or 160, mean F / AMLt
    # 0.855 / 0.906 -> 0.856 / 0.917 (FluidR3 render) and 0.891 / 0.919 -> 0.904 / 0.937 (TimGM6mb); 0.25-0.55
    # all scored within 0.005 of that, 0 and 0.75+ lower. Counting the triplet 8th as well did not help.
    subdivision_weight: float = 0.4
    # When the tempo changes, the phase is picked afresh from a cumulative score rebuilt over this much of the
    # past at the new period (0: from the old score, built at the old period). The beat corpus's tempo step
    # (108 -> 132 BPM) went from F 0.53 to 0.95; the synthetic 120 -> 140 BPM rock took 13 beats to follow
    # (off-beat after the change) without it and 5 with it. Over the corpus, F / AMLt 0.856 / 0.917 -> 0.873 /
    # 0.918 (FluidR3), 0.904 / 0.937 -> 0.895 / 0.929 (TimGM6mb): single pieces flip between beat and off-beat.
    rescore_s: float = 4.0
    # Half a beat after each beat, the next is picked from the projected score weighted by a Gaussian around one
    # period on, of this many periods' width; once the tracker has held its phase for `phase_hold_s` since it
    # last picked it afresh (start, tempo change), the width narrows to `phase_hold_sigma`, so that a few bars
    # whose off-beats are louder (a fill, a breakdown on the "and") no longer pull the grid onto the off-beat,
    # while a phase taken wrongly at the start can still be left. 15 s and 0.35 took mean F / AMLt from 0.892 /
    # 0.930 to 0.915 / 0.946 on the beat corpus (FluidR3; 3 pieces better, none worse), 0.723 / 0.821 to 0.728 /
    # 0.829 on the module corpus (3 better, 3 worse), 0.903 on TimGM6mb either way. 0.35 from the start held
    # the wrong phase of pieces that begin on it (beat corpus F 0.887, TimGM6mb 0.873); 30 s gained nothing.
    predict_sigma: float = 0.5
    phase_hold_s: float = 15.0          # 0: never narrow
    phase_hold_sigma: float = 0.35
    alpha: float = 0.9                  # weight of the past in the cumulative beat score
    tightness: float = 5.0              # how strongly the score prefers exactly one period between beats
    beats_per_bar: int = 4
    detect_triple: bool = True          # with 4 beats a bar: count in 3 where the bars say so (waltzes)
    lookahead_s: float = 0.0            # report beats and phase this much early (output latency)
    warmup_s: float = 2.0               # sound heard before the tracker starts ...
    start_confidence: float = 0.25      # ... and it reports beats once its confidence first reaches this
    silence_hold_s: float = 30.0        # keep beating on the last tempo through this much silence
    confidence_s: float = 3.0           # smoothing of the confidence value
    downbeat_memory_s: float = 20.0     # the evidence that decides the meter (3 or 4) forgets this slowly ...
    # ... and the evidence that places the downbeat this fast. At 20 s for both, the live analysis had the bar
    # right at 0.67 of the beat corpus's beats it had right (downbeat F 0.603 / 0.623 on the FluidR3 / TimGM6mb
    # renders); at 6 s, 0.73 (0.648 / 0.668), with the bar moving 3.3 times a minute instead of 1.9; 8 s scored
    # lower on both, 4 s on one, moving 5-6 times a minute. The meter needs the long memory: at 6 s the jazz
    # waltz lost its 3.
    bar_memory_s: float = 6.0
    # Where the bar starts also counts this times the largest downbeat probability `update` got within a quarter
    # beat of each beat (the analyzer passes its beat network's); the meter does not. The network alone placed
    # the bar worse than the onset and chord evidence (beat corpus, out of fold: downbeat F 0.48 against 0.686 /
    # 0.675 on the FluidR3 / TimGM6mb renders); beside it, 2 gave 0.702 / 0.700, better in 6 of the 8 folds and
    # renders; 3 gained too, 1 and 4 stayed within 0.015 of none, 8 lost.
    downbeat_cue_weight: float = 2.0
    tap_timeout_s: float = 2.0          # a longer gap between taps starts a new tap sequence
    max_taps: int = 8                   # tempo from at most this many recent taps


@dataclass(frozen=True)
class BeatState:
    """What the tracker knows after one hop. Phases are at stream time + lookahead."""

    beat: bool = False                  # a beat falls in this hop (reported `lookahead_s` early)
    beat_phase: float = 0.0             # 0 at a beat, rising to 1 at the next
    bar_phase: float = 0.0              # 0 at a downbeat, rising to 1 at the next
    beat_in_bar: int = 0                # 1 = downbeat ... beats_per_bar; 0 while no beat is known
    downbeat: bool = False              # `beat` and it is beat 1 of the bar
    bpm: float = 0.0                    # 0 while unknown
    confidence: float = 0.0             # 0..1: how well recent beats sit on onsets
    next_beat_s: float = 0.0            # predicted stream time of the next beat (0 while unknown)
    locked: bool = False                # a manual lock holds tempo and phase
    manual_bpm: bool = False            # the tempo comes from taps or set_bpm, not from the audio


class BeatTracker:
    """Causal beat tracker: `update()` once per analysis hop, manual controls at any time between hops."""

    def __init__(self, hop_s: float, settings: BeatSettings = BeatSettings(), odf_delay_s: float = 0.0,
                 pointer: BarPointer | None = None):
        """`odf_delay_s`: how long after a sound its onset strength peaks; beats are reported that much earlier
        (on top of `lookahead_s`) so that they land on the sound, not on its detection.

        `pointer`: a bar-pointer model fed beat and downbeat probabilities (`update(activation=...)`, from
        vj.audio.beatnet); while the tempo is automatic and not locked, it decides tempo, beats and bars,
        and the onset-strength machinery below only scores confidence."""
        if hop_s <= 0:
            raise ValueError(f"hop_s must be positive, got {hop_s}")
        self.hop_s = hop_s
        self.settings = st = settings
        self.lookahead_s = st.lookahead_s
        self.odf_delay_s = odf_delay_s
        self._len = max(8, int(round(st.history_s / hop_s)))
        # Tempo states: periods in hops on a log grid, fastest first.
        n_states = int(math.floor(math.log(st.max_bpm / st.min_bpm) / math.log1p(st.tempo_step))) + 1
        self._bpms = st.min_bpm * (1.0 + st.tempo_step) ** np.arange(n_states)
        self._periods = 60.0 / (self._bpms * hop_s)                                    # (n_states,) hops
        log_t = np.log2(self._bpms)
        self._prior = np.exp(-0.5 * ((log_t - math.log2(st.prior_bpm)) / st.prior_octaves) ** 2)
        diff = log_t[:, None] - log_t[None, :]
        trans = np.exp(-0.5 * (diff / st.tempo_drift_octaves) ** 2) + st.tempo_jump
        self._trans = trans / trans.sum(axis=1, keepdims=True)                        # (from, to)
        self._max_lag = min(self._len - 1, int(math.ceil(4 * self._periods.max())) + 2)
        self._n_fft = 1 << int(math.ceil(math.log2(2 * self._len)))
        self._mean_len = max(1, int(round(st.odf_mean_s / hop_s)))
        ages_s = np.arange(self._len)[::-1] * hop_s                                  # oldest first
        self._taper = np.exp(-ages_s / (2.0 * st.taper_s))
        self._full_norm: np.ndarray | None = None
        self._warmup = int(round(st.warmup_s / hop_s))
        self._hold = int(round(st.silence_hold_s / hop_s))
        # Gaps this short between sounds count as heard: a click track in digital silence is 3-4 loud hops a beat.
        self._gap = int(round(GAP_HEARD_S / hop_s))
        self._conf_a = 1.0 - math.exp(-hop_s / st.confidence_s)
        self.pointer = pointer
        self.reset()

    # ---- state ---------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget everything, including manual settings."""
        self.n = 0                                    # hops seen; stream time is n * hop_s
        if self.pointer is not None:
            self.pointer.reset()
        self._pointed: PointerState | None = None     # the pointer's newest state
        self._relock = True                           # the next steered hop puts the grid on the pointer
        self._steer_check = math.inf                  # hop at which the last beat is compared with the pointer
        self._misses = 0                              # consecutive beats the pointer put elsewhere
        self._grid_period = 0.0                       # the steered grid's period, hops (0: take the pointer's)
        self._meter = self.settings.beats_per_bar     # beats in the bar being counted
        # (5, len), newest last: onset strength, low- and mid-band onset strength, cumulative beat score, downbeat
        # cue. One array shifts in one numpy call per hop; the rows are views into it.
        self._hist = np.zeros((5, self._len))
        self._odf, self._low, self._mid, self._score, self._cue = self._hist
        self._delta = self._prior / self._prior.sum() # tempo state probabilities (Viterbi forward)
        self._state = int(np.argmax(self._delta))
        self.period = float(self._periods[self._state])   # hops per beat
        self._w_period = -1.0                         # period the score weights were built for
        self._heard = 0                               # hops of sound since the tracker last went idle
        self._filled = 0                              # hops of history since then
        self._reacquire = False                       # the next prediction ignores the old phase
        self._phase_since = 0                         # hop at which the phase was last picked afresh
        self._quiet = 0                               # consecutive silent hops
        self._active = False                          # the tracker is running
        self._reporting = False                       # ... and its beats are being reported
        self._last_beat = 0.0                         # hop of the last internal beat
        self._next_beat = math.inf                    # hop of the next internal beat
        self._predict_at = math.inf                   # hop at which the next beat gets predicted
        self._beat_index = 0                          # internal beats so far
        self._reported = 0                            # beats reported (the lookahead runs ahead of internal)
        self._confidence = 0.0
        self._chroma_sum = np.zeros(12)               # chroma summed over the current beat
        self._chroma_spans: list[np.ndarray] = []     # chroma of the last four complete beats
        # Downbeat evidence summed per bar position, in fours and in threes: slowly forgotten for the meter,
        # quickly for where the bar starts.
        self._bar_evidence = np.zeros(self.settings.beats_per_bar)
        self._bar_evidence3 = np.zeros(3)
        self._bar_recent = np.zeros(self.settings.beats_per_bar)
        self._bar_recent3 = np.zeros(3)
        self._meter_run = 0                           # beats the other meter has led for
        self._bar_offset = 0                          # beat_index % beats_per_bar of downbeats
        self._manual_bar = False
        self._manual_period: float | None = None
        self._locked = False
        self._taps: list[float] = []
        self.latest = BeatState()

    # ---- manual control ------------------------------------------------------------------------

    def tap(self, t_s: float) -> None:
        """A tap at stream time `t_s`. From the second tap on, the tempo is the taps' (a fit through the
        recent taps) and a beat falls on the last tap; the tracker then keeps that tempo (`release()`
        returns to automatic) and lets the phase follow the music, unless locked."""
        if self._taps and (t_s - self._taps[-1] > self.settings.tap_timeout_s or t_s <= self._taps[-1]):
            self._taps = []
        self._taps = (self._taps + [float(t_s)])[-self.settings.max_taps:]
        if len(self._taps) < 2:
            return
        taps = np.array(self._taps)
        k = np.arange(len(taps))
        period_s = float(np.polyfit(k, taps, 1)[0]) if len(taps) > 2 else float(taps[1] - taps[0])
        if period_s <= 0:
            return
        self._manual_period = p = period_s / self.hop_s
        # Inside, beats are where their evidence peaks, odf_delay_s after they sound (and are reported that
        # much earlier): a tap marks the sound.
        tap = (self._taps[-1] + self.odf_delay_s) / self.hop_s
        self._set_grid(tap + (math.floor((self.n - tap) / p) + 1) * p, p)

    def set_bpm(self, bpm: float | None) -> None:
        """Hold the tempo at `bpm` (the phase keeps following the music unless locked); None: automatic."""
        if bpm is None:
            self._manual_period = None
            return
        if not bpm > 0:
            raise ValueError(f"bpm must be positive, got {bpm}")
        self._manual_period = p = 60.0 / (bpm * self.hop_s)
        self._set_grid(max(self._last_beat + p, self.n + 1.0) if self._active else self.n + 1.0, p)

    def nudge(self, phase: float) -> None:
        """Move the beat grid by `phase` beats: positive makes the beats come earlier (the phase jumps ahead).
        The tracker continues from the moved grid; `lock()` keeps it exactly."""
        if not self._active:
            return
        period = self._manual_period or self.period
        nxt = self._next_beat if math.isfinite(self._next_beat) else self._last_beat + period
        self._set_grid(nxt - phase * period, period)

    def resync(self) -> None:
        """The next beat is a downbeat; bar counting then stays manual until `release()`."""
        self._manual_bar = True
        self._bar_offset = (self._reported + 1) % self._meter

    def lock(self, on: bool = True) -> None:
        """Hold the current tempo and phase as a metronome (for breakdowns); `lock(False)` tracks again."""
        if on and not self._active and self._manual_period is None:
            return                                    # nothing to hold yet
        self._locked = bool(on)
        if not on and self._active:
            period = self._manual_period or self.period
            self._set_grid(self._next_beat if math.isfinite(self._next_beat) else self._last_beat + period, period)

    def release(self) -> None:
        """Back to fully automatic: no manual tempo, bar counting or lock."""
        self._manual_period = None
        self._manual_bar = False
        self._locked = False
        self._taps = []

    def _set_grid(self, next_hop: float, period: float) -> None:
        """Schedule the next beat at hop `next_hop` (on the next hop if that has passed) and every `period`
        hops from it. The cumulative score gets peaks on the grid's past beats, so that the dynamic
        programme continues from the grid rather than from what it had before."""
        self.period = period
        n = float(self.n)
        self._next_beat = next_hop
        self._last_beat = next_hop - period
        self._predict_at = math.inf                   # the grid itself is the prediction
        ages = n - (self._last_beat - period * np.arange(0, int(self._len / period) + 1))
        ages = ages[(ages >= 0) & (ages < self._len)]
        top = max(float(self._score.max()), 1e-3)
        self._score *= 0.25
        self._score[self._len - 1 - np.round(ages).astype(int)] = top
        self._w_period = -1.0
        if not self._active:
            self._active = True
            self._heard = max(self._heard, self._warmup)
        self._reporting = True

    # ---- per hop -------------------------------------------------------------------------------

    def update(self, odf: float, *, low: float = 0.0, mid: float = 0.0, chroma: np.ndarray | None = None,
               silent: bool = False, activation: tuple[float, float] | None = None,
               downbeat: float = 0.0) -> BeatState:
        """One hop: onset strength `odf` (>= 0, any scale), low- and mid-band onset strengths and the
        chroma `(12,)` of the hop for the downbeat guess, whether the hop was silent, (with a pointer) the
        hop's beat and downbeat probabilities, and (without one) a downbeat probability to weigh beside the
        onsets and chords (`downbeat_cue_weight`)."""
        st = self.settings
        self.n += 1
        n = self.n
        if self.pointer is not None and activation is not None:
            self._pointed = self.pointer.step(*activation)
        odf = max(float(odf), 0.0) if math.isfinite(odf) else 0.0
        period = self._manual_period or self.period
        score = (1.0 - st.alpha) * odf + st.alpha * self._past_best(self._score, period, self._len)
        hist = self._hist
        hist[:, :-1] = hist[:, 1:]
        hist[:, -1] = (odf, max(float(low), 0.0), max(float(mid), 0.0), score, max(float(downbeat), 0.0))
        if chroma is not None:
            self._chroma_sum += chroma

        self._filled += 1
        if silent:
            self._quiet += 1
            if self._heard and self._quiet <= self._gap:
                self._heard += 1
        else:
            self._quiet = 0
            self._heard += 1
        if not self._active and not self._locked:
            if self._heard >= self._warmup and odf > 0:
                self._active = True
                self._phase_since = n
                self._tempo()
                self._last_beat = float(n - self.period)
                self._next_beat = math.inf
                self._predict_at = float(n)
        elif self._quiet > self._hold and not self._locked:
            self._go_idle()

        if self._active:
            if self._steered():
                self._steer(n)
            if n >= self._predict_at:
                self._predict()
            if n >= self._next_beat:
                self._internal_beat(n)
        return self._report(n)

    def _steered(self) -> bool:
        """The bar pointer decides beats now: there is one, it has an estimate, and nothing manual holds.
        While it does not, the grid is the tracker's own, and the pointer takes it over afresh when it can."""
        steered = self._pointed is not None and self._manual_period is None and not self._locked
        if not steered:
            self._relock = True
        return steered

    def _steer(self, n: int) -> None:
        """Keep the beat grid (last beat, tempo) on the pointer's beats, with fractional times.

        The pointer's best state moves in whole hops and its period is a whole number of hops, so its beats
        jitter by a hop or two around the true ones. The grid therefore runs on its own, at the tempo averaged
        over the states near the best (fractional), and each beat is compared once, `STEER_AFTER` hops after
        it, with the beat the pointer puts nearest: the grid moves `STEER_GAIN` of the difference. Where the
        pointer is more than a quarter beat away twice running (a new phase, a lost beat), the grid jumps to
        it; a beat it jumps over is given now, late, rather than not at all. The grid's period follows the
        differences too (`STEER_TEMPO_GAIN`: a second-order loop, which leaves no lag at a steady tempo the
        whole-hop periods cannot express) and is reset to the pointer's where they part by more than 6 %."""
        ps = self._pointed
        self._predict_at = math.inf
        if self._relock:
            self._grid_period = 0.0
        if not self._grid_period or abs(math.log(self._grid_period / ps.tempo_period)) > 0.06:
            self._grid_period = ps.tempo_period
        self.period = period = self._grid_period
        behind = ps.phase < 0.5 * ps.period
        seen = n - ps.phase if behind else n + ps.period - ps.phase      # the pointer's beat nearest now
        if self._relock:
            self._relock = False
            self._steer_check = math.inf
            self._jump_to(n, seen, period)
            return
        if n >= self._steer_check:
            self._steer_check = math.inf
            error = seen - self._last_beat
            if abs(error) <= 0.25 * period:
                self._misses = 0
                self._last_beat += STEER_GAIN * error
                self._grid_period = period = period + STEER_TEMPO_GAIN * error
                self.period = period
            else:
                self._misses += 1
                if self._misses >= 2:
                    self._misses = 0
                    self._jump_to(n, seen, period)
                    return
        self._next_beat = self._last_beat + period        # due already (the tempo rose): given now

    def _jump_to(self, n: int, seen: float, period: float) -> None:
        """Put the grid on the pointer's beat `seen` (a hop, past or future)."""
        if seen > n:
            self._last_beat, self._next_beat = seen - period, seen
        elif seen - self._last_beat >= 0.5 * period:
            self._next_beat = float(n)                 # a beat not given yet: now
        else:
            self._last_beat = seen
            self._next_beat = max(seen + period, n + 1.0)

    def _go_idle(self) -> None:
        if self.pointer is not None:
            self.pointer.reset()
            self._pointed = None
            self._relock = True
        self._active = self._reporting = False
        self._heard = self._filled = 0
        self._next_beat = self._predict_at = math.inf
        self._confidence = 0.0
        self._delta = self._prior / self._prior.sum()

    def _weights(self, period: float) -> tuple[int, int, np.ndarray]:
        """Lags (hops back) from 2 periods to half a period and their log-Gaussian weights."""
        if period != self._w_period:
            lo = max(1, int(round(period / 2)))
            hi = min(self._len - 1, int(round(2 * period)))
            v = np.arange(hi, lo - 1, -1, dtype=float)                               # oldest first
            self._w = np.exp(-0.5 * (self.settings.tightness * np.log(v / period)) ** 2)
            self._w_lo, self._w_hi = lo, hi
            self._w_period = period
        return self._w_lo, self._w_hi, self._w

    def _past_best(self, score: np.ndarray, period: float, end: int) -> float:
        """max over v in [period/2, 2 period] of w(v) * score[end - v] (`end` is the index of the hop scored)."""
        lo, hi, w = self._weights(period)
        seg = score[max(0, end - hi):end - lo + 1]
        return float((seg * w[len(w) - len(seg):]).max()) if len(seg) else 0.0

    def _predict(self) -> None:
        """Half a beat after a beat: project the score one period ahead without new onsets and pick the
        most likely next beat near one period after the last."""
        period = self._manual_period or self.period
        if self._locked:
            self._next_beat = self._last_beat + period
            self._predict_at = math.inf
            return
        horizon = max(2, int(round(period)))
        now = self.n
        if self._reacquire and self.settings.rescore_s > 0:
            self._rescore(period)
        future = np.concatenate((self._score, np.zeros(horizon)))
        self._fill_score(future, self._len, self._len + horizon, period)            # no new onsets
        steps = np.arange(1, horizon + 1, dtype=float)
        centre = self._last_beat + period - now                                      # hops from now
        st = self.settings
        held = st.phase_hold_s > 0 and (now - self._phase_since) * self.hop_s >= st.phase_hold_s
        sigma = period * (st.phase_hold_sigma if held else st.predict_sigma)
        weight = np.exp(-0.5 * ((steps - centre) / sigma) ** 2)
        if self._reacquire:
            self._phase_since = now
            weight = np.ones(horizon)
            self._reacquire = False
        best = int(np.argmax(future[self._len:] * weight))
        self._next_beat = float(now + best + 1)
        self._predict_at = math.inf

    def _rescore(self, period: float) -> None:
        """Rebuild the cumulative score of the last `rescore_s` at `period` from the onset strength."""
        _, hi, _ = self._weights(period)
        start = max(hi + 1, self._len - int(round(self.settings.rescore_s / self.hop_s)))
        self._fill_score(self._score, start, self._len, period, self._odf)

    def _fill_score(self, score: np.ndarray, start: int, stop: int, period: float,
                    odf: np.ndarray | None = None) -> None:
        """score[start:stop] = (1 - a) * odf + a * max_v w(v) * score[n - v], in place (no odf: onsets of 0);
        `start` must be at least the longest lag back. Each hop looks back at least `lo` hops, so `lo` of them
        at a time depend only on hops already filled."""
        a = self.settings.alpha
        lo, hi, w = self._weights(period)
        lags = np.arange(hi, lo - 1, -1)                                             # w's order
        for i in range(start, stop, lo):
            targets = np.arange(i, min(stop, i + lo))
            best = (score[targets[:, None] - lags[None, :]] * w).max(axis=1)       # (chunk,)
            score[targets] = a * best if odf is None else (1.0 - a) * odf[targets] + a * best

    def _internal_beat(self, n: int) -> None:
        self._score_confidence()
        self._beat_index += 1
        # On schedule: a grid set by hand (taps, nudges) or steered may fall between hops or just behind us.
        self._last_beat = min(float(n), self._next_beat)
        if self._steered():
            ps = self._pointed
            self._meter = ps.meter
            # The beat taken now is the pointer's last beat when its phase is small, else its next one.
            pos = ps.beat_in_bar - 1 if ps.phase < 0.5 * ps.period else ps.beat_in_bar % ps.meter
            if not self._manual_bar:
                self._bar_offset = (self._beat_index - pos) % self._meter
            self._next_beat = max(self._last_beat + self.period, n + 1.0)
            self._steer_check = self._last_beat + STEER_AFTER
            return
        if self.pointer is None:
            self._downbeat_evidence()
        # (with a pointer, bars held by hand keep counting in the pointer's meter from where they were)
        if self._manual_period is not None:
            self.period = self._manual_period
        elif not self._locked:
            self._tempo()
        period = self._manual_period or self.period
        self._next_beat = max(self._last_beat + period, n + 1.0)
        self._predict_at = n + max(1, int(round(period / 2)))
        if self._locked:
            self._predict_at = math.inf

    # ---- tempo ---------------------------------------------------------------------------------

    def _tempo(self) -> None:
        """One forward Viterbi step over the tempo states from the comb-filtered autocorrelation."""
        st = self.settings
        size = min(self._len, self._filled)
        if size < 16:
            return
        x = self._odf[-size:]
        if float(x[-size // 2:].sum()) <= 1e-9:
            return                                    # nothing heard lately: hold the tempo
        acf = self._acf(x, size)
        if acf is None:
            return
        valid = len(acf)
        lags = np.arange(valid, dtype=float)
        score = np.zeros(len(self._periods))
        weight = np.zeros(len(self._periods))
        win = acf
        for a in (1, 2, 3, 4):
            # Wider tolerance for far harmonics: the maximum within a - 1 lags of each lag.
            if a > 1:
                prev, win = win, win.copy()
                np.maximum(win[1:], prev[:-1], out=win[1:])
                np.maximum(win[:-1], prev[1:], out=win[:-1])
            taps = a * self._periods
            ok = taps <= lags[-1]
            score[ok] += np.interp(taps[ok], lags, win)
            weight[ok] += 1.0
        known = weight >= 2                           # at least two harmonics fit in the history
        # The beat's own subdivision: music divides the beat in two, so half the true period is a strong lag,
        # while half of a 4:3 or 3:2 misreading falls between the notes (a dotted 16th, a triplet 8th).
        score += st.subdivision_weight * np.interp(0.5 * self._periods, lags, acf)
        weight += st.subdivision_weight
        score = np.where(known, score / np.maximum(weight, 1.0), 0.0)
        if not known.any():
            return
        obs = np.maximum(score - score[known].mean(), 0.0) * self._prior + 1e-6
        if st.backbeat_gain > 0:
            # Octave choice: snares and claps land on every second beat in most styles (the backbeat), so
            # snares that repeat at a tempo's own period say the beat is twice as fast (drum and bass at 174
            # reads as 87 otherwise). Kicks leak into the mid band, so the snare line is mid minus low.
            snare = self._acf(np.maximum(self._mid[-size:] - self._low[-size:], 0.0), size)
            if snare is not None:
                s_lags = np.arange(len(snare), dtype=float)
                ok = self._periods <= s_lags[-1]
                every_beat = np.zeros(len(self._periods))
                every_beat[ok] = np.interp(self._periods[ok], s_lags, snare)
                obs = obs * np.exp(-st.backbeat_gain * every_beat)
        delta = (self._delta[:, None] * self._trans).max(axis=0) * obs
        self._delta = delta / delta.sum()
        j = int(np.argmax(self._delta))
        # Sub-state precision: a parabola through the comb score around the chosen state.
        off = 0.0
        if 0 < j < len(score) - 1:
            y0, y1, y2 = score[j - 1], score[j], score[j + 1]
            den = y0 - 2 * y1 + y2
            if den < 0:
                off = min(max(0.5 * (y0 - y2) / den, -0.5), 0.5)
        bpm = float(self._bpms[j]) * (1.0 + st.tempo_step) ** off
        new_period = 60.0 / (bpm * self.hop_s)
        if abs(math.log(new_period / self.period)) > st.phase_reset_ratio:
            self._reacquire = True                    # a new tempo: let the onsets pick the phase afresh
        self._state = j
        self.period = new_period

    def _acf(self, x: np.ndarray, size: int) -> np.ndarray | None:
        """Normalised autocorrelation (1 at lag 0) of the newest `size` hops `x` after removing the local mean
        and half-wave rectifying, over the lags with enough overlap; None when there is too little."""
        k = self._mean_len
        c = np.concatenate(([0.0], np.cumsum(x)))
        idx = np.arange(size)
        lo = np.maximum(idx - k // 2, 0)
        hi = np.minimum(idx + k - k // 2, size)
        d = np.maximum(x - (c[hi] - c[lo]) / (hi - lo), 0.0)                      # (size,) rectified
        # Recent onsets count more: products at age t weigh exp(-t / taper_s); the same autocorrelation of
        # the weights alone normalises each lag (a balanced autocorrelation of a tapered window).
        w = self._taper[-size:]
        spec = np.fft.rfft(d * w, self._n_fft)
        acf = np.fft.irfft(spec.real * spec.real + spec.imag * spec.imag, self._n_fft)[:self._max_lag + 1]
        norm = self._taper_acf(size)
        valid = int(np.count_nonzero(norm > 0.25 * norm[0]))                        # lags with enough overlap
        if valid < 8 or acf[0] <= 0:
            return None
        acf = np.maximum(acf[:valid] / norm[:valid], 0.0)
        return acf / acf[0]

    def _taper_acf(self, size: int) -> np.ndarray:
        """Autocorrelation of the taper over the newest `size` hops (cached for the full history)."""
        if size == self._len and self._full_norm is not None:
            return self._full_norm
        spec = np.fft.rfft(self._taper[-size:], self._n_fft)
        norm = np.fft.irfft(spec.real * spec.real + spec.imag * spec.imag, self._n_fft)[:self._max_lag + 1]
        if size == self._len:
            self._full_norm = norm
        return norm

    # ---- confidence and bars -------------------------------------------------------------------

    def _score_confidence(self) -> None:
        """At a beat: fold the last four beats of onset strength by beat phase into eighths. Confident means
        the on-beat eighth stands out from the average and no other eighth is stronger (which is what
        tracking the off-beat or the wrong tempo looks like)."""
        period = self._manual_period or self.period
        span = min(self._filled, self._len, int(round(4 * period)))
        if span < period or period < 4:
            return
        x = self._odf[-span:]
        ages = np.arange(span - 1, -1, -1, dtype=float)                             # 0: this hop, the beat
        bins = np.round((ages / period) % 1.0 * 8.0).astype(int) % 8
        counts = np.bincount(bins, minlength=8)
        profile = np.bincount(bins, weights=x, minlength=8) / np.maximum(counts, 1)  # (8,)
        top = float(profile.max())
        value = 0.0
        if top > 1e-12:
            value = max(0.0, min(1.0, (profile[0] - profile.mean()) / (top * (1.0 - 1.0 / 8.0))))
        a = 1.0 - math.exp(-period * self.hop_s / self.settings.confidence_s)
        self._confidence += (value - self._confidence) * a

    def _downbeat_evidence(self) -> None:
        """Score the beat before last as a downbeat (kick near it, harmony changed at it) and the one before
        that for the harmony of the two beats from it against the two before (chords change on the bar or the
        half bar); each bar position keeps two leaking sums, a slow one for the meter and a fast one for the
        downbeat."""
        st = self.settings
        span = self._chroma_sum
        self._chroma_spans = (self._chroma_spans + [span.copy()])[-4:]
        self._chroma_sum = np.zeros(12)
        period = self._manual_period or self.period
        p = int(round(period))
        if p < 4 or 2 * p > self._len:
            return
        # The previous beat sits p hops back; take the band maxima within a quarter beat of it.
        q = max(1, p // 4)
        lo, hi = self._len - 1 - p - q, self._len - p + q
        low_win, mid_win = self._low[lo:hi], self._mid[lo:hi]
        ref_low = float(self._low[-2 * p:].mean()) + 1e-9
        ref_mid = float(self._mid[-2 * p:].mean()) + 1e-9
        kick = float(low_win.max()) / ref_low
        snare = float(mid_win.max()) / ref_mid
        spans = self._chroma_spans
        change = chroma_change(spans[-2], spans[-1]) if len(spans) >= 2 else 0.0
        change2 = chroma_change(spans[-4] + spans[-3], spans[-2] + spans[-1]) if len(spans) == 4 else 0.0
        w_kick, w_snare, w_change, w_change2 = DOWNBEAT_WEIGHTS
        evidence = w_kick * math.log1p(kick) + w_snare * math.log1p(snare) + w_change * change
        # The cue places the bar but does not vote on the meter: TRIPLE_LEAD was measured without it.
        cue = st.downbeat_cue_weight * float(self._cue[lo:hi].max())
        # Each position decays once per bar, when it gets its new evidence, so all of them stay comparable.
        for ev, mem, new in ((self._bar_evidence, st.downbeat_memory_s, evidence),
                             (self._bar_evidence3, st.downbeat_memory_s, evidence),
                             (self._bar_recent, st.bar_memory_s, evidence + cue),
                             (self._bar_recent3, st.bar_memory_s, evidence + cue)):
            m = len(ev)
            pos = (self._beat_index - 1) % m                                        # the previous beat
            ev[pos] = math.exp(-m * period * self.hop_s / mem) * ev[pos] + new
            ev[(pos - 1) % m] += w_change2 * change2                                # the beat before it
        switch = False
        if st.detect_triple and st.beats_per_bar == 4 and not self._manual_bar and self._beat_index >= 24:
            lead = _margin(self._bar_evidence3) - _margin(self._bar_evidence)
            other_leads = lead > TRIPLE_LEAD if self._meter == 4 else lead < 0.0
            self._meter_run = self._meter_run + 1 if other_leads else 0
            switch = self._meter_run >= TRIPLE_BEATS
            if switch:
                self._meter, self._meter_run = (3 if self._meter == 4 else 4), 0
        ev = self._bar_recent3 if self._meter == 3 else self._bar_recent
        if switch:
            self._bar_offset = int(np.argmax(ev))           # counted anew: the best position of the new meter
        elif not self._manual_bar:
            self._bar_offset = bar_choice(ev, self._bar_offset)

    # ---- output --------------------------------------------------------------------------------

    def _report(self, n: int) -> BeatState:
        st = self.settings
        if self._active and not self._reporting and self._confidence >= st.start_confidence:
            self._reporting = True
            self._reported = self._beat_index
        if not self._reporting:
            self.latest = BeatState(locked=self._locked, manual_bpm=self._manual_period is not None)
            return self.latest
        period = self._manual_period or self.period
        ahead = min(max(self.lookahead_s + self.odf_delay_s, 0.0) / self.hop_s, 0.45 * period)
        t = n + ahead
        nxt = self._next_beat if math.isfinite(self._next_beat) else self._last_beat + period
        # The beats the reported time has reached: internal beats so far, plus the next one when the
        # lookahead has already passed it. Each is reported once.
        reached = self._beat_index + (1 if t >= nxt else 0)
        beat = reached > self._reported
        self._reported = max(self._reported, reached)
        if t >= nxt:
            phase = (t - nxt) / period
            index = self._beat_index + 1
        else:
            phase = (t - self._last_beat) / max(nxt - self._last_beat, 1.0)
            index = self._beat_index
        phase = min(max(phase, 0.0), 1.0 - 1e-9)
        pos = (index - self._bar_offset) % self._meter
        bar_phase = (pos + phase) / self._meter
        return self._set_latest(BeatState(
            beat=beat, beat_phase=phase, bar_phase=bar_phase, beat_in_bar=pos + 1, downbeat=beat and pos == 0,
            bpm=60.0 / (period * self.hop_s), confidence=self._confidence,
            next_beat_s=(nxt if t < nxt else nxt + period) * self.hop_s, locked=self._locked, manual_bpm=self._manual_period is not None,
        ))

    def _set_latest(self, state: BeatState) -> BeatState:
        self.latest = state
        return state


def bar_choice(evidence: np.ndarray, current: int) -> int:
    """The bar position to count from, given each position's summed downbeat evidence: the best one once it
    leads the current one clearly (by 15 % of it and 0.5), else the current one."""
    best = int(np.argmax(evidence))
    if best != current and evidence[best] - evidence[current] > 0.15 * abs(evidence[current]) + 0.5:
        return best
    return current


def _margin(evidence: np.ndarray) -> float:
    """How clearly one bar position leads: the best sum's lead over the next, over the sums' mean size."""
    top = np.sort(evidence)
    return float(top[-1] - top[-2]) / (float(np.abs(evidence).mean()) + 1e-9)


def chroma_change(a: np.ndarray, b: np.ndarray) -> float:
    """1 - cosine similarity of two chroma sums (0 where either is silent)."""
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    return 1.0 - float(a @ b) / (na * nb) if na > 1e-9 and nb > 1e-9 else 0.0
