"""A plasma generator that misbehaves on cue, for the scene life-cycle, watchdog and out-of-memory tests.

`install(monkeypatch)` registers it as model "probe"; presets pick its behaviour in [model]:
`mode` = "ok" | "block" (render number `at` blocks until the test's `release` is set) | "slow" (render `at` sleeps
`sleep_s`) | "stall" (advance number `at` sleeps `sleep_s`, on the frame loop's thread) | "fail_first" (the first
render raises) | "oom" (a render wider than `oom_above` px allocates, then raises torch.OutOfMemoryError);
`tag`: a name the test finds it by in `MADE`.
"""

from __future__ import annotations

import threading
import time
import weakref

import torch

from vj.models import registry
from vj.models.plasma import PlasmaGenerator

MADE: list["ProbeGenerator"] = []        # every probe made, in order
RELEASE = threading.Event()               # lets blocked renders go (set at teardown, so no thread stays stuck)
FAILED_CALL_TENSORS: list[weakref.ref] = []    # a tensor each out-of-memory render held when it raised


class ProbeGenerator(PlasmaGenerator):
    def __init__(self, width_px: int = 256, height_px: int = 144, mode: str = "ok", at: int = 0,
                 sleep_s: float = 3.0, oom_above: int = 0, tag: str = ""):
        super().__init__(width_px, height_px)
        self.name = "probe"
        self.mode, self.at, self.sleep_s, self.oom_above, self.tag = mode, int(at), float(sleep_s), int(oom_above), tag
        self.renders = 0
        self.advances = 0
        self.closed = 0
        self.blocked = threading.Event()
        MADE.append(self)

    def advance(self, frame, features, dt_s):
        self.advances += 1
        if self.mode == "stall" and self.advances == self.at:
            stall_the_frame_loop(self.sleep_s)
        return super().advance(frame, features, dt_s)

    def render(self, args):
        self.renders += 1
        n = self.renders
        if self.mode == "block" and n == self.at:
            self.blocked.set()
            block_in_render()
        if self.mode == "slow" and n == self.at:
            self.blocked.set()
            time.sleep(self.sleep_s)
        if self.mode == "fail_first" and n == 1:
            raise RuntimeError("probe: the first frame fails")
        if self.mode == "oom" and self.width_px > self.oom_above:
            activations = torch.zeros(self.height_px, self.width_px, 64)     # what did not fit
            FAILED_CALL_TENSORS.append(weakref.ref(activations))
            raise torch.OutOfMemoryError(f"probe: {self.width_px}x{self.height_px} does not fit")
        return super().render(args)

    def close(self) -> None:
        self.closed += 1


def block_in_render() -> None:
    RELEASE.wait()


def stall_the_frame_loop(seconds: float) -> None:
    time.sleep(seconds)


def install(monkeypatch) -> None:
    MADE.clear()
    FAILED_CALL_TENSORS.clear()
    RELEASE.clear()
    monkeypatch.setitem(registry._FACTORIES, "probe", lambda **settings: ProbeGenerator(**settings))


def made(tag: str) -> list[ProbeGenerator]:
    return [g for g in MADE if g.tag == tag]
