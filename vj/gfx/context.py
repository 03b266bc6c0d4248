"""Headless GL context creation (Mesa EGL works with no display) and GL error checks."""

from __future__ import annotations

import ctypes
import ctypes.util

import moderngl

MIN_GL_VERSION = 330


class GLUnavailable(RuntimeError):
    """No usable OpenGL 3.3 context could be created; the message is one line saying why."""


def create_headless_context(require: int = MIN_GL_VERSION) -> moderngl.Context:
    """A standalone GL context through EGL (no window, no display). Raises GLUnavailable.

    The new context becomes the current one. moderngl does not switch contexts per call, so a process
    holding two must `with ctx:` around the work on each; better, keep one per process.
    """
    try:
        ctx = moderngl.create_standalone_context(require=require, backend="egl")
    except Exception as exc:  # moderngl/glcontext raise plain Exception subclasses of many kinds
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise GLUnavailable(
            f"no headless OpenGL {require // 100}.{require % 100 // 10} context through EGL: {reason} "
            "(install Mesa: libegl-mesa0 libgl1-mesa-dri)"
        ) from None
    if ctx.version_code < require:
        version = ctx.info.get("GL_VERSION", "?")
        ctx.release()
        raise GLUnavailable(f"OpenGL {version} is older than the {require // 100}.{require % 100 // 10} needed")
    return ctx


def release_context(ctx: moderngl.Context) -> None:
    """Release a headless context and leave no EGL context current on this thread.

    glcontext's EGL release destroys the context but leaves it current; a glfw (GLX) window made later
    in the same process then dies in X_GLXMakeCurrent with BadAccess, taking the process with it.
    """
    ctx.release()
    unbind_egl()


def unbind_egl() -> None:
    """eglMakeCurrent(display, NO_SURFACE, NO_SURFACE, NO_CONTEXT) for whatever EGL display is current."""
    name = ctypes.util.find_library("EGL") or "libEGL.so.1"
    try:
        egl = ctypes.CDLL(name)
    except OSError:
        return
    egl.eglGetCurrentDisplay.restype = ctypes.c_void_p
    egl.eglMakeCurrent.argtypes = [ctypes.c_void_p] * 4
    egl.eglMakeCurrent.restype = ctypes.c_uint
    display = egl.eglGetCurrentDisplay()
    if display:
        egl.eglMakeCurrent(display, None, None, None)


def gl_errors(ctx: moderngl.Context) -> list[str]:
    """Drain and return the pending GL error flags (empty when all is well)."""
    errors = []
    for _ in range(16):  # glGetError returns one flag per call; a broken driver could loop forever
        err = ctx.error
        if err == "GL_NO_ERROR":
            break
        errors.append(err)
    return errors


def bind_default_framebuffer(ctx: moderngl.Context) -> None:
    """Bind framebuffer 0 before deleting framebuffers.

    moderngl re-binds its remembered framebuffer after creating a new one; if that one was deleted
    the re-bind fails with GL_INVALID_OPERATION.
    """
    ctx.detect_framebuffer(0).use()


SOFTWARE_RENDERERS = ("llvmpipe", "softpipe", "swrast", "swr", "lavapipe")


def is_software(ctx: moderngl.Context) -> bool:
    """True on a CPU rasteriser (Mesa llvmpipe and friends), where every pixel costs CPU time."""
    renderer = str(ctx.info.get("GL_RENDERER", "")).lower()
    return any(name in renderer for name in SOFTWARE_RENDERERS)


def auto_render_scale(ctx: moderngl.Context) -> float:
    """The chain's render scale when the user gives none: 0.4 on a software rasteriser, else 1.

    On llvmpipe every pixel of every pass costs CPU time. The default generator renders at 256x144,
    so a 512x288 chain for a 1280x720 output still has twice the model's resolution; side by side
    at 0.5 and 0.35 the default scene looked the same.
    """
    return 0.4 if is_software(ctx) else 1.0


def resolve_frame_path(ctx: moderngl.Context, wanted: str) -> str:
    """The frame path (vj.models.worker.FRAME_PATHS) for `wanted`: "auto" is interop where GL runs on an NVIDIA
    driver (where CUDA can write GL textures), else pinned. Either matters only for frames rendered on CUDA."""
    if wanted != "auto":
        return wanted
    return "interop" if "nvidia" in str(ctx.info.get("GL_VENDOR", "")).lower() else "pinned"


def gil_free_finish():
    """glFinish called through ctypes, which lets go of Python's GIL while GL works; None where there is none.

    Why: moderngl keeps the GIL inside every call, also while it waits for the rasteriser, and every other
    thread (the model worker, the encoder's Python side, audio) then waits too. On a software rasteriser
    each pass waits for the one before anyway; finishing it here, GIL-free, lets the others run meanwhile
    (offline 1280x720: 0-10 %, mean 7 %, more frames per second in seven paired runs; live, a JACK input's
    callback overflowed 10-25 times less often). On a GPU a finish per pass would stall the pipeline, so
    the engine asks for this on software rasterisers only. The loader is GLVND's (libOpenGL), which serves
    whichever context is current.
    """
    for name in ("libOpenGL.so.0", "libGL.so.1"):
        try:
            fn = ctypes.CDLL(name).glFinish
        except (OSError, AttributeError):
            continue
        fn.argtypes, fn.restype = [], None
        return fn
    return None


def describe(ctx: moderngl.Context) -> str:
    """One line naming the GL version and renderer, for logs and `vj devices`."""
    info = ctx.info
    return f"{info.get('GL_VERSION', '?')} on {info.get('GL_RENDERER', '?')}"
