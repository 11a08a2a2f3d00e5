#!/usr/bin/env python
"""Draw a detector's predictions (red; mask_rcnn's masks coloured by class) and the ground truth
(green) on Fashion-MNIST test scenes.

    python scripts/detect.py --model tiny_ssd --scenes 8 --out results/plots/tiny_ssd-scenes.png
    python scripts/detect.py --model runs/tiny_ssd/version_0/export --save-scenes scenes/   # also the raw PNGs

The scenes are the test split of FashionMNISTScenesDataModule (only official test images).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from PIL import Image
from torchvision.utils import draw_bounding_boxes, make_grid

import zoo
from zoo.detection.scenes import FashionMNISTScenesDataModule
from zoo.predict import overlay_masks


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tiny_ssd", help="zoo name or checkpoint folder of a detector")
    p.add_argument("--scenes", type=int, default=8)
    p.add_argument("--min-score", type=float, default=0.5)
    p.add_argument("--scale", type=int, default=3, help="enlarge the 96x96 scenes this much for drawing")
    p.add_argument("--out", type=Path, help="the picture (default: results/plots/<model>-scenes.png)")
    p.add_argument("--save-scenes", type=Path, help="also write the raw scenes as PNGs here (inputs for `zoo predict`)")
    args = p.parse_args()

    model = zoo.load(args.model)
    out = args.out or Path("results/plots") / f"{model.model_name}-scenes.png"
    dm = FashionMNISTScenesDataModule(num_train=1, num_val=1, num_test=args.scenes, canvas=model.input_size)
    dm.setup()
    scenes, targets = dm.sets["test"].tensors
    found = model.detect(dm.normalise(scenes))
    tiles = []
    side = model.input_size * args.scale
    for i, (scene, target, pred) in enumerate(zip(scenes, targets, found)):
        img = torch.nn.functional.interpolate(scene[None].float(), size=(side, side), mode="nearest")[0].to(torch.uint8)
        img = img.expand(3, -1, -1).contiguous()
        truth = target[target[:, 0] >= 0]
        img = draw_bounding_boxes(img, truth[:, 1:] * side, colors="lime", width=1)
        keep = pred["scores"] >= args.min_score
        if "masks" in pred and keep.any():
            masks = torch.nn.functional.interpolate(pred["masks"][keep][:, None].float(), size=(side, side), mode="nearest")[:, 0] > 0.5
            img = overlay_masks(img, masks, pred["labels"][keep], pred["scores"][keep])
        names = [f"{model.label_names[int(c)]} {float(s):.2f}" for c, s in zip(pred["labels"][keep], pred["scores"][keep])]
        img = draw_bounding_boxes(img, pred["boxes"][keep].clamp(0, 1) * side, labels=names, colors="red", width=2)
        tiles.append(img)
        if args.save_scenes:
            args.save_scenes.mkdir(parents=True, exist_ok=True)
            Image.fromarray(scene[0].numpy()).save(args.save_scenes / f"scene{i}.png")
    grid = make_grid(tiles, nrow=4, padding=4)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid.permute(1, 2, 0).numpy()).save(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
