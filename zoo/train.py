"""Training entry point: a real Lightning Trainer driven by a model's recipe.

``zoo finetune`` (:mod:`zoo.finetune`) runs on the same engine (:func:`zoo_trainer`). One run writes, under ``runs/<model>/version_<n>/`` (or ``<out_dir>/version_<n>/``):

    checkpoints/last.ckpt     resume from here (``resume=True`` / ``zoo train --resume``)
    checkpoints/best-NN.ckpt  the epoch with the best validation score
    logs/version_<k>/         Lightning's CSV log, a new version per (re)start: metrics.csv (one row
                              per logged step/epoch) and hparams.yaml
    tensorboard/version_<k>/  TensorBoard's event files, with ``logger="tensorboard"``
    metrics.json              the final weights' test score, the run's settings and timings
    export/                   the final weights as a checkpoint folder (also copied to the local store)
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import platform
import random
import re
import signal
import time
import typing
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, OnExceptionCheckpoint
from lightning.fabric.plugins.precision.precision import _PRECISION_INPUT_STR
from lightning.pytorch.loggers import CSVLogger

from .checkpoint import save_checkpoint
from .hub import store_dir
from .recipe import Recipe
from .registry import build_model, get_spec
from .runtime import MissingExtraError, is_first_process, seed_torch

# Lightning advertises its cloud services ("💡 Tip: ...") on every Trainer start; keep the console for our output.
logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(lambda record: "💡 Tip" not in record.getMessage())

# Lightning warnings that are noise for train(), silenced around its own fit only:
_QUIET = (
    r".*isinstance\(treespec, LeafSpec\)",  # an internal deprecation inside Lightning
    # With OnExceptionCheckpoint present, Lightning looks for a "last" checkpoint to resume from
    # even on a fresh run (whose new version folder has none); here resuming is explicit (resume=).
    r".*\.fit\(ckpt_path=\S*\)|.*there is no last checkpoint available",
    r"Checkpoint directory .* exists and is not empty",  # resuming writes into the run's own folder
)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        for pattern in _QUIET:
            warnings.filterwarnings("ignore", message=pattern)
        yield

__all__ = ["train", "evaluate", "TrainResult", "LOGGERS", "run_loggers", "zoo_trainer", "TrainingDiverged", "StopOnNonFinite", "check_finite_weights", "BatchSeed", "EMA", "find_resume_checkpoint", "keep_freed_memory_in_heap"]


def keep_freed_memory_in_heap() -> bool:
    """Tell glibc to serve large allocations from its heap and keep freed memory there.

    By default glibc maps every block over 32 MB afresh from the kernel and unmaps it when freed, so
    a CPU training step page-faults its way through new memory for each large activation and batch
    (a 224x224 float batch of 256 is 51 MB). Keeping them in the heap made AlexNet's CPU step 1.4x
    and ResNet-18's 1.2x faster on the 2-core machine. Process-wide and glibc-only; a no-op
    elsewhere or with ZOO_MALLOPT=0. Returns whether it was applied.
    """
    if os.environ.get("ZOO_MALLOPT", "1") == "0" or platform.system() != "Linux":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    return bool(libc.mallopt(M_MMAP_THRESHOLD, 1 << 30) and libc.mallopt(M_TRIM_THRESHOLD, 1 << 30))


class BatchSeed(Callback):
    """Reseed every RNG (torch, numpy, random) before each training batch from (seed, epoch, batch,
    rank). Dropout then depends only on those numbers, so a run resumed from a checkpoint continues
    exactly as the uninterrupted run would have, whatever drew random numbers in between
    (validation, data-loader start-up). The DataModule seeds augmentation the same way."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        batch_seed = hash((self.seed, trainer.current_epoch, batch_idx, trainer.global_rank)) % (2**31)
        # Not seed_everything: it would also rewrite PL_GLOBAL_SEED, which seeds DDP's sampler.
        seed_torch(batch_seed)  # CPU and every CUDA device in use
        random.seed(batch_seed)
        np.random.seed(batch_seed)


