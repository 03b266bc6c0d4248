"""scripts/module-corpus.py: libopenmpt's row clock gives the beats of a tracker module, and its notes sound on
them."""

from __future__ import annotations

import importlib.util
import struct
import sys
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "module-corpus.py"
_spec = importlib.util.spec_from_file_location("module_corpus", SCRIPT)
mc = importlib.util.module_from_spec(_spec)
sys.modules["module_corpus"] = mc            # dataclasses look their module up while the class is made
_spec.loader.exec_module(mc)

SR = mc.SAMPLE_RATE_HZ


def protracker(speed: int, tempo: int, note_every: int, patterns: int = 2) -> bytes:
    """A 4-channel ProTracker MOD: one click sample, struck on channel 1 every `note_every` rows of a 64-row
    pattern played `patterns` times; row 0 sets the speed (ticks a row) and the tempo (a tick is 2.5 / tempo s)."""
    click = bytes([127] * 8 + [0] * 56)                                  # 64 bytes: a 0.2 ms pulse at C-2
    head = b"vj test".ljust(20, b"\0")
    sample = b"click".ljust(22, b"\0") + struct.pack(">HBBHH", len(click) // 2, 0, 64, 0, 1)
    head += sample + (b"\0" * 22 + struct.pack(">HBBHH", 0, 0, 0, 0, 1)) * 30
    head += bytes([patterns, 127]) + bytes(128) + b"M.K."              # every order plays pattern 0
    rows = bytearray()
    for r in range(64):
        cells = [b"\0\0\0\0"] * 4
        if r % note_every == 0:
            period = 428                                                  # C-2
            cells[0] = bytes([(1 & 0xF0) | (period >> 8), period & 0xFF, (1 & 0x0F) << 4, 0])
        if r == 0:
            cells[1] = bytes([0, 0, 0x0F, speed])                        # Fxx below 0x20: speed
            cells[2] = bytes([0, 0, 0x0F, tempo])                        # Fxx from 0x20: tempo
        rows += b"".join(cells)
    return head + bytes(rows) + click


def test_rows_are_timed_by_the_speed_and_tempo_and_the_notes_sound_on_them():
    """Speed 6 at tempo 125: a row every 6 * 2.5 / 125 = 0.12 s, a note every 4 rows (125 BPM). Every row the
    clock reports starts within a render block (32 samples, 0.73 ms) of k * 0.12 s, and every note's pulse is
    heard within 2 ms of its row (libopenmpt's resampler and volume ramp smear a pulse over < 1 ms)."""
    audio, rows = mc.OpenMPT().render(protracker(6, 125, 4), 60.0)
    assert len(rows.row) == 128 and list(rows.row[:66]) == list(range(64)) + [0, 1]
    t = rows.start / SR
    block_s = mc.BLOCK / SR
    assert np.abs(t - (t[0] + 0.12 * np.arange(128))).max() <= block_s
    assert abs(len(audio) / SR - 128 * 0.12) < 0.01                    # the song once through, then stops
    marks = mc.beats(rows)
    times = np.array([b[0] for b in marks])
    assert len(marks) == 32 and [b[1] for b in marks[:8]] == [1, 2, 3, 4, 1, 2, 3, 4]
    assert abs(60.0 / np.diff(times).mean() - 125.0) < 0.1
    loud = np.flatnonzero(np.abs(audio).max(axis=1) > 0.05)
    heard = np.array([loud[loud >= (b - 0.005) * SR][0] / SR for b in times])
    assert np.abs(heard - times).max() < 0.002, heard - times


def test_beats_are_scaled_into_the_bpm_range_by_powers_of_two():
    """4 rows a beat at 0.06 s a row would be 250 BPM: 8 rows (125) are the beats; at 0.2 s a row 4 rows are
    75 BPM, so 2 (150) are; 6 rows (a compound meter's beat, in 48-row patterns) at 0.1 s stay 100 BPM."""
    for row_s, per_beat, length, want_bpm in ((0.06, 4, 64, 125.0), (0.2, 4, 64, 150.0), (0.1, 6, 48, 100.0)):
        n = 4 * length
        rows = mc.Rows(start=np.round(np.arange(n) * row_s * SR), row=np.arange(n) % length, rows_per_beat=per_beat)
        marks = mc.beats(rows)
        bpm = 60.0 / np.diff([m[0] for m in marks]).mean()
        assert abs(bpm - want_bpm) < 0.5, (row_s, per_beat, bpm)
        assert marks[0] == (0.0, 1)
