"""Photo-like versions of Fashion-MNIST images: what a phone photo of the item on a table looks like.

The item (a real test image) is dark on a bright, slightly tinted background, smaller than the
frame and off-centre, in a landscape or portrait photo of hundreds of pixels, JPEG-compressed, and
optionally stored sideways with an EXIF orientation tag, as phone cameras do (:func:`photo_like`);
or it fills one side of a white card of random aspect, as a shop's product shots do
(:func:`card_photo`); or it keeps its black background with random margins (:func:`on_canvas`). They measure how
well :class:`~zoo.data.preprocess.PhotoSteps` bring photos back to what the models learnt
(``scripts/studies/photo_eval.py``) and feed the tests and the demo's examples.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

__all__ = ["photo_like", "card_photo", "on_canvas", "EXIF_ORIENTATION"]

#: The EXIF tag a camera sets to say how the stored pixels must be turned for display.
EXIF_ORIENTATION = 0x0112


def photo_like(image: torch.Tensor | np.ndarray, *, size: tuple[int, int] = (640, 480), seed: int = 0,
               exif_rotated: bool = False, quality: int = 90) -> bytes:  # fmt: skip
    """A JPEG (bytes) of a (28, 28) uint8 Fashion-MNIST image as a ``size`` = (width, height) photo.

    The item fills 55-85 % of the shorter side at a random place (drawn from ``seed``), dark on an
    off-white background; with ``exif_rotated`` the pixels are stored turned 90 degrees
    anticlockwise with EXIF orientation 6, which a viewer (and ``PhotoSteps.exif``) turns back.
    """
    item = np.asarray(image, dtype=np.uint8)
    if item.ndim != 2:
        raise ValueError(f"expected one (H, W) uint8 image, got shape {item.shape}")
    width, height = size
    rng = np.random.default_rng(seed)
    side = int(min(width, height) * rng.uniform(0.55, 0.85))
    # Bright background, dark item: the inverse of Fashion-MNIST, tinted like paper under warm light.
    shade = Image.fromarray(255 - item).resize((side, side), Image.Resampling.BICUBIC)
    canvas = np.full((height, width), 255, dtype=np.uint8)
    top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
    canvas[top:top + side, left:left + side] = np.asarray(shade)
    tint = np.array([246, 242, 235], dtype=np.float32) * rng.uniform(0.95, 1.0)
    rgb = canvas[..., None].astype(np.float32) / 255.0 * tint + rng.normal(0.0, 1.5, (height, width, 3))
    photo = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")
    buf = io.BytesIO()
    if exif_rotated:
        exif = Image.Exif()
        exif[EXIF_ORIENTATION] = 6  # "turn 90 degrees clockwise to display"
        photo.transpose(Image.Transpose.ROTATE_90).save(buf, "JPEG", quality=quality, exif=exif.tobytes())
    else:
        photo.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _tight(item: np.ndarray) -> np.ndarray:
    """The item without its blank rows and columns."""
    rows, cols = np.nonzero((item > 25).any(1))[0], np.nonzero((item > 25).any(0))[0]
    return item[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] if len(rows) else item


def card_photo(image: torch.Tensor | np.ndarray, *, seed: int = 0, quality: int = 90) -> bytes:
    """A JPEG (bytes) of a (28, 28) uint8 Fashion-MNIST image dark on a white card whose aspect
    (width / height) is drawn from 0.5-2: the item, trimmed of its margins, is scaled to fill the
    card in one direction (touching both edges) and sits at a random place in the other, as in a
    shop's product shot. The short side of the card is 200-400 px."""
    item = _tight(np.asarray(image, dtype=np.uint8))
    rng = np.random.default_rng(seed)
    aspect, short = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0)))), int(rng.integers(200, 401))
    width, height = (round(short * aspect), short) if aspect >= 1 else (short, round(short / aspect))
    scale = min(width / item.shape[1], height / item.shape[0])
    w, h = min(width, max(1, round(item.shape[1] * scale))), min(height, max(1, round(item.shape[0] * scale)))
    card = np.full((height, width), 255, dtype=np.uint8)
    top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
    card[top:top + h, left:left + w] = 255 - np.asarray(Image.fromarray(item).resize((w, h), Image.Resampling.BICUBIC))
    buf = io.BytesIO()
    Image.fromarray(card).convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def on_canvas(image: torch.Tensor | np.ndarray, *, seed: int = 0, max_margin: int = 16, even: bool = False) -> np.ndarray:
    """A (28, 28) uint8 Fashion-MNIST image as it is, on a larger black canvas: a margin of 0 to
    ``max_margin`` px on each side, drawn from ``seed`` (``even``: the same on every side)."""
    item = np.asarray(image, dtype=np.uint8)
    rng = np.random.default_rng(seed)
    top, bottom, left, right = [int(m) for m in rng.integers(0, max_margin + 1, size=1 if even else 4)] * (4 if even else 1)
    canvas = np.zeros((item.shape[0] + top + bottom, item.shape[1] + left + right), dtype=np.uint8)
    canvas[top:top + item.shape[0], left:left + item.shape[1]] = item
    return canvas
