"""Recorder: real H.264/AAC files read back with ffprobe and PyAV."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import av
import numpy as np
import pytest

from vj.output import recorder
from vj.output.recorder import Recorder, RecorderError

REPO = Path(__file__).resolve().parents[1]
W, H, FPS, RATE = 320, 240, 30, 48000

needs_ffprobe = pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe is not installed")


def background(i: int) -> tuple[int, int, int]:
    """The flat colour of frame i (changes every frame, so frame order is visible)."""
    return (40 + 11 * i) % 256, (200 - 7 * i) % 256, 90


def make_frame(i: int, w: int = W, h: int = H) -> np.ndarray:
    """(h, w, 3) uint8: a flat colour per frame with a white bar moving across the left half."""
    img = np.empty((h, w, 3), np.uint8)
    img[:] = background(i)
    x = (i * 4) % (w // 2)
    img[:, x:x + 8] = 255
    return img


def tone(n: int, hz: float = 440.0, start: int = 0) -> np.ndarray:
    t = (np.arange(n) + start) / RATE
    mono = (0.4 * np.sin(2 * np.pi * hz * t)).astype(np.float32)
    return np.stack([mono, mono], axis=1)  # (n, 2)


def ffprobe(path: Path) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_streams", "-show_format", "-of", "json", str(path)],
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def streams(info: dict, kind: str) -> list[dict]:
    return [s for s in info["streams"] if s["codec_type"] == kind]


def record(path, n_frames: int, **kwargs) -> Recorder:
    """Record n_frames of make_frame plus the matching tone, offline (no drops), and close."""
    samples_per_frame = RATE // FPS
    with Recorder(path, W, H, FPS, blocking=True, **kwargs) as rec:
        for i in range(n_frames):
            assert rec.add_video(make_frame(i), i)
            assert rec.add_audio(tone(samples_per_frame, start=i * samples_per_frame))
    return rec


@pytest.fixture(scope="module")
def two_seconds(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("rec") / "two_seconds.mp4"
    rec = record(path, 2 * FPS)
    assert rec.error is None
    assert rec.dropped_frames == 0
    return path


@needs_ffprobe
def test_two_seconds_is_h264_and_aac_with_every_frame(two_seconds):
    info = ffprobe(two_seconds)
    video, audio = streams(info, "video"), streams(info, "audio")
    assert [s["codec_name"] for s in video] == ["h264"]
    assert [s["codec_name"] for s in audio] == ["aac"]
    assert int(video[0]["nb_read_frames"]) == 2 * FPS
    assert (video[0]["width"], video[0]["height"], video[0]["pix_fmt"]) == (W, H, "yuv420p")
    assert abs(float(video[0]["duration"]) - float(audio[0]["duration"])) <= 1 / FPS
    assert abs(float(video[0]["duration"]) - 2.0) <= 2 / FPS


def test_decoded_frames_have_the_colours_written(two_seconds):
    with av.open(str(two_seconds)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]  # no B-frames: in order
    assert len(frames) == 2 * FPS
    for i in (0, 17, 59):
        patch = frames[i][H // 2 - 20:H // 2 + 20, W - 60:W - 20].reshape(-1, 3).astype(float)
        # Codec tolerance, in levels: RGB -> limited-range YUV -> RGB rounds Y (1.16 levels a step) and Cb/Cr (up
        # to 1.86 x 1.14 a step) once each way, ~2.1 in all (swscale's SIMD may flip a step), plus H.264 moving a
        # flat patch's mean by a level or two. Measured worst over all 60 frames: 3.0. The neighbouring frames'
        # colours are 7..11 levels away.
        assert np.abs(patch.mean(axis=0) - background(i)).max() <= 5, i


def test_audio_and_video_stay_in_sync(tmp_path):
    """A white flash at frame 30 and a click at sample 48000 decode at the same time."""
    path = tmp_path / "sync.mp4"
    audio = np.zeros((2 * RATE, 2), np.float32)
    audio[RATE:RATE + 480] = 0.8
    with Recorder(path, W, H, FPS, blocking=True) as rec:
        for i in range(2 * FPS):
            rec.add_video(np.full((H, W, 3), 255 if i == FPS else 0, np.uint8), i)
        for start in range(0, len(audio), 1000):   # chunks that do not line up with AAC frames
            rec.add_audio(audio[start:start + 1000])
    assert rec.audio_samples_written == 2 * RATE
    with av.open(str(path)) as container:
        flash_s = [float(f.pts * f.time_base) for f in container.decode(video=0)
                   if f.to_ndarray(format="rgb24").mean() > 128]
    with av.open(str(path)) as container:
        decoded = list(container.decode(audio=0))
    first_s = float(decoded[0].pts * decoded[0].time_base)
    mono = np.concatenate([f.to_ndarray()[0] for f in decoded])
    click_s = first_s + np.argmax(np.abs(mono) > 0.2) / RATE
    assert len(flash_s) == 1
    assert abs(flash_s[0] - click_s) < 0.5 / FPS


@needs_ffprobe
def test_file_cut_in_half_still_decodes(two_seconds, tmp_path):
    data = two_seconds.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[:len(data) // 2])
    video = streams(ffprobe(cut), "video")
    assert 0 < int(video[0]["nb_read_frames"]) < 2 * FPS


KILLED_RECORDER = """
import sys, numpy as np
from vj.output.recorder import Recorder
rec = Recorder(sys.argv[1], 320, 240, 30, preset="ultrafast", blocking=True, codec=sys.argv[2])
for i in range(100_000):
    img = np.empty((240, 320, 3), np.uint8)
    img[:] = (i * 7 % 256, 80, 160)
    rec.add_video(img, i)
    rec.add_audio(np.zeros((1600, 2), np.float32))
    print(i + 1, rec.frames_written, flush=True)    # frames added, frames encoded; one write, whole or not at all
