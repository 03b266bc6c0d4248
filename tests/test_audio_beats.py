"""Beat tracker, per-band onsets, timbre and section features, and `vj analyze`, scored with mir_eval."""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

mir_eval = pytest.importorskip("mir_eval")

import beat_synth                                         # noqa: E402  (tests/ is on sys.path under pytest)
from audio_synth import kick, write_wav                   # noqa: E402
from vj.analyze import analyze_samples                    # noqa: E402
from vj.audio.analyzer import Analyzer                    # noqa: E402
from vj.audio.beats import BeatSettings, BeatTracker     # noqa: E402
from vj.audio.decode import decode_file                   # noqa: E402
from vj.audio.demo import demo_sections, demo_track       # noqa: E402
from vj.audio.features import SOURCE_NAMES, Features      # noqa: E402
from vj.config import AudioConfig                         # noqa: E402

SR = 48000
CFG = AudioConfig(sample_rate_hz=SR)
HOP_S = CFG.hop_samples / SR
SHARED = Path(os.environ.get("VJ_SHARED_DIR", Path(__file__).resolve().parents[1].parent / "shared"))
MADMOM = SHARED / "data" / "madmom"


def clicks(bpm, seconds, start_s=0.5, amp=0.6, noise_db=-60.0, seed=0):
    """Kick drums at a steady tempo over a faint noise floor: (mono samples, kick times)."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(int(seconds * SR)) * 10 ** (noise_db / 20)).astype(np.float32)
    k = kick()
    times = np.arange(start_s, seconds - 0.3, 60.0 / bpm)
    for t in times:
        i = int(round(t * SR))
        x[i:i + len(k)] += amp * k[:len(x) - i]
    return x, times


def features(x, analyzer=None):
    return (analyzer or Analyzer(CFG)).process(np.asarray(x, np.float32))


def beat_times(feats):
    return np.array([f.t_s for f in feats if f.beat])


# ---- the synthetic test set ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def synthetic_scores():
    scores = {}
    for piece in beat_synth.PIECES:
        x, ref, _ = beat_synth.render(piece)
        est = analyze_samples(x, CFG).beats_s
        ref_t, est_t = mir_eval.beat.trim_beats(ref), mir_eval.beat.trim_beats(est)
        f = mir_eval.beat.f_measure(ref_t, est_t)
        _, cmlt, _, amlt = mir_eval.beat.continuity(ref_t, est_t)
        scores[piece.name] = (f, cmlt, amlt)
    for name, (f, cmlt, amlt) in scores.items():
        print(f"{name:24s} F {f:.3f} CMLt {cmlt:.3f} AMLt {amlt:.3f}")
    return scores


@pytest.mark.slow
def test_synthetic_set_beat_scores(synthetic_scores):
    s = np.array(list(synthetic_scores.values()))
    f, cmlt, amlt = s.mean(axis=0)
    print(f"mean F {f:.3f} CMLt {cmlt:.3f} AMLt {amlt:.3f}")
    # Quality targets, not rounding: measured mean F 0.958, CMLt 0.907, AMLt 0.907, the other 9 pieces at F >=
    # 0.918 and AMLt >= 0.900. rock_80 is read at 160 for its first 12 s (the 135 BPM prior's price for DnB at 174),
    # then at 80 with the beat network's cue: F 0.835, AMLt 0.511 (AMLt scores one metrical level per piece).
    # Without the network's cue: 0.937, 0.855, 0.949, rock_80 at 160 throughout (F 0.635, AMLt 0.943); with the
    # 120 prior: 0.919, 0.837, 0.925, dnb_174 at 87.
    assert f >= 0.85 and cmlt >= 0.75 and amlt >= 0.85
    # Every piece is tracked at some metrical level (AMLt allows double / half tempo and the off-beat), or at
    # the annotated one for most of it ...
    for name, (f_piece, _, a) in synthetic_scores.items():
        assert a >= 0.8 or f_piece >= 0.8, (name, f_piece, a)
    # ... and most at the annotated one.
    assert sum(v[0] >= 0.85 for v in synthetic_scores.values()) >= len(synthetic_scores) - 2


def test_beat_synth_grid_is_what_it_says():
    piece = beat_synth.Piece("t", (beat_synth.Section(2, 120.0), beat_synth.Section(2, 120.0, 150.0)))
    beats, pos, _ = beat_synth.beat_grid(piece)
    assert len(beats) == 17 and list(pos[:8]) == [1, 2, 3, 4, 1, 2, 3, 4]
    np.testing.assert_allclose(np.diff(beats[:9]), 0.5)
    assert np.all(np.diff(np.diff(beats[8:])) < 0)            # the ramp speeds up


# ---- tempo, phase, silence ---------------------------------------------------------------------------

@pytest.mark.parametrize("bpm", [90.0, 128.0, 160.0])
def test_steady_clicks_give_the_tempo_within_one_percent_and_beats_on_the_clicks(bpm):
    x, kicks = clicks(bpm, 16.0)
    feats = features(x)
    # 1 %: the tempo grid's resolution (measured <= 0.44 %); beats within 30 ms, about 3 hops (measured <= 9 ms).
    assert abs(feats[-1].bpm - bpm) / bpm < 0.01, feats[-1].bpm
    late = beat_times(feats)
    late = late[(late > 0.5 + 4 * 60 / bpm + 3.0) & (late < kicks[-1] + 0.1)]   # from four beats after warm-up
    assert len(late) >= 8
    err = np.array([np.min(np.abs(kicks - t)) for t in late])
    assert np.all(err < 0.03), err
    assert feats[-1].beat_confidence > 0.5


def test_beat_phase_rises_through_each_beat_and_wraps_on_beats():
    x, _ = clicks(120.0, 12.0)
    feats = [f for f in features(x) if f.t_s > 6.0]
    phases = np.array([f.beat_phase for f in feats])
    beats = np.array([f.beat for f in feats])
    assert np.all((phases >= 0) & (phases < 1))
    drops = np.flatnonzero(np.diff(phases) < -0.5) + 1       # where the phase wraps
    assert set(drops) <= set(np.flatnonzero(beats)) | set(np.flatnonzero(beats) + 1)
    assert np.all(np.diff(phases)[np.diff(phases) > -0.5] > 0)
    bar = np.array([f.bar_phase for f in feats])
    assert np.all((bar >= 0) & (bar < 1)) and bar.max() > 0.9
    nxt = [f.next_beat_s for f in feats if not f.beat]
    assert all(t >= f.t_s - HOP_S for t, f in zip(nxt, [f for f in feats if not f.beat]))


def test_a_click_track_in_digital_silence_starts_within_a_few_beats():
    """5 ms clicks with exact zeros between (a DAW's metronome) are 3-4 loud hops a beat; the gaps between them
    count towards the 2 s warm-up (`GAP_HEARD_S`). Counting loud hops only, the first beat came at 22.2 s."""
    x = np.zeros(int(12.0 * SR), np.float32)
    burst = np.sin(2 * np.pi * 2000 * np.arange(int(0.005 * SR)) / SR).astype(np.float32)
    clicks_s = np.arange(0.25, 11.9, 0.5)
    for t in clicks_s:
        i = int(round(t * SR))
        x[i:i + len(burst)] += 0.5 * burst
    beats = analyze_samples(x, CFG).beats_s
    # 4 s: warm-up 2 s, then the confidence reaches its start level within 3-4 beats (measured: 3.24 s)
    assert len(beats) > 10 and beats[0] < 4.0
    # on the clicks: the hop (10.7 ms) and the reporting offset for real notes (flux_delay_s, 23 ms) apart
    assert np.abs(beats[:, None] - clicks_s[None, :]).min(axis=1).max() < 0.035


def test_silence_gives_no_beats_no_tempo_and_no_onsets():
    for x in (np.zeros(10 * SR, np.float32),
              (np.random.default_rng(2).standard_normal(10 * SR) * 10 ** (-75 / 20)).astype(np.float32)):
        feats = features(x)
        assert not any(f.beat or f.onset or f.kick_onset or f.snare_onset or f.hat_onset for f in feats)
        assert feats[-1].bpm == 0.0 and feats[-1].beat_confidence == 0.0 and feats[-1].beat_in_bar == 0


def test_keeps_the_tempo_through_a_silent_break():
    a, _ = clicks(120.0, 10.0)
    x = np.concatenate([a, np.zeros(6 * SR, np.float32), clicks(120.0, 6.0, start_s=0.0)[0]])
    feats = features(x)
    in_break = beat_times(feats)
    in_break = in_break[(in_break > 10.5) & (in_break < 15.5)]
    assert 9 <= len(in_break) <= 11                             # ten beats at 120 BPM in five seconds
    np.testing.assert_allclose(np.diff(in_break), 0.5, atol=2 * HOP_S)
    assert all(f.bpm == pytest.approx(120.0, rel=0.02) for f in feats if 10.5 < f.t_s < 15.5)


def beats_to_follow(x, ref, change_i, new_bpm):
    """Beats after the tempo change at ref[change_i] until, for good, the reported tempo is within 2 % of
    `new_bpm`, every reported beat is within 70 ms of a new beat and no new beat goes unreported."""
    a = analyze_samples(x, CFG)
    change_s, end_s = ref[change_i], ref[-1]
    new = ref[change_i:]
    wrong = [change_s]
    wrong += [t for t, bpm, _ in a.tempo if change_s < t < end_s and abs(bpm - new_bpm) > 0.02 * new_bpm]
    wrong += [t for t in a.beats_s if change_s < t < end_s - 0.1 and np.min(np.abs(new - t)) > 0.07]
    wrong += [r for r in new[new < end_s - 0.5] if len(a.beats_s) == 0 or np.min(np.abs(a.beats_s - r)) > 0.07]
    return (max(wrong) - change_s) / (60.0 / new_bpm)


def click_track(bpms, beats_each, start_s=0.5, seed=0):
    """Kicks at each tempo for its number of beats in turn: (mono samples, kick times)."""
    t = start_s + np.concatenate([[0.0], np.cumsum([60.0 / b for b, n in zip(bpms, beats_each) for _ in range(n)])])
    x = (np.random.default_rng(seed).standard_normal(int((t[-1] + 1.0) * SR)) * 1e-3).astype(np.float32)
    k = kick()
    for s in t[:-1]:
        i = int(round(s * SR))
        x[i:i + len(k)] += 0.6 * k[:len(x) - i]
    return x, t[:-1]


@pytest.mark.parametrize("before, after", [(120.0, 140.0), (140.0, 110.0)])
@pytest.mark.parametrize("music", ["clicks", "house", "rock"])
def test_follows_a_tempo_change_within_eight_beats(before, after, music):
    if music == "clicks":
        x, ref = click_track((before, after), (32, 40))
        change_i = 32
    else:
        piece = beat_synth.Piece("change", (beat_synth.Section(8, before, pattern=music),
                                            beat_synth.Section(10, after, pattern=music)), seed=11)
        x, ref, _ = beat_synth.render(piece)
        change_i = 32
    n = beats_to_follow(x, ref, change_i, after)
    print(f"{music} {before:g} -> {after:g} BPM followed after {n:.1f} beats")
    assert n <= 8.0                 # a quality target; measured 4.0..5.9 beats, the same on every kernel tried


def test_follows_the_tempo_change_of_the_synthetic_set():
    piece = next(p for p in beat_synth.PIECES if p.name == "tempo_change_120_135")
    x, ref, _ = beat_synth.render(piece)
    n = beats_to_follow(x, ref, 40, 135.0)
    print(f"tempo change followed after {n:.1f} beats")
    assert n <= 8.0                 # measured 7.0 beats on every kernel tried


def syncopated_odf(bpm, seconds, seed):
    """Onset strength, one value per hop, of a two-beat pattern in 16ths: the strengths of the beat corpus's
    80 BPM omsx_ttsong_iv folded over two beats (a strong first beat, the 16ths after its 8th at 0.2-0.4 of
    it, more on the syncopations than on the second beat), each onset varied by +-20 %."""
    profile = (1.0, 0.0, 0.3, 0.3, 0.4, 0.4, 0.2, 0.2)
    rng = np.random.default_rng(seed)
    odf = np.zeros(int(seconds / HOP_S))
    for k, t in enumerate(np.arange(0.0, seconds, 15.0 / bpm)):
        i = int(round(t / HOP_S))
        if i < len(odf):
            odf[i] += profile[k % len(profile)] * rng.uniform(0.8, 1.2)
    return odf


@pytest.mark.parametrize("seed", range(6))
def test_the_beats_own_eighths_keep_a_syncopated_80_bpm_at_80(seed):
    """The comb reads the autocorrelation at half the period too (`subdivision_weight`): the true beat's 8ths
    are there, while a misreading's half period falls between the notes. Without it, this pattern reads at
    160 BPM for 5 of these 6 seeds."""
    tracker = BeatTracker(HOP_S)
    bpms = [s.bpm for s in map(tracker.update, syncopated_odf(80.0, 40.0, seed)) if s.beat]
    # 2 %: off the octave error (100 %) by 50x; the tempo states are 1 % apart
    assert np.median(bpms[-20:]) == pytest.approx(80.0, rel=0.02)


@pytest.mark.parametrize("pattern, bpm, seed", [("dnb", 174.0, 3), ("hiphop", 85.0, 5), ("rock", 84.0, 8)])
def test_backbeat_octave_choice_gives_drum_and_bass_at_full_tempo(pattern, bpm, seed):
    """With backbeat_gain on, snares on every second beat decide the octave: DnB at 174, not 87; hip-hop and
    rock in the 80s stay there. The option was made for the 120 BPM prior: with the default 135 that reads
    DnB at 174 without it, the option doubles this rock at 84, so the test keeps the prior it was made for."""
    piece = beat_synth.Piece("o", (beat_synth.Section(16, bpm, pattern=pattern),), seed=seed,
                             swing=0.6 if pattern == "hiphop" else 0.5, swing16=pattern == "hiphop")
    x, ref, _ = beat_synth.render(piece)
    tempo = analyze_samples(x, CFG, BeatSettings(backbeat_gain=2.0, prior_bpm=120.0)).tempo
    late = tempo[tempo[:, 0] > ref[0] + 8.0, 1]
    # 2 %: off the octave error (50 % or 100 %) by 25x; measured -1.2 % (DnB) .. +0.1 %, on every kernel tried.
    assert len(late) > 8 and np.median(late) == pytest.approx(bpm, rel=0.02), np.median(late)


def offbeat_section_odf(loud_from_s, loud_s, after_s, seed, bpm=120.0):
    """Onset strength of 8ths at `bpm`, the beats loud and the off-beats soft (1 and 0.35), except for `loud_s`
    from `loud_from_s` where the off-beats are the louder (1.6 and 0.7, as in a fill or a section on the "and"):
    (onset strength per hop, the first beat's time)."""
    rng = np.random.default_rng(seed)
    total = loud_from_s + loud_s + after_s
    odf = np.abs(rng.normal(0.0, 0.02, int(total / HOP_S)))
    for k, t in enumerate(np.arange(0.5, total, 30.0 / bpm)):
        loud = loud_from_s <= t < loud_from_s + loud_s
        on = k % 2 == 0
        level = (0.7 if on else 1.6) if loud else (1.0 if on else 0.35)
        odf[min(int(round(t / HOP_S)), len(odf) - 1)] += level * rng.uniform(0.85, 1.15)
    return odf, 0.5


def share_on_the_offbeat(settings, odf, first_s, after_s, bpm=120.0):
    tracker = BeatTracker(HOP_S, settings)
    beats = np.array([(i + 1) * HOP_S for i, x in enumerate(odf) if tracker.update(x).beat])
    phase = ((beats[beats > after_s] - first_s) * bpm / 60.0) % 1.0
    return float(np.mean(np.abs(phase - 0.5) < 0.15))


@pytest.mark.parametrize("seed", range(6))
def test_a_held_phase_stays_on_the_beat_through_bars_whose_off_beats_are_louder(seed):
    """`phase_hold_s`: after 30 s on the beat, 6 s of louder off-beats do not move the grid. Without the hold
    (phase_hold_s 0) the grid goes to the off-beat for 5 of these 6 seeds (0.36-0.47 of the beats after 30 s)."""
    odf, first = offbeat_section_odf(30.0, 6.0, 10.0, seed)
    assert share_on_the_offbeat(BeatSettings(), odf, first, 30.0) == 0.0


def last_offbeat_s(settings, odf, first_s, bpm=120.0):
    tracker = BeatTracker(HOP_S, settings)
    beats = np.array([(i + 1) * HOP_S for i, x in enumerate(odf) if tracker.update(x).beat])
    off = beats[np.abs(((beats - first_s) * bpm / 60.0) % 1.0 - 0.5) < 0.15]
    return float(off[-1]) if len(off) else 0.0


@pytest.mark.parametrize("seed", range(3))
def test_a_phase_taken_on_the_off_beat_at_the_start_is_still_left(seed):
    """The hold starts `phase_hold_s` after the phase was picked, so a piece that opens with 8 s of louder
    off-beats leaves them as soon as without a hold (last off-beat beat at 14.3-14.8 s for seeds 0-5 either
    way); held from the start it stays there 3-4 s longer (17.3-18.3 s). Bounds 1.4 beats from either."""
    odf, first = offbeat_section_odf(0.0, 8.0, 20.0, seed)
    assert last_offbeat_s(BeatSettings(), odf, first) < 15.5
    assert last_offbeat_s(BeatSettings(phase_hold_s=0.01), odf, first) > 16.5


def test_downbeats_follow_the_chord_changes():
    piece = next(p for p in beat_synth.PIECES if p.name == "house_124")
    x, ref, pos = beat_synth.render(piece)
    a = analyze_samples(x, CFG)
    ok = total = 0
    for t, b in zip(a.beats_s, a.beat_in_bar):
        i = np.argmin(np.abs(ref - t))
        if t > 12.0 and abs(ref[i] - t) < 0.07:
            total += 1
            ok += pos[i] == b
    assert total > 20 and ok / total >= 0.8, (ok, total)      # a quality target; measured 1.0


def chord_bars(meter, bars, kick_on, bpm=120.0, lengths=None, settings=BeatSettings()):
    """Feed a tracker clicks at `bpm` whose chords alternate C major / A minor (two notes shared) by bars of
    `meter` beats (or of `lengths`, one per bar), with a kick only on beat `kick_on` (1-based) of each bar:
    (the tracker's state each hop, click times, their beat in the bar)."""
    period = 60.0 / (bpm * HOP_S)
    c_major, a_minor = np.zeros(12), np.zeros(12)
    c_major[[0, 4, 7]] = 1.0
    a_minor[[9, 0, 4]] = 1.0
    lengths = [meter] * bars if lengths is None else lengths
    # The bar of each beat and its 0-based place in it, and the first beat after the last bar.
    bar_of = np.append(np.repeat(np.arange(len(lengths)), lengths), len(lengths))
    in_bar = np.append(np.concatenate([np.arange(n) for n in lengths]), 0)
    tracker = BeatTracker(HOP_S, settings)
    states, times, pos = [], [], []
    for n in range(1, int((len(bar_of) - 1) * period) + 1):
        beat = int(n // period)                                  # beats since the start, 0 = a bar start
        on = int(n - beat * period) == 0
        chord = c_major if bar_of[beat] % 2 == 0 else a_minor
        kick = 2.0 if on and in_bar[beat] == kick_on - 1 else 0.0
        state = tracker.update(1.0 if on else 0.0, low=kick, mid=0.5 if on else 0.0, chroma=0.1 * chord)
        if on:
            times.append(n * HOP_S)
            pos.append(in_bar[beat] + 1)
        states.append(state)
    return states, np.array(times), np.array(pos)


def test_the_bar_follows_the_chords_over_a_lone_kick_on_beat_three():
    """The downbeat weights fitted on the beat corpus trust a chord change (C major to A minor, two notes
    shared) over a kick that only beat 3 has; the hand-set weights before them picked beat 3."""
    states, times, pos = chord_bars(4, 48, kick_on=3)
    bar_starts = times[pos == 1]
    downbeats = [(i + 1) * HOP_S for i, s in enumerate(states) if s.downbeat]
    late = [t for t in downbeats if t > 0.75 * len(states) * HOP_S]
    # Each late downbeat within a quarter beat of a bar start (the tracker's beats sit within a few hops of
    # the clicks), where the old weights put every one on beat 3, two beats (1.0 s) away.
    near = [min(abs(t - b) for b in bar_starts) for t in late]
    assert len(late) >= 10 and max(near) < 0.25 * 60.0 / 120.0, near


def test_a_downbeat_cue_places_the_bar_where_onsets_and_chords_say_nothing():
    """Equal clicks over one chord: the onsets and chords give no bar. A downbeat probability on every fourth
    click (the analyzer passes its beat network's) puts the downbeats on those clicks, wherever they are;
    with `downbeat_cue_weight` 0 the cue is ignored."""
    period = 60.0 / (120.0 * HOP_S)
    chord = np.zeros(12)
    chord[[0, 4, 7]] = 0.1
    downbeats = {}
    for weight in (0.0, BeatSettings().downbeat_cue_weight):
        for cued in (1, 2):
            tracker = BeatTracker(HOP_S, BeatSettings(downbeat_cue_weight=weight))
            hops = int(48 * 4 * period)
            found = []
            for n in range(1, hops + 1):
                beat = int(n // period)
                on = int(n - beat * period) == 0
                state = tracker.update(1.0 if on else 0.0, low=1.0 if on else 0.0, mid=0.5 if on else 0.0,
                                       chroma=chord, downbeat=0.6 if on and beat % 4 == cued else 0.0)
                if state.downbeat and n > 0.75 * hops:
                    found.append(n / period)                  # in beats since the start
            downbeats[weight, cued] = np.array(found)
    for cued in (1, 2):
        late = downbeats[BeatSettings().downbeat_cue_weight, cued]
        # Within a quarter beat of a cued click: beat numbers near cued modulo 4.
        off = (late - cued + 2.0) % 4.0 - 2.0
        assert len(late) >= 10 and np.abs(off).max() < 0.25, off
    assert np.array_equal(downbeats[0.0, 1], downbeats[0.0, 2])


@pytest.mark.parametrize("memory_s, follows", [(BeatSettings().bar_memory_s, True), (20.0, False)])
def test_the_bar_follows_a_two_beat_bar_within_four_bars(memory_s, follows):
    """Songs put in a bar of 2 (or drop a beat at a break): every later downbeat moves two beats. The bar
    evidence forgets in `bar_memory_s` (6 s): each bar of 2 s keeps exp(-2/6) = 0.72 of the old sums, where
    the 20 s the meter uses would keep 0.90. Measured: 2 downbeats after the bar of 2 still on the old count
    at 6 s, 6 at 20 s; the test allows 4."""
    lengths = [4] * 16 + [2] + [4] * 12
    states, times, pos = chord_bars(4, 0, 1, lengths=lengths, settings=BeatSettings(bar_memory_s=memory_s))
    bar_starts = times[pos == 1]
    shift_s = bar_starts[16]                                     # the start of the bar of 2
    downbeats = np.array([(i + 1) * HOP_S for i, s in enumerate(states) if s.downbeat])
    late = downbeats[downbeats > shift_s + 2 * 0.5 + 4 * 2.0]   # after the bar of 2 and four bars of 4
    near = np.array([np.min(np.abs(bar_starts - t)) for t in late])
    assert len(late) >= 6
    # a quarter beat (0.125 s) against the two beats (1 s) a downbeat on the old count is off by
    assert bool(np.all(near < 0.125)) == follows, near


def test_a_waltz_is_counted_in_three_and_four_four_stays_in_four():
    """Chords that change every 3 beats (a kick on 1) make the tracker count in 3 within the settling it is
    given (beat 24, then 8 beats of a clear lead), with the bar on the chord changes; the same music in bars of 4
    stays in 4, and so does a 4/4 bar whose only kick is on beat 3."""
    for meter, kick_on in ((3, 1), (4, 1), (4, 3)):
        states, times, pos = chord_bars(meter, 32 if meter == 3 else 24, kick_on)
        beats = [s for s in states if s.beat]
        late = [s.beat_in_bar for s in beats[-3 * meter:]]
        assert max(late) == meter and late == late[:meter] * 3, (meter, kick_on, late)
        # Downbeats within a quarter beat of a bar start.
        downbeats = np.array([(i + 1) * HOP_S for i, s in enumerate(states) if s.downbeat])
        last = downbeats[downbeats > times[-1] - 4 * meter * 0.5]
        starts = times[pos == 1]
        assert len(last) >= 3 and max(np.min(np.abs(starts - t)) for t in last) < 0.125, (meter, kick_on, last)


def test_fit_downbeats_learns_the_bar_from_the_chords_of_pieces_it_did_not_hear(tmp_path):
    """scripts/fit-downbeats.py on four synthetic pieces whose chords change every bar (Am F C G) and whose
    kicks are no help (four on the floor in house, kicks on 1 and 3 in rock): out of fold (each piece scored by
    weights fitted on the other three) the bar is right nearly everywhere, and harmony weighs in."""
    for piece in (beat_synth.Piece("h", (beat_synth.Section(12, 124.0),), seed=21),
                  beat_synth.Piece("r", (beat_synth.Section(10, 96.0, pattern="rock"),), seed=22),
                  beat_synth.Piece("o", (beat_synth.Section(12, 132.0, pattern="offbeat"),), seed=23),
                  beat_synth.Piece("d", (beat_synth.Section(16, 170.0, pattern="dnb"),), seed=24)):
        x, ref, pos = beat_synth.render(piece)
        write_wav(tmp_path / f"{piece.name}.wav", np.stack([x, x], axis=1))
        (tmp_path / f"{piece.name}.beats").write_text("".join(f"{t:.6f}\t{b}\n" for t, b in zip(ref, pos)))
    script = Path(__file__).resolve().parents[1] / "scripts" / "fit-downbeats.py"
    done = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    print(done.stdout)
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith(str(tmp_path)))
    share = float(line.split("bar right at ")[1].split()[0])
    weights = [float(v) for v in done.stdout.split("over two):")[1].strip(" []\n").split()]
    # Out of fold on 4 pieces: the bar switches late at the start at worst (the first 2 bars are not scored,
    # the leak needs a bar or two more): 0.8 leaves 4 bars in 20 for that; measured 1.000.
    assert "4 pieces" in line and share >= 0.8, line
    assert weights[2] + weights[3] > 0, weights                # chords changing on the bar say downbeat


def test_lookahead_reports_beats_earlier():
    x, _ = clicks(120.0, 14.0)
    plain = analyze_samples(x, CFG).beats_s
    early = analyze_samples(x, CFG, BeatSettings(lookahead_s=0.05)).beats_s
    plain, early = plain[plain > 6], early[early > 6]
    shift = [t - early[np.argmin(np.abs(early - t))] for t in plain]
    assert np.median(shift) == pytest.approx(0.05, abs=HOP_S)     # beats fall on hops; measured 43 ms


def test_results_do_not_change_when_later_audio_is_appended():
    piece = next(p for p in beat_synth.PIECES if p.name == "tempo_change_120_135")
    x, _, _ = beat_synth.render(piece)
    n = 12 * SR
    short, whole = features(x[:n]), features(x)
    assert len(short) < len(whole)
    # Bit-identical on any CPU: the same code on the same samples; only later audio is added.
    for a, b in zip(short, whole):
        for field in dataclasses.fields(a):
            np.testing.assert_array_equal(getattr(a, field.name), getattr(b, field.name))


# ---- manual control ----------------------------------------------------------------------------------

def hush(seconds):
    return np.zeros(max(0, int(round(seconds * SR))), np.float32)


def test_tap_tempo_sets_tempo_and_phase():
    an = Analyzer(CFG)
    an.process(hush(1.0))
    for t in (1.0, 1.6, 2.2, 2.8):                           # 100 BPM, a beat on each tap
        an.process(hush(t - an.hops * HOP_S))
        an.beats.tap(t)
    feats = an.process(hush(4.0))
    assert feats[-1].bpm == pytest.approx(100.0, rel=0.01)
    beats = beat_times(feats)
    expected = 2.8 + 0.6 * np.arange(1, 7)
    assert len(beats) >= 6
    np.testing.assert_allclose(beats[:6], expected, atol=2 * HOP_S)
    # A long pause starts a new tap sequence; one tap alone changes nothing.
    an.beats.tap(an.hops * HOP_S)
    assert an.process(hush(0.5))[-1].bpm == pytest.approx(100.0, rel=0.01)
    an.beats.release()
    an.process(hush(0.1))
    assert not an.beats.latest.manual_bpm


def test_set_bpm_wins_over_the_music_until_released():
    x, _ = clicks(120.0, 20.0)
    an = Analyzer(CFG)
    an.process(x[:8 * SR])
    an.beats.set_bpm(126.0)
    mid = an.process(x[8 * SR:14 * SR])
    assert all(f.bpm == pytest.approx(126.0) for f in mid)
    an.beats.set_bpm(None)
    end = an.process(x[14 * SR:])
    assert end[-1].bpm == pytest.approx(120.0, rel=0.01)


def test_lock_holds_tempo_and_phase_through_other_music():
    a, kicks = clicks(120.0, 10.0)
    b, _ = clicks(150.0, 8.0, start_s=0.1, seed=1)
    an = Analyzer(CFG)
    an.process(a)
    an.beats.lock()
    feats = an.process(b)
    beats = beat_times(feats)
    assert len(beats) >= 14 and all(f.bpm == pytest.approx(120.0, rel=0.01) for f in feats)
    grid = kicks[-1] + 0.5 * np.round((beats - kicks[-1]) / 0.5)
    assert np.max(np.abs(beats - grid)) < 0.03                 # still on the old grid
    an.beats.lock(False)
    feats = an.process(clicks(150.0, 10.0, start_s=0.0, seed=2)[0])
    assert feats[-1].bpm == pytest.approx(150.0, rel=0.02)


def test_resync_makes_the_next_beat_a_downbeat():
    x, _ = clicks(120.0, 16.0)
    an = Analyzer(CFG)
    an.process(x[:8 * SR])
    an.beats.resync()
    feats = an.process(x[8 * SR:])
    bars = [f.beat_in_bar for f in feats if f.beat]
    assert bars[:6] == [1, 2, 3, 4, 1, 2]
    assert feats[[f.beat for f in feats].index(True)].downbeat


def test_nudge_moves_the_beat_grid():
    x, _ = clicks(120.0, 12.0)
    an = Analyzer(CFG)
    feats = an.process(x[:10 * SR])
    i = 10 * SR
    while not feats[-1].beat:                                   # stop right after a beat
        feats = an.process(x[i:i + CFG.hop_samples])
        i += CFG.hop_samples
    before = an.beats.latest.next_beat_s
    an.beats.nudge(0.25)                                        # a quarter beat earlier
    feats = an.process(x[i:i + CFG.hop_samples])
    assert feats[-1].next_beat_s == pytest.approx(before - 0.125, abs=1.5 * HOP_S)
    assert feats[-1].beat_phase > 0.25
    an.beats.nudge(-0.5)                                        # now a quarter beat late
    feats = an.process(x[i + CFG.hop_samples:i + 2 * CFG.hop_samples])
    assert feats[-1].next_beat_s == pytest.approx(before + 0.125, abs=1.5 * HOP_S)
    assert BeatTracker(HOP_S).latest.bpm == 0.0                # a fresh tracker knows nothing


# ---- onsets per band, timbre, sections --------------------------------------------------------------

@pytest.mark.skipif(not (MADMOM / "sample.wav").exists(), reason=f"no annotated sample at {MADMOM}")
def test_onsets_match_human_annotations_with_mir_eval():
    x = decode_file(MADMOM / "sample.wav", SR).mean(axis=1)
    ref = np.loadtxt(MADMOM / "sample.onsets")
    found = analyze_samples(x, CFG).onsets_s
    f, _, _ = mir_eval.onset.f_measure(ref, found, window=0.05)
    print(f"madmom sample.wav onset F-measure (mir_eval, +-50 ms): {f:.3f}")
    assert f >= 0.85                # a quality target; measured 0.933 on every kernel tried


def _one_shot(sample, times, seconds=4.0):
    x = np.zeros(int(seconds * SR), np.float32)
    for t in times:
        i = int(t * SR)
        x[i:i + len(sample)] += 0.5 * sample[:len(x) - i]
    return x


def test_band_onsets_tell_kick_from_hats():
    rng = np.random.default_rng(0)
    samples = beat_synth._samples(rng)
    times = [0.5, 1.1, 1.7, 2.3, 2.9]
    k = features(_one_shot(kick(), times))                     # a sine kick, no beater click
    h = features(_one_shot(samples["chh"], times))
    assert sum(f.kick_onset for f in k) == len(times) and sum(f.hat_onset for f in k) <= 1
    assert sum(f.hat_onset for f in h) == len(times) and sum(f.kick_onset for f in h) == 0
    assert max(f.kick for f in k) > 0.5 and max(f.hat for f in k) < 0.3
    # The envelope decays after each hit (drum_release_s = 0.15 s).
    after = [f.kick for f in k if 0.9 < f.t_s < 1.05]
    assert after[-1] < 0.3 * max(f.kick for f in k)


def test_chroma_brightness_and_percussive_share():
    t = np.arange(3 * SR) / SR
    a440 = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    f = features(a440)[-1]
    assert int(np.argmax(f.chroma)) == 9 and f.chroma.max() == pytest.approx(1.0, abs=0.05)   # A
    assert f.tonal > 0.5 and f.percussive < 0.1
    low = features((0.3 * np.sin(2 * np.pi * 100 * t)).astype(np.float32))[-1]
    high = features((0.3 * np.sin(2 * np.pi * 6000 * t)).astype(np.float32))[-1]
    assert low.brightness < f.brightness < high.brightness
    assert high.centroid_hz == pytest.approx(6000, rel=0.05)
    rng = np.random.default_rng(1)
    chord = sum(np.sin(2 * np.pi * hz * t) for hz in (220.0, 277.2, 329.6)).astype(np.float32) * 0.2
    assert features(chord)[-1].percussive < 0.05
    hits = beat_synth._samples(rng)
    assert features(_one_shot(hits["chh"], np.arange(0.2, 3.0, 0.25), 3.0))[-1].percussive > 0.8
    assert features(_one_shot(hits["snare"], np.arange(0.2, 3.0, 0.25), 3.0))[-1].percussive > 0.3


def test_sections_of_the_demo_track():
    sections = {s.name: s for s in demo_sections(64.0)}
    feats = features(demo_track(SR, 64.0).mean(axis=1))
    at = lambda lo, hi: [f for f in feats if lo <= f.t_s < hi]          # noqa: E731
    groove, brk, drop = sections["groove"], sections["breakdown"], sections["drop"]
    assert max(f.breakdown for f in at(groove.start_s + 6, groove.end_s)) < 0.2
    assert np.mean([f.breakdown for f in at(brk.start_s + 3, brk.end_s)]) > 0.5
    assert "breakdown" in {f.section for f in at(brk.start_s, brk.end_s)}
    assert max(f.drop for f in at(drop.start_s, drop.start_s + 2)) > 0.9
    assert max(f.drop for f in at(groove.start_s + 6, groove.end_s)) < 0.5


def test_every_source_is_reported_and_finite():
    feats = features(demo_track(SR, 16.0).mean(axis=1))
    for f in feats[::50]:
        src = f.sources()
        assert tuple(src) == SOURCE_NAMES
        assert all(np.isfinite(v) for v in src.values())
        assert f.section in ("steady", "buildup", "drop", "breakdown")
    assert Features().sources()["chroma_hue"] == 0.0
    assert any(f.beat for f in feats) and any(f.kick_onset for f in feats)


# ---- vj analyze ----------------------------------------------------------------------------------------

def test_vj_analyze_writes_beats_onsets_and_tempo(tmp_path):
    x, kicks = clicks(120.0, 14.0)
    wav = write_wav(tmp_path / "kicks_120bpm_48k.wav", np.stack([x, x], axis=1))
    out = {k: tmp_path / f"out.{k}" for k in ("beats", "onsets", "tempo")}
    r = subprocess.run([sys.executable, "-m", "vj.cli", "analyze", str(wav), "--beats", str(out["beats"]),
                        "--onsets", str(out["onsets"]), "--tempo", str(out["tempo"])],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "beats" in r.stdout and "BPM" in r.stdout
    beats = np.loadtxt(out["beats"], ndmin=2)
    assert beats.shape[1] == 2 and set(beats[:, 1]) <= {1, 2, 3, 4}
    ref = mir_eval.beat.trim_beats(kicks)
    # Quality targets on clean kicks (measured 1.0): every kick a beat and an onset, but the first few.
    assert mir_eval.beat.f_measure(ref, mir_eval.beat.trim_beats(beats[:, 0])) > 0.9
    onsets = np.loadtxt(out["onsets"], ndmin=1)
    assert mir_eval.onset.f_measure(kicks, onsets, window=0.05)[0] > 0.9
    tempo = np.loadtxt(out["tempo"], ndmin=2)
    assert tempo.shape == (len(beats), 3) and np.median(tempo[:, 1]) == pytest.approx(120.0, rel=0.01)


def test_vj_analyze_missing_and_unreadable_files(tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_text("this is not audio\n")
    for path in (tmp_path / "nope.wav", bad):
        r = subprocess.run([sys.executable, "-m", "vj.cli", "analyze", str(path), "--beats", str(tmp_path / "b")],
                           capture_output=True, text=True, timeout=60)
        lines = [line for line in r.stderr.splitlines() if line.startswith("vj: error:")]
        assert r.returncode != 0 and "Traceback" not in r.stderr
        assert len(lines) == 1 and path.name in lines[0]
        assert not (tmp_path / "b").exists()
