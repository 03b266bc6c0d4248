"""Synthesized drum-and-chord pieces with known beat times, for scoring the beat tracker.

Each piece is a list of sections (bars, start BPM, end BPM, pattern). Instruments are one-shot samples
(kick, snare, clap, closed and open hats, bass, pad chords) mixed at event times derived from the beat
grid, with random velocities and a few milliseconds of human timing jitter, so that the tracker sees
something closer to a played record than a click track. Same seed, same samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SR = 48000

# Patterns: instrument -> (position in beats within a 4/4 bar, velocity). "8" and "16" in the hat
# patterns are filled in per bar with the swing of the piece.
PATTERNS = {
    "house": {"kick": [(0, 1), (1, 1), (2, 1), (3, 1)], "clap": [(1, .8), (3, .8)],
              "ohh": [(.5, .6), (1.5, .6), (2.5, .6), (3.5, .6)], "chh": "16", "bass": "offbeat", "pad": True},
    "rock": {"kick": [(0, 1), (2, .9), (2.5, .6)], "snare": [(1, 1), (3, 1)], "chh": "8", "bass": "root",
             "pad": True},
    "hiphop": {"kick": [(0, 1), (.75, .7), (2.5, .9)], "snare": [(1, 1), (3, 1)], "chh": "16", "bass": "root",
               "pad": True},
    "dnb": {"kick": [(0, 1), (2.5, .9)], "snare": [(1, 1), (3, 1)], "chh": "8", "bass": "root", "pad": True},
    "offbeat": {"kick": [(0, .9), (1, .85), (2, .9), (3, .85)],
                "ohh": [(.5, 1), (1.5, 1), (2.5, 1), (3.5, 1)], "bass": "offbeat", "pad": True},
    "halftime": {"kick": [(0, 1), (2.75, .6)], "snare": [(2, 1)], "chh": "8", "bass": "root", "pad": True},
    "break": {"pad": True},                         # drums and bass out: pads only
}
CHORDS = ((45, (57, 60, 64)), (41, (57, 60, 65)), (36, (55, 60, 64)), (43, (55, 59, 62)))   # Am F C G


@dataclass(frozen=True)
class Section:
    bars: int
    bpm: float
    end_bpm: float | None = None       # a linear tempo ramp over the section
    pattern: str = "house"


@dataclass(frozen=True)
class Piece:
    name: str
    sections: tuple[Section, ...]
    swing: float = 0.5                 # where the off 8th (or 16th) sits: 0.5 straight, 0.6 swung
    swing16: bool = False
    seed: int = 0


PIECES = (
    Piece("house_124", (Section(16, 124.0),)),
    Piece("rock_80", (Section(10, 80.0, pattern="rock"),), seed=1),
    Piece("hiphop_92_swing", (Section(12, 92.0, pattern="hiphop"),), swing=0.62, swing16=True, seed=2),
    Piece("dnb_174", (Section(24, 174.0, pattern="dnb"),), seed=3),
    Piece("offbeat_hats_138", (Section(18, 138.0, pattern="offbeat"),), seed=4),
    Piece("tempo_change_120_135", (Section(10, 120.0), Section(12, 135.0)), seed=5),
    Piece("tempo_ramp_100_128", (Section(4, 100.0, pattern="rock"), Section(8, 100.0, 128.0, "rock"),
                                 Section(6, 128.0, pattern="rock")), seed=6),
    Piece("break_128", (Section(8, 128.0), Section(4, 128.0, pattern="break"), Section(8, 128.0)), seed=7),
    Piece("halftime_140", (Section(8, 140.0, pattern="dnb"), Section(8, 140.0, pattern="halftime"),
                           Section(8, 140.0, pattern="dnb")), seed=8),
    Piece("swing_shuffle_110", (Section(14, 110.0, pattern="rock"),), swing=0.66, seed=9),
)


def beat_grid(piece: Piece, start_s: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(beat times s, beat in bar 1..4, section index) for every beat of the piece, plus the end time."""
    times, pos, sec = [], [], []
    t = start_s
    for si, s in enumerate(piece.sections):
        n = 4 * s.bars
        for i in range(n):
            bpm = s.bpm if s.end_bpm is None else s.bpm + (s.end_bpm - s.bpm) * i / n
            times.append(t)
            pos.append(i % 4 + 1)
            sec.append(si)
            t += 60.0 / bpm
    times.append(t)                     # the end of the last beat
    return np.array(times), np.array(pos + [1]), np.array(sec + [len(piece.sections) - 1])


def _env(n: int, tau_s: float) -> np.ndarray:
    return np.exp(-np.arange(n) / (tau_s * SR))


def _noise(rng, n: int) -> np.ndarray:
    return rng.standard_normal(n)


def _bandpass(x: np.ndarray, lo_hz: float, hi_hz: float) -> np.ndarray:
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(len(x), 1 / SR)
    spec[(f < lo_hz) | (f > hi_hz)] = 0
    return np.fft.irfft(spec, len(x))


