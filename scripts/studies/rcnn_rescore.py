#!/usr/bin/env python
"""Where faster_rcnn's mAP@0.5 is lost, and whether a zoo classifier on each detection's crop wins
it back (the first R-CNN's second stage: a CNN classifies each region), on validation scenes only.

Rows: the detector as it is; its boxes with every label made one (so only the boxes count); and for
each ``--classifiers`` model, each detection's square crop (centred on the box, its side the box's
longer one: about the item's own 28x28 frame) classified by the bundled classifier, three ways: the
classifier's label, the detector's label re-scored by the geometric mean of the two probabilities,
and the classifier's accuracy on the true boxes' crops. Deterministic (bundled weights, fixed scenes).

    python scripts/studies/rcnn_rescore.py --classifiers resnet18,lenet_bn
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torchmetrics.detection import MeanAveragePrecision
from torchvision.ops import roi_align

import zoo
from zoo.detection.scenes import scenes_for


def square_crops(scene: torch.Tensor, boxes: torch.Tensor, side: int = 28) -> torch.Tensor:
    """(K, 1, side, side) crops of ``scene`` (1, H, W) in [0, 1]: squares on the boxes' centres."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]).amax(dim=1, keepdim=True).clamp(min=4) / 2
    rois = torch.cat([torch.zeros(len(boxes), 1), centre - half, centre + half], dim=1)
    return roi_align(scene[None], rois, output_size=(side, side), sampling_ratio=2, aligned=True)


def classify(clf: torch.nn.Module, crops: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """Class probabilities of 28x28 crops, upsampled to the classifier's input as its training images were."""
    x = F.interpolate(crops, size=clf.input_size, mode="bilinear", align_corners=False) if clf.input_size != 28 else crops
    return clf((x - mean) / std).softmax(-1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--classifiers", default="resnet18,lenet_bn")
    p.add_argument("--scenes", type=int, default=1000, help="validation scenes")
    p.add_argument("--out", type=Path, default=Path("results/rcnn-rescore.json"))
    args = p.parse_args()
    torch.set_grad_enabled(False)
    det = zoo.load("faster_rcnn")
    dm = scenes_for(det, eval_limit=args.scenes)
    dm.setup()
    scenes, targets = dm.sets["val"].tensors
    truths = [{"boxes": t[t[:, 0] >= 0, 1:] * 96, "labels": t[t[:, 0] >= 0, 0].long()} for t in targets]
    start = time.perf_counter()
    dets = [{k: (v * 96 if k == "boxes" else v) for k, v in d.items()}
            for i in range(0, len(scenes), 64) for d in det.detect(dm.normalise(scenes[i : i + 64]))]  # fmt: skip
    rows = {"detector": {"s": time.perf_counter() - start, "preds": dets}}
    rows["boxes only (one label)"] = {"preds": [{**d, "labels": torch.zeros_like(d["labels"])} for d in dets],
                                     "truths": [{**t, "labels": torch.zeros_like(t["labels"])} for t in truths]}  # fmt: skip
    accuracy = {}
    for name in args.classifiers.split(","):
        clf = zoo.load(name)
        start = time.perf_counter()
        probs = [classify(clf, square_crops(s.float() / 255, d["boxes"]), dm.mean, dm.std) for s, d in zip(scenes, dets)]
        seconds = time.perf_counter() - start
        own = [{**d, "labels": p.argmax(-1), "scores": d["scores"] * p.amax(-1)} for d, p in zip(dets, probs)]
        mixed = [{**d, "scores": (d["scores"] * p.gather(1, d["labels"][:, None])[:, 0]).sqrt()} for d, p in zip(dets, probs)]
        rows[f"{name}'s labels"] = {"preds": own, "s": seconds}
        rows[f"detector's labels, scores x {name}'s"] = {"preds": mixed, "s": seconds}
        hits = [(classify(clf, square_crops(s.float() / 255, t["boxes"]), dm.mean, dm.std).argmax(-1) == t["labels"])
                for s, t in zip(scenes, truths)]  # fmt: skip
        accuracy[name] = round(torch.cat(hits).float().mean().item(), 4)
    results = {"command": f"python scripts/studies/rcnn_rescore.py --classifiers {args.classifiers} --scenes {args.scenes}",
               "split": "val", "scenes": args.scenes, "true-box crop accuracy": accuracy, "rows": {}}  # fmt: skip
    for label, row in rows.items():
        metric = MeanAveragePrecision(iou_type="bbox")
        metric.update(row["preds"], row.get("truths", truths))
        m = metric.compute()
        results["rows"][label] = {"map50": round(float(m["map_50"]), 4), "map": round(float(m["map"]), 4)}
        if "s" in row:
            results["rows"][label]["ms per scene"] = round(1000 * row["s"] / len(scenes), 2)
        print(f"{label:45s} mAP@0.5 {m['map_50']:.4f}  mAP@[.5:.95] {m['map']:.4f}")
    print("classifier accuracy on the true boxes' crops:", accuracy)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
