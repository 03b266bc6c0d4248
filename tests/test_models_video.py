"""The "video" generator: cuts on beats and bars, playback rate, the image model on each frame, determinism, errors."""

import dataclasses
import gc
import shutil
import threading
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pytest
import torch

from video_synth import (FPS, dominant, frame_index, tint_reference, write_clip_folder, write_index_video,
                         write_tint_torchscript)
from vj.audio.features import Features
from vj.models.base import read_params
from vj.models.registry import create_generator
from vj.models.video import VideoArgs, VideoGenerator
from vj.models.worker import ModelWorker
from vj.params import Registry

W, H = 32, 24
EXAMPLE = Path(__file__).resolve().parent.parent / "presets" / "examples" / "archive.toml"
SHOW_FPS = 30
STOP_WAIT_S = 30.0                    # close() waits 5 s for a decode in flight; a busy machine may take longer


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return write_clip_folder(tmp_path_factory.mktemp("clips") / "archive")


@pytest.fixture(scope="module")
def index_video(tmp_path_factory):
    return write_index_video(tmp_path_factory.mktemp("video") / "index_30f_10fps.mp4", n=30)


@pytest.fixture(autouse=True)
def no_prefetch_thread_outlives_its_generator():
    yield
    gc.collect()                      # a dropped generator's finalizer stops its prefetch thread
    threads = [t for t in threading.enumerate() if t.name == "vj-video-prefetch"]
    for t in threads:
        t.join(STOP_WAIT_S)
    left = [t.name for t in threads if t.is_alive()]
    assert not left, f"prefetch threads still running: {left}"


def beat_features(i, beats=(), downbeats=(), onsets=()):
    """Features of show frame i: a beat (and downbeat, onset) where listed."""
    return Features(t_s=i / SHOW_FPS, beat=i in beats or i in downbeats, downbeat=i in downbeats,
                    beat_in_bar=1 if i in downbeats else (2 if i in beats else 0), onset=i in onsets, level=0.5)


def play(gen, n, frame=None, **marks):
    """Advance and render n show frames; returns (args list, (n, H, W, 3) float32 frames)."""
    args, images = [], []
    for i in range(n):
        a = gen.advance(frame or {}, beat_features(i, **marks), 1 / SHOW_FPS)
        args.append(a)
        images.append(gen.render(a)[0].permute(1, 2, 0).numpy())
    return args, np.stack(images)


def changes(images):
    """Show frames at which the clip on screen (its colour) differs from the frame before."""
    colours = [dominant(img) for img in images]
    return [i for i in range(1, len(colours)) if colours[i] != colours[i - 1]]


def test_params_and_output(clips):
    gen = create_generator("video", width_px=W, height_px=H, path=str(clips))
    assert gen.name == "video" and gen.output_size == (W, H) and len(gen.clips) == 3
    params = gen.params()
    assert all(p.path.startswith("/model/") for p in params) and len({p.path for p in params}) == len(params)
    reg = Registry()
    reg.declare_all(params)
    assert read_params(reg.values(), params)["/model/cut"] == 2          # a folder cuts on bars by default
    out = gen.render(gen.advance({}, Features(), 1 / SHOW_FPS))
    assert out.shape == (1, 3, H, W) and out.dtype == torch.float32 and 0.0 <= out.min() and out.max() <= 1.0


def test_cuts_land_on_the_beats(clips):
    beats = (5, 13, 21, 29, 37, 45)
    gen = VideoGenerator(W, H, path=str(clips), seed=1)
    args, images = play(gen, 50, {"/model/cut": "beats"}, beats=beats)
    assert changes(images) == list(beats)
    assert [a.cut for a in args][4:7] == [0, 1, 1]


def test_cut_every_two_beats_and_on_bars(clips):
    beats = tuple(range(3, 60, 4))
    gen = VideoGenerator(W, H, path=str(clips), seed=2)
    _, images = play(gen, 60, {"/model/cut": "beats", "/model/cut_every": 2}, beats=beats)
    assert changes(images) == list(beats[1::2])
    downbeats = beats[::4]
    gen = VideoGenerator(W, H, path=str(clips), seed=2)
    _, images = play(gen, 60, {"/model/cut": "bars"}, beats=beats, downbeats=downbeats)
    assert changes(images) == list(downbeats)


def test_cut_now_and_off(clips):
    gen = VideoGenerator(W, H, path=str(clips))
    a0 = gen.advance({"/model/cut": "off"}, beat_features(0, beats=(0,)), 1 / SHOW_FPS)
    a1 = gen.advance({"/model/cut": "off", "/model/cut_now": True}, beat_features(1), 1 / SHOW_FPS)
    assert (a0.cut, a1.cut) == (0, 1) and a0.clip != a1.clip


