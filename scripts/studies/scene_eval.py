#!/usr/bin/env python
"""Score scene models on the test scenes with each background: the usual faint noise, a clean
black canvas and a gradient. The items, their places and boxes are the same in all three, so
the differences are the background's alone. Also each model's inference speed on this CPU
(scenes per second, batches of 64, after one warm-up batch). Models measured before in ``--out``
and not named this time keep their rows (each row keeps the command that made it).

    python scripts/studies/scene_eval.py --models tiny_ssd,ssd_fmnist,faster_rcnn --out results/scene-backgrounds.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import lightning as L
import torch

import zoo
import zoo.train  # noqa: F401  (its import keeps Lightning's tips off the console)
from zoo.detection.scenes import BACKGROUNDS, FashionMNISTScenesDataModule


def scores(model: L.LightningModule, background: str, *, num_test: int = 2_000) -> dict[str, float]:
    """The model's test scores on ``num_test`` test scenes with ``background``."""
    dm = FashionMNISTScenesDataModule(num_train=1, num_val=1, num_test=num_test, canvas=model.input_size,
                                      label_maps=model.task == "segmentation", instance_maps=getattr(model, "instance_masks", False),
                                      test_backgrounds=(background,))  # fmt: skip
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False)
    (result,) = trainer.test(model, datamodule=dm, verbose=False)
    return {k: round(float(v), 4) for k, v in result.items() if k != "test/loss"}


@torch.no_grad()
def scenes_per_second(model: L.LightningModule, *, num: int = 512, batch_size: int = 64) -> float:
    """Test scenes a second through the model's forward pass (and a detector's decoding) on the CPU."""
    dm = FashionMNISTScenesDataModule(num_train=1, num_val=1, num_test=num, canvas=model.input_size)
    dm.setup()
    batches = dm.normalise(dm.sets["test"].tensors[0]).split(batch_size)
    run = model.detect if model.task == "detection" else model
    model.eval()
    run(batches[0])  # warm-up: first-call allocations and kernel choice
    began = time.perf_counter()
    for x in batches:
        run(x)
    return round(num / (time.perf_counter() - began), 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="tiny_ssd,ssd_fmnist,faster_rcnn", help="comma-separated zoo names or checkpoint folders")
    p.add_argument("--scenes", type=int, default=2_000, help="test scenes per background")
    p.add_argument("--out", type=Path, default=Path("results/scene-backgrounds.json"))
    args = p.parse_args()
    command = shlex.join(["python", "scripts/studies/scene_eval.py", *sys.argv[1:]])
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    if results.get("scenes") != args.scenes:  # rows measured on another number of scenes are not comparable
        results = {"scenes": args.scenes, "models": {}}
    for name, row in results["models"].items():
        row.setdefault("command", results.get("command"))
    results["command"] = command
    for name in args.models.split(","):
        model = zoo.load(name)
        results["models"][name] = row = {bg: scores(model, bg, num_test=args.scenes) for bg in BACKGROUNDS}
        print(name, "  ".join(f"{bg}: " + ", ".join(f"{k.split('/')[1]} {v:.4f}" for k, v in s.items()) for bg, s in row.items()))
        row["scenes_per_second"] = scenes_per_second(model)
        row["command"] = command
        print(f"{name}: {row['scenes_per_second']} scenes/s on the CPU ({torch.get_num_threads()} threads)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
