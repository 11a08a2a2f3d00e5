"""DenseNet (ch. 8.7): dense blocks that concatenate every convolution's output onto its input,
joined by transition layers that halve channels and size."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from ..classifier import ImageClassifier, init_cnn
from ..recipe import GPU_RECIPE
from ..registry import register_model

__all__ = ["DenseNet", "DenseBlock", "conv_block", "transition_block"]


def conv_block(in_channels: int, num_channels: int) -> nn.Sequential:
    """The pre-activation BN -> ReLU -> 3x3 conv of ResNet v2, used inside dense blocks."""
    return nn.Sequential(
        nn.BatchNorm2d(in_channels), nn.ReLU(),
        nn.Conv2d(in_channels, num_channels, kernel_size=3, padding=1),
    )  # fmt: skip


class DenseBlock(nn.Module):
    """``num_convs`` conv_blocks, each fed the concatenation of the input and all earlier outputs;
    output channels = in_channels + num_convs * num_channels (the growth rate)."""

    def __init__(self, num_convs: int, in_channels: int, num_channels: int) -> None:
        super().__init__()
        self.net = nn.Sequential(*(conv_block(in_channels + i * num_channels, num_channels) for i in range(num_convs)))
        self.out_channels = in_channels + num_convs * num_channels

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        for blk in self.net:
            X = torch.cat((X, blk(X)), dim=1)
        return X


def transition_block(in_channels: int, num_channels: int) -> nn.Sequential:
    """BN -> ReLU -> 1x1 conv to ``num_channels`` -> 2x2 average pool (halves height and width)."""
    return nn.Sequential(
        nn.BatchNorm2d(in_channels), nn.ReLU(),
        nn.Conv2d(in_channels, num_channels, kernel_size=1),
        nn.AvgPool2d(kernel_size=2, stride=2),
    )  # fmt: skip


class DenseNet(ImageClassifier):
    """b1 (as ResNet's) -> dense blocks with transitions -> BN -> ReLU -> global pool -> linear.

    Args:
        num_channels: channels after b1 (64).
        growth_rate: channels each convolution adds (32).
        arch: convolutions per dense block (four blocks of four).
    """

    default_input_size = 96

    def __init__(self, *, num_channels: int = 64, growth_rate: int = 32, arch: Sequence[int] = (4, 4, 4, 4), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        layers: list[nn.Module] = [
            nn.Conv2d(self.in_chans, num_channels, kernel_size=7, stride=2, padding=3),
            nn.BatchNorm2d(num_channels), nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        ]  # fmt: skip
        for i, num_convs in enumerate(arch):
            layers.append(DenseBlock(num_convs, num_channels, growth_rate))
            num_channels += num_convs * growth_rate
            if i != len(arch) - 1:  # a transition layer halves the channels between dense blocks
                layers.append(transition_block(num_channels, num_channels // 2))
                num_channels //= 2
        layers += [nn.BatchNorm2d(num_channels), nn.ReLU(), nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten()]
        self.backbone = nn.Sequential(*layers)
        self.head = nn.Linear(num_channels, self.num_classes)
        init_cnn(self)


# The book: 10 epochs of SGD at lr 0.1.
@register_model(chapter="8.7", recipe=GPU_RECIPE.replace(lr=0.1, augment="strong", ema=0.999, epochs=30),
                book_params=758_226, book_top1=0.891)  # fmt: skip
def densenet(**kwargs: Any) -> DenseNet:
    """The book's DenseNet (growth 32, four blocks of four convolutions) at 96x96."""
    return DenseNet(**kwargs)
