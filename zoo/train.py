"""``zoo train``: a registered model trained on its data with its recipe, then tested; and
:func:`evaluate`, the one routine the zoo reports scores with.

A run is put together from named parts: :mod:`zoo.runs` (its folder, Trainer, resume and record)
and :mod:`zoo.callbacks` (seeding, EMA, the stop on inf/NaN). ``zoo finetune``
(:mod:`zoo.finetuning`) runs on the same parts.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from .callbacks import EMA, RunMeta, TrainingClock, check_finite_weights
from .recipe import Recipe
from .registry import build_model, get_spec
from .runs import (check_logger, device_name, export_run, fit, new_run_dir, process_seconds, quiet, read_checkpoint_meta,
                   resume_checkpoint, write_record, zoo_trainer)  # fmt: skip
from .runtime import keep_freed_memory_in_heap, store_dir

__all__ = ["train", "evaluate", "TrainResult"]


@dataclass
class TrainResult:
    """What :func:`train` produced."""

    run_dir: Path
    model: L.LightningModule
    metrics: dict[str, Any]
    last_checkpoint: Path | None
    best_checkpoint: Path | None


@dataclass
class _Plan:
    """What a run trains: a fresh run's settings, or the ones a resumed run recorded."""

    model_name: str
    kwargs: dict[str, Any]
    recipe: Recipe
    seed: int
    train_limit: int | None
    root: Path
    eval_limit: int | None = None
    max_steps: int = -1
    ckpt_path: Path | None = None
    run_dir: Path | None = None  # a fresh run claims its folder once its data has been read
    started_by: str | None = None  # the command that started the run stays its command
    resumed_by: list[str] = field(default_factory=list)

    def meta(self) -> RunMeta:
        return RunMeta({"model": self.model_name, "kwargs": {**self.kwargs, "recipe": self.recipe.to_dict()}, "seed": self.seed,
                        "train_limit": self.train_limit, "eval_limit": self.eval_limit, "max_steps": self.max_steps,
                        "command": self.started_by, "resumed_by": self.resumed_by})  # fmt: skip


def _plan(model_name: str, *, recipe: Any, model_kwargs: dict[str, Any] | None, seed: int, limits: dict[str, int | None],
          max_steps: int, root: Path, resume: bool | str | os.PathLike, command: str | None, recipe_fields: dict[str, Any]) -> _Plan:  # fmt: skip
    spec = get_spec(model_name)
    if max_steps != -1 and (not isinstance(max_steps, int) or max_steps < 1):
        raise ValueError(f"max_steps (--max-steps) must be at least 1, or -1 for the recipe's epochs; got {max_steps!r}")
    unknown = sorted(set(recipe_fields) - set(Recipe.field_names()))
    if unknown:
        raise TypeError(f"train() got unexpected keyword argument(s) {unknown}; recipe fields are {Recipe.field_names()}")
    if not resume:
        kwargs = dict(model_kwargs or {})
        base = spec.recipe.layered(kwargs.pop("recipe", None))
        if isinstance(recipe, str):  # a preset: "speedrun"
            base, recipe = spec.get_recipe(recipe), None
        return _Plan(model_name, kwargs, base.layered(recipe).replace(**recipe_fields), seed, limits["train_limit"], root,
                     limits["eval_limit"], max_steps, started_by=command)  # fmt: skip
    ckpt_path = resume_checkpoint(root, resume)
    meta = read_checkpoint_meta(ckpt_path)
    if meta["model"] != model_name:
        raise ValueError(f"{ckpt_path} holds a {meta['model']!r} model, not {model_name!r}")
    # Rebuild exactly the run that was being trained, on the same data; only the budget may change.
    for key, given in limits.items():
        if key in meta and given is not None and given != meta[key]:
            raise ValueError(f"the run was started with {key}={meta[key]}; a resumed run keeps it (leave --{key.replace('_', '-')} out)")
    kwargs = dict(meta["kwargs"])
    recorded = spec.recipe.layered(kwargs.pop("recipe", None)).replace(epochs=recipe_fields.get("epochs"))
    return _Plan(model_name, kwargs, recorded, meta.get("seed", seed), meta.get("train_limit", limits["train_limit"]), root,
                 meta.get("eval_limit", limits["eval_limit"]), max_steps if max_steps != -1 else meta.get("max_steps", -1),
                 ckpt_path, ckpt_path.parent.parent, meta.get("command"), [*meta.get("resumed_by", []), *([command] if command else [])])  # fmt: skip


def _build(plan: _Plan, accelerator: str) -> L.LightningModule:
    """The process set up for the run (seeds, TF32, the CPU allocator) and its model built."""
    L.seed_everything(plan.seed, workers=True, verbose=False)
    if torch.cuda.is_available():
        # TF32 matmuls on Ampere and later: ~2x faster float32 layers for a rounding change far
        # below what SGD's noise notices.
        torch.set_float32_matmul_precision("high")
    if accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available()):
        keep_freed_memory_in_heap()
    model = build_model(plan.model_name, recipe=plan.recipe, **plan.kwargs)
    if plan.recipe.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if plan.recipe.compile:
        # The network's call only (nn.Module.compile: in place, state_dict keys unchanged). Handing
        # Lightning a torch.compile'd module would compile the whole training/validation steps,
        # self.log and the metrics included: graph breaks, and a recompile per logged name.
        model.compile(mode=plan.recipe.compile_mode)
    return model


