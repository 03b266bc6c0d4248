"""Live outputs: a window per output of an outputs file, each warping the show's master picture, reloaded on edit."""

from __future__ import annotations

import ctypes
import logging
import os
import time
import queue
import threading
from dataclasses import dataclass
from pathlib import Path

import glfw
import moderngl
import numpy as np

from vj.files import write_atomic
from vj.mapping.calibrate import CALIBRATE, Calibration, overlay, rewrite, spec_from, values_of
from vj.mapping.spec import OutputsError, OutputsFile, OutputSpec, load_outputs
from vj.mapping.warp import WarpPass, load_mask
from vj.output.window import Window, list_monitors
from vj.params import Change, Registry

log = logging.getLogger(__name__)

_SYNC_GPU_COMMANDS_COMPLETE = 0x9117
_TIMEOUT_IGNORED = 0xFFFFFFFFFFFFFFFF


class SharedSync:
    """Makes the master picture, drawn in the show's context, safe to read in the output windows' contexts without
    the CPU waiting: a fence after the master (glFenceSync + glFlush) that each output context's GPU waits on
    (glWaitSync), GL's way for objects shared between contexts (GL 4.6 section 5.3). Where the functions are
    missing (GL before 3.2) it falls back to glFinish, which waits on the CPU."""

    def __init__(self):
        get = glfw.get_proc_address            # the show window's context is current: its GL's entry points
        ptrs = [get(name) for name in ("glFenceSync", "glWaitSync", "glDeleteSync", "glFlush")]
        self.available = all(ptrs)
        if self.available:
            self._fence = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint)(ptrs[0])
            self._wait = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint64)(ptrs[1])
            self._delete = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(ptrs[2])
            self._flush = ctypes.CFUNCTYPE(None)(ptrs[3])
        self._sync = None

    def after_master(self, ctx: moderngl.Context) -> None:
        """In the show's context, once the master is drawn."""
        if not self.available:
            ctx.finish()
            return
        self._sync = self._fence(_SYNC_GPU_COMMANDS_COMPLETE, 0)
        self._flush()

    def before_read(self) -> None:
        """In an output's context, before it samples the master."""
        if self._sync:
            self._wait(self._sync, 0, _TIMEOUT_IGNORED)

    def done(self) -> None:
        """Back in the show's context, once every output has drawn."""
        if self._sync:
            self._delete(self._sync)
            self._sync = None

RELOAD_POLL_S = 0.5
WRITE_AFTER_S = 0.5          # calibration writes the file once the corners have been still this long


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
        self._write: str | None = None           # text for the thread to write (calibration)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vj-outputs-watch", daemon=True)
        self._thread.start()

    def _stat(self):
        try:
            st = os.stat(self.path)
            return st.st_mtime_ns, st.st_size
        except OSError:
            return None

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval_s)
            self._wake.clear()
            with self._lock:
                text, self._write = self._write, None
            if text is not None:
                self._write_file(text)
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

    def write(self, text: str) -> None:
        """Write the file (calibration moved a corner) on the watcher's thread, which then does not read it back."""
        with self._lock:
            self._write = text
        self._wake.set()

    def _write_file(self, text: str) -> None:
        try:
            write_atomic(self.path, text)
            self._stamp = self._stat()
            log.info("outputs: corners written to %s", self.path)
        except OSError as exc:               # a full disk or a read-only file: the mapping plays on, unsaved
            with self._lock:
                self._result = f"{self.path}: cannot write the corners back ({exc.strerror or exc}); they play unsaved"

    def take(self) -> tuple | str | None:
        with self._lock:
            result, self._result = self._result, None
        return result

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5.0)


