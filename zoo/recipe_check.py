"""Does a recipe learn? The start of a model's registered recipe, run on real Fashion-MNIST on the
CPU, before any GPU time is spent on it (``scripts/check_recipes.py``; docs/studies/recipe-checks.md).

Its optimiser, peak learning rate, momentum, weight decay, label smoothing and augmentation, with
its warm-up (if any) shortened to ``warmup_steps`` and the cosine stretched so that the learning
rate then stays near its peak: the regime in which recipes that failed on a GPU died. A recipe
fails when its training loss did not fall by ``min_loss_drop`` or its validation accuracy stayed
under ``min_acc`` (chance is 0.10).
"""

from __future__ import annotations

import math
import time
import warnings

import lightning as L
import torch

from .registry import build_model, get_spec

__all__ = ["check"]


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
          data_dir: str | None = None, preset: str | None = None, input_size: int | None = None) -> dict:  # fmt: skip
    """Run the start of ``name``'s recipe (or its ``preset``; with ``changes``) and say whether it
    learns. ``input_size``: a smaller side than the model's own, for longer checks of the big
    networks on a CPU (the network must take it)."""
    spec = get_spec(name)
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
    model = build_model(name, recipe=recipe, **({"input_size": input_size} if input_size else {}))
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
            "changes": changes or {}, "input_size": model.input_size}  # fmt: skip
