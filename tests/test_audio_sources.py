"""Audio sources: offline spans, file playback on the wall clock, device errors, and a real PulseAudio server."""

import os
import shutil
import subprocess
import time

import numpy as np
import pytest

from audio_synth import write_wav
from vj.audio.analyzer import Analyzer
from vj.audio.decode import AudioFileError
from vj.audio.sources import (AudioDeviceError, DeviceSource, FilePlayer, OfflineAudio, list_devices, open_source,
                              rescan_devices, to_mono)
from vj.config import AudioConfig

SR = 48000
CFG = AudioConfig(sample_rate_hz=SR)


def _ramp(n, channels=2):
    """(n, channels) float32 whose samples count up, so any slip or repeat shows."""
    x = (np.arange(n, dtype=np.float32) / n)[:, None]
    return np.repeat(x, channels, axis=1) * np.array([1.0, -1.0][:channels], np.float32)


def test_to_mono():
    x = np.array([[1.0, 0.0], [0.5, 0.5]], np.float32)
    np.testing.assert_array_equal(to_mono(x), [0.5, 0.5])
    assert to_mono(x).dtype == np.float32 and to_mono(x[:, :1]).shape == (2,)


def test_offline_audio_hands_out_exactly_the_samples_up_to_each_time():
    x = _ramp(SR)
    off = OfflineAudio(x, SR)
    fps = 30
    pieces = [off.frames_until((i + 1) / fps) for i in range(30)]
    assert [len(p) for p in pieces[:3]] == [1600, 1600, 1600]
    np.testing.assert_array_equal(np.concatenate(pieces), x)
    after = off.until(1.5)                                   # past the end: silence, still timed
    assert after.shape == (SR // 2,) and not after.any()
    assert len(off.until(1.2)) == 0                          # time never runs backwards


def test_offline_mono_feeds_the_analyzer_frame_by_frame_like_the_whole():
    x = (np.random.default_rng(0).standard_normal((SR, 2)) * 0.2).astype(np.float32)
    off = OfflineAudio(x, SR)
    an = Analyzer(CFG)
    per_frame = [f for i in range(25) for f in an.process(off.until((i + 1) / 25))]
    whole = Analyzer(CFG).process(to_mono(x))
    assert len(per_frame) == len(whole)
    assert [f.onset_strength for f in per_frame] == [f.onset_strength for f in whole]


def test_file_player_on_the_wall_clock_reads_what_was_played():
    x = _ramp(10 * SR)                                    # longer than any stall of the 0.25 s sleep below
    player = FilePlayer(x, SR, name="ramp", output=False)
    before = time.monotonic()
    with player:
        started = time.monotonic()
        assert "wall clock" in player.status and "ramp" in player.status
        time.sleep(0.25)
        t0 = time.monotonic()
        got = player.read()
        t1 = time.monotonic()
    # The player's clock starts within [before, started] and read() looks at it within [t0, t1]: bracketed
    # to a sample (int()), however long a busy machine takes between the lines.
    assert (t0 - started) * SR - 1 <= len(got) <= (t1 - before) * SR + 1, (len(got), t0 - started, t1 - before)
    np.testing.assert_array_equal(got, x[:len(got)])
    assert player.status == "stopped: ramp"


def test_file_player_loops_or_finishes():
    x = _ramp(2400)                                       # 50 ms
    looping = FilePlayer(x, SR, output=False, loop=True)
    once = FilePlayer(x, SR, name="short", output=False)
    with looping, once:
        time.sleep(0.2)
        a, b = looping.read(), once.read()
        assert once.status == "finished short" and looping.status.startswith("playing")
    np.testing.assert_array_equal(a, np.tile(x, (len(a) // len(x) + 1, 1))[:len(a)])
    np.testing.assert_array_equal(b[:len(x)], x)
    assert not b[len(x):].any() and len(b) > len(x)


def test_open_source_demo_and_files(tmp_path):
    demo = open_source("demo", CFG, output=False)
    assert isinstance(demo, FilePlayer) and demo.channels == 2 and demo.sample_rate_hz == SR
    assert demo.duration_s == pytest.approx(64.0)
    path = write_wav(tmp_path / "ramp.wav", _ramp(SR // 10) * 0.5)
    player = open_source(str(path), CFG, output=False)
    assert isinstance(player, FilePlayer) and player.duration_s == pytest.approx(0.1)
    with pytest.raises(AudioFileError, match="no such file"):
        open_source(str(tmp_path / "missing.flac"), CFG)


def test_unknown_device_is_one_clear_line():
    with pytest.raises(AudioDeviceError) as err:
        open_source("vj-no-such-device", CFG)
    msg = str(err.value)
    assert "\n" not in msg and "no audio input matches 'vj-no-such-device'" in msg
    assert "available inputs:" in msg or "no audio inputs" in msg


def test_list_devices_describes_inputs():
    for d in list_devices():
        assert {"index", "name", "hostapi", "channels", "default_samplerate"} <= set(d)
        assert d["channels"] > 0


# A real audio server: PulseAudio as a user daemon with a null sink, whose monitor is the default input
# that PortAudio reaches through ALSA's pulse plugin (see RECIPES.md).

class PulseServer:
    """A PulseAudio user daemon in its own runtime dir; `env` reaches it from subprocesses."""

    def __init__(self, runtime):
        if shutil.which("pulseaudio") is None or shutil.which("paplay") is None:
            pytest.skip("pulseaudio / paplay not installed")
        os.chmod(runtime, 0o700)
        self.env = dict(os.environ, XDG_RUNTIME_DIR=str(runtime), HOME=str(runtime))
        self.proc = subprocess.Popen(
            ["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "-L", "module-native-protocol-unix",
             "-L", f"module-null-sink sink_name=vjnull rate={SR}", "-L", "module-always-sink"],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._old_runtime = os.environ.get("XDG_RUNTIME_DIR")
        deadline = time.monotonic() + 15
        while subprocess.run(["pactl", "info"], env=self.env, capture_output=True).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"pulseaudio did not start: {self.proc.stderr.read().decode(errors='replace')[-500:]}")
            time.sleep(0.1)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)      # the ALSA pulse plugin in this process finds it here
        rescan_devices()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def close(self):
        self.kill()
        if self._old_runtime is None:
            os.environ.pop("XDG_RUNTIME_DIR", None)
        else:
            os.environ["XDG_RUNTIME_DIR"] = self._old_runtime
        rescan_devices()


@pytest.fixture(scope="module")
def pulse(tmp_path_factory):
    server = PulseServer(tmp_path_factory.mktemp("xdg"))
    try:
        yield server.env
    finally:
        server.close()


def _wait_for_audio(src, analyzer, timeout_s=8.0):
    """Read until the first block arrives (PulseAudio's first one takes ~2 s)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        block = src.read()
        if len(block):
            analyzer.process(to_mono(block))
            return
        time.sleep(0.02)
    pytest.fail(f"no audio within {timeout_s} s: {src.status}")


def _listen(src, analyzer, seconds):
    """Read for `seconds`; return (frames that arrived meanwhile, elapsed seconds, features)."""
    feats = analyzer.process(to_mono(src.read()))          # what arrived before now does not count
    frames = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        time.sleep(0.01)
        block = src.read()
        frames += len(block)
        feats += analyzer.process(to_mono(block))
    return frames, time.monotonic() - t0, feats


def test_device_source_hears_a_tone_played_into_the_server(pulse, tmp_path):
    t = np.arange(3 * SR) / SR
    tone = np.repeat((0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[:, None], 2, axis=1)
    wav = write_wav(tmp_path / "tone-440hz.wav", tone)
    src = open_source("pulse", CFG)
    assert isinstance(src, DeviceSource) and src.channels == 2
    analyzer = Analyzer(CFG)
    with src:
        _wait_for_audio(src, analyzer)
        assert src.status.startswith("listening on pulse"), src.status
        _, _, before = _listen(src, analyzer, 0.6)
        player = subprocess.Popen(["paplay", "--device=vjnull", str(wav)], env=pulse)
        try:
            time.sleep(0.3)
            frames, elapsed, during = _listen(src, analyzer, 2.0)
        finally:
            player.wait(10)
    assert max(f.level for f in before) < 0.05 and before[-1].silence > 0.9
    assert np.mean([f.level > 0.5 for f in during]) > 0.8
    assert max(f.rms_db for f in during) > -12                # 0.5 amplitude is -9 dBFS
    assert abs(frames / (elapsed * SR) - 1) < 0.15, (frames, elapsed)
    assert src.status == "stopped: pulse"


def test_unknown_device_lists_the_server_inputs(pulse):
    with pytest.raises(AudioDeviceError) as err:
        DeviceSource("vj-no-such-device")
    msg = str(err.value)
    assert "\n" not in msg and "available inputs: [" in msg and "pulse (ALSA" in msg
    with pytest.raises(AudioDeviceError, match="channels"):
        DeviceSource("pulse", input_channels=[40])


def test_file_player_plays_through_the_server_and_reads_exactly_that(pulse):
    t = np.arange(4 * SR) / SR
    swell = ((0.1 + 0.3 * t / 4) * np.sin(2 * np.pi * 330 * t)).astype(np.float32)    # never repeats exactly
    track = np.stack([swell, 0.5 * swell], axis=1)
    player = FilePlayer(track, SR, name="ramp")
    monitor = DeviceSource("pulse", SR, input_channels=[1])     # the right channel only
    assert monitor.channels == 1
    analyzer = Analyzer(CFG)
    with monitor, player:
        assert "through" in player.status, player.status      # a real output, not the wall clock
        _wait_for_audio(monitor, analyzer)
        time.sleep(1.0)
        got = np.concatenate([player.read(), (time.sleep(0.3), player.read())[1]])
        _, _, heard = _listen(monitor, analyzer, 0.5)
    assert len(got) > SR // 2
    np.testing.assert_array_equal(got, track[:len(got)])
    assert max(f.rms_db for f in heard) > -30                  # the monitor hears what the player plays
    assert np.mean([f.mid > 0.5 for f in heard]) > 0.5        # 330 Hz


def test_device_source_says_when_the_server_goes_away(tmp_path):
    server = PulseServer(tmp_path)
    try:
        src = DeviceSource("pulse", SR)
        analyzer = Analyzer(CFG)
        with src:
            _wait_for_audio(src, analyzer)
            assert src.status.startswith("listening on")
            server.kill()
            deadline = time.monotonic() + 5
            while not src.status.startswith("device lost") and time.monotonic() < deadline:
                src.read()
                time.sleep(0.05)
            assert src.status.startswith("device lost: pulse:"), src.status
        assert src.status == "stopped: pulse"
    finally:
        server.close()
