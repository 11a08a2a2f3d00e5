"""FineTuner: the book's four-step fine-tuning recipe (ch. 13.2) as a LightningModule.

1. a source model pretrained on the source data (a zoo name or checkpoint folder);
2. a target model that copies all of its design and parameters except the output layer;
3. a new output layer sized to the target classes, randomly initialised;
4. training on the target data, the copied layers at a learning rate of their own.

How it trains is a :class:`~zoo.recipe.FinetuneRecipe`, whose defaults are the recipe measured to
beat training from scratch (docs/finetuning.md): :class:`FineTuner`, :func:`finetune` and
``zoo finetune`` all start from it. :func:`finetune` runs it on ``zoo train``'s parts
(:mod:`zoo.runs`, :mod:`zoo.callbacks`); :func:`compare_with_scratch` says whether it was worth it.
"""

from __future__ import annotations

import logging
import os
import shutil
import statistics
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import torch
from lightning.pytorch.callbacks import BaseFinetuning, ModelCheckpoint

from .adapt import with_new_head
from .base import decay_groups, with_schedule
from .callbacks import RunMeta, check_finite_weights
from .classifier import ClassifierSteps
from .data.folder import ImageFolderDataModule
from .pretrained import load
from .recipe import DEFAULT_STEPS, FinetuneRecipe, Recipe
from .registry import build_model, get_spec
from .runs import check_logger, device_name, export_run, fit, new_run_dir, read_checkpoint_meta, resume_checkpoint, write_record, zoo_trainer
from .runtime import is_first_process

__all__ = ["FineTuner", "BackboneFreeze", "BASELINES", "SETTINGS", "finetune", "compare_with_scratch", "default_epochs", "load_source"]

log = logging.getLogger(__name__)

#: What a user could train from scratch instead of fine-tuning: the zoo's small classifiers.
BASELINES = ("softmax", "mlp", "lenet", "lenet_bn")
#: What a run fine-tunes besides its recipe: recorded beside it, so ``--resume`` rebuilds that run.
RUN_SETTINGS = ("source", "data", "seed", "strict", "in_chans", "input_size", "timm_weights")
#: The settings that define a fine-tuning run (its recipe and the above): recorded in its
#: checkpoints (only ``epochs`` may change on resuming) and in ``finetune.json``.
SETTINGS = (*FinetuneRecipe.field_names(), *RUN_SETTINGS)


def default_epochs(train_images: int, batch_size: int) -> int:
    """Epochs that give about DEFAULT_STEPS optimisation steps (:meth:`FinetuneRecipe.epochs_for`)."""
    return FinetuneRecipe(batch_size=batch_size).epochs_for(train_images)


