"""Window: the projector output, a glfw window with a moderngl context, fullscreen toggle and key queue."""

from __future__ import annotations

import logging
import os
import queue
import sys

import glfw
import moderngl

from vj.gfx.context import unbind_egl

log = logging.getLogger(__name__)

NO_DISPLAY = "no display: set DISPLAY or use `vj render` for offline output"
KEY_QUEUE_SIZE = 256              # presses kept when nobody drains the queue; newer ones are dropped

# glfw.KEY_PAGE_UP -> 'page_up', glfw.KEY_A -> 'a', glfw.KEY_F5 -> 'f5', glfw.KEY_KP_ADD -> 'kp_add'
_KEY_NAMES = {
    getattr(glfw, attr): attr[4:].lower()
    for attr in sorted(dir(glfw), reverse=True)   # reverse: KEY_MENU wins over its alias KEY_LAST
    if attr.startswith("KEY_") and attr not in ("KEY_UNKNOWN", "KEY_LAST")
}
_MODIFIER_KEYS = {getattr(glfw, f"KEY_{side}_{mod}") for side in ("LEFT", "RIGHT")
                  for mod in ("SHIFT", "CONTROL", "ALT", "SUPER")}
_MODIFIER_PREFIXES = ((glfw.MOD_CONTROL, "ctrl+"), (glfw.MOD_ALT, "alt+"),
                      (glfw.MOD_SHIFT, "shift+"), (glfw.MOD_SUPER, "super+"))


class WindowError(Exception):
    """The window cannot open; the message is one line saying why."""


# glfw is one global library: initialised by the first user, terminated after the last.
_glfw_users = 0
_glfw_last_error = ""


def _on_glfw_error(code: int, description) -> None:
    global _glfw_last_error
    if isinstance(description, bytes):
        description = description.decode("utf-8", "replace")
    _glfw_last_error = " ".join(str(description).split())
    log.debug("glfw error %#x: %s", code, _glfw_last_error)


def _has_display() -> bool:
    """False where an X11/Wayland desktop is needed and neither is named in the environment."""
    if sys.platform.startswith(("linux", "freebsd", "openbsd", "netbsd")):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def _glfw_acquire() -> None:
    global _glfw_users, _glfw_last_error
    if _glfw_users == 0:
        if not _has_display():
            raise WindowError(NO_DISPLAY)
        glfw.set_error_callback(_on_glfw_error)
        _glfw_last_error = ""
        if not glfw.init():
            reason = _glfw_last_error or "glfw could not start"
            raise WindowError(f"no display ({reason}): set DISPLAY or use `vj render` for offline output")
    _glfw_users += 1


def _glfw_release() -> None:
    global _glfw_users
    _glfw_users -= 1
    if _glfw_users == 0:
        glfw.terminate()


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value or "")


def list_monitors() -> list[dict]:
    """Connected monitors: dict(name, index, width, height, refresh_hz); [] without a display.

    Index 0 is the primary monitor. Xvfb reports a refresh rate of 0.
    """
    try:
        _glfw_acquire()
    except WindowError:
        return []
    try:
        monitors = []
        for index, monitor in enumerate(glfw.get_monitors() or []):
            mode = glfw.get_video_mode(monitor)
            monitors.append(dict(name=_text(glfw.get_monitor_name(monitor)), index=index,
                                 width=mode.size.width, height=mode.size.height,
                                 refresh_hz=mode.refresh_rate))
        return monitors
    finally:
        _glfw_release()


def key_name(key: int, scancode: int = 0, mods: int = 0) -> str:
    """A simple name for a key press: 'f', 'escape', 'space', 'left', 'f5', 'ctrl+s'."""
    name = None
    if glfw.KEY_A <= key <= glfw.KEY_Z or glfw.KEY_0 <= key <= glfw.KEY_9:
        # Letters and digits as the user's keyboard layout labels them, not by US key position.
        printed = _text(glfw.get_key_name(key, scancode)).lower()
        name = printed if len(printed) == 1 and printed.isalnum() else None
    name = name or _KEY_NAMES.get(key, f"key{scancode}")
    if key in _MODIFIER_KEYS:
        return name
    return "".join(prefix for bit, prefix in _MODIFIER_PREFIXES if mods & bit) + name


