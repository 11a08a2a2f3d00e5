"""VGG (ch. 8.2): networks built from repeated ``vgg_block``s."""

from __future__ import annotations

from typing import Any, Sequence

from torch import nn

from ..classifier import ImageClassifier, init_cnn
from ..recipe import GPU_RECIPE
from ..registry import register_model
from .alexnet import flat_features

__all__ = ["VGG", "vgg_block", "VGG11_ARCH"]

# (number of 3x3 convolutions, output channels) per block: VGG-11.
VGG11_ARCH = ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512))


def vgg_block(num_convs: int, in_channels: int, out_channels: int) -> nn.Sequential:
    """``num_convs`` 3x3 convolutions (padding 1) with ReLU, then a 2x2 max pool halving the size."""
    layers: list[nn.Module] = []
    for _ in range(num_convs):
        layers += [nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1), nn.ReLU()]
        in_channels = out_channels
    layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*layers)


class VGG(ImageClassifier):
    """vgg_blocks -> flatten -> 4096 -> 4096 (ReLU, dropout 0.5) -> classes.

    Args:
        arch: (convs, channels) per block.
        width_ratio: divide every block's channels by this; the book trains VGG-11 with ratio 4
            ("a network with a smaller number of channels") so it fits Fashion-MNIST's budget.
    """

    default_input_size = 224
    fixed_input_size = True

    def __init__(self, *, arch: Sequence[Sequence[int]] = VGG11_ARCH, width_ratio: int = 4, dropout: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        blocks, channels = [], self.in_chans
        for num_convs, out_channels in arch:
            blocks.append(vgg_block(num_convs, channels, out_channels // width_ratio))
            channels = out_channels // width_ratio
        features = nn.Sequential(*blocks, nn.Flatten())
        flat = flat_features(features, self.in_chans, self.input_size)
        self.backbone = nn.Sequential(
            *features,
            nn.Linear(flat, 4096), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(dropout),
        )  # fmt: skip
        self.head = nn.Linear(4096, self.num_classes)
        init_cnn(self)


# The book: 10 epochs of SGD at lr 0.05.
@register_model(chapter="8.2", recipe=GPU_RECIPE, book_params=43_093_322, book_top1=0.916)
def vgg11(**kwargs: Any) -> VGG:
    """VGG-11 with channels divided by 4, as the book trains it (width_ratio=1 for full width)."""
    return VGG(arch=VGG11_ARCH, **kwargs)
