"""The R-CNN family (ch. 14.8, "Region-based CNNs") on the Fashion-MNIST scenes: Faster R-CNN and
Mask R-CNN.

torchvision's :class:`~torchvision.models.detection.FasterRCNN`, not a rewrite: its region proposal
network, RoI align and box head, on a backbone cut from the zoo's own trained ResNet-18, which is
the book's point: a classifier's features become a detector's. What is set for the scenes rather
than for 800-pixel photos: no resizing (the 96-px scene is the input), anchors of 16-64 px for items
of 28-48 px, one gray channel (already normalised with the zoo's mean and std, as every zoo
detector takes it), and proposal counts for the one to four items a scene holds.

Mask R-CNN is torchvision's too: Faster R-CNN whose RoI heads also predict each item's mask
from RoI-aligned features. Each scene item's own visible pixels are its instance mask, so the same
scenes serve SSD, Faster and Mask R-CNN and the FCN.

The book's RoI pooling example (a 4x4 map, two regions, 2x2 bins) is ``torchvision.ops.roi_pool``;
tests/test_rcnn.py checks it against the numbers the book prints.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.detection import FasterRCNN as TorchvisionFasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign

from ..base import ClassifierBackbone, decay_groups, log_train_loss
from ..recipe import Recipe
from ..registry import build_model, register_model
from .detector import Detector
from .scenes import item_masks

__all__ = ["FasterRCNN", "MaskRCNN", "ResNetFPN"]

#: Anchor sides per pyramid level (strides 4, 8 and 16 on the 96-px scene) and their shapes.
ANCHOR_SIZES = ((16,), (32,), (64,))
ASPECT_RATIOS = (0.5, 1.0, 2.0)


class ResNetFPN(nn.Module):
    """The stem and the first ``stages`` residual stages of a zoo ResNet (``body``, its layers under
    their own names, so the classifier's weights load as they are), with a feature pyramid
    (``fpn``, torchvision's) over the stages' outputs: one map of ``out_channels`` per stage."""

    def __init__(self, classifier_backbone: nn.Sequential, *, stages: int, out_channels: int) -> None:
        super().__init__()
        layers = list(classifier_backbone.children())
        first_stage = next(i for i, m in enumerate(layers) if isinstance(m, nn.Sequential))
        keep = nn.Sequential(OrderedDict((str(i), m) for i, m in enumerate(layers[: first_stage + stages])))
        self.body = IntermediateLayerGetter(keep, {str(first_stage + i): str(i) for i in range(stages)})
        widths = [layers[first_stage + i][-1].bn2.num_features for i in range(stages)]
        self.fpn = FeaturePyramidNetwork(widths, out_channels)
        self.out_channels = out_channels  # what torchvision's FasterRCNN reads off its backbone

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        return self.fpn(self.body(x))


def box_head(channels: int, width: int, convs: int) -> nn.Module:
    """The box head on 7x7 RoI features: torchvision's two-layer MLP, or ``convs`` 3x3 convolutions
    (batch norm, ReLU) and one fully connected layer (its FastRCNNConvFCHead)."""
    if convs == 0:
        return TwoMLPHead(channels * 7 * 7, width)
    return FastRCNNConvFCHead((channels, 7, 7), [channels] * convs, [width], norm_layer=nn.BatchNorm2d)


class FasterRCNN(ClassifierBackbone, Detector):
    """torchvision's Faster R-CNN on the zoo's ResNet-18 features, as a zoo :class:`Detector`.

    ``rcnn`` is the torchvision model; ``backbone`` (ResNet stages + FPN) and ``head`` (the region
    proposal network and the RoI heads) name its parts. ``forward`` takes normalised scenes, as the
    other zoo detectors do, and returns torchvision's detections (pixel boxes, labels from 1);
    :meth:`detect` gives the zoo's (boxes as fractions of the image, labels from 0).

    Args:
        source: the zoo classifier whose stem and stages make the backbone (a ResNet).
        stages: how many of its residual stages (3: strides 4, 8, 16 on the scene).
        fpn_channels: channels of every pyramid level.
        representation_size: width of the box head's fully connected layers (torchvision's 1024).
        box_convs: 3x3 convolutions (with batch norm) on the RoI features before the box head's
            fully connected layer (torchvision's FastRCNNConvFCHead); 0: its two-layer MLP head.
        box_samples: RoIs sampled per scene to train the box head (a quarter of them items).
        roi_scale: the box side that FPN's level rule maps to the 1/16 level (torchvision's 224).
        pretrained_backbone: when training starts, copy the stages' weights from the zoo's trained
            ``source`` (``zoo.load``, verified); a loaded or resumed model keeps its own
            (:class:`~zoo.base.ClassifierBackbone`).
        score_threshold, nms_threshold, top_k: torchvision's box_score_thresh, box_nms_thresh and
            box_detections_per_img.
        **kwargs: :class:`~zoo.base.ImageModel`'s.
    """

    default_input_size = 96
    scene_backgrounds = ("noise", "clean", "gradient")  # as ssd_fmnist: a clean canvas is not out of distribution
    fresh_scenes = True
    # torchvision computes the losses only in training mode (where the RPN samples its proposals
    # differently); validation scores the detections.
    eval_loss = False

    def __init__(self, *, source: str = "resnet18", stages: int = 3, fpn_channels: int = 64, representation_size: int = 1024,
                 box_convs: int = 0, box_samples: int = 32, roi_scale: int = 224, pretrained_backbone: bool = True,
                 score_threshold: float = 0.05, nms_threshold: float = 0.5, top_k: int = 20, **kwargs: Any) -> None:  # fmt: skip
        for name, value, least in (("box_convs", box_convs, 0), ("box_samples", box_samples, 1)):
            if not isinstance(value, int) or value < least:
                raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
        super().__init__(**kwargs)
        self.source, self.pretrained_backbone = source, pretrained_backbone
        backbone = ResNetFPN(build_model(source, in_chans=self.in_chans).backbone, stages=stages, out_channels=fpn_channels)
        # FPN's rule maps a box of side s to level 4 + log2(s / roi_scale): at torchvision's 224 every
        # item of a 96-px scene reads the finest level. One sample per bin: a 7x7 bin of an item
        # is about one cell of that level, and RoI align's backward (serial on the CPU) costs 4x less.
        roi_pool = MultiScaleRoIAlign(featmap_names=[str(i) for i in range(stages)], output_size=7, sampling_ratio=1,
                                      canonical_scale=roi_scale)  # fmt: skip
        self.rcnn = TorchvisionFasterRCNN(
            backbone,
            rpn_anchor_generator=AnchorGenerator(ANCHOR_SIZES[:stages], (ASPECT_RATIOS,) * stages),
            box_roi_pool=roi_pool,
            box_head=box_head(fpn_channels, representation_size, box_convs),
            box_predictor=FastRCNNPredictor(representation_size, self.num_classes + 1),  # + background
            min_size=self.input_size, max_size=self.input_size,  # the scene's own size
            image_mean=[0.0] * self.in_chans, image_std=[1.0] * self.in_chans,  # inputs come normalised
            rpn_pre_nms_top_n_train=300, rpn_post_nms_top_n_train=100, rpn_pre_nms_top_n_test=150, rpn_post_nms_top_n_test=50,
            rpn_batch_size_per_image=64, box_batch_size_per_image=box_samples,  # a scene has 1-4 items, not 100
            box_score_thresh=score_threshold, box_nms_thresh=nms_threshold, box_detections_per_img=top_k,
        )  # fmt: skip
        self.copy_backbone_on_fit()

    @property
    def backbone(self) -> nn.Module:
        return self.rcnn.backbone

    @property
    def head(self) -> nn.ModuleDict:
        return nn.ModuleDict({"rpn": self.rcnn.rpn, "roi_heads": self.rcnn.roi_heads})

    def backbone_layers(self) -> nn.Module:
        return self.rcnn.backbone.body

    # ---------------------------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor) -> tuple[list[dict[str, torch.Tensor]], tuple[int, int]]:
        """(torchvision's detections per image, the images' (height, width)); in eval mode."""
        x = self._check_input(x)
        if self.training:
            raise RuntimeError("FasterRCNN detects in eval mode (model.eval()); in training mode use model.losses(x, targets)")
        return self.rcnn(list(x)), (x.shape[-2], x.shape[-1])

    def losses(self, x: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """torchvision's four training losses (the RPN's objectness and box regression, the RoI
        heads' classification and box regression) for zoo targets: (N, M, 5) rows of (class, x0,
        y0, x1, y1) as fractions of the image, padded with -1 rows."""
        x = self._check_input(x)
        return self.rcnn(list(x), self.torchvision_targets(targets, x.shape[-1], x.shape[-2]))

    def torchvision_targets(self, targets: Any, width: int, height: int) -> list[dict[str, torch.Tensor]]:
        """Zoo targets as torchvision's: per image, boxes in pixels and labels from 1 (0 is background)."""
        scale = torch.tensor([width, height, width, height], dtype=torch.float32, device=targets.device)
        return [{"boxes": t[t[:, 0] >= 0, 1:].float() * scale, "labels": t[t[:, 0] >= 0, 0].long() + 1} for t in targets]

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, targets = batch
        loss = sum(self.losses(x, targets).values())
        log_train_loss(self, loss)
        return loss

    def decode(self, outputs: tuple[list[dict[str, torch.Tensor]], tuple[int, int]]) -> list[dict[str, torch.Tensor]]:
        """torchvision's detections -> boxes as fractions of the image, labels from 0."""
        detections, (h, w) = outputs
        scale = torch.tensor([w, h, w, h], dtype=torch.float32)
        return [{"boxes": d["boxes"].float() / scale.to(d["boxes"].device), "scores": d["scores"].float(), "labels": d["labels"] - 1}
                for d in detections]  # fmt: skip


