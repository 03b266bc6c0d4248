"""A spare show process while it waits to take over (vj.supervisor): it makes its imports, the audio track and the
playing scene's compiled network ahead, on a niced thread, so that a restart costs a window and a first frame.

The spare takes nothing the live show holds (no window, audio device or port): what it makes is its own, modules,
samples in memory (vj.audio.sources.preload_track) and torch's compiled networks, which vj.models.shared keeps for
the process, one per distinct network. The restarted show's model then finds its network traced and its executor
optimised, where its first frame would otherwise trace it (1.3-1.7 s for the CPPN on a loaded 2-core CPU).

It warms the scene the show plays (the state file's preset; the command line's before there is one), then looks at
the state file every WARM_CHECK_S and warms again only when the show plays a model it has not warmed (another
model, or other settings: vj.scene.scene_key). Models on a GPU are left alone: a second copy of a network on the
card the show renders on takes memory the show may need, and a CUDA trace is made for its own process.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from vj.config import AudioConfig, RenderConfig
from vj.presets import Preset, load_preset, parse_preset
from vj.supervisor import mark_ready, wait_for_restart

log = logging.getLogger(__name__)

# The warm-up thread's nice value: its weight is a tenth of a nice-0 thread's, so while the show wants the CPU the
# warm-up gets about a tenth of it, and all of what the show leaves. Only this thread is niced (Linux nice values
# are per thread): the spare's threads that play the show later run at the show's priority.
SPARE_NICE = 10
WARM_CHECK_S = 2.0        # how often the spare looks at the state file for a scene whose model it has not warmed
# TorchScript's executor profiles a network's first run and optimises it on the second: the third runs the plan
# the show's frames will run.
WARM_RENDERS = 3
# At takeover the spare waits this long for a warm-up step in progress (at the show's priority where it may raise
# it): the takeover would do the same work, and doing it twice at once on two cores only slows both.
FINISH_WAIT_S = 30.0
# Networks worth compiling ahead: the others have none (plasma) or open files and cameras (video).
WARM_MODELS = ("cppn", "stylegan", "deepdream")


class Warmup:
    """The warm-up thread of a `--standby` process: `start()`, and `finish()` when it is time to take over."""

    def __init__(self, state_file: Path, audio: str | int | None, audio_cfg: AudioConfig, render_cfg: RenderConfig,
                 preset: str):
        self.state_file = Path(state_file)
        self.audio = audio
        self.audio_cfg = audio_cfg
        self.render_cfg = render_cfg
        self.preset = preset                   # the command line's, until the state file names one
        self.warmed: set[tuple] = set()        # scene_key of each model warmed (or tried)
        self.made: list[tuple[str, float]] = []      # (what, seconds) of each step done, for the log and tests
        self._first_look = True
        self._state_seen: tuple | None = None  # (mtime, size) of the state file when last read
        self._preset_text: str | None = None   # the scene the state file named then, as TOML
        self._stop = threading.Event()
        self._lock = threading.Lock()          # nicing the thread and finish() raising it again, one at a time
        self._niced: tuple[int, int] | None = None     # (native id, nice it had) while the thread is niced
        self._thread = threading.Thread(target=self._run, name="vj-spare-warmup", daemon=True)

    def start(self) -> Warmup:
        self._thread.start()
        return self

    def finish(self, timeout_s: float = FINISH_WAIT_S) -> None:
        """Stop after the step in progress, back at the show's priority (where the process may), and wait for it;
        a first round not done yet is finished (the takeover needs all of it)."""
        with self._lock:
            self._stop.set()
            if self._niced is not None:
                tid, nice = self._niced
                with contextlib.suppress(OSError):     # PermissionError: lowering a nice value needs CAP_SYS_NICE
                    os.setpriority(os.PRIO_PROCESS, tid, nice)
                self._niced = None
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.warning("spare: its warm-up is still busy after %.0f s; taking over without waiting", timeout_s)

    def _run(self) -> None:
        with self._lock:
            if not self._stop.is_set():
                tid = threading.get_native_id()
                nice = os.getpriority(os.PRIO_PROCESS, tid)
                with contextlib.suppress(OSError):
                    os.setpriority(os.PRIO_PROCESS, tid, max(nice, SPARE_NICE))     # never above the show's
                    self._niced = (tid, nice)
        try:
            self._step("imports", lambda: importlib.import_module("vj.show"))
            from vj.audio.sources import preload_track
            self._step("audio track", lambda: preload_track(self.audio, self.audio_cfg.sample_rate_hz))
            self._step("model", self._warm_scene)
        finally:
            mark_ready(self.state_file)
        while not self._stop.wait(WARM_CHECK_S):
            self._step("model", self._warm_scene)

    def _step(self, what: str, make: Callable[[], object]) -> None:
        """One warm-up step; one that fails only logs (the takeover makes it again and says why it fails)."""
        t0 = time.perf_counter()
        try:
            done = make()
        except Exception as exc:     # the warm-up thread's boundary: the spare keeps waiting
            log.debug("spare: %s not made ahead: %s", what, exc)
            return
        if done is not False:
            self.made.append((what, time.perf_counter() - t0))
            log.debug("spare: %s made ahead in %.2f s", what, self.made[-1][1])

    def _playing(self) -> Preset | None:
        """The scene the show plays when the state file names a new one since the last look; else None."""
        try:
            st = self.state_file.stat()
            seen = (st.st_mtime_ns, st.st_size)
        except OSError:
            seen = None
        first, self._first_look = self._first_look, False
        if seen == self._state_seen and not first:
            return None
        self._state_seen = seen
        from vj.showstate import read_state
        scene = read_state(self.state_file).get("preset") if seen is not None else None
        if not isinstance(scene, dict) or not isinstance(scene.get("toml"), str):
            return load_preset(self.preset) if first else None
        if scene["toml"] == self._preset_text:
            return None
        self._preset_text = scene["toml"]
        # Parsed with its file's path, as the takeover will (vj.showstate.Resume): files beside it resolve the same.
        return parse_preset(scene["toml"], Path(scene["file"]) if scene.get("file") else None)

    def _warm_scene(self) -> bool:
        """Build the playing scene's model at its size and render it WARM_RENDERS times; False when there was nothing
        to do (no new scene, a model already warmed, or one not warmed here)."""
        preset = self._playing()
        if preset is None:
            return False
        from vj.scene import SceneBuilder, scene_key
        key = scene_key(preset)
        if key in self.warmed or not warms(preset.model, preset.model_settings):
            return False
        self.warmed.add(key)                   # tried once, whether or not it works
        from vj.audio.features import SILENT
        model = SceneBuilder(self.render_cfg, (), None, ()).make_model(preset)
        try:
            generator = model.generator
            values = {p.path: p.default for p in generator.params()} | dict(preset.values)
            args = generator.advance(values, SILENT, 0.0)
            for _ in range(WARM_RENDERS):
                generator.render(args)
        finally:
            model.close()
        return True


def warms(model: str, settings: dict) -> bool:
    """Is a model of this kind and these settings warmed in a spare: one with a network, on the CPU?"""
    if model not in WARM_MODELS:
        return False
    if model == "cppn":
        return True                            # always on the CPU
    if model == "deepdream":
        inner = settings.get("source_settings")
        if settings.get("source", "cppn") == "video" or (isinstance(inner, dict) and not _on_cpu(inner)):
            return False
    return _on_cpu(settings)


def _on_cpu(settings: dict) -> bool:
    device = str(settings.get("device", "auto"))
    if device == "auto":
        import torch
        return not torch.cuda.is_available()
    return device == "cpu"


def stand_by(state_file: Path, stream: IO[str], audio: str | int | None, audio_cfg: AudioConfig,
             render_cfg: RenderConfig, preset: str) -> str | None:
    """A `--standby` process until it takes over: warm up while waiting for the supervisor's word (see
    vj.supervisor.wait_for_restart), then finish the warm-up; why it takes over, or None when the supervisor
    went away instead."""
    warmup = Warmup(state_file, audio, audio_cfg, render_cfg, preset).start()
    reason = wait_for_restart(stream)
    warmup.finish(FINISH_WAIT_S if reason is not None else 0.0)
    return reason


__all__ = ["SPARE_NICE", "Warmup", "stand_by", "warms"]
