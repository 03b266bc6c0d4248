"""decode_file on real files written here with PyAV and sox, and its one-line errors."""

import shutil
import subprocess

import av
import numpy as np
import pytest

from vj.audio.decode import AudioFileError, decode_file

SR_IN = 44100
SR_OUT = 48000


def _tones(seconds=1.0, sr=SR_IN):
    """(n, 2): 440 Hz at amplitude 0.5 left, 660 Hz at 0.25 right."""
    t = np.arange(int(seconds * sr)) / sr
    return np.stack([0.5 * np.sin(2 * np.pi * 440 * t), 0.25 * np.sin(2 * np.pi * 660 * t)], axis=1).astype(np.float32)


def _write(path, codec, samples, sr=SR_IN, rate=None):
    """Encode (n, ch) float32 samples with PyAV; the encoder converts format and frame size itself."""
    layout = "mono" if samples.shape[1] == 1 else "stereo"
    with av.open(str(path), "w") as c:
        stream = c.add_stream(codec, rate=rate or sr, layout=layout)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples).reshape(1, -1), format="flt", layout=layout)
        frame.sample_rate = sr
        for p in stream.encode(frame):
            c.mux(p)
        for p in stream.encode(None):
            c.mux(p)
    return path


def _peak_hz(x, sr):
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.argmax(spec) * sr / len(x)


# rms_tol: 16-bit PCM and FLAC are exact to 1/32768 (~3e-5) plus the 44.1 -> 48 kHz resampler's ripple; lossy
# codecs lose up to a few % of a tone's level. A swapped channel is off by 0.18, a halved level by 0.09+.
@pytest.mark.parametrize("name,codec,rate,rms_tol", [
    ("tones.wav", "pcm_s16le", None, 0.002),
    ("tones.flac", "flac", None, 0.002),
    ("tones.mp3", "libmp3lame", None, 0.03),
    ("tones.m4a", "aac", None, 0.03),
    ("tones-opus.ogg", "libopus", 48000, 0.03),
])
def test_decodes_and_resamples(tmp_path, name, codec, rate, rms_tol):
    path = _write(tmp_path / name, codec, _tones(), rate=rate)
    y = decode_file(path, SR_OUT)
    assert y.dtype == np.float32 and y.ndim == 2 and y.shape[1] == 2
    assert abs(len(y) - SR_OUT) < 0.06 * SR_OUT             # codecs add a little padding
    mid = y[len(y) // 4: 3 * len(y) // 4]
    rms = np.sqrt((mid ** 2).mean(axis=0))
    np.testing.assert_allclose(rms, [0.5 / np.sqrt(2), 0.25 / np.sqrt(2)], atol=rms_tol)
    assert abs(_peak_hz(mid[:, 0], SR_OUT) - 440) < 3 and abs(_peak_hz(mid[:, 1], SR_OUT) - 660) < 3


@pytest.mark.skipif(shutil.which("sox") is None, reason="sox is not installed")
def test_decodes_ogg_vorbis_from_sox(tmp_path):
    path = tmp_path / "sine.ogg"
    subprocess.run(["sox", "-n", "-r", "22050", "-c", "2", str(path), "synth", "1", "sine", "1000", "vol", "0.5"],
                   check=True)
    y = decode_file(path, SR_OUT)
    assert y.shape[1] == 2 and 0.9 * SR_OUT < len(y) < 1.1 * SR_OUT
    assert abs(_peak_hz(y[len(y) // 4: 3 * len(y) // 4, 0], SR_OUT) - 1000) < 5


def test_mono_file_plays_on_both_channels_at_full_level(tmp_path):
    path = _write(tmp_path / "mono.wav", "pcm_s16le", _tones()[:, :1])
    y = decode_file(path, SR_OUT)
    np.testing.assert_array_equal(y[:, 0], y[:, 1])
    assert abs(np.sqrt((y[1000:-1000, 0] ** 2).mean()) - 0.5 / np.sqrt(2)) < 0.002


def test_same_rate_is_sample_exact(tmp_path):
    x = _tones(0.5, SR_OUT)
    y = decode_file(_write(tmp_path / "x.wav", "pcm_s16le", x, sr=SR_OUT), SR_OUT)
    assert y.shape == x.shape
    np.testing.assert_allclose(y, x, atol=1.5 / 32768)       # 16-bit quantisation: half a step, plus the clip


def _one_line_error(path):
    with pytest.raises(AudioFileError) as err:
        decode_file(path, SR_OUT)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_missing_file(tmp_path):
    assert "no such file" in _one_line_error(tmp_path / "nope.wav")


def test_not_audio(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("these are notes, not sound\n" * 20)
    assert "not an audio file" in _one_line_error(path)


def test_video_without_audio(tmp_path):
    path = tmp_path / "silent-film.mp4"
    with av.open(str(path), "w") as c:
        stream = c.add_stream("mpeg4", rate=10)
        stream.width, stream.height = 32, 32
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 40 * i, np.uint8), format="rgb24")
            for p in stream.encode(frame):
                c.mux(p)
        for p in stream.encode(None):
            c.mux(p)
    assert "no audio stream" in _one_line_error(path)


def test_directory(tmp_path):
    assert "directory" in _one_line_error(tmp_path)
