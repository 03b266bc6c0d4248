"""Window: a real glfw window on Xvfb (Mesa llvmpipe through GLX), drawn into and read back."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import glfw
import moderngl
import numpy as np
import pytest
from xvfb import display, xvfb_display, xwd_root  # noqa: F401  (fixtures)

from vj.output import window as window_mod
from vj.output.window import NO_DISPLAY, Window, WindowError, key_name, list_monitors

REPO = Path(__file__).resolve().parents[1]
SCREEN_W, SCREEN_H = 1280, 720
CLEAR_U8 = (25, 50, 75)
CLEAR = tuple(v / 255 for v in CLEAR_U8)
RED_U8 = (255, 0, 0)

VERTEX = """
#version 330 core
in vec2 in_pos;
void main() { gl_Position = vec4(in_pos, 0.0, 1.0); }
"""
FRAGMENT = """
#version 330 core
out vec4 color;
void main() { color = vec4(1.0, 0.0, 0.0, 1.0); }
"""


@pytest.fixture
def win(display):
    w = Window(320, 240, title="vj-test", vsync=False)
    try:
        assert w.ctx.error == "GL_NO_ERROR"
        yield w
        assert w.ctx is None or w.ctx.error == "GL_NO_ERROR"
    finally:
        w.close()


def draw_triangle(ctx: moderngl.Context) -> None:
    """Clear to CLEAR and draw a red triangle over the centre, into the screen."""
    ctx.screen.use()
    ctx.clear(*CLEAR)
    prog = ctx.program(vertex_shader=VERTEX, fragment_shader=FRAGMENT)
    vbo = ctx.buffer(np.array([-0.5, -0.5, 0.5, -0.5, 0.0, 0.5], np.float32).tobytes())
    vao = ctx.vertex_array(prog, [(vbo, "2f", "in_pos")])
    vao.render(moderngl.TRIANGLES)
    for obj in (vao, vbo, prog):
        obj.release()


def read_screen(ctx: moderngl.Context, size: tuple[int, int]) -> np.ndarray:
    """(h, w, 3) uint8 of the back buffer, top row first."""
    w, h = size
    data = ctx.screen.read(viewport=(0, 0, w, h), components=3)
    # moderngl selects GL_COLOR_ATTACHMENT0 as the read buffer even for the default framebuffer,
    # which GL refuses (GL_INVALID_OPERATION) while still reading the back buffer: clear that flag.
    assert ctx.error in ("GL_NO_ERROR", "GL_INVALID_OPERATION")
    return np.frombuffer(data, np.uint8).reshape(h, w, 3)[::-1]


def test_window_draws_and_presents(win, display):
    assert win.framebuffer_size == (320, 240)
    draw_triangle(win.ctx)
    back = read_screen(win.ctx, win.framebuffer_size)
    # Exact: the clear colour is k/255 and the triangle 1.0, each 0.5 level from a rounding boundary.
    assert tuple(back[5, 5]) == CLEAR_U8                    # corner: the clear colour
    assert tuple(back[120, 160]) == RED_U8                  # centre: the triangle
    assert 0.11 < (back == RED_U8).all(axis=-1).mean() < 0.14   # the triangle covers 1/8
    win.swap()
    win.poll_events()
    if shutil.which("xwd") is None:
        pytest.skip("xwd is not installed")
    x, y = glfw.get_window_pos(win._window)
    # xwd talks to the server on a connection of its own: the swapped image may reach the screen a moment later
    # on a busy machine. Look again until it shows (or the deadline passes, and the asserts say what was seen).
    deadline = time.monotonic() + 30
    while True:
        shot = xwd_root(display)[y:y + 240, x:x + 320]
        if (tuple(shot[5, 5]), tuple(shot[120, 160])) == (CLEAR_U8, RED_U8) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert tuple(shot[5, 5]) == CLEAR_U8
    assert tuple(shot[120, 160]) == RED_U8


def test_fullscreen_toggle_resizes_and_comes_back(win):
    pos = glfw.get_window_pos(win._window)
    win.toggle_fullscreen()
    win.poll_events()
    assert win.fullscreen
    assert win.framebuffer_size == (SCREEN_W, SCREEN_H)
    assert glfw.get_input_mode(win._window, glfw.CURSOR) == glfw.CURSOR_HIDDEN
    # The screen's viewport follows, so a frame fills the whole projector.
    draw_triangle(win.ctx)
    full = read_screen(win.ctx, win.framebuffer_size)
    assert tuple(full[SCREEN_H // 2, SCREEN_W // 2]) == RED_U8
    assert tuple(full[5, SCREEN_W - 5]) == CLEAR_U8
    assert tuple(full[int(SCREEN_H * 0.74), int(SCREEN_W * 0.26)]) == RED_U8   # near the corners
    win.toggle_fullscreen()
    win.poll_events()
    assert not win.fullscreen
    assert win.framebuffer_size == (320, 240)
    assert glfw.get_window_pos(win._window) == pos
    assert glfw.get_input_mode(win._window, glfw.CURSOR) == glfw.CURSOR_NORMAL
    assert win.ctx.screen.viewport == (0, 0, 320, 240)


def test_window_can_open_fullscreen(display):
    with Window(320, 240, fullscreen_monitor=0, vsync=False) as w:
        assert w.fullscreen
        assert w.framebuffer_size == (SCREEN_W, SCREEN_H)
        w.toggle_fullscreen()
        assert w.framebuffer_size == (320, 240)


def test_list_monitors_sees_the_xvfb_screen(display):
    assert list_monitors() == [dict(name=list_monitors()[0]["name"], index=0, width=SCREEN_W,
                                    height=SCREEN_H, refresh_hz=0)]


def _xtest():
    x11, xtst = ctypes.util.find_library("X11"), ctypes.util.find_library("Xtst")
    if not (x11 and xtst):
        pytest.skip("libX11/libXtst not found: cannot fake key presses")
    x11, xtst = ctypes.CDLL(x11), ctypes.CDLL(xtst)
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x11.XStringToKeysym.restype = ctypes.c_ulong
    x11.XStringToKeysym.argtypes = [ctypes.c_char_p]
    x11.XKeysymToKeycode.restype = ctypes.c_ubyte
    x11.XKeysymToKeycode.argtypes = [ctypes.c_void_p, ctypes.c_ulong]
    x11.XFlush.argtypes = [ctypes.c_void_p]
    x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
    xtst.XTestFakeKeyEvent.argtypes = [ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_ulong]
    return x11, xtst


def press_keys(display: str, keysyms: list[str]) -> None:
    """Real key presses through the XTEST extension, as a keyboard would send them."""
    x11, xtst = _xtest()
    dpy = x11.XOpenDisplay(display.encode())
    assert dpy, f"cannot open {display}"
    try:
        for sym in keysyms:
            code = x11.XKeysymToKeycode(dpy, x11.XStringToKeysym(sym.encode()))
            xtst.XTestFakeKeyEvent(dpy, code, True, 0)
            xtst.XTestFakeKeyEvent(dpy, code, False, 0)
        x11.XFlush(dpy)
    finally:
        x11.XCloseDisplay(dpy)


def test_key_presses_arrive_as_names(win, display):
    glfw.focus_window(win._window)
    win.poll_events()
    press_keys(display, ["f", "Escape", "space", "Left", "F5"])
    names: list[str] = []
    deadline = time.monotonic() + 30       # a busy machine may take a while; the loop ends once all five arrived
    while len(names) < 5 and time.monotonic() < deadline:
        win.poll_events()
        names += win.pop_keys()
        time.sleep(0.01)
    assert names == ["f", "escape", "space", "left", "f5"]


def test_key_names(display):
    with Window(64, 64, visible=False):
        assert key_name(glfw.KEY_PAGE_UP) == "page_up"
        assert key_name(glfw.KEY_KP_ADD) == "kp_add"
        assert key_name(glfw.KEY_S, mods=glfw.MOD_CONTROL | glfw.MOD_SHIFT) == "ctrl+shift+s"
        assert key_name(glfw.KEY_LEFT_SHIFT, mods=glfw.MOD_SHIFT) == "left_shift"


def test_should_close_and_close_twice(display):
    w = Window(64, 64, visible=False)
    assert not w.should_close()
    w.request_close()
    assert w.should_close()
    w.close()
    w.close()


NO_DISPLAY_SCRIPT = """
from vj.output.window import Window, WindowError, list_monitors
assert list_monitors() == []
try:
    Window(64, 64)
