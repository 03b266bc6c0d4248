"""`vj run` under its supervisor: a show killed mid-set is back on screen with its scene, values, servers,
recording and session; a show that keeps crashing is given up with one clear line.

The supervisor's rules run against a fake child (a few lines of Python that speak the same protocol: the state
file, --standby and the line on stdin), so they take a fraction of a second each. The whole thing runs once for
real: `vj run` in a window under Xvfb, SIGKILLed, checked over OSCQuery, on the screen and in the files.
"""

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path
from types import MappingProxyType, SimpleNamespace

import pytest
import torch

from netns import only_loopback
from test_live import free_udp_port, grab
from test_render import ffprobe

import vj.audio.sources as sources
import vj.spare as spare
from vj.config import AudioConfig, RenderConfig
from vj.control.state import ControlSnapshot
from vj.audio.features import SILENT
from vj.models.registry import create_generator
from vj.params import Param
from vj.presets import dump_preset, parse_preset
from vj.session import Session
from vj.showstate import Resume, StateWriter, continuation
from vj.supervisor import CrashLoopError, CrashPolicy, Supervisor, describe_exit, exit_status, ready_file
from xvfb import xvfb_display  # noqa: F401  (fixture)

FAKE_CHILD = textwrap.dedent('''
    import json, os, signal, sys, time
    args = sys.argv[1:]
    state = args[args.index("--state-file") + 1]
    reason = None
    if "--standby" in args:
        open(os.path.join(os.path.dirname(state), f"spare-{os.getpid()}.ready"), "w").close()
        line = sys.stdin.readline()
        if not line:
            sys.exit(0)
        reason = json.loads(line)
    log = os.environ["FAKE_LOG"]
    n = len(open(log).readlines()) if os.path.exists(log) else 0
    plan = os.environ["FAKE_PLAN"].split(",")
    step = plan[min(n, len(plan) - 1)]
    with open(log, "a") as f:
        f.write(json.dumps({"pid": os.getpid(), "reason": reason, "t": time.monotonic(), "step": step}) + "\\n")
    if step not in ("fail", "early-kill"):         # up: the state file names this process
        with open(state + ".tmp", "w") as f:
            json.dump({"pid": os.getpid(), "n": n}, f)
        os.replace(state + ".tmp", state)
    if step in ("kill", "early-kill"):
        os.kill(os.getpid(), signal.SIGKILL)
    if step == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    if step in ("fail", "error"):
        sys.exit(1)
    if step == "wait":
        try:
            time.sleep(60)
        except KeyboardInterrupt:          # as vj.cli.main does on SIGINT
            with open(log + ".stopped", "w") as f:
                f.write("SIGINT")
            sys.exit(130)
    sys.exit(0)
''')


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """(command, log reader) for a fake child following FAKE_PLAN: one step per start (the last repeats)."""
    script = tmp_path / "fake_child.py"
    script.write_text(FAKE_CHILD)
    log = tmp_path / "starts.jsonl"
    monkeypatch.setenv("FAKE_LOG", str(log))

    def starts():
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return [sys.executable, str(script)], starts


def test_crash_policy_restarts_at_once_then_backs_off_then_gives_up():
    policy = CrashPolicy(max_crashes=5, window_s=60.0, first_backoff_s=1.0)
    assert [policy.crashed(t) for t in (0.0, 1.0, 2.0, 3.0)] == [0.0, 1.0, 2.0, 4.0]
    assert policy.crashed(4.0) is None
    # Crashes older than the window are forgotten: a show that crashes once an hour restarts at once each time.
    policy = CrashPolicy(max_crashes=5, window_s=60.0, first_backoff_s=1.0)
    assert [policy.crashed(t) for t in (0.0, 3600.0, 7200.0)] == [0.0, 0.0, 0.0]


def test_exits_in_words():
    assert describe_exit(-signal.SIGKILL) == "was killed by SIGKILL"
    assert describe_exit(-signal.SIGSEGV) == "was killed by SIGSEGV"
    assert describe_exit(1) == "exited with status 1"
    assert exit_status(-signal.SIGKILL) == 137 and exit_status(0) == 0


