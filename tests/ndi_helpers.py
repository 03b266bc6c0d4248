"""NDI test helpers: the runtime's loopback config, a test picture with a frame counter, its error measures, peers.

The picture (320x180) is built on NDI's 16x16 macroblock grid so that parts of it have an error bound that
follows from arithmetic (see FLAT_BOUND): ten flat colour patches and sixteen black-or-white counter blocks,
each a whole number of macroblocks, over smooth red (horizontal) and green (vertical) ramps.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

W, H = 320, 180
FPS = 30
TESTS = Path(__file__).resolve().parent
PEER = TESTS / "ndi_peer.py"
CONFIG = {"ndi": {"networks": {"ips": "127.0.0.1", "discovery": ""}}}

# Flat blocks aligned to the 16x16 macroblocks (and so to every 8x8 DCT block and every 4:2:2 chroma pair) carry
# only a DC coefficient, which SpeedHQ keeps to the code. What remains is the sender's conversion to 8-bit
# limited-range BT.709 Y'CbCr (libndi truncates: up to one code in each of Y', Cb, Cr) and the receiver's
# rounding back to 8-bit RGB (0.5). One code of Y' is 255/219 = 1.16 levels of every channel; one code of Cb
# moves B by 1.8556 * 255/224 = 2.11 levels, one of Cr moves R by 1.5748 * 255/224 = 1.79 and G by
# (0.1873 + 0.4681) * 255/224 = 0.75 at most. Worst channel: B, 1.16 + 2.11 + 0.5 = 3.78 < 4.
# (Exact 8-bit RGB, max diff <= 1, is not possible: NDI carries 8-bit 4:2:2 Y'CbCr, not RGB.)
FLAT_BOUND = 4
# The ramps have no arithmetic bound: SpeedHQ quantises their AC coefficients with a rate-controlled step.
# Measured: mean 1.5 levels, max 6 (rows 0-95). The bound on the mean is a sanity bound that a swapped channel,
# a 601/709 mix-up, a frame shifted by a row, or another seed's picture (blue 37 levels off) all break.
RAMP_MEAN_BOUND = 3.0

PATCH_COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255),
                 (255, 255, 255), (0, 0, 0), (128, 64, 32), (32, 160, 224)]
PATCH_ROWS = slice(96, 144)
COUNTER_ROWS = slice(160, 176)
COUNTER_BITS = 16


def patch_cols(i: int) -> slice:
    return slice(16 + 32 * i, 32 + 32 * i)


def picture(seed: int, counter: int) -> np.ndarray:
    """(H, W, 3) uint8: ramps, flat patches (colours rotated by seed), blue = 37 * seed, counter as 16 blocks."""
    y, x = np.mgrid[0:H, 0:W]
    img = np.zeros((H, W, 3), np.uint8)
    img[..., 0] = x * 255 // (W - 1)
    img[..., 1] = y * 255 // (H - 1)
    img[..., 2] = (37 * seed) % 256
    for i, c in enumerate(PATCH_COLOURS):
        k = seed % 3
        img[PATCH_ROWS, patch_cols(i)] = c[k:] + c[:k]
    for b in range(COUNTER_BITS):
        img[COUNTER_ROWS, 16 * b:16 * (b + 1)] = 255 if counter >> b & 1 else 0
    return img


def read_counter(rgb: np.ndarray) -> int:
    blocks = rgb[COUNTER_ROWS, :16 * COUNTER_BITS].reshape(16, COUNTER_BITS, 16, 3).mean(axis=(0, 2, 3))
    return int(sum(1 << b for b in range(COUNTER_BITS) if blocks[b] > 127))


def errors(rgb: np.ndarray, seed: int) -> dict:
    """How far a received frame is from picture(seed, its counter): flat-block max and ramp mean, per channel."""
    counter = read_counter(rgb)
    diff = np.abs(rgb.astype(np.int16) - picture(seed, counter).astype(np.int16))
    flat = np.concatenate([diff[PATCH_ROWS, patch_cols(i)].reshape(-1, 3) for i in range(len(PATCH_COLOURS))]
                          + [diff[COUNTER_ROWS, :16 * COUNTER_BITS].reshape(-1, 3)])
    return {"counter": counter, "flat_max": int(flat.max()), "flat_max_rgb": flat.max(axis=0).tolist(),
            "ramp_mean": float(diff[0:96].mean()), "ramp_max": int(diff[0:96].max())}


def wait_for(predicate, timeout_s: float, step_s: float = 0.02) -> float:
    """Seconds until predicate() was true; AssertionError after timeout_s."""
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout_s:
            raise AssertionError(f"not within {timeout_s} s")
        time.sleep(step_s)
    return time.monotonic() - t0


def write_config(folder: Path) -> Path:
    """Write ndi-config.v1.json (loopback only, no discovery server) and point NDI_CONFIG_DIR at it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ndi-config.v1.json").write_text(json.dumps(CONFIG))
    os.environ["NDI_CONFIG_DIR"] = str(folder)
    return folder


def can_rename_host() -> bool:
    """True where a child process can get a host name of its own (root: `unshare --uts`)."""
    try:
        return subprocess.run(["unshare", "--uts", "hostname", "vjtest"], capture_output=True).returncode == 0
    except OSError:
        return False


def peer_env() -> dict:
    env = dict(os.environ)        # NDI_CONFIG_DIR included
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS.parent), str(TESTS), env.get("PYTHONPATH", "")])
    return env


class Peer:
    """tests/ndi_peer.py in another process; its stdout lines are read as they come."""

    def __init__(self, *args: str, host: str | None = None):
        command = [sys.executable, str(PEER), *args]
        if host is not None:          # a host of its own name (a UTS namespace; needs root): NDI names it HOST (NAME)
            command = ["unshare", "--uts", "sh", "-c", f'hostname {host} && exec "$0" "$@"', *command]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=peer_env())

    def line(self, timeout_s: float = 20.0) -> str:
        """The next stdout line (the peer prints one when it is ready, and its result)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if ready:
                text = self.proc.stdout.readline()
                if text:
                    return text.strip()
                break                 # EOF: the peer ended
        self.kill()
        raise AssertionError(f"ndi peer gave no line in {timeout_s} s; stderr: {self.proc.stderr.read()[-2000:]}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
        for stream in (self.proc.stdout, self.proc.stderr):
            stream.close()
