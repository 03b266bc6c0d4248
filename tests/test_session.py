"""Session folders without a window: the writer's files read back exactly, a crash-cut line, a write error."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from vj.config import RenderConfig
from vj.session import Session, SessionError, SessionWriter, quantize_audio


def blocks(n: int, size: int = 800) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [quantize_audio(rng.uniform(-1.2, 1.2, (size + i, 2)).astype(np.float32)) for i in range(n)]


def test_audio_frames_and_events_read_back_exactly(tmp_path):
    w = SessionWriter(tmp_path / "s", {"render": {"width_px": 320, "height_px": 180, "fps": 25.0}}, 48000)
    data = blocks(30)
    for i, b in enumerate(data):
        start = w.audio_samples
        w.audio(b)
        w.event(i, start, "change", path="/fx/tint/color", value=(1.0, 0.5, 0.0, 1.0), source="osc")
        w.frame(i, i / 25, 1 / 25, i - 1 if i else None)
    w.close()
    s = Session(tmp_path / "s")
    audio = s.audio()
    np.testing.assert_array_equal(audio, np.concatenate(data))      # 24-bit FLAC keeps quantized samples exactly
    assert np.abs(audio).max() <= 1.0
    assert [f.audio for f in s.frames] == list(np.cumsum([len(b) for b in data]))
    assert s.frames[3].model == 2 and s.frames[0].model is None
    assert s.events[5]["value"] == [1.0, 0.5, 0.0, 1.0] and s.events[5]["audio"] == s.frames[4].audio
    assert s.render_config == RenderConfig(width_px=320, height_px=180, fps=25.0)


def test_a_line_cut_by_a_crash_is_skipped_and_a_used_folder_refused(tmp_path):
    w = SessionWriter(tmp_path / "s", {}, 48000)
    w.frame(0, 0.0, 0.0, None)
    w.frame(1, 0.04, 0.04, 0)
    w.close()
    with open(tmp_path / "s" / "frames.jsonl", "a") as f:
        f.write('{"i": 2, "aud')
    assert [f.i for f in Session(tmp_path / "s").frames] == [0, 1]
    with pytest.raises(SessionError, match="already exists"):
        SessionWriter(tmp_path / "s", {}, 48000)
    with pytest.raises(SessionError, match="not a session folder"):
        Session(tmp_path / "nothing")


def test_write_error_stops_the_session_with_one_line(tmp_path, caplog):
    w = SessionWriter(tmp_path / "s", {}, 48000)
    (tmp_path / "s" / "events.jsonl").mkdir()          # the events file cannot be opened
    with caplog.at_level(logging.ERROR):
        w.event(0, 0, "change", path="/master/brightness", value=0.5, source="osc")
        w.close()
    assert w.error is not None and "events.jsonl" in w.error
    assert sum("session" in r.getMessage() for r in caplog.records) == 1
    w.frame(0, 0.0, 0.0, None)                           # after the error: quietly nothing
