"""The one image reader of the zoo: ``zoo predict``, ``zoo eval --data``, ``zoo finetune`` (image
folders), ``zoo serve`` and ``zoo stylize`` all open images through :func:`open_image`.

Its point is a size check *before* decoding. A PNG of 13,000 x 13,000 black pixels is under 0.5 MB
on disk and 0.5 GB once decoded, and PIL only warns below 179 megapixels. So the header's size is
read first and an image over :data:`MAX_PIXELS` is refused without decoding a pixel, and PIL's own
decompression-bomb warning is an error here.
"""

from __future__ import annotations

import warnings
from typing import Any

__all__ = ["MAX_PIXELS", "ImageTooLarge", "open_image"]

#: The most pixels an image may have: 64 megapixels (8000 x 8000), above any phone photo's default
#: size, and about 200 MB decoded as RGB.
MAX_PIXELS = 64_000_000


class ImageTooLarge(ValueError):
    """An image whose header declares more than :data:`MAX_PIXELS` pixels (nothing was decoded)."""


def open_image(source: Any) -> Any:
    """The image in ``source`` (a path or a binary file object), fully decoded, as a PIL image.

    Raises :class:`ImageTooLarge` for more than :data:`MAX_PIXELS` pixels (checked on the header,
    before decoding), ``PIL.UnidentifiedImageError`` for a file PIL cannot identify, and
    ``OSError`` / ``ValueError`` for a truncated or corrupt one.
    """
    from PIL import Image

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", Image.DecompressionBombWarning)
            img = Image.open(source)  # reads the header only
    except Image.DecompressionBombError as err:  # over twice PIL's own limit: it refuses in open()
        raise ImageTooLarge(f"{err} (the zoo's limit is {MAX_PIXELS:,} pixels)") from None
    with img:
        width, height = img.size
        if width * height > MAX_PIXELS:
            raise ImageTooLarge(f"{width}x{height} pixels is over the zoo's limit of {MAX_PIXELS:,} pixels "
                                f"({MAX_PIXELS // 1_000_000} megapixels): scale it down first")  # fmt: skip
        if any(issubclass(w.category, Image.DecompressionBombWarning) for w in caught):
            raise ImageTooLarge(f"{width}x{height} pixels is over PIL's decompression-bomb limit: scale it down first")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # a format that finds its size late
            try:
                img.load()
            except Image.DecompressionBombWarning as err:
                raise ImageTooLarge(f"{err} (the zoo's limit is {MAX_PIXELS:,} pixels)") from None
        return img.copy()
