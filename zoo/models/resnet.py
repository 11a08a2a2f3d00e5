"""ResNet (ch. 8.6): residual blocks, and the book's ResNet-18."""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..classifier import ImageClassifier, init_cnn
from ..recipe import GPU_RECIPE
from ..registry import register_model

__all__ = ["ResNet", "Residual", "RESNET18_ARCH"]

# (residual blocks, channels) per stage.
RESNET18_ARCH = ((2, 64), (2, 128), (2, 256), (2, 512))


class Residual(nn.Module):
    """Two 3x3 conv + BN layers with a skip connection (ch. 8.6.2). When the block changes the
    shape (``use_1x1conv``), a 1x1 convolution with the same stride matches the skip to it."""

    def __init__(self, in_channels: int, num_channels: int, use_1x1conv: bool = False, strides: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, num_channels, kernel_size=3, padding=1, stride=strides)
        self.conv2 = nn.Conv2d(num_channels, num_channels, kernel_size=3, padding=1)
        self.conv3 = nn.Conv2d(in_channels, num_channels, kernel_size=1, stride=strides) if use_1x1conv else None
        self.bn1 = nn.BatchNorm2d(num_channels)
        self.bn2 = nn.BatchNorm2d(num_channels)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        Y = F.relu(self.bn1(self.conv1(X)))
        Y = self.bn2(self.conv2(Y))
        if self.conv3 is not None:
            X = self.conv3(X)
        return F.relu(Y + X)


def resnet_stage(in_channels: int, num_residuals: int, num_channels: int, first_block: bool = False) -> nn.Sequential:
    """A stage of residual blocks; all but the first stage halve the size and change the width
    in their first block."""
    blocks = []
    for i in range(num_residuals):
        if i == 0 and not first_block:
            blocks.append(Residual(in_channels, num_channels, use_1x1conv=True, strides=2))
        else:
            blocks.append(Residual(num_channels, num_channels))
    return nn.Sequential(*blocks)


class ResNet(ImageClassifier):
    """b1 (7x7 conv, BN, ReLU, 3x3 max pool) -> residual stages -> global average pool -> linear."""

    default_input_size = 96

    def __init__(self, *, arch: Sequence[Sequence[int]] = RESNET18_ARCH, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        layers: list[nn.Module] = [
            nn.Conv2d(self.in_chans, 64, kernel_size=7, stride=2, padding=3),
            nn.BatchNorm2d(64), nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        ]  # fmt: skip
        channels = 64
        for i, (num_residuals, num_channels) in enumerate(arch):
            layers.append(resnet_stage(channels, num_residuals, num_channels, first_block=i == 0))
            channels = num_channels
        layers += [nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten()]
        self.backbone = nn.Sequential(*layers)
        self.head = nn.Linear(channels, self.num_classes)
        init_cnn(self)


#: `zoo train resnet18 --recipe speedrun`: the shortest wall time to >= 0.94 test top-1 on one GPU.
#: Every switch that cuts a step's cost; no EMA or random erasing, which pay off only in long runs
#: (docs/studies/recipes.md).
SPEEDRUN = GPU_RECIPE.replace(lr=0.1, batch_size=512, epochs=10, precision="bf16-mixed", channels_last=True,
                              static_shapes=True, fused=True)  # fmt: skip


# Stronger regularisation and longer training than the shared GPU recipe, as for DenseNet.
@register_model(chapter="8.6", recipe=GPU_RECIPE.replace(lr=0.1, augment="strong", ema=0.999, epochs=30),
                book_params=11_178_378, book_top1=0.919, presets={"speedrun": SPEEDRUN})  # fmt: skip
def resnet18(**kwargs: Any) -> ResNet:
    """The book's ResNet-18 at 96x96."""
    return ResNet(arch=RESNET18_ARCH, **kwargs)