class EMA(Callback):
    """Keep an exponential moving average of the weights (timm's ModelEmaV3, with its warm-up), use
    it for validation, and make it the final weights when training ends. Resumable: the average is
    part of the checkpoint."""

    def __init__(self, decay: float) -> None:
        self.decay = decay
        self.ema: Any = None
        self._restored: dict[str, torch.Tensor] | None = None
        self._live: dict[str, torch.Tensor] | None = None

    @staticmethod
    def _net(pl_module: L.LightningModule) -> torch.nn.Module:
        # Only the network: deep-copying the LightningModule would copy its Trainer too.
        return torch.nn.ModuleDict({"backbone": pl_module.backbone, "head": pl_module.head})

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from timm.utils import ModelEmaV3

        self.ema = ModelEmaV3(self._net(pl_module), decay=self.decay, use_warmup=True)
        if self._restored is not None:
            self.ema.module.load_state_dict(self._restored)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self.ema.update(self._net(pl_module), step=trainer.global_step)

    def _swap_in(self, pl_module: L.LightningModule) -> None:
        net = self._net(pl_module)
        self._live = {k: v.detach().clone() for k, v in net.state_dict().items()}
        net.load_state_dict(self.ema.module.state_dict())

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.ema is not None and not trainer.sanity_checking:
            self._swap_in(pl_module)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._live is not None:
            self._net(pl_module).load_state_dict(self._live)
            self._live = None

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._net(pl_module).load_state_dict(self.ema.module.state_dict())  # the final weights

    def state_dict(self) -> dict[str, Any]:
        return {"ema": self.ema.module.state_dict()} if self.ema is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = state_dict.get("ema")


class TrainingDiverged(RuntimeError):
    """The loss or the weights became inf/NaN: the run stopped and exported nothing."""


class StopOnNonFinite(Callback):
    """Stop a run whose loss or weights are no longer finite, before anything is exported.

    The training loss is read back only on the steps the logger writes it anyway (every
    ``log_every_n_steps``; reading it every step would stall a GPU), the validation loss at each
    validation, and the weights once more before export (:func:`check_finite_weights`)."""

    @staticmethod
    def _check(value: Any, what: str, trainer: L.Trainer) -> None:
        if isinstance(value, torch.Tensor) and not bool(torch.isfinite(value).all()):
            raise TrainingDiverged(
                f"training diverged: {what} became {float(value)} at step {trainer.global_step} (epoch {trainer.current_epoch}); "
                "nothing was exported. Lower the learning rate (--lr) or check the data"
            )

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if (trainer.global_step % trainer.log_every_n_steps) == 0:
            loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
            self._check(loss, "the training loss", trainer)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._check(trainer.callback_metrics.get("val/loss"), "the validation loss", trainer)


def check_finite_weights(model: torch.nn.Module) -> None:
    """Raise :class:`TrainingDiverged` when any parameter or buffer holds inf or NaN."""
    bad = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise TrainingDiverged(f"training diverged: {len(bad)} weight tensor(s) hold inf/NaN (first: {bad[0]}); nothing was exported. "
                               "Lower the learning rate (--lr) or check the data")  # fmt: skip


class _ZooMeta(Callback):
    """Writes what rebuilds the run into every checkpoint, as ``checkpoint["zoo"]``: for zoo train
    the registry name, constructor arguments, recipe, seed and data subset; for zoo finetune its
    settings (plain JSON-able values, readable with weights_only=True)."""

    def __init__(self, meta: dict[str, Any]) -> None:
        self.meta = meta

    @classmethod
    def for_train(cls, model_name: str, kwargs: dict[str, Any], recipe: Recipe, seed: int, train_limit: int | None,
                  command: str | None = None, resumed_by: Sequence[str] = ()) -> "_ZooMeta":  # fmt: skip
        return cls({"model": model_name, "kwargs": {**kwargs, "recipe": recipe.to_dict()}, "seed": seed, "train_limit": train_limit,
                    "command": command, "resumed_by": list(resumed_by)})  # fmt: skip

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint["zoo"] = self.meta