class FineTuner(ClassifierSteps, L.LightningModule):
    """Fine-tune a pretrained zoo network on new classes. The loss and the accuracy are the zoo
    classifiers' own (:class:`~zoo.classifier.ClassifierSteps`); only the optimiser differs.

    Args:
        source: a zoo model name ("lenet", resolved like :func:`zoo.load`) or a checkpoint folder.
        num_classes: number of target classes; the head is always new (step 3).
        label_names: names of the target classes, kept in the exported checkpoint.
        recipe: a :class:`~zoo.recipe.FinetuneRecipe` (default: the measured one), or a dict of
            the fields that differ; fields given by name (``lr=1e-3``, ``freeze="freeze"``) change it
            too. What it sets here: ``lr`` (the new head's), ``backbone_lr_ratio`` (the copied
            layers learn at ``lr * backbone_lr_ratio``; the book: 0.1), ``freeze`` ("no_freeze": the
            book's, everything trains; "freeze": the head only, the backbone and its BatchNorm
            statistics stay as loaded; "freeze_unfreeze": the head until ``unfreeze_epoch``, then
            the backbone joins; Lightning's ``BaseFinetuning``, see :meth:`finetuning_callback`),
            ``optimizer``, ``schedule`` with ``warmup_epochs`` (default: 5 % of the Trainer's
            epochs), ``weight_decay`` (weights only) and ``l2sp`` (decay the copied weights towards
            their pretrained values, decoupled: each step moves a weight by ``lr * l2sp`` of its
            distance from its start; Li et al. 2018). The data fields (batch size, augmentation)
            are the DataModule's: :meth:`zoo.data.folder.ImageFolderDataModule.for_model` takes the recipe.
        in_chans: adapt the source's first layer to 1 or 3 channels (see :func:`zoo.load`).
        input_size: for a timm source, the side its images are resized to (default: timm's).
        timm_weights: for a timm source ("timm:<name>"), a local weights file (offline machines).
        pretrained: False trains the same network from scratch (the baseline of ``--compare-scratch``);
            every parameter then learns at ``lr``.
    """

    def __init__(self, *, source: str | os.PathLike = "lenet", num_classes: int, label_names: Sequence[str] | None = None,
                 recipe: FinetuneRecipe | dict[str, Any] | None = None, in_chans: int | None = None, pretrained: bool = True,
                 input_size: int | None = None, timm_weights: str | None = None, **recipe_fields: Any) -> None:  # fmt: skip
        super().__init__()
        self.finetune_recipe = r = FinetuneRecipe.coerce(recipe).layered(recipe_fields)
        if label_names is not None and len(label_names) != num_classes:
            raise ValueError(f"label_names has {len(label_names)} names for {num_classes} classes")
        self.save_hyperparameters(ignore=["recipe", "recipe_fields", *recipe_fields])
        self.hparams["recipe"] = r.to_dict()
        # What the shared classifier steps read: plain cross-entropy, no label smoothing, no mixing.
        self.recipe = Recipe(optimizer=r.optimizer, lr=r.lr, weight_decay=r.weight_decay, schedule=r.schedule,
                             warmup_epochs=r.warmup_epochs or 0.0)  # fmt: skip
        source_model = load_source(source, in_chans=in_chans, input_size=input_size, timm_weights=timm_weights)  # step 1
        if pretrained:
            # Steps 2 and 3: every parameter copied, a fresh head (even for as many classes as before).
            self.model = with_new_head(source_model, num_classes, label_names=label_names)
        else:
            kwargs = {**source_model.zoo_kwargs, "num_classes": num_classes, "label_names": list(label_names) if label_names else None}
            self.model = build_model(source_model.model_name, **kwargs)
        self.init_metrics(num_classes)
        # L2-SP's anchors: the copied weights as loaded (a resumed run rebuilds them from the source).
        self._anchors = {id(p): p.detach().clone() for p in self.backbone.parameters() if p.ndim > 1} if pretrained and r.l2sp else {}

    # The DataModule and the exporter read these off the target model.
    @property
    def backbone(self) -> torch.nn.Module:
        return self.model.backbone

    @property
    def head(self) -> torch.nn.Module:
        return self.model.head

    def __getattr__(self, name: str) -> Any:
        if name in ("input_size", "in_chans", "mean", "std", "label_names", "model_name", "num_classes"):
            return getattr(self.model, name)
        return super().__getattr__(name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    # ---------------------------------------------------------------------------------- optimiser
    def backbone_lr(self) -> float:
        r = self.finetune_recipe
        return r.lr * (r.backbone_lr_ratio if self.hparams.pretrained else 1.0)

    def backbone_decay(self) -> float:
        """The copied weights' decay towards zero: none under L2-SP, which decays them towards their start."""
        return 0.0 if self._anchors else self.finetune_recipe.weight_decay

    def configure_optimizers(self) -> Any:
        r = self.finetune_recipe
        groups = decay_groups(self.head.parameters(), r.weight_decay, lr=r.lr)
        # A frozen backbone stays out until BaseFinetuning adds it (freeze_unfreeze).
        groups += decay_groups(self.backbone.parameters(), self.backbone_decay(), lr=self.backbone_lr())
        if r.optimizer == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(groups, lr=r.lr, momentum=0.9)
        else:
            opt = torch.optim.AdamW(groups, lr=r.lr)
        if r.schedule == "none":
            return opt  # no trainer needed: a module can be inspected before it is fitted
        # The warm-up is a share of the run unless the recipe gives it: the Trainer knows the run's length.
        return with_schedule(opt, self.recipe.replace(warmup_epochs=r.warmup_for(self.trainer.max_epochs or 1)), self)

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        if self._anchors:  # L2-SP, decoupled: after the step, each copied weight a little back towards its start
            optimizer = self.trainer.optimizers[0]
            with torch.no_grad():
                for group in optimizer.param_groups:
                    for p in group["params"]:
                        anchor = self._anchors.get(id(p))
                        if anchor is not None and p.requires_grad:
                            p.add_(p - anchor, alpha=-group["lr"] * self.finetune_recipe.l2sp)

    def on_train_start(self) -> None:
        self._anchors = {k: v.to(self.device) for k, v in self._anchors.items()}  # once, not every step
        # A run resumed with more epochs has a longer schedule than the one its optimiser's saved
        # rates came from (a finished cosine saved 0): start from the new schedule's rate at this step.
        _follow_schedule(self.trainer)

    def finetuning_callback(self) -> "BackboneFreeze | None":
        """The Lightning callback that implements the recipe's ``freeze`` (None for "no_freeze")."""
        r = self.finetune_recipe
        if r.freeze == "no_freeze" or not self.hparams.pretrained:
            return None
        unfreeze = r.unfreeze_epoch if r.freeze == "freeze_unfreeze" else None
        return BackboneFreeze(unfreeze_epoch=unfreeze, backbone_lr=self.backbone_lr(), weight_decay=self.backbone_decay())


def load_source(source: str | os.PathLike, *, in_chans: int | None = None, input_size: int | None = None,
                timm_weights: str | None = None) -> Any:  # fmt: skip
    """The pretrained source: "timm:<name>" through timm, anything else through zoo.load (verified, strict)."""
    if str(source).startswith("timm:"):
        from .models.external import timm_source

        return timm_source(str(source)[5:], in_chans=in_chans, input_size=input_size, weights=timm_weights)
    if input_size is not None or timm_weights is not None:
        raise ValueError("input_size and timm_weights apply to timm sources only (source='timm:<name>')")
    return load(str(source), in_chans=in_chans)


class BackboneFreeze(BaseFinetuning):
    """Freeze the backbone before training; with ``unfreeze_epoch``, unfreeze it from that epoch on
    and add it to the optimizer at ``backbone_lr``.

    Frozen means no gradients *and* BatchNorm layers in eval mode, so their running statistics stay
    the source's. (BaseFinetuning.freeze(train_bn=False) instead switches track_running_stats off,
    which makes the exported model normalise with batch statistics at inference.)

    The check is "from that epoch on", not "at that epoch": a run resumed from a checkpoint written
    after the unfreeze finds its backbone frozen again by ``freeze_before_training`` and must thaw it;
    BaseFinetuning's own state restores the optimizer's parameter groups.
    """

    def __init__(self, *, unfreeze_epoch: int | None, backbone_lr: float, weight_decay: float) -> None:
        super().__init__()
        self.unfreeze_epoch, self.backbone_lr, self.weight_decay = unfreeze_epoch, backbone_lr, weight_decay

    @staticmethod
    def _frozen(pl_module: L.LightningModule) -> bool:
        return not any(p.requires_grad for p in pl_module.backbone.parameters())

    def freeze_before_training(self, pl_module: L.LightningModule) -> None:
        for p in pl_module.backbone.parameters():
            p.requires_grad = False

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if self._frozen(pl_module):
            for module in pl_module.backbone.modules():
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                    module.eval()

    def finetune_function(self, pl_module: L.LightningModule, epoch: int, optimizer: torch.optim.Optimizer) -> None:
        if self.unfreeze_epoch is None or epoch < self.unfreeze_epoch or not self._frozen(pl_module):
            return
        self.make_trainable(pl_module.backbone)
        pl_module.backbone.train()
        present = {id(p) for g in optimizer.param_groups for p in g["params"]}  # resumed runs have them already
        new = [p for p in pl_module.backbone.parameters() if id(p) not in present]
        for group in decay_groups(new, self.weight_decay, lr=self.backbone_lr):
            optimizer.add_param_group(group)
        _follow_schedule(pl_module.trainer)


def _follow_schedule(trainer: L.Trainer) -> None:
    """Set every parameter group's rate to its LambdaLR schedule's at the current step, first
    putting groups added after the scheduler was made (an unfreeze) on it.

    A LambdaLR schedules only the groups it was made with (its lists zip with the optimiser's,
    and zip stops at the shorter), so an unfrozen backbone would keep a constant rate. Each new
    group gets the first group's factor; a resumed run's restored state already has its base rate."""
    for config in trainer.lr_scheduler_configs:
        sched = config.scheduler
        if not isinstance(sched, torch.optim.lr_scheduler.LambdaLR):
            continue
        groups = sched.optimizer.param_groups
        for i in range(len(sched.lr_lambdas), len(groups)):
            sched.lr_lambdas.append(sched.lr_lambdas[0])
            if len(sched.base_lrs) <= i:
                sched.base_lrs.append(groups[i]["lr"])
        for group, base, factor in zip(groups, sched.base_lrs, sched.lr_lambdas):
            group["lr"] = base * factor(sched.last_epoch)


def finetune(source: str | os.PathLike | None = None, data: str | os.PathLike | None = None, *,
             recipe: FinetuneRecipe | dict[str, Any] | None = None, seed: int = 0, strict: bool = False, in_chans: int | None = None,
             input_size: int | None = None, timm_weights: str | None = None, out_dir: str | os.PathLike = "runs/finetune",
             resume: bool | str | os.PathLike = False, accelerator: str = "auto", devices: int | str | Sequence[int] = 1,
             strategy: str = "auto", precision: str = "32-true", logger: str = "csv", progress_bar: bool = True,
             callbacks: Sequence[L.Callback] = (), command: str | None = None, **recipe_fields: Any) -> dict[str, Any]:  # fmt: skip
    """Fine-tune ``source`` on the image folder ``data`` with ``recipe`` (default: the measured
    :class:`~zoo.recipe.FinetuneRecipe`; its fields by name change it: ``epochs=5``), on the same
    engine as :func:`zoo.train.train`, and export the result.

    Each run gets its own folder ``<out_dir>/version_<n>/`` with ``checkpoints/last.ckpt``, the
    logs (``logs/version_<k>/metrics.csv``; TensorBoard's too with ``logger="tensorboard"``),
    ``finetune.json`` and ``export/``. With no ``epochs`` it trains about DEFAULT_STEPS
    optimisation steps and says so. ``strategy`` is Lightning's ("ddp"...), with ``devices``,
    ``accelerator`` and ``precision``; what trains is the recipe's ``freeze``. ``resume=True``
    continues the newest run under ``out_dir`` from its last checkpoint (a path: from that
    checkpoint) with its recorded settings: only ``epochs`` (and the hardware, logging and progress
    options) may change, and ``source`` / ``data``, when given, must be the recorded ones.
    ``source`` defaults to "lenet" for a new run.

    Returns the settings, the classes, image counts, validation top-1 (``val_acc``), the steps
    run, the run folder and the export's path. For a fair comparison with training from
    scratch, over seeds, see :func:`compare_with_scratch`.
    """
    check_logger(logger)
    hardware = dict(accelerator=accelerator, devices=devices, strategy=strategy, precision=precision, logger=logger,
                    progress_bar=progress_bar, callbacks=callbacks)  # fmt: skip
    if resume:
        changed = sorted(set(recipe_fields) - {"epochs"}) + (["recipe"] if recipe is not None else [])
        if changed:
            raise ValueError(f"{', '.join(changed)}: a resumed run keeps its recorded recipe (only epochs may change); "
                             "start a new run to change it")  # fmt: skip
        return _resume(resume, Path(out_dir), source, data, recipe_fields.get("epochs"), command, hardware)
    if data is None:
        raise ValueError("give the image folder (data) to fine-tune on")
    r = FinetuneRecipe.coerce(recipe).layered(recipe_fields)  # checked here: a bad value leaves no folder
    settings = {**r.to_dict(), "source": str("lenet" if source is None else source), "data": str(data), "seed": seed,
                "strict": strict, "in_chans": in_chans, "input_size": input_size, "timm_weights": timm_weights}  # fmt: skip
    return _run(settings, root=Path(out_dir), started_by=command, **hardware)


def _resume(resume: bool | str | os.PathLike, root: Path, source: Any, data: Any, epochs: int | None, command: str | None,
            hardware: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    ckpt_path = resume_checkpoint(root, resume)
    meta = read_checkpoint_meta(ckpt_path, "finetune")
    # Runs recorded before the schedule was a setting trained at a constant rate.
    settings = {"schedule": "none", "warmup_epochs": 0.0, "l2sp": 0.0, **meta["finetune"]}
    for name, given in (("source", source), ("data", data)):
        if given is not None and not _same(given, settings[name]):
            raise ValueError(f"{ckpt_path} fine-tunes {name} {settings[name]}, not {given}; "
                             f"leave {name} out to resume it, or start a new run without resume")  # fmt: skip
    settings["epochs"] = epochs or settings["epochs"]
    return _run(settings, run_dir=ckpt_path.parent.parent, ckpt_path=ckpt_path, started_by=meta.get("command"),
                resumed_by=[*meta.get("resumed_by", []), *([command] if command else [])], **hardware)  # fmt: skip


def _same(given: str | os.PathLike, recorded: str) -> bool:
    return str(given) == recorded or Path(given).resolve() == Path(recorded).resolve()


def _prepare(settings: dict[str, Any]) -> tuple[dict[str, Any], ImageFolderDataModule, FineTuner]:
    """The folder read, the run's epochs and warm-up resolved, and the module built: everything
    that can refuse the run, before its folder is claimed (a failed start leaves none)."""
    s = dict(settings)
    recipe = FinetuneRecipe.coerce({k: s[k] for k in FinetuneRecipe.field_names() if k in s})
    timm_options = {k: s[k] for k in ("in_chans", "input_size", "timm_weights")}
    probe = load_source(s["source"], **timm_options)  # its input size, channels, normalisation
    datamodule = ImageFolderDataModule.for_model(probe, s["data"], recipe=recipe, seed=s["seed"], strict=s["strict"])
    datamodule.setup()
    s["epochs"] = recipe.epochs_for(len(datamodule.train_set))
    s["warmup_epochs"] = recipe.warmup_for(s["epochs"])
    if recipe.epochs is None and is_first_process():
        log.warning("zoo: %d training images in batches of %d: training %d epochs (about %d steps; --epochs sets another number)%s",
                    len(datamodule.train_set), recipe.batch_size, s["epochs"], DEFAULT_STEPS,
                    f", {s['schedule']} schedule after {s['warmup_epochs']:g} warm-up epochs" if s["schedule"] != "none" else "")  # fmt: skip
    L.seed_everything(s["seed"], workers=True, verbose=False)
    module = FineTuner(source=s["source"], num_classes=len(datamodule.classes), label_names=datamodule.classes,
                       recipe=recipe.replace(epochs=s["epochs"], warmup_epochs=s["warmup_epochs"]), **timm_options)  # fmt: skip
    return s, datamodule, module


def _run(settings: dict[str, Any], *, root: Path | None = None, run_dir: Path | None = None, ckpt_path: Path | None = None,
         accelerator: str = "auto", devices: Any = 1, strategy: str = "auto", precision: str = "32-true", logger: str = "csv",
         progress_bar: bool = True, callbacks: Sequence[L.Callback] = (), started_by: str | None = None,
         resumed_by: Sequence[str] = ()) -> dict[str, Any]:  # fmt: skip
    """One fine-tuning run with ``settings`` (:data:`SETTINGS`) in ``run_dir``, or in a new
    ``version_<n>`` under ``root``."""
    s, datamodule, module = _prepare(settings)
    run = run_dir if run_dir is not None else new_run_dir(root)
    trainer = zoo_trainer(run, meta=RunMeta({"finetune": s, "command": started_by, "resumed_by": list(resumed_by)}), seed=s["seed"],
                          logger=logger, progress_bar=progress_bar,
                          callbacks=[*(cb for cb in (module.finetuning_callback(),) if cb is not None), *callbacks],
                          max_epochs=s["epochs"], precision=precision, accelerator=accelerator, devices=devices, strategy=strategy,
                          num_sanity_val_steps=0, log_every_n_steps=1)  # a few-shot epoch is a handful of steps  # fmt: skip
    if trainer.world_size > 1 and s["freeze"] == "freeze_unfreeze":
        # DDP fixes the set of trained parameters when it wraps the model; unfreezing mid-run changes it.
        if run_dir is None:
            shutil.rmtree(run, ignore_errors=True)  # the folder this call claimed, still empty
        raise ValueError("freeze_unfreeze cannot run on several processes (DDP fixes which parameters train); "
                         "use no_freeze or freeze, or one device")  # fmt: skip
    seconds = fit(trainer, module, datamodule, run_dir=run, ckpt_path=ckpt_path, resume_command=f"zoo finetune --resume --out {run}")
    results: dict[str, Any] = {**s, "classes": datamodule.classes, "train_images": len(datamodule.train_set),
                               "val_images": len(datamodule.val_set), "global_step": trainer.global_step,
                               "world_size": trainer.world_size, "precision": str(trainer.precision), "device": device_name(trainer),
                               "fit_seconds": round(seconds, 2), "run_dir": str(run), "command": started_by,
                               "resumed_by": list(resumed_by), "val_acc": float(trainer.callback_metrics["val/acc"])}  # fmt: skip
    check_finite_weights(module.model)  # a NaN model is never exported
    if trainer.is_global_zero:
        module.model.photo_steps = datamodule.steps  # it learnt the folder's images as they were decoded
        training = {"finetuned_from": s["source"], **{k: s[k] for k in SETTINGS if k != "source"}, "precision": results["precision"],
                    "world_size": trainer.world_size, "command": started_by}  # fmt: skip
        results.update(export_run(module.model, run, metrics={"val/acc": results["val_acc"]}, training=training))
        write_record(run, "finetune.json", results)
    return results


def _scratch_val_acc(name: str, data: str | os.PathLike, *, seed: int, recipe: FinetuneRecipe, strict: bool, accelerator: str,
                     precision: str, progress_bar: bool, out: os.PathLike) -> float:  # fmt: skip
    """Validation top-1 of the registered model ``name`` trained from scratch on the folder, with
    its own registered optimiser, learning rate, weight decay and schedule (its fair setting), and
    the same data split, epochs and batch size as the fine-tune (``recipe``)."""
    r = get_spec(name).recipe
    L.seed_everything(seed, workers=True, verbose=False)
    dm = ImageFolderDataModule.for_model(load_source(name), data, recipe=recipe, seed=seed, strict=strict)
    dm.setup()
    module = FineTuner(source=name, num_classes=len(dm.classes), label_names=dm.classes, pretrained=False, lr=r.lr, optimizer=r.optimizer,
                       weight_decay=r.weight_decay, schedule=r.schedule, warmup_epochs=r.warmup_epochs)  # fmt: skip
    trainer = L.Trainer(max_epochs=recipe.epochs, accelerator=accelerator, devices=1, precision=precision, logger=False,
                        enable_progress_bar=progress_bar, enable_model_summary=False, num_sanity_val_steps=0, log_every_n_steps=1,
                        callbacks=[ModelCheckpoint(dirpath=out, save_top_k=0, save_last=False)])  # fmt: skip
    trainer.fit(module, datamodule=dm)
    return float(trainer.callback_metrics["val/acc"])


def _mean_sd(values: list[float]) -> dict[str, Any]:
    return {"mean": round(statistics.fmean(values), 4), "sd": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
            "runs": [round(v, 4) for v in values]}  # fmt: skip


def compare_with_scratch(source: str | os.PathLike, data: str | os.PathLike, *, seeds: Sequence[int] = (0, 1, 2, 3, 4),
                         baselines: Sequence[str] = BASELINES, out_dir: str | os.PathLike = "runs/finetune",
                         recipe: FinetuneRecipe | dict[str, Any] | None = None, strict: bool = False, in_chans: int | None = None,
                         input_size: int | None = None, timm_weights: str | None = None, accelerator: str = "auto",
                         precision: str = "32-true", logger: str = "csv", progress_bar: bool = True,
                         callbacks: Sequence[L.Callback] = (), command: str | None = None, **recipe_fields: Any) -> dict[str, Any]:  # fmt: skip
    """Fine-tune ``source`` on ``data`` once per seed, and train every baseline (the zoo's small
    classifiers, and the source's own architecture) from scratch with the same data split, epochs
    and batch size, each with its own registered optimiser and learning rate. Returns mean, sd and
    the runs of each arm (validation top-1), the best baseline by its mean, and the fine-tune's
    margin over it. The arms run one after another, on one device. Everything goes to a new
    ``<out_dir>/version_<n>/``: ``compare.json``, and each seed's fine-tune in ``seed-<seed>/``
    (its export in ``seed-<seed>/export``)."""
    if not seeds:
        raise ValueError("give at least one seed")
    check_logger(logger)
    r = FinetuneRecipe.coerce(recipe).layered(recipe_fields)
    hardware = dict(accelerator=accelerator, precision=precision, logger=logger, progress_bar=progress_bar, callbacks=callbacks)
    run_options = {"source": str(source), "data": str(data), "strict": strict, "in_chans": in_chans, "input_size": input_size,
                   "timm_weights": timm_weights}  # fmt: skip
    arch = load_source(source, in_chans=in_chans, input_size=input_size, timm_weights=timm_weights).model_name
    names = list(dict.fromkeys([*baselines, arch]))  # the source's own network from scratch too, once
    tuned: list[float] = []
    scratch: dict[str, list[float]] = {n: [] for n in names}
    first: dict[str, Any] = {}
    out = new_run_dir(Path(out_dir))
    for seed in seeds:
        # The first seed's epochs (chosen or given) for every seed and arm.
        settings = {**r.replace(epochs=first.get("epochs")).to_dict(), **run_options, "seed": seed}
        result = _run(settings, run_dir=out / f"seed-{seed}", started_by=command, **hardware)
        first = first or result
        tuned.append(result["val_acc"])
        for name in names:
            scratch[name].append(_scratch_val_acc(name, data, seed=seed, recipe=r.replace(epochs=first["epochs"]), strict=strict,
                                                  accelerator=accelerator, precision=precision, progress_bar=progress_bar,
                                                  out=out / f"seed-{seed}" / f"scratch-{name}"))  # fmt: skip
    arms = {name: _mean_sd(values) for name, values in scratch.items()}
    best = max(names, key=lambda n: arms[n]["mean"])
    summary = {"source": str(source), "data": str(data), "seeds": list(seeds), "classes": first["classes"],
               "train_images": first["train_images"], "val_images": first["val_images"], "epochs": first["epochs"],
               "batch_size": r.batch_size, "finetuned": _mean_sd(tuned), "scratch": arms, "best_scratch": best,
               "margin": round(_mean_sd(tuned)["mean"] - arms[best]["mean"], 4), "run_dir": str(out)}  # fmt: skip
    summary["written"] = str(write_record(out, "compare.json", summary))
    return summary