class Window:
    """A resizable glfw window (GL 3.3 core) with its moderngl context in `ctx`.

    glfw is main-thread only: create, poll, swap and close the window on the thread that runs the
    frame loop. Key presses arrive on `keys` as simple names ('f', 'escape', 'space', 'left',
    'ctrl+s'); the frame loop drains them once per frame like any other control input.

    `fullscreen_monitor`: open fullscreen on that monitor index (see `list_monitors()`); None opens
    a window of `width_px` x `height_px`. `toggle_fullscreen()` switches and returns to the same
    windowed position and size. The cursor is hidden while fullscreen.
    """

    def __init__(self, width_px: int, height_px: int, title: str = "vj",
                 fullscreen_monitor: int | None = None, vsync: bool = True, visible: bool = True,
                 share: Window | None = None, position_px: tuple[int, int] | None = None):
        self.title = title
        self.vsync = vsync
        self.fullscreen_monitor = fullscreen_monitor
        # The monitor index the window is fullscreen on, None while windowed: a plain attribute that other
        # threads may read (the show's state writer), where `fullscreen` asks glfw, which is main-thread only.
        self.on_monitor: int | None = None
        self.keys: queue.Queue[str] = queue.Queue(maxsize=KEY_QUEUE_SIZE)
        # Mouse presses, releases and drags (a button held) as ("press" | "release" | "drag", x, y) in framebuffer
        # pixels from the top left; only read by projection calibration (vj.mapping), dropped when full.
        self.mouse: queue.Queue[tuple[str, float, float]] = queue.Queue(maxsize=KEY_QUEUE_SIZE)
        self._button_down = False
        self.ctx: moderngl.Context | None = None
        self._window = None
        self._viewport = (0, 0, 0, 0)
        # `share`: another window whose textures and buffers this one's context can use (projection outputs
        # sample the show's master texture); `position_px`: where a windowed one opens, in screen pixels.
        self._share = share
        self._position = position_px
        _glfw_acquire()
        try:
            self._open(int(width_px), int(height_px), visible)
        except BaseException:
            self.close()
            raise

    def _open(self, width_px: int, height_px: int, visible: bool) -> None:
        glfw.default_window_hints()
        glfw.window_hint(glfw.CONTEXT_VERSION_MAJOR, 3)
        glfw.window_hint(glfw.CONTEXT_VERSION_MINOR, 3)
        glfw.window_hint(glfw.OPENGL_PROFILE, glfw.OPENGL_CORE_PROFILE)
        glfw.window_hint(glfw.OPENGL_FORWARD_COMPAT, True)
        glfw.window_hint(glfw.RESIZABLE, True)
        glfw.window_hint(glfw.VISIBLE, visible)
        # A fullscreen window keeps its mode when it loses focus: the projector stays up while
        # the operator clicks elsewhere.
        glfw.window_hint(glfw.AUTO_ICONIFY, False)

        monitor = None
        if self.fullscreen_monitor is not None:
            monitor = self._monitor(self.fullscreen_monitor)
        # The windowed rect to come back to: centred on the chosen (or primary) monitor.
        self._windowed = (*(self._position or self._centred_pos(monitor, width_px, height_px)), width_px, height_px)
        share = self._share._window if self._share is not None else None
        if monitor is not None:
            mode = glfw.get_video_mode(monitor)
            glfw.window_hint(glfw.REFRESH_RATE, mode.refresh_rate or glfw.DONT_CARE)
            self._window = glfw.create_window(mode.size.width, mode.size.height, self.title, monitor, share)
        else:
            self._window = glfw.create_window(width_px, height_px, self.title, None, share)
        if self._window and monitor is None and self._position is not None:
            glfw.set_window_pos(self._window, *self._position)
        if not self._window:
            raise WindowError(f"cannot open an OpenGL 3.3 core window: {_glfw_last_error or 'unknown glfw error'}")
        unbind_egl()  # a headless EGL context still current here makes GLX MakeCurrent kill the process
        glfw.make_context_current(self._window)
        glfw.swap_interval(1 if self.vsync else 0)
        try:
            self.ctx = moderngl.create_context(require=330)
        except Exception as exc:  # moderngl raises plain Exception for a missing or old GL
            raise WindowError(f"cannot use the window's OpenGL context: {_text(exc).splitlines()[0]}") from None
        if monitor is not None:
            glfw.set_input_mode(self._window, glfw.CURSOR, glfw.CURSOR_HIDDEN)
            self.on_monitor = self.fullscreen_monitor
        glfw.set_key_callback(self._window, self._on_key)
        glfw.set_mouse_button_callback(self._window, self._on_mouse_button)
        glfw.set_cursor_pos_callback(self._window, self._on_cursor)
        self._sync_viewport()

    # -- per frame ---------------------------------------------------------------------------

    @property
    def framebuffer_size(self) -> tuple[int, int]:
        """Drawable size in pixels (differs from the window size on HiDPI screens)."""
        return tuple(glfw.get_framebuffer_size(self._window))

    @property
    def fullscreen(self) -> bool:
        return bool(glfw.get_window_monitor(self._window))

    def should_close(self) -> bool:
        return bool(glfw.window_should_close(self._window))

    def request_close(self) -> None:
        glfw.set_window_should_close(self._window, True)

    def keep_open(self) -> None:
        """Cancel a close request (the window manager's close button on a projector output)."""
        glfw.set_window_should_close(self._window, False)

    def resize(self, width_px: int, height_px: int) -> None:
        """Set a windowed window's size; the viewport follows at the next `poll_events`."""
        glfw.set_window_size(self._window, int(width_px), int(height_px))

    def poll_events(self) -> None:
        """Handle window events (keys go to `keys`) and keep `ctx.screen` the size of the window."""
        glfw.poll_events()
        self._sync_viewport()

    def swap(self) -> None:
        """Show the frame drawn into `ctx.screen` (waits for vsync when it is on)."""
        glfw.swap_buffers(self._window)

    def make_current(self) -> None:
        """Make this window's context the thread's current one (moderngl draws into whichever is current)."""
        glfw.make_context_current(self._window)

    def set_vsync(self, on: bool) -> None:
        """Whether `swap` waits for the display; this window's context must be current."""
        self.vsync = bool(on)
        glfw.swap_interval(1 if self.vsync else 0)

    def pop_keys(self) -> list[str]:
        """Every key press since the last call, oldest first."""
        names = []
        while True:
            try:
                names.append(self.keys.get_nowait())
            except queue.Empty:
                return names

    # -- fullscreen --------------------------------------------------------------------------

    def toggle_fullscreen(self, monitor: int | None = None) -> None:
        """Fullscreen on `monitor` (default: the one given at start, else the primary), or back."""
        if self.fullscreen:
            self.set_windowed()
        else:
            self.set_fullscreen(self.fullscreen_monitor if monitor is None else monitor)

    def set_fullscreen(self, monitor: int | None = None) -> None:
        index = 0 if monitor is None else monitor
        target = self._monitor(index)
        if not self.fullscreen:
            self._windowed = (*glfw.get_window_pos(self._window), *glfw.get_window_size(self._window))
        mode = glfw.get_video_mode(target)
        glfw.set_window_monitor(self._window, target, 0, 0, mode.size.width, mode.size.height,
                                mode.refresh_rate or glfw.DONT_CARE)
        glfw.set_input_mode(self._window, glfw.CURSOR, glfw.CURSOR_HIDDEN)
        self.on_monitor = index
        self._after_resize()

    def set_windowed(self) -> None:
        x, y, w, h = self._windowed
        glfw.set_window_monitor(self._window, None, x, y, w, h, glfw.DONT_CARE)
        glfw.set_input_mode(self._window, glfw.CURSOR, glfw.CURSOR_NORMAL)
        self.on_monitor = None
        self._after_resize()

    # -- end ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Destroy the window and its context; glfw stops with the last window. Safe to call twice."""
        if self.ctx is not None:
            self.ctx.release()
            self.ctx = None
        if self._window is not None:
            glfw.destroy_window(self._window)
            self._window = None
        if not getattr(self, "_released", False):
            self._released = True
            _glfw_release()

    def __enter__(self) -> Window:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- helpers -----------------------------------------------------------------------------

    def _monitor(self, index: int):
        monitors = glfw.get_monitors() or []
        if not monitors:
            raise WindowError("no monitor found for fullscreen")
        if not 0 <= index < len(monitors):
            log.warning("monitor %d not found (%d connected): using the primary one", index, len(monitors))
            index = 0
        return monitors[index]

    @staticmethod
    def _centred_pos(monitor, width_px: int, height_px: int) -> tuple[int, int]:
        monitor = monitor or glfw.get_primary_monitor()
        if not monitor:
            return 0, 0
        mx, my = glfw.get_monitor_pos(monitor)
        mode = glfw.get_video_mode(monitor)
        return mx + max(0, (mode.size.width - width_px) // 2), my + max(0, (mode.size.height - height_px) // 2)

    def _after_resize(self) -> None:
        glfw.swap_interval(1 if self.vsync else 0)   # some drivers forget it on a mode change
        self._sync_viewport()
        # Mesa resizes the back buffer only at a swap: without this one black frame, the first
        # frame after the switch would still be drawn at the old size.
        self.ctx.screen.use()
        self.ctx.clear(0.0, 0.0, 0.0, 1.0)
        glfw.swap_buffers(self._window)

    def _sync_viewport(self) -> None:
        w, h = self.framebuffer_size
        viewport = (0, 0, w, h)
        if viewport != self._viewport and self.ctx is not None:
            self._viewport = viewport
            self.ctx.screen.viewport = viewport

    def _to_pixels(self, x: float, y: float) -> tuple[float, float]:
        ww, wh = glfw.get_window_size(self._window)
        fw, fh = self.framebuffer_size
        return x * fw / max(ww, 1), y * fh / max(wh, 1)

    def _on_mouse_button(self, window, button: int, action: int, mods: int) -> None:
        if button != glfw.MOUSE_BUTTON_LEFT:
            return
        self._button_down = action == glfw.PRESS
        self._put_mouse("press" if action == glfw.PRESS else "release", *glfw.get_cursor_pos(self._window))

    def _on_cursor(self, window, x: float, y: float) -> None:
        if self._button_down:
            self._put_mouse("drag", x, y)

    def _put_mouse(self, kind: str, x: float, y: float) -> None:
        try:
            self.mouse.put_nowait((kind, *self._to_pixels(x, y)))
        except queue.Full:
            pass

    def _on_key(self, window, key: int, scancode: int, action: int, mods: int) -> None:
        # A held key repeats as 'NAME:repeat' (a held arrow nudges a projector corner on); the show's own keys
        # act on presses only, so holding 'right' does not run through the presets.
        if action not in (glfw.PRESS, glfw.REPEAT):
            return
        try:
            self.keys.put_nowait(key_name(key, scancode, mods) + (":repeat" if action == glfw.REPEAT else ""))
        except queue.Full:
            pass  # nobody drains the queue: newest presses are lost, never the frame loop
