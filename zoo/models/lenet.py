"""LeNet-5 (ch. 7.6) and LeNet with batch normalisation (ch. 8.5), on 28x28 images.

The book's LeNet keeps LeCun's sigmoid activations and average pooling; the first convolution is
padded by 2 so that 28x28 Fashion-MNIST gives the 5x5x16 features the original 32x32 input did.
The batch-normalised LeNet drops that padding (16 x 4 x 4 features), as the book writes it.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..classifier import ImageClassifier, init_cnn
from ..recipe import Recipe
from ..registry import register_model

__all__ = ["LeNet"]


class LeNet(ImageClassifier):
    """conv(6, 5x5) -> sigmoid -> avgpool -> conv(16, 5x5) -> sigmoid -> avgpool -> 120 -> 84 -> classes.

    Args:
        batch_norm: insert BatchNorm after every convolution and hidden linear layer (ch. 8.5).
    """

    fixed_input_size = True

    def __init__(self, *, batch_norm: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        bn2d = nn.BatchNorm2d if batch_norm else _no_norm
        bn1d = nn.BatchNorm1d if batch_norm else _no_norm
        pad = 0 if batch_norm else 2
        side = ((self.input_size + 2 * pad - 4) // 2 - 4) // 2  # two (5x5 conv, 2x2 pool) stages
        self.backbone = nn.Sequential(
            nn.Conv2d(self.in_chans, 6, kernel_size=5, padding=pad), bn2d(6), nn.Sigmoid(),
            nn.AvgPool2d(kernel_size=2, stride=2),
            nn.Conv2d(6, 16, kernel_size=5), bn2d(16), nn.Sigmoid(),
            nn.AvgPool2d(kernel_size=2, stride=2),
            nn.Flatten(),
            nn.Linear(16 * side * side, 120), bn1d(120), nn.Sigmoid(),
            nn.Linear(120, 84), bn1d(84), nn.Sigmoid(),
        )  # fmt: skip
        self.head = nn.Linear(84, self.num_classes)
        init_cnn(self)


def _no_norm(_: int) -> nn.Module:
    return nn.Identity()


@register_model(
    chapter="7.6",
    # AdamW, warm-up then cosine, 60 epochs: sigmoids learn slowly (docs/studies/recipes.md).
    recipe=Recipe(optimizer="adamw", lr=5e-3, weight_decay=0.05, schedule="cosine", warmup_epochs=1,
                  batch_size=256, epochs=60),  # fmt: skip
    book_params=61_706,
    book_top1=0.776,
)
def lenet(**kwargs: Any) -> LeNet:
    """LeNet-5 as the book writes it: sigmoid activations, average pooling."""
    return LeNet(batch_norm=False, **kwargs)


@register_model(
    chapter="8.5",
    # AdamW with crop/flip, 50 epochs: the best on the validation split (docs/studies/recipes.md).
    recipe=Recipe(optimizer="adamw", lr=0.01, weight_decay=0.05, schedule="cosine", warmup_epochs=1,
                  augment="standard", batch_size=256, epochs=50),  # fmt: skip
    book_params=44_878,
    book_top1=0.880,
)
def lenet_bn(**kwargs: Any) -> LeNet:
    """LeNet with batch normalisation after each convolution and hidden linear layer."""
    return LeNet(batch_norm=True, **kwargs)
