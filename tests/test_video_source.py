"""Video files as a function of media time: the right frame forwards, backwards and looped, fitting, clear errors."""

import wave

import av
import numpy as np
import pytest

from video_synth import FPS, H, W, frame_index, write_clip_folder, write_index_video, write_video
from vj.video.clips import CutPlan, find_clips
from vj.video.source import (Prefetcher, VideoError, VideoSource, WebcamSource, fit_frame, list_webcams,
                             resolve_webcam)

N = 30                                # frames in the index video: 3 s at 10 fps


@pytest.fixture(scope="module")
def index_video(tmp_path_factory):
    return write_index_video(tmp_path_factory.mktemp("video") / "index_30f_10fps.mp4", n=N)


def shown(src, t_s):
    return frame_index(src.frame_at(t_s).to_ndarray(format="rgb24"))


def test_probe_reads_size_rate_and_duration(index_video):
    with VideoSource(index_video) as src:
        assert (src.info.width_px, src.info.height_px) == (W, H)
        assert src.info.fps == pytest.approx(FPS)
        assert src.duration_s == pytest.approx(N / FPS)


def test_sequential_playback_decodes_forward_without_seeking(index_video):
    with VideoSource(index_video) as src:
        for i in range(3 * N):                        # 30 fps display over a 10 fps file
            t = i / (3 * FPS)
            assert shown(src, t) == int(t * FPS + 1e-9), f"t = {t:.3f} s"
        assert src.seeks == 0
        assert src.decoded <= N + 1                   # every frame once (plus the one read ahead)


@pytest.mark.parametrize("t_s, expected", [(2.95, 29), (0.25, 2), (1.7, 17), (3.0, 0), (3.45, 4), (7.12, 11),
                                          (-0.05, 29), (0.0, 0)])
def test_jumps_and_loops_land_on_the_right_frame(index_video, t_s, expected):
    with VideoSource(index_video) as src:
        shown(src, 1.2)                               # start somewhere else, then jump
        assert shown(src, t_s) == expected


def test_a_backward_jump_seeks_and_gives_the_frames_sequential_decoding_gives(index_video):
    with VideoSource(index_video) as seq:
        reference = [seq.frame_at(i / FPS).to_ndarray(format="rgb24") for i in range(N)]
    with VideoSource(index_video) as src:
        src.frame_at(2.9)
        before = src.seeks
        for i in (7, 3, 22, 12, 0):
            assert np.array_equal(src.frame_at(i / FPS).to_ndarray(format="rgb24"), reference[i])
        assert src.seeks > before


def test_fit_cover_crops_and_contain_letterboxes():
    img = np.zeros((40, 80, 3), np.uint8)             # 2:1, left half red, right half blue
    img[:, :40] = (255, 0, 0)
    img[:, 40:] = (0, 0, 255)
    frame = av.VideoFrame.from_ndarray(img, format="rgb24")
    cover = fit_frame(frame, 20, 20, "cover")         # the middle square: half red, half blue
    assert cover.shape == (20, 20, 3) and cover.dtype == np.uint8
    assert cover[:, :8, 0].min() > 200 and cover[:, 12:, 2].min() > 200
    contain = fit_frame(frame, 20, 20, "contain")     # the whole frame, 20x10, with bars above and below
    assert contain[:5].max() == 0 and contain[15:].max() == 0
    assert contain[7, 2, 0] > 200 and contain[7, 17, 2] > 200
    wide_pixels = fit_frame(av.VideoFrame.from_ndarray(img[:, :40].copy(), format="rgb24"), 40, 20, "contain",
                            pixel_aspect=2.0)         # anamorphic 40x40 shows as 80x40: fills 40x20
    assert wide_pixels[:, :, 0].min() > 200
    with pytest.raises(ValueError, match="fit must be one of cover, contain"):
        fit_frame(frame, 20, 20, "stretch")


def test_missing_file_names_it(tmp_path):
    with pytest.raises(VideoError, match=r"video file not found: .*nope\.mp4"):
        VideoSource(tmp_path / "nope.mp4")


def test_a_text_file_is_not_a_video(tmp_path):
    fake = tmp_path / "fake.mp4"
    fake.write_text("this is not a video\n" * 20)
    with pytest.raises(VideoError, match=r"fake\.mp4: cannot decode video"):
        VideoSource(fake)


def test_an_audio_file_has_no_video_stream(tmp_path):
    path = tmp_path / "tone.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes((np.sin(np.arange(8000) * 0.1) * 8000).astype("<i2").tobytes())
    with pytest.raises(VideoError, match=r"tone\.wav: no video stream"):
        VideoSource(path)


