"""Preprocess: any one image (PIL or tensor, any size, gray or colour) -> the batch a model eats."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from PIL import Image
import torch
import torchvision.transforms.v2.functional as TF

__all__ = ["Preprocess", "per_channel"]


def per_channel(value: Sequence[float] | float, channels: int, what: str) -> list[float]:
    """A mean or std as one float per channel; a single value is repeated for every channel."""
    values = [float(value)] if isinstance(value, (int, float)) else [float(v) for v in value]
    if len(values) == 1:
        values = values * channels
    if len(values) != channels:
        raise ValueError(f"{what} has {len(values)} values but the model has {channels} input channels")
    return values

# ITU-R 601 luma, what PIL's convert("L") uses: colour photos become the gray images the
# Fashion-MNIST models were trained on.
_LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)


class Preprocess:
    """Turn images into a normalised float batch of shape (N, in_chans, input_size, input_size).

    Accepts a PIL image (modes L, RGB, RGBA, P, I;16, ...), a numpy array or tensor of shape (H, W),
    (C, H, W) or (N, C, H, W) with C in 1, 3 or 4, uint8 (0-255) or float (0-1), or a list of any of
    these. Transparent images are composited over black (the Fashion-MNIST background); colour becomes gray for 1-channel models and gray is repeated for
    3-channel models; images are resized (bilinear, antialiased when shrinking) and normalised with
    the model's mean and std.
    """

    def __init__(self, *, input_size: int, in_chans: int, mean: Sequence[float], std: Sequence[float]) -> None:
        self.input_size = input_size
        self.in_chans = in_chans
        self.mean = torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1)

    def __repr__(self) -> str:
        return (f"Preprocess(input_size={self.input_size}, in_chans={self.in_chans}, "
                f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()})")  # fmt: skip

    def __call__(self, images: Any) -> torch.Tensor:
        if isinstance(images, (list, tuple)):
            if not images:
                raise ValueError("no images given")
            return torch.cat([self(image) for image in images])
        x = self._to_float_batch(images)
        x = self._fit_channels(x)
        if x.shape[-2:] != (self.input_size, self.input_size):
            shrinking = min(x.shape[-2:]) > self.input_size
            x = TF.resize(x, [self.input_size, self.input_size], antialias=shrinking)
        return (x - self.mean) / self.std

    @staticmethod
    def _to_float_batch(image: Any) -> torch.Tensor:
        if hasattr(image, "getbands"):  # a PIL image
            return Preprocess._from_pil(image)
        if isinstance(image, np.ndarray):
            image = torch.from_numpy(np.ascontiguousarray(image))
        if not isinstance(image, torch.Tensor):
            raise TypeError(f"expected a PIL image, a numpy array or a tensor, got {type(image).__name__}")
        x = image
        if x.ndim == 2:
            x = x[None, None]
        elif x.ndim == 3:
            x = x[None]
        elif x.ndim != 4:
            raise ValueError(f"expected an image of shape (H, W), (C, H, W) or (N, C, H, W), got {tuple(x.shape)}")
        if x.dtype == torch.uint8:
            return x.float() / 255.0
        if x.is_floating_point():
            return x.float()
        raise ValueError(f"expected uint8 or float pixels, got {x.dtype}")

    @staticmethod
    def _from_pil(image: Any) -> torch.Tensor:
        mode = image.mode
        if mode in ("I;16", "I;16B", "I;16L", "I"):
            arr = np.asarray(image, dtype=np.float32)
            scale = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
            return torch.from_numpy(arr / scale)[None, None]
        if mode == "F":
            arr = np.asarray(image, dtype=np.float32)
            # Float images come as 0-1 or as 0-255 (e.g. from numpy): rescale the latter.
            return torch.from_numpy(arr / 255.0 if arr.max(initial=0.0) > 1.0 else arr)[None, None]
        if "A" in mode or (mode == "P" and "transparency" in image.info):
            # Composite over black, the Fashion-MNIST background: what is transparent is not seen
            # (converting to RGB would keep the hidden colour of fully transparent pixels).
            rgba = image.convert("RGBA")
            image = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba).convert("RGB")
        elif mode not in ("L", "RGB"):
            image = image.convert("RGB")  # palette, CMYK, 1-bit...
        return TF.pil_to_tensor(image)[None].float() / 255.0

    def _fit_channels(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        if c == 4:  # RGBA tensor: composite over black, as for PIL images
            x, c = x[:, :3] * x[:, 3:4], 3
        if c not in (1, 3):
            raise ValueError(f"expected a 1-, 3- or 4-channel image, got {c} channels (shape {tuple(x.shape)})")
        if c == self.in_chans:
            return x
        if self.in_chans == 1:
            return (x * _LUMA.to(x.dtype)).sum(dim=1, keepdim=True)
        return x.expand(-1, self.in_chans, -1, -1)