except WindowError as exc:
    print(exc)
"""


@pytest.mark.parametrize("env_display", [None, ":977"])   # unset, or naming a server that is not there
def test_without_display_window_error_is_one_line(env_display):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    if env_display:
        env["DISPLAY"] = env_display
    out = subprocess.run([sys.executable, "-c", NO_DISPLAY_SCRIPT], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1
    if env_display is None:
        assert lines[0] == NO_DISPLAY
    else:
        assert lines[0].startswith("no display (") and "vj render" in lines[0]
    assert "Traceback" not in out.stderr


def test_window_error_is_an_exception_class():
    assert issubclass(WindowError, Exception)


def test_a_held_key_repeats_as_its_own_name(win, display):
    glfw.focus_window(win._window)
    win.poll_events()
    x11, xtst = _xtest()
    dpy = x11.XOpenDisplay(display.encode())
    try:
        code = x11.XKeysymToKeycode(dpy, x11.XStringToKeysym(b"Left"))
        xtst.XTestFakeKeyEvent(dpy, code, True, 0)
        x11.XFlush(dpy)
        names: list[str] = []
        deadline = time.monotonic() + 30           # the server's autorepeat starts after its delay (~0.6 s)
        while "left:repeat" not in names and time.monotonic() < deadline:
            win.poll_events()
            names += win.pop_keys()
            time.sleep(0.01)
        xtst.XTestFakeKeyEvent(dpy, code, False, 0)
        x11.XFlush(dpy)
    finally:
        x11.XCloseDisplay(dpy)
    win.poll_events()
    assert names[0] == "left" and "left:repeat" in names and set(names[1:]) == {"left:repeat"}, names
