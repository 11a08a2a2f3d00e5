#!/usr/bin/env python
"""Prove on the CPU that a recipe learns, before any GPU time is spent on it.

For each classifier, run the start of its registered recipe on real Fashion-MNIST: its optimiser,
peak learning rate, momentum, weight decay, label smoothing and augmentation, with its warm-up (if
it has one) shortened to ``--warmup-steps`` optimisation steps and the cosine stretched so that the
learning rate then stays near its peak: the regime in which both failed GPU runs died. Batches are
capped at ``--max-batch`` images at the same learning rate (a noisier, so harsher, test that fits a
2-core CPU). After ``--steps`` steps the model is scored on held-out validation images. A recipe fails when its training loss did not fall
or its validation accuracy stayed near chance:

    loss:     mean of the last 5 steps <= (1 - --min-loss-drop) x mean of the first 3 steps
    accuracy: validation top-1 >= --min-acc (chance is 0.10)

The EMA of the weights, which the real run validates with, is left out: after a few dozen steps it
still mostly holds the initial weights, and the question here is whether the optimiser learns.

The check is a proxy, and harsher than a real run (a short warm-up, a small batch). Where a full
run of exactly this recipe is on the leaderboard (results/leaderboard.csv, matched by the recipe's
fingerprint) and scored well above chance, that measurement wins: such recipes are not re-checked
unless ``--all`` is given, and a failed check of one is reported beside its measurement and does
not count as a failure. vgg11 is such a case: SGD with Nesterov momentum 0.9 at
lr 0.05 collapses here on batches of 64 after a 10- or 30-step warm-up, yet reached 0.9407 on an
H200 with batches of 256 and a 215-step warm-up.

    python scripts/check_recipes.py                          # every recipe no full run has measured yet
    python scripts/check_recipes.py --all                    # all ten classifiers (about 10 minutes on 2 cores)
    python scripts/check_recipes.py --models googlenet,nin
    python scripts/check_recipes.py --models googlenet --set lr=0.05 --set nesterov=true   # try a variant
    python scripts/check_recipes.py --models resnet18 --recipe speedrun                   # a named recipe

Exit status 1 when any recipe fails.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
import warnings
from pathlib import Path

import lightning as L
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import zoo  # noqa: E402
from zoo.recipe import Recipe  # noqa: E402
from zoo.report import read_leaderboard_csv, recipe_fingerprint  # noqa: E402

MEASURED_WELL = 0.5  # a full run's test top-1 well above chance (0.10)


class _Trace(L.Callback):
    """Every step's training loss; stops the run after ``steps`` optimisation steps."""

    def __init__(self, steps: int) -> None:
        self.steps, self.losses = steps, []

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.losses.append(float(loss))
        if trainer.global_step >= self.steps:
            trainer.should_stop = True


@torch.no_grad()
def _score(model: L.LightningModule, dm: L.LightningDataModule) -> tuple[float, int]:
    """Validation top-1, and how many classes the model predicts at all: shown beside the verdict,
    since a class never predicted can mean a dead output unit (NiN's class scores pass through a
    ReLU: once a class's channel is all zero it can never win again)."""
    model.eval()
    correct = total = 0
    seen: set[int] = set()
    for images, labels in dm.val_dataloader():
        x, y = dm.on_after_batch_transfer((images, labels), 0)
        pred = model(x).argmax(-1)
        correct, total = correct + int((pred == y).sum()), total + len(y)
        seen.update(pred.tolist())
    return correct / total, len(seen)


def check(name: str, *, steps: int = 60, warmup_steps: int = 10, val_images: int = 300, changes: dict | None = None,
          max_batch: int | None = None, seed: int = 0, min_loss_drop: float = 0.1, min_acc: float = 0.25,
          data_dir: str | None = None, preset: str | None = None) -> dict:  # fmt: skip
    """Run the start of ``name``'s recipe (or its ``preset``; with ``changes``) and say whether it learns."""
    spec = zoo.get_spec(name)
    recipe = spec.get_recipe(preset).layered(changes or {})
    if max_batch and recipe.batch_size > max_batch:
        # Same learning rate on a smaller batch: a noisier, so harsher, test of the step size.
        recipe = recipe.replace(batch_size=max_batch)
    # One check epoch is the warm-up (if the recipe has one): the learning rate rises to the recipe's
    # peak over warmup_steps, then its cosine spans a run 20x longer than the check, so it stays
    # near the peak, where a recipe that does not learn shows it.
    recipe = recipe.replace(warmup_epochs=1.0 if recipe.warmup_epochs else 0.0, epochs=math.ceil(20 * steps / warmup_steps))
    per_epoch = warmup_steps
    L.seed_everything(seed, workers=True, verbose=False)
    model = zoo.create_model(name, recipe=recipe)
    dm = model.datamodule(data_dir=data_dir, seed=seed, train_limit=per_epoch * recipe.batch_size, eval_limit=val_images)
    trace = _Trace(steps)
    trainer = L.Trainer(max_epochs=recipe.epochs, accelerator="cpu", devices=1, precision=recipe.precision, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, num_sanity_val_steps=0, callbacks=[trace])  # fmt: skip
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*(LeafSpec|does not have many workers|smaller than the logging interval).*")
        trainer.fit(model, datamodule=dm)
    acc, classes = _score(model, dm)
    losses = trace.losses
    first, last = sum(losses[:3]) / 3, sum(losses[-5:]) / 5
    finite = all(math.isfinite(v) for v in losses)
    reasons = []
    if not finite or not last <= (1 - min_loss_drop) * first:
        reasons.append(f"loss did not fall ({first:.3f} -> {last:.3f})")
    if not acc >= min_acc:
        reasons.append(f"validation accuracy {acc:.3f} stayed near chance (needs >= {min_acc})")
    return {"model": name, "ok": not reasons, "steps": len(losses), "loss_first": round(first, 4), "loss_last": round(last, 4),
            "val_acc": round(acc, 4), "classes": classes, "batch_size": recipe.batch_size, "seconds": round(time.perf_counter() - start, 1), "why": "; ".join(reasons),
            "changes": changes or {}}  # fmt: skip


