"""Batched image transforms: one call converts, augments, resizes and normalises a whole batch.

Every op works on an (N, C, H, W) tensor on whatever device it lives on, so the data path never
round-trips through PIL. Random parameters are drawn on the CPU from torch's global generator,
which makes a seeded run give the same batches whatever the device.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from timm.data.random_erasing import RandomErasing

from ..runtime import to_device

__all__ = ["AUGMENT_PRESETS", "random_crop", "random_hflip", "BatchTransform"]

#: The augmentation presets a recipe can name (see :class:`BatchTransform`).
AUGMENT_PRESETS = ("none", "standard", "strong")


def random_crop(x: torch.Tensor, padding: int) -> torch.Tensor:
    """Zero-pad by ``padding`` and crop back to the original size at an independent random offset
    per image (torchvision's RandomCrop(padding=...), but for a whole batch in one gather)."""
    if padding <= 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, [padding] * 4)
    oy = to_device(torch.randint(0, 2 * padding + 1, (n, 1)), x.device)
    ox = to_device(torch.randint(0, 2 * padding + 1, (n, 1)), x.device)
    rows = oy + torch.arange(h, device=x.device)  # (N, H)
    cols = ox + torch.arange(w, device=x.device)  # (N, W)
    batch = torch.arange(n, device=x.device)[:, None, None]
    # Advanced indexing over (N, H, W) of a channels-last view gives (N, H, W, C).
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()


def random_hflip(x: torch.Tensor, p: float = 0.5) -> torch.Tensor:
    """Flip each image left-right with probability ``p``."""
    flip = to_device(torch.rand(x.shape[0]) < p, x.device)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


class BatchTransform:
    """uint8 batch -> float batch the model eats: [augment] -> normalise -> resize [-> erase].

    Args:
        input_size: side of the square output images.
        mean, std: per-channel normalisation (one value per output channel).
        in_chans: output channels; a 1-channel source is repeated to 3 when the model wants RGB.
        augment: "none", "standard" (random crop with padding + horizontal flip) or "strong"
            (standard + random erasing, ch. 13.1). Applied only when called with ``train=True``.
        crop_padding: padding of the random crop, in source pixels (2 of 28 is about 7 %).
    """

    def __init__(
        self,
        *,
        input_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        in_chans: int = 1,
        augment: str = "none",
        crop_padding: int = 2,
        erase_prob: float = 0.25,
    ) -> None:
        if augment not in AUGMENT_PRESETS:
            raise ValueError(f"augment must be one of {AUGMENT_PRESETS}, got {augment!r}")
        self.input_size = input_size
        self.in_chans = in_chans
        self.augment = augment
        self.crop_padding = crop_padding
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        # timm's RandomErasing handles (N, C, H, W) batches; "pixel" fills with normal noise, which
        # matches the normalised (zero-mean, unit-variance) images it is applied to.
        self.eraser = RandomErasing(probability=erase_prob, mode="pixel", device="cpu") if augment == "strong" else None

    def _stats(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        # Copied to the device once, not every batch (each copy would stall a GPU's queue).
        if self.mean.device != device:
            self.mean, self.std = to_device(self.mean, device), to_device(self.std, device)
        return self.mean, self.std

    def __call__(self, images: torch.Tensor, *, train: bool = False) -> torch.Tensor:
        if images.ndim != 4:
            raise ValueError(f"expected a batch of shape (N, C, H, W), got {tuple(images.shape)}")
        x = images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()
        augment = train and self.augment != "none"
        if augment:
            # Crop and flip at the source resolution: the same result as after resizing, far cheaper.
            x = random_hflip(random_crop(x, self.crop_padding))
        if x.shape[1] == 1 and self.in_chans == 3:
            x = x.expand(-1, 3, -1, -1)
        # Normalise before resizing: interpolation weights sum to one, so the result is the same,
        # and at 224x224 it touches 64x fewer pixels.
        mean, std = self._stats(x.device)
        x = (x - mean) / std
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = TF.resize(x, [self.input_size, self.input_size], antialias=x.shape[-1] > self.input_size)
        if augment and self.eraser is not None:
            self.eraser.device = x.device
            x = self.eraser(x)
        return x