"""


@needs_ffprobe
@pytest.mark.parametrize("codec, suffix", [("h264", "mp4"), ("ffv1", "mkv")])
def test_killed_recording_plays_to_within_two_seconds_of_the_kill(tmp_path, codec, suffix):
    path = tmp_path / f"killed.{suffix}"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_RECORDER, str(path), codec], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    added = written = 0
    try:
        while written < 6 * FPS:       # the child reports after every frame
            line = proc.stdout.readline()
            assert len(line.split()) == 2, proc.stderr.read()
            added, written = map(int, line.split())
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # The child ran on until the kill, however late that came on a busy machine: its last report counts.
    for line in proc.stdout.read().splitlines():
        added, written = map(int, line.split())
    info = ffprobe(path)
    frames = int(streams(info, "video")[0]["nb_read_frames"])
    # At least everything up to 2 s before the kill plays (the last 1 s fragment may be lost); at most what was
    # added, plus the one frame that may have been added after the last report.
    assert written - 2 * FPS <= frames <= added + 1, (written, added, frames)
    assert int(streams(info, "audio")[0]["nb_read_frames"]) > 0


def stall(rec: Recorder) -> threading.Event:
    """Make the encoder thread wait before each video frame until the returned event is set."""
    encode, release = rec._encode_video, threading.Event()

    def stalled(*args):
        release.wait()
        encode(*args)

    rec._encode_video = stalled
    return release


def test_slow_encoder_drops_frames_and_never_blocks(tmp_path):
    rec = Recorder(tmp_path / "slow.mp4", W, H, FPS, queue_frames=2)
    release = stall(rec)
    accepted = []

    def offer():
        accepted.extend(i for i in range(20) if rec.add_video(make_frame(i), i))

    # The encoder stays stuck until every frame has been offered: a call that waited for it would never return.
    producer = threading.Thread(target=offer, daemon=True)
    producer.start()
    producer.join(timeout=60)           # only bounds a hang; the 20 calls take milliseconds
    release.set()
    assert not producer.is_alive(), "add_video waited for the encoder"
    rec.close()
    assert rec.error is None
    assert accepted == [0, 1]           # the two queue slots; the stuck encoder frees neither
    assert rec.dropped_frames == 18
    assert rec.frames_written == len(accepted)
    # Dropped frames leave gaps in time instead of shifting the frames after them.
    with av.open(str(tmp_path / "slow.mp4")) as container:
        times = [round(float(f.pts * f.time_base) * FPS) for f in container.decode(video=0)]
    assert times == accepted


def test_blocking_mode_waits_instead_of_dropping(tmp_path):
    rec = Recorder(tmp_path / "offline.mp4", W, H, FPS, queue_frames=2, blocking=True)
    release = stall(rec)
    threading.Timer(0.2, release.set).start()   # the third frame waits for a slot until the encoder moves
    assert all(rec.add_video(make_frame(i), i) for i in range(15))
    rec.close()
    assert (rec.dropped_frames, rec.frames_written, rec.error) == (0, 15, None)


def test_repeated_frame_index_is_dropped(tmp_path):
    with Recorder(tmp_path / "repeat.mp4", W, H, FPS) as rec:
        assert rec.add_video(make_frame(0), 5)
        assert not rec.add_video(make_frame(1), 5)
        assert not rec.add_video(make_frame(2), 4)
    assert rec.dropped_frames == 2


@needs_ffprobe
def test_odd_size_is_padded_to_even(tmp_path):
    path = tmp_path / "odd.mp4"
    with Recorder(path, 321, 241, FPS, audio_channels=0, blocking=True) as rec:
        for i in range(5):
            rec.add_video(make_frame(i, 321, 241), i)
    info = ffprobe(path)
    video = streams(info, "video")[0]
    assert (video["width"], video["height"], int(video["nb_read_frames"])) == (322, 242, 5)
    assert streams(info, "audio") == []


@pytest.mark.parametrize("where", ["missing-dir", "a-directory"])
def test_unwritable_path_raises_one_line(tmp_path, where):
    path = tmp_path / "no" / "such" / "dir" / "x.mp4" if where == "missing-dir" else tmp_path
    with pytest.raises(RecorderError) as exc:
        Recorder(path, W, H, FPS)
    message = str(exc.value)
    assert "\n" not in message
    assert message.startswith(f"cannot record to {path}: ")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
def test_full_disk_at_start_raises():
    with pytest.raises(RecorderError, match="No space left on device"):
        Recorder("/dev/full", W, H, FPS)


class FillsUp(io.RawIOBase):
    """A file that takes `limit` bytes and then fails like a full disk."""

    def __init__(self, limit: int):
        self.data = bytearray()
        self.limit = limit

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        if len(self.data) + len(b) > self.limit:
            raise OSError(28, "No space left on device")
        self.data += bytes(b)
        return len(b)


@needs_ffprobe
def test_disk_full_midway_sets_error_and_keeps_what_was_written(tmp_path):
    full = FillsUp(10**9)
    record(full, 3 * FPS)                        # three one-second fragments
    limit = len(full.data) // 2                  # dies inside the second fragment
    filling = FillsUp(limit)
    rec = Recorder(filling, W, H, FPS, blocking=True)
    results = []
    for i in range(3 * FPS):
        results.append(rec.add_video(make_frame(i), i))
        rec.add_audio(tone(RATE // FPS, start=i * RATE // FPS))
    rec.close()
    assert rec.error == "recording to <stream> stopped: No space left on device"
    assert not rec.accepting
    assert results[0] and not results[-1]        # it stopped taking frames after the error
    kept = tmp_path / "kept.mp4"
    kept.write_bytes(filling.data)
    assert len(filling.data) <= limit
    video = streams(ffprobe(kept), "video")
    assert int(video[0]["nb_read_frames"]) >= FPS


def test_wrong_frame_shape_is_a_caller_error(tmp_path):
    with Recorder(tmp_path / "shape.mp4", W, H, FPS) as rec:
        with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
            rec.add_video(np.zeros((H, W, 4), np.uint8), 0)
        with pytest.raises(ValueError, match=r"\(n, 2\)"):
            rec.add_audio(np.zeros((100, 1), np.float32))


def test_smaller_frames_are_scaled_to_the_recording_size(tmp_path):
    # The engine hands over frames at its render scale; the recorder scales them while converting to YUV.
    path = tmp_path / "scaled.mp4"
    with Recorder(path, W, H, FPS, blocking=True) as rec:
        for i in range(10):
            rec.add_video(make_frame(i, W // 2, H // 2), i)
    info = ffprobe(path)
    (video,) = streams(info, "video")
    assert (int(video["width"]), int(video["height"])) == (W, H)
    with av.open(str(path)) as c:
        first = next(c.decode(video=0)).to_ndarray(format="rgb24").astype(int)
    assert first.shape == (H, W, 3)
    corner = first[H // 2 + 20:H // 2 + 40, W - 60:W - 20].reshape(-1, 3).mean(axis=0)  # away from the bar
    # Scaling a flat area keeps it flat: the codec tolerance of test_decoded_frames_have_the_colours_written.
    # Measured worst 1.0; the next frame's colour is 7..11 levels away.
    assert np.abs(corner - np.array(background(0))).max() <= 5


@needs_ffprobe
def test_ffv1_keeps_every_pixel_and_sample_and_logs_beside_the_file(tmp_path):
    from vj.output.recorder import flac_samples
    path = tmp_path / "lossless.mkv"
    with Recorder(path, 321, 241, FPS, blocking=True, codec="ffv1") as rec:
        for i in range(10):
            rec.add_video(make_frame(i, 321, 241), i)
        rec.add_audio(tone(RATE))
    info = ffprobe(path)
    v, a = streams(info, "video")[0], streams(info, "audio")[0]
    assert (v["codec_name"], v["pix_fmt"], v["width"], v["height"]) == ("ffv1", "bgr0", 321, 241)
    assert a["codec_name"] == "flac"
    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    with av.open(str(path)) as c:
        audio = np.concatenate([f.to_ndarray().reshape(-1, 2) for f in c.decode(audio=0)])
    assert len(frames) == 10 and all(np.array_equal(f, make_frame(i, 321, 241)) for i, f in enumerate(frames))
    np.testing.assert_array_equal(audio, flac_samples(tone(RATE)))
    log_lines = (tmp_path / "lossless.mkv.log").read_text().splitlines()
    assert "started: 321x241 at 30 fps, ffv1" in log_lines[0]
    assert "stopped (closed): 10 frames written, 0 dropped" in log_lines[-1]


def test_recording_ticks_take_one_frame_per_tick_and_repeat_at_most_twice():
    from vj.output.recorder import MAX_REPEATS, due_ticks
    assert list(due_ticks(0.0, 30, 0)) == [0]
    assert list(due_ticks(0.02, 30, 1)) == []                       # display faster: this tick is taken
    assert list(due_ticks(0.1, 30, 1)) == [1, 2, 3]                 # display slower: the frame repeats
    assert list(due_ticks(2.0, 30, 4)) == list(range(60 - MAX_REPEATS, 61))   # after a stall: a gap, not a burst


def x264_settings(path: Path) -> str:
    """The option string x264 writes into the stream's first SEI (x264 - core ... options: cabac=1 ...)."""
    data = path.read_bytes()
    start = data.index(b"options: ")
    return data[start:data.index(b"\x00", start)].decode("ascii", "replace")


