#!/usr/bin/env python3
"""Builds a second beat corpus from music nobody here wrote: tracker modules that Debian's games ship.

    python scripts/module-corpus.py OUT_DIR [--only NAME,...] [--seconds 75] [--list]

A tracker module (MOD, S3M, XM, IT) is a composer's own score and sampled instruments: real drum samples,
breakbeats, basses and pads, played exactly as written. libopenmpt renders each one (the first `--seconds`
of it, once through, 44.1 kHz) and reports the row it is playing as it goes, so every row's start is known to
a 32-sample block (0.7 ms), through every speed and tempo change. Notes start on rows; beats are every
`rows per beat` rows from the start of each pattern, and row 0 of a pattern starts a bar (4 beats).

Which rows are beats is the one thing the file does not say for certain. libopenmpt's estimate (from an IT
file's row highlights, 4 rows elsewhere) is scaled by powers of two into 80-160 BPM, since many modules run 8
rows a beat at speed 3. So a piece written at 170 BPM is annotated at 85, and a piece whose beat the composer
put elsewhere than row 0 is annotated on its off-beat: score these with `vj bench beats` and read F beside
AMLt, and the per-piece lines beside the mean. docs/BEAT_CORPUS.md says what that found.

Writes NAME.flac and NAME.beats (`seconds<TAB>beat in bar`, as `vj analyze --beats`) per piece and README.md
(each piece's package, file and the package's licence). The row clock, and so the beats, are the same every
run; the audio of a few pieces is not: IT instruments with random volume or pan variation, which libopenmpt
seeds afresh each time (3 of the 81, up to 0.12 apart sample by sample between two runs). Needs (Debian):
libopenmpt0 sox, and the game data packages named in PACKAGES.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import math
import re
import subprocess
import sys
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SAMPLE_RATE_HZ = 44100
BLOCK = 32                          # samples rendered between row checks
BPM_RANGE = (80.0, 160.0)           # the annotated beat level is scaled into this
MIN_SECONDS = 25.0                  # shorter pieces (jingles) are left out, and so are ...
MIN_RMS_DB = -50.0                  # ... renders this quiet (one of Pingus' pieces is at -90 dBFS for 75 s)
SUFFIXES = (".mod", ".s3m", ".xm", ".it")
# Debian packages of free games whose music is tracker modules, and the short name their pieces get.
PACKAGES = {
    "pingus-data": "pingus", "heroes-sound-tracks": "heroes", "pekka-kana-2-data": "pekka",
    "gl-117-data": "gl117", "biniax2-data": "biniax", "flobopuyo": "flobo", "rafkill-data": "rafkill",
    "pachi-data": "pachi", "bomberclone-data": "bomber",
}


@dataclass(frozen=True)
class Rows:
    """When each row started while rendering: sample index, order, pattern row, and rows per beat."""

    start: np.ndarray               # (n,) sample index of the row's start
    row: np.ndarray                 # (n,) row number in its pattern
    rows_per_beat: float            # libopenmpt's estimate (IT highlights; 4 elsewhere)


class OpenMPT:
    """The few calls of libopenmpt's C API that rendering with a row clock needs."""

    def __init__(self) -> None:
        name = ctypes.util.find_library("openmpt") or "libopenmpt.so.0"
        try:
            lib = ctypes.CDLL(name)
        except OSError as e:
            raise SystemExit(f"module-corpus: libopenmpt is not installed ({e}); apt-get install libopenmpt0") from None
        p, i32, f64 = ctypes.c_void_p, ctypes.c_int32, ctypes.c_double
        lib.openmpt_module_create_from_memory2.restype = p
        lib.openmpt_module_create_from_memory2.argtypes = [p, ctypes.c_size_t, p, p, p, p,
                                                           ctypes.POINTER(ctypes.c_int), p, p]
        for fn, res, args in (("destroy", None, [p]), ("set_repeat_count", ctypes.c_int, [p, i32]),
                              ("get_duration_seconds", f64, [p]), ("get_current_order", i32, [p]),
                              ("get_current_row", i32, [p]), ("get_current_speed", i32, [p]),
                              ("get_current_tempo", i32, [p]), ("get_current_estimated_bpm", f64, [p]),
                              ("read_float_stereo", ctypes.c_size_t,
                               [p, i32, ctypes.c_size_t, ctypes.POINTER(ctypes.c_float),
                                ctypes.POINTER(ctypes.c_float)])):
            f = getattr(lib, "openmpt_module_" + fn)
            f.restype, f.argtypes = res, args
        self.lib = lib

    def render(self, data: bytes, seconds: float) -> tuple[np.ndarray, Rows]:
        """(samples, 2) float32 of the first `seconds` (once through) and the row clock."""
        lib = self.lib
        error = ctypes.c_int(0)
        mod = lib.openmpt_module_create_from_memory2(data, len(data), None, None, None, None,
                                                     ctypes.byref(error), None, None)
        if not mod:
            raise ValueError(f"libopenmpt cannot read it (error {error.value})")
        try:
            lib.openmpt_module_set_repeat_count(mod, 0)
            n = int(min(seconds, lib.openmpt_module_get_duration_seconds(mod)) * SAMPLE_RATE_HZ)
            left, right = np.zeros(n, np.float32), np.zeros(n, np.float32)
            fptr = ctypes.POINTER(ctypes.c_float)
            starts, rows, per_beat = [], [], []
            pos, seen = 0, None
            while pos < n:
                got = lib.openmpt_module_read_float_stereo(
                    mod, SAMPLE_RATE_HZ, min(BLOCK, n - pos),
                    left[pos:].ctypes.data_as(fptr), right[pos:].ctypes.data_as(fptr))
                now = (lib.openmpt_module_get_current_order(mod), lib.openmpt_module_get_current_row(mod))
                if now != seen:
                    seen = now
                    starts.append(pos + BLOCK // 2)        # the row began within this block: its middle
                    rows.append(now[1])
                    bpm = lib.openmpt_module_get_current_estimated_bpm(mod)
                    rows_per_min = 24.0 * lib.openmpt_module_get_current_tempo(mod) / max(
                        1, lib.openmpt_module_get_current_speed(mod))
                    per_beat.append(rows_per_min / bpm if bpm > 0 else 4.0)
                if got == 0:
                    break
                pos += got
        finally:
            lib.openmpt_module_destroy(mod)
        audio = np.stack((left[:pos], right[:pos]), axis=1)
        return audio, Rows(np.array(starts), np.array(rows), float(np.median(per_beat)) if per_beat else 4.0)


def beats(rows: Rows) -> list[tuple[float, int]]:
    """(seconds, beat in bar) of the rows that start beats: libopenmpt's rows per beat, times or divided by
    powers of two until the median beat lands in BPM_RANGE; bars of 4 beats from each pattern's row 0."""
    per_beat = max(1, int(round(rows.rows_per_beat)))
    # The median of rows taken in pairs: swung modules alternate two speeds row by row, and a long pause (speed
    # 255 for a bar) must not stretch the rest.
    if len(rows.start) < 3:
        return []
    row_s = float(np.median(rows.start[2:] - rows.start[:-2])) / 2.0 / SAMPLE_RATE_HZ
    while 60.0 / (per_beat * row_s) >= BPM_RANGE[1]:
        per_beat *= 2
    while 60.0 / (per_beat * row_s) < BPM_RANGE[0] and per_beat % 2 == 0:
        per_beat //= 2
    on = rows.row % per_beat == 0
    in_bar = (rows.row[on] % (4 * per_beat)) // per_beat + 1
    return [(float(s) / SAMPLE_RATE_HZ, int(b)) for s, b in zip(rows.start[on], in_bar)]


def write_wav(path: Path, audio: np.ndarray) -> None:
    """16-bit stereo WAV, scaled down only where the render clips."""
    peak = float(np.abs(audio).max()) if len(audio) else 0.0
    pcm = (np.clip(audio / max(peak / 0.98, 1.0), -1.0, 1.0) * 32767.0).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE_HZ)
        w.writeframes(pcm.tobytes())


