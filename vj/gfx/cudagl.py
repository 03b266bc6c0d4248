"""CUDA only: copy a frame that is still on the GPU into a GL texture through CUDA-GL interop.

The texture is registered with CUDA once; each frame maps it, copies the (H, W, 4) uint8 CUDA tensor into
its array device to device, and unmaps it, which orders the copy before GL's next use of the texture. The
frame never passes through host memory. This needs the GL context on the same NVIDIA GPU as CUDA (EGL on
an NVIDIA driver, or a window on it); elsewhere registration fails with CudaGLError and the engine falls
back to the pinned-buffer path (vj.models.worker.FRAME_PATHS).

The CUDA runtime is called through ctypes, the same libcudart that torch loaded, so nothing needs building.
Nothing here runs on a machine without CUDA; it is imported only when a CUDA frame arrives.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

import moderngl

GL_TEXTURE_2D = 0x0DE1
REGISTER_WRITE_DISCARD = 2            # cudaGraphicsRegisterFlagsWriteDiscard: CUDA overwrites it all
MEMCPY_DEVICE_TO_DEVICE = 3           # cudaMemcpyDeviceToDevice


class CudaGLError(RuntimeError):
    """A CUDA-GL interop call failed; the message names the call and CUDA's reason."""


@functools.lru_cache(maxsize=1)
def cudart() -> ctypes.CDLL:
    """The CUDA runtime library torch uses (found in this process's mappings), with the calls typed."""
    import torch
    torch.cuda.init()
    path = None
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                if "libcudart.so" in line:
                    path = line.split()[-1]
                    break
    except OSError:
        pass
    names = [path] if path else []
    names += [n for n in (ctypes.util.find_library("cudart"), "libcudart.so.13", "libcudart.so.12",
                          "libcudart.so") if n]
    lib = None
    for name in names:
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError:
            continue
    if lib is None:
        raise CudaGLError("CUDA-GL interop: the CUDA runtime library (libcudart) was not found")
    vp, u, sz = ctypes.c_void_p, ctypes.c_uint, ctypes.c_size_t
    for name, args in {
        "cudaGraphicsGLRegisterImage": (ctypes.POINTER(vp), u, u, u),
        "cudaGraphicsMapResources": (ctypes.c_int, ctypes.POINTER(vp), vp),
        "cudaGraphicsUnmapResources": (ctypes.c_int, ctypes.POINTER(vp), vp),
        "cudaGraphicsSubResourceGetMappedArray": (ctypes.POINTER(vp), vp, u, u),
        "cudaGraphicsUnregisterResource": (vp,),
        "cudaMemcpy2DToArrayAsync": (vp, sz, sz, vp, sz, sz, sz, ctypes.c_int, vp),
    }.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = args, ctypes.c_int
    lib.cudaGetErrorString.argtypes, lib.cudaGetErrorString.restype = (ctypes.c_int,), ctypes.c_char_p
    return lib


def _check(err: int, call: str) -> None:
    if err != 0:
        reason = cudart().cudaGetErrorString(err)
        raise CudaGLError(f"CUDA-GL interop: {call} failed: {reason.decode() if reason else f'error {err}'}")


class CudaGLTexture:
    """An RGBA8 moderngl texture registered with CUDA. CUDA only; call from the thread that owns the GL context."""

    def __init__(self, texture: moderngl.Texture):
        if texture.components != 4 or texture.dtype != "f1":
            raise ValueError(f"interop needs an RGBA8 texture, got {texture.components} x {texture.dtype}")
        self.texture = texture
        self._resource = ctypes.c_void_p()
        _check(cudart().cudaGraphicsGLRegisterImage(ctypes.byref(self._resource), texture.glo, GL_TEXTURE_2D,
                                                   REGISTER_WRITE_DISCARD), "cudaGraphicsGLRegisterImage")

    def write(self, rgba) -> None:
        """Copy a contiguous (H, W, 4) uint8 CUDA tensor, complete on the GPU, into the texture."""
        import torch
        w, h = self.texture.size
        assert rgba.is_cuda and rgba.dtype == torch.uint8 and tuple(rgba.shape) == (h, w, 4), \
            f"expected a ({h}, {w}, 4) uint8 CUDA tensor, got {tuple(rgba.shape)} {rgba.dtype} on {rgba.device}"
        rgba = rgba.contiguous()
        lib = cudart()
        stream = ctypes.c_void_p(torch.cuda.current_stream(rgba.device).cuda_stream)
        _check(lib.cudaGraphicsMapResources(1, ctypes.byref(self._resource), stream), "cudaGraphicsMapResources")
        try:
            array = ctypes.c_void_p()
            _check(lib.cudaGraphicsSubResourceGetMappedArray(ctypes.byref(array), self._resource, 0, 0),
                   "cudaGraphicsSubResourceGetMappedArray")
            _check(lib.cudaMemcpy2DToArrayAsync(array, 0, 0, ctypes.c_void_p(rgba.data_ptr()), w * 4, w * 4, h,
                                                MEMCPY_DEVICE_TO_DEVICE, stream), "cudaMemcpy2DToArrayAsync")
        finally:
            # Unmapping orders the copy before GL's next use of the texture.
            _check(lib.cudaGraphicsUnmapResources(1, ctypes.byref(self._resource), stream),
                   "cudaGraphicsUnmapResources")
        # The tensor may be freed as soon as this returns: wait for the copy (microseconds at these sizes).
        torch.cuda.current_stream(rgba.device).synchronize()

    def release(self) -> None:
        if self._resource:
            cudart().cudaGraphicsUnregisterResource(self._resource)
            self._resource = ctypes.c_void_p()
