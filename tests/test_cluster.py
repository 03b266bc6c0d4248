"""Cluster renders on a real Ray cluster the tests start: a head and two worker nodes on 127.0.0.1, in the
test session's loopback-only network namespace; `vj render --cluster` against the same render on one machine."""

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

from test_chunks import FEEDBACK_PRESET, feedback_bound
from vj.config import AudioConfig, RenderConfig
from vj.gfx.png import read_png
from vj.replay import replay_session
from vj.show import render_offline

ray = pytest.importorskip("ray", reason="Ray is not installed (requirements.txt installs it)")
from conftest import NETNS_ERROR  # noqa: E402
from netns import only_loopback  # noqa: E402
from ray_cluster import RayCluster  # noqa: E402
from test_replay import live, still_session  # noqa: E402,F401  (fixtures: a live show's --session folder)
from xvfb import xvfb_display  # noqa: E402,F401  (fixture)

pytestmark = pytest.mark.slow
FPS = 30
SECONDS = 4.0
N = int(SECONDS * FPS)
SIZE = "64x36"
CFG = RenderConfig(width_px=64, height_px=36, fps=FPS, render_scale=1.0, model_width_px=64, model_height_px=36)
TIMELINE = """
[[at]]
time = 0.6
ramp = { "/master/contrast" = 1.6 }
over_s = 1.5
[[at]]
time = 1.3
preset = "flash"
transition_s = 0.4
[[at]]
time = 2.5
preset = "prism"
"""


@pytest.fixture(scope="module")
def cluster():
    if not only_loopback():
        pytest.skip(f"Ray would use this machine's other interfaces: the tests need a loopback-only namespace "
                    f"({NETNS_ERROR})")
    c = RayCluster(workers=2, cpus=1)
    yield c
    c.close()
    assert c.leftover() == [], "the cluster's processes outlive it"


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    d = tmp_path_factory.mktemp("cluster")
    (d / "show.toml").write_text(TIMELINE)
    (d / "echo.toml").write_text(FEEDBACK_PRESET)
    return d


def vj_render(cluster, out, *args, wait=True):
    cmd = [sys.executable, "-m", "vj.cli", "render", "demo", "--size", SIZE, "--render-scale", "1", "--model-size",
           SIZE, "--duration", str(SECONDS), "-o", str(out), "--cluster", cluster.address, "--no-progress", *args]
    p = subprocess.Popen(cmd, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    if not wait:
        return p
    stdout, stderr = p.communicate(timeout=300)
    assert p.returncode == 0, stderr[-3000:]
    return stderr


def pngs(folder: Path) -> np.ndarray:
    files = sorted(folder.glob("*.png"))
    return np.stack([read_png(f) for f in files])


def one_machine(scenes, name, preset, timeline=None, out=None):
    out = out or f"{scenes / name}/"
    render_offline("demo", out, preset, CFG, AudioConfig(), duration_s=SECONDS, progress=False, timeline=timeline)
    return out


@pytest.fixture(scope="module")
def reference(scenes):
    """The timeline render (prism, a dissolve to flash, a cut back, a ramp across them) on one machine."""
    out = Path(one_machine(scenes, "one", "prism", scenes / "show.toml"))
    return pngs(out), (out / "audio.wav").read_bytes()


def test_chunks_on_two_workers_equal_the_one_machine_render(cluster, scenes, reference):
    out = scenes / "split"
    log = vj_render(cluster, f"{out}/", "--preset", "prism", "--timeline", str(scenes / "show.toml"),
                    "--chunk-s", "0.5")
    frames, audio = pngs(out), (out / "audio.wav").read_bytes()
    assert len(frames) == N == len(reference[0])
    bad = [i for i in range(N) if not np.array_equal(frames[i], reference[0][i])]
    assert bad == [], f"frames differ from the one-machine render: {bad}"
    assert audio == reference[1], "the audio muxed in differs"
    done = re.findall(r"chunk (\d+) done on \S+ pid (\d+)", log)
    assert sorted(int(k) for k, _ in done) == list(range(8))
    assert len({pid for _, pid in done}) >= 2, f"all chunks ran in one worker: {done}"
    assert not Path(f"{out}.vjchunks").exists(), "the finished chunks are removed with the job"


def test_feedback_seams_cross_fade_within_the_bound(cluster, scenes):
    """A scene with shader feedback: chunk starts are warmed up for 1 s and cross-faded over 0.3 s."""
    ref = pngs(Path(one_machine(scenes, "echo1", str(scenes / "echo.toml"))))
    out = scenes / "echo-split"
    vj_render(cluster, f"{out}/", "--preset", str(scenes / "echo.toml"), "--chunk-s", "1.5", "--warm-s", "1",
              "--overlap-s", "0.3")
    frames = pngs(out)
    assert len(frames) == N
    err = np.abs(frames.astype(int) - ref.astype(int)).max(axis=(1, 2, 3))
    assert err[:45].max() == 0, "the first chunk is exact"
    # Chunk 1 warms up from frame 15 (30 frames): its frames are within the bound; before the overlap ends
    # they are a cross-fade from chunk 0's own take (exact) into them, which stays within it too.
    assert err.max() <= feedback_bound(30), err.tolist()
    assert err[45:].max() > 0, "a warmed-up chunk is not exact (else this test shows nothing)"


def ps_tasks() -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in out.splitlines() if "ray::chunk_task" in line]


