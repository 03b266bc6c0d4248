"""StyleGAN3 (alias-free, configs T and R) generator with NVlabs' `networks_stylegan3` module and tensor names.

Config T is the default; config R is `conv_kernel=1, use_radial_filters=True` (and in NVlabs'
training setup channel_base/channel_max doubled). The filters are buffers, so a loaded checkpoint
brings its own; they are only designed here for a freshly initialised network.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np
import torch

from vj.models.stylegan import sg2
from vj.models.stylegan.ops import (filtered_lrelu, firwin_lowpass, kaiser_atten, kaiser_beta,
                                    modulated_conv2d_sg3)


class FullyConnectedLayer(sg2.FullyConnectedLayer):
    """Linear layer with lr multiplier; bias_init may be a list (the SynthesisInput affine starts at [1, 0, 0, 0]).

    The forward pass is StyleGAN2's; only the initialisation differs (weight_init, bias stored / lr_multiplier).
    """

    def __init__(self, in_features: int, out_features: int, activation: str = "linear", bias: bool = True,
                 lr_multiplier: float = 1.0, weight_init: float = 1.0, bias_init: Any = 0.0):
        torch.nn.Module.__init__(self)           # not sg2's __init__: its random draws would differ
        self.in_features, self.out_features, self.activation = in_features, out_features, activation
        self.weight = torch.nn.Parameter(torch.randn([out_features, in_features]) * (weight_init / lr_multiplier))
        b0 = np.broadcast_to(np.asarray(bias_init, dtype=np.float32), [out_features])
        self.bias = torch.nn.Parameter(torch.from_numpy(b0 / lr_multiplier)) if bias else None
        self.weight_gain = float(lr_multiplier / np.sqrt(in_features))      # a Python float: torch.compile-friendly
        self.bias_gain = lr_multiplier


class MappingNetwork(torch.nn.Module):
    """z (and c) -> ws (N, num_ws, w_dim): 2 lrelu layers by default; truncation towards w_avg."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: int, num_layers: int = 2,
                 lr_multiplier: float = 0.01, w_avg_beta: float = 0.998):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.num_layers, self.w_avg_beta = num_layers, w_avg_beta
        self.embed = FullyConnectedLayer(c_dim, w_dim) if c_dim > 0 else None
        features = [z_dim + (w_dim if c_dim > 0 else 0)] + [w_dim] * num_layers
        for idx in range(num_layers):
            setattr(self, f"fc{idx}", FullyConnectedLayer(features[idx], features[idx + 1], activation="lrelu",
                                                          lr_multiplier=lr_multiplier))
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z: torch.Tensor, c: torch.Tensor | None, truncation_psi: float = 1,
                truncation_cutoff: int | None = None, update_emas: bool = False) -> torch.Tensor:
        assert z.ndim == 2 and z.shape[1] == self.z_dim, f"z must be (N, {self.z_dim}), got {tuple(z.shape)}"
        if truncation_cutoff is None:
            truncation_cutoff = self.num_ws
        x = z.to(torch.float32)
        x = x * (x.square().mean(1, keepdim=True) + 1e-8).rsqrt()
        if self.c_dim > 0:
            assert c is not None and c.ndim == 2 and c.shape[1] == self.c_dim, f"c must be (N, {self.c_dim})"
            y = self.embed(c.to(torch.float32))
            y = y * (y.square().mean(1, keepdim=True) + 1e-8).rsqrt()
            x = torch.cat([x, y], dim=1)
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        if update_emas:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            x[:, :truncation_cutoff] = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
        return x


