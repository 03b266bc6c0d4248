"""vj.audio.downmix: the analysis hears a stereo pair whose channels cancel (out of polarity), the same live and
offline."""

from __future__ import annotations

import logging
import wave

import numpy as np

from vj.analyze import analyze_file
from vj.audio.downmix import SEGMENT, Downmix, downmix
from vj.replay import SessionMono

SR = 48000


def music(seconds: float, seed: int = 0) -> np.ndarray:
    """(n, 2) float32: a centred 120 BPM click track (the kick and bass of a mix) with a little independent width
    (noise at -50 dBFS a channel), so that its channels correlate at +0.996 and, one inverted, at -0.996."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    centre = np.zeros(n, np.float32)
    for k in range(0, n - 400, SR // 2):
        centre[k:k + 400] = 0.8 * np.hanning(400) * np.sin(2 * np.pi * 60 * np.arange(400) / SR)
    wide = (0.003 * rng.standard_normal((n, 2))).astype(np.float32)
    return np.stack((centre, centre), axis=1) + wide


def in_blocks(samples: np.ndarray, sizes: list[int]) -> np.ndarray:
    mix, out, i, k = Downmix(), [], 0, 0
    while i < len(samples):
        n = sizes[k % len(sizes)]
        out.append(mix(samples[i:i + n]))
        i, k = i + n, k + 1
    return np.concatenate(out)


def test_a_pair_in_polarity_is_the_mean_of_its_channels_exactly():
    x = music(3.0)
    assert np.array_equal(downmix(x), x.mean(axis=1, dtype=np.float32))
    left_only = x.copy()
    left_only[:, 1] = 0.0                                         # a mono source on one input: nothing to judge
    assert np.array_equal(downmix(left_only), left_only.mean(axis=1, dtype=np.float32))


def test_a_pair_that_cancels_is_heard_as_its_left_channel_from_the_first_segment(caplog):
    """Right inverted: the mean is the width alone (peak -40 dBFS, the clicks -2); from the first segment end
    on (2048 samples, 43 ms) the analysis hears the left channel, which is the clicks again, and says why."""
    x = music(3.0)
    x[:, 1] *= -1.0
    with caplog.at_level(logging.WARNING):
        y = downmix(x)
    assert np.array_equal(y[:SEGMENT], x[:SEGMENT].mean(axis=1, dtype=np.float32))
    assert np.array_equal(y[SEGMENT:], x[SEGMENT:, 0])
    mean_db = 20 * np.log10(np.abs(x.mean(axis=1)).max())
    assert mean_db < -30.0 and np.abs(y).max() > 0.7
    assert "out of polarity" in caplog.text


def test_a_cable_fixed_mid_show_is_heard_as_the_mean_again_within_a_second():
    """3 s inverted, then in polarity: the sums forget with a 96-segment time constant (tau = 4.1 s). For a
    steady signal the old part weighs w = e^(-t / tau) and the new 1 - w, so the sums' correlation is about
    1 - 2w and passes -0.8 at w = 0.9, t = tau ln(1 / 0.9) = 0.43 s; the clicks carry the energy in bursts
    every 0.5 s, which moves that by up to one click: 0.93 s at most (0.03 s here, at the first click: 3 s of
    inversion had not filled the sums)."""
    x = music(8.0)
    x[:3 * SR, 1] *= -1.0
    y = downmix(x)
    mean = x.mean(axis=1, dtype=np.float32)
    same = y == mean
    back = int(np.flatnonzero(~same)[-1]) + 1                      # the first sample heard as the mean again
    assert 3 * SR < back <= 3 * SR + SR and same[back:].all()


def test_any_split_into_blocks_gives_the_same_output():
    x = music(6.0, seed=1)
    x[:3 * SR, 1] *= -1.0                                          # inverted for 3 s, then fixed
    whole = downmix(x)
    assert not np.array_equal(whole, x.mean(axis=1, dtype=np.float32))       # both switches happen in it
    for sizes in ([256], [1024, 37, 4096], [SR], [1, 2047, 2049]):
        assert np.array_equal(in_blocks(x, sizes), whole), sizes
    replay = SessionMono(x)
    bounds = [0, 5000, 90000, 100000, 200000, len(x) + 300]        # past the end: silence
    pieces = {(a, b): replay(a, b) for a, b in zip(bounds[1:-1][::-1], bounds[2:][::-1])}   # out of order
    pieces.update({(a, b): replay(a, b) for a, b in zip(bounds[:-1], bounds[1:])})          # then in order
    padded = downmix(np.concatenate((x, np.zeros((300, 2), np.float32))))
    for (a, b), got in pieces.items():
        assert np.array_equal(got, padded[a:b]), (a, b)


def test_vj_analyze_finds_the_beat_of_a_song_whose_channels_are_out_of_polarity(tmp_path):
    """The same clicks with the right channel inverted: before this module the analysis heard only the width,
    found no beat at all in it, and the show went dark to the music."""
    x = music(12.0)
    x[:, 1] *= -1.0
    path = tmp_path / "inverted.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())
    result = analyze_file(path)
    beats = np.asarray(result.beats_s)
    late = beats[beats > 4.0]
    assert len(late) >= 12 and abs(60.0 / np.median(np.diff(late)) - 120.0) < 2.0
