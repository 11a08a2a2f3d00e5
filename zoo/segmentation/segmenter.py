"""Segmenter: what a zoo semantic-segmentation network shares, whatever its architecture.

A subclass builds ``backbone`` and ``head`` whose forward gives per-pixel class scores
(N, classes, H, W) at the input's size. Training (per-pixel cross-entropy), the scores (torchmetrics'
mean IoU and pixel accuracy) and the data (the label maps of the Fashion-MNIST scenes) live here.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from ..base import ImageModel, log_train_loss
from ..data.fashion_mnist import CLASSES
from ..data.preprocess import PhotoSteps
from ..detection.scenes import scenes_for

__all__ = ["Segmenter", "SEGMENT_LABELS"]

#: The per-pixel classes of the scenes' label maps: background, then Fashion-MNIST's ten.
SEGMENT_LABELS = ("background", *CLASSES)


class Segmenter(ImageModel):
    """Base class of the zoo's segmentation networks, trained and scored on the label maps of
    :class:`~zoo.detection.scenes.FashionMNISTScenesDataModule` (11 classes, background first).

    Scores: "miou", the mean over the 11 classes of each class's IoU over the whole split
    (intersections and unions summed over every scene first, as PASCAL VOC scores it:
    ``MulticlassJaccardIndex(average="macro")``), and "pixel_acc", the share of pixels labelled right.
    """

    task = "segmentation"
    score, score_label = "miou", "mean IoU"
    hub_task = "image-segmentation"
    default_input_size = 96
    # A scene keeps its shape and size, as for the detector: its pixels are the labels' places.
    photo_steps = PhotoSteps(crop=False, pad_square=False, native_size=None)
    #: New training scenes every epoch (FashionMNISTScenesDataModule's fresh_train). On 10,000 fixed
    #: scenes the FCN learnt them by heart: mean IoU 0.89 on 1,000 of them against 0.72 on validation.
    fresh_scenes = True

    def __init__(self, *, num_classes: int = len(SEGMENT_LABELS), label_names: Any = None, **kwargs: Any) -> None:
        if label_names is None and num_classes == len(SEGMENT_LABELS):
            label_names = SEGMENT_LABELS
        super().__init__(num_classes=num_classes, label_names=label_names, **kwargs)
        self.metrics = torch.nn.ModuleDict({
            f"{stage}_{name}": metric(self.num_classes) for stage in ("val", "test")
            for name, metric in (("miou", lambda n: MulticlassJaccardIndex(n, average="macro", validate_args=False)),
                                 ("pixel_acc", lambda n: MulticlassAccuracy(n, average="micro", validate_args=False)))
        })  # fmt: skip

    def datamodule(self, **options: Any) -> L.LightningDataModule:
        """The scenes' label maps on this model's canvas (test scenes: test images only)."""
        options.pop("eval_batch_size", None)
        return scenes_for(self, label_maps=True, **options)

    @torch.no_grad()
    def segment(self, x: torch.Tensor) -> torch.Tensor:
        """The label of every pixel, (N, H, W) long (0: background, c + 1: class c)."""
        return self(x).argmax(dim=1)

    # ---------------------------------------------------------------------------------- steps
    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, maps = batch
        loss = F.cross_entropy(self(x).float(), maps)
        log_train_loss(self, loss)
        return loss

    def _eval_step(self, batch: Any, stage: str) -> None:
        x, maps = batch
        logits = self(x).float()
        self.log(f"{stage}/loss", F.cross_entropy(logits, maps), prog_bar=stage == "val")
        labels = logits.argmax(dim=1)
        for name in ("miou", "pixel_acc"):
            metric = self.metrics[f"{stage}_{name}"]
            metric.update(labels, maps)
            self.log(f"{stage}/{name}", metric, prog_bar=name == "miou")

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        return self.segment(batch[0] if isinstance(batch, (tuple, list)) else batch)
