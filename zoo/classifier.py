"""ImageClassifier: the one LightningModule every zoo classifier shares.

A subclass only builds ``self.backbone`` (image -> features) and ``self.head`` (features -> logits);
the loss and the accuracy live in :class:`ClassifierSteps` (shared with the fine-tuner), the
optimiser and the schedule in :class:`~zoo.base.ImageModel`, all driven by the model's recipe.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.aggregation import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from .base import ImageModel, log_train_loss
from .data.fashion_mnist import PAD_LABEL, FashionMNISTDataModule, find_data_dir

__all__ = ["ImageClassifier", "ClassifierSteps", "init_cnn"]


def init_cnn(module: nn.Module) -> None:
    """The book's initialisation for CNNs (ch. 4.8 / ``d2l.init_cnn``): Xavier-uniform weights for
    every linear and convolutional layer. Biases keep PyTorch's default, as in the book."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(m.weight)


def _accuracy(num_classes: int, **kwargs: Any) -> MulticlassAccuracy:
    # validate_args=False: the labels come from our own DataModules; checking their range with
    # torch.unique on every batch costs more than the accuracy itself.
    return MulticlassAccuracy(num_classes, average="micro", validate_args=False, **kwargs)


class ClassifierSteps:
    """Cross-entropy training and top-1 accuracy for a LightningModule whose forward gives logits.

    A mixin: the module calls :meth:`init_metrics` in its constructor and has a ``recipe`` (label
    smoothing, Mixup/CutMix) and ``num_classes``.
    """

    recipe: Any
    num_classes: int
    #: Test-time augmentation of validation and test steps: "flip" averages the logits of each
    #: image and its mirror image (set by ``evaluate(tta="flip")`` / ``zoo eval --tta flip``).
    tta: str | None = None

    def init_metrics(self, num_classes: int) -> None:
        # Training batches are never padded, and ignore_index would cost a host sync every step.
        self.train_acc = _accuracy(num_classes)
        self.val_acc = _accuracy(num_classes, ignore_index=PAD_LABEL)
        self.test_acc = _accuracy(num_classes, ignore_index=PAD_LABEL)
        # The mean loss per real image: a padded image's loss (0, see PAD_LABEL) has weight 0.
        # nan_strategy=nan: a NaN loss stays NaN in the mean, not dropped ("disable" would also drop
        # the weights: torchmetrics 1.9).
        self.val_loss = MeanMetric(nan_strategy=float("nan"))
        self.test_loss = MeanMetric(nan_strategy=float("nan"))

    @staticmethod
    def _unpack(batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
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
        # Against the unmixed labels: a rough guide under mixing. update, not forward: no per-batch
        # accuracy to compute.
        self.train_acc.update(logits, y)
        log_train_loss(self, loss)
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
        # about a millisecond per step in bookkeeping (measured: scripts/benchmarks/benchmark.py --model lenet).
        self.log("train/acc", self.train_acc.compute(), prog_bar=True, sync_dist=False)
        self.train_acc.reset()

    def _eval_step(self, batch: Any, stage: str, metric: MulticlassAccuracy) -> None:
        x, y = self._unpack(batch)
        logits = (self(x) + self(x.flip(-1))) / 2 if self.tta == "flip" else self(x)
        metric.update(logits, y)
        mean_loss = getattr(self, f"{stage}_loss")
        mean_loss.update(F.cross_entropy(logits.float(), y, reduction="none"), (y != PAD_LABEL).float())
        self.log(f"{stage}/loss", mean_loss, prog_bar=stage == "val")
        self.log(f"{stage}/acc", metric, prog_bar=True)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "val", self.val_acc)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "test", self.test_acc)

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        """Class probabilities, shape (N, num_classes)."""
        x, _ = self._unpack(batch)
        return self(x).softmax(dim=-1)


#: Layers that turn a feature map into a vector: where forward_features stops.
_TO_VECTOR = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Flatten)


def flat_layers(module: nn.Module) -> list[nn.Module]:
    """The layers of nested ``nn.Sequential`` containers, in order (the modules themselves, shared)."""
    if isinstance(module, nn.Sequential):
        return [layer for child in module for layer in flat_layers(child)]
    return [module]


def _has_conv(module: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in module.modules())


class ImageClassifier(ClassifierSteps, ImageModel):
    """Base class of the zoo's classifiers: ``forward(x) = head(backbone(x))`` with cross-entropy
    training (arguments: :class:`~zoo.base.ImageModel`).

    The feature contract is timm's: ``forward(x) == forward_head(forward_features(x))``, where
    :meth:`forward_features` gives the last feature map before any pooling (the last hidden layer
    for the networks without convolutions) and ``forward_head(f, pre_logits=True)`` the embedding
    the classifier reads.
    """

    task = "classification"
    score, score_label = "acc", "top-1"
    hub_task = "image-classification"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.init_metrics(self.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._check_input(x)
        return self.head(self.backbone(x))

    def feature_split(self) -> tuple[list[nn.Module], list[nn.Module]]:
        """The backbone's layers as (feature layers, pre-logits layers): split at the first layer
        that pools or flattens a feature map. A network without convolutions has no feature map:
        all of its backbone is features, ending at its last hidden layer."""
        layers = flat_layers(self.backbone)
        for i, layer in enumerate(layers):
            if isinstance(layer, _TO_VECTOR) and any(_has_conv(m) for m in layers[:i]):
                return layers[:i], layers[i:]
        return layers, []

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map, (N, C, H, W), before pooling; (N, D) for the MLPs and softmax."""
        x = self._check_input(x)
        for layer in self.feature_split()[0]:
            x = layer(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Features -> logits; with ``pre_logits``, the embedding the classifier reads, (N, D)."""
        for layer in self.feature_split()[1]:
            x = layer(x)
        return x if pre_logits else self.head(x)

    def datamodule(self, *, data_dir: Any = None, download: bool = False, **options: Any) -> L.LightningDataModule:
        """Fashion-MNIST at this model's input size, channels, normalisation and recipe."""
        find_data_dir(data_dir, download=download)  # fail here, with the how-to-get-it message, before any Trainer starts
        return FashionMNISTDataModule.for_model(self, data_dir=data_dir, download=download, **options)
