"""Anchor boxes, IoU, assignment, offsets and NMS against hand-worked numbers and the book's examples."""

from __future__ import annotations

import hashlib

import pytest
import torch

from zoo.detection import (
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

# The book's worked example: a dog (class 0) and a cat (class 1), five anchors.
GROUND_TRUTH = torch.tensor([[0, 0.1, 0.08, 0.52, 0.92], [1, 0.55, 0.2, 0.9, 0.88]])
ANCHORS = torch.tensor([[0, 0.1, 0.2, 0.3], [0.15, 0.2, 0.4, 0.4], [0.63, 0.05, 0.88, 0.98],
                        [0.66, 0.45, 0.8, 0.8], [0.57, 0.3, 0.92, 0.9]])  # fmt: skip


@pytest.mark.parametrize("h, w, sizes, ratios", [(4, 4, [0.5], [1]), (5, 3, [0.75, 0.5, 0.25], [1, 2, 0.5]), (2, 7, [0.2, 0.4], [1, 3])])
def test_anchor_counts_and_shapes(h, w, sizes, ratios):
    anchors = multibox_prior((h, w), sizes, ratios)
    per_pixel = len(sizes) + len(ratios) - 1
    assert anchors.shape == (1, h * w * per_pixel, 4)
    boxes = anchors.reshape(h, w, per_pixel, 4)
    centres = box_corner_to_center(boxes.reshape(-1, 4)).reshape(h, w, per_pixel, 4)
    # Every anchor of a pixel is centred on that pixel's centre.
    torch.testing.assert_close(centres[1, 0, :, 0], torch.full((per_pixel,), 0.5 / w))
    torch.testing.assert_close(centres[1, 0, :, 1], torch.full((per_pixel,), 1.5 / h))
    # Size s1 with ratio 1 is square in pixels (normalised width * w == normalised height * h),
    # and its normalised height is s1.
    wh = centres[0, 0, 0, 2:]
    assert wh[0].item() * w == pytest.approx(wh[1].item() * h, rel=1e-5)
    assert wh[1].item() == pytest.approx(sizes[0], rel=1e-5)


def test_book_anchor_example():
    anchors = multibox_prior((561, 728), sizes=[0.75, 0.5, 0.25], ratios=[1, 2, 0.5])
    assert anchors.shape == (1, 2_042_040, 4)
    torch.testing.assert_close(anchors.reshape(561, 728, 5, 4)[250, 250, 0], torch.tensor([0.0551, 0.0715, 0.6331, 0.8215]),
                               atol=1e-4, rtol=0)  # fmt: skip


def test_iou_against_hand_computed_boxes():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0], [5.0, 5.0, 6.0, 6.0]])
    # Overlap 1 of union 4 + 4 - 1; a box in another is 1/4; disjoint is 0.
    expected = torch.tensor([[1 / 7, 1.0, 0.0], [0.0, 1 / 4, 0.0]])
    torch.testing.assert_close(box_iou(a, b), expected)


def test_corner_centre_round_trip():
    boxes = torch.tensor([[0.1, 0.2, 0.5, 0.9], [0.3, 0.3, 0.4, 0.8]])
    centres = box_corner_to_center(boxes)
    torch.testing.assert_close(centres[0], torch.tensor([0.3, 0.55, 0.4, 0.7]))
    torch.testing.assert_close(box_center_to_corner(centres), boxes)


def test_assignment_follows_the_algorithm_step_by_step():
    # IoU(anchor, gt) for the book's example:
    #   a0 (0.054, 0)  a1 (0.142, 0)  a2 (0, 0.566)  a3 (0, 0.206)  a4 (0, 0.746)
    # Step 1: the largest IoU, 0.746, gives the cat to a4; discard a4's row and the cat's column.
    #         The largest left, 0.142, gives the dog to a1 although it is below the threshold.
    # Step 2: a2's best IoU, 0.566 (cat), reaches 0.5; a0 and a3 stay background.
    assigned = assign_anchor_to_bbox(GROUND_TRUTH[:, 1:], ANCHORS, iou_threshold=0.5)
    assert assigned.tolist() == [-1, 0, 1, -1, 1]
    # A threshold above every IoU leaves only step 1's pairs.
    assert assign_anchor_to_bbox(GROUND_TRUTH[:, 1:], ANCHORS, iou_threshold=0.8).tolist() == [-1, 0, -1, -1, 1]


