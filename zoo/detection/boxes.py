"""Bounding boxes and anchor boxes, as the book's computer-vision chapter builds them (ch. 14.3-14.4
in the current edition: "Anchor Boxes").

Boxes are (x1, y1, x2, y2) corners, coordinates normalised to [0, 1] by the image width and height,
unless a function says otherwise. Class labels of assigned anchors count from 1; 0 is background.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torchvision.ops import batched_nms, box_convert, box_iou

__all__ = [
    "box_corner_to_center",
    "box_center_to_corner",
    "box_iou",
    "multibox_prior",
    "assign_anchor_to_bbox",
    "offset_boxes",
    "offset_inverse",
    "multibox_target",
    "multibox_detection",
]


def box_corner_to_center(boxes: torch.Tensor) -> torch.Tensor:
    """(x1, y1, x2, y2) -> (cx, cy, w, h)."""
    return box_convert(boxes, "xyxy", "cxcywh")


def box_center_to_corner(boxes: torch.Tensor) -> torch.Tensor:
    """(cx, cy, w, h) -> (x1, y1, x2, y2)."""
    return box_convert(boxes, "cxcywh", "xyxy")


def multibox_prior(data_hw: tuple[int, int], sizes: Sequence[float], ratios: Sequence[float],
                   device: torch.device | str = "cpu") -> torch.Tensor:  # fmt: skip
    """Anchor boxes centred on every pixel of an ``h x w`` feature map, shape (1, h*w*(n+m-1), 4).

    Only the combinations that contain the first size s1 or the first ratio r1 are used:
    (s1, r1), (s1, r2), ..., (s1, rm), (s2, r1), ..., (sn, r1), n + m - 1 per pixel. An anchor of
    size s and ratio r has width s * sqrt(r) * h / w and height s / sqrt(r) (normalised), so that it
    is square in pixels when r = 1 whatever the map's aspect.
    """
    in_h, in_w = data_hw
    sizes_t = torch.tensor(sizes, dtype=torch.float32, device=device)
    ratios_t = torch.tensor(ratios, dtype=torch.float32, device=device)
    # Centres of the pixels, normalised: offset 0.5 puts each centre in the middle of its pixel.
    steps_h, steps_w = 1.0 / in_h, 1.0 / in_w
    center_h = (torch.arange(in_h, device=device) + 0.5) * steps_h
    center_w = (torch.arange(in_w, device=device) + 0.5) * steps_w
    shift_y, shift_x = torch.meshgrid(center_h, center_w, indexing="ij")
    shift_y, shift_x = shift_y.reshape(-1), shift_x.reshape(-1)
    # Widths and heights of the n + m - 1 anchors of one pixel.
    w = torch.cat((sizes_t * torch.sqrt(ratios_t[0]), sizes_t[0] * torch.sqrt(ratios_t[1:]))) * in_h / in_w
    h = torch.cat((sizes_t / torch.sqrt(ratios_t[0]), sizes_t[0] / torch.sqrt(ratios_t[1:])))
    anchor_manipulations = torch.stack((-w, -h, w, h)).T.repeat(in_h * in_w, 1) / 2
    out_grid = torch.stack([shift_x, shift_y, shift_x, shift_y], dim=1).repeat_interleave(len(w), dim=0)
    return (out_grid + anchor_manipulations).unsqueeze(0)


def assign_anchor_to_bbox(ground_truth: torch.Tensor, anchors: torch.Tensor, iou_threshold: float = 0.5) -> torch.Tensor:
    """Index of the ground-truth box assigned to each anchor, -1 for none (the book's algorithm).

    1. Repeatedly take the largest IoU left in the anchors x ground-truth matrix, assign that
       ground truth to that anchor, and discard the anchor's row and the ground truth's column,
       until every ground truth has an anchor.
    2. Every anchor still unassigned gets the ground truth it overlaps most, if that IoU is at
       least ``iou_threshold``.
    """
    num_anchors, num_gt = anchors.shape[0], ground_truth.shape[0]
    jaccard = box_iou(anchors, ground_truth)
    anchors_bbox_map = torch.full((num_anchors,), -1, dtype=torch.long, device=anchors.device)
    # Step 2 first, as the book does; step 1 then overrides it where they disagree.
    max_ious, indices = torch.max(jaccard, dim=1)
    anc_i = torch.nonzero(max_ious >= iou_threshold).reshape(-1)
    anchors_bbox_map[anc_i] = indices[anc_i]
    col_discard = torch.full((num_anchors,), -1.0, device=anchors.device)
    row_discard = torch.full((num_gt,), -1.0, device=anchors.device)
    for _ in range(num_gt):
        max_idx = torch.argmax(jaccard)  # the largest IoU left
        box_idx = (max_idx % num_gt).long()
        anc_idx = (max_idx // num_gt).long()
        anchors_bbox_map[anc_idx] = box_idx
        jaccard[:, box_idx] = col_discard
        jaccard[anc_idx, :] = row_discard
    return anchors_bbox_map


def offset_boxes(anchors: torch.Tensor, assigned_bb: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Offsets of ``assigned_bb`` relative to ``anchors``, with the book's scaling:
    ((x_b - x_a) / w_a * 10, (y_b - y_a) / h_a * 10, 5 log(w_b / w_a), 5 log(h_b / h_a))."""
    c_anc = box_corner_to_center(anchors)
    c_assigned_bb = box_corner_to_center(assigned_bb)
    offset_xy = 10 * (c_assigned_bb[:, :2] - c_anc[:, :2]) / c_anc[:, 2:]
    offset_wh = 5 * torch.log(eps + c_assigned_bb[:, 2:] / c_anc[:, 2:])
    return torch.cat([offset_xy, offset_wh], dim=1)


def offset_inverse(anchors: torch.Tensor, offset_preds: torch.Tensor) -> torch.Tensor:
    """The boxes that ``offset_preds`` describe relative to ``anchors`` (inverse of offset_boxes)."""
    anc = box_corner_to_center(anchors)
    pred_bbox_xy = (offset_preds[:, :2] * anc[:, 2:] / 10) + anc[:, :2]
    pred_bbox_wh = torch.exp(offset_preds[:, 2:] / 5) * anc[:, 2:]
    return box_center_to_corner(torch.cat((pred_bbox_xy, pred_bbox_wh), dim=1))


def multibox_target(anchors: torch.Tensor, labels: torch.Tensor, iou_threshold: float = 0.5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training targets of every anchor for a batch.

    Args:
        anchors: (1, A, 4) or (A, 4).
        labels: (B, G, 5) rows of (class, x1, y1, x2, y2); rows with class < 0 are padding.

    Returns:
        bbox_offset (B, 4A): offsets to the assigned boxes (0 for background anchors);
        bbox_mask (B, 4A): 1 where an anchor has a box, so background anchors add no box loss;
        class_labels (B, A): assigned class + 1, 0 for background.
    """
    anchors = anchors.reshape(-1, 4)
    batch_offset, batch_mask, batch_class_labels = [], [], []
    device, num_anchors = anchors.device, anchors.shape[0]
    for label in labels:
        label = label[label[:, 0] >= 0]  # drop padding rows
        if len(label) == 0:
            batch_offset.append(torch.zeros(num_anchors * 4, device=device))
            batch_mask.append(torch.zeros(num_anchors * 4, device=device))
            batch_class_labels.append(torch.zeros(num_anchors, dtype=torch.long, device=device))
            continue
        anchors_bbox_map = assign_anchor_to_bbox(label[:, 1:], anchors, iou_threshold)
        bbox_mask = (anchors_bbox_map >= 0).float().unsqueeze(-1).repeat(1, 4)
        class_labels = torch.zeros(num_anchors, dtype=torch.long, device=device)
        assigned_bb = torch.zeros((num_anchors, 4), dtype=torch.float32, device=device)
        indices_true = torch.nonzero(anchors_bbox_map >= 0).reshape(-1)
        bb_idx = anchors_bbox_map[indices_true]
        class_labels[indices_true] = label[bb_idx, 0].long() + 1
        assigned_bb[indices_true] = label[bb_idx, 1:]
        offset = offset_boxes(anchors, assigned_bb) * bbox_mask
        batch_offset.append(offset.reshape(-1))
        batch_mask.append(bbox_mask.reshape(-1))
        batch_class_labels.append(class_labels)
    return torch.stack(batch_offset), torch.stack(batch_mask), torch.stack(batch_class_labels)


def multibox_detection(cls_probs: torch.Tensor, offset_preds: torch.Tensor, anchors: torch.Tensor,
                       nms_threshold: float = 0.5, pos_threshold: float = 0.009,
                       top_k: int | None = None) -> list[dict[str, torch.Tensor]]:  # fmt: skip
    """Predicted boxes per image: decode the offsets, take each anchor's most likely non-background
    class, drop confidences below ``pos_threshold``, and run non-maximum suppression per class
    (torchvision's batched_nms); keep at most ``top_k``.

    Args:
        cls_probs: (B, 1 + C, A) class probabilities, background first.
        offset_preds: (B, 4A).
        anchors: (1, A, 4) or (A, 4).

    Returns:
        one dict per image: "boxes" (K, 4), "scores" (K,), "labels" (K,) counting from 0.
    """
    anchors = anchors.reshape(-1, 4)
    out = []
    for probs, offsets in zip(cls_probs, offset_preds.reshape(cls_probs.shape[0], -1, 4)):
        conf, class_id = torch.max(probs[1:], dim=0)
        boxes = offset_inverse(anchors, offsets)
        keep = conf >= pos_threshold
        boxes, conf, class_id = boxes[keep], conf[keep], class_id[keep]
        kept = batched_nms(boxes, conf, class_id, nms_threshold)
        if top_k is not None:
            kept = kept[:top_k]
        out.append({"boxes": boxes[kept], "scores": conf[kept], "labels": class_id[kept]})
    return out