#: Lightning's precision settings (the CLI's --precision choices).
PRECISIONS = tuple(p for p in typing.get_args(_PRECISION_INPUT_STR) if not p.startswith("transformer-engine"))

#: The loggers a run can have: metrics.csv always; "tensorboard" adds TensorBoard's event files.
LOGGERS = ("csv", "tensorboard")


def check_logger(logger: str) -> None:
    """Raise, before a run starts, when ``logger`` is unknown or its package is not installed."""
    if logger not in LOGGERS:
        raise ValueError(f"logger must be one of {LOGGERS}, got {logger!r}")
    if logger == "tensorboard":
        import importlib

        for name in ("tensorboard", "tensorboardX"):  # what Lightning's TensorBoardLogger writes with
            try:
                importlib.import_module(name)
                return
            except ImportError:
                pass
        raise MissingExtraError("--logger tensorboard needs the tensorboard extra: pip install 'd2l-zoo[tensorboard]'")


def run_loggers(run_dir: Path, logger: str = "csv") -> list[Any]:
    """The run's loggers: Lightning's CSVLogger (``<run>/logs/version_<k>/metrics.csv``, a new
    version per (re)start, so a resumed run never overwrites the earlier rows) and, for
    ``logger="tensorboard"``, a TensorBoardLogger beside it (``<run>/tensorboard/version_<k>/``)."""
    check_logger(logger)
    loggers: list[Any] = [CSVLogger(save_dir=str(run_dir), name="logs")]
    if logger == "tensorboard":
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", default_hp_metric=False))
    return loggers


def last_checkpoint(ckpt_dir: Path) -> ModelCheckpoint:
    """``last.ckpt``, rewritten at the end of every epoch: the resume point.

    Not ``ModelCheckpoint(save_last=True)``: since Lightning 2.6 that writes last.ckpt only at a step
    where a top-k checkpoint was saved too, so an epoch without a new best (or every epoch, with
    ``save_top_k=0``) left it behind. With no monitor and ``save_top_k=1`` the newest epoch is the
    one kept, under a fixed name."""
    return ModelCheckpoint(dirpath=ckpt_dir, filename="last", monitor=None, save_top_k=1, enable_version_counter=False)


def zoo_trainer(run_dir: Path, *, meta: _ZooMeta, seed: int, checkpoint: ModelCheckpoint | None = None, logger: str = "csv",
                progress_bar: bool = True, callbacks: Sequence[Callback] = (), **trainer_kwargs: Any) -> L.Trainer:  # fmt: skip
    """The Trainer of both ``zoo train`` and ``zoo finetune``: the run's loggers, per-batch seeding
    (an exact resume), the checkpoints (``checkpoints/last.ckpt`` every epoch, ``on_exception.ckpt``
    on Ctrl+C or a crash, and ``checkpoint``, e.g. the best epoch's, when given), the stop on
    inf/NaN, and a progress bar. ``trainer_kwargs`` go to ``L.Trainer`` (epochs, precision,
    accelerator, devices, strategy...)."""
    ckpt_dir = run_dir / "checkpoints"
    checkpoints = [*([checkpoint] if checkpoint is not None else []), last_checkpoint(ckpt_dir)]
    return L.Trainer(
        deterministic=False,
        logger=run_loggers(run_dir, logger),
        callbacks=[BatchSeed(seed), meta, *checkpoints, OnExceptionCheckpoint(ckpt_dir), StopOnNonFinite(), *callbacks],
        enable_progress_bar=progress_bar,
        enable_model_summary=progress_bar,
        **trainer_kwargs,
    )


