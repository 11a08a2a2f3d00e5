#!/usr/bin/env python
"""Is mask_rcnn's box gain over faster_rcnn the mask loss, or only the extra epochs? Train the
bundled faster_rcnn on as mask_rcnn's detector was trained (3 more epochs of new scenes, seed 0,
AdamW at 0.3 of the recipe's 1e-3, cosine after half an epoch of warm-up), without a mask head,
and score its boxes on the validation scenes, beside mask_rcnn's. Writes to no store.

    python scripts/studies/rcnn_continue.py
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import lightning as L

import zoo
from zoo.train import evaluate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--out", type=Path, default=Path("results/rcnn-continue.json"))
    args = p.parse_args()
    L.seed_everything(0, verbose=False)
    model = zoo.load("faster_rcnn")
    model.recipe = zoo.Recipe(**{**model.recipe.to_dict(), "lr": args.lr, "epochs": args.epochs})
    model.train()
    data = model.datamodule(seed=0)
    trainer = L.Trainer(accelerator="cpu", max_epochs=args.epochs, reload_dataloaders_every_n_epochs=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0)  # fmt: skip
    began = time.perf_counter()
    trainer.fit(model, datamodule=data)
    seconds = time.perf_counter() - began
    model.eval()
    scores = {"faster_rcnn, continued": evaluate(model, split="val"),
              "faster_rcnn, bundled": evaluate(zoo.load("faster_rcnn"), split="val"),
              "mask_rcnn, bundled (its boxes)": evaluate(zoo.load("mask_rcnn"), split="val")}  # fmt: skip
    result = {"command": f"python scripts/studies/rcnn_continue.py --epochs {args.epochs} --lr {args.lr}", "split": "val",
              "fit_seconds": round(seconds, 1), "rows": {k: {m: round(v, 4) for m, v in s.items()} for k, s in scores.items()}}  # fmt: skip
    for name, s in result["rows"].items():
        print(f"{name:32s} " + "  ".join(f"{k} {v:.4f}" for k, v in s.items()))
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out} ({seconds / 60:.1f} min of training)")


if __name__ == "__main__":
    main()