def test_a_killed_child_is_replaced_and_told_why(fake, monkeypatch, tmp_path):
    cmd, starts = fake
    monkeypatch.setenv("FAKE_PLAN", "kill,segv,error,exit0")
    sup = Supervisor(cmd, tmp_path / "run", policy=CrashPolicy(max_crashes=4, window_s=60.0, first_backoff_s=0.1))
    assert sup.run() == 0
    runs = starts()
    assert [r["step"] for r in runs] == ["kill", "segv", "error", "exit0"]
    assert runs[0]["reason"] is None                      # the first child starts from the command line
    assert runs[1]["reason"] == "the show was killed by SIGKILL (restart 1)"
    assert runs[2]["reason"] == "the show was killed by SIGSEGV (restart 2)"
    assert runs[3]["reason"] == "the show exited with status 1 (restart 3)"     # an error once it was up
    assert sup.spare is None                              # no spare left behind


def test_a_child_that_keeps_crashing_is_given_up_after_backing_off(fake, monkeypatch, tmp_path):
    cmd, starts = fake
    monkeypatch.setenv("FAKE_PLAN", "kill")
    backoff_s = 0.3
    sup = Supervisor(cmd, tmp_path / "run", policy=CrashPolicy(max_crashes=4, window_s=60.0,
                                                                first_backoff_s=backoff_s))
    with pytest.raises(CrashLoopError, match=r"crashed 4 times in 60 s \(last: it was killed by SIGKILL\)"):
        sup.run()
    t = [r["t"] for r in starts()]
    assert len(t) == 4
    # Waits of 0, 0.3 and 0.6 s before the 2nd, 3rd and 4th start: lower bounds, whatever the machine's speed.
    assert t[2] - t[1] >= backoff_s and t[3] - t[2] >= 2 * backoff_s, t


def test_a_first_start_that_fails_is_not_retried(fake, monkeypatch, tmp_path):
    cmd, starts = fake
    for plan, status in (("fail", 1), ("early-kill", 128 + signal.SIGKILL)):
        (tmp_path / "starts.jsonl").unlink(missing_ok=True)
        monkeypatch.setenv("FAKE_PLAN", plan)
        assert Supervisor(cmd, tmp_path / plan).run() == status
        assert len(starts()) == 1, plan


def test_sigterm_to_the_supervisor_stops_the_show_cleanly(fake, tmp_path):
    cmd, starts = fake
    env = dict(os.environ, FAKE_PLAN="wait")
    code = ("import sys; from vj.supervisor import Supervisor; "
            f"sys.exit(Supervisor({cmd!r}, {str(tmp_path / 'run')!r}).run())")
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not list((tmp_path / "run").glob("spare-*.ready")) and time.monotonic() < deadline:
            time.sleep(0.05)        # the child is up and its spare waits
        child = json.loads((tmp_path / "run" / "state.json").read_text())["pid"]
        spare = int(next((tmp_path / "run").glob("spare-*.ready")).name.split("-")[1].split(".")[0])
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err             # the child's status after its SIGINT
    assert (tmp_path / "starts.jsonl.stopped").read_text() == "SIGINT"
    assert not Path(f"/proc/{child}").exists() and not Path(f"/proc/{spare}").exists()
    assert len(starts()) == 1                      # the spare was let go without taking over


