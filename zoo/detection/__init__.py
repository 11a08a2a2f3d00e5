"""Object detection from the book's computer-vision chapter: boxes, anchors, assignment, offsets,
non-maximum suppression. (The TinySSD model and the Fashion-MNIST scenes data set are still to come.)"""

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
