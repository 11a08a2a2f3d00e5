#!/usr/bin/env python
"""Which crop rule? Real Fashion-MNIST test images as they are (clean), on black canvases with
random or even 0-16 px margins, and filling one side of white cards of random aspect, scored by a
classifier with the zoo's photo steps under each crop rule:

    none     no crop
    both     crop only when the item spans < 90 % of both sides (the rule before issue 30)
    either   crop to the item whenever it spans < 90 % of either side
    zoo      zoo.data.preprocess.item_box: keep a side the item fills, trim across it, and leave an
             image alone when padding to a square would give the same picture

    python scripts/studies/photo_crop.py                           # lenet_bn, 2,000 test images
    python scripts/studies/photo_crop.py --model resnet18 --limit 1000

Writes results/photo-crop-<model>.json and prints docs/studies/photo-ablations.md's table.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import torch
from PIL import Image
from tqdm import tqdm

import zoo
import zoo.data.preprocess as preprocess
from zoo.data.fashion_mnist import load_fashion_mnist
from zoo.data.photos import card_photo, on_canvas

ROOT = Path(__file__).resolve().parents[2]
ZOO_RULE = preprocess.item_box


def _bbox(item: torch.Tensor) -> tuple[int, int, int, int] | None:
    rows, cols = item.any(1).nonzero(), item.any(0).nonzero()
    return (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1) if len(rows) else None


def _spans(item: torch.Tensor, box: tuple[int, int, int, int]) -> tuple[float, float]:
    return (box[1] - box[0]) / item.shape[0], (box[3] - box[2]) / item.shape[1]


def rule_both(item: torch.Tensor):
    box = _bbox(item)
    return box if box is not None and max(_spans(item, box)) < preprocess.CROP_BELOW else None


def rule_either(item: torch.Tensor):
    box = _bbox(item)
    return box if box is not None and min(_spans(item, box)) < preprocess.CROP_BELOW else None


RULES = {"none": None, "both": rule_both, "either": rule_either, "zoo": ZOO_RULE}


@torch.no_grad()
def accuracy(model, images: list, labels: torch.Tensor, rule, batch: int = 200) -> float:
    pre = model.preprocess if rule is not None else model.preprocess.without("crop")
    preprocess.item_box = rule or ZOO_RULE  # the module's own function looks it up at call time
    try:
        hits = sum(int((model(pre(images[i:i + batch])).argmax(-1) == labels[i:i + batch]).sum())
                   for i in range(0, len(images), batch))  # fmt: skip
    finally:
        preprocess.item_box = ZOO_RULE
    return hits / len(images)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="lenet_bn")
    ap.add_argument("--limit", type=int, default=2000, help="the first N test images")
    args = ap.parse_args()

    data = load_fashion_mnist()
    images, labels = data["test_images"][: args.limit], data["test_labels"][: args.limit]
    sets = {
        "clean 28x28": [Image.fromarray(x.numpy()) for x in images],
        "black canvas, random 0-16 px margins": [Image.fromarray(on_canvas(x, seed=i)) for i, x in enumerate(images)],
        "black canvas, even 0-16 px margins": [Image.fromarray(on_canvas(x, seed=i, even=True)) for i, x in enumerate(images)],
        "white card of random aspect, item fills one side": [Image.open(io.BytesIO(card_photo(x, seed=i)))
                                                             for i, x in enumerate(tqdm(images, desc="cards", leave=False))],
    }  # fmt: skip
    model = zoo.load(args.model)
    table = {name: {rule: accuracy(model, imgs, labels, fn) for rule, fn in RULES.items()} for name, imgs in sets.items()}
    untouched = sum(ZOO_RULE(x.float() / 255 > preprocess.CONTENT_THRESHOLD) is None for x in images)
    out = ROOT / "results" / f"photo-crop-{args.model}.json"
    out.write_text(json.dumps({"model": args.model, "limit": args.limit, "accuracy": table,
                               "clean_images_left_whole": untouched}, indent=2) + "\n")  # fmt: skip
    print(f"| set ({args.model}, {args.limit} test images) | " + " | ".join(RULES) + " |")
    print("|---|" + "---:|" * len(RULES))
    for name, row in table.items():
        print(f"| {name} | " + " | ".join(f"{row[r]:.4f}" for r in RULES) + " |")
    print(f"clean images the zoo rule leaves whole: {untouched} of {len(images)}; wrote {out}")


if __name__ == "__main__":
    main()
