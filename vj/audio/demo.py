"""The built-in demo track: a synthesized house tune with quiet, loud and rhythmic sections."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Arrangement at the reference length of 64 s: (name, start at 64 s, bpm, drums play).
# Other lengths scale the section boundaries; tempos stay. 130 BPM makes the drop exactly 13 bars.
_REFERENCE_S = 64.0
_ARRANGEMENT = (
    ("intro", 0.0, 120.0, False),        # pads only, fading in, quiet
    ("groove", 8.0, 120.0, True),        # kick, clap, offbeat hats, offbeat bass, pads
    ("breakdown", 24.0, 120.0, False),   # pads and a plucked arpeggio; a snare roll leads into the drop
    ("drop", 32.0, 130.0, True),         # everything: 16th hats, rolling bass, pads pumping with the kick
    ("outro", 56.0, 130.0, True),        # kick and hats for two bars, the pads fade out
)
# One chord per bar as (bass note, pad voicing) in MIDI numbers; the seed picks a progression.
_AM, _F, _C, _G, _EM = ((33, (57, 60, 64, 69)), (29, (57, 60, 65, 69)), (36, (55, 60, 64, 67)),
                        (31, (55, 59, 62, 67)), (28, (55, 59, 64, 67)))
_PROGRESSIONS = ((_AM, _F, _C, _G), (_AM, _C, _G, _F), (_AM, _EM, _F, _G))
_ARPS = ((0, 1, 2, 3, 2, 1, 3, 2), (0, 2, 1, 3, 2, 3, 1, 2))
_PAD_RELEASE_S = 0.5
_TABLE_N = 8192                        # wavetable length; nearest lookup is ~-70 dB of error


@dataclass(frozen=True)
class DemoSection:
    """One section of the demo track; drums, where they play, sit on `beat_times_s`."""

    name: str
    start_s: float
    end_s: float
    bpm: float
    drums: bool
    beat_times_s: tuple[float, ...]


def demo_sections(duration_s: float = 64.0) -> tuple[DemoSection, ...]:
    """The sections of `demo_track(duration_s=...)` with their tempos and beat times."""
    scale = duration_s / _REFERENCE_S
    out = []
    for i, (name, start_ref, bpm, drums) in enumerate(_ARRANGEMENT):
        start = start_ref * scale
        end = _ARRANGEMENT[i + 1][1] * scale if i + 1 < len(_ARRANGEMENT) else duration_s
        beats = start + np.arange(0.0, end - start - 1e-9, 60.0 / bpm)
        out.append(DemoSection(name, float(start), float(end), bpm, drums, tuple(float(b) for b in beats)))
    return tuple(out)


def demo_track(sample_rate_hz: int = 48000, duration_s: float = 64.0, seed: int = 0) -> np.ndarray:
    """Synthesize the demo track as `(n, 2)` float32 in -1..1, peak at -1 dBFS. Same seed, same samples.

    Every note is a short one-shot rendered once per pitch and added in at its start sample, so the
    cost is about a thousand slice additions rather than per-sample work for every voice.
    """
    sr = int(sample_rate_hz)
    n = int(round(duration_s * sr))
    rng = np.random.default_rng(seed)
    prog = _PROGRESSIONS[int(rng.integers(len(_PROGRESSIONS)))]
    arp = _ARPS[int(rng.integers(len(_ARPS)))]
    sections = demo_sections(duration_s)

    centre = np.zeros(n, np.float32)        # kick, snare, bass
    left = np.zeros(n, np.float32)          # hats and pluck
    right = np.zeros(n, np.float32)
    pad_l = np.zeros(n, np.float32)         # pads, which duck under the kick
    pad_r = np.zeros(n, np.float32)
    duck = np.zeros(n, np.float32)          # the kick's side-chain shape, 0..1

    kick = _kick(sr)
    duck_shape = np.exp(-np.arange(int(0.4 * sr)) / (0.12 * sr)).astype(np.float32)
    bass = {b: _pluck(sr, _hz(b), 0.28, 0.16, (1.0, 0.3, 0.1)) for b, _ in prog}
    plucks: dict[float, np.ndarray] = {}
    pads: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}

    for s in sections:
        beat_s = 60.0 / s.bpm
        n_beats = len(s.beat_times_s)
        for k, b in enumerate(s.beat_times_s):
            chord = k // 4 % len(prog)
            bass_note, voicing = prog[chord]
            if k % 4 == 0:
                bar_s = min(4 * beat_s, s.end_s - b)
                key = (chord, round(bar_s * sr))
                if key not in pads:
                    pads[key] = _pad(sr, voicing, bar_s)
                gain = _pad_level(s, b)
                _add(pad_l, b, sr, pads[key][0], gain)
                _add(pad_r, b, sr, pads[key][1], gain)
            for j in range(4):              # 16th steps
                t = b + j * beat_s / 4
                if t >= s.end_s:
                    break
                q = 4 * k + j
                drums = s.drums and (s.name != "outro" or k < 8)
                fade = 1.0 - 0.6 * k / 8 if s.name == "outro" else 1.0
                if drums and j == 0:
                    _add(centre, t, sr, kick, fade)
                    _add(duck, t, sr, duck_shape, 1.0)
                if drums and s.name != "outro" and j == 0 and k % 4 in (1, 3):
                    _add(centre, t, sr, _snare(sr, rng), 0.45)
                if s.name == "breakdown" and k >= n_beats - 4:      # last bar: a 16th roll, crescendo
                    _add(centre, t, sr, _snare(sr, rng), 0.45 * (0.15 + 0.85 * (q - 4 * (n_beats - 4)) / 15))
                hat = {"groove": (0, 0, 0.8, 0)[j], "drop": (0.35, 0.2, 0.9, 0.25)[j],
                       "outro": (0, 0, 0.6 * fade, 0)[j]}.get(s.name, 0.0) if drums else 0.0
                if hat:
                    h = _hat(sr, rng, open_=(s.name == "drop" and j == 2))
                    _add(left, t, sr, h, 0.18 * hat)
                    _add(right, t, sr, h, 0.26 * hat)
                if (s.name == "groove" and j == 2) or (s.name == "drop" and j != 0):
                    _add(centre, t, sr, bass[bass_note], 0.55)
                if s.name == "breakdown" or (s.name == "drop" and j % 2 == 0):
                    note = voicing[arp[q % len(arp)]] + 12
                    if note not in plucks:
                        plucks[note] = _pluck(sr, _hz(note), 0.4, 0.12, (1.0, 0.5, 0.33, 0.25, 0.2, 0.16, 0.12))
                    _add(left, t, sr, plucks[note], 0.12)
                    _add(right, t, sr, plucks[note], 0.08)

    pump = 1.0 - 0.45 * np.minimum(duck, 1.0)
    out = np.stack([centre + left + pad_l * pump, centre + right + pad_r * pump], axis=1)
    out *= np.float32(0.89 / max(float(np.abs(out).max()), 1e-9))           # peak at -1 dBFS
    return out


def _add(buf: np.ndarray, t_s: float, sr: int, shot: np.ndarray, gain: float) -> None:
    """Mix a one-shot into `buf` starting at time `t_s`, cut at the end of the buffer."""
    i = int(round(t_s * sr))
    m = min(len(shot), len(buf) - i)
    if m > 0:
        buf[i:i + m] += np.float32(gain) * shot[:m]


def _hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


def _partials(hz: float, t: np.ndarray, harmonics: tuple[float, ...], phase: float = 0.0) -> np.ndarray:
    """Harmonics of `hz` with the given amplitudes, peak about 1, read from a one-cycle table."""
    kept = tuple(a for k, a in enumerate(harmonics) if (k + 1) * hz < 18000)   # nothing above 18 kHz
    x = np.arange(_TABLE_N) / _TABLE_N
    table = sum(a * np.sin(2 * np.pi * (k + 1) * x) for k, a in enumerate(kept)) / sum(harmonics)
    cycles = hz * t + phase / (2 * np.pi)
    return table[(cycles * _TABLE_N).astype(np.int64) & (_TABLE_N - 1)]


def _kick(sr: int) -> np.ndarray:
    """A sine dropping from ~160 Hz to 48 Hz with a short click."""
    t = np.arange(int(0.45 * sr)) / sr
    body = np.sin(2 * np.pi * (48 * t + 110 * 0.035 * (1 - np.exp(-t / 0.035)))) * np.exp(-t / 0.2)
    return (body * (1 - np.exp(-t / 0.0015))).astype(np.float32)


def _snare(sr: int, rng: np.random.Generator) -> np.ndarray:
    """Noise with the lows taken out, over a short 185 Hz body."""
    t = np.arange(int(0.3 * sr)) / sr
    noise = np.diff(rng.standard_normal(len(t) + 1))
    return (0.5 * noise * np.exp(-t / 0.07) + 0.6 * np.sin(2 * np.pi * 185 * t) * np.exp(-t / 0.04)).astype(np.float32)


def _hat(sr: int, rng: np.random.Generator, open_: bool) -> np.ndarray:
    """Noise with only the highs left (second difference); open hats ring longer."""
    decay_s = 0.09 if open_ else 0.03
    t = np.arange(int(5 * decay_s * sr)) / sr
    noise = np.diff(rng.standard_normal(len(t) + 2), 2) * 0.25
    return (noise * np.exp(-t / decay_s)).astype(np.float32)


def _pluck(sr: int, hz: float, length_s: float, decay_s: float, harmonics: tuple[float, ...]) -> np.ndarray:
    t = np.arange(int(length_s * sr)) / sr
    env = (1 - np.exp(-t / 0.004)) * np.exp(-t / decay_s)
    env[-int(0.01 * sr):] *= np.linspace(1.0, 0.0, int(0.01 * sr))       # no click at the cut
    return (env * _partials(hz, t, harmonics)).astype(np.float32)


def _pad(sr: int, voicing: tuple[int, ...], bar_s: float) -> tuple[np.ndarray, np.ndarray]:
    """One bar of a soft chord, slightly detuned left against right, with attack and release tails."""
    t = np.arange(int((bar_s + _PAD_RELEASE_S) * sr)) / sr
    env = (1 - np.exp(-t / 0.12)) * np.clip((bar_s + _PAD_RELEASE_S - t) / _PAD_RELEASE_S, 0.0, 1.0) ** 2
    soft = (1.0, 0.35, 0.18, 0.08, 0.04)
    sides = []
    for detune in (1.003, 1 / 1.003):
        w = sum(_partials(_hz(m) * detune, t, soft, phase=0.7 * v) for v, m in enumerate(voicing))
        sides.append((0.3 * env * w).astype(np.float32))
    return sides[0], sides[1]


def _pad_level(s: DemoSection, t_s: float) -> float:
    """Pad gain for the bar starting at `t_s`: a fade-in through the intro, softer under the groove."""
    span = max(s.end_s - s.start_s, 1e-9)
    x = (t_s - s.start_s) / span
    return {"intro": 0.25 + 0.45 * x, "groove": 0.7, "outro": 1.0 - x}.get(s.name, 1.0)
