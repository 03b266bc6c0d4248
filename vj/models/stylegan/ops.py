"""The StyleGAN ops in plain torch: upfirdn2d, bias_act, conv2d_resample, modulated conv, filtered lrelu.

These follow the reference (non-CUDA) paths of NVlabs `torch_utils/ops` step for step, in the same
order and with the same padding arithmetic, so a network built from them gives the same numbers as
the original code's reference path to within float rounding. No custom CUDA build is needed; on a
GPU the same code runs on cuDNN convolutions.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F

SQRT2 = math.sqrt(2.0)


class Activation(NamedTuple):
    func: Callable[[torch.Tensor, float], torch.Tensor]
    def_alpha: float
    def_gain: float


# Name -> function, default alpha and default gain (NVlabs `bias_act.activation_funcs`).
ACTIVATIONS: dict[str, Activation] = {
    "linear": Activation(lambda x, a: x, 0.0, 1.0),
    "relu": Activation(lambda x, a: F.relu(x), 0.0, SQRT2),
    "lrelu": Activation(lambda x, a: F.leaky_relu(x, a), 0.2, SQRT2),
    "tanh": Activation(lambda x, a: torch.tanh(x), 0.0, 1.0),
    "sigmoid": Activation(lambda x, a: torch.sigmoid(x), 0.0, 1.0),
    "elu": Activation(lambda x, a: F.elu(x), 0.0, 1.0),
    "selu": Activation(lambda x, a: F.selu(x), 0.0, 1.0),
    "softplus": Activation(lambda x, a: F.softplus(x), 0.0, 1.0),
    "swish": Activation(lambda x, a: torch.sigmoid(x) * x, 0.0, SQRT2),
}


def bias_act(x: torch.Tensor, b: torch.Tensor | None = None, dim: int = 1, act: str = "linear",
             alpha: float | None = None, gain: float | None = None, clamp: float | None = None) -> torch.Tensor:
    """Add bias `b` along `dim`, apply `act`, scale by `gain`, clamp to +-clamp (each step optional)."""
    if act not in ACTIVATIONS:
        raise ValueError(f"unknown activation {act!r}; known: {', '.join(ACTIVATIONS)}")
    assert clamp is None or clamp >= 0
    spec = ACTIVATIONS[act]
    alpha = float(alpha if alpha is not None else spec.def_alpha)
    gain = float(gain if gain is not None else spec.def_gain)
    if b is not None:
        assert b.ndim == 1 and 0 <= dim < x.ndim and b.shape[0] == x.shape[dim], \
            f"bias of shape {tuple(b.shape)} does not fit dim {dim} of {tuple(x.shape)}"
        x = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    x = spec.func(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-float(clamp), float(clamp))
    return x


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


# ---------------------------------------------------------------------------------------------
# FIR filtering with up/downsampling.

def _parse_scaling(scaling: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(scaling, (int, np.integer)):
        scaling = [int(scaling), int(scaling)]
    sx, sy = (int(s) for s in scaling)
    assert sx >= 1 and sy >= 1
    return sx, sy


def _parse_padding(padding: int | Sequence[int]) -> tuple[int, int, int, int]:
    """int, [x, y] or [x0, x1, y0, y1] -> (x0, x1, y0, y1)."""
    if isinstance(padding, (int, np.integer)):
        padding = [int(padding), int(padding)]
    padding = [int(p) for p in padding]
    if len(padding) == 2:
        px, py = padding
        padding = [px, px, py, py]
    assert len(padding) == 4, f"padding needs 1, 2 or 4 numbers, got {padding}"
    return padding[0], padding[1], padding[2], padding[3]


def _filter_size(f: torch.Tensor | None) -> tuple[int, int]:
    """(width, height) of a filter; a 1-D filter is separable, so both are its length."""
    if f is None:
        return 1, 1
    assert f.ndim in (1, 2)
    return int(f.shape[-1]), int(f.shape[0])


def setup_filter(f, device: torch.device | str = "cpu", normalize: bool = True, flip_filter: bool = False,
                 gain: float = 1, separable: bool | None = None) -> torch.Tensor:
    """A float32 FIR filter for `upfirdn2d`: taps (separable when >= 8 and 1-D) or an outer-product 2-D kernel."""
    if f is None:
        f = 1
    f = torch.as_tensor(f, dtype=torch.float32)
    assert f.ndim in (0, 1, 2) and f.numel() > 0
    if f.ndim == 0:
        f = f[np.newaxis]
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= 8
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    assert f.ndim == (1 if separable else 2)
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f * (gain ** (f.ndim / 2))
    return f.to(device=device)


def upfirdn2d(x: torch.Tensor, f: torch.Tensor | None, up=1, down=1, padding=0, flip_filter: bool = False,
              gain: float = 1) -> torch.Tensor:
    """Upsample by zero insertion, pad (negative = crop), convolve with FIR `f`, keep every `down`-th pixel.

    x: (N, C, H, W); f: (fh, fw) kernel, (taps,) separable, or None (identity). Padding is in
    upsampled pixels: (x0, x1, y0, y1). Like scipy.signal.upfirdn, applied per channel.
    """
    assert x.ndim == 4, f"upfirdn2d needs (N, C, H, W), got {tuple(x.shape)}"
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    assert f.ndim in (1, 2) and f.dtype == torch.float32
    batch, channels, in_h, in_w = x.shape
    upx, upy = _parse_scaling(up)
    downx, downy = _parse_scaling(down)
    px0, px1, py0, py1 = _parse_padding(padding)
    assert in_w * upx + px0 + px1 >= f.shape[-1] and in_h * upy + py0 + py1 >= f.shape[0], \
        "upsampled and padded image is smaller than the filter"

    # Zero insertion: each pixel followed by up-1 zeros along x and y.
    x = x.reshape(batch, channels, in_h, 1, in_w, 1)
    x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
    x = x.reshape(batch, channels, in_h * upy, in_w * upx)

    # Pad, then crop where the padding is negative.
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]

    # conv2d correlates, so flip for a true convolution. A separable filter gets sqrt(gain) per pass.
    f = f * (gain ** (f.ndim / 2))
    f = f.to(x.dtype)
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f[np.newaxis, np.newaxis].repeat([channels, 1] + [1] * f.ndim)           # (C, 1, ...) depthwise
    if f.ndim == 4:
        x = F.conv2d(x, f, groups=channels)
    else:
        x = F.conv2d(x, f.unsqueeze(2), groups=channels)                          # along x
        x = F.conv2d(x, f.unsqueeze(3), groups=channels)                          # along y

    return x[:, :, ::downy, ::downx]


def filter2d(x, f, padding=0, flip_filter=False, gain=1):
    """Filter keeping the size (plus `padding`)."""
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _filter_size(f)
    p = [px0 + fw // 2, px1 + (fw - 1) // 2, py0 + fh // 2, py1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=p, flip_filter=flip_filter, gain=gain)


def upsample2d(x, f, up=2, padding=0, flip_filter=False, gain=1):
    """Upsample by `up` with FIR `f`; the result is `up` times the input size (plus `padding`)."""
    upx, upy = _parse_scaling(up)
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _filter_size(f)
    p = [px0 + (fw + upx - 1) // 2, px1 + (fw - upx) // 2, py0 + (fh + upy - 1) // 2, py1 + (fh - upy) // 2]
    return upfirdn2d(x, f, up=up, padding=p, flip_filter=flip_filter, gain=gain * upx * upy)


def downsample2d(x, f, down=2, padding=0, flip_filter=False, gain=1):
    """Downsample by `down` with FIR `f`; the result is 1/`down` of the input size (plus `padding`)."""
    downx, downy = _parse_scaling(down)
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _filter_size(f)
    p = [px0 + (fw - downx + 1) // 2, px1 + (fw - downx) // 2, py0 + (fh - downy + 1) // 2, py1 + (fh - downy) // 2]
    return upfirdn2d(x, f, down=down, padding=p, flip_filter=flip_filter, gain=gain)


# ---------------------------------------------------------------------------------------------
# Convolution with resampling (NVlabs conv2d_resample).

def _conv2d(x, w, stride=1, padding=0, groups=1, transpose=False, flip_weight=True):
    """conv2d correlates (flip_weight=True); flip_weight=False flips the kernel for a true convolution."""
    kh, kw = w.shape[2], w.shape[3]
    if not flip_weight and (kw > 1 or kh > 1):
        w = w.flip([2, 3])
    if transpose:
        return F.conv_transpose2d(x, w, stride=stride, padding=padding, groups=groups)
    return F.conv2d(x, w, stride=stride, padding=padding, groups=groups)


def conv2d_resample(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor | None = None, up: int = 1, down: int = 1,
                    padding=0, groups: int = 1, flip_weight: bool = True, flip_filter: bool = False) -> torch.Tensor:
    """2-D convolution with optional FIR up/downsampling; padding is applied once, in upsampled pixels.

    x: (N, C_in, H, W); w: (C_out, C_in / groups, kh, kw). The branches are the ones NVlabs takes
    (transposed strided conv for upsampling, strided conv for downsampling); they all compute
    zero-insert -> pad -> FIR -> conv -> FIR -> decimate, only in a cheaper order.
    """
    assert x.ndim == 4 and w.ndim == 4 and w.dtype == x.dtype
    assert f is None or (f.ndim in (1, 2) and f.dtype == torch.float32)
    assert up >= 1 and down >= 1 and groups >= 1
    out_channels, in_per_group, kh, kw = (int(s) for s in w.shape)
    fw, fh = _filter_size(f)
    px0, px1, py0, py1 = _parse_padding(padding)

    # Room for the resampling filter.
    if up > 1:
        px0 += (fw + up - 1) // 2
        px1 += (fw - up) // 2
        py0 += (fh + up - 1) // 2
        py1 += (fh - up) // 2
    if down > 1:
        px0 += (fw - down + 1) // 2
        px1 += (fw - down) // 2
        py0 += (fh - down + 1) // 2
        py1 += (fh - down) // 2

    # 1x1 conv with downsampling only: downsample first, then convolve.
    if kw == 1 and kh == 1 and (down > 1 and up == 1):
        x = upfirdn2d(x, f, down=down, padding=[px0, px1, py0, py1], flip_filter=flip_filter)
        return _conv2d(x, w, groups=groups, flip_weight=flip_weight)

    # 1x1 conv with upsampling only: convolve first, then upsample.
    if kw == 1 and kh == 1 and (up > 1 and down == 1):
        x = _conv2d(x, w, groups=groups, flip_weight=flip_weight)
        return upfirdn2d(x, f, up=up, padding=[px0, px1, py0, py1], gain=up ** 2, flip_filter=flip_filter)

    # Downsampling only: filter, then strided conv.
    if down > 1 and up == 1:
        x = upfirdn2d(x, f, padding=[px0, px1, py0, py1], flip_filter=flip_filter)
        return _conv2d(x, w, stride=down, groups=groups, flip_weight=flip_weight)

    # Upsampling (optionally with downsampling): transposed strided conv, then filter.
    if up > 1:
        if groups == 1:
            w = w.transpose(0, 1)
        else:
            w = w.reshape(groups, out_channels // groups, in_per_group, kh, kw)
            w = w.transpose(1, 2)
            w = w.reshape(groups * in_per_group, out_channels // groups, kh, kw)
        px0 -= kw - 1
        px1 -= kw - up
        py0 -= kh - 1
        py1 -= kh - up
        pxt = max(min(-px0, -px1), 0)
        pyt = max(min(-py0, -py1), 0)
        x = _conv2d(x, w, stride=up, padding=[pyt, pxt], groups=groups, transpose=True, flip_weight=not flip_weight)
        x = upfirdn2d(x, f, padding=[px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt], gain=up ** 2,
                      flip_filter=flip_filter)
        if down > 1:
            x = upfirdn2d(x, f, down=down, flip_filter=flip_filter)
        return x

    # No resampling, symmetric padding: plain conv2d.
    if up == 1 and down == 1:
        if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
            return _conv2d(x, w, padding=[py0, px0], groups=groups, flip_weight=flip_weight)

    # General case.
    x = upfirdn2d(x, f if up > 1 else None, up=up, padding=[px0, px1, py0, py1], gain=up ** 2,
                  flip_filter=flip_filter)
    x = _conv2d(x, w, groups=groups, flip_weight=flip_weight)
    if down > 1:
        x = upfirdn2d(x, f, down=down, flip_filter=flip_filter)
    return x


# ---------------------------------------------------------------------------------------------
# Modulated convolution.

def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, noise: torch.Tensor | None = None,
                     up: int = 1, down: int = 1, padding: int = 0, resample_filter: torch.Tensor | None = None,
                     demodulate: bool = True, flip_weight: bool = True, fused_modconv: bool = True) -> torch.Tensor:
    """StyleGAN2 modulated convolution: scale input channels by `styles`, convolve, demodulate, add noise.

    x: (N, I, H, W); weight: (O, I, kh, kw); styles: (N, I); noise broadcastable to the output.
    fused: one grouped convolution with per-sample weights; not fused: scale the activations
    before and after a shared convolution (the same result, cheaper for big batches).
    """
    batch = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape
    assert x.ndim == 4 and x.shape[1] == in_channels, f"x {tuple(x.shape)} does not fit weight {tuple(weight.shape)}"
    assert styles.shape == (batch, in_channels), f"styles {tuple(styles.shape)}, expected ({batch}, {in_channels})"

    # Pre-normalise so fp16 cannot overflow (a no-op in exact arithmetic: demodulation cancels it).
    if x.dtype == torch.float16 and demodulate:
        weight = weight * (1 / np.sqrt(in_channels * kh * kw)
                           / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))          # max_Ikk
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)                   # max_I

    w = None
    dcoefs = None
    if demodulate or fused_modconv:
        w = weight.unsqueeze(0) * styles.reshape(batch, 1, -1, 1, 1)                        # (N, O, I, kh, kw)
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()                             # (N, O)
    if demodulate and fused_modconv:
        w = w * dcoefs.reshape(batch, -1, 1, 1, 1)

    if not fused_modconv:
        x = x * styles.to(x.dtype).reshape(batch, -1, 1, 1)
        x = conv2d_resample(x, weight.to(x.dtype), f=resample_filter, up=up, down=down, padding=padding,
                            flip_weight=flip_weight)
        if demodulate and noise is not None:
            x = torch.addcmul(noise.to(x.dtype), x, dcoefs.to(x.dtype).reshape(batch, -1, 1, 1))
        elif demodulate:
            x = x * dcoefs.to(x.dtype).reshape(batch, -1, 1, 1)
        elif noise is not None:
            x = x + noise.to(x.dtype)
        return x

    x = x.reshape(1, -1, *x.shape[2:])                                                        # (1, N*I, H, W)
    w = w.reshape(-1, in_channels, kh, kw)                                                    # (N*O, I, kh, kw)
    x = conv2d_resample(x, w.to(x.dtype), f=resample_filter, up=up, down=down, padding=padding, groups=batch,
                        flip_weight=flip_weight)
    x = x.reshape(batch, -1, *x.shape[2:])                                                    # (N, O, H', W')
    if noise is not None:
        x = x + noise.to(x.dtype)                       # keep fp16 blocks in fp16, as NVlabs' in-place add_ does
    return x


def modulated_conv2d_sg3(x: torch.Tensor, w: torch.Tensor, s: torch.Tensor, demodulate: bool = True,
                         padding=0, input_gain: torch.Tensor | None = None) -> torch.Tensor:
    """StyleGAN3 modulated convolution (always fused), with weight/style pre-normalisation and input gain.

    x: (N, I, H, W); w: (O, I, kh, kw); s: (N, I); input_gain: (), (I,) or (N, I).
    """
    batch = int(x.shape[0])
    out_channels, in_channels, kh, kw = w.shape
    assert x.ndim == 4 and x.shape[1] == in_channels and s.shape == (batch, in_channels)

    if demodulate:
        w = w * w.square().mean([1, 2, 3], keepdim=True).rsqrt()
        s = s * s.square().mean().rsqrt()

    w = w.unsqueeze(0) * s.unsqueeze(1).unsqueeze(3).unsqueeze(4)                             # (N, O, I, kh, kw)
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()                               # (N, O)
        w = w * dcoefs.unsqueeze(2).unsqueeze(3).unsqueeze(4)
    if input_gain is not None:
        input_gain = input_gain.expand(batch, in_channels)                                   # (N, I)
        w = w * input_gain.unsqueeze(1).unsqueeze(3).unsqueeze(4)

    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, in_channels, kh, kw)
    pad = _parse_padding(padding)
    x = F.conv2d(x, w.to(x.dtype), padding=[pad[2], pad[0]], groups=batch)
    return x.reshape(batch, -1, *x.shape[2:])


# ---------------------------------------------------------------------------------------------
# Filtered leaky ReLU (StyleGAN3).

def filtered_lrelu(x: torch.Tensor, fu: torch.Tensor | None = None, fd: torch.Tensor | None = None,
                   b: torch.Tensor | None = None, up: int = 1, down: int = 1, padding=0, gain: float = SQRT2,
                   slope: float = 0.2, clamp: float | None = None, flip_filter: bool = False) -> torch.Tensor:
    """Bias, upsample with FIR `fu`, leaky ReLU * gain, clamp, FIR `fd`, downsample (NVlabs reference path).

    x: (N, C, H, W) -> (N, C, H', W') with
    W' = (W * up + px0 + px1 - (len(fu) - 1) - (len(fd) - 1) + (down - 1)) // down.
    """
    assert x.ndim == 4
    fu_w, fu_h = _filter_size(fu)
    fd_w, fd_h = _filter_size(fd)
    if b is not None:
        assert b.dtype == x.dtype and b.shape == (x.shape[1],)
    assert up >= 1 and down >= 1 and gain > 0 and slope >= 0
    assert clamp is None or clamp >= 0
    px0, px1, py0, py1 = _parse_padding(padding)
    batch, channels, in_h, in_w = x.shape
    out_w = (in_w * up + (px0 + px1) - (fu_w - 1) - (fd_w - 1) + (down - 1)) // down
    out_h = (in_h * up + (py0 + py1) - (fu_h - 1) - (fd_h - 1) + (down - 1)) // down

    x = bias_act(x, b)
    x = upfirdn2d(x, fu, up=up, padding=[px0, px1, py0, py1], gain=up ** 2, flip_filter=flip_filter)
    x = bias_act(x, act="lrelu", alpha=slope, gain=gain, clamp=clamp)
    x = upfirdn2d(x, fd, down=down, flip_filter=flip_filter)
    assert x.shape == (batch, channels, out_h, out_w), f"filtered_lrelu: {tuple(x.shape)}"
    return x


# ---------------------------------------------------------------------------------------------
# Filter design (SciPy's firwin with a Kaiser window, and the jinc radial filter), numpy only.

def kaiser_atten(numtaps: int, width: float) -> float:
    """Attenuation in dB of a Kaiser FIR filter; width as a fraction of Nyquist."""
    return 2.285 * (numtaps - 1) * np.pi * width + 7.95


def kaiser_beta(atten_db: float) -> float:
    if atten_db > 50:
        return 0.1102 * (atten_db - 8.7)
    if atten_db > 21:
        return 0.5842 * (atten_db - 21) ** 0.4 + 0.07886 * (atten_db - 21)
    return 0.0


def firwin_lowpass(numtaps: int, cutoff: float, width: float, fs: float) -> np.ndarray:
    """(numtaps,) float64 low-pass taps summing to 1, as scipy.signal.firwin(numtaps, cutoff, width=width, fs=fs)."""
    nyq = 0.5 * fs
    c = cutoff / nyq
    beta = kaiser_beta(kaiser_atten(numtaps, width / nyq))
    m = np.arange(numtaps) - 0.5 * (numtaps - 1)
    h = c * np.sinc(c * m) * np.kaiser(numtaps, beta)
    return h / h.sum()