@contextlib.contextmanager
def _fitting(run_dir: Path) -> Iterator[None]:
    """Around ``trainer.fit``: Lightning's noise silenced, the run folder handed to the DDP
    processes Lightning starts, and Ctrl+C given back to the caller afterwards (Lightning ignores
    SIGINT while it shuts down after one)."""
    previous_sigint = signal.getsignal(signal.SIGINT)
    os.environ[_RUN_DIR_ENV] = str(run_dir)  # DDP processes Lightning starts later inherit it
    try:
        with _quiet():
            yield
    finally:
        signal.signal(signal.SIGINT, previous_sigint)
        if "LOCAL_RANK" not in os.environ or os.environ.get("LOCAL_RANK") == "0":
            os.environ.pop(_RUN_DIR_ENV, None)


@dataclass
class TrainResult:
    """What :func:`train` produced."""

    run_dir: Path
    model: L.LightningModule
    metrics: dict[str, Any]
    last_checkpoint: Path | None
    best_checkpoint: Path | None


def _version_dirs(root: Path) -> list[Path]:
    found = [(int(m.group(1)), p) for p in root.glob("version_*") if (m := re.fullmatch(r"version_(\d+)", p.name))]
    return [p for _, p in sorted(found)]


_RUN_DIR_ENV = "ZOO_RUN_DIR"


def _new_run_dir(root: Path) -> Path:
    """The next ``version_<n>`` under ``root``. A DDP process that Lightning started for a run
    takes the run's folder from its environment instead, so every rank writes to the same place
    (counting folders again could race with rank 0 creating its own)."""
    if os.environ.get("LOCAL_RANK", "0") != "0" or os.environ.get("NODE_RANK", "0") != "0":
        inherited = os.environ.get(_RUN_DIR_ENV)
        if inherited:
            return Path(inherited)
    root.mkdir(parents=True, exist_ok=True)
    versions = _version_dirs(root)
    n = int(versions[-1].name.split("_")[1]) + 1 if versions else 0
    while True:
        # mkdir is atomic: of two runs started together in one folder, each claims its own version.
        try:
            (root / f"version_{n}").mkdir()
            return root / f"version_{n}"
        except FileExistsError:
            n += 1


def find_resume_checkpoint(root: Path) -> Path:
    """The checkpoint that continues the newest run under ``root`` (a run folder, or a model's
    folder of ``version_<n>`` runs): its ``last.ckpt`` (written at each epoch's end: the resumed
    run then ends exactly as an uninterrupted one), else its ``on_exception.ckpt`` (written on
    Ctrl+C or a crash in the first epoch; Lightning continues that epoch where it stopped).

    Only the newest run is ever continued: when it has no checkpoint yet (stopped in its first
    epoch before either was written), continuing an older run instead would silently train and
    rewrite that one, so this raises and says how to choose."""
    versions = _version_dirs(root)
    run = root if (root / "checkpoints").is_dir() or not versions else versions[-1]
    for c in (run / "checkpoints" / "last.ckpt", run / "checkpoints" / "on_exception.ckpt"):
        if c.is_file():
            return c
    if not versions and not (root / "checkpoints").is_dir():
        raise FileNotFoundError(f"nothing to resume: no run under {root}; train once without --resume first")
    older = [v for v in versions[:-1] if (v / "checkpoints" / "last.ckpt").is_file()]
    hint = f", or --resume {older[-1] / 'checkpoints' / 'last.ckpt'} to continue an older run" if older else ""
    raise FileNotFoundError(f"nothing to resume: the newest run {run} stopped before writing a checkpoint; "
                            f"train again without --resume{hint}")  # fmt: skip