def test_a_worker_killed_mid_chunk_is_retried(cluster, scenes, reference):
    out = scenes / "killed"
    p = vj_render(cluster, f"{out}/", "--preset", "prism", "--timeline", str(scenes / "show.toml"),
                  "--chunk-s", "1", wait=False)
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and time.monotonic() < deadline and p.poll() is None:
        tasks = ps_tasks()
        if tasks:
            killed = tasks[0]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.02)
    stdout, stderr = p.communicate(timeout=300)
    assert killed is not None, "no chunk was seen running"
    assert p.returncode == 0, stderr[-3000:]
    frames = pngs(out)
    assert len(frames) == N and all(np.array_equal(frames[i], reference[0][i]) for i in range(N))
    pids = {int(pid) for pid in re.findall(r"chunk \d+ done on \S+ pid (\d+)", stderr)}
    assert killed not in pids


def test_resume_after_the_driver_dies_reuses_finished_chunks(cluster, scenes, tmp_path):
    """The driver is killed once two chunks are on disk; `--resume` renders only the others, and the video is
    whole: every frame, the audio in sync, and the same frames as a one-machine render of it."""
    out = tmp_path / "resumed.mp4"
    chunks = Path(f"{out}.vjchunks")
    args = ("--preset", "prism", "--timeline", str(scenes / "show.toml"), "--chunk-s", "0.5")
    p = vj_render(cluster, out, *args, wait=False)
    deadline = time.monotonic() + 120
    while p.poll() is None and time.monotonic() < deadline and len(list(chunks.glob("chunk-*.json"))) < 2:
        time.sleep(0.02)
    os.killpg(p.pid, signal.SIGKILL)
    p.communicate()
    kept = len(list(chunks.glob("chunk-*.json")))
    assert 2 <= kept < 8, f"{kept} chunks were finished when the driver died"
    log = vj_render(cluster, out, *args, "--resume")
    m = re.search(r"resuming: (\d+) of 8 chunks", log)
    assert m and int(m.group(1)) >= kept, log[-2000:]
    rendered = re.findall(r"chunk (\d+) done", log)
    assert len(rendered) == 8 - int(m.group(1)), "finished chunks are not rendered again"
    assert not chunks.exists()

    probe = json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_entries", "stream=codec_type,nb_read_frames,duration",
         "-of", "json", str(out)], capture_output=True, text=True, check=True).stdout)["streams"]
    video = next(s for s in probe if s["codec_type"] == "video")
    audio = next(s for s in probe if s["codec_type"] == "audio")
    assert int(video["nb_read_frames"]) == N
    # The audio is the whole track's N / fps seconds; AAC rounds it up to whole 1024-sample frames.
    assert SECONDS <= float(audio["duration"]) <= SECONDS + 1024 / 48000 + 1e-6

    whole = tmp_path / "whole.mp4"
    one_machine(scenes, "whole", "prism", scenes / "show.toml", out=str(whole))
    with av.open(str(out)) as a, av.open(str(whole)) as b:
        fa = [f.to_ndarray(format="rgb24") for f in a.decode(video=0)]
        fb = [f.to_ndarray(format="rgb24") for f in b.decode(video=0)]
    assert len(fa) == len(fb) == N
    assert all(np.array_equal(x, y) for x, y in zip(fa, fb)), "the encoder got other frames than on one machine"


