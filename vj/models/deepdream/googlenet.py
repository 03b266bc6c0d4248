"""GoogLeNet (Inception v1) with torchvision's exact module and parameter names, so its state dicts load strictly.

Layout, names and shapes follow torchvision/models/googlenet.py (including its 3x3 "5x5" branch,
torchvision issue 906, and the aux1/aux2/fc heads that the pretrained file carries). Only the
forward pass differs: `features(x, layer)` runs the stem and inception blocks up to a named layer
and stops, which is all DeepDream needs. `width` scales every channel count for tiny test and CPU
models; only width 1 matches torchvision's shapes.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

# (name, in, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj), torchvision's table.
INCEPTION_CONFIG = (
    ("inception3a", 192, 64, 96, 128, 16, 32, 32),
    ("inception3b", 256, 128, 128, 192, 32, 96, 64),
    ("inception4a", 480, 192, 96, 208, 16, 48, 64),
    ("inception4b", 512, 160, 112, 224, 24, 64, 64),
    ("inception4c", 512, 128, 128, 256, 24, 64, 64),
    ("inception4d", 512, 112, 144, 288, 32, 64, 64),
    ("inception4e", 528, 256, 160, 320, 32, 128, 128),
    ("inception5a", 832, 256, 160, 320, 32, 128, 128),
    ("inception5b", 832, 384, 192, 384, 48, 128, 128),
)
LAYERS = ("conv2", "conv3") + tuple(c[0] for c in INCEPTION_CONFIG)   # dreamable outputs, shallow first
_POOL_BEFORE = {"inception3a": "maxpool2", "inception4a": "maxpool3", "inception5a": "maxpool4"}
# torchvision's normalisation for its pretrained weights (ported from TensorFlow, which saw -1..1 input).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _ch(c: int, width: float) -> int:
    return max(1, round(c * width))


def he_init(net: nn.Module, seed: int) -> nn.Module:
    """Seeded He-normal convs and identity batch norms, so activations keep their scale with depth.

    torchvision's own init (truncated normal, std 0.01) makes the deep layers of an untrained
    net all but zero; this one gives gradients that draw textures at every layer.
    """
    g = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu", generator=g)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.BatchNorm2d):
                m.reset_parameters()
    return net


class BasicConv2d(nn.Module):
    """conv (no bias) -> batch norm (eps 1e-3) -> ReLU, as torchvision's."""

    def __init__(self, in_channels: int, out_channels: int, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class Inception(nn.Module):
    """Four parallel branches concatenated on channels: 1x1, 1x1->3x3, 1x1->3x3, maxpool->1x1."""

    def __init__(self, in_channels: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int, ch5x5: int,
                 pool_proj: int):
        super().__init__()
        self.branch1 = BasicConv2d(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(BasicConv2d(in_channels, ch3x3red, kernel_size=1),
                                     BasicConv2d(ch3x3red, ch3x3, kernel_size=3, padding=1))
        self.branch3 = nn.Sequential(BasicConv2d(in_channels, ch5x5red, kernel_size=1),
                                     BasicConv2d(ch5x5red, ch5x5, kernel_size=3, padding=1))
        self.branch4 = nn.Sequential(nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
                                     BasicConv2d(in_channels, pool_proj, kernel_size=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    """The auxiliary classifier head (kept only so the pretrained state dict loads; never run here)."""

    def __init__(self, in_channels: int, num_classes: int, width: float = 1.0):
        super().__init__()
        self.conv = BasicConv2d(in_channels, _ch(128, width), kernel_size=1)
        self.fc1 = nn.Linear(_ch(128, width) * 16, _ch(1024, width))
        self.fc2 = nn.Linear(_ch(1024, width), num_classes)


class GoogLeNet(nn.Module):
    """Inception v1 as torchvision builds it with aux_logits=True; `features` runs it up to a layer."""

    def __init__(self, num_classes: int = 1000, transform_input: bool = False, width: float = 1.0):
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}")
        self.transform_input = bool(transform_input)
        self.width = float(width)
        self.conv1 = BasicConv2d(3, _ch(64, width), kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(_ch(64, width), _ch(64, width), kernel_size=1)
        self.conv3 = BasicConv2d(_ch(64, width), _ch(192, width), kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.channels: dict[str, int] = {"conv2": _ch(64, width), "conv3": _ch(192, width)}
        prev = self.channels["conv3"]
        for name, _in, *widths in INCEPTION_CONFIG:
            c = [_ch(v, width) for v in widths]
            setattr(self, name, Inception(prev, *c))
            prev = c[0] + c[2] + c[4] + c[5]
            self.channels[name] = prev
        self.aux1 = InceptionAux(self.channels["inception4a"], num_classes, width)
        self.aux2 = InceptionAux(self.channels["inception4d"], num_classes, width)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(self.channels["inception5b"], num_classes)

    def init_random(self, seed: int) -> GoogLeNet:
        return he_init(self, seed)

    def _transform_input(self, x: torch.Tensor) -> torch.Tensor:
        """torchvision's: ImageNet-normalised input -> the -1..1 scale the TensorFlow-ported weights saw."""
        if not self.transform_input:
            return x
        std = x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
        mean = x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        return x * (std / 0.5) + (mean - 0.5) / 0.5

    def features(self, x: torch.Tensor, layer: str) -> torch.Tensor:
        """(N, 3, H, W) ImageNet-normalised -> the output of `layer` (one of LAYERS), (N, C, H', W')."""
        if layer not in self.channels:
            raise ValueError(f"unknown GoogLeNet layer {layer!r}; available: {', '.join(LAYERS)}")
        x = self._transform_input(x)
        x = self.maxpool1(self.conv1(x))
        x = self.conv2(x)
        if layer == "conv2":
            return x
        x = self.conv3(x)
        if layer == "conv3":
            return x
        for name, *_ in INCEPTION_CONFIG:
            if name in _POOL_BEFORE:
                x = getattr(self, _POOL_BEFORE[name])(x)
            x = getattr(self, name)(x)
            if name == layer:
                return x
        raise AssertionError("unreachable")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, num_classes) logits, as torchvision's in eval mode."""
        x = self.avgpool(self.features(x, "inception5b"))
        return self.fc(self.dropout(torch.flatten(x, 1)))