def _read_checkpoint_meta(path: Path, command: str = "train") -> dict[str, Any]:
    """The "zoo" entry of a training checkpoint written by ``zoo <command>`` (train or finetune)."""
    # weights_only=True: a checkpoint is data; never let it run code.
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError, a truncated zip, not a torch file at all...
        raise ValueError(f"{path} is not a readable training checkpoint ({type(err).__name__}); "
                         f"pass the last.ckpt or on_exception.ckpt of a `zoo {command}` run") from None  # fmt: skip
    meta = ckpt.get("zoo") if isinstance(ckpt, dict) else None
    if not meta:
        raise ValueError(f"{path} was not written by `zoo {command}` (it has no 'zoo' entry), so it cannot be resumed here")
    written_by = "finetune" if "finetune" in meta else "train"
    if written_by != command:
        raise ValueError(f"{path} is a `zoo {written_by}` checkpoint: continue it with `zoo {written_by} --resume`")
    return meta


def train(
    model_name: str,
    *,
    recipe: Recipe | dict[str, Any] | str | None = None,
    model_kwargs: dict[str, Any] | None = None,
    seed: int = 0,
    accelerator: str = "auto",
    devices: int | str | Sequence[int] = "auto",
    strategy: str = "auto",
    num_nodes: int = 1,
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    train_limit: int | None = None,
    eval_limit: int | None = None,
    max_steps: int = -1,
    out_dir: str | os.PathLike | None = None,
    resume: bool | str | os.PathLike = False,
    test: bool = True,
    progress_bar: bool = True,
    logger: str = "csv",
    callbacks: Sequence[Callback] = (),
    num_workers: int = 0,
    command: str | None = None,
    **recipe_fields: Any,
) -> TrainResult:
    """Train a registered model on its data (Fashion-MNIST for the classifiers) with its recipe,
    then test the final weights.

    The model's registered recipe is the base (or, when ``recipe`` is a string, the preset of that
    name: ``"speedrun"``). ``recipe`` (a dict of fields, or a whole Recipe)
    and then any :class:`~zoo.recipe.Recipe` field given by name (``epochs=5``, ``ema=0.999``;
    None keeps the recipe's) change it. ``download=True`` lets torchvision fetch Fashion-MNIST when
    no local copy exists. ``resume=True`` continues from the newest ``last.ckpt`` of the model's
    run folder; a path resumes from that checkpoint (only ``epochs`` may change then).
    ``train_limit``/``eval_limit`` train and evaluate on the first N images only (quick runs).
    ``command`` is recorded with the metrics (the CLI passes its own command line). ``logger``:
    "csv" (``logs/version_<k>/metrics.csv``) or "tensorboard" (that and TensorBoard's files). The final
    weights are exported as a checkpoint folder to ``<run>/export`` and to the local store, where
    ``zoo.load(model_name)`` finds them. Returns the run folder, the trained model and the metrics
    written to ``metrics.json``.
    """
    spec = get_spec(model_name)
    check_logger(logger)
    unknown = sorted(set(recipe_fields) - set(Recipe.field_names()))
    if unknown:
        raise TypeError(f"train() got unexpected keyword argument(s) {unknown}; recipe fields are {Recipe.field_names()}")
    root = Path(out_dir) if out_dir is not None else Path("runs") / model_name

    ckpt_path: Path | None = None
    if resume:
        ckpt_path = find_resume_checkpoint(root) if resume is True else Path(resume)
        if not ckpt_path.is_file():
            raise FileNotFoundError(f"checkpoint to resume from not found: {ckpt_path}")
        meta = _read_checkpoint_meta(ckpt_path)
        if meta["model"] != model_name:
            raise ValueError(f"{ckpt_path} holds a {meta['model']!r} model, not {model_name!r}")
        # Rebuild exactly the model that was being trained; only the epoch budget may change.
        kwargs = dict(meta["kwargs"])
        recipe = spec.recipe.layered(kwargs.pop("recipe", None)).replace(epochs=recipe_fields.get("epochs"))
        run_dir = ckpt_path.parent.parent
        seed = meta.get("seed", seed)
        train_limit = meta.get("train_limit", train_limit)
        # The command that started the run stays its command; this one is recorded as resuming it.
        started_by, resumed_by = meta.get("command"), [*meta.get("resumed_by", []), *([command] if command else [])]
    else:
        kwargs = dict(model_kwargs or {})
        base = spec.recipe.layered(kwargs.pop("recipe", None))
        if isinstance(recipe, str):  # a preset: "speedrun"
            base, recipe = spec.get_recipe(recipe), None
        recipe = base.layered(recipe).replace(**recipe_fields)
        run_dir = None  # claimed once the data has been read (a failed start leaves no folder)
        started_by, resumed_by = command, []

    L.seed_everything(seed, workers=True, verbose=False)
    if torch.cuda.is_available():
        # TF32 matmuls on Ampere and later: ~2x faster float32 layers for a rounding change far
        # below what SGD's noise notices.
        torch.set_float32_matmul_precision("high")
    if accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available()):
        keep_freed_memory_in_heap()
    model = build_model(model_name, recipe=recipe, **kwargs)
    if recipe.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if recipe.compile:
        # The network's call only (nn.Module.compile: in place, state_dict keys unchanged). Handing
        # Lightning a torch.compile'd module would compile the whole training/validation steps,
        # self.log and the metrics included: graph breaks, and a recompile per logged name.
        model.compile(mode=recipe.compile_mode)
    datamodule = model.datamodule(data_dir=data_dir, download=download, seed=seed, train_limit=train_limit,
                                  eval_limit=eval_limit, num_workers=num_workers)  # fmt: skip

    # Read (and check) the data now: a missing or corrupt file then fails before the run folder,
    # its logs or an on_exception.ckpt of an untrained model exist.
    datamodule.prepare_data()
    datamodule.setup("fit")
    if run_dir is None:
        run_dir = _new_run_dir(root)

    ckpt_dir = run_dir / "checkpoints"
    monitor = model.monitor
    checkpoint = ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="best-{epoch:02d}",
        monitor=monitor,
        mode=model.monitor_mode,
        save_top_k=1,
        auto_insert_metric_name=False,
    )
    trainer = zoo_trainer(
        run_dir,
        checkpoint=checkpoint,
        meta=_ZooMeta.for_train(model_name, kwargs, recipe, seed, train_limit, started_by, resumed_by),
        seed=seed,
        logger=logger,
        progress_bar=progress_bar,
        callbacks=[*([EMA(recipe.ema)] if recipe.ema else []), *callbacks],
        max_epochs=recipe.epochs,
        max_steps=max_steps,
        precision=recipe.precision,
        accelerator=accelerator,
        devices=devices,
        strategy=strategy,
        num_nodes=num_nodes,
        log_every_n_steps=10,
        # A data module that draws new training data each epoch (the scenes' fresh_train) needs its
        # train_dataloader called again every epoch.
        reload_dataloaders_every_n_epochs=int(getattr(datamodule, "fresh_train", False)),
        benchmark=True,  # cudnn autotuning: every batch of a run has the same shape
    )
    setup_seconds = _process_seconds()  # imports, data, model: everything before the first step
    start = time.perf_counter()
    with _fitting(run_dir):
        trainer.fit(model, datamodule=datamodule, ckpt_path=str(ckpt_path) if ckpt_path else None, weights_only=True)
    fit_seconds = time.perf_counter() - start
    if not trainer.interrupted:
        check_finite_weights(model)  # a NaN model is never scored, exported or stored

    metrics: dict[str, Any] = {
        "model": model_name,
        "epochs": trainer.current_epoch,
        "global_step": trainer.global_step,
        "setup_seconds": setup_seconds,
        "fit_seconds": round(fit_seconds, 2),
        "params": sum(p.numel() for p in model.parameters()),
    }
    for key, value in trainer.callback_metrics.items():
        if key.startswith("val/"):
            metrics[key] = round(float(value), 6)
    if checkpoint.best_model_score is not None:
        metrics[f"best_{monitor}"] = round(float(checkpoint.best_model_score), 6)
    if test and not trainer.interrupted:
        # The final weights on the test split (never used to choose anything).
        with _quiet():
            start = time.perf_counter()
            (results,) = trainer.test(model, datamodule=datamodule, verbose=False)
        metrics.update({k: round(float(v), 6) for k, v in results.items()})
        metrics["test_seconds"] = round(time.perf_counter() - start, 2)
    metrics.update(
        {
            "process_seconds": _process_seconds(),
            "recipe": recipe.to_dict(),
            "model_kwargs": kwargs,
            "seed": seed,
            "train_limit": train_limit,
            "eval_limit": eval_limit,
            "device": _device_name(trainer),
            "world_size": trainer.world_size,
            "torch": torch.__version__,
            "lightning": L.__version__,
            "threads": torch.get_num_threads(),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "interrupted": trainer.interrupted,
        }
    )
    if started_by:
        metrics["command"] = started_by
    if resumed_by:
        metrics["resumed_by"] = resumed_by
    if trainer.is_global_zero and model.exportable and not trainer.interrupted:
        # The final weights as a Hub-style checkpoint folder, in the run and in the local store,
        # so that zoo.load(name) finds them (after the bundled weights; see zoo.hub).
        training = {k: metrics.get(k) for k in ("device", "fit_seconds", "date", "seed", "train_limit", "epochs", "world_size", "command")}
        scores = {k: v for k, v in metrics.items() if k.startswith(("val/", "test/"))}
        save_checkpoint(model, run_dir / "export", metrics=scores, training=training)
        store = save_checkpoint(model, store_dir(model_name), metrics=scores, training=training)
        metrics["export"] = str(run_dir / "export")
        metrics["store"] = str(store)
    if trainer.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    last = ckpt_dir / "last.ckpt"
    best = Path(checkpoint.best_model_path) if checkpoint.best_model_path else None
    return TrainResult(run_dir=run_dir, model=model, metrics=metrics, last_checkpoint=last if last.is_file() else None, best_checkpoint=best)


