"""Image-sequence output: PNG frames and audio.wav written, read back and compared; a real offline render."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from audio_synth import silence_then_kicks, write_wav
from vj.config import AudioConfig, RenderConfig
from vj.gfx.png import read_png
from vj.output.frames import FrameSequence, is_frame_sequence, split_sequence_path
from vj.output.recorder import RecorderError
from vj.show import render_offline

RATE = 48000


def frame(i: int, w: int = 40, h: int = 24) -> np.ndarray:
    """(h, w, 3) uint8 with a gradient and the frame number in the red channel of the first pixel."""
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 1] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
    img[..., 2] = 200
    img[0, 0, 0] = i
    return img


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as w:
        data = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, w.getnchannels())
        return data.astype(np.float32) / 32767.0, w.getframerate()


def test_paths_that_ask_for_a_sequence(tmp_path):
    (tmp_path / "existing").mkdir()
    assert is_frame_sequence(f"{tmp_path}/frames/")
    assert is_frame_sequence(tmp_path / "existing")
    assert is_frame_sequence(tmp_path / "shots" / "%05d.png")
    assert not is_frame_sequence(tmp_path / "clip.mp4")
    assert not is_frame_sequence(tmp_path / "clip")
    assert split_sequence_path(tmp_path / "shots" / "f_%05d.png") == (tmp_path / "shots", "f_%05d.png")
    assert split_sequence_path(f"{tmp_path}/frames/") == (tmp_path / "frames", "%06d.png")
    with pytest.raises(ValueError, match="only PNG"):
        split_sequence_path(tmp_path / "%05d.exr")
    with pytest.raises(ValueError, match="exactly one"):
        split_sequence_path(tmp_path / "%02d_%05d.png")


def test_frames_and_audio_round_trip(tmp_path):
    out = tmp_path / "seq"
    t = np.arange(RATE // 2) / RATE
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    audio = np.stack([tone, -tone], axis=1)                    # (n, 2): left and right differ
    with FrameSequence(f"{out}/", 40, 24, 10, RATE, 2) as seq:
        for i in range(12):
            assert seq.add_video(frame(i), i)
        assert not seq.add_video(frame(99), 5)                 # out of order: refused, counted
        seq.add_audio(audio[:1000])
        seq.add_audio(audio[1000:])
    assert seq.error is None and seq.frames_written == 12 and seq.dropped_frames == 1
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"{i:06d}.png" for i in range(12)] + ["audio.wav"]
    for i in range(12):
        assert np.array_equal(read_png(out / f"{i:06d}.png"), frame(i))
    back, rate = read_wav(out / "audio.wav")
    assert rate == RATE and back.shape == audio.shape
    assert np.abs(back - audio).max() <= 0.5 / 32767 + 1e-7   # one int16 rounding (float32 scaling: 1e-7)


def test_frames_are_scaled_to_the_output_size(tmp_path):
    with FrameSequence(tmp_path / "big" / "%03d.png", 80, 48, 10, RATE, 0) as seq:
        seq.add_video(frame(3), 0)
    img = read_png(tmp_path / "big" / "000.png")
    assert img.shape == (48, 80, 3)
    assert not (tmp_path / "big" / "audio.wav").exists()       # no audio channels: no WAV
    # A flat channel scales to itself (the filter's weights sum to 1) within one rounding: < 1 level.
    assert abs(float(img[..., 2].mean()) - 200) < 1 and img[:, -1, 1].mean() > 240


def test_refuses_a_folder_that_already_holds_frames(tmp_path):
    with FrameSequence(tmp_path, 40, 24, 10, RATE, 2) as seq:
        seq.add_video(frame(0), 0)
    with pytest.raises(RecorderError, match="already holds frames"):
        FrameSequence(tmp_path, 40, 24, 10, RATE, 2)


def test_unwritable_folder_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(RecorderError) as err:
        FrameSequence(f"{blocker}/frames/", 40, 24, 10, RATE, 2)
    assert str(blocker) in str(err.value) and "\n" not in str(err.value)


def test_write_error_stops_and_reports(tmp_path):
    seq = FrameSequence(tmp_path / "gone", 40, 24, 10, RATE, 0)
    (tmp_path / "gone").rmdir()
    seq.add_video(frame(0), 0)
    seq.close()
    assert seq.error is not None and "gone" in seq.error
    assert not seq.add_video(frame(1), 1)


def test_render_to_a_sequence_has_exactly_duration_times_fps_frames(tmp_path):
    samples, _ = silence_then_kicks(silent_s=1.0, loud_s=2.0)
    wav = write_wav(tmp_path / "silence1s_kicks120bpm_2s_48k.wav", samples)
    out = tmp_path / "frames"
    rep = render_offline(str(wav), f"{out}/", "default", RenderConfig(width_px=48, height_px=32, fps=12.5,
                         render_scale=0.5), AudioConfig(), start_s=0.5, duration_s=2.0, progress=False)
    assert rep.frames == 25
    pngs = sorted(out.glob("*.png"))
    assert [p.name for p in pngs] == [f"{i:06d}.png" for i in range(25)]
    assert read_png(pngs[-1]).shape == (32, 48, 3)             # scaled up from the chain's render scale
    back, rate = read_wav(out / "audio.wav")
    assert rate == 48000 and len(back) == 2 * 48000
    # The audio from --start on, in int16 steps of 1/32767: the fixture's WAV truncates (< 1), decoding scales by
    # 1/32768 (< 1 at full scale), the output rounds (0.5): < 2.5 steps, so 1e-4 (3.3). Measured worst: 2 steps.
    # One sample early or late is off by the kicks' slope, far more.
    assert np.abs(back - samples[24000:24000 + len(back)]).max() < 1e-4