def test_the_same_features_snapshot_on_two_frames_cuts_once(clips):
    gen = VideoGenerator(W, H, path=str(clips))
    f = beat_features(3, beats=(3,))
    cuts = [gen.advance({"/model/cut": "beats"}, f, 1 / SHOW_FPS).cut for _ in range(3)]
    assert cuts == [1, 1, 1]


def test_speed_sets_the_media_time_and_the_frame_shown(index_video):
    gen = VideoGenerator(W, H, path=str(index_video))
    for speed, expected_t in ((1.0, 1.0), (2.0, 2.0), (0.0, 0.0), (1.5, 1.5)):
        gen.reset()
        for _ in range(SHOW_FPS):                                     # one second of show time
            a = gen.advance({"/model/speed": speed}, Features(), 1 / SHOW_FPS)
        assert a.media_t_s == pytest.approx(expected_t % 3.0, abs=1e-9)    # float64 sums of 30 dt's: ~1e-15
        img = (gen.render(a)[0].permute(1, 2, 0).numpy() * 255.0)
        assert frame_index(img) == int(expected_t * FPS + 1e-6) % 30
    gen.reset()
    for _ in range(4 * SHOW_FPS):                                     # 4 s of a 3 s file: looped
        a = gen.advance({}, Features(), 1 / SHOW_FPS)
    assert a.media_t_s == pytest.approx(1.0, abs=1e-6)


def test_onsets_skip_ahead(index_video):
    gen = VideoGenerator(W, H, path=str(index_video))
    args, _ = play(gen, 3, {"/model/onset_skip_s": 0.5, "/model/speed": 0.0}, onsets=(1,))
    assert [a.media_t_s for a in args] == pytest.approx([0.0, 0.5, 0.5])


def test_same_settings_seed_and_audio_give_the_same_frames(clips):
    marks = dict(beats=tuple(range(2, 90, 6)), downbeats=tuple(range(2, 90, 24)), onsets=tuple(range(4, 90, 9)))
    frame = {"/model/cut": "beats", "/model/onset_skip_s": 0.3, "/model/speed": 1.3}
    args_a, a = play(create_generator("video", width_px=W, height_px=H, path=str(clips), seed=4), 90, frame, **marks)
    args_b, b = play(create_generator("video", width_px=W, height_px=H, path=str(clips), seed=4), 90, frame, **marks)
    assert args_a == args_b and np.array_equal(a, b)
    # The frames depend on the args only: a fresh generator rendering them backwards (every one a seek) agrees.
    fresh = VideoGenerator(W, H, path=str(clips), seed=4)
    with ModelWorker(fresh) as worker:
        for i in reversed(range(0, 90, 7)):
            result = worker.render_now(args_a[i])
            assert result.error is None and np.array_equal(result.image, a[i]), f"frame {i}"
    args_c, _ = play(VideoGenerator(W, H, path=str(clips), seed=5), 90, frame, **marks)
    assert [x.clip for x in args_c] != [x.clip for x in args_a]


def test_img2img_model_runs_on_every_frame(tmp_path, index_video):
    model = write_tint_torchscript(tmp_path / "tint.pt")
    plain = VideoGenerator(W, H, path=str(index_video))
    tinted = create_generator("video", width_px=W, height_px=H, path=str(index_video), img2img=str(model))
    assert "/model/mix" in {p.path for p in tinted.params()} and "/model/mix" not in {p.path for p in plain.params()}
    for t in (0.0, 1.25, 2.5):
        # Both sides decode the same file the same way; then a bias and a lerp on 0..1 values, a few roundings of
        # 6e-8 a side, where the green bias alone is 0.1.
        a = VideoArgs(z=(), media_t_s=t)
        ref = plain.render(a)
        torch.testing.assert_close(tinted.render(a), tint_reference(ref).clamp(0, 1), atol=1e-6, rtol=0)
        half = tinted.render(VideoArgs(z=(), media_t_s=t, mix=0.5))
        torch.testing.assert_close(half, 0.5 * (ref + tint_reference(ref).clamp(0, 1)), atol=1e-6, rtol=0)


def test_fit_contain_letterboxes_a_wide_output(index_video):
    gen = VideoGenerator(64, 24, path=str(index_video), fit="contain")
    img = gen.render(gen.advance({}, Features(), 0.0))[0]            # 4:3 clip in a 8:3 frame: bars left and right
    assert img[:, :, :8].max() == 0.0 and img[:, :, -8:].max() == 0.0 and img[:, :, 32].min() > 0.0
    cover = gen.render(gen.advance({"/model/fit": "cover"}, Features(), 0.0))[0]
    assert cover.min() > 0.0