def test_a_file_cut_off_before_its_index_is_refused_with_its_name(tmp_path, index_video):
    cut = tmp_path / "cut.mp4"                        # a plain MP4 keeps its index (moov) at the end
    data = index_video.read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(VideoError, match=r"cut\.mp4: the video stream has no codec \(damaged"):
        VideoSource(cut)


def test_clip_folder_skips_non_videos_and_broken_files(tmp_path):
    folder = write_clip_folder(tmp_path / "clips")
    (folder / "broken.mp4").write_bytes(b"\x00" * 100)
    clips = find_clips(folder)
    assert [c.path.name for c in clips] == ["a_red.mp4", "b_green.mp4", "c_blue.mp4"]


def test_clip_folder_errors_name_the_folder(tmp_path):
    with pytest.raises(VideoError, match=r"clip folder not found: .*missing"):
        find_clips(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    with pytest.raises(VideoError, match=r"empty: no playable video in the folder"):
        find_clips(empty)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x.mp4").write_bytes(b"junk" * 50)
    with pytest.raises(VideoError, match=r"broken: no playable video in the folder; .*x\.mp4"):
        find_clips(broken)


@pytest.mark.parametrize("n", [2, 3, 7])
def test_cut_plan_is_seeded_visits_every_clip_and_never_repeats_one(n):
    plan = CutPlan(seed=5, durations_s=[4.0] * n)
    order = [plan.clip(k) for k in range(10 * n)]
    assert order == [CutPlan(seed=5, durations_s=[4.0] * n).clip(k) for k in range(10 * n)]
    assert all(a != b for a, b in zip(order, order[1:]))
    for r in range(10):
        assert sorted(order[r * n:(r + 1) * n]) == list(range(n))
    if n > 2:                                         # two clips simply alternate, whatever the seed
        assert order != [CutPlan(seed=6, durations_s=[4.0] * n).clip(k) for k in range(10 * n)]
    starts = [plan.start_s(k) for k in range(1, 50)]
    assert all(0.0 <= s <= 3.0 for s in starts) and len(set(starts)) == len(starts)
    assert plan.start_s(0) == 0.0 and plan.start_s(9, random_start=False) == 0.0


def test_webcam_errors_are_clear():
    with pytest.raises(VideoError, match=r"webcam /dev/video-none does not exist \(video devices here: "):
        resolve_webcam("/dev/video-none")
    if not list_webcams():
        with pytest.raises(VideoError, match="no webcam: this machine has no /dev/video\\* device"):
            WebcamSource("webcam")


def test_short_clip_of_one_frame_loops_on_that_frame(tmp_path):
    one = write_video(tmp_path / "one.mp4", [np.full((H, W, 3), 90, np.uint8)])
    with VideoSource(one) as src:
        for t in (0.0, 0.05, 0.3, 5.0):            # <= 2 levels through YUV and back on any swscale path
            assert abs(float(src.frame_at(t).to_ndarray(format="rgb24").mean()) - 90) < 4


def test_prefetcher_hands_over_a_source_positioned_at_the_start(tmp_path, index_video):
    p = Prefetcher()
    try:
        p.request("a", index_video, 2.25)             # frame 22: a seek from the keyframe at 20
        assert p.wait_idle() and p.done == 1
        src = p.take("a", 2.25)
        assert src is not None and not src.needs_seek(2.25) and src.needs_seek(0.5)
        seeks, decoded = src.seeks, src.decoded
        assert shown(src, 2.25) == 22 and shown(src, 2.3) == 23
        assert src.seeks == seeks and src.decoded - decoded <= 1
        src.close()
        assert p.take("a", 2.25) is None              # handed over once
        p.request("b", index_video, 1.0)
        assert p.wait_idle() and p.take("b", 0.2) is None       # behind the prefetched point: the caller seeks
        for key in ("c", "d", "e"):                   # at most MAX_READY wait; the oldest goes
            p.request(key, index_video, 0.5)
            assert p.wait_idle()
        newest = p.take("e", 0.5)
        assert p.take("c", 0.5) is None and newest is not None
        newest.close()
        p.request("gone", tmp_path / "missing.mp4", 0.0)
        assert p.wait_idle() and p.failures == 1 and "missing.mp4" in p.last_error
        assert p.take("gone", 0.0) is None
    finally:
        p.close()
    assert not p._thread.is_alive()
    p.request("late", index_video, 0.0)               # closed: ignored, no thread restarts
    assert p.wait_idle() and not p._thread.is_alive()