def test_the_supervisor_stays_small():
    code = ("import sys, vj.cli, vj.supervisor; vj.cli.build_parser(); "
            "print(sorted({'torch', 'moderngl', 'glfw', 'numpy', 'av'} & set(sys.modules)))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "[]", r.stdout + r.stderr


def test_continuations_never_overwrite(tmp_path):
    show = tmp_path / "show.mp4"
    assert continuation(show) == tmp_path / "show.restart1.mp4"
    (tmp_path / "show.restart1.mp4").touch()
    assert continuation(show) == tmp_path / "show.restart2.mp4"
    assert continuation(tmp_path / "show.restart1.mp4") == tmp_path / "show.restart2.mp4"
    (tmp_path / "set.2024").mkdir()
    assert continuation(tmp_path / "set.2024") == tmp_path / "set.2024.restart1"


def test_resume_without_a_state_keeps_the_command_line_but_not_its_files(tmp_path):
    (tmp_path / "show.mp4").write_bytes(b"the show so far")
    r = Resume.load(tmp_path / "missing.json", "why", preset="prism", record=tmp_path / "show.mp4",
                    session=tmp_path / "never-made", fullscreen=1, hud=True, duration_s=30.0)
    assert (r.preset, r.fullscreen, r.hud, r.duration_s) == ("prism", 1, True, 30.0)
    assert r.record == tmp_path / "show.restart1.mp4"
    assert r.session == tmp_path / "never-made" and r.old_session is None


def test_the_state_a_show_writes_is_what_a_restart_takes_over(tmp_path):
    preset = parse_preset('name = "Tinted"\n[model]\nname = "plasma"\n[values]\n"/fx/tint/amount" = 0.25\n',
                          tmp_path / "tinted.toml")
    params = (Param("/fx/tint/amount", 0.5), Param("/fx/tint/color", (1.0, 1.0, 1.0, 1.0), kind="color"),
              Param("/fx/tint/flash", False, kind="event"))
    values = {"/fx/tint/amount": 0.75, "/fx/tint/color": (0.5, 0.25, 0.0, 1.0), "/fx/tint/flash": True}
    show = SimpleNamespace(
        engine=SimpleNamespace(hub=SimpleNamespace(snapshot=ControlSnapshot(params=params,
                                                                            values=MappingProxyType(values))),
                               preset=preset),
        recorder=SimpleNamespace(path=tmp_path / "show.mp4"), session=None, window=SimpleNamespace(on_monitor=1),
        hud_visible=True, clock=SimpleNamespace(t_s=12.5))
    (tmp_path / "show.mp4").write_bytes(b"the show so far")
    writer = StateWriter(tmp_path / "state.json", show, played_s=100.0)
    assert writer.write() and not writer.write()          # written once; unchanged, not again
    r = Resume.load(tmp_path / "state.json", "why", preset="default", record=None, session=None, fullscreen=None,
                    hud=False, duration_s=300.0)
    assert dataclasses.replace(r.preset, text="") == dataclasses.replace(preset, text="")   # scene and file path
    assert r.values == {"/fx/tint/amount": 0.75, "/fx/tint/color": [0.5, 0.25, 0.0, 1.0]}    # no event pulse
    assert (r.record, r.fullscreen, r.hud) == (tmp_path / "show.restart1.mp4", 1, True)
    assert r.duration_s == 300.0 - 112.5


def write_scene_state(path: Path, seed: int, amount: float = 0.5) -> None:
    """A state file as the show writes it (StateWriter), playing a CPPN scene of this seed."""
    preset = parse_preset(f'name = "Seed{seed}"\n[model]\nname = "cppn"\nseed = {seed}\n')
    state = {"pid": 1, "preset": {"file": None, "name": preset.name, "toml": dump_preset(preset)},
             "values": {"/master/brightness": amount}}
    path.with_name("tmp.json").write_text(json.dumps(state))
    os.replace(path.with_name("tmp.json"), path)


def nice_of(tid: int) -> int:
    """A thread's nice value, from /proc (field 19 of its stat, after the command name in parentheses)."""
    return int(Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def test_a_spare_makes_the_track_and_the_playing_network_ahead_on_a_niced_thread(tmp_path, monkeypatch):
    monkeypatch.setattr(spare, "WARM_CHECK_S", 0.05)
    made_tracks = []
    real_demo = sources.demo_track
    monkeypatch.setattr(sources, "demo_track", lambda rate: made_tracks.append(rate) or real_demo(rate, 1.0))
    state = tmp_path / "state.json"
    write_scene_state(state, seed=3)
    # A small model of a size no other test uses: the network traced is this test's.
    render_cfg = RenderConfig(width_px=64, height_px=36, model_width_px=44, model_height_px=26)
    nice = os.nice(0)
    warmup = spare.Warmup(state, "demo", AudioConfig(sample_rate_hz=8000), render_cfg, "default").start()
    try:
        deadline = time.monotonic() + 120
        while not ready_file(state, os.getpid()).exists():
            assert time.monotonic() < deadline and warmup._thread.is_alive()
            time.sleep(0.05)
        # Only the warm-up thread is niced: the threads that play the show after the takeover are not.
        assert nice_of(warmup._thread.native_id) == max(spare.SPARE_NICE, nice)
        assert os.nice(0) == nice
        assert [w for w, _ in warmup.made] == ["imports", "audio track", "model"]
        assert made_tracks == [8000]
        # The show's model, of any seed, finds its network traced: its first frame traces nothing.
        with monkeypatch.context() as m:
            m.setattr(torch.jit, "trace", lambda *a, **k: pytest.fail("traced again"))
            generator = create_generator("cppn", width_px=44, height_px=26, seed=9)
            generator.render(generator.advance({}, SILENT, 0.0))

        # The show plays on: new values are nothing to warm; a scene with another model is, once.
        write_scene_state(state, seed=3, amount=0.25)
        write_scene_state(state, seed=4)
        while sum(w == "model" for w, _ in warmup.made) < 2:
            assert time.monotonic() < deadline and warmup._thread.is_alive()
            time.sleep(0.05)
        write_scene_state(state, seed=3, amount=0.75)
        time.sleep(0.5)
        assert sum(w == "model" for w, _ in warmup.made) == 2
    finally:
        warmup.finish()
    assert not warmup._thread.is_alive()
    # The takeover's track is the one made ahead, handed out once (the show holds it from then on).
    assert sources.load_track("demo", 8000)[1] == "demo" and made_tracks == [8000]
    sources.load_track("demo", 8000)
    assert made_tracks == [8000, 8000]


def test_a_spare_warms_networks_on_the_cpu_only():
    assert spare.warms("cppn", {}) and spare.warms("stylegan", {"device": "cpu"})
    assert not spare.warms("stylegan", {"device": "cuda"}) and not spare.warms("deepdream", {"device": "cuda:1"})
    assert not spare.warms("video", {}) and not spare.warms("plasma", {})
    # A dream on a video source would open the file or camera the show plays.
    assert not spare.warms("deepdream", {"device": "cpu", "source": "video"})
    assert spare.warms("deepdream", {"device": "cpu", "source": "cppn"})


# ---- the real thing ---------------------------------------------------------------------------------------

def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def oscquery_value(port: int, path: str):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}?VALUE", timeout=5) as r:
        return json.loads(r.read())["VALUE"][0]


def lit(rgb) -> bool:
    """The 640x360 window at the top left of the screen shows a picture (black is 0; test_live's bound)."""
    window = rgb[:360, :640]
    return window.mean() > 20 and window.std() > 20


class Stderr:
    """The supervised show's log lines, each with the monotonic time it arrived."""

    def __init__(self, proc: subprocess.Popen):
        self.lines: list[tuple[float, str]] = []
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc) -> None:
        for line in proc.stderr:
            self.lines.append((time.monotonic(), line.rstrip()))

    def first(self, needle: str, after: float = 0.0) -> float | None:
        return next((t for t, line in self.lines if needle in line and t >= after), None)

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)


