"""AlexNet (ch. 8.1), adapted to Fashion-MNIST as the book does: 1 input channel, 10 classes,
images resized to 224x224."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..classifier import ImageClassifier, init_cnn
from ..recipe import GPU_RECIPE
from ..registry import register_model

__all__ = ["AlexNet"]


class AlexNet(ImageClassifier):
    """Five convolutions (11x11/4, 5x5, then three 3x3) with max pooling, then two 4096-wide
    fully connected layers with dropout 0.5, then the output layer."""

    default_input_size = 224
    fixed_input_size = True

    def __init__(self, *, dropout: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        features = nn.Sequential(
            nn.Conv2d(self.in_chans, 96, kernel_size=11, stride=4, padding=1), nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(96, 256, kernel_size=5, padding=2), nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(256, 384, kernel_size=3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 384, kernel_size=3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Flatten(),
        )  # fmt: skip
        flat = flat_features(features, self.in_chans, self.input_size)  # 6400 at 224x224
        self.backbone = nn.Sequential(
            *features,
            nn.Linear(flat, 4096), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(dropout),
        )  # fmt: skip
        self.head = nn.Linear(4096, self.num_classes)
        init_cnn(self)


def flat_features(features: nn.Module, in_chans: int, input_size: int) -> int:
    """Width of ``features``' flattened output for one image: what the book's LazyLinear infers."""
    with torch.no_grad():
        out = features(torch.zeros(1, in_chans, input_size, input_size))
    if out.shape[-1] < 1:
        raise ValueError(f"input_size {input_size} is too small for this network")
    return out.shape[-1]


# The book trains 10 epochs of SGD at lr 0.01.
@register_model(chapter="8.1", recipe=GPU_RECIPE.replace(lr=0.02), book_params=46_764_746, book_top1=0.879)
def alexnet(**kwargs: Any) -> AlexNet:
    """AlexNet at 224x224, one input channel."""
    return AlexNet(**kwargs)