def test_replay_on_the_cluster_equals_the_one_machine_replay(cluster, live, tmp_path):
    """`vj replay --fps --cluster` of a live session (the default scene, whose feedback needs a warm-up): with a
    warm-up that reaches back to the session's start every chunk starts exactly, so the joined replay equals the
    one-machine replay frame for frame, the blackout the show got over OSC on the same frame."""
    folder = live[0] / "session"
    fps = 24
    one = replay_session(folder, tmp_path / "one.mp4", fps=fps, encoder_preset="quick", progress=False)
    p = subprocess.run([sys.executable, "-m", "vj.cli", "replay", str(folder), "-o", str(tmp_path / "split.mp4"),
                        "--fps", str(fps), "--cluster", cluster.address, "--chunk-s", "1", "--warm-s", "60",
                        "--no-progress"], env=cluster.env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    chunks = re.findall(r"chunk (\d+) done", p.stderr)
    assert len(chunks) == math.ceil(one.frames / fps) >= 2
    with av.open(str(tmp_path / "one.mp4")) as a, av.open(str(tmp_path / "split.mp4")) as b:
        fa = [f.to_ndarray(format="rgb24") for f in a.decode(video=0)]
        fb = [f.to_ndarray(format="rgb24") for f in b.decode(video=0)]
    assert len(fa) == len(fb) == one.frames
    err = [int(np.abs(x.astype(int) - y).max()) for x, y in zip(fa, fb)]
    assert max(err) == 0, err
    assert min(f.mean() for f in fb) < 1.0, "the blackout is in the replay"


def test_live_sequence_replay_on_the_cluster_equals_the_one_machine_replay(cluster, still_session, tmp_path):
    """`vj replay --cluster` without --fps: the live frame sequence, split by recording frame. In a scene whose only
    carried pictures are the model images (still_session: the live session without its feedback effect), every
    chunk starts exactly without a warm-up: its skipped frames keep the model args later images come from, and the
    two newest images are rendered again for the model fader. The joined file equals the one-machine replay:
    pictures, their times in the file, and the audio."""
    one = replay_session(still_session, tmp_path / "one.mp4", encoder_preset="quick", progress=False)
    p = subprocess.run([sys.executable, "-m", "vj.cli", "replay", str(still_session), "-o", str(tmp_path / "split.mp4"),
                        "--cluster", cluster.address, "--chunk-s", "1", "--warm-s", "0", "--no-progress"],
                       env=cluster.env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    chunks = re.findall(r"chunk (\d+) done", p.stderr)
    assert len(chunks) >= 2, p.stderr[-3000:]

    def decoded(path):
        with av.open(str(path)) as c:
            video = [(f.pts, f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
            c.seek(0)
            audio = np.concatenate([f.to_ndarray() for f in c.decode(audio=0)], axis=1)
        return video, audio
    (va, aa), (vb, ab) = decoded(tmp_path / "one.mp4"), decoded(tmp_path / "split.mp4")
    assert len(va) == len(vb) == one.frames
    assert [t for t, _ in va] == [t for t, _ in vb], "the frames' times in the file"
    err = [int(np.abs(x.astype(int) - y).max()) for (_, x), (_, y) in zip(va, vb)]
    assert max(err) == 0, err
    assert aa.shape == ab.shape and np.array_equal(aa, ab), "the audio muxed in differs"
    assert min(f.mean() for _, f in vb) < 1.0, "the blackout is in the replay"


def test_a_chunk_that_fails_stops_the_job_with_its_reason(cluster, scenes, tmp_path):
    """A timeline whose cue sets a param the scene lacks parses, so the driver starts; every chunk's check of it
    fails on its worker, and the driver stops with that one line, writing no output."""
    bad = scenes / "bad.toml"
    bad.write_text('[[at]]\ntime = 1.0\nset = { "/fx/nothing/here" = 1.0 }\n')
    out = tmp_path / "bad.mp4"
    p = vj_render(cluster, out, "--preset", "prism", "--timeline", str(bad), wait=False)
    _, stderr = p.communicate(timeout=300)
    assert p.returncode == 1, stderr[-2000:]
    last = stderr.strip().splitlines()[-1]
    assert re.match(r"vj: error: chunk \d+ failed on the cluster: .*bad\.toml:3: .*unknown param '/fx/nothing/here'",
                    last), last
    assert "Traceback" not in stderr
    assert not out.exists(), "a job that failed leaves no video"
    assert not Path(f"{out}.vjchunks").exists(), "nor an empty chunk folder"


def test_a_cluster_whose_head_dies_leaves_a_message_and_chunks_to_resume(cluster, tmp_path):
    """A cluster of its own loses its head once two chunks are done: the driver ends with one line (Ray may end
    the driver's process itself, which the parent then reports), no video under the name asked for, the finished
    chunks kept; on a new cluster `--resume` finishes the job from them."""
    doomed = RayCluster(workers=1, cpus=1)
    out = tmp_path / "headless.mp4"
    chunks = Path(f"{out}.vjchunks")
    args = ("--preset", "prism", "--chunk-s", "0.5", "--stall-s", "20")
    try:
        p = vj_render(doomed, out, *args, wait=False)
        deadline = time.monotonic() + 120
        while p.poll() is None and time.monotonic() < deadline and len(list(chunks.glob("chunk-*.json"))) < 2:
            time.sleep(0.02)
        os.killpg(doomed.procs[0].pid, signal.SIGKILL)        # the head node: GCS and its raylet
        _, stderr = p.communicate(timeout=120)
    finally:
        doomed.close()
    assert p.returncode == 1
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("vj: error: ") and ("ended without a word" in last or "no progress" in last), last
    assert not out.exists() and not list(tmp_path.glob(".headless.vjpart*")), "no video cut short is left"
    kept = len(list(chunks.glob("chunk-*.json")))
    assert kept >= 2
    log = vj_render(cluster, out, *args, "--resume")
    assert f"resuming: {kept} of 8 chunks" in log
    probe = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v", "-show_entries",
                            "stream=nb_read_frames", "-of", "csv=p=0", str(out)], capture_output=True, text=True)
    assert probe.stdout.strip() == str(N)
