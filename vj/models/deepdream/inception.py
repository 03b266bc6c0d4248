"""Inception v3 with torchvision's exact module and parameter names, so its ImageNet state dict loads strictly.

The blocks are written here as data: each "Mixed" block is a list of branches, each branch a short program of
named convolutions, pools and splits (a split runs two convolutions on one input and concatenates them, as the
last two blocks do). The names and shapes are those of torchvision/models/inception.py (`Inception3`), which
carries the weights Google ported from TensorFlow; `features(x, layer)` runs up to a named layer and stops,
which is all DeepDream needs. The Keras DeepDream example dreams on this network's mixed4/mixed5, which are
Mixed_6b/Mixed_6c here.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from vj.models.deepdream.googlenet import IMAGENET_MEAN, IMAGENET_STD, BasicConv2d, he_init

# A conv: (name, in, out, kernel, stride, padding); kernels and paddings may be (h, w).
# A branch: steps run in order on the block's input: a conv name, "avg" (3x3 stride 1 pad 1 average pool),
# "max" (3x3 stride 2 max pool) or ("split", a, b): a and b on the same input, concatenated.


def _block_a(cin: int, pool: int):
    convs = [("branch1x1", cin, 64, 1), ("branch5x5_1", cin, 48, 1), ("branch5x5_2", 48, 64, 5, 1, 2),
             ("branch3x3dbl_1", cin, 64, 1), ("branch3x3dbl_2", 64, 96, 3, 1, 1), ("branch3x3dbl_3", 96, 96, 3, 1, 1),
             ("branch_pool", cin, pool, 1)]
    branches = [["branch1x1"], ["branch5x5_1", "branch5x5_2"], ["branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"],
                ["avg", "branch_pool"]]
    return convs, branches, 64 + 64 + 96 + pool


def _block_b(cin: int):
    convs = [("branch3x3", cin, 384, 3, 2), ("branch3x3dbl_1", cin, 64, 1), ("branch3x3dbl_2", 64, 96, 3, 1, 1),
             ("branch3x3dbl_3", 96, 96, 3, 2)]
    branches = [["branch3x3"], ["branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"], ["max"]]
    return convs, branches, 384 + 96 + cin


def _block_c(cin: int, c7: int):
    row, col = ((1, 7), 1, (0, 3)), ((7, 1), 1, (3, 0))
    convs = [("branch1x1", cin, 192, 1),
             ("branch7x7_1", cin, c7, 1), ("branch7x7_2", c7, c7, *row), ("branch7x7_3", c7, 192, *col),
             ("branch7x7dbl_1", cin, c7, 1), ("branch7x7dbl_2", c7, c7, *col), ("branch7x7dbl_3", c7, c7, *row),
             ("branch7x7dbl_4", c7, c7, *col), ("branch7x7dbl_5", c7, 192, *row),
             ("branch_pool", cin, 192, 1)]
    branches = [["branch1x1"], ["branch7x7_1", "branch7x7_2", "branch7x7_3"],
                ["branch7x7dbl_1", "branch7x7dbl_2", "branch7x7dbl_3", "branch7x7dbl_4", "branch7x7dbl_5"],
                ["avg", "branch_pool"]]
    return convs, branches, 4 * 192


def _block_d(cin: int):
    convs = [("branch3x3_1", cin, 192, 1), ("branch3x3_2", 192, 320, 3, 2),
             ("branch7x7x3_1", cin, 192, 1), ("branch7x7x3_2", 192, 192, (1, 7), 1, (0, 3)),
             ("branch7x7x3_3", 192, 192, (7, 1), 1, (3, 0)), ("branch7x7x3_4", 192, 192, 3, 2)]
    branches = [["branch3x3_1", "branch3x3_2"], ["branch7x7x3_1", "branch7x7x3_2", "branch7x7x3_3", "branch7x7x3_4"],
                ["max"]]
    return convs, branches, 320 + 192 + cin


def _block_e(cin: int):
    row, col = ((1, 3), 1, (0, 1)), ((3, 1), 1, (1, 0))
    convs = [("branch1x1", cin, 320, 1),
             ("branch3x3_1", cin, 384, 1), ("branch3x3_2a", 384, 384, *row), ("branch3x3_2b", 384, 384, *col),
             ("branch3x3dbl_1", cin, 448, 1), ("branch3x3dbl_2", 448, 384, 3, 1, 1),
             ("branch3x3dbl_3a", 384, 384, *row), ("branch3x3dbl_3b", 384, 384, *col),
             ("branch_pool", cin, 192, 1)]
    branches = [["branch1x1"], ["branch3x3_1", ("split", "branch3x3_2a", "branch3x3_2b")],
                ["branch3x3dbl_1", "branch3x3dbl_2", ("split", "branch3x3dbl_3a", "branch3x3dbl_3b")],
                ["avg", "branch_pool"]]
    return convs, branches, 320 + 768 + 768 + 192


STEM = (("Conv2d_1a_3x3", 3, 32, 3, 2), ("Conv2d_2a_3x3", 32, 32, 3), ("Conv2d_2b_3x3", 32, 64, 3, 1, 1), "maxpool1",
        ("Conv2d_3b_1x1", 64, 80, 1), ("Conv2d_4a_3x3", 80, 192, 3), "maxpool2")
MIXED = (("Mixed_5b", _block_a, (32,)), ("Mixed_5c", _block_a, (64,)), ("Mixed_5d", _block_a, (64,)),
         ("Mixed_6a", _block_b, ()), ("Mixed_6b", _block_c, (128,)), ("Mixed_6c", _block_c, (160,)),
         ("Mixed_6d", _block_c, (160,)), ("Mixed_6e", _block_c, (192,)), ("Mixed_7a", _block_d, ()),
         ("Mixed_7b", _block_e, ()), ("Mixed_7c", _block_e, ()))
LAYERS = ("Conv2d_4a_3x3",) + tuple(m[0] for m in MIXED)      # dreamable outputs, shallow first
DEFAULT_LAYER = "Mixed_6b"            # Keras' DeepDream example's mixed4: eyes and animal forms
MIN_PX = 75                           # torchvision's min_size: Mixed_7a's unpadded 3x3 stride-2 convs need it


def _conv(spec) -> BasicConv2d:
    _name, cin, cout, kernel = spec[:4]
    stride, padding = (spec[4] if len(spec) > 4 else 1), (spec[5] if len(spec) > 5 else 0)
    return BasicConv2d(cin, cout, kernel_size=kernel, stride=stride, padding=padding)


class Mixed(nn.Module):
    """One block: its convolutions as named children (torchvision's names), run branch by branch."""

    def __init__(self, convs, branches):
        super().__init__()
        for spec in convs:
            self.add_module(spec[0], _conv(spec))
        self.branches = branches

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for branch in self.branches:
            y = x
            for step in branch:
                if step == "avg":
                    y = F.avg_pool2d(y, kernel_size=3, stride=1, padding=1)
                elif step == "max":
                    y = F.max_pool2d(y, kernel_size=3, stride=2)
                elif isinstance(step, tuple):             # ("split", a, b)
                    y = torch.cat([getattr(self, step[1])(y), getattr(self, step[2])(y)], 1)
                else:
                    y = getattr(self, step)(y)
            outs.append(y)
        return torch.cat(outs, 1)


class AuxLogits(nn.Module):
    """The auxiliary head the pretrained file carries (unused by DeepDream; here so the file loads strictly)."""

    def __init__(self, cin: int, num_classes: int):
        super().__init__()
        self.conv0 = BasicConv2d(cin, 128, kernel_size=1)
        self.conv1 = BasicConv2d(128, 768, kernel_size=5)
        self.fc = nn.Linear(768, num_classes)


class InceptionV3(nn.Module):
    """torchvision's Inception3 layout (eval mode only); input (N, 3, H >= 75, W >= 75), ImageNet-normalised."""

    def __init__(self, num_classes: int = 1000, transform_input: bool = False):
        super().__init__()
        self.transform_input = transform_input
        for spec in STEM:
            if isinstance(spec, tuple):
                self.add_module(spec[0], _conv(spec))
        cin = 192
        for name, block, args in MIXED:
            convs, branches, cout = block(cin, *args)
            self.add_module(name, Mixed(convs, branches))
            if name == "Mixed_6e":
                self.AuxLogits = AuxLogits(cout, num_classes)
            cin = cout
        self.fc = nn.Linear(cin, num_classes)

    def init_random(self, seed: int) -> InceptionV3:
        return he_init(self, seed)

    def features(self, x: torch.Tensor, layer: str) -> torch.Tensor:
        """(N, 3, H, W) ImageNet-normalised -> the output of `layer` (one of LAYERS)."""
        if layer not in LAYERS:
            raise ValueError(f"unknown Inception-v3 layer {layer!r}; available: {', '.join(LAYERS)}")
        if self.transform_input:          # torchvision's: back to the -1..1 scale the TensorFlow weights saw
            std = x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
            mean = x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
            x = x * (std / 0.5) + (mean - 0.5) / 0.5
        for spec in STEM:
            if isinstance(spec, str):
                x = F.max_pool2d(x, kernel_size=3, stride=2)
            else:
                x = getattr(self, spec[0])(x)
                if spec[0] == layer:
                    return x
        for name, *_ in MIXED:
            x = getattr(self, name)(x)
            if name == layer:
                return x
        raise AssertionError("unreachable")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, num_classes) logits, as torchvision's in eval mode."""
        x = F.adaptive_avg_pool2d(self.features(x, "Mixed_7c"), 1)
        return self.fc(torch.flatten(x, 1))
