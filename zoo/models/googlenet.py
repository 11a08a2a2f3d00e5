"""GoogLeNet (ch. 8.4): a stem, then nine Inception blocks, then global average pooling."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..classifier import ImageClassifier, init_cnn
from ..recipe import GPU_RECIPE
from ..registry import register_model

__all__ = ["GoogLeNet", "Inception"]


class Inception(nn.Module):
    """Four parallel paths concatenated on channels (ch. 8.4.1).

    Args:
        c1: 1x1 conv channels; c2: (1x1 reduce, 3x3) channels; c3: (1x1 reduce, 5x5) channels;
        c4: channels of the 1x1 conv after 3x3 max pooling. Output: c1 + c2[1] + c3[1] + c4.
    """

    def __init__(self, in_channels: int, c1: int, c2: tuple[int, int], c3: tuple[int, int], c4: int) -> None:
        super().__init__()
        self.b1_1 = nn.Conv2d(in_channels, c1, kernel_size=1)
        self.b2_1 = nn.Conv2d(in_channels, c2[0], kernel_size=1)
        self.b2_2 = nn.Conv2d(c2[0], c2[1], kernel_size=3, padding=1)
        self.b3_1 = nn.Conv2d(in_channels, c3[0], kernel_size=1)
        self.b3_2 = nn.Conv2d(c3[0], c3[1], kernel_size=5, padding=2)
        self.b4_1 = nn.MaxPool2d(kernel_size=3, stride=1, padding=1)
        self.b4_2 = nn.Conv2d(in_channels, c4, kernel_size=1)
        self.out_channels = c1 + c2[1] + c3[1] + c4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        relu = torch.relu
        b1 = relu(self.b1_1(x))
        b2 = relu(self.b2_2(relu(self.b2_1(x))))
        b3 = relu(self.b3_2(relu(self.b3_1(x))))
        b4 = relu(self.b4_2(self.b4_1(x)))
        return torch.cat((b1, b2, b3, b4), dim=1)


class GoogLeNet(ImageClassifier):
    """Modules b1..b5 as in the book; the head is one linear layer on the 1024 pooled features."""

    default_input_size = 96

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        b1 = nn.Sequential(
            nn.Conv2d(self.in_chans, 64, kernel_size=7, stride=2, padding=3), nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )  # fmt: skip
        b2 = nn.Sequential(
            nn.Conv2d(64, 64, kernel_size=1), nn.ReLU(),
            nn.Conv2d(64, 192, kernel_size=3, padding=1), nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )  # fmt: skip
        b3 = nn.Sequential(
            Inception(192, 64, (96, 128), (16, 32), 32),
            Inception(256, 128, (128, 192), (32, 96), 64),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
        b4 = nn.Sequential(
            Inception(480, 192, (96, 208), (16, 48), 64),
            Inception(512, 160, (112, 224), (24, 64), 64),
            Inception(512, 128, (128, 256), (24, 64), 64),
            Inception(512, 112, (144, 288), (32, 64), 64),
            Inception(528, 256, (160, 320), (32, 128), 128),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
        b5 = nn.Sequential(
            Inception(832, 256, (160, 320), (32, 128), 128),
            Inception(832, 384, (192, 384), (48, 128), 128),
            nn.AdaptiveAvgPool2d((1, 1)),
            nn.Flatten(),
        )
        self.backbone = nn.Sequential(b1, b2, b3, b4, b5)
        self.head = nn.Linear(1024, self.num_classes)
        init_cnn(self)


# AdamW: without batch normalisation the stack starts on a flat loss that SGD does not leave
# (docs/studies/recipes.md).
@register_model(chapter="8.4", recipe=GPU_RECIPE.replace(optimizer="adamw", lr=1e-3, weight_decay=0.05, nesterov=False),
                book_params=5_977_530, book_top1=0.888)  # fmt: skip
def googlenet(**kwargs: Any) -> GoogLeNet:
    """GoogLeNet at 96x96."""
    return GoogLeNet(**kwargs)
