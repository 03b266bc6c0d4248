"""The bar-pointer model: its forward filter against a dense hidden Markov model built from the definitions,
and what it makes of beat probabilities (tempo, phase, meter, tempo changes, gaps, off-beat distractors)."""

import math

import numpy as np
import pytest

from vj.audio.barpointer import BarPointer, PointerSettings
from vj.audio.beats import BeatTracker

HOP_S = 512 / 48000


def activations(beats_hops, n_hops, bar=4, first_downbeat=0, peak=0.9, floor=0.01, spread=1):
    """Beat and downbeat probabilities with a peak (and half-height neighbours) at each beat hop."""
    beat = np.full(n_hops, floor)
    down = np.full(n_hops, floor / 2)
    for i, h in enumerate(beats_hops):
        h = int(round(h))
        for d in range(-spread, spread + 1):
            if 0 <= h + d < n_hops:
                w = peak if d == 0 else peak / 2
                beat[h + d] = max(beat[h + d], w)
                if (i - first_downbeat) % bar == 0:
                    down[h + d] = max(down[h + d], 0.9 * w)
    return beat, down


def run(pointer, beat, down):
    return [pointer.step(b, d) for b, d in zip(beat, down)]


def dense_model(bp: BarPointer) -> np.ndarray:
    """The transition matrix (from, to) of the same state space, written from the definitions: a position
    moves on by one; from the last hop of a beat, the next beat starts at any period with the Laplace weights."""
    st = bp.settings
    n = bp.n_states
    a = np.zeros((n, n))
    index = {(int(m), int(t), int(p)): i for i, (m, t, p) in enumerate(zip(bp.meter_of, bp.period_of, bp.pos_of))}
    periods = [int(t) for t in bp.periods]
    for (m, t, p), i in index.items():
        if (p + 1) % t:
            a[i, index[(m, t, p + 1)]] = 1.0
            continue
        k = (p + 1) // t % m                                            # the beat that starts next
        w = np.array([math.exp(-st.tempo_lambda * abs(u / t - 1.0)) + st.tempo_jump for u in periods])
        for u, wu in zip(periods, w / w.sum()):
            a[i, index[(m, u, k * u)]] += wu
    return a


def test_forward_filter_matches_a_dense_hidden_markov_model():
    st = PointerSettings(min_bpm=100, max_bpm=140, n_tempi=6, meters=(3, 4), meter_prior=(0.4, 0.6))
    bp = BarPointer(HOP_S, st)
    a = dense_model(bp)
    assert np.allclose(a.sum(axis=1), 1.0)
    rng = np.random.default_rng(3)
    alpha = bp.p.copy()
    for _ in range(400):
        b, d = rng.uniform(0, 1), rng.uniform(0, 1)
        d = min(d, b)
        bp.step(b, d)
        eps, lam = st.floor, st.obs_lambda
        obs = (1 - eps) * np.array((1 - b, b - d, d)) + eps / 3
        obs[0] /= lam - 1
        like = np.full(bp.n_states, obs[0])                            # no beat, beat, downbeat
        for i, (m, t, p) in enumerate(zip(bp.meter_of, bp.period_of, bp.pos_of)):
            w = max(1, round(t * st.beat_width))
            d = min(p % t, t - p % t)
            if d <= w:
                cls = 2 if (p < t and p % t <= w) or (p >= (m - 1) * t and p % t >= t - w) else 1
                like[i] = obs[0] + (1 - d / (w + 1)) * (obs[cls] - obs[0])
        alpha = (alpha @ a) * like
        alpha /= alpha.sum()
    assert np.abs(bp.p - alpha).max() < 1e-9


@pytest.mark.parametrize("bpm", [72.0, 120.0, 174.0])
def test_steady_beats_give_period_phase_and_bar(bpm):
    bp = BarPointer(HOP_S)
    period = 60.0 / (bpm * HOP_S)
    n = int(40 * period)
    beats_h = np.arange(5, n, period)
    beat, down = activations(beats_h, n)
    states = run(bp, beat, down)
    last = states[-1]
    # The best period is the grid's nearest, and the beat is where the activations put it (within a hop).
    assert abs(last.period - period) < 1.0                     # periods are whole hops
    for h in np.round(beats_h[-8:]).astype(int):
        if h < n:
            s = states[h]
            assert min(s.phase, s.period - s.phase) <= 1
            assert s.meter == 4
    downs = [int(round(h)) for i, h in enumerate(beats_h[-8:], start=len(beats_h) - 8) if i % 4 == 0]
    assert all(states[h].beat_in_bar == 1 for h in downs if h < n)


