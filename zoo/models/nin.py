"""Network in Network (ch. 8.3): ``nin_block``s of one spatial and two 1x1 convolutions, ending
in global average pooling instead of fully connected layers."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..classifier import ImageClassifier, init_cnn
from ..recipe import GPU_RECIPE
from ..registry import register_model

__all__ = ["NiN", "nin_block"]


def nin_block(in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int) -> nn.Sequential:
    """A convolution followed by two 1x1 convolutions (per-pixel MLPs), each with ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding), nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, kernel_size=1), nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, kernel_size=1), nn.ReLU(),
    )  # fmt: skip


class NiN(ImageClassifier):
    """Three nin_blocks with max pooling, dropout, then a last nin_block with one channel per class
    whose global average is the class score.

    The output layer *is* that last nin_block (its channels are the classes), so ``head`` holds it
    together with the pooling; ``backbone`` ends at the dropout.
    """

    default_input_size = 224

    def __init__(self, *, dropout: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.backbone = nn.Sequential(
            nin_block(self.in_chans, 96, kernel_size=11, stride=4, padding=0),
            nn.MaxPool2d(3, stride=2),
            nin_block(96, 256, kernel_size=5, stride=1, padding=2),
            nn.MaxPool2d(3, stride=2),
            nin_block(256, 384, kernel_size=3, stride=1, padding=1),
            nn.MaxPool2d(3, stride=2),
            nn.Dropout(dropout),
        )
        self.head = nn.Sequential(
            nin_block(384, self.num_classes, kernel_size=3, stride=1, padding=1),
            nn.AdaptiveAvgPool2d((1, 1)),
            nn.Flatten(),
        )
        init_cnn(self)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        # The classifier is a convolution, so there is no embedding layer: the embedding is the
        # last feature map pooled, as for the other networks.
        return F.adaptive_avg_pool2d(x, 1).flatten(1) if pre_logits else self.head(x)


# AdamW, as GoogLeNet: no batch normalisation, a flat loss at first, and class scores behind a ReLU
# that SGD's large early steps kill. No label smoothing or augmentation: with them NiN underfit
# (training accuracy 0.869 after 40 epochs, validation flat at 0.85 from epoch 20), and without
# them it learns faster in the CPU check (docs/studies/recipe-checks.md).
@register_model(chapter="8.3", recipe=GPU_RECIPE.replace(optimizer="adamw", lr=1e-3, weight_decay=0.05, nesterov=False, warmup_epochs=2, epochs=40,
                                                         label_smoothing=0.0, augment="none"),
                book_params=1_992_166, book_top1=0.865)  # fmt: skip
def nin(**kwargs: Any) -> NiN:
    """Network in Network at 224x224."""
    return NiN(**kwargs)
