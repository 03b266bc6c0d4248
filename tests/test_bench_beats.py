"""`vj bench beats DIR`: mir_eval scores with known answers, the printed table, and vj's own row."""

from __future__ import annotations

import math
import wave

import numpy as np
import pytest

pytest.importorskip("mir_eval")

from vj.analyze import analyze_file  # noqa: E402
from vj.bench_beats import Beats, Tracker, print_beat_bench, read_beats, score  # noqa: E402
from vj.cli import main  # noqa: E402
from vj.config import AudioConfig  # noqa: E402

SR = 44100


def _grid(period_s: float, until_s: float, per_bar: int = 4, offset_s: float = 0.0) -> Beats:
    t = offset_s + period_s * np.arange(int(until_s / period_s))
    return Beats(t, np.arange(len(t)) % per_bar + 1)


def test_scores_have_known_answers():
    ref = _grid(0.5, 30.0)
    same = score(ref, ref)
    assert (same.f, same.cmlt, same.amlt, same.downbeat_f, same.switch) == (1.0, 1.0, 1.0, 1.0, 1.0)

    # Half a beat late: no beat within 70 ms, continuous only at the off-beat level AMLt allows (mir_eval's
    # off-beat reference ends half a beat before the annotation, so the late tracker stops there too).
    off = score(ref, Beats(ref.times_s[:-1] + 0.25, ref.in_bar[:-1]))
    assert (off.f, off.cmlt, off.amlt, off.downbeat_f) == (0.0, 0.0, 1.0, 0.0)

    # Twice the tempo: all 50 reference beats from 5 to 29.5 s found (recall 1) among 99 (precision 50/99).
    double = score(ref, _grid(0.25, 29.75, per_bar=8))
    precision = 50 / 99
    assert double.f == pytest.approx(2 * precision / (precision + 1)) and double.cmlt == 0.0 and double.amlt == 1.0

    # Downbeats one beat late: beats perfect, bars all wrong.
    shifted_bars = score(ref, Beats(ref.times_s, np.roll(ref.in_bar, 1)))
    assert shifted_bars.f == 1.0 and shifted_bars.downbeat_f == 0.0 and shifted_bars.switch == 0.0

    # Bars right for the first 15 s, one beat late after: of the tracker's 12 downbeats from 5 s on (6, 8, ...,
    # 14 s on the annotated ones; 16.5, 18.5, ..., 28.5 s a beat late), 5 are where a switch should land.
    half_right = np.where(ref.times_s < 15.0, ref.in_bar, np.roll(ref.in_bar, 1))
    assert score(ref, Beats(ref.times_s, half_right)).switch == pytest.approx(5 / 12)

    # No bars from the tracker: no downbeat score. Wrong beats in the first 5 s do not count.
    assert math.isnan(score(ref, Beats(ref.times_s, None)).downbeat_f)
    assert math.isnan(score(ref, Beats(ref.times_s, None)).switch)
    late = ref.times_s >= 5.0
    early_noise = np.concatenate((np.arange(0.1, 5.0, 0.37), ref.times_s[late]))
    assert score(ref, Beats(early_noise, None)).f == 1.0


def _clicks(path, beats: Beats, duration_s: float) -> None:
    """A 16-bit WAV with a 5 ms 2 kHz click on every beat, louder on the downbeats."""
    x = np.zeros(int(duration_s * SR))
    burst = np.sin(2 * np.pi * 2000 * np.arange(int(0.005 * SR)) / SR)
    for t, b in zip(beats.times_s, beats.in_bar):
        i = int(round(t * SR))
        x[i:i + len(burst)] += (0.8 if b == 1 else 0.4) * burst[:len(x) - i]
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes((x * 32767).astype("<i2").tobytes())


def _write_beats(path, beats: Beats) -> None:
    path.write_text("".join(f"{t:.4f}\t{b}\n" for t, b in zip(beats.times_s, beats.in_bar)))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("beats")
    for name, period, per_bar in (("clicks_120bpm_4-4", 0.5, 4), ("clicks_100bpm_3-4", 0.6, 3)):
        beats = _grid(period, 12.0, per_bar, offset_s=0.25)
        _clicks(d / f"{name}.wav", beats, 12.5)
        _write_beats(d / f"{name}.beats", beats)
    _clicks(d / "no_annotation.wav", _grid(0.5, 6.0), 6.0)        # no .beats beside it: not scored
    return d