def test_three_four_is_read_as_three_beats_a_bar():
    bp = BarPointer(HOP_S)
    period = 60.0 / (140 * HOP_S)
    n = int(36 * period)
    beat, down = activations(np.arange(5, n, period), n, bar=3)
    assert run(bp, beat, down)[-1].meter == 3


def test_follows_a_tempo_step_within_six_beats():
    bp = BarPointer(HOP_S)
    p1, p2 = 60 / (120 * HOP_S), 60 / (140 * HOP_S)
    first = np.arange(5, 24 * p1, p1)
    second = first[-1] + np.arange(1, 20) * p2
    beat, down = activations(np.concatenate((first, second)), int(second[-1]) + 5)
    states = run(bp, beat, down)
    settled = int(round(second[5]))
    assert all(abs(s.period - p2) < 1.5 for s in states[settled:])


def test_keeps_phase_through_missing_beats_and_ignores_weaker_off_beats():
    bp = BarPointer(HOP_S)
    period = 60 / (110 * HOP_S)
    beats_h = np.arange(5, 48 * period, period)
    kept = np.concatenate((beats_h[:20], beats_h[28:]))            # 8 beats of nothing
    beat, down = activations(kept, int(beats_h[-1]) + 5)
    off_b, _ = activations(kept + period / 2, len(beat), peak=0.45)
    beat = np.maximum(beat, off_b)
    states = run(bp, beat, down)
    # In the gap the best state's period is a whole number of hops next to the beat period (51.1 hops: 51
    # or 52), so its phase drifts by less than a hop a beat. After the gap the beats are found again.
    for k, h in enumerate(np.round(beats_h[20:28]).astype(int)):
        s = states[h]
        assert min(s.phase, s.period - s.phase) <= 1 + (k + 1)
    for h in np.round(beats_h[32:]).astype(int):
        if h < len(states):
            s = states[h]
            assert min(s.phase, s.period - s.phase) <= 1


def test_tracker_steered_by_the_pointer_reports_each_beat_once_and_early_by_the_lookahead():
    period = 60 / (128 * HOP_S)
    n = int(60 * period)
    beats_h = np.arange(5, n, period)
    beat, down = activations(beats_h, n)
    reported = {}
    for ahead_s in (0.0, 0.05):
        from vj.audio.beats import BeatSettings

        tr = BeatTracker(HOP_S, BeatSettings(lookahead_s=ahead_s), pointer=BarPointer(HOP_S))
        got = []
        for i in range(n):
            odf = 1.0 if np.any(np.abs(beats_h - i) < 0.5) else 0.0
            s = tr.update(odf, activation=(beat[i], down[i]))
            if s.beat:
                got.append((i + 1, s.beat_in_bar))
        reported[ahead_s] = got
    late = [h for h, _ in reported[0.0] if h > 20 * period]
    # Hop i + 1 (the tracker's clock starts at 1) is the beat at activation index i.
    grid = np.round(beats_h).astype(int) + 1
    assert all(np.min(np.abs(grid - h)) <= 1 for h in late)
    assert len(late) == np.sum(grid > 20 * period) or len(late) == np.sum(grid > 20 * period) - 1
    intervals = np.diff(late)
    assert intervals.min() > 0.7 * period and intervals.max() < 1.3 * period
    early = [h for h, _ in reported[0.05] if h > 20 * period]
    shift = round(0.05 / HOP_S)
    # Predicted 5 hops ahead from a whole-hop period (43 or 44 for 43.95): one hop more than on the beat.
    assert all(np.min(np.abs(grid - shift - h)) <= 2 for h in early)
    bars = [b for h, b in reported[0.0] if h > 20 * period]
    assert set(bars) == {1, 2, 3, 4}
    ones = [h for h, b in reported[0.0] if b == 1 and h > 20 * period]
    assert all(np.min(np.abs(grid[::4] - h)) <= 1 for h in ones)
