"""A live show reading the JACK input `system` at small blocks, in its own process, for tests/test_live_jack.py.

    DISPLAY=:N python tests/live_jack_show.py BLOCK

The JACK server is already up when this process starts, so PortAudio lists it from the first enumeration, and
no earlier test's audio streams live here. Prints one JSON line: the source's status after 2 s, the 3 s windows
measured (lost callbacks, callbacks, frames) until one is good or ten have passed, and the HUD's audio_lost,
the source's lost blocks and callback flags at the end. `error` instead when the show cannot hear JACK.
"""

import json
import sys
import time


def main() -> int:
    block = int(sys.argv[1])
    import sounddevice as sd

    from vj.audio.sources import rescan_devices
    from vj.config import AudioConfig, ControlConfig, RenderConfig
    # A JACK client can fail to open right after the server came up on a busy machine, and PortAudio then lists no
    # JACK host API; enumerating again is safe here: no stream is open and no JACK client held.
    deadline = time.monotonic() + 30.0
    while not any("JACK" in h["name"] for h in sd.query_hostapis()):
        if time.monotonic() > deadline:
            print(json.dumps({"error": "PortAudio lists no JACK host API after 30 s: "
                              f"{[h['name'] for h in sd.query_hostapis()]}"}))
            return 0
        time.sleep(0.5)
        rescan_devices()

    from vj.show import LiveShow
    show = LiveShow("system", "default", RenderConfig(width_px=640, height_px=360), AudioConfig(block_frames=block),
                    ControlConfig(osc_port=0))
    try:
        def run(seconds: float) -> None:
            t0 = time.monotonic()
            while time.monotonic() - t0 < seconds:
                show.frame()
        run(2.0)
        status = show.source.status
        windows: list[tuple[int, float, int]] = []

        def good(window) -> bool:
            lost, callbacks, frames = window
            return lost < 0.03 * callbacks and frames > 30
        while status.startswith("listening") and len(windows) < 10 and not (windows and good(windows[-1])):
            frames, flagged, t0 = show.frames, show.source.callback_flags, time.monotonic()
            run(3.0)
            callbacks = (time.monotonic() - t0) * 48000 / block
            windows.append((show.source.callback_flags - flagged, callbacks, show.frames - frames))
        print(json.dumps({"status": status, "windows": windows, "audio_lost": show.hud_stats()["audio_lost"],
                          "lost_blocks": show.source.lost_blocks, "callback_flags": show.source.callback_flags}))
    finally:
        show.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