@pytest.mark.parametrize("settings, message", [
    (dict(path="{tmp}/missing"), r"video file or folder not found: .*missing"),
    (dict(path="{tmp}/empty"), r"empty: no playable video in the folder"),
    (dict(path="{tmp}/junk.mp4"), r"junk\.mp4: cannot decode video"),
    (dict(), r"needs either `path` .* or `device`"),
    (dict(path="{tmp}/junk.mp4", device="webcam"), r"needs either `path`"),
    (dict(path="{video}", img2img="{tmp}/junk.mp4"), r"junk\.mp4: not an ONNX or TorchScript model"),
    (dict(path="{video}", device=None, fit="stretch"), r"fit must be one of cover, contain"),
])
def test_bad_settings_fail_at_construction_naming_the_file(tmp_path, index_video, settings, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk.mp4").write_bytes(b"junk" * 100)
    settings = {k: v.format(tmp=tmp_path, video=index_video) if isinstance(v, str) else v
                for k, v in settings.items()}
    with pytest.raises(ValueError, match=message):
        create_generator("video", width_px=W, height_px=H, **settings)


def test_relative_paths_resolve_against_base_dir(tmp_path, index_video):
    shutil.copy(index_video, tmp_path / "film.mp4")
    gen = create_generator("video", width_px=W, height_px=H, path="film.mp4", base_dir=str(tmp_path))
    assert gen.clips[0].path == tmp_path / "film.mp4"


def test_a_clip_that_vanishes_mid_show_is_reported_and_the_show_goes_on(tmp_path):
    folder = write_clip_folder(tmp_path / "clips")
    gen = VideoGenerator(W, H, path=str(folder), seed=3)
    with ModelWorker(gen) as worker:
        first = gen.advance({"/model/cut": "beats"}, beat_features(0), 1 / SHOW_FPS)
        assert worker.render_now(first).error is None
        victim = gen.clips[gen.plan.clip(1)].path
        victim.unlink()
        after_cut = gen.advance({"/model/cut": "beats"}, beat_features(1, beats=(1,)), 1 / SHOW_FPS)
        result = worker.render_now(after_cut)
        assert result.error is not None and victim.name in result.error
        assert result.image.shape == (H, W, 3) and result.image.max() == 0.0
        assert worker.render_now(first).error is None                # the other clips still play


def test_a_preset_with_a_video_model_loads_and_a_bad_path_keeps_the_scene(tmp_path, clips):
    from vj.config import AudioConfig, RenderConfig
    from vj.engine import Engine
    from vj.gfx.context import GLUnavailable, create_headless_context, release_context
    from vj.presets import PresetError, load_preset, parse_preset

    try:
        ctx = create_headless_context()
    except GLUnavailable as exc:
        pytest.skip(str(exc))
    cfg = RenderConfig(width_px=64, height_px=48, fps=30.0, model_width_px=W, model_height_px=H)
    engine = Engine(ctx, cfg, AudioConfig(), live=False)
    try:
        example = load_preset(str(EXAMPLE))                            # the shipped example, on our clips
        engine.load_preset(dataclasses.replace(
            example, model_settings=MappingProxyType({**example.model_settings, "path": str(clips)})))
        assert engine.generator.name == "video" and engine.registry.get("/model/cut_every") == 2
        for i in range(3):
            engine.step_offline(None, i / 30, 1 / 30)
        picture = engine.read_rgb(None).astype(np.float32)
        assert picture.reshape(-1, 3).mean(axis=0).max() > 60        # a coloured clip, not black
        bad = tmp_path / "missing-clips.toml"
        bad.write_text(f'name = "bad"\n[model]\nname = "video"\npath = "{tmp_path / "nowhere"}"\n')
        with pytest.raises(PresetError, match=r"missing-clips\.toml:\d+: model 'video': .*nowhere"):
            engine.load_preset(parse_preset(bad.read_text(), bad))
        assert engine.preset.name == "archive" and engine.generator.name == "video"
    finally:
        engine.close()
        release_context(ctx)


def play_counted(gen, n, frame, wait, **marks):
    """Like play, also waiting for the prefetch before each render when `wait`; returns (images, per-frame
    decodes by render, per-frame seeks by render)."""
    images, decoded, seeks = [], [], []
    for i in range(n):
        a = gen.advance(frame, beat_features(i, **marks), 1 / SHOW_FPS)
        if wait:
            assert gen.wait_prefetch()
        d0, s0 = gen.frames_decoded, gen.seeks
        images.append(gen.render(a)[0].permute(1, 2, 0).numpy())
        decoded.append(gen.frames_decoded - d0)
        seeks.append(gen.seeks - s0)
    return np.stack(images), decoded, seeks


def test_a_prefetched_cut_neither_seeks_nor_decodes_through_and_shows_the_same_frames(clips):
    beats = (4, 11, 19, 26, 33, 40, 47)
    frame = {"/model/cut": "beats", "/model/speed": 1.2}
    sync = VideoGenerator(W, H, path=str(clips), seed=6, prefetch=False)
    ref, _, sync_seeks = play_counted(sync, 50, frame, wait=False, beats=beats)
    assert sync.prefetcher is None and sum(sync_seeks[b] for b in beats) >= 3     # random starts cost seeks
    gen = VideoGenerator(W, H, path=str(clips), seed=6)
    try:
        images, decoded, seeks = play_counted(gen, 50, frame, wait=True, beats=beats)
        assert np.array_equal(images, ref)
        assert [seeks[b] for b in beats] == [0] * len(beats)
        assert max(decoded[b] for b in beats) <= 1
        assert (gen.prefetch_hits, gen.prefetch_misses) == (len(beats), 0)
        assert gen.prefetcher.done >= len(beats) and gen.prefetcher.failures == 0
    finally:
        gen.close()
    racing = VideoGenerator(W, H, path=str(clips), seed=6)   # no waiting: hits or misses, the same frames
    images, _, _ = play_counted(racing, 50, frame, wait=False, beats=beats)
    assert np.array_equal(images, ref)
    assert racing.prefetch_hits + racing.prefetch_misses == len(beats)
    racing.close()
    racing.prefetcher._thread.join(STOP_WAIT_S)
    assert not racing.prefetcher._thread.is_alive()


def test_cuts_inside_one_file_land_on_the_seeded_frame_from_the_prefetched_decoder(index_video):
    gen = VideoGenerator(W, H, path=str(index_video), seed=2)
    frame = {"/model/speed": 0.0}
    gen.advance(frame, Features(), 0.0)
    for k in range(1, 6):
        assert gen.wait_prefetch()
        a = gen.advance({**frame, "/model/cut_now": True}, Features(), 1 / SHOW_FPS)
        seeks = gen.seeks
        img = gen.render(a)[0].permute(1, 2, 0).numpy() * 255.0
        assert (a.cut, gen.seeks) == (k, seeks)
        assert frame_index(img) == int(gen.plan.start_s(k) * FPS + 1e-6)
    assert gen.prefetch_hits == 5 and len(gen._decoders) == 1        # the file's old decoder was replaced
    gen.close()


def test_a_prefetch_of_a_deleted_clip_fails_cleanly_and_the_cut_reports_it(tmp_path):
    folder = write_clip_folder(tmp_path / "clips")
    gen = VideoGenerator(W, H, path=str(folder), seed=3)
    with ModelWorker(gen) as worker:
        victim = gen.clips[gen.plan.clip(1)].path
        victim.unlink()                                               # gone before the prefetch opens it
        first = gen.advance({"/model/cut": "beats"}, beat_features(0), 1 / SHOW_FPS)
        assert gen.wait_prefetch() and gen.prefetcher.failures == 1
        assert victim.name in gen.prefetcher.last_error
        assert worker.render_now(first).error is None
        result = worker.render_now(gen.advance({"/model/cut": "beats"}, beat_features(1, beats=(1,)), 1 / SHOW_FPS))
        assert result.error is not None and victim.name in result.error and result.image.max() == 0.0
        assert gen.prefetch_misses == 1
        # Deleted after the prefetch opened it: the cut still fails the way an unprefetched one would.
        assert gen.wait_prefetch()
        victim2 = gen.clips[gen.plan.clip(2)].path
        victim2.unlink()
        result = worker.render_now(gen.advance({"/model/cut": "beats"}, beat_features(2, beats=(2,)), 1 / SHOW_FPS))
        assert result.error is not None and victim2.name in result.error
    gen.close()


def test_dropping_or_closing_the_generator_stops_its_prefetch_thread(clips):
    def prefetch_threads():
        return [t for t in threading.enumerate() if t.name == "vj-video-prefetch"]

    gen = VideoGenerator(W, H, path=str(clips))
    assert prefetch_threads() == []                                   # started by the first request only
    gen.advance({}, Features(), 1 / SHOW_FPS)
    thread = gen.prefetcher._thread
    assert thread in prefetch_threads()
    del gen                                                           # no close(): garbage collection stops it
    gc.collect()
    thread.join(STOP_WAIT_S)
    assert not thread.is_alive()
    gen = VideoGenerator(W, H, path=str(clips))
    gen.advance({}, Features(), 1 / SHOW_FPS)
    thread = gen.prefetcher._thread
    gen.close()
    thread.join(STOP_WAIT_S)
    assert prefetch_threads() == []
    out = gen.render(gen.advance({"/model/cut_now": True}, Features(), 1 / SHOW_FPS))   # closed: still renders
    assert out.shape == (1, 3, H, W) and gen.prefetch_misses == 1
    gen.close()
