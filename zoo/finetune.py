"""FineTuner: the book's four-step fine-tuning recipe (ch. 13.2) as a LightningModule.

1. a source model pretrained on the source data (a zoo name or checkpoint folder);
2. a target model that copies all of its design and parameters except the output layer;
3. a new output layer sized to the target classes, randomly initialised;
4. training on the target data, the copied layers at a smaller learning rate than the new head.

:func:`finetune`'s defaults are the recipe measured to beat training from scratch (README,
"Fine-tuning on your own images"): a budget counted in steps, a warmed-up cosine schedule, and the
copied layers at the head's rate (``backbone_lr_ratio=1.0``; the book's 0.1 learnt less in the
same steps). :class:`FineTuner`'s own defaults are the book's.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import sys
from typing import Any, Sequence

import lightning as L
import torch
from lightning.pytorch.callbacks import BaseFinetuning

from .adapt import with_new_head
from .base import decay_groups, with_schedule
from .classifier import ClassifierSteps
from .hub import load
from .recipe import SCHEDULES, Recipe
from .registry import build_model

__all__ = ["FineTuner", "BackboneFreeze", "STRATEGIES", "BASELINES", "SETTINGS", "finetune", "compare_with_scratch"]

log = logging.getLogger(__name__)

STRATEGIES = ("no_freeze", "freeze", "freeze_unfreeze")
#: What a user could train from scratch instead of fine-tuning: the zoo's small classifiers.
BASELINES = ("softmax", "mlp", "lenet", "lenet_bn")
#: The default budget, in optimisation steps: a few-shot folder is a handful of batches, and a
#: fixed number of epochs gave 100 images 40 steps (10 epochs), too few for the copied layers at a
#: tenth of the head's rate (digits, 10 a class, 5 seeds: 0.78 in 10 epochs, 0.91 in 40).
DEFAULT_STEPS = 300
MIN_EPOCHS, MAX_EPOCHS = 5, 300
#: The default warm-up before the cosine schedule, as a share of the run's epochs.
WARMUP_FRACTION = 0.05


def default_epochs(train_images: int, batch_size: int) -> int:
    """Epochs that give about DEFAULT_STEPS optimisation steps (at least MIN_EPOCHS, at most MAX_EPOCHS)."""
    # The folder's training loader drops a last partial batch (when there is more than one batch).
    steps_per_epoch = train_images // batch_size if train_images > batch_size else 1
    return min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(DEFAULT_STEPS / steps_per_epoch)))


class FineTuner(ClassifierSteps, L.LightningModule):
    """Fine-tune a pretrained zoo network on new classes. The loss and the accuracy are the zoo
    classifiers' own (:class:`~zoo.classifier.ClassifierSteps`); only the optimiser differs.

    Args:
        source: a zoo model name ("lenet", resolved like :func:`zoo.load`) or a checkpoint folder.
        num_classes: number of target classes; the head is always new (step 3).
        label_names: names of the target classes, kept in the exported checkpoint.
        lr: learning rate of the new head.
        backbone_lr_ratio: the copied layers learn at ``lr * backbone_lr_ratio`` (the book: 0.1).
        strategy: "no_freeze" (the book's: everything trains from the start), "freeze" (only the
            head trains; the backbone, BatchNorm statistics included, stays as loaded) or
            "freeze_unfreeze" (head only until ``unfreeze_epoch``, then the backbone joins at its
            smaller rate). The freezing is Lightning's ``BaseFinetuning``: add
            :meth:`finetuning_callback` to the Trainer's callbacks.
        unfreeze_epoch: epoch at which "freeze_unfreeze" unfreezes the backbone.
        optimizer: "adamw" or "sgd" (momentum 0.9).
        schedule: the learning-rate schedule over the run's steps (:data:`zoo.recipe.SCHEDULES`):
            "none" (constant), "cosine" (after ``warmup_epochs`` of linear warm-up) or "onecycle";
            every parameter group follows it, an unfrozen backbone too.
        weight_decay: on weights only, as in every zoo model.
        l2sp: decay the copied weights towards their pretrained values instead of towards zero
            (L2-SP, Li et al. 2018), decoupled like AdamW's: each step moves a weight by
            ``lr * l2sp`` of its distance from where it started. 0: off.
        in_chans: adapt the source's first layer to 1 or 3 channels (see :func:`zoo.load`).
        input_size: for a timm source, the side its images are resized to (default: timm's).
        timm_weights: for a timm source ("timm:<name>"), a local weights file (offline machines).
        pretrained: False trains the same network from scratch (the baseline of ``--compare-scratch``);
            every parameter then learns at ``lr``.
    """

    def __init__(
        self,
        *,
        source: str | os.PathLike = "lenet",
        num_classes: int,
        label_names: Sequence[str] | None = None,
        lr: float = 1e-3,
        backbone_lr_ratio: float = 0.1,
        strategy: str = "no_freeze",
        unfreeze_epoch: int = 1,
        optimizer: str = "adamw",
        schedule: str = "none",
        warmup_epochs: float = 0.0,
        weight_decay: float = 1e-4,
        l2sp: float = 0.0,
        in_chans: int | None = None,
        pretrained: bool = True,
        input_size: int | None = None,
        timm_weights: str | None = None,
    ) -> None:
        super().__init__()
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        if optimizer not in ("adamw", "sgd"):
            raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {optimizer!r}")
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
        if l2sp < 0 or warmup_epochs < 0:
            raise ValueError(f"l2sp and warmup_epochs must be >= 0, got {l2sp} and {warmup_epochs}")
        if not 0.0 <= backbone_lr_ratio <= 1.0:
            raise ValueError(f"backbone_lr_ratio must be between 0 and 1, got {backbone_lr_ratio}")
        if label_names is not None and len(label_names) != num_classes:
            raise ValueError(f"label_names has {len(label_names)} names for {num_classes} classes")
        self.save_hyperparameters()
        # What the shared classifier steps read: plain cross-entropy, no label smoothing, no mixing.
        self.recipe = Recipe(optimizer=optimizer, lr=lr, weight_decay=weight_decay, schedule=schedule, warmup_epochs=warmup_epochs)
        source_model = load_source(source, in_chans=in_chans, input_size=input_size, timm_weights=timm_weights)  # step 1
        if pretrained:
            # Steps 2 and 3: every parameter copied, a fresh head (even for as many classes as before).
            self.model = with_new_head(source_model, num_classes, label_names=label_names)
        else:
            kwargs = {**source_model.zoo_kwargs, "num_classes": num_classes, "label_names": list(label_names) if label_names else None}
            self.model = build_model(source_model.model_name, **kwargs)
        self.init_metrics(num_classes)
        # L2-SP's anchors: the copied weights as loaded (a resumed run rebuilds them from the source).
        self._anchors = {id(p): p.detach().clone() for p in self.backbone.parameters() if p.ndim > 1} if pretrained and l2sp else {}

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
        h = self.hparams
        return h.lr * (h.backbone_lr_ratio if h.pretrained else 1.0)

    def backbone_decay(self) -> float:
        """The copied weights' decay towards zero: none under L2-SP, which decays them towards their start."""
        return 0.0 if self._anchors else self.hparams.weight_decay

    def configure_optimizers(self) -> Any:
        h = self.hparams
        groups = decay_groups(self.head.parameters(), h.weight_decay, lr=h.lr)
        # A frozen backbone stays out until BaseFinetuning adds it (freeze_unfreeze).
        groups += decay_groups(self.backbone.parameters(), self.backbone_decay(), lr=self.backbone_lr())
        if h.optimizer == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(groups, lr=h.lr, momentum=0.9)
        else:
            opt = torch.optim.AdamW(groups, lr=h.lr)
        return with_schedule(opt, self.recipe, self)

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        if self._anchors:  # L2-SP, decoupled: after the step, each copied weight a little back towards its start
            optimizer = self.trainer.optimizers[0]
            with torch.no_grad():
                for group in optimizer.param_groups:
                    for p in group["params"]:
                        anchor = self._anchors.get(id(p))
                        if anchor is not None and p.requires_grad:
                            p.add_(p - anchor, alpha=-group["lr"] * self.hparams.l2sp)

    def on_train_start(self) -> None:
        self._anchors = {k: v.to(self.device) for k, v in self._anchors.items()}  # once, not every step
        # A run resumed with more epochs has a longer schedule than the one its optimiser's saved
        # rates came from (a finished cosine saved 0): start from the new schedule's rate at this step.
        _follow_schedule(self.trainer)

    def finetuning_callback(self) -> "BackboneFreeze | None":
        """The Lightning callback that implements ``strategy`` (None for "no_freeze")."""
        h = self.hparams
        if h.strategy == "no_freeze" or not h.pretrained:
            return None
        unfreeze = h.unfreeze_epoch if h.strategy == "freeze_unfreeze" else None
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


#: The settings that define a fine-tuning run: recorded in its checkpoints, so that ``--resume``
#: rebuilds exactly that run (only ``epochs`` may change), and in ``finetune.json``.
SETTINGS = ("source", "data", "epochs", "lr", "backbone_lr_ratio", "freeze", "unfreeze_epoch", "optimizer", "schedule",
            "warmup_epochs", "l2sp", "batch_size", "val_fraction", "hflip", "augment", "strict", "seed", "in_chans", "input_size", "timm_weights")  # fmt: skip


def finetune(
    source: str | os.PathLike | None = None,
    data: str | os.PathLike | None = None,
    *,
    epochs: int | None = None,
    lr: float = 1e-2,
    backbone_lr_ratio: float = 1.0,
    freeze: str = "no_freeze",
    unfreeze_epoch: int = 1,
    optimizer: str = "adamw",
    schedule: str = "cosine",
    warmup_epochs: float | None = None,
    l2sp: float = 0.0,
    batch_size: int = 32,
    val_fraction: float = 0.2,
    hflip: bool = True,
    augment: str = "standard",
    strict: bool = False,
    seed: int = 0,
    in_chans: int | None = None,
    input_size: int | None = None,
    timm_weights: str | None = None,
    out_dir: str | os.PathLike = "runs/finetune",
    resume: bool | str | os.PathLike = False,
    accelerator: str = "auto",
    devices: int | str | Sequence[int] = 1,
    strategy: str = "auto",
    precision: str = "32-true",
    logger: str = "csv",
    progress_bar: bool = True,
    callbacks: Sequence[L.Callback] = (),
    command: str | None = None,
) -> dict[str, Any]:
    """Fine-tune ``source`` on the image folder ``data``, on the same engine as :func:`zoo.train.train`
    (:func:`zoo.train.zoo_trainer`), and export the result.

    Each run gets its own folder ``<out_dir>/version_<n>/`` with ``checkpoints/last.ckpt``, the
    logs (``logs/version_<k>/metrics.csv``; TensorBoard's too with ``logger="tensorboard"``),
    ``finetune.json`` and ``export/``. ``epochs=None`` trains about DEFAULT_STEPS optimisation
    steps (:func:`default_epochs`) and says so. ``freeze`` is the book's choice of what trains
    (:data:`STRATEGIES`, see :class:`FineTuner`); ``strategy`` is Lightning's ("ddp"...), with
    ``devices``, ``accelerator`` and ``precision``. ``resume=True`` continues the newest run under
    ``out_dir`` from its last checkpoint (a path: from that checkpoint) with its recorded settings;
    only ``epochs`` (and the hardware, logging and progress options) may change, and ``source`` /
    ``data``, when given, must be the recorded ones. ``source`` defaults to "lenet" for a new run.

    Returns the settings, the classes, image counts, validation top-1 (``val_acc``), the steps
    run, the run folder and the export's path. For a fair comparison with training from
    scratch, over seeds, see :func:`compare_with_scratch`.
    """
    from pathlib import Path

    from .train import _read_checkpoint_meta, check_logger, find_resume_checkpoint

    check_logger(logger)
    root = Path(out_dir)
    if resume:
        ckpt_path = find_resume_checkpoint(root) if resume is True else Path(resume)
        if not ckpt_path.is_file():
            raise FileNotFoundError(f"checkpoint to resume from not found: {ckpt_path}")
        meta = _read_checkpoint_meta(ckpt_path, "finetune")
        # Runs recorded before the schedule was a setting trained at a constant rate.
        settings = {"schedule": "none", "warmup_epochs": 0.0, "l2sp": 0.0, **meta["finetune"]}
        for name, given in (("source", source), ("data", data)):
            if given is not None and not _same(given, settings[name]):
                raise ValueError(f"{ckpt_path} fine-tunes {name} {settings[name]}, not {given}; "
                                 f"leave {name} out to resume it, or start a new run without resume")  # fmt: skip
        settings["epochs"] = epochs or settings["epochs"]
        return _finetune_run(settings, run_dir=ckpt_path.parent.parent, ckpt_path=ckpt_path, accelerator=accelerator,
                             devices=devices, strategy=strategy, precision=precision, logger=logger, progress_bar=progress_bar,
                             callbacks=callbacks, started_by=meta.get("command"),
                             resumed_by=[*meta.get("resumed_by", []), *([command] if command else [])])  # fmt: skip
    if data is None:
        raise ValueError("give the image folder (data) to fine-tune on")
    source = "lenet" if source is None else source
    if freeze not in STRATEGIES:
        raise ValueError(f"freeze must be one of {STRATEGIES}, got {freeze!r}")
    settings = dict(source=str(source), data=str(data), epochs=epochs, lr=lr, backbone_lr_ratio=backbone_lr_ratio, freeze=freeze,
                    unfreeze_epoch=unfreeze_epoch, optimizer=optimizer, schedule=schedule, warmup_epochs=warmup_epochs,
                    l2sp=l2sp, batch_size=batch_size, val_fraction=val_fraction, hflip=hflip,
                    augment=augment, strict=strict, seed=seed, in_chans=in_chans, input_size=input_size, timm_weights=timm_weights)  # fmt: skip
    return _finetune_run(settings, root=root, accelerator=accelerator, devices=devices, strategy=strategy, precision=precision,
                         logger=logger, progress_bar=progress_bar, callbacks=callbacks, started_by=command)  # fmt: skip


def _same(given: str | os.PathLike, recorded: str) -> bool:
    from pathlib import Path

    return str(given) == recorded or Path(given).resolve() == Path(recorded).resolve()


def _finetune_run(settings: dict[str, Any], *, root: "os.PathLike | None" = None, run_dir: "os.PathLike | None" = None,
                  ckpt_path: "os.PathLike | None" = None, accelerator: str = "auto", devices: Any = 1, strategy: str = "auto",
                  precision: str = "32-true", logger: str = "csv", progress_bar: bool = True, callbacks: Sequence[L.Callback] = (),
                  started_by: str | None = None, resumed_by: Sequence[str] = ()) -> dict[str, Any]:  # fmt: skip
    """One fine-tuning run with ``settings`` (:data:`SETTINGS`) in ``run_dir`` (or a new
    ``version_<n>`` under ``root``, claimed once the data has been read and the module built: a
    failed start leaves no folder)."""
    import json
    import time
    from pathlib import Path

    from .checkpoint import save_checkpoint
    from .data.folder import ImageFolderDataModule
    from .runtime import is_first_process
    from .train import _device_name, _fitting, _new_run_dir, _ZooMeta, check_finite_weights, zoo_trainer

    s = dict(settings)
    timm_options = {k: s[k] for k in ("in_chans", "input_size", "timm_weights")}
    probe = load_source(s["source"], **timm_options)  # its input size, channels, normalisation
    datamodule = ImageFolderDataModule.for_model(probe, s["data"], batch_size=s["batch_size"], val_fraction=s["val_fraction"],
                                                 seed=s["seed"], augment=s["augment"], hflip=s["hflip"], strict=s["strict"])  # fmt: skip
    datamodule.setup()
    chose_epochs = s["epochs"] is None
    if chose_epochs:
        s["epochs"] = default_epochs(len(datamodule.train_set), s["batch_size"])
    if s["warmup_epochs"] is None:  # a share of the run, whatever its length
        s["warmup_epochs"] = round(WARMUP_FRACTION * s["epochs"], 3) if s["schedule"] != "none" else 0.0
    if chose_epochs and is_first_process():
        log.warning("zoo: %d training images in batches of %d: training %d epochs (about %d steps; --epochs sets another number)%s",
                    len(datamodule.train_set), s["batch_size"], s["epochs"], DEFAULT_STEPS,
                    f", {s['schedule']} schedule after {s['warmup_epochs']:g} warm-up epochs" if s["schedule"] != "none" else "")  # fmt: skip
    L.seed_everything(s["seed"], workers=True, verbose=False)
    # Built before the run folder is claimed: a bad setting it refuses leaves no empty folder.
    module = FineTuner(source=s["source"], num_classes=len(datamodule.classes), label_names=datamodule.classes, lr=s["lr"],
                       backbone_lr_ratio=s["backbone_lr_ratio"], strategy=s["freeze"], unfreeze_epoch=s["unfreeze_epoch"],
                       optimizer=s["optimizer"], schedule=s["schedule"], warmup_epochs=s["warmup_epochs"], l2sp=s["l2sp"], **timm_options)  # fmt: skip
    run = Path(run_dir) if run_dir is not None else _new_run_dir(Path(root))
    trainer = zoo_trainer(
        run, meta=_ZooMeta({"finetune": s, "command": started_by, "resumed_by": list(resumed_by)}),
        seed=s["seed"], logger=logger, progress_bar=progress_bar,
        callbacks=[*(cb for cb in (module.finetuning_callback(),) if cb is not None), *callbacks],
        max_epochs=s["epochs"], precision=precision, accelerator=accelerator, devices=devices, strategy=strategy,
        num_sanity_val_steps=0, log_every_n_steps=1,  # a few-shot epoch is a handful of steps
    )  # fmt: skip
    if trainer.world_size > 1 and s["freeze"] == "freeze_unfreeze":
        # DDP fixes the set of trained parameters when it wraps the model; unfreezing mid-run changes it.
        if run_dir is None:
            shutil.rmtree(run, ignore_errors=True)  # the folder this call claimed, still empty
        raise ValueError("freeze_unfreeze cannot run on several processes (DDP fixes which parameters train); "
                         "use no_freeze or freeze, or one device")  # fmt: skip
    start = time.perf_counter()
    try:
        with _fitting(run):
            trainer.fit(module, datamodule=datamodule, ckpt_path=str(ckpt_path) if ckpt_path else None, weights_only=True)
    except SystemExit:  # Lightning's answer to Ctrl+C, after OnExceptionCheckpoint wrote on_exception.ckpt
        if trainer.interrupted and is_first_process():
            print(f"zoo: fine-tuning stopped at epoch {trainer.current_epoch} (step {trainer.global_step}); continue it "
                  f"with: zoo finetune --resume --out {run}", file=sys.stderr)  # fmt: skip
        raise
    results: dict[str, Any] = {
        **s,
        "classes": datamodule.classes,
        "train_images": len(datamodule.train_set),
        "val_images": len(datamodule.val_set),
        "global_step": trainer.global_step,
        "world_size": trainer.world_size,
        "precision": str(trainer.precision),
        "device": _device_name(trainer),
        "fit_seconds": round(time.perf_counter() - start, 2),
        "run_dir": str(run),
        "command": started_by,
        "resumed_by": list(resumed_by),
    }
    results["val_acc"] = float(trainer.callback_metrics["val/acc"])
    check_finite_weights(module.model)  # a NaN model is never exported
    if trainer.is_global_zero:
        module.model.photo_steps = datamodule.steps  # it learnt the folder's images as they were decoded
        training = {"finetuned_from": s["source"], **{k: s[k] for k in SETTINGS if k != "source"}, "precision": results["precision"],
                    "world_size": trainer.world_size, "command": started_by}  # fmt: skip
        results["export"] = str(save_checkpoint(module.model, run / "export", metrics={"val/acc": results["val_acc"]}, training=training))
        (run / "finetune.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def _scratch_val_acc(name: str, data: str | os.PathLike, *, seed: int, epochs: int, batch_size: int, val_fraction: float,
                     hflip: bool, augment: str, strict: bool, accelerator: str, precision: str, progress_bar: bool,
                     out: "os.PathLike") -> float:  # fmt: skip
    """Validation top-1 of the registered model ``name`` trained from scratch on the folder, with
    its own registered optimiser, learning rate, weight decay and schedule (its fair setting), and
    the same data split, epochs and batch size as the fine-tune."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from .data.folder import ImageFolderDataModule
    from .registry import get_spec

    r = get_spec(name).recipe
    L.seed_everything(seed, workers=True, verbose=False)
    probe = load_source(name)
    dm = ImageFolderDataModule.for_model(probe, data, batch_size=batch_size, val_fraction=val_fraction, seed=seed,
                                         augment=augment, hflip=hflip, strict=strict)  # fmt: skip
    dm.setup()
    module = FineTuner(source=name, num_classes=len(dm.classes), label_names=dm.classes, lr=r.lr, optimizer=r.optimizer,
                       weight_decay=r.weight_decay, schedule=r.schedule, warmup_epochs=r.warmup_epochs, pretrained=False)  # fmt: skip
    trainer = L.Trainer(max_epochs=epochs, accelerator=accelerator, devices=1, precision=precision, logger=False, enable_progress_bar=progress_bar,
                        enable_model_summary=False, num_sanity_val_steps=0, log_every_n_steps=1,
                        callbacks=[ModelCheckpoint(dirpath=out, save_top_k=0, save_last=False)])  # fmt: skip
    trainer.fit(module, datamodule=dm)
    return float(trainer.callback_metrics["val/acc"])


def _mean_sd(values: list[float]) -> dict[str, Any]:
    import statistics

    return {"mean": round(statistics.fmean(values), 4), "sd": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
            "runs": [round(v, 4) for v in values]}  # fmt: skip


def compare_with_scratch(source: str | os.PathLike, data: str | os.PathLike, *, seeds: Sequence[int] = (0, 1, 2, 3, 4),
                         baselines: Sequence[str] = BASELINES, out_dir: str | os.PathLike = "runs/finetune",
                         **options: Any) -> dict[str, Any]:  # fmt: skip
    """Fine-tune ``source`` on ``data`` once per seed, and train every baseline (the zoo's small
    classifiers, and the source's own architecture) from scratch with the same data split, epochs
    and batch size, each with its own registered optimiser and learning rate. Returns mean, sd and
    the runs of each arm (validation top-1), the best baseline by its mean, and the fine-tune's
    margin over it. ``options``: :func:`finetune`'s keywords, on one device (the arms run one after
    another). Everything goes to a new ``<out_dir>/version_<n>/``: ``compare.json``, and each
    seed's fine-tune in ``seed-<seed>/`` (its export in ``seed-<seed>/export``)."""
    import inspect
    import json
    from pathlib import Path

    from .train import _new_run_dir, check_logger

    if not seeds:
        raise ValueError("give at least one seed")
    check_logger(options.get("logger", "csv"))
    if options.get("resume"):
        raise ValueError("a comparison cannot be resumed; resume one fine-tune with `zoo finetune --resume --out <seed folder>`")
    if options.get("devices", 1) not in (1, "1", [0]) or options.get("strategy", "auto") != "auto":
        raise ValueError("a comparison runs on one device (its arms one after another); drop --devices/--strategy")
    defaults = {k: p.default for k, p in inspect.signature(finetune).parameters.items() if p.default is not inspect.Parameter.empty}
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise TypeError(f"compare_with_scratch() got unexpected keyword argument(s) {unknown}")
    o = {**defaults, **options}
    hardware = {k: o[k] for k in ("accelerator", "precision", "logger", "progress_bar", "callbacks")}
    if o["freeze"] not in STRATEGIES:
        raise ValueError(f"freeze must be one of {STRATEGIES}, got {o['freeze']!r}")
    arch = load_source(source, in_chans=o["in_chans"], input_size=o["input_size"], timm_weights=o["timm_weights"]).model_name
    names = list(dict.fromkeys([*baselines, arch]))  # the source's own network from scratch too, once
    tuned: list[float] = []
    scratch: dict[str, list[float]] = {n: [] for n in names}
    first: dict[str, Any] = {}
    out = _new_run_dir(Path(out_dir))
    for seed in seeds:
        settings = {**{k: o[k] for k in SETTINGS if k not in ("source", "data")}, "source": str(source), "data": str(data), "seed": seed}
        settings["epochs"] = first.get("epochs", o["epochs"])  # the first seed's (chosen or given) for all
        result = _finetune_run(settings, run_dir=out / f"seed-{seed}", started_by=o["command"], **hardware)
        first = first or result
        tuned.append(result["val_acc"])
        for name in names:
            scratch[name].append(_scratch_val_acc(name, data, seed=seed, epochs=first["epochs"], batch_size=o["batch_size"],
                                                  val_fraction=o["val_fraction"], hflip=o["hflip"], augment=o["augment"],
                                                  strict=o["strict"], accelerator=o["accelerator"], precision=o["precision"],
                                                  progress_bar=o["progress_bar"], out=out / f"seed-{seed}" / f"scratch-{name}"))  # fmt: skip
    arms = {name: _mean_sd(values) for name, values in scratch.items()}
    best = max(names, key=lambda n: arms[n]["mean"])
    summary = {"source": str(source), "data": str(data), "seeds": list(seeds), "classes": first["classes"],
               "train_images": first["train_images"], "val_images": first["val_images"], "epochs": first["epochs"],
               "batch_size": o["batch_size"], "finetuned": _mean_sd(tuned), "scratch": arms, "best_scratch": best,
               "margin": round(_mean_sd(tuned)["mean"] - arms[best]["mean"], 4), "run_dir": str(out)}  # fmt: skip
    (out / "compare.json").write_text(json.dumps(summary, indent=2) + "\n")
    summary["written"] = str(out / "compare.json")
    return summary
