"""Analyzer: mono samples in, one frozen Features snapshot per hop out (pure numpy, the same live and offline)."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from vj.config import AudioConfig
from vj.audio.barpointer import BarPointer
from vj.audio.beatnet import LABEL_DELAY_HOPS, BandFeatures, BeatNet, load_default
from vj.audio.beats import BeatSettings, BeatTracker
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
    band_onset_norm_floor: float = 0.1  # the same for the low/mid/high onsets (a kick reads ~2, hat leakage
                                        # into the low band ~0.01)
    drum_release_s: float = 0.15        # kick/snare/hat envelopes jump at a band onset and decay this fast
    brightness_s: float = 0.1           # smoothing of the spectral centroid
    chroma_hz: tuple[float, float] = (200.0, 5000.0)   # pitch classes from this range (bins wider than a
    chroma_s: float = 0.25              # semitone below it); smoothing of the chroma
    hpss_s: float = 0.2                 # harmonic part: the median of each band over this much past
    hpss_bins: int = 17                 # percussive part: the median over this many neighbouring FFT bins
    hpss_hz: float = 8000.0             # the separation looks at FFT bins up to this frequency
    percussive_s: float = 0.3           # smoothing of the percussive share of energy
    section_fast_s: float = 1.0         # the section indicator compares energy over this ...
    section_slow_s: float = 20.0        # ... with the level of the last full section, forgotten this slowly
    section_trend_s: float = 4.0        # a build-up is energy and brightness rising over about this long
    drop_hold_s: float = 4.0            # `drop` decays over this long after the bass comes back
    # The beat tracker hears onset flux plus this times the low-band flux: kicks mark the beat, but a bass on
    # the off-beats can outweigh them. On the beat corpus (prior 135) 0.5 gave mean F / AMLt 0.855 / 0.906 and
    # 0.891 / 0.919 (FluidR3 / TimGM6mb renders) against 0.867 / 0.889 and 0.879 / 0.909 at 1.0, 0.873 / 0.900
    # and 0.867 / 0.900 at 0: AMLt a little better, F the same within what one piece flipping moves. None of
    # them keeps the corpus's off-beat-bass songs off the off-beat (2 to 4 of them at F 0 in each setting).
    beat_low_weight: float = 0.5
    # The flux of a sharp attack peaks 11-15 ms after it (clicks, kicks, snares, hats and tones at 48 kHz,
    # 2048-sample window, 512 hop). Real instruments rise more slowly: on the beat corpus (sampled drums,
    # basses, pianos; docs/BEAT_CORPUS.md) beats reported 13 ms early still came a median 12.7 ms after the
    # notes (p10-p90 of the pieces 7.5-17.8 ms). Beats are reported this much earlier: 23 ms centres the
    # corpus and leaves clicks about 10 ms early.
    flux_delay_s: float = 0.023
    # Beats from the network, reported LABEL_DELAY_HOPS early, still came a median 11.0 ms after the notes
    # of the beat corpus (half a hop from reporting on whole hops, the rest from where its activations
    # peak); they are reported this much earlier on top.
    network_delay_s: float = 0.011
    # True: beats, tempo and bars from vj's beat network and a bar-pointer model (vj/audio/beatnet.py,
    # barpointer.py). Off by default: out of fold on the beat corpus it beats the onset tracker over all
    # pieces but not in every fold, and its downbeats are weaker (docs/BEAT_CORPUS.md).
    beat_network: bool = False
    beat_weights: str = ""              # another weights file for the network (training); "" = the shipped one
    beat_onset_share: float = 0.5       # the bar pointer hears this share of onset strength beside the network's
                                        # beat probability (music unlike the training corpus still has onsets)
    # The onset tracker (beats from onsets) also hears this times the beat network's beat probability in its
    # onset strength: a learned cue for which onsets are beats, where the off-beat is as loud as the beat. Out
    # of fold on the beat corpus (4 networks, each scored on the pieces it never heard), 0.1 took mean F /
    # AMLt / downbeat F from 0.873 / 0.918 / 0.648 to 0.897 / 0.936 / 0.686 (FluidR3 render) and 0.895 / 0.929
    # / 0.668 to 0.903 / 0.935 / 0.675 (TimGM6mb), better in 7 of the 8 folds and renders; 0.05-0.2 all gained.
    # 0: the network does not run (nor does it where its weights are missing).
    beat_network_mix: float = 0.1


_HPSS_EVERY = 8                         # hops between updates of the percussive share (85 ms at 48 kHz)


class Analyzer:
    """Turns mono float32 samples into Features, one per completed hop of `hop_samples`.

    Each hop analyses the newest `fft_samples` samples under a Hann window. Results do not depend on
    how the input is split into `process` calls.
    """

    def __init__(self, audio_cfg: AudioConfig, settings: AnalyzerSettings = AnalyzerSettings(),
                 beat_settings: BeatSettings = BeatSettings()):
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
        # Low / mid / high onset bands (kick, snare, hats) by each filter's centre frequency.
        centres_hz = 0.5 * (self._onset_edges[:-1] + self._onset_edges[1:] - 1) * hz_per_bin
        groups = np.stack((centres_hz < st.bass_hz[1], (centres_hz >= st.bass_hz[1]) & (centres_hz < st.high_hz[0]),
                           centres_hz >= st.high_hz[0])).astype(np.float64)          # (3, n_onset_bands)
        self._onset_groups = groups / np.maximum(groups.sum(axis=1, keepdims=True), 1.0)   # band means
        # Spectral centroid over the spectrum range; chroma as a (12, n_bins) map of bins to pitch classes.
        # One matrix gives all three from the power spectrum (small numpy calls cost more than their maths):
        # row 0 the power in range, row 1 the frequency-weighted power, rows 2..13 the power per pitch class.
        freqs = np.arange(n_bins) * hz_per_bin
        in_spec = ((freqs >= lo) & (freqs <= min(hi, nyq))).astype(np.float64)
        self._log_span = math.log2(min(hi, nyq) / lo)
        cmin, cmax = st.chroma_hz
        in_chroma = (freqs >= cmin) & (freqs <= min(cmax, nyq))
        midi = 69.0 + 12.0 * np.log2(np.maximum(freqs, 1.0) / 440.0)
        dist = (midi[None, :] - np.arange(12)[:, None] + 6.0) % 12.0 - 6.0           # (12, n_bins) semitones
        chroma_map = np.where((np.abs(dist) < 1.0) & in_chroma, np.cos(0.5 * np.pi * dist) ** 2, 0.0)
        self._timbre_map = np.vstack((in_spec, in_spec * freqs, chroma_map)).astype(np.float32)   # (14, n_bins)
        self._hpss_len = max(3, round(st.hpss_s / self.hop_s))
        self._hpss_n = n_hp = max(8, min(n_bins, int(st.hpss_hz / hz_per_bin)))
        half = st.hpss_bins // 2                      # neighbourhoods of each bin, clamped at the edges
        self._hpss_nb = np.clip(np.arange(n_hp)[:, None] + np.arange(-half, half + 1)[None, :], 0, n_hp - 1)
        self._beat_settings = beat_settings
        self._net = None
        if audio_cfg.beats_from not in ("onsets", "network"):
            raise ValueError(f"beats_from must be onsets or network, got {audio_cfg.beats_from!r}")
        pointer_wanted = st.beat_network or audio_cfg.beats_from == "network"
        if pointer_wanted or st.beat_network_mix > 0:
            self._net = BeatNet.load(st.beat_weights) if st.beat_weights else load_default()
        if self._net is not None:
            self._band_features = BandFeatures(sr, self.n_fft, self.window)
        self._steer = pointer_wanted and self._net is not None                 # the bar pointer decides beats
        if self._steer:
            self._pointer = BarPointer(self.hop_s)

        def alpha(tau_s: float) -> float:
            return 1.0 - math.exp(-self.hop_s / tau_s) if tau_s > 0 else 1.0

        self._a_agc_up, self._a_agc_down = alpha(st.agc_attack_s), alpha(st.agc_release_s)
        self._a_up, self._a_down = alpha(st.attack_s), alpha(st.release_s)
        self._a_sil_up, self._a_sil_down = alpha(st.silence_rise_s), alpha(st.silence_fall_s)
        self._norm_decay = 1.0 - alpha(st.onset_norm_release_s)
        self._drum_decay = 1.0 - alpha(st.drum_release_s)
        self._a_bright = alpha(st.brightness_s)
        self._a_chroma = alpha(st.chroma_s)
        self._a_perc = alpha(st.percussive_s)
        self._a_fast, self._a_slow = alpha(st.section_fast_s), alpha(st.section_slow_s)
        self._a_trend = alpha(st.section_trend_s)
        self._a_bass_now = alpha(0.3)
        self._drop_decay = 1.0 - alpha(st.drop_hold_s)
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
        st = self.settings
        self._picker = _Picker(st.onset_norm_floor, st.onset_delta, self._mean_len, self._max_len, self._min_gap,
                               self._norm_decay)
        self._band_pickers = [_Picker(st.band_onset_norm_floor, st.onset_delta, self._mean_len, self._max_len,
                                      self._min_gap, self._norm_decay) for _ in range(3)]
        self._drums = np.zeros(3)                     # kick / snare / hat envelopes
        self._brightness = 0.0
        self._centroid_hz = 0.0
        self._chroma = np.zeros(12)
        self._hpss = np.zeros((self._hpss_len, self._hpss_n), np.float32)   # (time, FFT bin) magnitudes
        self._hpss_i = 0
        self._percussive = 0.0
        self._sec = None                              # section energies in dB: fast, slow, trend, bass...
        self._section = [0.0, 0.0, 0.0]               # buildup, drop, breakdown
        self._since_tension = 1 << 30                 # hops since buildup or breakdown was above 0.5
        self._section_name = "steady"
        if self._net is not None:
            self._net.reset()
            self._band_features.reset()
        if self._steer:
            delay_s = LABEL_DELAY_HOPS * self.hop_s + st.network_delay_s
            self.beats = BeatTracker(self.hop_s, self._beat_settings, odf_delay_s=delay_s, pointer=self._pointer)
        else:
            self.beats = BeatTracker(self.hop_s, self._beat_settings, odf_delay_s=st.flux_delay_s)
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

        strength, onset, band_flux, band_strength, band_onset, flux = self._onset(power, ref_db, gated)
        # Kick / snare / hat envelopes: jump to the band's strength at its onset, decay in drum_release_s.
        self._drums *= self._drum_decay
        for b in range(3):
            if band_onset[b]:
                self._drums[b] = max(self._drums[b], band_strength[b])
        chroma = self._timbre(power, gated)
        self._percussive_share(power, gated)
        self._sections(ms, band_ms[0], gated)
        # Kick drums and bass notes mark the beat in most music: the low band counts extra for the tracker.
        odf = 0.0 if gated else flux + st.beat_low_weight * band_flux[0]
        activation = None
        downbeat = 0.0
        if self._net is not None:
            b, d = self._net.step(self._band_features.step(power))
            if self._steer:
                w = st.beat_onset_share
                activation = ((1.0 - w) * b + w * min(1.0, strength), (1.0 - w) * d)
            elif not gated:
                odf += st.beat_network_mix * b
                downbeat = d                    # one more term of the tracker's bar evidence
        beat = self.beats.update(odf, low=band_flux[0], mid=band_flux[1], chroma=chroma, silent=gated,
                                 activation=activation, downbeat=downbeat)
        buildup, drop, breakdown = self._section
        return Features(
            t_s=t_s, level=self._level, rms_db=rms_db, bass=float(self._bands[0]), mid=float(self._bands[1]),
            high=float(self._bands[2]), onset_strength=strength, onset=onset, beat=beat.beat,
            beat_phase=beat.beat_phase, bpm=beat.bpm, silence=self._silence,
            spectrum=self._spectrum, waveform=waveform,
            bar_phase=beat.bar_phase, beat_in_bar=beat.beat_in_bar, downbeat=beat.downbeat,
            beat_confidence=beat.confidence, next_beat_s=beat.next_beat_s,
            kick_onset=band_onset[0], snare_onset=band_onset[1], hat_onset=band_onset[2],
            kick=float(self._drums[0]), snare=float(self._drums[1]), hat=float(self._drums[2]),
            centroid_hz=self._centroid_hz, brightness=self._brightness, chroma=self._chroma,
            percussive=self._percussive, buildup=buildup, drop=drop, breakdown=breakdown,
            section=self._section_name,
        )

    def _onset(self, power: np.ndarray, ref_db: float, gated: bool):
        """Spectral flux of the log-compressed, gain-normalised filterbank magnitudes (SuperFlux-style:
        each band is compared with the loudest of its neighbours in the previous hop, which ignores vibrato),
        overall and for the low / mid / high groups of filters.

        Returns (strength, onset, band fluxes (3,), band strengths (3,), band onsets (3,), flux)."""
        st = self.settings
        gain = self._mag_scale * 10.0 ** (-ref_db / 20.0)
        mag = np.sqrt(power)
        bands = np.add.reduceat(mag, self._onset_edges)[:-1] / self._onset_counts
        log_mag = np.log10(1.0 + st.onset_compression * gain * bands)
        prev = self._prev_log                          # (n_onset_bands + 2,): edge values repeated
        if prev is None:
            diff = np.zeros(len(log_mag))
            prev = self._prev_log = np.empty(len(log_mag) + 2)
        else:
            widened = np.maximum(np.maximum(prev[:-2], prev[1:-1]), prev[2:])
            diff = np.maximum(log_mag - widened, 0.0)                                # (n_onset_bands,)
        flux = float(diff.sum()) / len(log_mag)
        prev[1:-1] = log_mag
        prev[0], prev[-1] = log_mag[0], log_mag[-1]
        strength, onset = self._picker.step(flux, gated)
        band_flux = (self._onset_groups @ diff).tolist()
        band = [p.step(f, gated) for p, f in zip(self._band_pickers, band_flux)]
        return strength, onset, band_flux, [b[0] for b in band], [b[1] for b in band], flux

    def _timbre(self, power: np.ndarray, gated: bool) -> np.ndarray | None:
        """Spectral centroid, brightness (the centroid's place on the log-frequency range, 0..1) and chroma.
        Returns this hop's unsmoothed chroma `(12,)` (root of the power per pitch class) for the beat tracker,
        None when silent."""
        if gated:
            self._chroma *= 1.0 - self._a_chroma
            return None
        st = self.settings
        v = self._timbre_map @ power                                                 # (14,)
        total, weighted = float(v[0]), float(v[1])
        if total > 0:
            self._centroid_hz = weighted / total
            target = math.log2(max(self._centroid_hz, st.spectrum_hz[0]) / st.spectrum_hz[0]) / self._log_span
            self._brightness += (min(1.0, target) - self._brightness) * self._a_bright
        raw = np.sqrt(v[2:])
        top = float(raw.max())
        if top > 0:
            self._chroma += (raw * (1.0 / top) - self._chroma) * self._a_chroma
        return raw

    def _percussive_share(self, power: np.ndarray, gated: bool) -> None:
        """Share of energy in the percussive part of a causal median-filter separation (Fitzgerald 2010) on
        the FFT bins: harmonic = median of each bin over the recent past, percussive = median across
        neighbouring bins. Computed every few hops: the result is smoothed over `percussive_s` anyway."""
        self._hpss[self._hpss_i] = power[:self._hpss_n]    # a ring: the median over time ignores the order
        self._hpss_i = (self._hpss_i + 1) % self._hpss_len
        if gated or self.hops % _HPSS_EVERY:
            return
        x2 = power[:self._hpss_n]                    # medians of power are medians of magnitude, squared
        mid = self._hpss_len // 2                    # (np.partition is several times faster than np.median here)
        h2 = np.partition(self._hpss, mid, axis=0)[mid]                                # (n_bins,)
        k = self.settings.hpss_bins
        p2 = np.partition(x2[self._hpss_nb], k // 2, axis=1)[:, k // 2]                # (n_bins,)
        total = float(x2.sum())
        if total <= 0:
            return
        share = float(np.dot(x2, p2 * p2 / (h2 * h2 + p2 * p2 + 1e-30))) / total     # Wiener masks, power 2
        a = 1.0 - (1.0 - self._a_perc) ** _HPSS_EVERY
        self._percussive += (share - self._percussive) * a

    def _sections(self, ms: float, bass_ms: float, gated: bool) -> None:
        """Build-up / drop / breakdown from energy trends (in dB, raw, before the automatic gain).

        breakdown: the bass well below the level of the last full section (a reference that follows the
        bass up within a second or two and down only over `section_slow_s`); build-up: loudness and
        brightness rising over `section_trend_s`; drop: the bass back at full level after a breakdown or
        build-up, decaying over `drop_hold_s`."""
        if gated:
            return
        e_db = 10.0 * math.log10(max(ms, 1e-12))
        b_db = 10.0 * math.log10(max(bass_ms, 1e-12))
        if self._sec is None:
            # fast energy, trend energy, fast bass, bass reference, bass now, fast and trend brightness
            self._sec = [e_db, e_db, b_db, b_db, b_db, self._brightness, self._brightness]
            self._sec_hops = 0
        self._sec_hops += 1
        # Running means until enough has been heard for each time constant, then exponential averages.
        first = 1.0 / self._sec_hops
        a_fast, a_trend = max(self._a_fast, first), max(self._a_trend, first)
        s = self._sec
        s[0] += (e_db - s[0]) * a_fast
        s[1] += (e_db - s[1]) * a_trend
        s[2] += (b_db - s[2]) * a_fast
        s[3] += (s[2] - s[3]) * (self._a_fast if s[2] > s[3] else self._a_slow)
        s[4] += (b_db - s[4]) * max(self._a_bass_now, first)
        s[5] += (self._brightness - s[5]) * a_fast
        s[6] += (self._brightness - s[6]) * a_trend
        clip = lambda v: min(1.0, max(0.0, v))                                      # noqa: E731
        breakdown = clip((s[3] - s[2] - 4.0) / 6.0)                  # bass 4..10 dB under the reference
        buildup = 0.5 * clip((s[0] - s[1] - 1.0) / 3.0) + 0.5 * clip((s[5] - s[6] - 0.02) / 0.06)
        sec = self._section
        sec[0] += (buildup - sec[0]) * self._a_fast
        sec[2] += (breakdown - sec[2]) * self._a_fast
        # A breakdown or build-up within the last drop_hold_s, and the bass is back: that is a drop.
        self._since_tension = 0 if max(sec[0], sec[2]) > 0.5 else self._since_tension + 1
        back = s[4] > s[3] - 3.0 and self._since_tension * self.hop_s < self.settings.drop_hold_s
        sec[1] = 1.0 if back else sec[1] * self._drop_decay
        if back:
            self._since_tension = 1 << 30
        if sec[1] > 0.5:
            self._section_name = "drop"
        elif sec[0] > 0.5:
            self._section_name = "buildup"
        elif sec[2] > 0.5:
            self._section_name = "breakdown"
        else:
            self._section_name = "steady"

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


class _Picker:
    """Onset strength (flux over a slowly forgetting maximum, 0..1) and onset picking: above the recent mean
    by a margin, the largest in a short window, and not too close to the previous onset."""

    def __init__(self, norm_floor: float, delta: float, mean_len: int, max_len: int, min_gap: int,
                 norm_decay: float):
        self._floor, self._delta, self._min_gap, self._decay = norm_floor, delta, min_gap, norm_decay
        self._recent = deque(maxlen=mean_len)
        self._recent_max = deque(maxlen=max_len)
        self._norm = norm_floor
        self._since = min_gap

    def step(self, flux: float, gated: bool) -> tuple[float, bool]:
        self._norm = max(flux, self._floor, self._norm * self._decay)
        strength = min(1.0, flux / self._norm)
        mean = sum(self._recent) / len(self._recent) if self._recent else 0.0
        largest = max(self._recent_max) if self._recent_max else 0.0
        self._since += 1
        onset = (not gated and strength >= mean + self._delta and strength >= largest
                 and self._since >= self._min_gap)
        if onset:
            self._since = 0
        self._recent.append(strength)
        self._recent_max.append(strength)
        return strength, onset