class SynthesisInput(torch.nn.Module):
    """Fourier features on a grid, rotated and translated by an affine of w, then a learned channel mix."""

    def __init__(self, w_dim: int, channels: int, size, sampling_rate: float, bandwidth: float):
        super().__init__()
        self.w_dim, self.channels = w_dim, channels
        # Python ints and floats, not numpy: torch.compile guards on numpy attributes read in forward and failed.
        self.size = tuple(int(v) for v in np.broadcast_to(np.asarray(size), [2]))           # (width, height)
        self.sampling_rate, self.bandwidth = float(sampling_rate), float(bandwidth)
        # Random frequencies from a uniform 2-D disc, random phases.
        freqs = torch.randn([channels, 2])
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
        freqs /= radii * radii.square().exp().pow(0.25)
        freqs *= bandwidth
        phases = torch.rand([channels]) - 0.5
        self.weight = torch.nn.Parameter(torch.randn([channels, channels]))
        self.affine = FullyConnectedLayer(w_dim, 4, weight_init=0, bias_init=[1, 0, 0, 0])
        self.register_buffer("transform", torch.eye(3, 3))      # user inverse transform of the image
        self.register_buffer("freqs", freqs)                    # (channels, 2)
        self.register_buffer("phases", phases)                  # (channels,)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        """w: (N, w_dim) -> (N, channels, size_h, size_w)."""
        transforms = self.transform.unsqueeze(0)                                          # (1, 3, 3)
        freqs = self.freqs.unsqueeze(0)                                                   # (1, C, 2)
        phases = self.phases.unsqueeze(0)                                                 # (1, C)

        t = self.affine(w)                                                                # (N, 4): r_c, r_s, t_x, t_y
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        m_r = torch.eye(3, device=w.device).unsqueeze(0).repeat([w.shape[0], 1, 1])       # inverse rotation
        m_r[:, 0, 0] = t[:, 0]
        m_r[:, 0, 1] = -t[:, 1]
        m_r[:, 1, 0] = t[:, 1]
        m_r[:, 1, 1] = t[:, 0]
        m_t = torch.eye(3, device=w.device).unsqueeze(0).repeat([w.shape[0], 1, 1])       # inverse translation
        m_t[:, 0, 2] = -t[:, 2]
        m_t[:, 1, 2] = -t[:, 3]
        transforms = m_r @ m_t @ transforms                                               # (N, 3, 3)

        phases = phases + (freqs @ transforms[:, :2, 2:]).squeeze(2)
        freqs = freqs @ transforms[:, :2, :2]
        # Fade out frequencies the user transform pushed out of band.
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth)
                      / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)

        theta = torch.eye(2, 3, device=w.device)
        theta[0, 0] = 0.5 * self.size[0] / self.sampling_rate
        theta[1, 1] = 0.5 * self.size[1] / self.sampling_rate
        grids = torch.nn.functional.affine_grid(theta.unsqueeze(0), [1, 1, int(self.size[1]), int(self.size[0])],
                                                align_corners=False)                    # (1, H, W, 2)

        x = (grids.unsqueeze(3) @ freqs.permute(0, 2, 1).unsqueeze(1).unsqueeze(2)).squeeze(3)  # (N, H, W, C)
        x = x + phases.unsqueeze(1).unsqueeze(2)
        x = torch.sin(x * (np.pi * 2))
        x = x * amplitudes.unsqueeze(1).unsqueeze(2)
        x = x @ (self.weight / float(np.sqrt(self.channels))).t()
        x = x.permute(0, 3, 1, 2)                                                         # (N, C, H, W)
        assert x.shape[1:] == (self.channels, int(self.size[1]), int(self.size[0]))
        return x


