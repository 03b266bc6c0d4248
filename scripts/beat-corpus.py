#!/usr/bin/env python3
"""Builds the beat-tracking development corpus: real music rendered from MIDI, with exact beats and bars.

    python scripts/beat-corpus.py OUT_DIR [--only NAME,...] [--soundfont FILE.sf2] [--list]

Each piece is a MIDI file from a Debian package (OpenTTD's OpenMSX set, Simutrans' music) or a song
written here for MMA (Musical MIDI Accompaniment) to arrange in one of its library grooves. Where a piece
has no drums, or its own are taken out, a drum track that follows the meter is written into it (channel 10:
four-on-the-floor, backbeat, swung hats, off-beat hats, half-time, breakbeat, quiet intros, breaks).
FluidSynth renders it with a General MIDI soundfont, and an excerpt goes to OUT_DIR as NAME.flac (44.1 kHz,
16 bit) with NAME.beats beside it in the format `vj analyze --beats` writes: one beat per line,
`seconds<TAB>beat in bar` (1 = downbeat). OUT_DIR/README.md lists each piece, its source and licence.

The beats come from the MIDI file itself: its tempo map gives each beat's time and its time signatures give
the bars (a compound meter such as 6/8 or 12/8 counts dotted quarters). FluidSynth's file player re-anchors
its clock at every tempo change to the block it is in, rounded to a tick, and the error builds up: 80
tempo changes put the kicks of a test file 20 ms early. So the file it renders is first re-timed to one
constant tempo at 50 us a tick (`flatten`); every note then starts within a 64-sample block and a
millisecond after its time, wherever it is in the piece (tests/test_beat_corpus.py measures it).

Everything is deterministic: MMA's random timing and velocities are seeded, the drum writer's velocities
come from a seeded generator, FluidSynth has no random parts, and sox runs in repeatable mode without
dither. The same packages give the same files.

Needs (Debian): fluidsynth fluid-soundfont-gm mma openttd-openmsx simutrans-data sox; mido (vj's
requirements). The LMMS and Hydrogen demo songs are held out for acceptance testing and are never used here.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mido
import numpy as np

SAMPLE_RATE_HZ = 44100
SOUNDFONTS = (Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"), Path("/usr/share/sounds/sf2/TimGM6mb.sf2"))
APT_PACKAGES = ("fluidsynth", "fluid-soundfont-gm", "mma", "openttd-openmsx", "simutrans-data", "sox")
FLAT_TPB = 10000                     # ticks per beat of the flattened file: at 120 BPM one tick is 50 us
FLAT_TEMPO_US = 500000
DRUM_CHANNEL = 9                     # General MIDI channel 10


# ---------------------------------------------------------------------------------------------------------
# Time: the tempo map and the beat grid of a MIDI file

@dataclass(frozen=True)
class TempoMap:
    """Piecewise-constant tempo: segment i starts at `ticks[i]` = `seconds[i]` with `us_per_beat[i]`."""

    tpb: int
    ticks: np.ndarray                # (n,) int
    seconds: np.ndarray              # (n,) float64
    us_per_beat: np.ndarray          # (n,) float64

    def to_seconds(self, ticks) -> np.ndarray:
        t = np.asarray(ticks, dtype=np.float64)
        i = np.searchsorted(self.ticks, t, side="right") - 1
        return self.seconds[i] + (t - self.ticks[i]) * self.us_per_beat[i] * 1e-6 / self.tpb


def _absolute(track: mido.MidiTrack):
    """(absolute tick, message) for each message of a track."""
    t = 0
    for msg in track:
        t += msg.time
        yield t, msg


def tempo_map(mid: mido.MidiFile) -> TempoMap:
    """The tempo map of a type 0 or 1 file: set_tempo in any track applies to all (as mido and players do)."""
    changes = {0: 500000}
    for track in mid.tracks:
        for t, msg in _absolute(track):
            if msg.type == "set_tempo":
                changes[t] = msg.tempo
    ticks = np.array(sorted(changes), dtype=np.int64)
    us = np.array([changes[t] for t in ticks], dtype=np.float64)
    seconds = np.concatenate(([0.0], np.cumsum(np.diff(ticks) * us[:-1] * 1e-6 / mid.ticks_per_beat)))
    return TempoMap(mid.ticks_per_beat, ticks, seconds, us)


def time_signatures(mid: mido.MidiFile) -> list[tuple[int, int, int]]:
    """(tick, numerator, denominator), 4/4 from tick 0 when the file names none there."""
    sigs = {0: (4, 4)}
    for track in mid.tracks:
        for t, msg in _absolute(track):
            if msg.type == "time_signature":
                sigs[t] = (msg.numerator, msg.denominator)
    return [(t, *sigs[t]) for t in sorted(sigs)]


def meter(numerator: int, denominator: int) -> tuple[int, float]:
    """(beats per bar, beat length in quarter notes): 6/8, 9/8, 12/8 count dotted quarters."""
    if denominator == 8 and numerator % 3 == 0 and numerator >= 6:
        return numerator // 3, 1.5
    return numerator, 4.0 / denominator


def last_note_tick(mid: mido.MidiFile) -> int:
    end = 0
    for track in mid.tracks:
        for t, msg in _absolute(track):
            if msg.type in ("note_on", "note_off"):
                end = max(end, t)
    return end


def beat_grid(mid: mido.MidiFile, end_tick: int | None = None, bar_shift: int = 0) -> list[tuple[float, int]]:
    """(tick, beat in bar) of every beat up to `end_tick`; each time signature starts a bar. `bar_shift`
    renumbers the beats of a piece whose bar 1 does not start at its first time signature (a pickup)."""
    end = last_note_tick(mid) if end_tick is None else end_tick
    sigs = time_signatures(mid)
    beats = []
    for k, (t0, num, den) in enumerate(sigs):
        t1 = sigs[k + 1][0] if k + 1 < len(sigs) else end + 1
        per_bar, quarters = meter(num, den)
        step = quarters * mid.ticks_per_beat
        n = 0
        while t0 + n * step < t1 and t0 + n * step <= end:
            beats.append((t0 + n * step, (n + bar_shift) % per_bar + 1))
            n += 1
    return beats


def flatten(mid: mido.MidiFile) -> mido.MidiFile:
    """The same music at one constant tempo: every event keeps its time in seconds to within 25 us."""
    tmap = tempo_map(mid)
    out = mido.MidiFile(type=1, ticks_per_beat=FLAT_TPB)
    per_s = FLAT_TPB / (FLAT_TEMPO_US * 1e-6)
    for k, track in enumerate(mid.tracks):
        events = [(t, msg) for t, msg in _absolute(track) if msg.type not in ("set_tempo", "end_of_track")]
        ticks = np.rint(tmap.to_seconds([t for t, _ in events]) * per_s).astype(np.int64) if events else []
        new = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=FLAT_TEMPO_US, time=0)] if k == 0 else [])
        last = 0
        for tick, (_, msg) in zip(ticks, events):
            new.append(msg.copy(time=int(tick - last)))
            last = int(tick)
        new.append(mido.MetaMessage("end_of_track", time=0))
        out.tracks.append(new)
    return out


# ---------------------------------------------------------------------------------------------------------
# Drums written into a piece, following its meter

KICK, RIM, SNARE, CLAP, CHH, PHH, OHH, CRASH, RIDE, SHAKER = 36, 37, 38, 39, 42, 44, 46, 49, 51, 70
FAMILIES = {"kick": (35, 36), "snare": (37, 38, 39, 40), "hats": (42, 44, 46, 70), "cymbals": (49, 51, 52, 55, 57)}

# Positions in beats within a bar of four (a bar of three takes those below 3) -> velocity. "8" and "16"
# hats are filled in per bar and moved by the piece's swing.
PATTERNS: dict[str, dict[int, object]] = {
    "four": {KICK: [(0, 112), (1, 108), (2, 112), (3, 108)], CLAP: [(1, 96), (3, 96)],
             OHH: [(.5, 84), (1.5, 84), (2.5, 84), (3.5, 84)], CHH: "16"},
    "backbeat": {KICK: [(0, 112), (2, 104), (2.5, 80)], SNARE: [(1, 108), (3, 108)], CHH: "8"},
    "swing": {KICK: [(0, 100), (2, 92)], SNARE: [(1, 100), (3, 100)], RIDE: "8", PHH: [(1, 70), (3, 70)]},
    "hiphop": {KICK: [(0, 112), (.75, 84), (2.5, 104)], SNARE: [(1, 112), (3, 112)], CHH: "16"},
    "offbeat": {KICK: [(0, 72), (1, 68), (2, 72), (3, 68)], OHH: [(.5, 120), (1.5, 120), (2.5, 120), (3.5, 120)],
                CHH: [(.25, 60), (.75, 60), (1.25, 60), (1.75, 60), (2.25, 60), (2.75, 60), (3.25, 60), (3.75, 60)]},
    "halftime": {KICK: [(0, 116), (1.75, 84), (3.5, 90)], SNARE: [(2, 118)], CHH: "8"},
    "breakbeat": {KICK: [(0, 116), (.5, 96), (2.5, 104), (2.75, 92)],
                  SNARE: [(1, 112), (1.75, 72), (2.25, 70), (3, 112), (3.75, 76)], RIDE: "8"},
    "softkick": {KICK: [(0, 64), (2.5, 56)], RIM: [(1, 70), (3, 70)], SHAKER: "16"},
    "intro": {CHH: "8"},                         # a quiet start: hats only, softly (velocity scaled below)
    "waltz": {KICK: [(0, 108)], SNARE: [(1, 80), (2, 80)], CHH: "8"},
    "none": {},                                  # a break without drums
}
QUIET = {"intro": 0.45}


def _swung(pos: float, swing: float, swing16: bool) -> float:
    """Move the off 8th (or off 16th) of a straight position to where the swing puts it (0.5 = straight)."""
    beat, frac = divmod(pos, 1.0)
    if swing16:
        half, q = divmod(frac, 0.5)
        return beat + half * 0.5 + (swing / 2 if abs(q - 0.25) < 1e-9 else q)
    return beat + (swing if abs(frac - 0.5) < 1e-9 else frac)


def drum_track(mid: mido.MidiFile, sections: tuple[tuple[int, str], ...], swing: float = 0.5,
               swing16: bool = False, seed: int = 0, bar_shift: int = 0) -> mido.MidiTrack:
    """A channel-10 track playing `sections` ((first bar, pattern), ...) on the piece's own beat grid, with a
    crash on the first beat of each section that has drums, and seeded velocity variation."""
    rng = np.random.default_rng(seed)
    grid = beat_grid(mid, bar_shift=bar_shift)
    beat_ticks = np.array([t for t, _ in grid], dtype=np.float64)
    step = np.diff(beat_ticks, append=beat_ticks[-1] + (beat_ticks[-1] - beat_ticks[-2] if len(grid) > 1 else
                                                         mid.ticks_per_beat))
    starts = [i for i, (_, b) in enumerate(grid) if b == 1]
    notes = []                                   # (tick, note, velocity)
    for bar, first in enumerate(starts):
        per_bar = next((j for j in range(1, len(grid) - first) if grid[first + j][1] == 1), len(grid) - first)
        name = [p for b0, p in sections if b0 <= bar][-1] if any(b0 <= bar for b0, _ in sections) else "none"
        pattern = PATTERNS["waltz" if per_bar == 3 and name not in ("none", "intro") else name]
        gain = QUIET.get(name, 1.0)
        hits = []
        for note, spec in pattern.items():
            if spec == "8":
                spec = [(i * .5, 88 if i % 2 == 0 else 70) for i in range(2 * per_bar)]
            elif spec == "16":
                spec = [(i * .25, (80, 52, 66, 52)[i % 4]) for i in range(4 * per_bar)]
            hits += [(_swung(p, swing, swing16), note, v) for p, v in spec if p < per_bar]
        if name not in ("none", "intro") and any(b0 == bar for b0, _ in sections):
            hits.append((0.0, CRASH, 100))
        for pos, note, vel in hits:
            j = first + int(pos)
            if j >= len(grid):
                continue
            tick = beat_ticks[j] + (pos - int(pos)) * step[j]
            v = int(np.clip(round(vel * gain + rng.normal(0, 6)), 1, 127))
            notes.append((int(round(tick)), note, v))
    events = []
    for tick, note, vel in notes:
        events.append((tick, 1, mido.Message("note_on", channel=DRUM_CHANNEL, note=note, velocity=vel)))
        events.append((tick + mid.ticks_per_beat // 8, 0, mido.Message("note_off", channel=DRUM_CHANNEL, note=note)))
    events.sort(key=lambda e: (e[0], e[1]))
    track = mido.MidiTrack([mido.MetaMessage("track_name", name="drums (beat-corpus)", time=0)])
    last = 0
    for tick, _, msg in events:
        track.append(msg.copy(time=tick - last))
        last = tick
    return track


def strip_drums(mid: mido.MidiFile) -> None:
    """Remove channel-10 notes (the piece's own drums), keeping every track's timing."""
    for k, track in enumerate(mid.tracks):
        new, carry = mido.MidiTrack(), 0
        for msg in track:
            if msg.type in ("note_on", "note_off") and msg.channel == DRUM_CHANNEL:
                carry += msg.time
                continue
            new.append(msg.copy(time=msg.time + carry))
            carry = 0
        mid.tracks[k] = new


def remix(mid: mido.MidiFile, gains: dict[str, float]) -> None:
    """Scale velocities: drum families ("kick", "snare", "hats", "cymbals"), "bass" (GM programs 32-39) and
    "others" (every other pitched part), so that hats or bass dominate a piece."""
    programs: dict[int, int] = {}
    for track in mid.tracks:
        for msg in track:
            if msg.type == "program_change":
                programs.setdefault(msg.channel, msg.program)
    for track in mid.tracks:
        for k, msg in enumerate(track):
            if msg.type != "note_on" or msg.velocity == 0:
                continue
            if msg.channel == DRUM_CHANNEL:
                g = next((gains.get(f, 1.0) for f, notes in FAMILIES.items() if msg.note in notes), 1.0)
            else:
                g = gains.get("bass" if 32 <= programs.get(msg.channel, 0) <= 39 else "others", 1.0)
            track[k] = msg.copy(velocity=int(np.clip(round(msg.velocity * g), 1, 127)))


# ---------------------------------------------------------------------------------------------------------
# Songs for MMA: chord charts written here, arranged in MMA's library grooves

@dataclass(frozen=True)
class Part:
    groove: str
    bars: int
    chords: str                      # one chord a bar, repeated over the part
    tempo: str = ""                  # an MMA tempo command at the part's start: "Tempo 140", "Tempo 150 8"


def mma_text(seed: int, bpm: float, parts: tuple[Part, ...]) -> str:
    lines = [f"RndSeed {seed}", f"Tempo {bpm:g}"]
    for part in parts:
        chords = part.chords.split()
        lines.append(f"Groove {part.groove}")
        if part.tempo:
            lines.append(part.tempo)
        lines += [chords[i % len(chords)] for i in range(part.bars)]
    return "\n".join(lines) + "\n"


POP = "C G Am F"
MINOR = "Am F C G"
DORIAN = "Dm7 Dm7 G7 G7"
BLUES = "C7 C7 C7 C7 F7 F7 C7 C7 G7 F7 C7 G7"
JAZZ = "Dm7 G7 Cmaj7 Cmaj7 Em7 A7 Dm7 G7"
FUNK = "E9 E9 E9 E9 A9 A9 E9 E9"
LATIN = "Am7 D7 Gmaj7 Cmaj7 F#m7b5 B7 Em Em"
DARK = "Fm Fm Db Eb"
SOUL = "Fmaj7 Em7 Dm7 Cmaj7"
COUNTRY = "G G C G D D G G"


# ---------------------------------------------------------------------------------------------------------
# The pieces

OPENMSX = ("openttd-openmsx", "GPL-2.0", "OpenMSX authors (OpenTTD's base music set)",
           "/usr/share/games/openttd/baseset/openmsx/")
SIMUTRANS = ("simutrans-data", "Artistic-1.0", "Simutrans team (the game's music)", "/usr/share/games/simutrans/music/")
MMA = ("mma", "GPL-2.0-or-later (MMA and its groove library); chord chart written for this corpus",
       "arranged by MMA (Bob van der Poel's groove library)", "")


@dataclass(frozen=True)
class Piece:
    name: str
    genre: str
    note: str                        # what it is in the corpus for
    source: tuple[str, str, str, str] = MMA
    file: str = ""                   # MIDI file in the source package
    mma: tuple[Part, ...] = ()
    bpm: float = 120.0               # MMA: starting tempo
    start_s: float = 0.0
    duration_s: float = 60.0
    drums: tuple[tuple[int, str], ...] = ()      # written drums: (first bar, pattern)
    strip: bool = False              # take the piece's own drums out first
    swing: float = 0.5
    swing16: bool = False
    gains: tuple[tuple[str, float], ...] = ()
    bar_shift: int = 0
    seed: int = 0


def _pkg(source, name, file, genre, note, **kw) -> Piece:
    return Piece(name, genre, note, source=source, file=file, **kw)


PIECES: tuple[Piece, ...] = (
    # MIDI files from Debian packages, with their own drums
    _pkg(OPENMSX, "omsx_harp_harmony", "harp_harmony.mid", "pop rock", "steady 130, backbeat"),
    _pkg(OPENMSX, "omsx_ultimate_run", "ultimate_run.mid", "rock", "150, starts mid-song", start_s=12.0),
    _pkg(OPENMSX, "omsx_say_what", "say_what_redfarn.mid", "funk", "143, syncopated kick"),
    _pkg(OPENMSX, "omsx_no_work_song", "no_work_song_redfarn.mid", "rock", "110, busy kick", start_s=20.0),
    _pkg(OPENMSX, "omsx_be_sharp", "be_sharp_bw_redfarn.mid", "swing blues", "tempo drifts 81-86",
         duration_s=75.0),
    _pkg(OPENMSX, "omsx_city_blues", "city_blues_redfarn.mid", "blues shuffle", "120 with triplet swing"),
    _pkg(OPENMSX, "omsx_keep_on_rolling", "keep_on_rolling.mid", "boogie rock", "104", start_s=30.0),
    _pkg(OPENMSX, "omsx_coconut_run", "coconut_run2.mid", "fast pop", "180, snare only, no kick"),
    _pkg(OPENMSX, "omsx_chuggachugga", "chuggachugga.mid", "novelty", "tempo changes 69 -> 120 -> 180",
         duration_s=84.0),
    _pkg(OPENMSX, "omsx_midnight_snow_run", "midnight_snow_run.mid", "pop", "tempo ramps from 120", start_s=40.0,
         duration_s=75.0),
    _pkg(OPENMSX, "omsx_ttsong_iv", "ttsong_iv_imuh3.mid", "march pop", "slow 80"),
    _pkg(OPENMSX, "omsx_boogi_marabi", "boogi_marabi_redfarn.mid", "marabi (3/4)", "fast waltz time, 153"),
    _pkg(OPENMSX, "omsx_chemistry_lab", "chemistry_lab.mid", "electro pop", "no drums of its own: "
         "intro, backbeat, a break, breakbeat", drums=((0, "intro"), (4, "backbeat"), (16, "none"), (20, "breakbeat")),
         seed=11),
    _pkg(SIMUTRANS, "st_main_theme", "01-Simutrans-Main-Theme.mid", "rock", "bar 1 starts on the file's beat 2",
         bar_shift=3),
    _pkg(SIMUTRANS, "st_stucked_convoi", "11-Stucked-Convoi.mid", "pop rock", "tempo changes from 80",
         duration_s=80.0),
    _pkg(SIMUTRANS, "st_runaway", "29-Runaway.mid", "rock", "tempo steps 100 -> 130", duration_s=90.0),
    _pkg(SIMUTRANS, "st_wayside_blues", "15-The-Wayside-Blues.mid", "blues (12/8)", "compound meter, "
         "dotted-quarter beat at 80", start_s=10.0),
    _pkg(SIMUTRANS, "st_stephenson_blues", "13-Stephenson-blues.mid", "swing blues", "no drums of its own: "
         "swung ride", drums=((0, "swing"),), swing=2 / 3, seed=12),
    _pkg(SIMUTRANS, "st_deep_ride", "35-deep-ride.mid", "rock", "135", start_s=20.0),
    _pkg(SIMUTRANS, "st_inevitably_engrossed", "37-inevitably-engrossed.mid", "rock", "130", start_s=30.0),
    _pkg(SIMUTRANS, "st_last_trip", "20-Last-Trip.mid", "ballad rock", "90, humanised timing"),
    _pkg(SIMUTRANS, "st_variable_journeys", "22-Variable-Journeys.mid", "downtempo", "85, humanised", start_s=25.0),
    _pkg(SIMUTRANS, "st_courtenay_bridge", "31-Courtenay-Bridge.mid", "country rock", "160"),
    _pkg(SIMUTRANS, "st_road_to_warm_places", "28-Road-to-Warm-Places.mid", "house", "135, four on the floor",
         start_s=30.0),
    _pkg(SIMUTRANS, "st_techno_movement", "48-Techno-movement.mid", "techno", "133, four on the floor",
         start_s=20.0),
    _pkg(SIMUTRANS, "st_summer_intersection", "51-Summer-Intersection.mid", "dance pop", "115, four on the floor"),
    _pkg(SIMUTRANS, "st_house_in_the_station", "46-House-in-the-station.mid", "house", "125, no kick drum",
         start_s=40.0),
    _pkg(SIMUTRANS, "st_dreamy_oriental_nights", "52-Dreamy-Oriental-Nights.mid", "world pop",
         "tempo changes 60-105", duration_s=90.0),
    _pkg(SIMUTRANS, "st_easy_driving", "10-Easy-driving.mid", "soft rock", "120", start_s=60.0),
    _pkg(SIMUTRANS, "st_misty_forest", "45-Misty-Forest.mid", "trip hop", "97, syncopated kick, humanised",
         start_s=30.0),

    # Songs written here, arranged by MMA with its own drums
    Piece("mma_rock_8beat", "rock", "120, 4-bar intro", bpm=120, seed=1, mma=(
        Part("8BeatIntro", 4, POP), Part("8Beat", 16, POP), Part("8BeatPlus", 10, MINOR))),
    Piece("mma_softrock", "soft rock", "92", bpm=92, seed=2, mma=(
        Part("SoftRockIntro", 4, SOUL), Part("SoftRock", 12, SOUL), Part("SoftRock2Sus", 8, POP))),
    Piece("mma_rocknroll_shuffle", "rock'n'roll", "168, shuffle", bpm=168, seed=3, mma=(
        Part("50sRockIntro", 4, BLUES), Part("50sRock", 24, BLUES), Part("50sRockPlus", 12, BLUES))),
    Piece("mma_jazz_swing", "jazz swing", "132, swung ride and walking bass", bpm=132, seed=4, mma=(
        Part("SwingIntro", 4, JAZZ), Part("Swing", 16, JAZZ), Part("SwingWalkPlus", 12, JAZZ))),
    Piece("mma_jive", "jive", "150, swung", bpm=150, seed=5, mma=(
        Part("JiveIntro", 4, BLUES), Part("Jive", 24, BLUES), Part("JiveClap", 8, BLUES))),
    Piece("mma_bossanova", "bossa nova", "136, soft percussion", bpm=136, seed=6, mma=(
        Part("BossaNovaIntro", 4, LATIN), Part("BossaNova", 16, LATIN), Part("BossaNovaPlus", 12, LATIN))),
    Piece("mma_mambo", "mambo", "176, syncopated bass", bpm=176, seed=7, mma=(
        Part("Mambo", 24, LATIN), Part("Mambo1", 16, LATIN))),
    Piece("mma_ska", "ska", "156, off-beat chords", bpm=156, seed=8, mma=(
        Part("Ska", 24, POP), Part("SkaClap", 12, POP))),
    Piece("mma_funk", "funk", "104", bpm=104, seed=9, mma=(
        Part("BVFunkIntro", 4, FUNK), Part("BVFunk", 12, FUNK), Part("BVFunkHorns", 8, FUNK))),
    Piece("mma_rnb", "R&B", "88", bpm=88, seed=10, mma=(
        Part("R&BIntro", 4, SOUL), Part("R&B", 12, SOUL), Part("R&BPlus", 8, SOUL))),
    Piece("mma_soul", "soul", "96", bpm=96, seed=11, mma=(
        Part("DSoulIntro", 4, DORIAN), Part("DSoul", 12, DORIAN), Part("DSoulPlus", 8, DORIAN))),
    Piece("mma_trance", "trance", "138", bpm=138, seed=12, mma=(
        Part("TranceIntro", 4, MINOR), Part("Trance", 16, MINOR), Part("Trance1", 12, MINOR))),
    Piece("mma_disco", "disco", "120, four on the floor", bpm=120, seed=13, mma=(
        Part("BoneyMIntro", 4, POP), Part("BoneyM", 16, POP), Part("BoneyMPlus", 10, POP))),
    Piece("mma_country_swing", "country", "160, two-beat", bpm=160, seed=14, mma=(
        Part("CountrySwing", 24, COUNTRY), Part("CountrySwingSus", 12, COUNTRY))),
    Piece("mma_zydeco", "zydeco", "140", bpm=140, seed=15, mma=(
        Part("Zydeco", 20, BLUES), Part("ZydecoPlus", 12, BLUES))),
    Piece("mma_jazz_waltz", "jazz waltz (3/4)", "144", bpm=144, seed=16, mma=(
        Part("JazzWaltz", 24, JAZZ), Part("JazzWaltzSus", 16, JAZZ))),
    Piece("mma_country_waltz", "country waltz (3/4)", "100", bpm=100, seed=17, mma=(
        Part("CountryWaltz", 32, COUNTRY),)),
    Piece("mma_tango", "tango", "120", bpm=120, seed=18, mma=(
        Part("LightTango", 16, MINOR), Part("LightTangoSus", 14, MINOR))),
    Piece("mma_shuffle_boogie", "blues shuffle", "128", bpm=128, seed=19, mma=(
        Part("ShuffleBoggie", 24, BLUES), Part("ShuffleBoggie1", 8, BLUES))),
    Piece("mma_twist", "twist", "160", bpm=160, seed=20, mma=(Part("Twist", 24, POP), Part("Twist4", 12, POP))),
    Piece("mma_calypso", "calypso", "116", bpm=116, seed=21, mma=(Part("Calypso", 28, POP),)),
    Piece("mma_piano_ballad", "piano ballad", "72, sparse drums", bpm=72, seed=22, mma=(
        Part("PianoBallad", 18, SOUL),)),
    Piece("mma_tempo_step", "rock", "tempo step 108 -> 132 at bar 17", bpm=108, seed=23, mma=(
        Part("8Beat", 16, POP), Part("8BeatPlus", 16, POP, "Tempo 132"))),
    Piece("mma_tempo_ramp", "soft rock", "accelerando 96 -> 128 over 8 bars", bpm=96, seed=24, mma=(
        Part("SoftRock", 8, SOUL), Part("SoftRock", 8, SOUL, "Tempo 128 8"), Part("SoftRock2", 10, SOUL))),
    Piece("mma_ritardando", "rock ballad", "80, slowing to 60 at the end", bpm=80, seed=25, mma=(
        Part("Ballad", 16, SOUL), Part("Ballad", 4, SOUL, "Tempo 60 4"), Part("Ballad", 2, SOUL))),
    Piece("mma_funk_bass", "funk", "100, the bass louder than the drums", bpm=100, seed=26,
          gains=(("bass", 1.5), ("others", 0.5), ("kick", 0.6), ("snare", 0.6), ("hats", 0.6)), mma=(
              Part("BVFunk", 24, FUNK),)),

    # Songs written here, arranged by MMA, with drums written here in place of MMA's
    Piece("drums_dnb", "drum and bass", "172 breakbeat, a break without drums", bpm=172, seed=31, strip=True,
          drums=((0, "intro"), (4, "breakbeat"), (20, "none"), (24, "breakbeat")), mma=(Part("Trance", 44, MINOR),)),
    Piece("drums_hiphop_swing", "hip-hop", "90, swung 16th hats", bpm=90, seed=32, strip=True,
          drums=((0, "hiphop"),), swing=0.62, swing16=True, mma=(Part("R&B-Ballad", 24, DORIAN),)),
    Piece("drums_hiphop_loud_hats", "hip-hop", "86, swung hats louder than kick and snare", bpm=86, seed=33,
          strip=True, drums=((0, "hiphop"),), swing=0.58, swing16=True,
          gains=(("hats", 1.5), ("kick", 0.55), ("snare", 0.6)), mma=(Part("PianoBallad", 22, MINOR),)),
    Piece("drums_trap_halftime", "trap", "140 half-time: snare on 3", bpm=140, seed=34, strip=True,
          drums=((0, "intro"), (4, "halftime")), mma=(Part("Trance", 36, DARK),)),
    Piece("drums_offbeat_hats", "trance", "128, off-beat open hats dominate, soft kick", bpm=128, seed=35,
          strip=True, drums=((0, "offbeat"),), gains=(("kick", 0.7), ("others", 0.6)), mma=(Part("Trance", 32, MINOR),)),
    Piece("drums_house_intro", "house", "124: 4 bars without drums, hats, four on the floor, a break",
          bpm=124, seed=36, strip=True, drums=((0, "none"), (4, "intro"), (8, "four"), (24, "none"), (28, "four")),
          duration_s=70.0, mma=(Part("BoneyM", 36, POP),)),
    Piece("drums_downtempo_softkick", "downtempo R&B", "80, soft kick and rim", bpm=80, seed=37, strip=True,
          drums=((0, "softkick"),), mma=(Part("R&B-Ballad", 20, SOUL),)),
    Piece("drums_breaks_bass", "breakbeat", "136 breakbeat, loud bass", bpm=136, seed=38, strip=True,
          drums=((0, "breakbeat"),), gains=(("bass", 1.5), ("others", 0.6)), mma=(Part("8Beat", 34, FUNK),)),
)


# ---------------------------------------------------------------------------------------------------------
# Building

def _run(cmd: list[str], **kw) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({r.returncode}): {(r.stderr or r.stdout).strip()[-500:]}")


def piece_midi(piece: Piece, work: Path) -> mido.MidiFile:
    """The piece as MIDI, drums written and mix applied, at its original tempo map."""
    if piece.mma:
        src = work / f"{piece.name}.mma"
        src.write_text(mma_text(piece.seed, piece.bpm, piece.mma))
        _run(["mma", "-xNOCREDIT", "-w", str(src), "-f", str(work / f"{piece.name}.src.mid")], cwd=work)
        mid = mido.MidiFile(work / f"{piece.name}.src.mid")
    else:
        mid = mido.MidiFile(Path(piece.source[3]) / piece.file, clip=True)
    if piece.strip:
        strip_drums(mid)
    if piece.drums:
        mid.tracks.append(drum_track(mid, piece.drums, piece.swing, piece.swing16, piece.seed, piece.bar_shift))
    if piece.gains:
        remix(mid, dict(piece.gains))
    return mid


def render(mid: mido.MidiFile, wav: Path, soundfont: Path, sample_rate_hz: int = SAMPLE_RATE_HZ) -> None:
    """Render through FluidSynth as fast as it goes (no audio device), float WAV, from the flattened file."""
    src = wav.with_suffix(".flat.mid")
    flatten(mid).save(src)
    _run(["fluidsynth", "-ni", "-q", "-r", str(sample_rate_hz), "-g", "0.4", "-O", "float", "-T", "wav",
          "-F", str(wav), str(soundfont), str(src)])


def excerpt(wav: Path, out: Path, start_s: float, duration_s: float, sample_rate_hz: int = SAMPLE_RATE_HZ) -> None:
    """Cut [start_s, start_s + duration_s) to the sample, fade 10 ms at each cut, peak at -1 dBFS, 16-bit FLAC."""
    a = int(round(start_s * sample_rate_hz))
    n = int(round(duration_s * sample_rate_hz))
    _run(["sox", "-R", "-D", str(wav), "-b", "16", str(out), "trim", f"{a}s", f"{n}s",
          "fade", "h", "0.01", "-0", "0.01", "norm", "-1"])


def beats_in(mid: mido.MidiFile, bar_shift: int, start_s: float, duration_s: float) -> list[tuple[float, int]]:
    """(seconds from the excerpt's start, beat in bar) of the beats inside the excerpt."""
    grid = beat_grid(mid, bar_shift=bar_shift)
    t = tempo_map(mid).to_seconds([tick for tick, _ in grid]) - start_s
    return [(float(s), b) for s, (_, b) in zip(t, grid) if 0 <= s < duration_s]


def write_beats(path: Path, beats: list[tuple[float, int]]) -> None:
    """The format `vj analyze --beats` writes: `seconds<TAB>beat in bar`, one beat a line."""
    path.write_text("".join(f"{t:.4f}\t{b}\n" for t, b in beats))


def build(piece: Piece, out_dir: Path, soundfont: Path) -> tuple[float, float, float]:
    """Write NAME.flac and NAME.beats; returns (duration s, lowest BPM, highest BPM) of the excerpt."""
    with tempfile.TemporaryDirectory(prefix="beat-corpus-") as tmp:
        work = Path(tmp)
        mid = piece_midi(piece, work)
        length = tempo_map(mid).to_seconds([last_note_tick(mid)])[0]
        duration = min(piece.duration_s, length + 1.0 - piece.start_s)
        render(mid, work / f"{piece.name}.wav", soundfont)
        excerpt(work / f"{piece.name}.wav", out_dir / f"{piece.name}.flac", piece.start_s, duration)
    beats = beats_in(mid, piece.bar_shift, piece.start_s, duration)
    write_beats(out_dir / f"{piece.name}.beats", beats)
    per_beat = np.diff([t for t, _ in beats])
    bpm = 60.0 / per_beat if len(per_beat) else np.array([0.0])
    return duration, float(bpm.min()), float(bpm.max())


# ---------------------------------------------------------------------------------------------------------
# Extra training music: MMA library grooves the corpus does not use

MMA_LIB = Path("/usr/share/mma/lib/stdlib")
CHARTS = (POP, MINOR, DORIAN, BLUES, JAZZ, FUNK, LATIN, DARK, SOUL, COUNTRY)


def extra_pieces(seed: int = 1000) -> list[Piece]:
    """One training-only piece per groove file of MMA's library that no corpus piece takes a groove from (so that
    out-of-fold scores stay out of fold): its first groove that is not an intro, ending or fill, 32 bars of a
    chord chart picked by a seeded generator, at a seeded tempo from 70 to 180 BPM (log-uniform), 45 s."""
    used = {part.groove.lower() for p in PIECES for part in p.mma}
    rng = np.random.default_rng(seed)
    out = []
    for path in sorted(MMA_LIB.glob("*.mma")):
        text = path.read_text(errors="replace")
        names = re.findall(r"^\s*DefGroove\s+(\S+)", text, re.M | re.I)
        if not names or any(n.lower() in used for n in names) or path.stem.startswith("metronome"):
            continue
        plain = [n for n in names if not re.search(r"intro|end|fill|sus", n, re.I)] or names
        bpm = float(np.round(np.exp(rng.uniform(np.log(70), np.log(180)))))
        chart = CHARTS[int(rng.integers(len(CHARTS)))]
        out.append(Piece(f"extra_{re.sub(r'[^a-z0-9]+', '_', path.stem.lower())}", "training only",
                         f"MMA groove {plain[0]}", bpm=bpm, seed=seed + len(out), duration_s=45.0,
                         mma=(Part(plain[0], 32, chart),)))
    return out


def readme(rows: list[tuple[Piece, float, float, float]], soundfont: Path) -> str:
    lines = ["# Beat corpus", "",
             "Made by `scripts/beat-corpus.py` (see docs/BEAT_CORPUS.md): MIDI rendered through FluidSynth with",
             f"`{soundfont.name}`, beats and bars from each file's tempo map and time signatures. For development of",
             "the beat tracker only; the audio is not redistributed.", "",
             "| piece | genre | s | BPM | source | licence | what it tests |", "|---|---|---|---|---|---|---|"]
    for p, dur, lo, hi in rows:
        bpm = f"{lo:.0f}" if abs(hi - lo) < 0.5 else f"{lo:.0f}-{hi:.0f}"
        src = f"{p.source[0]}: {p.file}" if p.file else f"{p.source[2]}"
        if p.drums:
            src += " + drums written here" if not p.strip else " (its drums replaced by ones written here)"
        lines.append(f"| {p.name} | {p.genre} | {dur:.0f} | {bpm} | {src} | {p.source[1]} | {p.note} |")
    lines += ["", f"Soundfont: {soundfont} ({'fluid-soundfont-gm, MIT' if 'Fluid' in soundfont.name else 'timgm6mb-soundfont, GPL-2'}).", ""]
    return "\n".join(lines)


def find_soundfont(given: Path | None) -> Path:
    for sf in ([given] if given else list(SOUNDFONTS)):
        if sf.is_file():
            return sf
    raise SystemExit(f"beat-corpus: no soundfont ({', '.join(map(str, SOUNDFONTS))}); "
                     f"apt-get install {' '.join(APT_PACKAGES)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, nargs="?", help="folder for NAME.flac + NAME.beats + README.md")
    ap.add_argument("--only", default="", help="comma-separated piece names")
    ap.add_argument("--soundfont", type=Path, default=None, help=f"default: {SOUNDFONTS[0]}")
    ap.add_argument("--list", action="store_true", help="list the pieces and stop")
    ap.add_argument("--extra", action="store_true",
                    help="build the training-only pieces instead (MMA library grooves no corpus piece uses)")
    args = ap.parse_args(argv)
    pieces = tuple(extra_pieces()) if args.extra else PIECES
    if args.list or args.out is None:
        for p in pieces:
            print(f"{p.name:28s} {p.genre:22s} {p.note}")
        return 0
    missing = [tool for tool in ("fluidsynth", "mma", "sox") if shutil.which(tool) is None]
    if missing:
        raise SystemExit(f"beat-corpus: {', '.join(missing)} not found; apt-get install {' '.join(APT_PACKAGES)}")
    soundfont = find_soundfont(args.soundfont)
    wanted = {n for n in args.only.split(",") if n}
    unknown = wanted - {p.name for p in pieces}
    if unknown:
        raise SystemExit(f"beat-corpus: no such piece: {', '.join(sorted(unknown))}")
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for p in pieces:
        if wanted and p.name not in wanted:
            continue
        if p.file and not (Path(p.source[3]) / p.file).is_file():
            print(f"{p.name}: skipped, {p.file} missing (apt-get install {p.source[0]})", file=sys.stderr)
            continue
        try:
            dur, lo, hi = build(p, args.out, soundfont)
        except RuntimeError as exc:          # an extra groove MMA cannot play: the others still come
            if not args.extra:
                raise
            print(f"{p.name}: skipped, {exc}", file=sys.stderr)
            continue
        rows.append((p, dur, lo, hi))
        print(f"{p.name:28s} {dur:5.1f} s  {lo:5.1f}-{hi:5.1f} BPM", flush=True)
    (args.out / "README.md").write_text(readme(rows, soundfont))
    return 0


if __name__ == "__main__":
    sys.exit(main())
