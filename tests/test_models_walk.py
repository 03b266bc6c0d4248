"""The latent walk: deterministic, frame-rate independent, pushed by bass and kicked by onsets."""

import math

import numpy as np
import pytest

from vj.models.walk import LatentWalk, _impulse_decay


def run_walk(dt_s, seconds=1.0, onset_times=(), level=0.5, bass=0.3, seed=0, z_dim=12):
    """Walk for `seconds` at a fixed dt with onsets on the frames at `onset_times`; returns the last latent."""
    walk = LatentWalk(z_dim, base_seed=0)
    n = round(seconds / dt_s)
    onset_frames = {round(t / dt_s) for t in onset_times}
    z = None
    for i in range(1, n + 1):
        z = walk.step(dt_s, seed=seed, speed=0.1, level=level, level_speed=0.3, bass=bass, bass_push=0.5,
                      onset=i in onset_frames, onset_t_s=i * dt_s, onset_kick=0.6, attack_s=0.03, release_s=0.4)
    return walk, z


def test_path_goes_through_the_keyframes_and_keeps_its_length():
    # float64 on latents of length sqrt(8): a renormalisation costs a few ulp (~1e-15, BLAS's dot order aside);
    # a neighbouring keyframe is O(1) away.
    walk = LatentWalk(8)
    for k in (0, 1, 5, -2):
        np.testing.assert_allclose(walk.path(3, float(k)), walk.keyframe(3, k), atol=1e-12)
    for pos in (0.25, 0.5, 3.7):
        assert math.isclose(np.linalg.norm(walk.path(3, pos)), math.sqrt(8), rel_tol=1e-9)
    assert not np.allclose(walk.keyframe(3, 0), walk.keyframe(4, 0))


def test_same_inputs_give_the_same_latents_and_reset_starts_over():
    a, za = run_walk(1 / 30, onset_times=(0.2, 0.5))
    b, zb = run_walk(1 / 30, onset_times=(0.2, 0.5))
    assert np.array_equal(za, zb)
    a.reset()
    z0 = a.step(1 / 30, seed=0, speed=0.1)
    c = LatentWalk(12, base_seed=0)
    assert np.array_equal(z0, c.step(1 / 30, seed=0, speed=0.1))


def test_walk_is_frame_rate_independent():
    # Onsets at times that both frame rates hit exactly (1/6 s = 5/30 = 24/144).
    onsets = (1 / 6, 1 / 2)
    slow, z30 = run_walk(1 / 30, onset_times=onsets)
    fast, z144 = run_walk(1 / 144, onset_times=onsets)
    assert slow.onsets == fast.onsets == 2
    # Not rounding (~1e-15) but the trapezoid over the kick envelope's 30 ms rise: 0.0016 and 1.4% measured;
    # a kick filter stepped per frame instead of per second is off by 0.14 and 36%.
    assert abs(slow.pos - fast.pos) < 0.02
    assert np.linalg.norm(z30 - z144) < 0.05 * np.linalg.norm(z30)
    # Without onsets every piece is integrated exactly: only float64 rounding of 144 steps (~1e-15) is left.
    _, q30 = run_walk(1 / 30)
    _, q144 = run_walk(1 / 144)
    np.testing.assert_allclose(q30, q144, atol=1e-9)


def test_kick_filter_steps_compose_exactly():
    # Two steps of dt equal one step of 2 dt: that is what makes kicks fps-independent.
    a1, r1, g1 = _impulse_decay(0.01, 0.03, 0.4)
    a2, r2, g2 = _impulse_decay(0.02, 0.03, 0.4)
    e, u = 0.2, 1.0
    e_two, u_two = a1 * (a1 * e + g1 * u) + g1 * (r1 * u), r1 * r1 * u
    assert math.isclose(e_two, a2 * e + g2 * u, rel_tol=1e-12)
    assert math.isclose(u_two, r2 * u, rel_tol=1e-12)
    # Equal time constants take the limit form.
    a, r, g = _impulse_decay(0.01, 0.1, 0.1)
    assert a == r and math.isclose(g, 0.1 * math.exp(-0.1))


def test_bass_pushes_along_a_fixed_direction():
    w1, w2 = LatentWalk(12), LatentWalk(12)
    z_quiet = w1.step(0.1, seed=2, speed=0.1, bass=0.0, bass_push=0.5)
    z_loud = w2.step(0.1, seed=2, speed=0.1, bass=1.0, bass_push=0.5)
    np.testing.assert_allclose(z_loud - z_quiet, 0.5 * w1.bass_direction(2), atol=1e-12)   # one add: ~4e-16