# AdamW with a cosine schedule, as the zoo's other scene models; 5 epochs of new scenes fit the
# 40-minute CPU budget (docs/scenes.md).
@register_model(chapter="14.8", recipe=Recipe(optimizer="adamw", lr=1e-3, weight_decay=1e-4, schedule="cosine", warmup_epochs=0.5,
                                             batch_size=32, epochs=5))  # fmt: skip
def faster_rcnn(**kwargs: Any) -> FasterRCNN:
    """torchvision's Faster R-CNN on the zoo's trained ResNet-18 (three stages + FPN), on 96x96 scenes."""
    return FasterRCNN(**kwargs)


class MaskRCNN(FasterRCNN):
    """torchvision's Mask R-CNN on the scenes: :class:`FasterRCNN` whose RoI heads also predict each
    item's mask (``rcnn.roi_heads.mask_head`` and ``mask_predictor``, torchvision's own), as
    torchvision's ``MaskRCNN`` builds them. Scored by mask mAP ("mask_map50", "mask_map") as well
    as box mAP; :meth:`detect` adds "masks", one boolean map of the image per detection.

    Args:
        detector: when training starts (``pretrained_backbone``), copy every weight but the mask
            head's from this zoo detector's trained weights (``zoo.load``, verified): the same boxes,
            and the training teaches masks. None: only ``source``'s stages, as :class:`FasterRCNN`.
        mask_channels: channels of the mask head's convolutions (torchvision's 256).
        mask_convs: how many 3x3 convolutions the mask head has before its transposed convolution
            (torchvision's 4).
        detector_lr_scale: the learning rate of every part but the mask head, as a fraction of the
            recipe's (the book's fine-tuning: the new layer learns faster than the copied ones);
            0.3 chosen on validation (docs/scenes.md).
        **kwargs: :class:`FasterRCNN`'s.
    """

    instance_masks = True
    score, score_label = "mask_map50", "mask mAP@0.5"

    def __init__(self, *, detector: str | None = "faster_rcnn", mask_channels: int = 64, mask_convs: int = 4,
                 detector_lr_scale: float = 0.3, **kwargs: Any) -> None:  # fmt: skip
        for name, value in (("mask_channels", mask_channels), ("mask_convs", mask_convs)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not isinstance(detector_lr_scale, (int, float)) or not 0 < detector_lr_scale <= 1:
            raise ValueError(f"detector_lr_scale must be a number in (0, 1], got {detector_lr_scale!r}")
        super().__init__(**kwargs)
        self.detector, self.detector_lr_scale = detector, float(detector_lr_scale)
        heads, levels = self.rcnn.roi_heads, self.rcnn.roi_heads.box_roi_pool
        # torchvision's MaskRCNN sets exactly these three on its Faster R-CNN's RoI heads; 14x14 RoI
        # features become 28x28 masks, read from the levels the boxes read, one sample per bin.
        heads.mask_roi_pool = MultiScaleRoIAlign(featmap_names=levels.featmap_names, output_size=14, sampling_ratio=1,
                                                 canonical_scale=levels.canonical_scale)  # fmt: skip
        heads.mask_head = MaskRCNNHeads(self.rcnn.backbone.out_channels, [mask_channels] * mask_convs, dilation=1)
        heads.mask_predictor = MaskRCNNPredictor(mask_channels, mask_channels, self.num_classes + 1)

    def parameter_groups(self) -> list[dict[str, Any]]:
        """The mask head's parameters at the recipe's learning rate, the rest at ``detector_lr_scale`` of it
        (with ``detector=None`` the proposal and box heads are new too: one rate, as :class:`FasterRCNN`)."""
        if self.detector is None:
            return super().parameter_groups()
        heads = self.rcnn.roi_heads
        new = {id(p) for m in (heads.mask_head, heads.mask_predictor) for p in m.parameters()}
        rest = [p for p in self.parameters() if id(p) not in new]
        groups = decay_groups([p for p in self.parameters() if id(p) in new], self.recipe.weight_decay)
        return groups + decay_groups(rest, self.recipe.weight_decay, lr=self.recipe.lr * self.detector_lr_scale)

    def copy_pretrained(self) -> None:
        """Every weight of the trained ``detector`` (all but the mask head), else ``source``'s stages."""
        if self.detector is None:
            return super().copy_pretrained()
        from ..pretrained import load  # the registry's floor stays below the weights layer

        detector = load(self.detector, in_chans=self.in_chans)
        if not isinstance(detector, FasterRCNN):
            raise ValueError(f"detector must name a zoo Faster R-CNN (faster_rcnn), got {self.detector!r}, "
                             f"a {type(detector).__name__}; or detector=None to start from {self.source}")  # fmt: skip
        trained = detector.rcnn.state_dict()
        try:
            missing, unexpected = self.rcnn.load_state_dict(trained, strict=False)
        except RuntimeError as e:  # a size mismatch: this model was built unlike the detector
            raise ValueError(f"{self.detector}'s weights do not fit this mask_rcnn ({str(e).splitlines()[-1].strip()}); "
                             "build it as the detector was, or with detector=None") from None  # fmt: skip
        if unexpected or any(".mask_" not in k for k in missing):
            raise ValueError(f"{self.detector} is not a Faster R-CNN of this shape (unexpected {unexpected[:3]}, "
                             f"missing {[k for k in missing if '.mask_' not in k][:3]}); build mask_rcnn with detector=None")  # fmt: skip

    def torchvision_targets(self, targets: Any, width: int, height: int) -> list[dict[str, torch.Tensor]]:
        """(boxes, instance maps) as torchvision's targets: boxes, labels and one mask per box."""
        boxes, instances = targets
        out = super().torchvision_targets(boxes, width, height)
        for row, t, m in zip(out, boxes, instances):
            row["masks"] = item_masks(t, m).to(torch.uint8)
        return out

    def decode(self, outputs: tuple[list[dict[str, torch.Tensor]], tuple[int, int]]) -> list[dict[str, torch.Tensor]]:
        """As :meth:`FasterRCNN.decode`, with "masks": (K, H, W) booleans, the mask above 0.5."""
        detections, _ = outputs
        return [{**d, "masks": r["masks"][:, 0] > 0.5} for d, r in zip(super().decode(outputs), detections)]


# Mask R-CNN starts from the trained faster_rcnn (every weight but the mask head) and trains on the
# same scenes with the same recipe, for fewer epochs: the boxes are learnt, the masks are new.
@register_model(chapter="14.8", recipe=Recipe(optimizer="adamw", lr=1e-3, weight_decay=1e-4, schedule="cosine", warmup_epochs=0.5,
                                             batch_size=32, epochs=3))  # fmt: skip
def mask_rcnn(**kwargs: Any) -> MaskRCNN:
    """torchvision's Mask R-CNN: the zoo's faster_rcnn plus a mask head, on 96x96 scenes."""
    return MaskRCNN(**kwargs)