def licence(package: str) -> str:
    """The first `License:` of a package's copyright file, or the GNU licence its text names, and where to
    read it."""
    path = Path("/usr/share/doc") / package / "copyright"
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"see {path}"
    m = re.search(r"^License:[ \t]*(\S[^\n]*)", text, re.M)
    if m:
        return m.group(1).strip()
    gnu = re.search(r"GNU (Lesser |Library )?General Public License", text)
    return f"{'LGPL' if gnu.group(1) else 'GPL'} (see {path})" if gnu else f"see {path}"


def installed_modules() -> list[tuple[str, str, Path]]:
    """(piece name, package, file) of every module in the installed PACKAGES, sorted by name."""
    found = []
    for package, short in PACKAGES.items():
        listing = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True)
        for line in listing.stdout.splitlines():
            f = Path(line)
            if f.suffix.lower() in SUFFIXES and f.is_file():
                found.append((f"{short}_{re.sub(r'[^A-Za-z0-9_-]+', '_', f.stem)}", package, f))
    names = [n for n, _, _ in found]
    return sorted((n if names.count(n) == 1 else f"{n}_{f.suffix[1:].lower()}", p, f) for n, p, f in found)


def build(name: str, path: Path, out_dir: Path, seconds: float, mpt: OpenMPT) -> tuple[float, float] | None:
    """Write NAME.flac and NAME.beats; (seconds, median BPM), or None for a piece too short."""
    audio, rows = mpt.render(path.read_bytes(), seconds)
    marks = beats(rows)
    rms_db = 10.0 * math.log10(float(np.mean(np.square(audio, dtype=np.float64))) + 1e-20) if len(audio) else -200.0
    if len(audio) < MIN_SECONDS * SAMPLE_RATE_HZ or len(marks) < 16 or rms_db < MIN_RMS_DB:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "render.wav"
        write_wav(wav, audio)
        subprocess.run(["sox", "-R", "-D", str(wav), str(out_dir / f"{name}.flac")], check=True)
    (out_dir / f"{name}.beats").write_text("".join(f"{t:.4f}\t{b}\n" for t, b in marks))
    bpm = 60.0 / float(np.median(np.diff([t for t, _ in marks])))
    return len(audio) / SAMPLE_RATE_HZ, bpm


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path, nargs="?", help="folder for NAME.flac + NAME.beats + README.md")
    ap.add_argument("--only", default="", help="comma-separated piece names")
    ap.add_argument("--seconds", type=float, default=75.0, help="render this much of each piece (default 75)")
    ap.add_argument("--list", action="store_true", help="list the pieces found and exit")
    args = ap.parse_args(argv)
    pieces = installed_modules()
    if args.only:
        wanted = set(args.only.split(","))
        pieces = [p for p in pieces if p[0] in wanted]
    if args.list or args.out is None:
        for name, package, path in pieces:
            print(f"{name:32s} {package:22s} {path}")
        if not pieces:
            print(f"no modules found: apt-get install {' '.join(PACKAGES)}", file=sys.stderr)
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    mpt = OpenMPT()
    lines = ["# Tracker-module beat corpus", "",
             "Built by `scripts/module-corpus.py`: each piece's first seconds rendered by libopenmpt, beats from",
             "its row clock. Licences are those of the Debian package each file comes from.", "",
             "| piece | seconds | BPM | package | file | licence |", "|---|---|---|---|---|---|"]
    for name, package, path in pieces:
        try:
            made = build(name, path, args.out, args.seconds, mpt)
        except (ValueError, subprocess.CalledProcessError) as e:
            print(f"{name}: skipped: {e}", file=sys.stderr)
            continue
        if made is None:
            print(f"{name}: skipped: shorter than {MIN_SECONDS:.0f} s or quieter than {MIN_RMS_DB:.0f} dBFS",
                  file=sys.stderr)
            continue
        print(f"{name:32s} {made[0]:5.1f} s {made[1]:6.1f} BPM", flush=True)
        lines.append(f"| {name} | {made[0]:.1f} | {made[1]:.1f} | {package} | {path.name} | {licence(package)} |")
    (args.out / "README.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