def test_an_onset_kicks_then_decays_and_repeated_snapshots_count_once():
    walk = LatentWalk(12)
    base = LatentWalk(12)
    dist = []
    for i in range(40):
        onset = i in (0, 1, 2)            # the same snapshot (same t_s) seen on three frames
        z = walk.step(1 / 60, seed=0, speed=0.05, onset=onset, onset_t_s=0.5, onset_kick=0.6)
        zb = base.step(1 / 60, seed=0, speed=0.05)
        dist.append(np.linalg.norm(z - zb))
    assert walk.onsets == 1
    peak = int(np.argmax(dist))
    assert 0 < peak < 15 and dist[peak] > 0.5
    assert dist[-1] < 0.5 * dist[peak]
    assert walk.pos > base.pos            # the kick also pushes the walk forward


def test_seed_change_crossfades_instead_of_jumping():
    walk = LatentWalk(12)
    steps = []
    prev = walk.step(1 / 30, seed=0, speed=0.05)
    for i in range(60):
        z = walk.step(1 / 30, seed=7 if i >= 10 else 0, speed=0.05)
        steps.append(np.linalg.norm(z - prev))
        prev = z
    jump = np.linalg.norm(walk.keyframe(0, 0) - walk.keyframe(7, 0))
    assert max(steps) < 0.2 * jump
    np.testing.assert_allclose(prev, walk.path(7, walk.pos), atol=1e-12)


def test_a_morph_slerps_from_a_latent_to_the_walk_at_any_frame_rate():
    def morphed(dt_s, seconds):
        walk = LatentWalk(12, base_seed=0)
        walk.step(dt_s, seed=0, speed=0.0)                   # a standing walk: the same target at any rate
        start = walk.keyframe(9, 0) * 1.5                    # a latent of another length
        walk.morph_from(start, 1.0)
        first = walk.step(dt_s, seed=0, speed=0.0)
        z = first
        for _ in range(round(seconds / dt_s)):
            z = walk.step(dt_s, seed=0, speed=0.0)
        return start, first, z, walk

    start, first, z30, walk = morphed(1 / 32, 0.5)
    np.testing.assert_array_equal(first, start)
    _, _, z64, _ = morphed(1 / 64, 0.5)
    np.testing.assert_allclose(z30, z64, atol=1e-12)
    # Half-way: length half-way between the ends, angle half-way between them.
    own = walk.path(0, walk.pos)
    assert math.isclose(np.linalg.norm(z30), 1.25 * math.sqrt(12), rel_tol=1e-9)
    cos = lambda a, b: float(a @ b) / (np.linalg.norm(a) * np.linalg.norm(b))  # noqa: E731
    assert math.isclose(math.acos(cos(z30, start)), math.acos(cos(z30, own)), rel_tol=1e-9)
    assert not np.allclose(z30, own)
    _, _, done, walk = morphed(1 / 32, 1.0)
    np.testing.assert_allclose(done, walk.path(0, walk.pos), atol=1e-12)
    assert walk.current_z is done


def test_keyframes_from_a_preset_make_a_closed_loop():
    kf = np.random.RandomState(4).randn(3, 8)
    walk = LatentWalk(8, keyframes=kf)
    for k in range(7):                               # through each keyframe, round and round
        np.testing.assert_allclose(walk.path(0, float(k)), kf[k % 3] * math.sqrt(8) / np.linalg.norm(kf[k % 3]),
                                   atol=1e-12)
    for pos in (0.3, 1.9, 2.5):                      # periodic, also across the seam 2 -> 0
        np.testing.assert_allclose(walk.path(0, pos), walk.path(0, pos + 3.0), atol=1e-12)
    # Smooth across the seam: the step just before keyframe 3 (= 0) is as small as one just after it.
    h = 1e-4
    before = np.linalg.norm(walk.path(0, 3.0) - walk.path(0, 3.0 - h))
    after = np.linalg.norm(walk.path(0, 3.0 + h) - walk.path(0, 3.0))
    assert math.isclose(before, after, rel_tol=1e-2)    # O(h) = 1e-4 here (7e-5); a kink at the seam: ~30%
    assert np.allclose(walk.path(0, 1.5), walk.path(9, 1.5))     # every seed walks the preset's keyframes


def test_an_open_path_stops_on_its_last_keyframe():
    kf = np.random.RandomState(4).randn(3, 8)
    walk = LatentWalk(8, keyframes=kf, loop=False)
    last = kf[2] * math.sqrt(8) / np.linalg.norm(kf[2])
    for pos in (2.0, 2.5, 40.0):
        np.testing.assert_allclose(walk.path(0, pos), last, atol=1e-12)
    assert not np.allclose(walk.path(0, 1.5), last)
    z = None
    for _ in range(100):                             # 10 s at 0.5 keyframe/s: long past the end
        z = walk.step(0.1, seed=0, speed=0.5)
    np.testing.assert_allclose(z, last, atol=1e-12)


@pytest.mark.parametrize("bad, match", [(np.zeros((2, 5)), r"\(K, 8\)"), (np.zeros((0, 8)), r"\(K, 8\)"),
                                        (np.zeros((2, 8)), "non-zero"), (np.full((1, 8), np.nan), "finite")])
def test_bad_keyframes_are_refused_with_the_shape(bad, match):
    with pytest.raises(ValueError, match=match):
        LatentWalk(8, keyframes=bad)