class SynthesisLayer(torch.nn.Module):
    """Modulated conv, then bias + filtered leaky ReLU (up, lrelu, low-pass, down); the last one is ToRGB."""

    def __init__(self, w_dim: int, is_torgb: bool, is_critically_sampled: bool, use_fp16: bool,
                 in_channels: int, out_channels: int, in_size, out_size, in_sampling_rate: float,
                 out_sampling_rate: float, in_cutoff: float, out_cutoff: float, in_half_width: float,
                 out_half_width: float, conv_kernel: int = 3, filter_size: int = 6, lrelu_upsampling: int = 2,
                 use_radial_filters: bool = False, conv_clamp: float | None = 256, magnitude_ema_beta: float = 0.999):
        super().__init__()
        self.w_dim, self.is_torgb, self.is_critically_sampled = w_dim, bool(is_torgb), bool(is_critically_sampled)
        self.use_fp16, self.in_channels, self.out_channels = bool(use_fp16), int(in_channels), int(out_channels)
        in_size, out_size = np.broadcast_to(np.asarray(in_size), [2]), np.broadcast_to(np.asarray(out_size), [2])
        self.in_size = tuple(int(v) for v in in_size)           # (width, height), plain ints (see SynthesisInput)
        self.out_size = tuple(int(v) for v in out_size)
        in_sampling_rate, out_sampling_rate = float(in_sampling_rate), float(out_sampling_rate)
        self.in_sampling_rate, self.out_sampling_rate = in_sampling_rate, out_sampling_rate
        self.tmp_sampling_rate = max(in_sampling_rate, out_sampling_rate) * (1 if is_torgb else lrelu_upsampling)
        self.in_cutoff, self.out_cutoff = float(in_cutoff), float(out_cutoff)
        self.in_half_width, self.out_half_width = float(in_half_width), float(out_half_width)
        self.conv_kernel = 1 if is_torgb else conv_kernel
        self.conv_clamp, self.magnitude_ema_beta = conv_clamp, magnitude_ema_beta

        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = torch.nn.Parameter(torch.randn([out_channels, in_channels, self.conv_kernel, self.conv_kernel]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))
        self.register_buffer("magnitude_ema", torch.ones([]))

        self.up_factor = int(np.rint(self.tmp_sampling_rate / in_sampling_rate))
        assert in_sampling_rate * self.up_factor == self.tmp_sampling_rate
        self.up_taps = filter_size * self.up_factor if self.up_factor > 1 and not is_torgb else 1
        self.register_buffer("up_filter", self.design_lowpass_filter(
            numtaps=self.up_taps, cutoff=in_cutoff, width=in_half_width * 2, fs=self.tmp_sampling_rate))

        self.down_factor = int(np.rint(self.tmp_sampling_rate / out_sampling_rate))
        assert out_sampling_rate * self.down_factor == self.tmp_sampling_rate
        self.down_taps = filter_size * self.down_factor if self.down_factor > 1 and not is_torgb else 1
        self.down_radial = use_radial_filters and not is_critically_sampled
        self.register_buffer("down_filter", self.design_lowpass_filter(
            numtaps=self.down_taps, cutoff=out_cutoff, width=out_half_width * 2, fs=self.tmp_sampling_rate,
            radial=self.down_radial))

        # Padding so the output lands on the symmetric sample grid (paper, appendix C.3).
        pad_total = (out_size - 1) * self.down_factor + 1
        pad_total -= (in_size + self.conv_kernel - 1) * self.up_factor
        pad_total += self.up_taps + self.down_taps - 2
        pad_lo = (pad_total + self.up_factor) // 2
        pad_hi = pad_total - pad_lo
        self.padding = [int(pad_lo[0]), int(pad_hi[0]), int(pad_lo[1]), int(pad_hi[1])]

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random", force_fp32: bool = False,
                update_emas: bool = False, **_: Any) -> torch.Tensor:
        """x: (N, I, in_h, in_w), w: (N, w_dim) -> (N, O, out_h, out_w). StyleGAN3 has no noise inputs."""
        assert noise_mode in ("random", "const", "none")
        assert x.shape[1:] == (self.in_channels, int(self.in_size[1]), int(self.in_size[0])), \
            f"x {tuple(x.shape)}, expected (N, {self.in_channels}, {int(self.in_size[1])}, {int(self.in_size[0])})"
        assert w.shape == (x.shape[0], self.w_dim)
        if update_emas:
            magnitude_cur = x.detach().to(torch.float32).square().mean()
            self.magnitude_ema.copy_(magnitude_cur.lerp(self.magnitude_ema, self.magnitude_ema_beta))
        input_gain = self.magnitude_ema.rsqrt()

        styles = self.affine(w)
        if self.is_torgb:
            styles = styles * float(1 / np.sqrt(self.in_channels * self.conv_kernel ** 2))

        dtype = torch.float16 if (self.use_fp16 and not force_fp32 and x.device.type == "cuda") else torch.float32
        x = modulated_conv2d_sg3(x.to(dtype), self.weight, styles, padding=self.conv_kernel - 1,
                                 demodulate=not self.is_torgb, input_gain=input_gain)
        gain = 1 if self.is_torgb else float(np.sqrt(2))
        slope = 1 if self.is_torgb else 0.2
        x = filtered_lrelu(x, fu=self.up_filter, fd=self.down_filter, b=self.bias.to(x.dtype), up=self.up_factor,
                           down=self.down_factor, padding=self.padding, gain=gain, slope=slope, clamp=self.conv_clamp)
        assert x.shape[1:] == (self.out_channels, int(self.out_size[1]), int(self.out_size[0]))
        return x

    @staticmethod
    def design_lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float,
                              radial: bool = False) -> torch.Tensor | None:
        """None for 1 tap; separable Kaiser low-pass taps; or a 2-D radially symmetric jinc kernel."""
        assert numtaps >= 1
        if numtaps == 1:
            return None
        if not radial:
            return torch.as_tensor(firwin_lowpass(numtaps, cutoff, width, fs), dtype=torch.float32)
        x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
        r = np.hypot(*np.meshgrid(x, x))
        arg = torch.as_tensor(2 * cutoff * (np.pi * r), dtype=torch.float64, device="cpu")
        f = torch.special.bessel_j1(arg).numpy() / (np.pi * r)        # jinc; even numtaps, so r > 0
        beta = kaiser_beta(kaiser_atten(numtaps, width / (fs / 2)))
        win = np.kaiser(numtaps, beta)
        f *= np.outer(win, win)
        f /= np.sum(f)
        return torch.as_tensor(f, dtype=torch.float32)


