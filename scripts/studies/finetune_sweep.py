#!/usr/bin/env python
"""Compare fine-tuning recipes on one folder's validation split: each variant once per seed, fine-tune only.

    python scripts/studies/finetune_sweep.py digits --source lenet_bn --no-hflip --out runs/sweep
    python scripts/studies/finetune_sweep.py digits --source lenet_bn --no-hflip --variants default,constant_book_ratio
    python scripts/studies/finetune_sweep.py split-s1/target --source split-s1/source --variants default,centroid_head

Prints one line per variant: mean ± sd of the validation top-1 over the seeds, the runs, and the
wall time. This is how the default recipe of `zoo finetune` was chosen (README, "Fine-tuning on your
own images"; the log is results/finetune/sweep-digits-10.log). Choose on a folder you will not
report on alone: the comparison with training from scratch is `zoo finetune --compare-scratch`.
Each variant is the default recipe with the settings it names changed; "warm-up 5 %" and the
unfreeze epoch are counted from the folder's default number of epochs.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch

from zoo.runs import quiet_libraries
from zoo.data.folder import ImageFolderDataModule
from zoo.finetuning import default_epochs, finetune, load_source


class RecipeChange(L.Callback):
    """Change Recipe fields the fine-tuner reads (label smoothing, mixup) that finetune() has no setting for."""

    def __init__(self, **changes: Any) -> None:
        self.changes = changes

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.recipe = pl_module.recipe.replace(**self.changes)

    def __repr__(self) -> str:
        return f"RecipeChange({self.changes})"


class CentroidHead(L.Callback):
    """Start the new head as the nearest-class-mean classifier of the copied features: a Gaussian per
    class with one shared variance, W_c = mu_c / var, b_c = -|mu_c|^2 / (2 var) (imprinting)."""

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        dm, net = trainer.datamodule, pl_module.model
        x, y = dm.normalize(torch.stack(dm.train_set.images)), torch.tensor(dm.train_set.labels)
        net.eval()  # the source's BatchNorm statistics, untouched
        with torch.no_grad():
            f = net.backbone(x)
            mu = torch.stack([f[y == c].mean(0) for c in range(net.num_classes)])
            var = ((f - mu[y]) ** 2).mean()
            net.head.weight.copy_(mu / var)
            net.head.bias.copy_(-(mu**2).sum(1) / (2 * var))
        net.train()

    def __repr__(self) -> str:
        return "CentroidHead()"


class ReinitFrom(L.Callback):
    """Re-initialise the copied backbone from its module ``start`` on (transfer the layers below only)."""

    def __init__(self, start: int) -> None:
        self.start = start

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for layer in list(pl_module.model.backbone)[self.start :]:
            for m in layer.modules():
                if hasattr(m, "reset_parameters"):  # a BatchNorm's resets its running statistics too
                    m.reset_parameters()

    def __repr__(self) -> str:
        return f"ReinitFrom({self.start})"


class FrozenNormStats(L.Callback):
    """Keep the copied BatchNorm layers' running statistics as loaded (eval mode while training)."""

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        for m in pl_module.model.backbone.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()

    def __repr__(self) -> str:
        return "FrozenNormStats()"


