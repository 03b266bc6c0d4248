"""An NDI peer for tests/test_ndi.py, run in its own process: `send NAME SEED SECONDS` or `receive NAME SEED SECONDS`.

send: publishes ndi_helpers.picture(SEED, n) at 30 fps through NdiSender, prints "ready FULLNAME" once the
source exists, then runs until killed or SECONDS have passed. receive: opens NdiSource(NAME), prints "ready
FULLNAME", watches it for SECONDS and prints one JSON line: frames, distinct counters, their rate, errors.
"""

from __future__ import annotations

import json
import sys
import time

from ndi_helpers import FPS, H, W, errors, picture


def send(name: str, seed: int, seconds: float) -> None:
    from vj.ndi.sender import NdiSender

    base = picture(seed, 0)
    with NdiSender(name, W, H, FPS) as sender:
        print("ready", sender.source_name, flush=True)
        t0 = time.monotonic()
        n = 0
        while time.monotonic() - t0 < seconds:
            sender.send(picture(seed, n) if n else base)
            n += 1
            time.sleep(max(0.0, t0 + n / FPS - time.monotonic()))
        print(json.dumps({"sent": sender.sent, "dropped": sender.dropped, "error": sender.error}), flush=True)


def receive(name: str, seed: int, seconds: float) -> None:
    from vj.ndi.receiver import NdiSource

    t_open = time.monotonic()
    with NdiSource(name, timeout_s=10.0) as src:
        open_s = time.monotonic() - t_open
        print("ready", src.full_name, flush=True)
        seen: dict[int, float] = {}
        worst = {"flat_max": 0, "flat_max_rgb": [0, 0, 0], "ramp_mean": 0.0, "ramp_max": 0}
        last = None
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            frame = src.frame_at()
            if frame is not last:
                last = frame
                e = errors(frame.to_ndarray(), seed)
                seen.setdefault(e["counter"], time.monotonic())
                worst = {"flat_max": max(worst["flat_max"], e["flat_max"]),
                         "flat_max_rgb": [max(a, b) for a, b in zip(worst["flat_max_rgb"], e["flat_max_rgb"])],
                         "ramp_mean": max(worst["ramp_mean"], e["ramp_mean"]),
                         "ramp_max": max(worst["ramp_max"], e["ramp_max"])}
            time.sleep(0.004)
        times = sorted(seen.values())
        span_s = times[-1] - times[0] if len(times) > 1 else 0.0
        print(json.dumps({"open_s": open_s, "frames": src.frames_received, "distinct": len(seen),
                          "span_s": span_s, "fps": (len(times) - 1) / span_s if span_s else 0.0,
                          "size": [src.info.width_px, src.info.height_px], "declared_fps": src.info.fps,
                          **worst}), flush=True)


if __name__ == "__main__":
    mode, name, seed, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    {"send": send, "receive": receive}[mode](name, seed, seconds)