class SynthesisNetwork(torch.nn.Module):
    """ws -> image through SynthesisInput and num_layers + 1 SynthesisLayers named L{idx}_{size}_{channels}."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int = 32768,
                 channel_max: int = 512, num_layers: int = 14, num_critical: int = 2, first_cutoff: float = 2,
                 first_stopband: float = 2 ** 2.1, last_stopband_rel: float = 2 ** 0.3, margin_size: int = 10,
                 output_scale: float = 0.25, num_fp16_res: int = 4, **layer_kwargs):
        super().__init__()
        self.w_dim, self.num_ws = w_dim, num_layers + 2
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.num_layers, self.num_critical = num_layers, num_critical
        self.margin_size, self.output_scale, self.num_fp16_res = margin_size, output_scale, num_fp16_res

        # Geometric progression of cutoffs and minimum stopbands from the first layer to the last.
        last_cutoff = img_resolution / 2
        last_stopband = last_cutoff * last_stopband_rel
        exponents = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
        cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** exponents
        stopbands = first_stopband * (last_stopband / first_stopband) ** exponents
        sampling_rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, img_resolution))))
        half_widths = np.maximum(stopbands, sampling_rates / 2) - cutoffs
        sizes = sampling_rates + margin_size * 2
        sizes[-2:] = img_resolution
        channels = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))
        channels[-1] = img_channels

        self.input = SynthesisInput(w_dim=w_dim, channels=int(channels[0]), size=int(sizes[0]),
                                    sampling_rate=sampling_rates[0], bandwidth=cutoffs[0])
        self.layer_names = []
        for idx in range(num_layers + 1):
            prev = max(idx - 1, 0)
            layer = SynthesisLayer(
                w_dim=w_dim, is_torgb=(idx == num_layers), is_critically_sampled=(idx >= num_layers - num_critical),
                use_fp16=(sampling_rates[idx] * (2 ** num_fp16_res) > img_resolution),
                in_channels=int(channels[prev]), out_channels=int(channels[idx]),
                in_size=int(sizes[prev]), out_size=int(sizes[idx]),
                in_sampling_rate=int(sampling_rates[prev]), out_sampling_rate=int(sampling_rates[idx]),
                in_cutoff=cutoffs[prev], out_cutoff=cutoffs[idx],
                in_half_width=half_widths[prev], out_half_width=half_widths[idx], **layer_kwargs)
            name = f"L{idx}_{layer.out_size[0]}_{layer.out_channels}"
            setattr(self, name, layer)
            self.layer_names.append(name)

    def forward(self, ws: torch.Tensor, bends: Mapping[int, Callable[[torch.Tensor], torch.Tensor]] | None = None,
                **layer_kwargs) -> torch.Tensor:
        """ws: (N, num_ws, w_dim) -> (N, img_channels, R, R) float32, about -1..1.

        vj addition: `bends` {layer index: fn} applies fn to that layer's output features, margins included,
        before the next layer (network bending; see vj.models.stylegan.generator._Bend)."""
        assert ws.ndim == 3 and ws.shape[1:] == (self.num_ws, self.w_dim), \
            f"ws {tuple(ws.shape)}, expected (N, {self.num_ws}, {self.w_dim})"
        layer_kwargs.pop("noise_scale", None)             # StyleGAN3 has no noise inputs
        layer_kwargs.pop("noise_scales", None)
        ws = ws.to(torch.float32).unbind(dim=1)
        x = self.input(ws[0])
        for idx, (name, w) in enumerate(zip(self.layer_names, ws[1:])):
            x = getattr(self, name)(x, w, **layer_kwargs)
            if bends is not None and idx in bends:
                x = bends[idx](x)
        if self.output_scale != 1:
            x = x * self.output_scale
        assert x.shape[1:] == (self.img_channels, self.img_resolution, self.img_resolution)
        return x.to(torch.float32)


class Generator(torch.nn.Module):
    """z, c -> image; synthesis settings are keyword arguments, as in NVlabs' stylegan3."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int,
                 mapping_kwargs: Mapping[str, Any] | None = None, **synthesis_kwargs):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                                          **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws,
                                      **dict(mapping_kwargs or {}))

    def forward(self, z: torch.Tensor, c: torch.Tensor | None, truncation_psi: float = 1,
                truncation_cutoff: int | None = None, update_emas: bool = False, **synthesis_kwargs) -> torch.Tensor:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_emas=update_emas)
        return self.synthesis(ws, update_emas=update_emas, **synthesis_kwargs)
