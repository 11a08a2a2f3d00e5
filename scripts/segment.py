#!/usr/bin/env python
"""Draw a segmenter's masks on Fashion-MNIST test scenes: each row the scene, the true label map
and the predicted one, in zoo.predict.PALETTE's colours (a legend below). It also prints each
label's IoU over the whole test split (2,000 scenes; --iou-scenes 0 skips it).

    python scripts/segment.py --model fcn --scenes 4 --out results/plots/fcn-scenes.png

The scenes are the test split of FashionMNISTScenesDataModule (only official test images).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from PIL import Image, ImageDraw
from torchmetrics.classification import MulticlassJaccardIndex
from torchvision.utils import make_grid
from tqdm import tqdm

import zoo
from zoo.detection.scenes import FashionMNISTScenesDataModule
from zoo.predict import PALETTE


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="fcn", help="zoo name or checkpoint folder of a segmenter")
    p.add_argument("--scenes", type=int, default=4)
    p.add_argument("--scale", type=int, default=2, help="enlarge the 96x96 scenes this much for drawing")
    p.add_argument("--out", type=Path, default=Path("results/plots/fcn-scenes.png"))
    p.add_argument("--iou-scenes", type=int, default=2000, help="test scenes to score each label's IoU on (0: none)")
    args = p.parse_args()
    if args.scenes < 1 or args.iou_scenes < 0:
        p.error("--scenes must be at least 1 and --iou-scenes at least 0")

    model = zoo.load(args.model)
    # The first scenes of a split are the same whatever its size, so the drawn ones are among the scored.
    dm = FashionMNISTScenesDataModule(num_train=1, num_val=1, num_test=max(args.scenes, args.iou_scenes),
                                      canvas=model.input_size, label_maps=True)  # fmt: skip
    dm.setup()
    scenes, truth = dm.sets["test"].tensors
    if args.iou_scenes:
        # Summed over the split first, as the mean IoU zoo eval reports (MulticlassJaccardIndex).
        iou = MulticlassJaccardIndex(model.num_classes, average=None)
        for start in tqdm(range(0, args.iou_scenes, 200), desc="IoU", unit="batch"):
            batch = slice(start, min(start + 200, args.iou_scenes))
            iou.update(model.segment(dm.normalise(scenes[batch])), truth[batch].long())
        per_label = iou.compute()
        print(f"IoU on {args.iou_scenes} test scenes (mean {per_label.mean():.4f}):")
        for name, value in sorted(zip(model.label_names, per_label.tolist()), key=lambda kv: -kv[1]):
            print(f"  {name:<12} {value:.4f}")
    scenes, truth = scenes[: args.scenes], truth[: args.scenes]
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