def evaluate(
    model: L.LightningModule,
    *,
    split: str = "test",
    data_dir: str | os.PathLike | None = None,
    eval_limit: int | None = None,
    batch_size: int | None = None,
    accelerator: str = "auto",
    precision: str | None = None,
    progress_bar: bool = False,
) -> dict[str, float]:
    """The scores of ``model`` on its data's test split (or "val"), with the model's own input size
    and normalisation: the one evaluation routine the zoo reports. Classifiers: top-1 accuracy and
    loss on Fashion-MNIST's official test set; detectors: mAP@0.5 and mAP@[.5:.95] on the scenes
    of that split. ``precision`` defaults to the recipe's on a GPU and to float32 on a CPU (where
    bf16 autocast only changes the numbers a bundled file is recorded with)."""
    if split not in ("test", "val"):
        raise ValueError(f"split must be 'test' or 'val', got {split!r}")
    # train_limit=1: evaluation needs no training data (a detector would otherwise make 10,000 scenes).
    datamodule = model.datamodule(data_dir=data_dir, eval_limit=eval_limit, eval_batch_size=batch_size, train_limit=1)
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    precision = precision or (model.recipe.precision if on_gpu else "32-true")
    trainer = L.Trainer(accelerator=accelerator, devices=1, logger=False, enable_progress_bar=progress_bar,
                        enable_model_summary=False, precision=precision)  # fmt: skip
    run = trainer.test if split == "test" else trainer.validate
    (results,) = run(model, datamodule=datamodule, verbose=False)
    return {k: float(v) for k, v in results.items()}


def _process_seconds() -> float | None:
    """Seconds since this process started (imports, data, compilation, training and test: what a
    speedrun's wall time counts); None where /proc is missing."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return round(uptime - start_ticks / os.sysconf("SC_CLK_TCK"), 2)


def _device_name(trainer: L.Trainer) -> str:
    root = trainer.strategy.root_device
    if root.type == "cuda":
        return torch.cuda.get_device_name(root)
    return f"{root.type} ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
