#!/usr/bin/env python
"""How well do the bundled classifiers read photos? Real Fashion-MNIST test images, made photo-like
(zoo.data.photos: dark on an off-white background, off-centre, JPEG, landscape and portrait sizes,
one set stored sideways with an EXIF orientation), scored with each model's own preprocessing
(its recorded PhotoSteps), with none of the steps, and (first model) with each step left out.

    python scripts/studies/photo_eval.py                       # 2,000 test images, every bundled classifier
    python scripts/studies/photo_eval.py --models lenet_bn --limit 500

Writes results/photo-steps.json and prints the README's table.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import time
from pathlib import Path

import torch
from PIL import Image
from tqdm import tqdm

import zoo
from zoo.data.fashion_mnist import load_fashion_mnist
from zoo.data.photos import photo_like
from zoo.data.preprocess import PhotoSteps

ROOT = Path(__file__).resolve().parents[2]
#: name -> (width, height, stored sideways with an EXIF orientation)
VARIANTS = {"640x480": (640, 480, False), "480x640 EXIF-rotated": (480, 640, True), "1024x768": (1024, 768, False)}
DEFAULT_MODELS = "lenet_bn,softmax,mlp,lenet,resnet18,densenet"


@torch.no_grad()
def accuracy(model, images: list[Image.Image], labels: torch.Tensor, steps: PhotoSteps, batch: int = 100) -> float:
    pre = model.preprocess.with_steps(steps)
    hits = 0
    for i in range(0, len(images), batch):
        hits += int((model(pre(images[i:i + batch])).argmax(-1) == labels[i:i + batch]).sum())
    return hits / len(images)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=DEFAULT_MODELS, help="comma list; the first also gets the per-step ablation")
    ap.add_argument("--limit", type=int, default=2000, help="the first N test images")
    ap.add_argument("--out", default=str(ROOT / "results" / "photo-steps.json"))
    args = ap.parse_args()

    data = load_fashion_mnist()
    images, labels = data["test_images"][: args.limit], data["test_labels"][: args.limit]
    sets = {"clean 28x28": [Image.fromarray(x.numpy()) for x in images]}
    for name, (w, h, rotated) in VARIANTS.items():
        sets[name] = [Image.open(io.BytesIO(photo_like(x, size=(w, h), seed=i, exif_rotated=rotated)))
                      for i, x in enumerate(tqdm(images, desc=f"making {name} photos", leave=False))]  # fmt: skip
    models = args.models.split(",")
    rows, ablation = [], {}
    start = time.perf_counter()
    for i, name in enumerate(models):
        model = zoo.load(name)
        steps = model.photo_steps
        for set_name, imgs in tqdm(sets.items(), desc=name, leave=False):
            rows.append({"model": name, "images": set_name, "steps": accuracy(model, imgs, labels, steps),
                         "plain": accuracy(model, imgs, labels, PhotoSteps.plain())})  # fmt: skip
            if i == 0:
                ablation[set_name] = {f.name: accuracy(model, imgs, labels, steps.without(f.name)) for f in dataclasses.fields(PhotoSteps)}
    result = {"test_images": args.limit, "variants": {k: list(v) for k, v in VARIANTS.items()}, "rows": rows,
              "ablation_model": models[0], "ablation": ablation, "seconds": round(time.perf_counter() - start, 1),
              "command": "python scripts/studies/photo_eval.py" + (f" --models {args.models}" if args.models != DEFAULT_MODELS else "")
              + (f" --limit {args.limit}" if args.limit != 2000 else "")}  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")

    names = list(sets)
    print(f"Top-1 on the first {args.limit} test images; each cell: with the model's photo steps / with none\n")
    print("| model | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for name in models:
        cells = {r["images"]: r for r in rows if r["model"] == name}
        print(f"| `{name}` | " + " | ".join(f"{cells[n]['steps']:.4f} / {cells[n]['plain']:.4f}" for n in names) + " |")
    print(f"\n`{models[0]}` with one step left out:\n")
    steps = [f.name for f in dataclasses.fields(PhotoSteps)]
    print("| images | " + " | ".join(f"no {s}" for s in steps) + " |")
    print("|---|" + "---:|" * len(steps))
    for n in names:
        print(f"| {n} | " + " | ".join(f"{ablation[n][s]:.4f}" for s in steps) + " |")
    print(f"\nwrote {args.out} ({result['seconds']} s)")


if __name__ == "__main__":
    main()