@dataclass
class _Output:
    spec: OutputSpec
    window: Window
    warp: WarpPass
    master: moderngl.Texture | None = None     # the show's master texture as seen from this window's context
    overlay_key: tuple | None = None           # what the calibration overlay was last drawn for


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
        self.calibration = Calibration()
        self.calibrating = False
        self._reloaded = False              # True: the registry takes the file's values at the next `follow`
        self._write_due: float | None = None
        masks = load_masks(outputs) if masks is None else masks
        main.make_current()
        self.sync = SharedSync()
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

    def poll(self) -> list[Change]:
        """Once a frame: apply an edited outputs file if the watcher has read one (a bad file leaves `last_error` and
        the old mapping), pass keys pressed on the output windows to the show window's queue, and return the
        Changes of handles dragged with the mouse while calibrating."""
        changes = []
        for k, o in enumerate(self.items):
            for key in o.window.pop_keys():
                try:
                    self.main.keys.put_nowait(key)
                except queue.Full:        # nobody drains the show's keys: drop, as the window itself does
                    pass
            while True:
                try:
                    kind, x, y = o.window.mouse.get_nowait()
                except queue.Empty:
                    break
                if not self.calibrating:
                    continue
                specs, sizes = self.specs, self.sizes
                if kind == "press":
                    self.calibration.press(k, x, y, specs, sizes)
                elif kind == "release":
                    self.calibration.release()
                else:
                    ch = self.calibration.move(k, x, y, specs, sizes)
                    if ch is not None:
                        changes.append(ch)
            if o.window.should_close():           # a projector is not closed by a stray click: only the show quits
                o.window.keep_open()
        got = self.watcher.take() if self.watcher is not None else None
        if isinstance(got, str):
            self.last_error = got
            log.error("outputs: %s (the last good mapping stays)", got)
        elif got is not None:
            why = self.apply(*got)
            if why:
                log.error("outputs: %s (the last good mapping stays)", why)
        return changes

    @property
    def specs(self) -> list[OutputSpec]:
        return [o.spec for o in self.items]

    @property
    def sizes(self) -> list[tuple[int, int]]:
        return [o.window.framebuffer_size for o in self.items]

    def key(self, key: str) -> Change | bool | None:
        """While calibrating: a Change for an arrow key, True for a selection key, None for keys it leaves alone."""
        if not self.calibrating:
            return None
        return self.calibration.key(key, self.specs, self.sizes)

    def follow(self, registry: Registry, now_s: float | None = None) -> None:
        """Once a frame, after the changes are drained: take points and brightness moved by OSC, MIDI, keys or the
        mouse from the registry, refuse a move that would fold a picture, and write the file back once still."""
        now = time.monotonic() if now_s is None else now_s
        if self._reloaded:
            for spec in self.specs:
                for path, v in values_of(spec).items():
                    registry.set(path, v, "outputs file")
            self._reloaded = False
        values = registry.values()
        self.calibration.settled()
        self.calibrating = bool(values.get(CALIBRATE, False))
        moved = False
        for o in self.items:
            new, why = spec_from(o.spec, values)
            if why:
                self.last_error = why
                log.warning("outputs: %s", why)
                for path, v in values_of(o.spec).items():         # the registry shows what plays
                    registry.set(path, v, "outputs")
            elif new is not o.spec:
                o.window.make_current()
                o.warp.set_spec(new)
                o.spec = new
                moved = True
                if "fold the picture" in self.last_error:     # a refused move is old news once one is taken
                    self.last_error = ""
        if moved:
            self.main.make_current()
            self._write_due = now + WRITE_AFTER_S
        if self._write_due is not None and now >= self._write_due:
            self._write_due = None
            self._write_back()

    def _write_back(self) -> None:
        text = self.file.text
        try:
            for spec in self.specs:
                text = rewrite(text, self.file.get(spec.name), spec)
        except KeyError as exc:
            self.last_error = f"{self.file.path}: output {exc} is no longer in the file; corners not written"
            return
        self.file = OutputsFile(self.file.path, tuple(self.specs), text)
        if self.watcher is not None:
            self.watcher.write(text)

    def apply(self, outputs: OutputsFile, masks: dict[str, np.ndarray | None]) -> str | None:
        """Take a new mapping. Outputs keep their windows by name; a file that adds, removes or renames outputs,
        moves one to another monitor or gives one another number of points (their params are declared once)
        needs a restart and is refused (the old mapping stays)."""
        old = [(o.spec.name, o.spec.monitor, o.spec.mesh_array.shape) for o in self.items]
        new = [(o.name, o.monitor, o.mesh_array.shape) for o in outputs.outputs]
        if old != new:
            self.last_error = (f"{outputs.path}: outputs, monitors or numbers of points changed "
                               f"({', '.join(n for n, _, _ in new)}); restart the show for that")
            return self.last_error
        try:
            for o, spec in zip(self.items, outputs.outputs):
                o.window.make_current()
                o.warp.set_spec(spec)
                o.warp.set_mask(masks.get(spec.name))
                if spec.size_px != o.spec.size_px and not o.window.fullscreen:
                    o.window.resize(*spec.size_px)
                o.spec = spec
        finally:
            self.main.make_current()
        self.file = outputs
        self.last_error = ""
        self.reloads += 1
        self._reloaded = True
        log.info("outputs: %s reloaded", outputs.path)
        return None

    def draw(self, master: moderngl.Texture) -> None:
        """Warp the show's finished master picture into every output window's back buffer."""
        if not self.items:
            return
        size, sizes = master.size, self.sizes
        if any(o.warp.needs_mipmaps(size, size_px) for o, size_px in zip(self.items, sizes)):
            master.build_mipmaps()
        self.sync.after_master(self.main.ctx)
        try:
            for k, (o, size_px) in enumerate(zip(self.items, sizes)):
                o.window.make_current()
                if o.master is None or o.master.glo != master.glo or o.master.size != size:   # a new master
                    if o.master is not None:
                        o.master.release()
                    o.master = o.window.ctx.external_texture(master.glo, size, 4, 0, "f1")
                self._overlay(k, o, size_px)
                self.sync.before_read()
                o.warp.render(o.master, o.window.ctx.screen, (0, 0, *size_px))
        finally:
            self.main.make_current()
            self.sync.done()

    def _overlay(self, k: int, o: _Output, size_px: tuple[int, int]) -> None:
        """Calibration handles over output k, drawn again only when something they show changed."""
        if not self.calibrating:
            if o.overlay_key is not None:
                o.warp.set_overlay(None)
                o.overlay_key = None
            return
        active = k == self.calibration.output % len(self.items)
        key = (o.spec, size_px, self.calibration.point, active)
        if key != o.overlay_key:
            o.warp.set_overlay(overlay(o.spec, size_px, self.calibration.point, active))
            o.overlay_key = key

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
            if self._write_due is not None:          # corners moved just now: keep them
                self._write_due = None
                self._write_back()
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