@pytest.mark.parametrize("preset, want, unwanted", [
    ("quick", ("cabac=1", "deblock=1:", "8x8dct=1", "subme=0"), ("cabac=0",)),
    ("ultrafast", ("cabac=0", "deblock=0:", "8x8dct=0", "subme=0"), ("cabac=1",)),
])
def test_quick_preset_is_ultrafast_with_deblocking_cabac_and_8x8_transforms(tmp_path, preset, want, unwanted):
    # `quick` (the render default) must keep ultrafast's cheap motion search and turn the three tools back on;
    # the settings are read from what x264 itself wrote into the file.
    path = tmp_path / f"{preset}.mp4"
    rec = record(path, 5, preset=preset)
    assert rec.error is None
    settings = x264_settings(path)
    for option in want:
        assert option in settings, (option, settings)
    for option in unwanted:
        assert option not in settings, (option, settings)


def test_unknown_encoder_preset_names_the_choices(tmp_path):
    with pytest.raises(ValueError, match=r"unknown encoder preset 'fastest': use one of quick, ultrafast"):
        Recorder(tmp_path / "x.mp4", W, H, FPS, preset="fastest")


@pytest.mark.parametrize("cores, one_thread", [(2, True), (16, False)])
def test_x264_encodes_fast_presets_on_one_thread_on_a_two_core_machine(tmp_path, monkeypatch, cores, one_thread):
    # With two cores the rest of the pipeline keeps them busy and x264's frame threads cost more than they
    # give; with more, x264 chooses (from the real core count: 3 threads here).
    real_cores = len(os.sched_getaffinity(0))
    monkeypatch.setattr(recorder, "usable_cores", lambda: cores)
    for preset in ("quick", "ultrafast", "veryfast"):
        path = tmp_path / f"{preset}-{cores}.mp4"
        assert record(path, 3, preset=preset).error is None
        settings = x264_settings(path)
        # veryfast keeps x264's threads: on one it manages 26 fps at 720p, below what the pipeline needs.
        ours = one_thread and preset != "veryfast"
        if ours or real_cores > 1:                       # on one real core x264 picks one thread by itself
            assert (" threads=1 " in settings) == ours, (preset, settings)
