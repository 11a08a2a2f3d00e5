"""ImageClassifier: the one LightningModule every zoo classifier shares.

A subclass only builds ``self.backbone`` (image -> features) and ``self.head`` (features -> logits);
the loss, the metrics, the optimiser and the learning-rate schedule live here, driven by the
model's :class:`~zoo.registry.Recipe`.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from .data.fashion_mnist import CLASSES, MEAN, STD
from .data.preprocess import per_channel
from .registry import Recipe

__all__ = ["ImageClassifier", "init_cnn"]


def init_cnn(module: nn.Module) -> None:
    """The book's initialisation for CNNs (ch. 4.8 / ``d2l.init_cnn``): Xavier-uniform weights for
    every linear and convolutional layer. Biases keep PyTorch's default, as in the book."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(m.weight)


class ImageClassifier(L.LightningModule):
    """Base class: ``forward(x) = head(backbone(x))`` with cross-entropy training.

    Args:
        num_classes: size of the output layer.
        in_chans: channels of the input images (Fashion-MNIST is 1; 3 for RGB data).
        input_size: side of the square images the network expects.
        mean, std: per-channel normalisation the inputs were trained with (one value = every channel).
        label_names: names of the classes, in output order.
        recipe: training recipe (a :class:`Recipe` or a dict of its fields).
    """

    #: True when a flatten -> linear layer ties the network to exactly ``input_size``.
    fixed_input_size: bool = False
    #: Default recipe when neither the caller nor the registry gives one.
    default_recipe: Recipe = Recipe()

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_chans: int = 1,
        input_size: int = 28,
        mean: Sequence[float] | float = MEAN,
        std: Sequence[float] | float = STD,
        label_names: Sequence[str] | None = None,
        recipe: Recipe | dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        for arg, value, low in (("num_classes", num_classes, 1), ("in_chans", in_chans, 1), ("input_size", input_size, 8)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{arg} must be an integer >= {low}, got {value!r}")
        if label_names is None and num_classes == len(CLASSES):
            label_names = CLASSES
        if label_names is not None and len(label_names) != num_classes:
            raise ValueError(f"label_names has {len(label_names)} names but num_classes is {num_classes}")
        self.recipe = Recipe.coerce(recipe, type(self).default_recipe)
        # Lightning collects the constructor arguments of the whole subclass chain, so a checkpoint
        # rebuilds the exact model; the resolved recipe is stored, not the None the caller may pass.
        self.save_hyperparameters()
        self.hparams["recipe"] = self.recipe.to_dict()
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.input_size = input_size
        self.mean = per_channel(mean, in_chans, "mean")
        self.std = per_channel(std, in_chans, "std")
        self.label_names = list(label_names) if label_names is not None else [str(i) for i in range(num_classes)]
        # validate_args=False: the labels come from our own DataModule; checking their range with
        # torch.unique on every batch costs more than the accuracy itself.
        self.train_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        self.val_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        self.test_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)

    # ----------------------------------------------------------------------------------- forward
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return self.head(self.backbone(x))

    def _check_input(self, x: torch.Tensor) -> None:
        # Catch the common mistakes here, with the numbers, rather than as a shape error deep in a conv.
        if x.ndim != 4:
            raise ValueError(
                f"{type(self).__name__} expects a batch of images (N, {self.in_chans}, H, W), "
                f"got a tensor of shape {tuple(x.shape)}"
            )
        if x.shape[1] != self.in_chans:
            raise ValueError(
                f"{type(self).__name__} was built for {self.in_chans}-channel images, got {x.shape[1]} "
                f"channels (shape {tuple(x.shape)}); build it with in_chans={x.shape[1]} or convert the images"
            )
        if self.fixed_input_size and tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            raise ValueError(
                f"{type(self).__name__} needs {self.input_size}x{self.input_size} inputs (its linear layers "
                f"are sized for them), got {x.shape[-2]}x{x.shape[-1]}; resize the images first"
            )

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ----------------------------------------------------------------------------------- steps
    def _unpack(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        if isinstance(batch, (tuple, list)):
            return batch[0], (batch[1] if len(batch) > 1 else None)
        return batch, None

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = self._unpack(batch)
        r = self.recipe
        if (r.mixup or r.cutmix) and x.shape[0] % 2 == 0:  # timm mixes pairs: an odd last batch stays unmixed
            x, soft = self._mixer(x, y)
            logits = self(x)
            loss = torch.sum(-soft * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()
        else:
            logits = self(x)
            loss = F.cross_entropy(logits, y, label_smoothing=r.label_smoothing)
        self.train_acc.update(logits, y)  # against the unmixed labels: a rough guide under mixing  # update, not forward: no per-batch accuracy to compute
        # Only on the steps the logger writes (Lightning writes when (step + 1) % n == 0): self.log
        # costs Lightning ~0.5 ms of bookkeeping, 5-8 % of a LeNet step on a 2-core CPU
        # (scripts/benchmark.py --model lenet).
        if self._trainer is None or (self.trainer.global_step + 1) % self.trainer.log_every_n_steps == 0:
            self.log("train/loss", loss, prog_bar=True)
        return loss

    @property
    def _mixer(self) -> Any:
        if getattr(self, "_mixup_fn", None) is None:
            from timm.data import Mixup

            r = self.recipe
            # Mixup makes soft targets and applies the label smoothing itself.
            self._mixup_fn = Mixup(mixup_alpha=r.mixup, cutmix_alpha=r.cutmix, label_smoothing=r.label_smoothing,
                                   num_classes=self.num_classes)  # fmt: skip
        return self._mixup_fn

    def on_train_epoch_end(self) -> None:
        # Logged once an epoch rather than as a metric object every step, which costs Lightning
        # about a millisecond per step in bookkeeping (measured: scripts/benchmark.py --model lenet).
        self.log("train/acc", self.train_acc.compute(), prog_bar=True, sync_dist=False)
        self.train_acc.reset()

    def _eval_step(self, batch: Any, stage: str, metric: MulticlassAccuracy) -> None:
        x, y = self._unpack(batch)
        logits = self(x)
        metric.update(logits, y)
        self.log(f"{stage}/loss", F.cross_entropy(logits, y), prog_bar=stage == "val")
        self.log(f"{stage}/acc", metric, prog_bar=True)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "val", self.val_acc)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "test", self.test_acc)

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        """Class probabilities, shape (N, num_classes)."""
        x, _ = self._unpack(batch)
        return self(x).softmax(dim=-1)

    # ----------------------------------------------------------------------------------- optimisation
    def parameter_groups(self) -> list[dict[str, Any]]:
        """Weights get weight decay; biases and norm parameters (every 0-/1-d tensor) never do,
        since decaying a BatchNorm scale or a bias only fights the normalisation."""
        decay, no_decay = [], []
        for p in self.parameters():
            if p.requires_grad:
                (no_decay if p.ndim <= 1 else decay).append(p)
        groups = [{"params": decay, "weight_decay": self.recipe.weight_decay}]
        if no_decay:
            groups.append({"params": no_decay, "weight_decay": 0.0})
        return groups

    def configure_optimizers(self) -> Any:
        r = self.recipe
        groups = self.parameter_groups()
        if r.optimizer == "sgd":
            opt = torch.optim.SGD(groups, lr=r.lr, momentum=r.momentum, nesterov=r.nesterov and r.momentum > 0)
        else:
            opt = torch.optim.AdamW(groups, lr=r.lr)
        if r.schedule == "none":
            return opt
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total) or total < 1:
            raise ValueError(f"the {r.schedule!r} schedule needs a finite number of steps (set max_epochs or max_steps)")
        total = int(total)
        epochs = max(1, self.trainer.max_epochs or 1)
        warmup = int(round(r.warmup_epochs / epochs * total))
        if r.schedule == "onecycle":
            # warmup_epochs sets the rising phase; without it, PyTorch's default of 30 % of the steps.
            pct = warmup / total if warmup else 0.3
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=r.lr, total_steps=total, pct_start=pct)
        else:
            sched = torch.optim.lr_scheduler.LambdaLR(opt, _warmup_cosine(warmup, total))
        # Stepped every batch: the schedules are defined over optimisation steps.
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def _warmup_cosine(warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor

