"""Preprocess: any one image (PIL or tensor, any size, gray or colour) -> the batch a model eats.

A photo is not a Fashion-MNIST image. The data set's items are bright on black, trimmed to their
bounding box and centred in a square whose side the longer side fills (its own conversion from the
shop photos did exactly that), at 28x28. A phone photo of a shirt on a white table is dark on
bright, off-centre, not square and maybe stored sideways with an EXIF orientation. The
:class:`PhotoSteps` undo each difference; they are on for the Fashion-MNIST models and recorded in
each checkpoint's config.json, so ``zoo.load(...).preprocess`` and every command agree.
"""

from __future__ import annotations

import math

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Sequence

import numpy as np
from PIL import Image
import torch
import torchvision.transforms.v2.functional as TF

__all__ = ["Preprocess", "PhotoSteps", "item_box", "per_channel"]


def per_channel(value: Sequence[float] | float, channels: int, what: str) -> list[float]:
    """A mean or std as one float per channel; a single value is repeated for every channel."""
    values = [float(value)] if isinstance(value, (int, float)) else [float(v) for v in value]
    if len(values) == 1:
        values = values * channels
    if len(values) != channels:
        raise ValueError(f"{what} has {len(values)} values but the model has {channels} input channels")
    if not all(math.isfinite(v) for v in values) or (what == "std" and min(values) <= 0):
        raise ValueError(f"{what} must be finite{' and above 0' if what == 'std' else ''}, got {values}")
    return values

@dataclass(frozen=True)
class PhotoSteps:
    """What :class:`Preprocess` does to a photo before resizing, in this order (each field's
    ``help`` says what it does; ``zoo predict --no-crop`` etc. switch them off)."""

    exif: bool = field(default=True, metadata={"help": "turn the pixels upright as the image's EXIF orientation says"})
    auto_invert: bool = field(default=True, metadata={"help": (
        "invert an image whose border is mostly bright (median luma > 0.5): the models learnt bright items on black")})
    levels: bool = field(default=True, metadata={"help": (
        "stretch the background (the border's median colour) to black and the brightest pixel to white, as in every "
        "Fashion-MNIST image (background 0, brightest pixel 254 or 255)")})
    crop: bool = field(default=True, metadata={"help": (
        "trim the background around the item (rows and columns within 0.1 of the border's median colour), "
        "as Fashion-MNIST's own conversion did; an item spanning 90 percent of one side is only trimmed across it, "
        "and a data-set image is left as it is")})
    pad_square: bool = field(default=True, metadata={"help": (
        "pad the shorter side with the background colour, centring the item, instead of squashing the image")})
    native_size: int | None = field(default=28, metadata={"help": (
        "resize to the data set's resolution (28) first, then to the model's input size, as the training images were")})

    @classmethod
    def plain(cls) -> "PhotoSteps":
        """None of the steps: images are only fitted to the channels and squashed to the input size."""
        return cls(exif=False, auto_invert=False, levels=False, crop=False, pad_square=False, native_size=None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "preprocess") -> "PhotoSteps":
        """Steps from a config.json ``"preprocess"`` object; unknown keys or wrong types are a ValueError."""
        if not isinstance(data, dict):
            raise ValueError(f"{where} must be an object of preprocessing steps, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{where} has unknown steps {unknown} (known: {sorted(known)})")
        for key, value in data.items():
            ok = (value is None or (isinstance(value, int) and not isinstance(value, bool) and 8 <= value <= 1024)) \
                if key == "native_size" else isinstance(value, bool)  # fmt: skip
            if not ok:
                raise ValueError(f"{where}.{key} must be {'null or an integer from 8 to 1024' if key == 'native_size' else 'true or false'}, got {value!r}")
        return cls(**data)

    def without(self, *names: str) -> "PhotoSteps":
        """These steps switched off (``"native_size"`` becomes None)."""
        return replace(self, **{n: None if n == "native_size" else False for n in names})


#: An item spanning at least this share of a side fills that direction: it is not trimmed there,
#: since even a one-pixel trim means resampling, which blurs a data-set image.
CROP_BELOW = 0.9

#: An item that fills one direction counts as centred in the other when its two margins there
#: differ by at most this share of that side: 2 px of 28, which holds for 99.8 % of the
#: Fashion-MNIST test images (the rest differ by 3-6 px).
CENTRED = 0.08

#: Border pixels further than this from their median colour belong to the item (0-1 scale): above
#: JPEG's ringing on a flat background, below the faintest parts of most items.
CONTENT_THRESHOLD = 0.1


def _border(x: torch.Tensor) -> torch.Tensor:
    """The outermost rows and columns of a (C, H, W) image, as (C, pixels)."""
    return torch.cat([x[:, 0], x[:, -1], x[:, 1:-1, 0], x[:, 1:-1, -1]], dim=1)


def item_box(item: torch.Tensor) -> tuple[int, int, int, int] | None:
    """Where to crop an image whose item pixels are ``item`` (H, W bool): (top, bottom, left,
    right), or None to leave it whole.

    An item with a margin on every side is cut out with its bounding box. One that fills a
    direction (spans CROP_BELOW of it) keeps that direction whole and is trimmed in the other, so
    that padding to a square centres it without shrinking it; unless padding alone would give the
    same picture (it is centred in a side no longer than the filled one): that is every
    Fashion-MNIST image, which is then left exactly as it is. An item that fills both directions,
    and a blank image, are left whole.
    """
    rows, cols = item.any(1).nonzero(), item.any(0).nonzero()
    if not len(rows):
        return None
    height, width = item.shape
    top, bottom, left, right = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    fills_height, fills_width = bottom - top >= CROP_BELOW * height, right - left >= CROP_BELOW * width
    if fills_height and fills_width:
        return None
    if not (fills_height or fills_width):
        return top, bottom, left, right
    if fills_height:  # trim the width only
        centred = width <= height and abs(left - (width - right)) <= CENTRED * width
        return None if centred else (0, height, left, right)
    centred = height <= width and abs(top - (height - bottom)) <= CENTRED * height
    return None if centred else (top, bottom, 0, width)


def photo_to_dataset(x: torch.Tensor, steps: PhotoSteps) -> torch.Tensor:
    """One (1, C, H, W) float image in 0-1 with ``steps`` applied: inverted if its background is
    bright, stretched from its background to its brightest pixel, trimmed to its item, padded to a
    square with its background colour."""
    img = x[0]
    if steps.auto_invert:
        gray = img.mean(0, keepdim=True) if img.shape[0] != 3 else (img * _LUMA[0].to(img.dtype)).sum(0, keepdim=True)
        if float(_border(gray).median()) > 0.5:
            img = 1.0 - img
    background = _border(img).median(dim=1).values  # per channel
    if steps.levels:
        img = img - background[:, None, None]
        img = (img / img.max().clamp_min(1e-3)).clamp(0.0, 1.0)  # a blank image stays blank
        background = torch.zeros_like(background)
    if steps.crop:
        box = item_box(((img - background[:, None, None]).abs() > CONTENT_THRESHOLD).any(0))
        if box is not None:
            top, bottom, left, right = box
            img = img[:, top:bottom, left:right]
    if steps.pad_square:
        c, h, w = img.shape
        side = max(h, w)
        square = background[:, None, None].expand(c, side, side).clone()
        top, left = (side - h) // 2, (side - w) // 2
        square[:, top:top + h, left:left + w] = img
        img = square
    return img[None]


# ITU-R 601 luma, what PIL's convert("L") uses: colour photos become the gray images the
# Fashion-MNIST models were trained on.
_LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)


