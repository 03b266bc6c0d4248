"""Live outputs: a window per output of an outputs file, each warping the show's master picture, reloaded on edit."""

from __future__ import annotations

import logging
import os
import queue
import threading
from dataclasses import dataclass
from pathlib import Path

import moderngl
import numpy as np

from vj.mapping.spec import OutputsError, OutputsFile, OutputSpec, load_outputs
from vj.mapping.warp import WarpPass, load_mask
from vj.output.window import Window, list_monitors

log = logging.getLogger(__name__)

RELOAD_POLL_S = 0.5


def monitor_index(monitor: int | str | None) -> int | None:
    """The glfw monitor index for an output's `monitor` (an index, or part of a name); None: a window."""
    if monitor is None:
        return None
    monitors = list_monitors()
    if isinstance(monitor, int):
        if monitor < len(monitors):
            return monitor
        log.warning("outputs: monitor %d not connected (%d found): a window instead", monitor, len(monitors))
        return None
    hit = next((m["index"] for m in monitors if monitor.lower() in m["name"].lower()), None)
    if hit is None:
        log.warning("outputs: no monitor named like %r (%s): a window instead", monitor,
                    ", ".join(m["name"] for m in monitors) or "none found")
    return hit


def load_masks(outputs: OutputsFile) -> dict[str, np.ndarray | None]:
    """Every output's mask image; OutputsError naming the first unreadable one."""
    return {o.name: load_mask(o) for o in outputs.outputs}


class OutputsWatcher:
    """Reads the outputs file again when it changes, on a thread of its own (the frame loop never touches the
    disk): `take()` gives the newest good (OutputsFile, masks) or an error line, once each."""

    def __init__(self, path: Path, interval_s: float = RELOAD_POLL_S):
        self.path = Path(path)
        self.interval_s = interval_s
        self._stamp = self._stat()
        self._result: tuple | str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vj-outputs-watch", daemon=True)
        self._thread.start()

    def _stat(self):
        try:
            st = os.stat(self.path)
            return st.st_mtime_ns, st.st_size
        except OSError:
            return None

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            stamp = self._stat()
            if stamp == self._stamp:
                continue
            self._stamp = stamp
            try:
                outputs = load_outputs(self.path)
                result: tuple | str = (outputs, load_masks(outputs))
            except OutputsError as exc:
                result = str(exc)
            with self._lock:
                self._result = result

    def mark_written(self) -> None:
        """The show wrote the file itself (calibration): do not load it back as an edit."""
        self._stamp = self._stat()

    def take(self) -> tuple | str | None:
        with self._lock:
            result, self._result = self._result, None
        return result

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)


@dataclass
class _Output:
    spec: OutputSpec
    window: Window
    warp: WarpPass
    master: moderngl.Texture | None = None     # the show's master texture as seen from this window's context
    master_glo: int = -1


