"""TinySSD: the book's single-shot multibox detector (ch. "Single Shot Multibox Detection").

Five blocks produce feature maps of falling resolution (a base network of three down-sampling
blocks, two more down-sampling blocks, and global max pooling at the last scale). At every scale,
anchor boxes of two sizes and three ratios are centred on each pixel, and two 3x3 convolutions
predict, for every anchor, its class (background + the classes) and the offsets of its box.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..recipe import Recipe
from ..registry import register_model
from .boxes import multibox_detection, multibox_prior, multibox_target
from .detector import Detector

__all__ = ["TinySSD", "SSDFashion", "down_sample_blk", "cls_predictor", "wide_cls_predictor", "bbox_predictor"]

# The book's anchor sizes per scale (growing with the receptive field) and ratios.
SIZES = ((0.2, 0.272), (0.37, 0.447), (0.54, 0.619), (0.71, 0.79), (0.88, 0.961))
RATIOS = (1.0, 2.0, 0.5)
NUM_ANCHORS = len(SIZES[0]) + len(RATIOS) - 1  # 4 per pixel
WIDTHS = (64, 128, 128, 128, 128)  # channels of the five feature maps


def cls_predictor(num_inputs: int, num_anchors: int, num_classes: int) -> nn.Conv2d:
    """Per pixel: num_anchors x (num_classes + 1) class scores (the +1 is background)."""
    return nn.Conv2d(num_inputs, num_anchors * (num_classes + 1), kernel_size=3, padding=1)


def wide_cls_predictor(num_inputs: int, num_anchors: int, num_classes: int) -> nn.Sequential:
    """A 3x3 conv + BN + ReLU before the book's class predictor: TinySSD was sized for one class
    (the book's bananas), and one linear layer of features is little to tell ten apart."""
    return nn.Sequential(nn.Conv2d(num_inputs, num_inputs, kernel_size=3, padding=1), nn.BatchNorm2d(num_inputs), nn.ReLU(),
                         cls_predictor(num_inputs, num_anchors, num_classes))  # fmt: skip


def bbox_predictor(num_inputs: int, num_anchors: int) -> nn.Conv2d:
    """Per pixel: num_anchors x 4 box offsets."""
    return nn.Conv2d(num_inputs, num_anchors * 4, kernel_size=3, padding=1)


def down_sample_blk(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two 3x3 conv + BN + ReLU, then a 2x2 max pool that halves height and width."""
    layers: list[nn.Module] = []
    for _ in range(2):
        layers += [nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1), nn.BatchNorm2d(out_channels), nn.ReLU()]
        in_channels = out_channels
    layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


def base_net(in_chans: int) -> nn.Sequential:
    """Three down-sampling blocks, 16 -> 32 -> 64 channels: 1/8 of the input's side."""
    blk, channels = [], [in_chans, 16, 32, 64]
    for i in range(len(channels) - 1):
        blk.append(down_sample_blk(channels[i], channels[i + 1]))
    return nn.Sequential(*blk)


class TinySSD(Detector):
    """The book's TinySSD as a zoo model: ``backbone`` holds the five feature blocks, ``head`` the
    class and box predictors of each scale. Trained on FashionMNISTScenes with cross-entropy over
    every anchor plus the L1 loss of the offsets of the anchors that have a box; evaluated with
    torchmetrics' MeanAveragePrecision (mAP@0.5 and mAP@[.5:.95])."""

    default_input_size = 96

    def __init__(self, *, nms_threshold: float = 0.5, score_threshold: float = 0.05, top_k: int = 20, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.nms_threshold, self.score_threshold, self.top_k = nms_threshold, score_threshold, top_k
        self.backbone = nn.ModuleList([
            base_net(self.in_chans),
            down_sample_blk(64, 128),
            down_sample_blk(128, 128),
            down_sample_blk(128, 128),
            nn.AdaptiveMaxPool2d((1, 1)),
        ])  # fmt: skip
        self.head = nn.ModuleDict({
            "cls": nn.ModuleList(cls_predictor(w, NUM_ANCHORS, self.num_classes) for w in WIDTHS),
            "bbox": nn.ModuleList(bbox_predictor(w, NUM_ANCHORS) for w in WIDTHS),
        })  # fmt: skip
        self._anchors: dict[tuple, torch.Tensor] = {}

    # ---------------------------------------------------------------------------------- forward
    def _anchors_for(self, shapes: Sequence[tuple[int, int]], device: torch.device) -> torch.Tensor:
        key = (tuple(shapes), str(device))
        if key not in self._anchors:  # depends only on the feature-map sizes: compute once
            self._anchors[key] = torch.cat([multibox_prior(s, SIZES[i], RATIOS, device=device) for i, s in enumerate(shapes)], dim=1)
        return self._anchors[key]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(anchors (1, A, 4), class scores (N, A, num_classes + 1), offsets (N, 4A))."""
        x = self._check_input(x)
        cls_preds, bbox_preds, shapes = [], [], []
        for blk, cls, bbox in zip(self.backbone, self.head["cls"], self.head["bbox"]):
            x = blk(x)
            shapes.append(tuple(x.shape[-2:]))
            # Channels last, then flatten: predictions line up with multibox_prior's anchor order.
            cls_preds.append(cls(x).permute(0, 2, 3, 1).flatten(1))
            bbox_preds.append(bbox(x).permute(0, 2, 3, 1).flatten(1))
        n = x.shape[0]
        cls_all = torch.cat(cls_preds, dim=1).reshape(n, -1, self.num_classes + 1)
        return self._anchors_for(shapes, x.device), cls_all, torch.cat(bbox_preds, dim=1)

    def decode(self, outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """Class probabilities and offsets of every anchor -> boxes after non-maximum suppression."""
        anchors, cls_preds, bbox_preds = outputs
        probs = F.softmax(cls_preds.float(), dim=2).permute(0, 2, 1)
        return multibox_detection(probs, bbox_preds.float(), anchors, self.nms_threshold, self.score_threshold, self.top_k)

    def loss(self, outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of every anchor's class plus the L1 loss of the offsets of the anchors
        that have a box (the book's ``calc_loss``)."""
        anchors, cls_preds, bbox_preds = outputs
        bbox_labels, bbox_masks, cls_labels = multibox_target(anchors, targets)
        cls_loss = F.cross_entropy(cls_preds.reshape(-1, self.num_classes + 1).float(), cls_labels.reshape(-1))
        # Anchors without a box (background) add nothing to the box loss: the mask zeroes them.
        bbox_loss = F.l1_loss(bbox_preds.float() * bbox_masks, bbox_labels * bbox_masks)
        return cls_loss + bbox_loss


@register_model(chapter="14.7", recipe=Recipe(optimizer="adamw", lr=3e-3, weight_decay=1e-4, schedule="cosine", warmup_epochs=1,
                                             batch_size=64, epochs=20))  # fmt: skip
def tiny_ssd(**kwargs: Any) -> TinySSD:
    """The book's TinySSD detector, on 96x96 scenes of Fashion-MNIST items."""
    return TinySSD(**kwargs)


class SSDFashion(TinySSD):
    """TinySSD with what the book suggests for it and the scenes' measurements point at: wider
    class predictors (:func:`wide_cls_predictor`), SSD's loss (the cross-entropy of every anchor
    with a box and of the ``neg_pos_ratio`` times as many hardest background anchors, plus the
    smooth-L1 loss of the positives' offsets, both per positive anchor rather than per anchor:
    the book's mean over all 764 anchors makes the box loss of the dozen positives of a scene
    nearly vanish), training scenes on varied backgrounds (noise, clean, gradient), so a clean
    canvas is not out of distribution, and new training scenes every epoch. The backbone, anchors
    and decoding are TinySSD's."""

    scene_backgrounds = ("noise", "clean", "gradient")
    # On the same 10,000 scenes every epoch it learnt them by heart: mAP@0.5 0.973 on 1,000 of
    # its training scenes against 0.851 on validation (validation loss 1.40 against 0.51).
    fresh_scenes = True

    def __init__(self, *, neg_pos_ratio: float = 3.0, box_weight: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.neg_pos_ratio, self.box_weight = neg_pos_ratio, box_weight
        self.head["cls"] = nn.ModuleList(wide_cls_predictor(w, NUM_ANCHORS, self.num_classes) for w in WIDTHS)

    def loss(self, outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        anchors, cls_preds, bbox_preds = outputs
        bbox_labels, bbox_masks, cls_labels = multibox_target(anchors, targets)
        ce = F.cross_entropy(cls_preds.reshape(-1, self.num_classes + 1).float(), cls_labels.reshape(-1), reduction="none")
        ce = ce.reshape(cls_labels.shape)
        positive = cls_labels > 0
        n_pos = positive.sum(dim=1, keepdim=True)
        # Hard negatives: per image, the background anchors with the largest loss, neg_pos_ratio per positive.
        rank = ce.detach().masked_fill(positive, -1.0).argsort(dim=1, descending=True).argsort(dim=1)
        negative = rank < (self.neg_pos_ratio * n_pos.clamp(min=1))
        n = n_pos.sum().clamp(min=1)
        cls_loss = (ce * (positive | negative)).sum() / n
        box_loss = F.smooth_l1_loss(bbox_preds.float() * bbox_masks, bbox_labels * bbox_masks, reduction="sum") / n
        return cls_loss + self.box_weight * box_loss


# TinySSD's recipe, with more epochs in the 25 CPU minutes through bf16 autocast and channels-last:
# a step of 64 scenes took 0.32 s on 2 cores with AVX512-BF16, against 0.57 s in float32 (0.77 s in
# NCHW float32, which held the float32 run to 12 epochs). It learns alike: 3 short epochs (2,560
# scenes) reached validation mAP@0.5 0.688 in bf16 and 0.684 in float32. 24 epochs, not TinySSD's
# 20, chosen on validation: mAP@0.5 0.8881 against 0.8803 (21.7 against 17.0 minutes). A CPU
# without bf16 instructions emulates it slowly: there, `zoo train ssd_fmnist --precision 32-true`.
@register_model(chapter="14.7", recipe=Recipe(optimizer="adamw", lr=3e-3, weight_decay=1e-4, schedule="cosine", warmup_epochs=1,
                                             batch_size=64, epochs=24, precision="bf16-mixed", channels_last=True))  # fmt: skip
def ssd_fmnist(**kwargs: Any) -> SSDFashion:
    """TinySSD with wider class predictors, hard-negative mining and varied scene backgrounds."""
    return SSDFashion(**kwargs)