def test_the_table_has_a_row_per_annotated_file_and_the_means(folder, capsys):
    oracle = Tracker("oracle", False, lambda p: read_beats(p.with_suffix(".beats")))

    def late(p):
        b = read_beats(p.with_suffix(".beats"))
        keep = b.times_s[:-1] >= b.times_s[b.times_s >= 5.0][0]     # as above: within the off-beats that
        half = np.median(np.diff(b.times_s)) / 2                    # mir_eval makes of the trimmed annotation
        return Beats(b.times_s[:-1][keep] + half, b.in_bar[:-1][keep])

    results = print_beat_bench(folder, [oracle, Tracker("half a beat late", True, late)])
    out = capsys.readouterr().out.splitlines()
    assert [r.name for r in results] == ["clicks_100bpm_3-4", "clicks_120bpm_4-4"]
    rows = [line for line in out if line.startswith(("clicks_", "mean of"))]
    assert len(rows) == 3 and rows[-1].startswith("mean of 2 files")
    for line in rows:
        cells = [c.split() for c in line.split(" | ")[1:]]
        assert cells == [["1.000"] * 5, ["0.000", "0.000", "1.000", "0.000", "0.000"]], line
    assert any(line.startswith("CPU s per s of audio") for line in out)


def test_vj_bench_beats_scores_what_vj_analyze_finds(folder, capsys):
    assert main(["bench", "beats", str(folder)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "vj onsets (causal)" in out[1] and "vj network (causal)" in out[1]
    for name in ("clicks_120bpm_4-4", "clicks_100bpm_3-4"):
        line = next(line for line in out if line.startswith(name))
        for column, beats_from in ((1, "onsets"), (2, "network")):
            a = analyze_file(folder / f"{name}.wav", audio_cfg=AudioConfig(beats_from=beats_from))
            want = score(read_beats(folder / f"{name}.beats"), Beats(a.beats_s, a.beat_in_bar))
            cells = line.split(" | ")[column].split()
            assert [float(c) for c in cells[:3]] == [round(v, 3) for v in (want.f, want.cmlt, want.amlt)], line


def test_vj_bench_beats_needs_a_folder(tmp_path, capsys):
    assert main(["bench", "beats"]) == 1
    assert main(["bench", "beats", str(tmp_path)]) == 1            # no annotated audio in it
    assert "no audio file with a .beats file" in capsys.readouterr().err


@pytest.mark.parametrize("setting, network_f", [("lookahead_s=0.1", 0.0), ("flux_delay_s=0.123", 0.9)])
def test_vj_bench_beats_set_changes_vjs_analysis(folder, capsys, setting, network_f):
    """`--set` reaches the beat tracker (lookahead_s: both of vj's rows) and the analyzer (flux_delay_s: the
    onsets row; the network row has its own delay): beats reported 100 ms early fall outside mir_eval's +-70 ms
    window (F 0) where the defaults put them on the clicks."""
    name = "clicks_120bpm_4-4"
    default = analyze_file(folder / f"{name}.wav")
    assert score(read_beats(folder / f"{name}.beats"), Beats(default.beats_s, default.beat_in_bar)).f > 0.9
    assert main(["bench", "beats", str(folder), "--only", name, "--set", setting]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"vj bench beats: vj's analysis with {setting}"
    line = next(line for line in out if line.startswith(name))
    onsets_f, net_f = (float(line.split(" | ")[c].split()[0]) for c in (1, 2))
    assert onsets_f == 0.0 and (net_f == 0.0 if network_f == 0.0 else net_f > network_f), line


@pytest.mark.parametrize("setting, says", [("no_such_setting=1", "KEY a setting of the analyzer"),
                                           ("lookahead_s", "KEY a setting of the analyzer"),
                                           ("lookahead_s=__import__('os')", "is not a float"),
                                           ("lookahead_s=nan", "is not a float"),
                                           ("detect_triple=maybe", "is not a bool"),
                                           ("beats_per_bar=3.5", "is not a int")])
def test_vj_bench_beats_set_refuses_what_is_not_a_setting(folder, capsys, setting, says):
    assert main(["bench", "beats", str(folder), "--set", setting]) == 1
    assert says in capsys.readouterr().err
