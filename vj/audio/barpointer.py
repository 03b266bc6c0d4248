"""BarPointer: a causal bar-pointer model that turns beat and downbeat probabilities into tempo, beat phase
and bar position, one hop at a time (pure numpy).

The state space of Krebs, Böck & Widmer ("An efficient state-space model for joint tempo and meter
tracking", ISMIR 2015), run forward only, as a filter:

- A state is (meter, beat period, position): for each meter (3 and 4 beats a bar) and each beat period
  (whole hops, log-spaced between `max_bpm` and `min_bpm`), the positions 0 .. meter * period - 1 of a
  bar. Each hop the position moves on by one; at a beat boundary the period may change (a Laplace kernel
  in the period ratio, `tempo_lambda`, plus a chance `tempo_jump` of any other period: 0 by default, since
  any such chance let the pointer leap to twice or half the tempo, and tempo steps get through without it).
  Meters do not change into each other: both run side by side
  and the evidence picks one.
- The observation of a hop: the hops within `beat_width` of a beat (at least one each side) expect a beat
  (the bar's first beat a downbeat), the rest of the beat expects none. The region is centred on the beat,
  so the best state's phase is not biased late (Krebs et al. put it after the beat).
- The filtered probabilities are kept normalised; the most likely state gives the period, where in the
  beat we are, and which beat of the bar comes next.

Everything here is elementwise maths, a gather and one small matrix product per hop (a few thousand states
per meter), so the result does not depend on the CPU's vector width beyond the last bit of a sum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PointerSettings:
    min_bpm: float = 55.0
    max_bpm: float = 215.0
    n_tempi: int = 60               # beat periods (whole hops, log-spaced; fewer where hops are coarse)
    meters: tuple[int, ...] = (3, 4)
    tempo_lambda: float = 100.0     # period change at a beat: exp(-lambda * |ratio - 1|)
    tempo_jump: float = 0.0         # ... plus this chance of any other period
    beat_width: float = 1 / 32      # a beat is expected this fraction of a beat (at least a hop) either side
    obs_lambda: float = 16.0        # of the beat; elsewhere the no-beat probability counts 1/(obs_lambda - 1)
    meter_prior: tuple[float, ...] = (0.3, 0.7)
    floor: float = 0.0              # the probabilities are mixed with this much of 1/3 each (a floor of 0.05
                                    # and a tempo_jump of 1e-5 cost 0.012 F and 0.03 CMLt out of fold)


@dataclass(frozen=True)
class PointerState:
    period: float                   # hops per beat of the best state (a whole number)
    tempo_period: float             # hops per beat, averaged over the states near the best (fractional)
    phase: int                      # hops since its last beat (0: a beat is in this hop)
    beat_in_bar: int                # 1 .. meter: the beat that the last beat was
    meter: int
    confidence: float               # probability mass of the best state's meter and period (+-1 state)


class BarPointer:
    def __init__(self, hop_s: float, settings: PointerSettings = PointerSettings()):
        st = self.settings = settings
        lo = max(2, int(math.floor(60.0 / (st.max_bpm * hop_s))))
        hi = int(math.ceil(60.0 / (st.min_bpm * hop_s)))
        periods = np.unique(np.round(np.geomspace(lo, hi, st.n_tempi)).astype(np.int64))
        self.periods = periods
        # Layout: meter blocks, inside each the periods, inside each the positions of one bar.
        meter_of, period_of, pos_of = [], [], []
        offset = 0
        self._blocks = []
        for m in st.meters:
            base = offset
            for t in periods:
                n = m * int(t)
                meter_of.append(np.full(n, m))
                period_of.append(np.full(n, int(t)))
                pos_of.append(np.arange(n))
                offset += n
            self._blocks.append((m, base, offset))
        self.n_states = offset
        self.meter_of = np.concatenate(meter_of)
        self.period_of = np.concatenate(period_of)
        self.pos_of = np.concatenate(pos_of)
        # Beat boundaries: start[m][k, j] is the first hop of beat k (0 = downbeat) at period j, end[m][k, j]
        # the last hop of the beat before it (the bar's last hop for k = 0).
        self._bounds = []
        firsts = []
        for m, base, _ in self._blocks:
            first = base + np.concatenate(([0], np.cumsum(m * periods)[:-1]))            # (nt,)
            firsts.append(first)
            start = first[None, :] + np.arange(m)[:, None] * periods[None, :]            # (m, nt)
            end = np.roll(start, -1, axis=0) - 1
            end[-1] = first + m * periods - 1
            end = np.roll(end, 1, axis=0)                                               # beat k-1's last hop
            self._bounds.append((start, end))
        self._seg_first = np.concatenate(firsts)         # first state of each (meter, period), in layout order
        # Periods within 4 % of each other: the tempo estimate averages over these (near[j]: around period j).
        self._near = np.abs(np.log(periods[None, :] / periods[:, None])) < 0.04
        ratio = periods[None, :] / periods[:, None]                                      # (from, to)
        trans = np.exp(-st.tempo_lambda * np.abs(ratio - 1.0)) + st.tempo_jump
        self._trans = trans / trans.sum(axis=1, keepdims=True)
        # Observation class of each state: 0 no beat, 1 beat, 2 downbeat.
        self._cls, self._shape = observation_classes(self.meter_of, self.period_of, self.pos_of, st.beat_width)
        prior = np.empty(self.n_states)
        for (m, base, end), w in zip(self._blocks, st.meter_prior):
            prior[base:end] = w / (end - base)
        self._prior = prior / prior.sum()
        self.reset()

    def reset(self) -> None:
        self.p = self._prior.copy()

    def step(self, beat: float, downbeat: float) -> PointerState:
        """One hop of beat probability `beat` (downbeats included) and downbeat probability `downbeat`."""
        lam = self.settings.obs_lambda
        p = self.p
        new = np.empty_like(p)
        new[1:] = p[:-1]
        for start, end in self._bounds:
            new[start] = p[end] @ self._trans
        eps = self.settings.floor
        d = min(max(downbeat, 0.0), 1.0)
        b = min(max(beat - d, 0.0), 1.0 - d)
        obs = (1.0 - eps) * np.array((1.0 - b - d, b, d)) + eps / 3.0
        obs[0] /= lam - 1.0
        new *= obs[0] + self._shape * (obs[self._cls] - obs[0])
        total = new.sum()
        self.p = new / total if total > 0 and math.isfinite(total) else self._prior.copy()
        best = int(np.argmax(self.p))
        period = int(self.period_of[best])
        pos = int(self.pos_of[best])
        meter = int(self.meter_of[best])
        # Probability of each (meter, period), then of the periods near the best in its meter.
        seg_mass = np.add.reduceat(self.p, self._seg_first).reshape(len(self.settings.meters), len(self.periods))
        near = self._near[int(np.searchsorted(self.periods, period))]
        mass = seg_mass[self.settings.meters.index(meter), near]
        total = float(mass.sum())
        mean = float(mass @ self.periods[near]) / total if total > 0 else float(period)
        return PointerState(period=float(period), tempo_period=mean, phase=pos % period, beat_in_bar=pos // period + 1,
                            meter=meter, confidence=total)


def observation_classes(meter: np.ndarray, period: np.ndarray, pos: np.ndarray,
                        width: float) -> tuple[np.ndarray, np.ndarray]:
    """For states at bar position `pos`: the class they expect, 0 (no beat), 1 (beat) or 2 (downbeat), within
    `width` of a beat (a fraction of the period, at least one hop) either side of it; and how much (1 on the
    beat, falling linearly to 1 / (w + 1) at w hops from it), so that the best state sits on the beat."""
    w = np.maximum(1, np.round(period * width)).astype(np.int64)
    in_beat = pos % period
    this_beat, next_beat = pos // period, (pos // period + 1) % meter
    cls = np.where(in_beat <= w, np.where(this_beat == 0, 2, 1),
                   np.where(in_beat >= period - w, np.where(next_beat == 0, 2, 1), 0))
    dist = np.minimum(in_beat, period - in_beat)
    shape = np.where(cls > 0, 1.0 - dist / (w + 1.0), 0.0)
    return cls, shape