def _value(text: str):
    for kind in (json.loads, str):
        try:
            return kind(text)
        except ValueError:
            pass


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="all", help="comma list of classifiers (default: every classifier)")
    p.add_argument("--recipe", metavar="PRESET", help="check a named recipe of the models instead (resnet18: speedrun)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="change a recipe field (repeatable)")
    p.add_argument("--steps", type=int, default=60, help="optimisation steps per model")
    p.add_argument("--max-batch", type=int, default=64,
                   help="cap the recipe's batch size (same learning rate: noisier, so harsher; 0: no cap)")
    p.add_argument("--warmup-steps", type=int, default=10, help="steps of the shortened warm-up")
    p.add_argument("--val-images", type=int, default=300)
    p.add_argument("--leaderboard", type=Path, default=ROOT / "results" / "leaderboard.csv",
                   help="full runs that outrank the check (rows with the same recipe fingerprint)")
    p.add_argument("--all", action="store_true", help="also run the recipes a full run has measured (about 10 minutes for all ten)")
    p.add_argument("--min-loss-drop", type=float, default=0.1)
    p.add_argument("--min-acc", type=float, default=0.25)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)

    classifiers = [n for n in zoo.list_models() if issubclass(zoo.get_spec(n).model_class, zoo.ImageClassifier)]
    names = classifiers if args.models == "all" else [m.strip() for m in args.models.split(",") if m.strip()]
    for n in names:
        if n not in classifiers:
            zoo.get_spec(n)  # did-you-mean for typos
            p.error(f"{n} is not a classifier; choose from {', '.join(classifiers)}")
    changes = {}
    for item in args.set:
        field, sep, value = item.partition("=")
        if not sep or field not in Recipe.field_names():
            p.error(f"--set takes FIELD=VALUE with a recipe field ({', '.join(Recipe.field_names())}), got {item!r}")
        changes[field] = _value(value)

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no Trainer banners between the rows
    board = read_leaderboard_csv(args.leaderboard)
    results, failed = [], 0
    print(f"{'model':<10} {'batch':>5} {'steps':>5} {'loss first':>10} {'loss last':>9} {'val acc':>7} {'classes':>7} {'s':>6}  verdict")
    for name in names:
        row = board.get(name, {})
        recipe = zoo.get_spec(name).get_recipe(args.recipe).layered(changes)
        measured = row.get("recipe") == recipe_fingerprint(recipe.to_dict()) and float(row.get("test_top1") or 0) >= MEASURED_WELL
        if measured and not args.all:
            results.append({"model": name, "ok": True, "measured": float(row["test_top1"]), "changes": changes, "why": "skipped"})
            print(f"{name:<10} measured by a full run of this recipe: test top-1 {float(row['test_top1']):.4f} ({row['hardware']}); "
                  "not re-checked (--all runs it)", flush=True)  # fmt: skip
            continue
        try:
            r = check(name, steps=args.steps, warmup_steps=args.warmup_steps, val_images=args.val_images, changes=changes,
                      max_batch=args.max_batch or None, seed=args.seed, min_loss_drop=args.min_loss_drop, min_acc=args.min_acc, data_dir=args.data_dir,
                      preset=args.recipe)  # fmt: skip
        except Exception as err:  # a recipe that cannot even start is a failed check, not a crash of the others
            r = {"model": name, "ok": False, "why": f"{type(err).__name__}: {err}", "changes": changes}
        if not r["ok"] and measured:
            r["measured"] = float(row["test_top1"])
            r["why"] += f"; but a full run of this recipe measured {r['measured']:.4f} ({row['hardware']}), which outranks the check"
        results.append(r)
        failed += not r["ok"] and "measured" not in r
        if "steps" in r:
            print(f"{name:<10} {r['batch_size']:>5} {r['steps']:>5} {r['loss_first']:>10.3f} {r['loss_last']:>9.3f} {r['val_acc']:>7.3f} {r['classes']:>7} {r['seconds']:>6.1f}  "
                  + ("learns" if r["ok"] else f"FAILS: {r['why']}"), flush=True)  # fmt: skip
        else:
            print(f"{name:<10} FAILS: {r['why']}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    checked = [r for r in results if r.get("why") != "skipped"]
    outranked = sum("measured" in r for r in checked)
    print(f"{len(checked) - failed - outranked} of {len(checked)} checked recipes learn" + (f"; {failed} fail" if failed else "")
          + (f"; {outranked} fail the check but a full run measured them" if outranked else "")
          + (f"; {len(results) - len(checked)} measured by a full run, not re-checked" if len(results) > len(checked) else ""))  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