def wait_for(what, timeout_s: float, proc: subprocess.Popen, log: Stderr, poll_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.text()
        value = what()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s\n{log.text()}")


def read_state(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "state.json").read_text())
    except (OSError, ValueError):
        return {}


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("oscsend") is None or shutil.which("ffmpeg") is None,
                    reason="liblo-tools or ffmpeg (x11grab) missing")
def test_a_killed_show_comes_back_with_its_scene_values_recording_and_session(xvfb_display, tmp_path):
    osc, oscquery = free_udp_port(), free_tcp_port()
    env = dict(os.environ, DISPLAY=xvfb_display, TMPDIR=str(tmp_path))     # the run folder lands in tmp_path
    t_start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "vj.cli", "run", "--audio", "demo", "--size", "640x360",
                             "--osc-port", str(osc), "--oscquery-port", str(oscquery),
                             "--record", str(tmp_path / "show.mp4"), "--session", str(tmp_path / "set"),
                             *([] if only_loopback() else ["--no-mdns"])],
                            env=env, stderr=subprocess.PIPE, text=True)
    log = Stderr(proc)
    try:
        # Start-up on a loaded 2-core machine takes seconds: test_live waits up to 30 s for the picture, this
        # test twice that (its show records and writes a session too). It measures the first start, the
        # yardstick for the restart below.
        run_dir = wait_for(lambda: next(tmp_path.glob("vj-run-*"), None), 60, proc, log)
        wait_for(lambda: lit(grab(xvfb_display, tmp_path / "first.png")), 60, proc, log, poll_s=0.0)
        first_start_s = time.monotonic() - t_start

        # The performer's moves: another scene, then two values in it.
        subprocess.run(["oscsend", "127.0.0.1", str(osc), "/cmd/preset/load", "s", "prism"], check=True)
        wait_for(lambda: read_state(run_dir).get("preset", {}).get("name") == "Prism", 30, proc, log)
        subprocess.run(["oscsend", "127.0.0.1", str(osc), "/fx/pixelate/cellSize", "f", "40"], check=True)
        subprocess.run(["oscsend", "127.0.0.1", str(osc), "/master/saturation", "f", "0.75"], check=True)
        state = wait_for(lambda: (s := read_state(run_dir)).get("values", {}).get("/master/saturation") == 0.75
                         and s, 10, proc, log)
        assert state["values"]["/fx/pixelate/cellSize"] == 40.0
        # The spare has done its imports and warm-up: the restart below is the one a show gets after its first
        # minutes.
        wait_for(lambda: any(run_dir.glob("spare-*.ready")), 60, proc, log)
        assert lit(grab(xvfb_display, tmp_path / "before.png"))

        t_kill = time.monotonic()
        os.kill(state["pid"], signal.SIGKILL)
        # The new show does no more than the first one did (its imports are done), on the same machine: it is
        # back within the first start's time; doubled, for a machine whose load changes between the two.
        deadline = t_kill + 2 * first_start_s

        def replaced() -> bool:
            return read_state(run_dir).get("pid") not in (None, state["pid"])

        # A picture is the new show's once the dead one's window was seen gone (the screen black), or once the new
        # show has written its state (it does so within STATE_PERIOD_S of its first frame, so only that is later).
        gone = []

        def new_picture() -> bool:
            if not lit(grab(xvfb_display, tmp_path / "after.png")):
                gone.append(True)
                return False
            return bool(gone) or replaced()

        wait_for(new_picture, deadline - time.monotonic(), proc, log, poll_s=0.0)
        back_s = time.monotonic() - t_kill
        wait_for(replaced, deadline - time.monotonic(), proc, log)

        assert oscquery_value(oscquery, "/vj/preset") == "Prism"
        assert oscquery_value(oscquery, "/fx/pixelate/cellSize") == 40.0
        assert oscquery_value(oscquery, "/master/saturation") == 0.75

        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, log.text()      # Ctrl-C: the show ended as asked
    noticed, looping = (log.first(n, t_kill) for n in ("restarting it", "live: preset"))
    print(f"first start {first_start_s:.2f} s; after SIGKILL: supervisor noticed {noticed - t_kill:.2f} s, "
          f"the new show in its frame loop {looping - t_kill:.2f} s, picture on screen {back_s:.2f} s")
    assert "(the spare, warmed up)" in log.text()
    assert not run_dir.exists()                    # the supervisor cleans up after itself

    # The recording goes on in a new file; the old one plays up to the crash.
    old, new = ffprobe(tmp_path / "show.mp4"), ffprobe(tmp_path / "show.restart1.mp4")
    for info in (old, new):
        video = next(st for st in info["streams"] if st["codec_type"] == "video")
        assert int(video["nb_read_frames"]) > 0
    # The session goes on in a folder of its own, replayable alone, and each side names the other.
    note = json.loads((tmp_path / "set" / "restart.json").read_text())
    assert note["continued_in"] == str((tmp_path / "set.restart1").resolve())
    assert "killed by SIGKILL" in note["reason"]
    cont = Session(tmp_path / "set.restart1")
    restart = next(e for e in cont.events if e["kind"] == "restart")
    assert restart["continues"] == str((tmp_path / "set").resolve())
    restored = {e["path"]: e["value"] for e in cont.events if e["kind"] == "change" and e["source"] == "restore"}
    assert restored["/fx/pixelate/cellSize"] == 40.0 and restored["/master/saturation"] == 0.75
    assert next(e for e in cont.events if e["kind"] == "preset")["file"].endswith("-prism.toml")
    Session(tmp_path / "set")                      # the old folder still reads back
