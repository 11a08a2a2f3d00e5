#!/usr/bin/env python
"""Where Lightning's per-step time goes on the CPU proxy (issue 31, CPU part 2): one model, its
real Fashion-MNIST batches and optimizer, trained for the same steps by

    plain        a hand-written PyTorch loop (zoo.bench.plain_loop)
    zoo          the zoo's Trainer, as `zoo train --no-progress` runs it (zoo.bench.lightning_loop)
    bare         L.Trainer with no logger, checkpoints, progress bar or summary
    barebones    L.Trainer(barebones=True): Lightning's own lightest settings
    bare+manual  bare, with manual optimisation (no optimizer closure)

    python scripts/studies/lightning_overhead.py                      # softmax, batch 256, 300 steps, best of 5
    python scripts/studies/lightning_overhead.py --model lenet --steps 100

Prints ms per step and each arm's time over the plain loop's; writes results/lightning-overhead-<model>.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

import zoo
from zoo.bench import lightning_loop, plain_loop, zoo_batches, zoo_datamodule
from zoo.runs import quiet

ROOT = Path(__file__).resolve().parents[2]


class _StepTimer(L.Callback):
    """Wall time from step ``warmup`` to the end of step ``warmup + steps``."""

    def __init__(self, warmup: int, steps: int) -> None:
        self.warmup, self.last, self.start, self.end = warmup, warmup + steps, 0.0, 0.0

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step == self.warmup and not self.start:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step == self.last and not self.end:
            self.end = time.perf_counter()


def _manual(model: L.LightningModule) -> L.LightningModule:
    """The same module trained with manual optimisation: one zero_grad, backward and step a batch."""
    step = type(model).training_step

    def training_step(self, batch, batch_idx):
        opt = self.optimizers()
        loss = step(self, batch, batch_idx)
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        opt.step()

    cls = type(f"Manual{type(model).__name__}", (type(model),), {"training_step": training_step})
    model.__class__ = cls
    model.automatic_optimization = False
    return model


def lightning_arm(model: L.LightningModule, dm: Any, steps: int, warmup: int, **trainer: Any) -> float:
    timer = _StepTimer(warmup, steps)
    settings = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    settings.update(trainer)
    t = L.Trainer(accelerator="cpu", devices=1, max_steps=warmup + steps, limit_val_batches=0, num_sanity_val_steps=0,
                  callbacks=[timer], **settings)  # fmt: skip
    with quiet():
        t.fit(model, datamodule=dm)
    return (timer.end - timer.start) / steps * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="softmax")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    L.seed_everything(0, verbose=False)
    cpu = torch.device("cpu")

    def fresh() -> L.LightningModule:
        return zoo.create_model(args.model, recipe={"schedule": "none", "batch_size": args.batch_size})

    arms = {
        "plain": lambda: args.batch_size * 1000 / plain_loop(fresh(), zoo_batches(zoo_datamodule(fresh(), args.batch_size, cpu)),
                                                              args.steps, cpu, "32-true", args.warmup),
        "zoo": lambda: args.batch_size * 1000 / lightning_loop(fresh(), zoo_datamodule(fresh(), args.batch_size, cpu), args.steps,
                                                                cpu, "32-true", args.warmup),
        "bare": lambda: lightning_arm(fresh(), zoo_datamodule(fresh(), args.batch_size, cpu), args.steps, args.warmup),
        "barebones": lambda: lightning_arm(fresh(), zoo_datamodule(fresh(), args.batch_size, cpu), args.steps, args.warmup,
                                           barebones=True, enable_checkpointing=None, logger=None, enable_progress_bar=None,
                                           enable_model_summary=None),
        "bare+manual": lambda: lightning_arm(_manual(fresh()), zoo_datamodule(fresh(), args.batch_size, cpu), args.steps, args.warmup),
    }  # fmt: skip
    runs: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(args.repeats):  # alternating, so the machine's drift falls on every arm alike
        for name, arm in arms.items():
            runs[name].append(arm())
    best = {name: min(ms) for name, ms in runs.items()}
    out = ROOT / "results" / f"lightning-overhead-{args.model}.json"
    out.write_text(json.dumps({"model": args.model, "batch_size": args.batch_size, "steps": args.steps, "threads": torch.get_num_threads(),
                               "ms_per_step_best": best, "ms_per_step_runs": runs}, indent=2) + "\n")  # fmt: skip
    print(f"| arm ({args.model}, batch {args.batch_size}, best of {args.repeats}) | ms per step | over the plain loop |")
    print("|---|---:|---:|")
    for name, ms in best.items():
        print(f"| {name} | {ms:.3f} | {ms / best['plain'] - 1:+.1%} |")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
