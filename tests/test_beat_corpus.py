"""scripts/beat-corpus.py: beats and bars from a MIDI tempo map, drums written on them, and rendered audio
whose kicks land on the annotated beats."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import mido
import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "beat-corpus.py"
_spec = importlib.util.spec_from_file_location("beat_corpus", SCRIPT)
bc = importlib.util.module_from_spec(_spec)
sys.modules["beat_corpus"] = bc              # dataclasses look their module up while the class is made
_spec.loader.exec_module(bc)

TPB = 480


def _meta(events: list[tuple[int, mido.MetaMessage]]) -> mido.MidiTrack:
    track, last = mido.MidiTrack(), 0
    for tick, msg in sorted(events, key=lambda e: e[0]):
        track.append(msg.copy(time=tick - last))
        last = tick
    return track


def changing_piece(kick_every_beat: bool = True) -> mido.MidiFile:
    """4 beats of 4/4 at 120, 4 at 90, 6 of 3/4 ramping from 90 to 150 a beat at a time, then 12/8 at 150 (a
    dotted-quarter beat every 720 ticks): 26 beats, a kick on each."""
    sig = lambda t, n, d: (t, mido.MetaMessage("time_signature", numerator=n, denominator=d))  # noqa: E731
    tempo = lambda t, bpm: (t, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm)))       # noqa: E731
    events = [sig(0, 4, 4), tempo(0, 120), tempo(4 * TPB, 90), sig(8 * TPB, 3, 4)]
    events += [tempo((8 + k) * TPB, 90 + 10 * k) for k in range(1, 7)]
    events += [sig(14 * TPB, 12, 8)]
    mid = mido.MidiFile(type=1, ticks_per_beat=TPB)
    mid.tracks.append(_meta(events))
    beats = [k * TPB for k in range(14)] + [14 * TPB + k * 720 for k in range(12)]
    notes = []
    for t in beats if kick_every_beat else beats[-1:]:
        notes += [(t, mido.Message("note_on", channel=9, note=36, velocity=110)),
                  (t + TPB // 8, mido.Message("note_off", channel=9, note=36))]
    mid.tracks.append(_meta(notes))
    return mid


def expected_beats() -> tuple[np.ndarray, list[int]]:
    spb = lambda bpm: mido.bpm2tempo(bpm) * 1e-6      # noqa: E731 (MIDI keeps whole microseconds a beat)
    t = [spb(120) * k for k in range(5)]                # 120 BPM up to beat 4
    t += [t[-1] + k * spb(90) for k in range(1, 6)]     # 90 BPM up to beat 9
    for bpm in (100, 110, 120, 130, 140):               # a new tempo each beat, up to the 12/8 bar
        t.append(t[-1] + spb(bpm))
    t += [t[-1] + k * 1.5 * spb(150) for k in range(1, 12)]
    bars = [1, 2, 3, 4] * 2 + [1, 2, 3] * 2 + [1, 2, 3, 4] * 3
    return np.array(t), bars


def test_beats_and_bars_come_from_the_tempo_map_and_time_signatures():
    mid = changing_piece()
    grid = bc.beat_grid(mid)
    want_t, want_bars = expected_beats()
    assert [b for _, b in grid] == want_bars
    got = bc.tempo_map(mid).to_seconds([t for t, _ in grid])
    np.testing.assert_allclose(got, want_t, rtol=0, atol=1e-9)          # float64 sums of a few terms
    # A pickup: bar 1 starts on the file's second beat.
    assert [b for _, b in bc.beat_grid(mid, bar_shift=3)][:5] == [4, 1, 2, 3, 4]
    # An excerpt: times from its start, only the beats inside it.
    part = bc.beats_in(mid, 0, 1.2, 3.0)
    assert [b for _, b in part] == [4, 1, 2, 3, 4] and part[0][0] == pytest.approx(0.3)


def test_written_drums_follow_the_meter_and_the_swing():
    mid = changing_piece(kick_every_beat=False)
    grid = [t for t, _ in bc.beat_grid(mid)]
    track = bc.drum_track(mid, ((0, "four"),))
    ticks = np.cumsum([m.time for m in track])
    kicks = [t for t, m in zip(ticks, track) if m.type == "note_on" and m.note == bc.KICK]
    # Four on the floor in 4/4 and in 12/8 (each dotted-quarter beat); a waltz's kick on 1 in 3/4.
    want = [t for t, b in bc.beat_grid(mid) if t < 8 * TPB or t >= 14 * TPB or b == 1]
    assert kicks == [round(t) for t in want]

    swung = bc.drum_track(mid, ((0, "backbeat"),), swing=2 / 3)
    ticks = np.cumsum([m.time for m in swung])
    hats = [t for t, m in zip(ticks, swung) if m.type == "note_on" and m.note == bc.CHH and t < 4 * TPB]
    assert hats == [round(b + f * TPB) for b in grid[:4] for f in (0, 2 / 3)]      # off 8ths on the triplet


def _tools():
    soundfont = next((sf for sf in bc.SOUNDFONTS if sf.is_file()), None)
    missing = [t for t in ("fluidsynth", "sox") if shutil.which(t) is None] + ([] if soundfont else ["soundfont"])
    return soundfont, missing


def test_rendered_kicks_land_on_the_annotated_beats(tmp_path):
    """FluidSynth's file player sends a MIDI event at the start of the first 64-sample block whose time in
    whole milliseconds, in ticks rounded to the nearest, has reached the event's tick. The script renders a
    flattened file (one tempo, 50 us ticks), so a kick sounds between half a tick early and one block plus
    1 ms late, wherever it is; without flattening the error builds up at each tempo change (this piece has
    seven). Measured against the kick's own attack (the first kick, at sample 0, fires exactly), every beat
    of the excerpt must be inside that window, widened by a sample and the .beats file's 0.05 ms rounding."""
    from vj.audio.decode import decode_file

    soundfont, missing = _tools()
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (scripts/setup-system.sh installs them)")
    mid = changing_piece()
    sr = bc.SAMPLE_RATE_HZ
    bc.render(mid, tmp_path / "full.wav", soundfont)
    start_s, duration_s = 1.3, 13.0                      # starts 0.2 s before a beat, past the 10 ms fade
    bc.excerpt(tmp_path / "full.wav", tmp_path / "piece.flac", start_s, duration_s)
    bc.write_beats(tmp_path / "piece.beats", bc.beats_in(mid, 0, start_s, duration_s))

    def onset_s(x: np.ndarray, t_s: float) -> float:
        """First sample above a tenth of the peak in the 40 ms around t_s."""
        i0 = max(int(round((t_s - 0.02) * sr)), 0)
        seg = np.abs(x[i0:i0 + int(0.04 * sr)])
        return (i0 + int(np.argmax(seg > 0.1 * np.abs(x).max()))) / sr

    full = decode_file(tmp_path / "full.wav", sr).mean(axis=1)
    attack_s = onset_s(full, 0.0)
    assert 0 <= attack_s < 0.01
    piece = decode_file(tmp_path / "piece.flac", sr).mean(axis=1)
    assert len(piece) == round(duration_s * sr)
    rows = [line.split("\t") for line in (tmp_path / "piece.beats").read_text().splitlines()]
    assert [int(b) for _, b in rows] == [b for t, b in zip(*expected_beats()) if start_s <= t < start_s + duration_s]
    lags = np.array([onset_s(piece, float(t)) - float(t) - attack_s for t, _ in rows])
    tick_s = bc.FLAT_TEMPO_US * 1e-6 / bc.FLAT_TPB       # 50 us
    slack = 1 / sr + 0.00005
    assert lags.min() >= -tick_s / 2 - slack, lags
    assert lags.max() <= 64 / sr + 0.001 + tick_s / 2 + slack, lags


@pytest.mark.skipif(not Path("/usr/share/mma/lib/stdlib").is_dir(), reason="mma (apt) is not installed")
def test_extra_training_music_shares_no_groove_file_with_the_corpus():
    import re
    extra = bc.extra_pieces()
    corpus_grooves = {part.groove.lower() for p in bc.PIECES for part in p.mma}
    files_of = {}
    for path in bc.MMA_LIB.glob("*.mma"):
        for name in re.findall(r"^\s*DefGroove\s+(\S+)", path.read_text(errors="replace"), re.M | re.I):
            files_of.setdefault(name.lower(), set()).add(path)
    corpus_files = set().union(*(files_of.get(g, set()) for g in corpus_grooves))
    assert len(extra) > 50 and len({p.name for p in extra}) == len(extra)
    for p in extra:
        (part,) = p.mma
        assert not files_of[part.groove.lower()] & corpus_files, p.name     # out-of-fold scores stay out of fold
        assert 70 <= p.bpm <= 180 and part.bars == 32
    assert [p.bpm for p in bc.extra_pieces()] == [p.bpm for p in extra]       # seeded: the same music each time
