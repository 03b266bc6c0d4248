"""vj's beat network: the numpy step against torch's GRU, the live features against the training features,
the shipped weights, a missing weights file, and the cue it gives the onset tracker."""

import logging

import numpy as np
import pytest

from vj.audio import beatnet
from vj.audio.analyzer import Analyzer, AnalyzerSettings
from vj.config import AudioConfig

SR, HOP, FFT = 48000, 512, 2048


def test_numpy_step_matches_torch_gru():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    n_in = 2 * beatnet.band_matrix(SR, FFT).shape[1]
    gru = torch.nn.GRU(n_in, 12, num_layers=2, batch_first=True)
    out = torch.nn.Linear(12, 3)
    weights = {}
    for i in range(2):
        for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            weights[k.replace("weight", "w").replace("bias", "b") + str(i)] = getattr(gru, f"{k}_l{i}").detach().numpy()
    weights["w_out"], weights["b_out"] = out.weight.detach().numpy(), out.bias.detach().numpy()
    x = np.random.default_rng(1).normal(size=(200, n_in))
    with torch.no_grad():
        p = torch.softmax(out(gru(torch.tensor(x[None], dtype=torch.float64).to(torch.float32))[0]), -1)[0].numpy()
    net = beatnet.BeatNet(weights)
    got = np.array([net.step(v) for v in x])                                      # (200, 2)
    assert np.allclose(got[:, 0], p[:, 1] + p[:, 2], atol=1e-5)
    assert np.allclose(got[:, 1], p[:, 2], atol=1e-5)
    net.reset()
    assert np.allclose(net.step(x[0]), got[0])                                    # reset forgets


def test_live_features_are_the_training_features():
    rng = np.random.default_rng(2)
    t = np.arange(SR * 2) / SR
    x = (0.3 * np.sin(2 * np.pi * 220 * t) * (t % 0.5 < 0.1) + 0.05 * rng.normal(size=len(t))).astype(np.float32)
    window = np.hanning(FFT + 1)[:-1].astype(np.float32)
    live = beatnet.BandFeatures(SR, FFT, window)
    tail = np.concatenate((np.zeros(FFT, np.float32), x))
    steps = []
    for i in range(1, len(x) // HOP + 1):
        frame = tail[i * HOP:i * HOP + FFT]
        spec = np.fft.rfft(frame * window)
        steps.append(live.step(spec.real ** 2 + spec.imag ** 2))
    offline = beatnet.inputs_from_magnitudes(beatnet.file_features(x, SR, HOP, FFT))
    assert offline.shape == (len(steps), 2 * live.n_bands)
    assert np.allclose(np.array(steps), offline, atol=1e-6)


def test_bands_cover_the_range_at_any_rate():
    for sr, fft in ((48000, 2048), (44100, 2048), (96000, 4096)):
        m = beatnet.band_matrix(sr, fft)
        assert m.shape[1] == 36 and np.allclose(m.sum(axis=0), 1.0)
    # Each band is a mean: a flat spectrum gives every band the bins' magnitude; a full-scale sine's bin
    # magnitude is 1 after the scale.
    window = np.hanning(FFT + 1)[:-1]
    f = beatnet.BandFeatures(SR, FFT, window)
    scale = 2.0 / window.sum()
    assert np.allclose(f.magnitudes(np.full(FFT // 2 + 1, 4.0)), 2.0 * scale)
    spec = np.fft.rfft(np.sin(2 * np.pi * 100 * np.arange(FFT) / FFT) * window)
    assert np.abs(spec[100]) * scale == pytest.approx(1.0, abs=1e-9)


def test_shipped_weights_load_and_fit_the_features():
    net = beatnet.BeatNet.load()
    assert net.n_inputs == 2 * beatnet.band_matrix(SR, FFT).shape[1]
    sizes = sum(a.size for layer in net.layers for a in layer) + net.w_out.size + net.b_out.size
    assert sizes < 50_000                                                         # small, in the repo
    b, d = net.step(np.zeros(net.n_inputs))
    assert 0.0 <= d <= b <= 1.0


def test_unreadable_weights_fall_back_to_onsets_with_a_warning(tmp_path, monkeypatch, caplog):
    bad = tmp_path / "beatnet.npz"
    bad.write_bytes(b"not a weights file")
    monkeypatch.setattr(beatnet, "WEIGHTS", bad)
    monkeypatch.setattr(beatnet, "_DEFAULT", None)
    with caplog.at_level(logging.WARNING):
        an = Analyzer(AudioConfig(beats_from="network"))
    assert an._net is None and an.beats.pointer is None
    assert "beat network weights" in caplog.text and str(bad) in caplog.text
    with pytest.raises((OSError, ValueError)):
        Analyzer(AudioConfig(), AnalyzerSettings(beat_network=True, beat_weights=str(bad)))


def test_missing_weights_leave_the_default_analysis_on_onsets_alone(tmp_path, monkeypatch, caplog):
    """The default analysis mixes the network's beat probability into the onset tracker's onset strength
    (`beat_network_mix`); without readable weights it says so and tracks from onsets alone."""
    assert Analyzer(AudioConfig())._net is not None                               # the shipped weights
    monkeypatch.setattr(beatnet, "WEIGHTS", tmp_path / "absent.npz")
    monkeypatch.setattr(beatnet, "_DEFAULT", None)
    with caplog.at_level(logging.WARNING):
        an = Analyzer(AudioConfig())
    assert an._net is None and an.beats.pointer is None and "beat network weights" in caplog.text
    assert Analyzer(AudioConfig(), AnalyzerSettings(beat_network_mix=0.0))._net is None


def test_the_networks_cue_changes_what_the_onset_tracker_hears():
    """Same audio, the onset tracker with and without the network's cue: with it, a hop's onset strength
    rises by beat_network_mix times the network's beat probability, the network's downbeat probability goes
    to the bar evidence, and nothing else changes. Silent hops get neither."""
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(48000 * 6) * 0.05).astype(np.float32)
    x[::24000] += 0.9                                                              # a click every half second
    x[48000 * 3:48000 * 4] = 0.0                                                   # and a silent second
    heard, cue = {}, {}
    for mix in (0.0, 0.1):
        an = Analyzer(AudioConfig(), AnalyzerSettings(beat_network_mix=mix))
        odf, downbeat, update = [], [], an.beats.update
        an.beats.update = lambda o, **kw: (odf.append(o), downbeat.append(kw["downbeat"]), update(o, **kw))[2]
        an.process(x)
        heard[mix], cue[mix] = np.array(odf), np.array(downbeat)
    net = beatnet.load_default()
    feats = beatnet.BandFeatures(SR, FFT, np.hanning(FFT + 1)[:-1].astype(np.float32))
    an = Analyzer(AudioConfig(), AnalyzerSettings(beat_network_mix=0.0))
    b, d = [], []
    step = an._onset
    def onset(power, ref_db, gated):
        p = net.step(feats.step(power))                                            # every hop, as the analyzer
        b.append(0.0 if gated else p[0])
        d.append(0.0 if gated else p[1])
        return step(power, ref_db, gated)
    an._onset = onset
    an.process(x)
    assert np.allclose(heard[0.1], heard[0.0] + 0.1 * np.array(b), atol=1e-9)
    assert np.array_equal(cue[0.1], np.array(d)) and not cue[0.0].any()
    assert float(np.max(b)) > 0.5 and float(np.max(d)) > 0.05                     # the clicks are beats to it
    assert (np.array(b) == 0.0).sum() >= 48000 // 512 - 8                         # the silent second is gated