class Preprocess:
    """Turn images into a normalised float batch of shape (N, in_chans, input_size, input_size).

    ``steps`` (:class:`PhotoSteps`, default: none of them) make photos look like the training data
    first. Accepts a PIL image (modes L, RGB, RGBA, P, I;16, ...), a numpy array or tensor of shape (H, W),
    (C, H, W) or (N, C, H, W) with C in 1, 3 or 4, uint8 (0-255) or float (0-1), or a list of any of
    these. Transparent images are composited over black (the Fashion-MNIST background); colour becomes gray for 1-channel models and gray is repeated for
    3-channel models; images are resized (bilinear, antialiased when shrinking) and normalised with
    the model's mean and std.
    """

    def __init__(self, *, input_size: int, in_chans: int, mean: Sequence[float], std: Sequence[float],
                 steps: PhotoSteps | None = None) -> None:  # fmt: skip
        self.input_size = input_size
        self.in_chans = in_chans
        self.steps = steps or PhotoSteps.plain()
        self.mean = torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1)

    def __repr__(self) -> str:
        return (f"Preprocess(input_size={self.input_size}, in_chans={self.in_chans}, "
                f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}, steps={self.steps})")  # fmt: skip

    def with_steps(self, steps: PhotoSteps) -> "Preprocess":
        """The same preprocessing with other photo steps."""
        return Preprocess(input_size=self.input_size, in_chans=self.in_chans, mean=self.mean.flatten().tolist(),
                          std=self.std.flatten().tolist(), steps=steps)  # fmt: skip

    def without(self, *names: str) -> "Preprocess":
        """The same preprocessing with these photo steps switched off (see :meth:`PhotoSteps.without`)."""
        return self.with_steps(self.steps.without(*names)) if names else self

    def upright(self, image: Any) -> Any:
        """A PIL image turned as its EXIF orientation says (when the ``exif`` step is on); anything
        else as it is. The detector draws its boxes on this."""
        if self.steps.exif and hasattr(image, "getexif"):
            from PIL import ImageOps

            return ImageOps.exif_transpose(image)
        return image

    def __call__(self, images: Any) -> torch.Tensor:
        if isinstance(images, (list, tuple)):
            if not images:
                raise ValueError("no images given")
            return torch.cat([self(image) for image in images])
        x = self._to_float_batch(self.upright(images))
        if not bool(torch.isfinite(x).all()):
            raise ValueError("the image has pixels that are not finite (NaN or inf); pixels are 0-1 floats or 0-255 integers")
        x = self._fit_channels(self._composite(x))
        s = self.steps
        if s.auto_invert or s.levels or s.crop or s.pad_square:  # per image: each has its own background and size
            return torch.cat([self._finish(photo_to_dataset(one[None], s)) for one in x])
        return self._finish(x)

    def _finish(self, x: torch.Tensor) -> torch.Tensor:
        native = self.steps.native_size
        if native is not None and native < self.input_size:
            x = _resize(x, native)  # as the training images were: data set resolution, then upsampled
        return (_resize(x, self.input_size) - self.mean) / self.std

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

    @staticmethod
    def _composite(x: torch.Tensor) -> torch.Tensor:
        # An RGBA tensor: composite over black, as for PIL images.
        return x[:, :3] * x[:, 3:4] if x.shape[1] == 4 else x

    def _fit_channels(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        if c not in (1, 3):
            raise ValueError(f"expected a 1-, 3- or 4-channel image, got {c} channels (shape {tuple(x.shape)})")
        if c == self.in_chans:
            return x
        if self.in_chans == 1:
            return (x * _LUMA.to(x.dtype)).sum(dim=1, keepdim=True)
        return x.expand(-1, self.in_chans, -1, -1)


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-2:] == (size, size):
        return x
    # Bilinear; antialiased when shrinking (a large photo would alias), not when enlarging, which
    # is how the training batches are upsampled (zoo.data.augment).
    return TF.resize(x, [size, size], antialias=min(x.shape[-2:]) > size)
