"""`vj bench latency --beats [AUDIO]`: how close to the true beat a flash on the beat is seen.

The live show plays a scene that flashes on every beat the tracker reports (`beatflash`), with the beat
reported early by the show's own latency estimate (`/audio/lookahead_auto`). A player on the same audio
server plays a marker click, one second of silence, then either a steady click track (120 BPM) or the first
`seconds` of an annotated song (AUDIO with AUDIO.beats beside it, the format of `vj analyze --beats`). The
marker fixes where the content starts in the show's input stream; each true beat's sound time is then known
in the clock the frames are stamped with (as `vj bench latency` times clicks: the callback that delivered
the beat's sample, minus the samples after it, minus the input latency). Each beat after the first
`skip_s` is matched to the flash nearest to it within a third of a beat: error = the swap that first showed
that flash - the beat's sound time. Negative is early. Beats with no flash near them are counted as missed.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vj.audio.clicks import ClickPlayer, click_burst
from vj.audio.servers import AudioServerError
from vj.audio.sources import AudioDeviceError
from vj.config import AudioConfig, RenderConfig
from vj.latency import SoundClock, drive, find_clicks, live_rig

log = logging.getLogger(__name__)

TARGET_P95_MS = 20.0
MARKER_GAP_S = 1.0               # silence between the marker click and the content
CLICK_BPM = 120.0
SKIP_S = 5.0                     # the tracker's time to lock, as mir_eval's scores give it


@dataclass
class BeatLatencyReport:
    what: str
    server: str
    beats: int                                   # annotated beats after skip_s
    errors_ms: list[float] = field(default_factory=list)    # one per beat matched to a flash
    extra_flashes: int = 0                       # flashes near no beat
    lookahead_ms: float = 0.0                    # what the show reported beats early by, at the end
    display_fps: float = 0.0
    size: tuple[int, int] = (0, 0)

    def percentile_abs(self, q: float) -> float:
        e = np.abs(np.asarray(self.errors_ms))
        return float(np.percentile(e, q)) if len(e) else float("nan")

    def lines(self) -> list[str]:
        e = np.asarray(self.errors_ms)
        out = [f"vj bench latency --beats: {self.what} through {self.server}, {self.size[0]}x{self.size[1]}, "
               f"display {self.display_fps:.1f} fps, beats reported {self.lookahead_ms:.1f} ms early "
               "(measured latency)",
               f"  flashes on {len(e)}/{self.beats} beats, {self.extra_flashes} flashes off the beat"]
        if len(e):
            verdict = "meets" if self.percentile_abs(95) <= TARGET_P95_MS and len(e) >= 0.9 * self.beats else "misses"
            out.append(f"  flash - beat: mean {e.mean():+5.1f} ms, p50 {np.median(e):+5.1f} ms, |error| p95 "
                       f"{self.percentile_abs(95):4.1f} ms, max {np.abs(e).max():4.1f} ms   ({verdict} the "
                       f"+-{TARGET_P95_MS:.0f} ms p95 target with 90 % of the beats flashed)")
        return out


def content(audio: Path | None, sample_rate_hz: int, seconds: float) -> tuple[str, np.ndarray, np.ndarray]:
    """(description, mono samples, beat times in s) of the click track or the first `seconds` of a song."""
    if audio is None:
        n_beats = int(seconds * CLICK_BPM / 60.0)
        beats = np.arange(n_beats) * 60.0 / CLICK_BPM
        x = np.zeros(int((beats[-1] + 1.0) * sample_rate_hz), np.float32)
        burst = click_burst(sample_rate_hz, amplitude=0.5)
        for b in beats:
            i = int(round(b * sample_rate_hz))
            x[i:i + len(burst)] += burst
        # A room under the clicks (-50 dBFS noise): between bare clicks the analyser would hear silence.
        x += np.random.default_rng(0).normal(0.0, 10 ** (-50 / 20), len(x)).astype(np.float32)
        return f"a {CLICK_BPM:.0f} BPM click track ({n_beats} beats)", x, beats
    from vj.audio.decode import decode_file
    from vj.bench_beats import read_beats

    beats_path = audio.with_suffix(".beats")
    if not beats_path.is_file():
        raise FileNotFoundError(f"{audio}: no {beats_path.name} beside it (seconds and beat in bar, one a line)")
    x = decode_file(audio, sample_rate_hz).mean(axis=1)[: int(seconds * sample_rate_hz)]
    beats = read_beats(beats_path).times_s
    beats = beats[beats < len(x) / sample_rate_hz - 0.5]
    return f"{audio.name} ({len(x) / sample_rate_hz:.0f} s)", np.ascontiguousarray(x, np.float32), beats


def measure_beat_latency(render_cfg: RenderConfig, audio_cfg: AudioConfig, *, audio: Path | None = None,
                         seconds: float = 40.0, preset: str = "beatflash", server: str = "jack",
                         skip_s: float = SKIP_S) -> BeatLatencyReport:
    sr = audio_cfg.sample_rate_hz
    what, sound, beats = content(audio, sr, seconds)
    marker = click_burst(sr, amplitude=0.8)
    played = np.concatenate((marker, np.zeros(int(MARKER_GAP_S * sr) - len(marker), np.float32), sound))
    with contextlib.ExitStack() as stack:
        show, player, server_what = live_rig(
            stack, render_cfg, audio_cfg, preset, server,
            lambda device, rate: ClickPlayer(device, rate, audio_cfg.block_frames, 1, sound=played, offsets_s=[0.0]))
        show.frame_log = records = []
        length_s = len(played) / sr
        arrivals = drive(show, player, 20.0 + 2.0 * length_s, length_s=length_s + 0.2)
        report = BeatLatencyReport(what=what, server=server_what, beats=int(np.sum(beats >= skip_s)),
                                   size=(render_cfg.width_px, render_cfg.height_px))
        report.lookahead_ms = show.engine.analyzer.beats.lookahead_s * 1e3
        report.display_fps = show.stats.summary().get("display_fps", 0.0)
        match_flashes(report, records, arrivals, sr, show.source.input_latency_s, beats, skip_s)
        return report


def flash_onsets(records) -> list[int]:
    """Indices of the frames where the probe first crosses half-way from dark to bright."""
    probes = np.array([r.probe if r.probe is not None else np.nan for r in records])
    if not np.isfinite(probes).any():
        return []
    dark, bright = float(np.nanpercentile(probes, 5)), float(np.nanmax(probes))
    if bright - dark < 0.05:
        return []
    lit = np.nan_to_num(probes, nan=dark) > dark + 0.5 * (bright - dark)
    return [i for i in range(1, len(lit)) if lit[i] and not lit[i - 1]]


def match_flashes(report: BeatLatencyReport, records, arrivals: list[tuple[int, float]], sample_rate_hz: int,
                  input_latency_s: float, beats_s: np.ndarray, skip_s: float) -> None:
    """Fill `report.errors_ms` and `extra_flashes`: each beat after `skip_s` against the nearest flash."""
    marks = find_clicks(records, sample_rate_hz, threshold=0.5, quiet_s=0.5)
    if not marks or not arrivals:
        return
    start = marks[0] + int(MARKER_GAP_S * sample_rate_hz)           # input-stream index of the content
    clock = SoundClock(arrivals, sample_rate_hz, input_latency_s)
    timed = (clock.at(start + int(round(b * sample_rate_hz))) for b in beats_s[beats_s >= skip_s])
    sounds = [t[0] for t in timed if t is not None]
    flashes = np.array([records[i].t_swapped for i in flash_onsets(records)])
    if not len(sounds) or not len(flashes):
        return
    sounds = np.array(sounds)
    period = float(np.median(np.diff(beats_s))) if len(beats_s) > 1 else 0.5
    used = set()
    for s in sounds:
        j = int(np.argmin(np.abs(flashes - s)))
        if abs(flashes[j] - s) <= period / 3:
            report.errors_ms.append((flashes[j] - s) * 1e3)
            used.add(j)
    window = (flashes >= sounds[0] - period / 3) & (flashes <= sounds[-1] + period / 3)
    report.extra_flashes = int(np.sum(window)) - len(used)


def run_beat_latency_bench(render_cfg: RenderConfig, audio_cfg: AudioConfig, *, audio: Path | None = None,
                           seconds: float = 40.0, server: str = "jack") -> BeatLatencyReport:
    try:
        report = measure_beat_latency(render_cfg, audio_cfg, audio=audio, seconds=seconds, server=server)
    except (AudioServerError, AudioDeviceError, FileNotFoundError) as exc:
        raise SystemExit(f"vj bench latency --beats: {exc}") from None
    for line in report.lines():
        print(line)
    return report
