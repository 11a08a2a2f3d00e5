#!/usr/bin/env python
"""Draw a segmenter's masks on Fashion-MNIST test scenes: each row the scene, the true label map
and the predicted one, in zoo.predict.PALETTE's colours (a legend below).

    python scripts/segment.py --model fcn --scenes 4 --out results/plots/fcn-scenes.png

The scenes are the test split of FashionMNISTScenesDataModule (only official test images).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from PIL import Image, ImageDraw
from torchvision.utils import make_grid

import zoo
from zoo.detection.scenes import FashionMNISTScenesDataModule
from zoo.predict import PALETTE


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="fcn", help="zoo name or checkpoint folder of a segmenter")
    p.add_argument("--scenes", type=int, default=4)
    p.add_argument("--scale", type=int, default=2, help="enlarge the 96x96 scenes this much for drawing")
    p.add_argument("--out", type=Path, default=Path("results/plots/fcn-scenes.png"))
    args = p.parse_args()

    model = zoo.load(args.model)
    dm = FashionMNISTScenesDataModule(num_train=1, num_val=1, num_test=args.scenes, canvas=model.input_size, label_maps=True)
    dm.setup()
    scenes, truth = dm.sets["test"].tensors
    predicted = model.segment(dm.normalise(scenes))
    colours = torch.tensor(PALETTE, dtype=torch.uint8)
    side = model.input_size * args.scale

    def big(img: torch.Tensor) -> torch.Tensor:  # (3, H, W) uint8, enlarged without blurring the labels
        return torch.nn.functional.interpolate(img[None].float(), size=(side, side), mode="nearest")[0].to(torch.uint8)

    tiles = []
    for scene, true_map, pred_map in zip(scenes, truth, predicted):
        tiles += [big(scene.expand(3, -1, -1)), big(colours[true_map.long()].permute(2, 0, 1)), big(colours[pred_map].permute(2, 0, 1))]
    grid = Image.fromarray(make_grid(tiles, nrow=3, padding=4, pad_value=255).permute(1, 2, 0).numpy())
    # A legend: each label's colour and name.
    legend = Image.new("RGB", (grid.width, 16 * ((model.num_classes + 2) // 3)), "white")
    draw = ImageDraw.Draw(legend)
    for i, name in enumerate(model.label_names):
        x, y = (i % 3) * grid.width // 3 + 4, (i // 3) * 16 + 2
        draw.rectangle([x, y, x + 12, y + 12], fill=PALETTE[i], outline="gray")
        draw.text((x + 18, y), name, fill="black")
    out = Image.new("RGB", (grid.width, grid.height + legend.height), "white")
    out.paste(grid, (0, 0))
    out.paste(legend, (0, grid.height))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    out.save(args.out)
    print(f"wrote {args.out} (columns: scene, truth, {model.model_name})")


if __name__ == "__main__":
    main()