def _samples(rng) -> dict[str, np.ndarray]:
    t = np.arange(int(0.5 * SR)) / SR
    kick_f = 48.0 + 110.0 * np.exp(-t / 0.025)
    kick = np.sin(2 * np.pi * np.cumsum(kick_f) / SR) * np.exp(-t / 0.16)
    kick[:96] += 0.5 * _noise(rng, 96) * _env(96, 0.0005)
    n = int(0.25 * SR)
    snare = (0.6 * _bandpass(_noise(rng, n), 1500, 9000) * 3 * _env(n, 0.06)
             + 0.5 * np.sin(2 * np.pi * 190 * np.arange(n) / SR) * _env(n, 0.04))
    clap = np.zeros(n)
    for d in (0, 0.008, 0.017):
        i = int(d * SR)
        clap[i:] += _bandpass(_noise(rng, n - i), 900, 6000)[:n - i] * 3 * _env(n - i, 0.03)
    m = int(0.06 * SR)
    chh = _bandpass(_noise(rng, m), 7000, 16000) * 3 * _env(m, 0.012)
    k = int(0.3 * SR)
    ohh = _bandpass(_noise(rng, k), 6000, 16000) * 3 * _env(k, 0.09)
    out = {"kick": kick, "snare": snare, "clap": clap, "chh": chh, "ohh": ohh}
    fade = np.linspace(1.0, 0.0, int(0.01 * SR))
    for x in out.values():
        x[-len(fade):] *= fade                     # no click where a sample ends
    return out


def _tone(midi: int, dur_s: float, harmonics: int, tau_s: float, attack_s: float) -> np.ndarray:
    n = int(dur_s * SR)
    t = np.arange(n) / SR
    f = 440.0 * 2 ** ((midi - 69) / 12)
    x = sum(np.sin(2 * np.pi * h * f * t) / h for h in range(1, harmonics + 1) if h * f < 12000)
    env = np.minimum(1.0, t / attack_s) * np.exp(-t / tau_s)
    env[-int(0.02 * SR):] *= np.linspace(1, 0, int(0.02 * SR))
    return x * env


def render(piece: Piece) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mono float32 samples at SR, beat times s, beat in bar) of a piece."""
    rng = np.random.default_rng(piece.seed)
    beats, pos, sec = beat_grid(piece)
    total = int((beats[-1] + 1.0) * SR)
    out = np.zeros(total)
    smp = _samples(rng)

    def at(beat_pos: float, bar0: int) -> float:
        """Time of a position in beats from beat index bar0 (fractional positions interpolate the grid)."""
        i = bar0 + int(np.floor(beat_pos))
        frac = beat_pos - np.floor(beat_pos)
        i = min(i, len(beats) - 2)
        return beats[i] + frac * (beats[i + 1] - beats[i])

    def add(x: np.ndarray, t_s: float, gain: float) -> None:
        i = int(round((t_s + rng.normal(0, 0.004)) * SR))
        if 0 <= i < total:
            seg = x[:total - i]
            out[i:i + len(seg)] += gain * seg

    su = 0.25 if piece.swing16 else 0.5

    def sw(p: float) -> float:
        """Swing: every second `su`-beat note moves from the middle of its pair to `swing` of the pair."""
        k = p / su
        if abs(k - round(k)) < 1e-9 and round(k) % 2 == 1:
            return (round(k) - 1) * su + 2 * su * piece.swing
        return p

    n_bars = (len(beats) - 1) // 4
    for bar in range(n_bars):
        b0 = 4 * bar
        pat = PATTERNS[piece.sections[sec[b0]].pattern]
        root, chord = CHORDS[bar % 4]
        for inst in ("kick", "snare", "clap", "ohh"):
            for p, v in pat.get(inst, ()):
                add(smp[inst], at(sw(p), b0), 0.5 * v * rng.uniform(0.85, 1.0))
        hats = pat.get("chh")
        if hats:
            unit = 0.25 if hats == "16" else 0.5
            for j in range(int(4 / unit)):
                accent = 0.28 if j % 2 == 0 else 0.18
                add(smp["chh"], at(sw(j * unit), b0), accent * rng.uniform(0.7, 1.0))
        if pat.get("bass"):
            beat_s = beats[b0 + 1] - beats[b0]
            if pat["bass"] == "offbeat":
                for j in range(4):
                    add(_tone(root - 12, 0.4 * beat_s, 6, 0.15, 0.005), at(j + 0.5, b0), 0.25)
            else:
                for p in (0, 1.5, 2, 3):
                    add(_tone(root - 12, 0.9 * beat_s, 6, 0.3, 0.005), at(p, b0), 0.25)
        if pat.get("pad"):
            bar_s = beats[min(b0 + 4, len(beats) - 1)] - beats[b0]
            for note in chord:
                add(_tone(note, bar_s, 8, 3.0, 0.15), beats[b0], 0.07)
    out /= max(1e-9, np.abs(out).max()) / 0.8
    keep = len(beats) - 1
    return out.astype(np.float32), beats[:keep], pos[:keep]
