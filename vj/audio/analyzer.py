"""Analyzer: mono samples in, one frozen Features snapshot per hop out (pure numpy, the same live and offline)."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from vj.config import AudioConfig
from vj.audio.features import SILENT, Features


@dataclass(frozen=True)
class AnalyzerSettings:
    """Tuning of the analysis; every time is in seconds so nothing depends on hop size or frame rate."""

    gate_db: float = -60.0              # window RMS below this is silence: level 0, no onsets
    agc_attack_s: float = 0.3           # the gain reference follows louder material this fast ...
    agc_release_s: float = 8.0          # ... and quieter material this slowly
    agc_max_gain_db: float = 40.0       # a -40 dBFS signal can still reach level 1, quieter ones cannot
    band_max_boost_db: float = 30.0     # a band is never lifted more than this above the overall gain
    attack_s: float = 0.010             # smoothing of level, bands and spectrum going up ...
    release_s: float = 0.2              # ... and coming down
    silence_rise_s: float = 0.25        # how long a gap takes to read as silence
    silence_fall_s: float = 0.02
    bass_hz: tuple[float, float] = (20.0, 250.0)
    mid_hz: tuple[float, float] = (250.0, 4000.0)
    high_hz: tuple[float, float] = (4000.0, 16000.0)
    spectrum_hz: tuple[float, float] = (30.0, 16000.0)
    spectrum_range_db: float = 60.0     # the spectrum shows this many dB ...
    spectrum_top_db: float = 6.0        # ... up to this far above the gain reference (a steady tone stays below 1)
    onset_bands_per_octave: int = 12    # filterbank of the onset detector (narrow bands merge up to one FFT bin)
    onset_compression: float = 100.0    # log10(1 + this * magnitude after gain): the flux sees level ratios
    onset_delta: float = 0.12           # an onset must beat the recent mean strength by this much (0..1 units)
    onset_mean_s: float = 0.15          # the recent strength window for that mean
    onset_max_s: float = 0.03           # ... and must be the largest in this window
    onset_min_interval_s: float = 0.05  # no two onsets closer than this
    onset_norm_release_s: float = 4.0   # the strength normaliser forgets a strong onset this slowly
    onset_norm_floor: float = 0.06      # smallest flux that can read as strength 1 (keeps noise low)


class Analyzer:
    """Turns mono float32 samples into Features, one per completed hop of `hop_samples`.

    Each hop analyses the newest `fft_samples` samples under a Hann window. Results do not depend on
    how the input is split into `process` calls.
    """

    def __init__(self, audio_cfg: AudioConfig, settings: AnalyzerSettings = AnalyzerSettings()):
        self.cfg = audio_cfg
        self.settings = st = settings
        sr = audio_cfg.sample_rate_hz
        self.hop = audio_cfg.hop_samples
        self.n_fft = audio_cfg.fft_samples
        if self.hop <= 0 or self.n_fft < self.hop:
            raise ValueError(f"need 0 < hop_samples <= fft_samples, got {self.hop}, {self.n_fft}")
        self.hop_s = self.hop / sr
        self.window = np.hanning(self.n_fft + 1)[:-1].astype(np.float32)     # periodic Hann
        # Scales so that a sine of amplitude A reads as A in its bin, and band powers sum to the mean square.
        self._mag_scale = 2.0 / float(self.window.sum())
        self._power_scale = 2.0 / (self.n_fft * float((self.window.astype(np.float64) ** 2).sum()))
        n_bins = self.n_fft // 2 + 1
        self._bin_edges = np.arange(n_bins + 1) - 0.5          # bin k covers [k - 0.5, k + 0.5) in bin units
        hz_per_bin = sr / self.n_fft
        nyq = sr / 2
        lo, hi = st.spectrum_hz
        self._spec_edges = np.geomspace(lo, min(hi, nyq), audio_cfg.n_bands + 1) / hz_per_bin
        self._spec_widths = np.diff(self._spec_edges)
        self._band_edges = np.array([min(f, nyq) for f in (*st.bass_hz, *st.mid_hz, *st.high_hz)]) / hz_per_bin
        n_oct = math.log2(min(hi, nyq) / lo)
        edges = np.geomspace(lo, min(hi, nyq), int(round(n_oct * st.onset_bands_per_octave)) + 1) / hz_per_bin
        self._onset_edges = np.unique(np.clip(np.round(edges).astype(np.int64), 1, n_bins - 1))
        self._onset_counts = np.diff(self._onset_edges).astype(np.float32)

        def alpha(tau_s: float) -> float:
            return 1.0 - math.exp(-self.hop_s / tau_s) if tau_s > 0 else 1.0

        self._a_agc_up, self._a_agc_down = alpha(st.agc_attack_s), alpha(st.agc_release_s)
        self._a_up, self._a_down = alpha(st.attack_s), alpha(st.release_s)
        self._a_sil_up, self._a_sil_down = alpha(st.silence_rise_s), alpha(st.silence_fall_s)
        self._norm_decay = 1.0 - alpha(st.onset_norm_release_s)
        self._mean_len = max(1, round(st.onset_mean_s / self.hop_s))
        self._max_len = max(1, round(st.onset_max_s / self.hop_s))
        self._min_gap = max(1, round(st.onset_min_interval_s / self.hop_s))
        self._floor_db = -st.agc_max_gain_db
        self.reset()

    def reset(self) -> None:
        """Forget all history, as if freshly made."""
        self._keep = max(self.n_fft, self.cfg.waveform_samples)
        self._tail = np.zeros(self._keep, np.float32)  # newest samples: `_keep` plus the unfinished hop
        self._pending = 0                             # samples in the tail that belong to no hop yet
        self._ref_db: float | None = None             # overall gain reference (dBFS)
        self._band_ref_db = [None, None, None]
        self._level = 0.0
        self._bands = np.zeros(3)
        self._spectrum = np.zeros(self.cfg.n_bands)
        self._silence = 1.0
        self._prev_log = None                         # previous hop's compressed onset spectrum
        self._recent = deque(maxlen=self._mean_len)   # recent normalised strengths
        self._recent_max = deque(maxlen=self._max_len)
        self._norm = self.settings.onset_norm_floor
        self._since_onset = self._min_gap
        self.latest: Features = SILENT
        self.hops = 0

    def process(self, mono: np.ndarray) -> list[Features]:
        """Analyse new mono samples `(n,)`; return one Features for each hop completed by them."""
        mono = np.asarray(mono, dtype=np.float32).reshape(-1)
        if not np.isfinite(mono).all():      # one bad block from a driver must not poison the gain state
            mono = np.nan_to_num(mono, nan=0.0, posinf=0.0, neginf=0.0)
        data = np.concatenate((self._tail, mono))
        new = self._pending + len(mono)
        n_hops = new // self.hop
        out = []
        for i in range(n_hops):
            end = len(data) - (new - (i + 1) * self.hop)
            out.append(self._hop(data[end - self.n_fft:end], data[end - self.cfg.waveform_samples:end]))
        self._pending = new - n_hops * self.hop
        self._tail = data[len(data) - self._keep - self._pending:].copy()
        if out:
            self.latest = out[-1]
        return out

    def _hop(self, frame: np.ndarray, waveform: np.ndarray) -> Features:
        st = self.settings
        self.hops += 1
        t_s = self.hops * self.hop_s
        ms = float(np.dot(frame, frame)) / len(frame)
        rms_db = 10.0 * math.log10(ms) if ms > 1e-12 else -120.0
        gated = rms_db < st.gate_db

        spec = np.fft.rfft(frame * self.window)                   # (n_bins,) complex64
        power = spec.real * spec.real + spec.imag * spec.imag     # (n_bins,) float32
        cum = np.concatenate(([0.0], np.cumsum(power, dtype=np.float64)))
        band_cum = np.interp(self._band_edges, self._bin_edges, cum)
        band_ms = np.maximum(band_cum[1::2] - band_cum[0::2], 0.0) * self._power_scale          # (3,)
        spec_cum = np.interp(self._spec_edges, self._bin_edges, cum)
        spec_density = np.maximum(np.diff(spec_cum) / self._spec_widths, 0.0)                    # (n_bands,)

        # Automatic gain: references in dB follow the loudness up fast and down slowly; they hold in silence.
        if gated:
            level_target = 0.0
            band_target = np.zeros(3)
        else:
            self._ref_db = self._follow(self._ref_db, rms_db, self._floor_db)
            level_target = min(1.0, 10.0 ** ((rms_db - self._ref_db) / 20.0))
            band_target = np.empty(3)
            floor = max(self._floor_db, self._ref_db - st.band_max_boost_db)
            for b in range(3):
                db = 10.0 * math.log10(band_ms[b]) if band_ms[b] > 1e-14 else -140.0
                self._band_ref_db[b] = self._follow(self._band_ref_db[b], db, floor)
                band_target[b] = min(1.0, 10.0 ** ((db - self._band_ref_db[b]) / 20.0))
        ref_db = self._ref_db if self._ref_db is not None else self._floor_db

        self._level = self._smooth(self._level, level_target)
        self._bands = self._smooth_vec(self._bands, band_target)
        spec_db = 10.0 * np.log10(spec_density * (self._mag_scale ** 2) + 1e-14)
        spec_floor_db = ref_db + st.spectrum_top_db - st.spectrum_range_db
        spec_target = np.clip((spec_db - spec_floor_db) / st.spectrum_range_db, 0.0, 1.0)
        if gated:
            spec_target[:] = 0.0
        self._spectrum = self._smooth_vec(self._spectrum, spec_target)
        sil_target = 1.0 if gated else 0.0
        a = self._a_sil_up if sil_target > self._silence else self._a_sil_down
        self._silence += (sil_target - self._silence) * a

        strength, onset = self._onset(power, ref_db, gated)
        return Features(
            t_s=t_s, level=self._level, rms_db=rms_db, bass=float(self._bands[0]), mid=float(self._bands[1]),
            high=float(self._bands[2]), onset_strength=strength, onset=onset, silence=self._silence,
            spectrum=self._spectrum, waveform=waveform,
        )

    def _onset(self, power: np.ndarray, ref_db: float, gated: bool) -> tuple[float, bool]:
        """Spectral flux of the log-compressed, gain-normalised filterbank magnitudes (SuperFlux-style:
        each band is compared with the loudest of its neighbours in the previous hop, which ignores vibrato)."""
        st = self.settings
        gain = self._mag_scale * 10.0 ** (-ref_db / 20.0)
        mag = np.sqrt(power)
        bands = np.add.reduceat(mag, self._onset_edges)[:-1] / self._onset_counts
        log_mag = np.log10(1.0 + st.onset_compression * gain * bands)
        prev = self._prev_log                          # (n_onset_bands + 2,): edge values repeated
        if prev is None:
            flux = 0.0
            prev = self._prev_log = np.empty(len(log_mag) + 2)
        else:
            widened = np.maximum(np.maximum(prev[:-2], prev[1:-1]), prev[2:])
            flux = float(np.maximum(log_mag - widened, 0.0).sum()) / len(log_mag)
        prev[1:-1] = log_mag
        prev[0], prev[-1] = log_mag[0], log_mag[-1]
        self._norm = max(flux, st.onset_norm_floor, self._norm * self._norm_decay)
        strength = min(1.0, flux / self._norm)

        mean = sum(self._recent) / len(self._recent) if self._recent else 0.0
        largest = max(self._recent_max) if self._recent_max else 0.0
        self._since_onset += 1
        onset = (not gated and strength >= mean + st.onset_delta and strength >= largest
                 and self._since_onset >= self._min_gap)
        if onset:
            self._since_onset = 0
        self._recent.append(strength)
        self._recent_max.append(strength)
        return strength, onset

    def _follow(self, ref: float | None, db: float, floor_db: float) -> float:
        """One step of an AGC reference in dB: fast up, slow down, never below `floor_db`."""
        if ref is None:
            return max(db, floor_db)
        a = self._a_agc_up if db > ref else self._a_agc_down
        return max(ref + (db - ref) * a, floor_db)

    def _smooth(self, current: float, target: float) -> float:
        a = self._a_up if target > current else self._a_down
        return current + (target - current) * a

    def _smooth_vec(self, current: np.ndarray, target: np.ndarray) -> np.ndarray:
        a = np.where(target > current, self._a_up, self._a_down)
        return current + (target - current) * a