def test_targets_labels_masks_and_offsets_match_the_book():
    offsets, mask, classes = multibox_target(ANCHORS.unsqueeze(0), GROUND_TRUTH.unsqueeze(0))
    assert classes.tolist() == [[0, 1, 2, 0, 2]]  # background 0, dog 1, cat 2
    assert mask.tolist() == [[0.0] * 4 + [1.0] * 8 + [0.0] * 4 + [1.0] * 4]
    expected = torch.tensor([0, 0, 0, 0, 1.4, 10.0, 2.594, 7.1754, -1.2, 0.26882, 1.6824, -1.5655,
                             0, 0, 0, 0, -0.57143, -1.0, 4.1723e-06, 0.62582])  # fmt: skip
    torch.testing.assert_close(offsets[0], expected, atol=1e-3, rtol=0)
    # Padding rows (class -1) are ignored; an image with no boxes is all background.
    padded = torch.cat([GROUND_TRUTH, torch.tensor([[-1.0, 0, 0, 0, 0]])]).unsqueeze(0)
    empty = torch.full((1, 3, 5), -1.0)
    _, _, both = multibox_target(ANCHORS, torch.cat([padded, empty]))
    assert both.tolist() == [[0, 1, 2, 0, 2], [0, 0, 0, 0, 0]]


def test_offsets_encode_then_decode_to_the_boxes():
    torch.manual_seed(0)
    anchors = box_center_to_corner(torch.cat([torch.rand(50, 2), 0.05 + 0.5 * torch.rand(50, 2)], 1))
    boxes = box_center_to_corner(torch.cat([torch.rand(50, 2), 0.05 + 0.5 * torch.rand(50, 2)], 1))
    torch.testing.assert_close(offset_inverse(anchors, offset_boxes(anchors, boxes)), boxes, atol=1e-5, rtol=0)


def test_nms_keeps_what_the_procedure_keeps():
    # The book's NMS example: four boxes, zero offsets, dog scores 0.9/0.8/0.7/0.1, cat 0.1/0.2/0.3/0.9.
    anchors = torch.tensor([[0.1, 0.08, 0.52, 0.92], [0.08, 0.2, 0.56, 0.95], [0.15, 0.3, 0.62, 0.91], [0.55, 0.2, 0.9, 0.88]])
    cls_probs = torch.tensor([[0.0] * 4, [0.9, 0.8, 0.7, 0.1], [0.1, 0.2, 0.3, 0.9]])
    (out,) = multibox_detection(cls_probs.unsqueeze(0), torch.zeros(1, 16), anchors.unsqueeze(0), nms_threshold=0.5)
    # Each anchor votes for its best class: dog for 0-2, cat for 3. Dog 0.9 suppresses the other two
    # dog boxes (IoU > 0.5); the cat box has no rival.
    assert out["labels"].tolist() == [0, 1] and out["scores"].tolist() == pytest.approx([0.9, 0.9])
    torch.testing.assert_close(out["boxes"], anchors[[0, 3]])
    (loose,) = multibox_detection(cls_probs.unsqueeze(0), torch.zeros(1, 16), anchors.unsqueeze(0), nms_threshold=0.99)
    assert loose["labels"].tolist() == [0, 1, 0, 0]  # no overlap is high enough to suppress
    (top,) = multibox_detection(cls_probs.unsqueeze(0), torch.zeros(1, 16), anchors.unsqueeze(0), nms_threshold=0.99, top_k=2)
    assert len(top["scores"]) == 2


# ------------------------------------------------------------------------------------------ scenes, TinySSD
from zoo.detection.scenes import FashionMNISTScenesDataModule, make_scenes  # noqa: E402


def test_scenes_are_seeded_real_and_tightly_boxed(fmnist):
    images, labels = fmnist["test_images"][:500], fmnist["test_labels"][:500]
    a, ta = make_scenes(images, labels, 50, seed=3)
    b, tb = make_scenes(images, labels, 50, seed=3)
    assert torch.equal(a, b) and torch.equal(ta, tb)
    assert not torch.equal(a, make_scenes(images, labels, 50, seed=4)[0])
    counts = (ta[:, :, 0] >= 0).sum(1)
    assert counts.min() >= 1 and counts.max() <= 4 and a.shape == (50, 1, 96, 96)
    for scene, target in zip(a, ta):
        for cls, x1, y1, x2, y2 in target[target[:, 0] >= 0].tolist():
            assert 0 <= cls <= 9 and 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1
            box = scene[0, round(y1 * 96) : round(y2 * 96), round(x1 * 96) : round(x2 * 96)]
            assert box.numel() > 0 and box.max() > 40  # the item's bright pixels are inside its box
    # Pixels far from every box are background noise only.
    mask = torch.zeros(50, 96, 96, dtype=torch.bool)
    for i, target in enumerate(ta):
        for _, x1, y1, x2, y2 in target[target[:, 0] >= 0].tolist():
            mask[i, max(0, round(y1 * 96) - 1) : round(y2 * 96) + 1, max(0, round(x1 * 96) - 1) : round(x2 * 96) + 1] = True
    assert a[:, 0][~mask].max() <= 40


