"""Detector: what a zoo object detector shares, whatever its architecture.

A subclass builds ``backbone`` and ``head`` and says how its raw outputs become a loss
(:meth:`Detector.loss`) and boxes (:meth:`Detector.decode`); training, mean average precision
(torchmetrics) and the Fashion-MNIST scenes it learns from live here.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from ..base import ImageModel, log_train_loss
from ..data.preprocess import PhotoSteps
from .scenes import item_masks, scenes_for

__all__ = ["Detector"]


class Detector(ImageModel):
    """Base class of the zoo's detectors, trained and scored on :class:`FashionMNISTScenesDataModule`.

    Targets are (N, max_objects, 5) tensors of (class, x0, y0, x1, y1) in [0, 1], padded with -1
    rows. Scores: mAP@0.5 ("map50") and mAP@[.5:.95] ("map").
    """

    task = "detection"
    score, score_label = "map50", "mAP@0.5"
    hub_task = "object-detection"
    # A scene keeps its shape and size: the boxes are fractions of the whole image, trimming or
    # padding would move them, and a detour through 28x28 would blur a 96x96 scene of several
    # items (measured: 0.85 of 454 test items found at IoU 0.5 either way without it, 0.35 with).
    # Inverting a bright scene (0.15 -> 0.85 on inverted test scenes) and EXIF still apply.
    photo_steps = PhotoSteps(crop=False, pad_square=False, native_size=None)
    #: The backgrounds of the training scenes (zoo.detection.scenes.BACKGROUNDS); validation and
    #: test scenes always have the default noise, so every detector is scored on the same scenes.
    scene_backgrounds: tuple[str, ...] = ("noise",)
    #: New training scenes every epoch (FashionMNISTScenesDataModule's fresh_train) instead of the
    #: same ones each epoch.
    fresh_scenes: bool = False
    #: Validation logs "val/loss" too (False where the loss exists only in training mode).
    eval_loss: bool = True
    #: The model also segments each item: its targets are (boxes, instance maps), its detections
    #: carry "masks", and it is scored on masks too ("mask_map50", "mask_map").
    instance_masks: bool = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._maps: dict[str, Any] = {}

    # ---------------------------------------------------------------------------------- what a detector says
    def loss(self, outputs: Any, targets: torch.Tensor) -> torch.Tensor:
        """The training loss of the raw outputs of ``forward`` against the targets."""
        raise NotImplementedError

    def decode(self, outputs: Any) -> list[dict[str, torch.Tensor]]:
        """Raw outputs -> per image: boxes (normalised corners), scores and labels (from 0)."""
        raise NotImplementedError

    @torch.no_grad()
    def detect(self, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """Boxes (normalised corners), scores and labels (from 0) per image."""
        return self.decode(self(x))

    def datamodule(self, **options: Any) -> L.LightningDataModule:
        """Scenes of Fashion-MNIST items on this model's canvas (test scenes: test images only)."""
        options.pop("eval_batch_size", None)
        return scenes_for(self, **options)

    # ---------------------------------------------------------------------------------- steps
    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, targets = batch
        loss = self.loss(self(x), targets)
        log_train_loss(self, loss)
        return loss

    def _metric(self, stage: str) -> Any:
        if stage not in self._maps:
            from torchmetrics.detection import MeanAveragePrecision

            iou_type = ("bbox", "segm") if self.instance_masks else "bbox"
            self._maps[stage] = MeanAveragePrecision(iou_type=iou_type).to(self.device)
        return self._maps[stage]

    def _eval_step(self, batch: Any, stage: str) -> None:
        x, targets = batch
        outputs = self(x)  # one forward pass serves both the loss and the detections
        if self.eval_loss:
            self.log(f"{stage}/loss", self.loss(outputs, targets), prog_bar=stage == "val")
        scale = float(self.input_size)
        preds = [{k: (v * scale if k == "boxes" else v) for k, v in d.items()} for d in self.decode(outputs)]
        self._metric(stage).update(preds, self.truth(targets))

    def truth(self, targets: Any) -> list[dict[str, torch.Tensor]]:
        """A batch's targets as torchmetrics' ground truth: per image, boxes in pixels and labels
        (and, with ``instance_masks``, "masks": one boolean map per box)."""
        boxes, instances = targets if self.instance_masks else (targets, None)
        scale = float(self.input_size)
        truth = [{"boxes": t[t[:, 0] >= 0, 1:] * scale, "labels": t[t[:, 0] >= 0, 0].long()} for t in boxes]
        if instances is not None:
            for row, t, m in zip(truth, boxes, instances):
                row["masks"] = item_masks(t, m)
        return truth

    def _eval_epoch_end(self, stage: str) -> None:
        metric = self._metric(stage)
        result = metric.compute()
        if self.instance_masks:  # torchmetrics names each kind's scores "bbox_..." and "segm_..."
            self.log(f"{stage}/mask_map50", result["segm_map_50"].float(), prog_bar=True)
            self.log(f"{stage}/mask_map", result["segm_map"].float())
            result = {k[len("bbox_"):]: v for k, v in result.items() if k.startswith("bbox_")}
        self.log(f"{stage}/map50", result["map_50"].float(), prog_bar=True)
        self.log(f"{stage}/map", result["map"].float())
        metric.reset()

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> list[dict[str, torch.Tensor]]:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self.detect(x)