def _best_checkpoint(run_dir: Path, model: L.LightningModule) -> ModelCheckpoint:
    return ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best-{epoch:02d}", monitor=model.monitor,
                           mode=model.monitor_mode, save_top_k=1, auto_insert_metric_name=False)  # fmt: skip


def _trainer_settings(recipe: Recipe, datamodule: L.LightningDataModule) -> dict[str, Any]:
    return dict(
        max_epochs=recipe.epochs,
        precision=recipe.precision,
        log_every_n_steps=10,
        # A data module that draws new training data each epoch (the scenes' fresh_train) needs its
        # train_dataloader called again every epoch.
        reload_dataloaders_every_n_epochs=int(getattr(datamodule, "fresh_train", False)),
        benchmark=True,  # cudnn autotuning: every batch of a run has the same shape
    )


def _record(trainer: L.Trainer, model: L.LightningModule, best: ModelCheckpoint, datamodule: L.LightningDataModule,
            plan: _Plan, *, test: bool, timings: dict[str, Any], eval_limit: int | None) -> dict[str, Any]:  # fmt: skip
    """metrics.json: the final weights' scores (test split last, never used to choose anything),
    the run's settings and timings."""
    metrics: dict[str, Any] = {"model": plan.model_name, "epochs": trainer.current_epoch, "global_step": trainer.global_step,
                               **timings, "params": sum(p.numel() for p in model.parameters())}  # fmt: skip
    metrics.update({k: round(float(v), 6) for k, v in trainer.callback_metrics.items() if k.startswith("val/")})
    if best.best_model_score is not None:
        metrics[f"best_{model.monitor}"] = round(float(best.best_model_score), 6)
    if test and not trainer.interrupted:
        with quiet():
            start = time.perf_counter()
            (results,) = trainer.test(model, datamodule=datamodule, verbose=False)
        metrics.update({k: round(float(v), 6) for k, v in results.items()})
        metrics["test_seconds"] = round(time.perf_counter() - start, 2)
    metrics.update({"process_seconds": process_seconds(), "recipe": plan.recipe.to_dict(), "model_kwargs": plan.kwargs,
                    "seed": plan.seed, "train_limit": plan.train_limit, "eval_limit": eval_limit, "device": device_name(trainer),
                    "world_size": trainer.world_size, "torch": torch.__version__, "lightning": L.__version__,
                    "threads": torch.get_num_threads(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "interrupted": trainer.interrupted})  # fmt: skip
    metrics.update({k: v for k, v in (("command", plan.started_by), ("resumed_by", plan.resumed_by)) if v})
    return metrics


def _export(model: L.LightningModule, run_dir: Path, metrics: dict[str, Any]) -> dict[str, str]:
    """The final weights in the run and in the local store, where ``zoo.load(name)`` finds them."""
    training = {k: metrics.get(k) for k in ("device", "fit_seconds", "date", "seed", "train_limit", "epochs", "world_size", "command")}
    scores = {k: v for k, v in metrics.items() if k.startswith(("val/", "test/"))}
    return export_run(model, run_dir, metrics=scores, training=training, store=store_dir(metrics["model"]))


def train(model_name: str, *, recipe: Recipe | dict[str, Any] | str | None = None, model_kwargs: dict[str, Any] | None = None,
          seed: int = 0, accelerator: str = "auto", devices: int | str | Sequence[int] = "auto", strategy: str = "auto",
          num_nodes: int = 1, data_dir: str | os.PathLike | None = None, download: bool = False, train_limit: int | None = None,
          eval_limit: int | None = None, max_steps: int = -1, out_dir: str | os.PathLike | None = None,
          resume: bool | str | os.PathLike = False, test: bool = True, progress_bar: bool = True, logger: str = "csv",
          callbacks: Sequence[Callback] = (), num_workers: int = 0, command: str | None = None, **recipe_fields: Any) -> TrainResult:  # fmt: skip
    """Train a registered model on its data with its recipe, then test the final weights.

    The recipe is the model's registered one (``recipe="speedrun"``: that preset), changed by
    ``recipe`` (a dict of fields; a whole Recipe replaces it) and then by Recipe fields given by
    name (``epochs=5``; None keeps the recipe's). ``resume=True`` continues the newest run under
    ``out_dir`` (default ``runs/<model>``) from its last checkpoint, a path from that checkpoint;
    only ``epochs`` and ``max_steps`` may change then (the data limits and the step budget are the
    run's own, from its checkpoint). ``train_limit``/``eval_limit``: the first N images only.
    ``max_steps``: stop after that many optimisation steps (-1: the recipe's epochs).
    ``logger``: "csv" or "tensorboard". ``command`` is recorded (the CLI passes its command line).
    The final weights go to ``<run>/export`` and to the local store, where ``zoo.load(model_name)``
    finds them. Returns the run folder, the trained model and the metrics of ``metrics.json``.
    """
    check_logger(logger)
    root = Path(out_dir) if out_dir is not None else Path("runs") / model_name
    plan = _plan(model_name, recipe=recipe, model_kwargs=model_kwargs, seed=seed, limits={"train_limit": train_limit, "eval_limit": eval_limit},
                 max_steps=max_steps, root=root, resume=resume, command=command, recipe_fields=recipe_fields)  # fmt: skip
    model = _build(plan, accelerator)
    datamodule = model.datamodule(data_dir=data_dir, download=download, seed=plan.seed, train_limit=plan.train_limit,
                                  eval_limit=plan.eval_limit, num_workers=num_workers)  # fmt: skip
    # Read (and check) the data now: a missing or corrupt file then fails before the run folder,
    # its logs or an on_exception.ckpt of an untrained model exist.
    datamodule.prepare_data()
    datamodule.setup("fit")
    run_dir = plan.run_dir or new_run_dir(root)
    best, clock = _best_checkpoint(run_dir, model), TrainingClock()
    trainer = zoo_trainer(run_dir, checkpoint=best, meta=plan.meta(), seed=plan.seed, logger=logger, progress_bar=progress_bar,
                          callbacks=[*([EMA(plan.recipe.ema)] if plan.recipe.ema else []), clock, *callbacks], max_steps=plan.max_steps,
                          accelerator=accelerator, devices=devices, strategy=strategy, num_nodes=num_nodes,
                          **_trainer_settings(plan.recipe, datamodule))  # fmt: skip
    setup_seconds = process_seconds()  # imports, data, model: everything before the first step
    fit_seconds = fit(trainer, model, datamodule, run_dir=run_dir, ckpt_path=plan.ckpt_path,
                      resume_command=f"zoo train {model_name} --resume --out {run_dir}")  # fmt: skip
    if not trainer.interrupted:
        check_finite_weights(model)  # a NaN model is never scored, exported or stored
    metrics = _record(trainer, model, best, datamodule, plan, test=test, eval_limit=plan.eval_limit,
                      timings={"setup_seconds": setup_seconds, "fit_seconds": round(fit_seconds, 2),
                               "train_seconds": round(clock.seconds, 2) if clock.seconds is not None else None})  # fmt: skip
    if trainer.is_global_zero and model.exportable and not trainer.interrupted:
        metrics.update(_export(model, run_dir, metrics))
    if trainer.is_global_zero:
        write_record(run_dir, "metrics.json", metrics)
    last = run_dir / "checkpoints" / "last.ckpt"
    return TrainResult(run_dir=run_dir, model=model, metrics=metrics, last_checkpoint=last if last.is_file() else None,
                       best_checkpoint=Path(best.best_model_path) if best.best_model_path else None)  # fmt: skip


def evaluate(model: L.LightningModule, *, split: str = "test", data_dir: str | os.PathLike | None = None, eval_limit: int | None = None,
             batch_size: int | None = None, accelerator: str = "auto", precision: str | None = None,
             progress_bar: bool = False, tta: str | None = None) -> dict[str, float]:  # fmt: skip
    """The scores of ``model`` on its data's test split (or "val"), with the model's own input size
    and normalisation: the one evaluation routine the zoo reports. Classifiers: top-1 accuracy and
    loss on Fashion-MNIST's official test set; detectors: mAP@0.5 and mAP@[.5:.95] on the scenes
    of that split. ``precision`` defaults to the recipe's on a GPU and to float32 on a CPU (where
    bf16 autocast only changes the numbers a bundled file is recorded with). ``tta="flip"``
    (classifiers): each image's logits averaged with its mirror image's."""
    if split not in ("test", "val"):
        raise ValueError(f"split must be 'test' or 'val', got {split!r}")
    if tta not in (None, "flip") or (tta and not hasattr(model, "tta")):
        raise ValueError(f"tta must be None or 'flip' (for a classifier), got {tta!r} for {type(model).__name__}")
    # train_limit=1: evaluation needs no training data (a detector would otherwise make 10,000 scenes).
    datamodule = model.datamodule(data_dir=data_dir, eval_limit=eval_limit, eval_batch_size=batch_size, train_limit=1)
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    precision = precision or (model.recipe.precision if on_gpu else "32-true")
    trainer = L.Trainer(accelerator=accelerator, devices=1, logger=False, enable_progress_bar=progress_bar,
                        enable_model_summary=False, precision=precision)  # fmt: skip
    run = trainer.test if split == "test" else trainer.validate
    before = getattr(model, "tta", None)
    if tta:
        model.tta = tta
    try:
        (results,) = run(model, datamodule=datamodule, verbose=False)
    finally:
        if tta:
            model.tta = before
    return {k: float(v) for k, v in results.items()}