def variants(epochs: int) -> dict[str, dict[str, Any]]:
    """The recipes measured, as changes to finetune()'s defaults (``epochs``: the folder's default);
    "callbacks" makes the Lightning callbacks of a change finetune() has no setting for."""
    warmup = round(epochs * 0.05)
    book = dict(schedule="none", backbone_lr_ratio=0.1, warmup_epochs=0.0)  # the default until the cosine
    return {
        "default": {},
        "constant_book_ratio": book,
        "constant_ratio_0.3": {**book, "backbone_lr_ratio": 0.3},
        "cosine_book_ratio": dict(backbone_lr_ratio=0.1, warmup_epochs=0.0),
        "cosine_book_ratio_wu5": dict(backbone_lr_ratio=0.1, warmup_epochs=warmup),
        "cosine_book_ratio_lr2e-2": dict(backbone_lr_ratio=0.1, lr=2e-2, warmup_epochs=0.0),
        "lpft_cosine_book_ratio": dict(backbone_lr_ratio=0.1, freeze="freeze_unfreeze", unfreeze_epoch=epochs // 4, warmup_epochs=0.0),
        "cosine_ratio_0.3": dict(backbone_lr_ratio=0.3, warmup_epochs=0.0),
        "cosine_ratio_0.3_wu5": dict(backbone_lr_ratio=0.3, warmup_epochs=warmup),
        "cosine_ratio_0.3_lr2e-2": dict(backbone_lr_ratio=0.3, lr=2e-2, warmup_epochs=0.0),
        "cosine_ratio_0.3_lr2e-2_wu5": dict(backbone_lr_ratio=0.3, lr=2e-2, warmup_epochs=warmup),
        "cosine_ratio_0.3_lr3e-2_wu5": dict(backbone_lr_ratio=0.3, lr=3e-2, warmup_epochs=warmup),
        "cosine_ratio_0.5": dict(backbone_lr_ratio=0.5, warmup_epochs=0.0),
        "cosine_ratio_0.5_lr2e-2_wu5": dict(backbone_lr_ratio=0.5, lr=2e-2, warmup_epochs=warmup),
        "cosine_ratio_1": dict(warmup_epochs=0.0),
        "cosine_ratio_1_wu5": dict(warmup_epochs=warmup),
        "cosine_ratio_1_lr5e-3_wu5": dict(lr=5e-3, warmup_epochs=warmup),
        "cosine_ratio_1_lr2e-2_wu5": dict(lr=2e-2, warmup_epochs=warmup),
        "l2sp_0.3": dict(l2sp=0.3),
        "l2sp_1": dict(l2sp=1.0),
        "l2sp_3": dict(l2sp=3.0),
        "steps_600": dict(epochs=2 * epochs),
        "no_augment": dict(augment="none"),
        "linear_probe": dict(freeze="freeze"),
        "centroid_head": dict(callbacks=lambda: [CentroidHead()]),
        "label_smoothing_0.1": dict(callbacks=lambda: [RecipeChange(label_smoothing=0.1)]),
        "mixup_0.2": dict(callbacks=lambda: [RecipeChange(mixup=0.2)]),
        # lenet_bn's backbone: 9 is its first Linear (256 -> 120), 12 its second (120 -> 84).
        "reinit_from_9": dict(callbacks=lambda: [ReinitFrom(9)]),
        "reinit_from_12": dict(callbacks=lambda: [ReinitFrom(12)]),
        "frozen_norm_stats": dict(callbacks=lambda: [FrozenNormStats()]),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", help="image folder (root/<class>/* or root/train|val/<class>/*)")
    p.add_argument("--source", default="lenet_bn")
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--variants", help="comma-separated names (default: all); --list shows them")
    p.add_argument("--list", action="store_true", help="list the variants and exit")
    p.add_argument("--no-hflip", action="store_true")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--out", default="runs/sweep", help="run folders: OUT/<variant>/<seed>/version_0")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    quiet_libraries()

    dm = ImageFolderDataModule.for_model(load_source(args.source), args.data, batch_size=args.batch_size)
    dm.setup()
    table = variants(default_epochs(len(dm.train_set), args.batch_size))
    if args.list:
        for name, changes in table.items():
            shown = {k: (v() if k == "callbacks" else v) for k, v in changes.items()}
            print(f"{name:32s} {shown}")
        return 0
    chosen = args.variants.split(",") if args.variants else list(table)
    unknown = [n for n in chosen if n not in table]
    if unknown:
        print(f"finetune_sweep: unknown variant(s) {unknown}; --list shows them", file=sys.stderr)
        return 2
    seeds = [int(s) for s in args.seeds.split(",")]
    for name in chosen:
        start = time.time()
        changes = dict(table[name])
        callbacks = changes.pop("callbacks", list)
        accs = [finetune(args.source, args.data, seed=seed, hflip=not args.no_hflip, batch_size=args.batch_size,
                         out_dir=Path(args.out) / name / str(seed), progress_bar=False, callbacks=callbacks(), **changes)["val_acc"]
                for seed in seeds]  # fmt: skip
        sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
        print(f"{name:32s} {statistics.fmean(accs):.4f} ± {sd:.4f}  {[round(a, 3) for a in accs]}  {time.time() - start:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
