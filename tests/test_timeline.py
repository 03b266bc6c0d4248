"""Timelines: parsing and checking with file:line errors, bar/beat times, and real renders that switch
presets, ramp params and change seeds on the exact frames the cues name (read back as PNG sequences)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from audio_synth import silence_then_kicks, write_wav
from vj.analyze import analyze_samples
from vj.config import AudioConfig, RenderConfig
from vj.gfx.png import read_png
from vj.show import render_offline
from vj.timeline import BeatGrid, TimelineError, parse_timeline

REPO = Path(__file__).resolve().parents[1]
VJ_BIN = REPO / ".venv" / "bin" / "vj"
VJ = [str(VJ_BIN)] if VJ_BIN.exists() else [sys.executable, "-m", "vj.cli"]
FPS = 10.0
CFG = RenderConfig(width_px=64, height_px=36, fps=FPS, render_scale=1.0)
needs_ffprobe = pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe (Debian ffmpeg) missing")

# Three scenes whose pictures cannot be confused: black (master brightness 0), flat white (a full white
# screen flash) and flat grey (colour grade with no contrast and no saturation). The flash and the grade
# have different instance names, so a morph between them has no params in common: only the picture dissolves.
PRESETS = {
    "black.toml": '''name = "black"
[model]
name = "cppn"
seed = 1
[values]
"/master/brightness" = 0.0
''',
    "white.toml": '''name = "white"
[model]
name = "cppn"
seed = 1
[[effects]]
shader = "flash"
name = "white"
[values]
"/master/brightness" = 1.0
"/fx/white/flash" = 1.0
"/fx/white/flashColor" = [1.0, 1.0, 1.0, 1.0]
''',
    "grey.toml": '''name = "grey"
[model]
name = "cppn"
seed = 1
[[effects]]
shader = "colorgrade"
name = "grey"
[values]
"/master/brightness" = 1.0
"/fx/grey/contrast" = 0.0
"/fx/grey/saturation" = 0.0
''',
    "plain.toml": '''name = "plain"
[model]
name = "cppn"
seed = 1
[values]
"/master/brightness" = 1.0
"/model/spin" = 0.2
''',
}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    d = tmp_path_factory.mktemp("scenes")
    for name, text in PRESETS.items():
        (d / name).write_text(text)
    samples, _ = silence_then_kicks(silent_s=1.0, loud_s=3.0)
    write_wav(d / "silence1s_kicks120bpm_3s_48k.wav", samples)
    return d


def render(scenes: Path, name: str, timeline: str, preset: str = "black.toml", **kw) -> np.ndarray:
    """Render the test track with `timeline` to a PNG sequence; (frames,) mean brightness 0..255 and the frames."""
    tl = scenes / f"{name}.toml"
    tl.write_text(timeline)
    out = scenes / name
    rep = render_offline(str(scenes / "silence1s_kicks120bpm_3s_48k.wav"), f"{out}/", str(scenes / preset), CFG,
                         AudioConfig(), progress=False, timeline=tl, **kw)
    frames = np.stack([read_png(out / f"{i:06d}.png") for i in range(rep.frames)]).astype(np.float32)
    assert not (out / f"{rep.frames:06d}.png").exists()
    return frames


def means(frames: np.ndarray) -> np.ndarray:
    return frames.mean(axis=(1, 2, 3))


# ---- parsing --------------------------------------------------------------------------------------


def test_parse_full_example_and_times():
    tl = parse_timeline('''bpm = 128
beats_per_bar = 3

[[at]]
time = "1:15.5"
preset = "nebula"

[[at]]
bar = 17
beat = 2
preset = "prism"
transition_beats = 4

[[at]]
beat = 200
cmd = "/cmd/blackout"

[[at]]
time = 12
ramp = { "/master/brightness" = [1.0, 0.0] }
over_s = 2
curve = "smooth"
''', Path("show.toml"))
    assert tl.bpm == 128 and tl.beats_per_bar == 3
    a, b, c, d = tl.cues
    assert (a.time_s, a.preset, a.line) == (75.5, "nebula", 4)
    assert (b.bar, b.beat, b.transition_beats, b.line) == (17.0, 2.0, 4.0, 8)
    assert c.cmd == (("/cmd/blackout", None),) and c.beat == 200.0
    assert d.ramp["/master/brightness"] == [1.0, 0.0] and d.over_s == 2.0 and d.curve == "smooth"


@pytest.mark.parametrize("text, line, reason", [
    ('[[at]]\ntime = 1\npreset = "x"\nwhen = 3\n', 4, "unknown key 'when'"),
    ('[[at]]\ntime = 1\npreset = "a"\n\n[[at]]\ntime = 2\nbar = 3\npreset = "b"\n', 6, "not both"),
    ('[[at]]\ntime = 1\npreset = "a"\n[[at]]\nbar = 2\n\nramp = { "/master/brightness" = 0.5 }\n', 7,
     "over_beats or over_s"),
    ('[[at]]\ntime = "1:7x"\npreset = "a"\n', 2, "m:ss"),
    ('[[at]]\ntime = 3\n\ncmd = "/cmd/preset/next"\n', 4, "cannot run in a timeline"),
    ('[[at]]\ntime = 3\n', 1, "something to do"),
    ('[[at]]\nbar = 0\npreset = "a"\n', 2, ">= 1"),
    ('bpm = 128\n[[at]]\nbar = 2\nbeat = 5\npreset = "a"\n', 4, "not in a bar of 4 beats"),
    ('[[at]]\ntime = 3\npreset = "a"\ncurve = "bouncy"\n', 4, "belongs to a ramp"),
    ('tempo = 128\n[[at]]\ntime = 3\npreset = "a"\n', 1, "unknown key 'tempo'"),
    ('[[at]]\ntime = 3\nset = { "fx/x" = 1 }\n', 3, "is not a param path"),
])
def test_parse_errors_name_file_line_and_reason(text, line, reason):
    with pytest.raises(TimelineError) as err:
        parse_timeline(text, Path("song.toml"))
    msg = str(err.value)
    assert msg.startswith(f"song.toml:{line}: "), msg
    assert reason in msg and "\n" not in msg


def test_inline_cue_array_parses_without_lines():
    tl = parse_timeline('at = [{ time = 1, preset = "a" }, { time = 2, set = { "/master/brightness" = 0.5 } }]\n')
    assert [c.time_s for c in tl.cues] == [1.0, 2.0] and tl.cues[0].line is None


# ---- beats and bars -------------------------------------------------------------------------------


def test_bpm_grid_counts_bars_and_beats_from_one():
    g = BeatGrid.from_bpm(120.0, 0.3, 4, duration_s=10.0)
    assert g.time_of_beat(g.bar_start(1)) == pytest.approx(0.3)
    assert g.time_of_beat(g.bar_start(3) + 2) == pytest.approx(0.3 + 10 * 0.5)     # bar 3, beat 3
    assert g.time_of_beat(g.bar_start(2.5)) == pytest.approx(0.3 + 6 * 0.5)        # half-way through bar 2
    assert g.beats_to_s(1.0, 4) == pytest.approx(2.0)
    assert g.time_of_beat(200) == pytest.approx(0.3 + 200 * 0.5)                   # past the grid: extrapolated


def test_analysed_grid_follows_the_kicks():
    samples, kicks = silence_then_kicks(silent_s=1.0, loud_s=8.0)
    g = BeatGrid.from_audio(samples.mean(axis=1), AudioConfig(), 4)
    assert g.period_s == pytest.approx(0.5, abs=0.02)
    # Every detected beat sits on a kick; bars are four beats apart. The grid's next beat after the last kick
    # falls when the audio ends (9.0 s) and is reported up to the tracker's report delay (23 ms) before it:
    # it has no kick to sit on.
    for t in g.beats_s[g.beats_s < kicks[-1] + 0.25]:
        assert min(abs(t - k) for k in kicks) < 0.05, t
    assert np.all(g.beats_s < len(samples) / 48000 + 1e-9)
    assert g.time_of_beat(g.bar_start(2)) - g.time_of_beat(g.bar_start(1)) == pytest.approx(2.0, abs=0.06)
    a = analyze_samples(samples.mean(axis=1))
    assert np.allclose(g.beats_s, a.beats_s)          # the same analysis on the same samples: equal in fact


# ---- renders --------------------------------------------------------------------------------------


def test_cuts_land_on_the_frames_of_their_time_bar_and_beat(scenes):
    t_white, bar_black, beat_white = 1.3, 2, 7
    m = means(render(scenes, "cuts", f'''bpm = 120
offset_s = 0.3

[[at]]
time = {t_white}
preset = "white.toml"

[[at]]
bar = {bar_black}
preset = "black.toml"

[[at]]
beat = {beat_white}
preset = "white.toml"
'''))
    assert len(m) == 40
    f1 = round(t_white * FPS)                          # 13
    f2 = round((0.3 + 4 * 0.5) * FPS)                  # bar 2 at 2.3 s: 23
    f3 = round((0.3 + 6 * 0.5) * FPS)                  # beat 7 at 3.3 s: 33
    black, white = m < 2.0, m > 250.0                   # 8-bit frames: black is 0, white 255; cuts are whole
    assert black[:f1].all() and white[f1:f2].all() and black[f2:f3].all() and white[f3:].all(), np.round(m)


def test_transition_dissolves_with_its_midpoint_on_time(scenes):
    frames = render(scenes, "fade", '''[[at]]
time = 1.0
preset = "grey.toml"
transition_s = 1.0
''', preset="white.toml")
    m = means(frames)
    a, b = m[5], m[-1]
    assert a > 250 and 60 < b < 200 and np.ptp(frames[-1]) < 3        # white, then flat grey
    mid = (a + b) / 2
    assert abs(m[9] - a) < 1 and abs(m[10] - a) < 1                     # the dissolve starts on frame 10
    # 2 levels of 255: 8-bit rounding of each pixel (0.5) plus GL/torch rounding; a frame early is 10+ off.
    assert abs(m[15] - mid) < 2, np.round(m[8:22])                       # half-way at 1.5 s
    assert m[14] > mid + 10 and m[16] < mid - 10                         # smoothstep on both sides
    assert abs(m[20] - b) < 1 and np.all(np.diff(m[10:21]) < 0.5)


def test_set_and_ramp_params(scenes):
    m = means(render(scenes, "ramp", '''[[at]]
time = 0
preset = "white.toml"

[[at]]
time = 1.0
set = { "/master/brightness" = 0.0 }

[[at]]
time = 2.0
ramp = { "/master/brightness" = 1.0 }
over_s = 1.0
'''))
    # /master/brightness follows its 50 ms smoothing: most of the way down on the cue's frame.
    assert (m[:10] > 250).all() and m[10] < 50 and (m[12:21] < 2).all(), np.round(m)
    ramp = m[20:31]
    assert np.all(np.diff(ramp) > 5), np.round(ramp)                    # rising every frame over the second
    assert (m[32:] > 250).all()


def test_seed_change_and_determinism(scenes):
    base = render(scenes, "base", '[[at]]\ntime = 0\nset = { "/model/spin" = 0.2 }\n', preset="plain.toml")
    again = render(scenes, "again", '[[at]]\ntime = 0\nset = { "/model/spin" = 0.2 }\n', preset="plain.toml")
    assert np.array_equal(base, again)                                   # same audio + timeline, same frames
    seeded = render(scenes, "seed", '[[at]]\ntime = 2.0\nmodel = { seed = 9 }\n', preset="plain.toml")
    assert np.array_equal(seeded[:20], base[:20])
    diff = np.abs(seeded[20:] - base[20:]).mean(axis=(1, 2, 3))
    assert (diff > 5).all(), np.round(diff)


@pytest.mark.parametrize("text, line, reason", [
    ('[[at]]\ntime = 1\n\npreset = "nope"\n', 4, "unknown preset 'nope'"),
    ('[[at]]\ntime = 1\npreset = "white.toml"\n\n[[at]]\ntime = 2\nset = { "/fx/grey/contrast" = 1 }\n', 7,
     "unknown param '/fx/grey/contrast' in preset 'white'"),
    ('[[at]]\ntime = 1\nset = { "/master/brightness" = 3 }\n', 3, "outside 0..2"),
    ('[[at]]\ntime = 10\npreset = "white.toml"\n', 1, "past the end of the audio"),
    ('[[at]]\ntime = 1\nmodel = { seeed = 3 }\n', 3, "bad settings"),
    ('[[at]]\ntime = 1\ncmd = "/cmd/nothing"\n', 3, "unknown command"),
    ('[[at]]\ntime = 1\nramp = { "/master/blackout" = 1 }\nover_s = 1\n', 3, "cannot ramp"),
])
def test_checked_before_anything_renders(scenes, text, line, reason):
    tl = scenes / "bad.toml"
    tl.write_text(text)
    out = scenes / "bad-out"
    with pytest.raises(TimelineError) as err:
        render_offline(str(scenes / "silence1s_kicks120bpm_3s_48k.wav"), f"{out}/", str(scenes / "black.toml"),
                       CFG, AudioConfig(), progress=False, timeline=tl)
    assert str(err.value).startswith(f"{tl}:{line}: "), str(err.value)
    assert reason in str(err.value)
    assert not out.exists()


# ---- through the CLI ------------------------------------------------------------------------------


@needs_ffprobe
def test_cli_renders_mp4_with_timeline(scenes, tmp_path):
    tl = tmp_path / "clip.toml"
    tl.write_text(f'bpm = 120\n[[at]]\nbar = 2\npreset = "{scenes / "white.toml"}"\n')
    out = tmp_path / "clip.mp4"
    r = subprocess.run(VJ + ["render", str(scenes / "silence1s_kicks120bpm_3s_48k.wav"), "-o", str(out),
                             "--preset", str(scenes / "black.toml"), "--size", "64x36", "--fps", "10",
                             "--timeline", str(tl), "--no-progress"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    probe = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_streams", "-of", "json", str(out)],
                           capture_output=True, text=True, check=True)
    video = next(s for s in json.loads(probe.stdout)["streams"] if s["codec_type"] == "video")
    assert int(video["nb_read_frames"]) == 40
    import av
    with av.open(str(out)) as c:
        m = [f.to_ndarray(format="rgb24").mean() for f in c.decode(video=0)]
    assert max(m[:20]) < 20 and min(m[20:]) > 230, np.round(m)       # bar 2 at 120 BPM: 2.0 s, frame 20


def test_cli_bad_timeline_is_one_line_and_writes_nothing(scenes, tmp_path):
    tl = tmp_path / "broken.toml"
    tl.write_text('[[at]]\ntime = 1\npreset = "white.toml"\nlater = true\n')
    out = tmp_path / "never.mp4"
    r = subprocess.run(VJ + ["render", str(scenes / "silence1s_kicks120bpm_3s_48k.wav"), "-o", str(out),
                             "--size", "64x36", "--fps", "10", "--timeline", str(tl), "--no-progress"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert lines == [f"vj: error: {tl}:4: cue #1: unknown key 'later'; a cue has time/bar/beat, preset, model, set, "
                     "ramp, cmd and transition_beats, transition_s, over_beats, over_s, curve"], r.stderr
    assert not out.exists()
