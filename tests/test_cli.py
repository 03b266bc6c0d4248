"""Command-line errors are one clear line and a non-zero exit, never a traceback."""

import os
import re
import subprocess
import sys

from pathlib import Path

VJ = [sys.executable, "-m", "vj.cli"]


def run(args, env=None, timeout=120):
    return subprocess.run(VJ + args, capture_output=True, text=True, timeout=timeout, env=env)


def one_line_error(r, *needles):
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    lines = [l for l in r.stderr.splitlines() if l.startswith("vj: error:")]
    assert len(lines) == 1, r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_missing_audio_file(tmp_path):
    one_line_error(run(["render", str(tmp_path / "nope.wav"), "-o", str(tmp_path / "o.mp4")]), "nope.wav")


def test_unreadable_audio_file(tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_text("this is not audio\n")
    one_line_error(run(["render", str(bad), "-o", str(tmp_path / "o.mp4")]), "notes.wav")


def test_unknown_preset(tmp_path):
    one_line_error(run(["render", "demo", "-o", str(tmp_path / "o.mp4"), "--preset", "no-such-scene"]),
                   "no-such-scene", "available")


def test_no_display_for_run():
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    one_line_error(run(["run", "--duration", "1", "--osc-port", "0"], env=env), "display")


def test_bad_size_is_a_usage_error(tmp_path):
    r = run(["render", "demo", "-o", str(tmp_path / "o.mp4"), "--size", "big"])
    assert r.returncode == 2 and "size must look like" in r.stderr


def test_presets_list():
    r = run(["presets"])
    assert r.returncode == 0
    assert len([l for l in r.stdout.splitlines() if l.strip()]) >= 3


def test_shaders_test_command_reports_each_file(tmp_path):
    good = (Path(__file__).resolve().parent.parent / "shaders" / "mirror.fs").read_text()
    (tmp_path / "good.fs").write_text(good)
    (tmp_path / "broken.fs").write_text(good.replace("void main() {", "void main() { undefined_call();", 1))
    r = run(["shaders", "test", str(tmp_path)])
    assert r.returncode == 1
    assert "PASS good" in r.stdout
    fail = [l for l in r.stdout.splitlines() if l.startswith("FAIL broken")]
    assert fail and "undefined_call" in fail[0] and re.search(r"broken\.fs:\d+:", fail[0]), r.stdout
