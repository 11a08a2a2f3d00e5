"""The Lightning callbacks every zoo run carries: per-batch seeding (an exact resume), an EMA of the
weights, the stop on inf/NaN, and the record of what rebuilds the run in each checkpoint."""

from __future__ import annotations

import importlib.util
import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, OnExceptionCheckpoint, RichProgressBar, TQDMProgressBar

from .runtime import batch_seed, seed_all

__all__ = ["BatchSeed", "EMA", "TrainingDiverged", "StopOnNonFinite", "check_finite_weights", "RunMeta", "StepsTakenCheckpoint", "last_checkpoint",
           "progress_bar", "TrainingClock"]  # fmt: skip


class BatchSeed(Callback):
    """Reseed every RNG (torch, numpy, random) before each training batch from (seed, epoch, batch,
    rank) (:func:`zoo.runtime.batch_seed`). Dropout then depends only on those numbers, so a run
    resumed from a checkpoint continues exactly as the uninterrupted run would have, whatever drew
    random numbers in between (validation, data-loader start-up). The DataModules seed each batch's
    augmentation from the same numbers."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        seed_all(batch_seed(self.seed, trainer.current_epoch, batch_idx, trainer.global_rank))


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


class RunMeta(Callback):
    """Writes what rebuilds the run into every checkpoint, as ``checkpoint["zoo"]``: for zoo train
    the registry name, constructor arguments, recipe, seed and data subset; for zoo finetune its
    settings (plain JSON-able values, readable with weights_only=True). :func:`zoo.runs.read_checkpoint_meta`
    reads it back."""

    def __init__(self, meta: dict[str, Any]) -> None:
        self.meta = meta

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint["zoo"] = self.meta


class StepsTakenCheckpoint(OnExceptionCheckpoint):
    """``on_exception.ckpt`` on Ctrl+C or a crash, once the run has taken a step: a run stopped
    before its first step has nothing to continue, and its checkpoint would make ``--resume`` pick
    that empty run over an older one."""

    def on_exception(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.global_step > 0:
            super().on_exception(trainer, *args, **kwargs)


def last_checkpoint(ckpt_dir: Any) -> ModelCheckpoint:
    """``last.ckpt``, rewritten at the end of every epoch: the resume point.

    Not ``ModelCheckpoint(save_last=True)``: since Lightning 2.6 that writes last.ckpt only at a step
    where a top-k checkpoint was saved too, so an epoch without a new best (or every epoch, with
    ``save_top_k=0``) left it behind. With no monitor and ``save_top_k=1`` the newest epoch is the
    one kept, under a fixed name."""
    return ModelCheckpoint(dirpath=ckpt_dir, filename="last", monitor=None, save_top_k=1, enable_version_counter=False)


class _WithoutVersion:
    """A progress bar that leaves out Lightning's ``v_num`` (the logger's version, shown as a
    metric: "v_num: 0.000"); the run folder the zoo prints says which run it is."""

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)  # type: ignore[misc]
        items.pop("v_num", None)
        return items


class QuietTQDMProgressBar(_WithoutVersion, TQDMProgressBar):
    """Lightning's tqdm progress bar without ``v_num``."""


class QuietRichProgressBar(_WithoutVersion, RichProgressBar):
    """Lightning's Rich progress bar without ``v_num``."""


def progress_bar() -> Callback:
    """The progress bar Lightning would choose (Rich when it is installed, else tqdm), without ``v_num``."""
    return QuietRichProgressBar() if importlib.util.find_spec("rich") else QuietTQDMProgressBar()


class TrainingClock(Callback):
    """The seconds a run spends in its training loops, validation and testing left out, timed as
    the CIFAR-10 speedruns (airbench) time theirs: by CUDA events on a GPU (no host sync inside the
    loop; read once at the end), by the host clock on a CPU. ``seconds`` after fit."""

    def __init__(self) -> None:
        self.spans: list[tuple[Any, Any]] = []
        self.seconds: float | None = None
        self._start: Any = None

    def _mark(self, trainer: L.Trainer) -> Any:
        device = trainer.strategy.root_device
        if device.type == "cuda":
            event = torch.cuda.Event(enable_timing=True)
            event.record(torch.cuda.current_stream(device))
            return event
        return time.perf_counter()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if self._start is None:  # the epoch's first batch (a run resumed mid-epoch has no epoch start)
            self._start = self._mark(trainer)

    def _stop(self, trainer: L.Trainer) -> None:
        if self._start is not None:
            self.spans.append((self._start, self._mark(trainer)))
            self._start = None

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop(trainer)  # the epoch's validation, after its training steps, is not timed

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop(trainer)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop(trainer)
        if self.spans and not isinstance(self.spans[0][0], float):  # CUDA events
            torch.cuda.synchronize(trainer.strategy.root_device)
            self.seconds = sum(a.elapsed_time(b) for a, b in self.spans) / 1000
        else:
            self.seconds = sum(b - a for a, b in self.spans)