def test_test_scenes_come_from_test_images_only(fmnist):
    dm = FashionMNISTScenesDataModule(num_train=20, num_val=20, num_test=20)
    dm.setup()
    rebuilt, targets = make_scenes(fmnist["test_images"], fmnist["test_labels"], 20, seed=2)  # seed*1000 + 2: test
    assert torch.equal(dm.sets["test"].tensors[0], rebuilt) and torch.equal(dm.sets["test"].tensors[1], targets)


def test_the_test_scenes_are_the_ones_the_scores_were_measured_on(fmnist):
    # Every bundled detector's and segmenter's test score is on these 2,000 scenes: a change to the
    # generator that changes a bit of them (boxes or label maps) makes those numbers stale. The
    # digest is of the scenes as first generated (torch ops throughout, before the NumPy rewrite).
    scenes = make_scenes(fmnist["test_images"], fmnist["test_labels"], 2000, seed=2, label_maps=True)
    digest = hashlib.sha256(b"".join(t.numpy().tobytes() for t in scenes)).hexdigest()
    assert digest == "430113d0291a8669fda8c1d60f1db652dcb93615b197a6aef8f0d7f35b7bc423"


def test_tiny_ssd_shapes_anchor_order_and_round_trip(tmp_path):
    import zoo

    model = zoo.create_model("tiny_ssd").eval()
    anchors, cls_preds, bbox_preds = model(torch.randn(2, 1, 96, 96))
    # 12x12, 6x6, 3x3, 1x1 and 1x1 feature maps, four anchors per pixel.
    assert anchors.shape == (1, (144 + 36 + 9 + 1 + 1) * 4, 4)
    assert cls_preds.shape == (2, 764, 11) and bbox_preds.shape == (2, 764 * 4)
    folder = zoo.save_checkpoint(model, tmp_path / "ssd")
    loaded = zoo.load(folder)
    x = torch.randn(3, 1, 96, 96)
    for a, b in zip(loaded.detect(x), model.detect(x)):
        assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["labels"], b["labels"])


def test_short_training_raises_map_above_the_floor(tmp_path):
    from zoo.train import train

    import zoo

    # ssd_fmnist trains through the same Detector steps as tiny_ssd (only its loss and class
    # predictors differ; the book's loss and predictors are checked piece by piece above).
    recipe = zoo.Recipe(optimizer="adamw", lr=3e-3, schedule="cosine", epochs=2, batch_size=64)
    result = train("ssd_fmnist", model_kwargs={"recipe": recipe}, train_limit=800, eval_limit=200, out_dir=tmp_path, progress_bar=False)
    # Untrained, a detector scores about 0.0005 mAP@0.5 on these scenes; this run measured 0.044.
    assert result.metrics["test/map50"] > 0.02, result.metrics
    assert (result.run_dir / "export" / "model.safetensors").is_file()


def test_backgrounds_change_only_the_background(fmnist):
    from zoo.detection.scenes import ITEM_LEVEL

    images, labels = fmnist["test_images"][:300], fmnist["test_labels"][:300]
    noisy, boxes, maps = make_scenes(images, labels, 30, seed=4, label_maps=True)
    for kinds in (("clean",), ("gradient",), ("noise", "clean", "gradient")):
        scenes, same_boxes, same_maps = make_scenes(images, labels, 30, seed=4, label_maps=True, backgrounds=kinds)
        assert torch.equal(boxes, same_boxes) and torch.equal(maps, same_maps)
        items = maps > 0
        assert torch.equal(scenes[:, 0][items], noisy[:, 0][items])  # every item pixel as it was
        assert scenes[:, 0][~items].max() <= ITEM_LEVEL  # the background stays below the items
        if kinds == ("clean",):  # the items alone: the noisy scene is the maximum of them and the noise (<= 12)
            clean, noise = scenes[:, 0], noisy[:, 0]
            assert (clean <= noise).all() and torch.equal(clean[noise > 12], noise[noise > 12])
            assert (clean == 0).float().mean() > 0.5
    with pytest.raises(ValueError, match="backgrounds must be some of"):
        make_scenes(images, labels, 2, seed=0, backgrounds=("plaid",))


def test_ssd_fmnist_is_tiny_ssd_with_wider_class_predictors():
    import zoo

    tiny, ssd = zoo.create_model("tiny_ssd"), zoo.create_model("ssd_fmnist")
    assert tiny.backbone.state_dict().keys() == ssd.backbone.state_dict().keys()  # the book's feature blocks
    assert isinstance(ssd.head["cls"][0], torch.nn.Sequential) and ssd.head["cls"][0][-1].out_channels == tiny.head["cls"][0].out_channels
    x = torch.randn(2, 1, 96, 96)
    for a, b in zip(tiny.eval()(x), ssd.eval()(x)):
        assert a.shape == b.shape
    assert ssd.scene_backgrounds == ("noise", "clean", "gradient") and ssd.datamodule(train_limit=1).backgrounds["test"] == ("noise",)
