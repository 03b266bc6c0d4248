"""`vj analyze`: beats, onsets and tempo of an audio file, from the same causal code that runs live."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vj.audio.analyzer import Analyzer, AnalyzerSettings
from vj.audio.beats import BeatSettings
from vj.audio.decode import decode_file
from vj.audio.downmix import downmix
from vj.config import AudioConfig


@dataclass(frozen=True)
class Analysis:
    """Event times in seconds of stream time, as the live engine would have reported them."""

    beats_s: np.ndarray            # (n_beats,)
    beat_in_bar: np.ndarray        # (n_beats,) 1 = downbeat
    onsets_s: np.ndarray           # (n_onsets,)
    tempo: np.ndarray              # (n_beats, 3): time s, bpm, confidence at each beat
    duration_s: float
    elapsed_s: float               # wall time of the analysis

    @property
    def bpm(self) -> float:
        """Median tempo over the beats (0 when there were none)."""
        return float(np.median(self.tempo[:, 1])) if len(self.tempo) else 0.0


def analyze_samples(mono: np.ndarray, audio_cfg: AudioConfig = AudioConfig(),
                    beat_settings: BeatSettings = BeatSettings(),
                    settings: AnalyzerSettings = AnalyzerSettings()) -> Analysis:
    """Feed `(n,)` mono samples at `audio_cfg.sample_rate_hz` through an Analyzer in blocks of
    `audio_cfg.block_frames`, as a live input would arrive, and collect its events. No look-ahead: the
    result for the first seconds does not depend on what follows."""
    mono = np.asarray(mono, dtype=np.float32).reshape(-1)
    analyzer = Analyzer(audio_cfg, settings, beat_settings=beat_settings)
    block = max(1, audio_cfg.block_frames)
    beats, bars, onsets, tempo = [], [], [], []
    t0 = time.perf_counter()
    for i in range(0, len(mono), block):
        for f in analyzer.process(mono[i:i + block]):
            if f.onset:
                onsets.append(f.t_s)
            if f.beat:
                beats.append(f.t_s)
                bars.append(f.beat_in_bar)
                tempo.append((f.t_s, f.bpm, f.beat_confidence))
    elapsed = time.perf_counter() - t0
    return Analysis(np.array(beats, float), np.array(bars, int), np.array(onsets, float),
                    np.array(tempo, float).reshape(-1, 3), len(mono) / audio_cfg.sample_rate_hz, elapsed)


def analyze_file(path: str | os.PathLike, beats_out: str | os.PathLike | None = None,
                 onsets_out: str | os.PathLike | None = None, tempo_out: str | os.PathLike | None = None,
                 audio_cfg: AudioConfig = AudioConfig(), settings: AnalyzerSettings = AnalyzerSettings(),
                 beat_settings: BeatSettings = BeatSettings()) -> Analysis:
    """Analyse an audio file (anything `decode_file` reads) and write the requested text files:

    - beats: one beat per line, `time_s<TAB>beat_in_bar` (1 = downbeat);
    - onsets: one onset time per line, seconds;
    - tempo: one line per beat, `time_s<TAB>bpm<TAB>confidence`.
    """
    mono = downmix(decode_file(path, audio_cfg.sample_rate_hz))
    result = analyze_samples(mono, audio_cfg, beat_settings=beat_settings, settings=settings)
    if beats_out is not None:
        _write(beats_out, (f"{t:.4f}\t{b}" for t, b in zip(result.beats_s, result.beat_in_bar)))
    if onsets_out is not None:
        _write(onsets_out, (f"{t:.4f}" for t in result.onsets_s))
    if tempo_out is not None:
        _write(tempo_out, (f"{t:.4f}\t{bpm:.2f}\t{c:.3f}" for t, bpm, c in result.tempo))
    return result


def _write(path: str | os.PathLike, lines) -> None:
    text = "".join(line + "\n" for line in lines)
    Path(path).write_text(text)
