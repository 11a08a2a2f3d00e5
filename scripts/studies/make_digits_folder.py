#!/usr/bin/env python
"""Write a real, small, offline image data set as an image folder, for trying `zoo finetune`.

    pip install scikit-learn        # not a d2l-zoo dependency; it ships the data
    python scripts/studies/make_digits_folder.py data/digits --train-per-class 10

The images are scikit-learn's copy of the UCI handwritten digits (1,797 scans of digits 0-9 by 43
people, 8x8 pixels, 16 gray levels), written as 8-bit PNGs: root/train/<digit>/*.png with
--train-per-class images per digit, and root/val/<digit>/*.png with the rest. A different domain
from Fashion-MNIST's clothes, and few training images: the setting where fine-tuning pays.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", type=Path)
    p.add_argument("--train-per-class", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise SystemExit("this script needs scikit-learn, which ships the digits: pip install scikit-learn") from None
    digits = load_digits()
    rng = np.random.default_rng(args.seed)
    counts = {"train": 0, "val": 0}
    for d in range(10):
        idx = rng.permutation(np.nonzero(digits.target == d)[0])
        for split, chosen in (("train", idx[: args.train_per_class]), ("val", idx[args.train_per_class :])):
            folder = args.root / split / str(d)
            folder.mkdir(parents=True, exist_ok=True)
            for i in chosen:
                pixels = (digits.images[i] * (255 / 16)).round().astype(np.uint8)  # 0..16 -> 0..255
                Image.fromarray(pixels).save(folder / f"{i:04d}.png")
                counts[split] += 1
    print(f"wrote {counts['train']} training and {counts['val']} validation images to {args.root}")


if __name__ == "__main__":
    main()
