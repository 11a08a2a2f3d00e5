"""Object detection from the book's computer-vision chapter: boxes, anchors, assignment, offsets and
non-maximum suppression (``boxes``), scenes of Fashion-MNIST items to detect (``scenes``), the
detector base class (``detector``) and the book's TinySSD (``tiny_ssd``, registered as "tiny_ssd")."""

from .boxes import (
    assign_anchor_to_bbox,
    box_center_to_corner,
    box_corner_to_center,
    box_iou,
    multibox_detection,
    multibox_prior,
    multibox_target,
    offset_boxes,
    offset_inverse,
)

__all__ = [
    "assign_anchor_to_bbox",
    "box_center_to_corner",
    "box_corner_to_center",
    "box_iou",
    "multibox_detection",
    "multibox_prior",
    "multibox_target",
    "offset_boxes",
    "offset_inverse",
]