class OutputWindows:
    """The windows of an outputs file. `draw(master)` after the show has drawn its frame, `swap()` after the show's
    own swap; both leave the show window's context current. Main thread only, like every glfw call.

    Only the first output's window waits for vsync, and it is swapped last: the others (and the show's own
    window, the operator's view) swap without waiting just before it, so every projector gets the same frame.
    """

    def __init__(self, main: Window, outputs: OutputsFile, masks: dict[str, np.ndarray | None] | None = None,
                 watch: bool = True, reload_poll_s: float = RELOAD_POLL_S):
        self.main = main
        self.file = outputs
        self.items: list[_Output] = []
        self.last_error = ""
        self.reloads = 0
        masks = load_masks(outputs) if masks is None else masks
        try:
            for k, spec in enumerate(outputs.outputs):
                self.items.append(self._open(spec, masks.get(spec.name), vsync=(k == 0 and main.vsync)))
        except BaseException:
            self.close()
            raise
        finally:
            main.make_current()
        if self.items and main.vsync:
            main.set_vsync(False)
        self.watcher = (OutputsWatcher(outputs.path, reload_poll_s) if watch and outputs.path is not None
                        else None)

    def _open(self, spec: OutputSpec, mask: np.ndarray | None, vsync: bool) -> _Output:
        w, h = spec.size_px
        win = Window(w, h, title=f"vj output {spec.name}", fullscreen_monitor=monitor_index(spec.monitor),
                     vsync=vsync, share=self.main, position_px=spec.position_px)
        try:
            return _Output(spec, win, WarpPass(win.ctx, spec, mask))
        except BaseException:
            win.close()
            raise

    @property
    def names(self) -> list[str]:
        return [o.spec.name for o in self.items]

    # -- per frame -------------------------------------------------------------------------

    def poll(self) -> str | None:
        """Apply an edited outputs file if the watcher has read one; returns an error line for a bad file (the old
        mapping stays), else None. Keys pressed on the output windows go to the show window's queue."""
        for o in self.items:
            for key in o.window.pop_keys():
                try:
                    self.main.keys.put_nowait(key)
                except queue.Full:        # nobody drains the show's keys: drop, as the window itself does
                    pass
            if o.window.should_close():           # a projector is not closed by a stray click: only the show quits
                o.window.keep_open()
        got = self.watcher.take() if self.watcher is not None else None
        if got is None:
            return None
        if isinstance(got, str):
            self.last_error = got
            log.error("outputs: %s (the last good mapping stays)", got)
            return got
        outputs, masks = got
        why = self.apply(outputs, masks)
        if why:
            log.error("outputs: %s (the last good mapping stays)", why)
        return why

    def apply(self, outputs: OutputsFile, masks: dict[str, np.ndarray | None]) -> str | None:
        """Take a new mapping. Outputs keep their windows by name; a file that adds, removes or renames outputs,
        or moves one to another monitor, needs a restart and is refused (the old mapping stays)."""
        old = [(o.spec.name, o.spec.monitor) for o in self.items]
        new = [(o.name, o.monitor) for o in outputs.outputs]
        if old != new:
            self.last_error = (f"{outputs.path}: outputs or monitors changed ({', '.join(n for n, _ in new)}); "
                               "restart the show to open or close windows")
            return self.last_error
        try:
            for o, spec in zip(self.items, outputs.outputs):
                o.window.make_current()
                o.warp.set_spec(spec)
                if spec.mask != o.spec.mask or masks.get(spec.name) is not None:
                    o.warp.set_mask(masks.get(spec.name))
                if spec.size_px != o.spec.size_px and not o.window.fullscreen:
                    o.window.resize(*spec.size_px)
                o.spec = spec
        finally:
            self.main.make_current()
        self.file = outputs
        self.last_error = ""
        self.reloads += 1
        log.info("outputs: %s reloaded", outputs.path)
        return None

    def draw(self, master: moderngl.Texture) -> None:
        """Warp the show's finished master picture into every output window's back buffer."""
        if not self.items:
            return
        size = master.size
        if any(o.warp.needs_mipmaps(size, o.window.framebuffer_size) for o in self.items):
            master.build_mipmaps()
        # The other contexts read the master only after this one has finished drawing it (GL's rule for
        # objects shared between contexts); on a GPU this costs the overlap of one frame with the next.
        self.main.ctx.finish()
        try:
            for o in self.items:
                o.window.make_current()
                if o.master_glo != master.glo or o.master is None or o.master.size != size:
                    if o.master is not None:
                        o.master.release()
                    o.master = o.window.ctx.external_texture(master.glo, size, 4, 0, "f1")
                    o.master_glo = master.glo
                o.warp.render(o.master, o.window.ctx.screen, (0, 0, *o.window.framebuffer_size))
        finally:
            self.main.make_current()

    def swap(self) -> None:
        """Present every output's frame: the ones that do not wait first, the vsynced one last."""
        try:
            for o in sorted(self.items, key=lambda o: o.window.vsync):
                o.window.make_current()
                o.window.swap()
        finally:
            self.main.make_current()

    # -- end -------------------------------------------------------------------------------

    def close(self) -> None:
        """Close every output window; the show window's context is current afterwards. Safe to call twice."""
        if getattr(self, "watcher", None) is not None:
            self.watcher.close()
            self.watcher = None
        for o in self.items:
            try:
                o.window.make_current()
                if o.master is not None:
                    o.master.release()
                o.warp.release()
            finally:
                o.window.close()
        self.items = []
        if self.main.ctx is not None:
            self.main.make_current()
