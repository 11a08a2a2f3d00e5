"""The R-CNN family (ch. 14.8): the book's RoI pooling example, torchvision's Faster R-CNN set up for
the scenes on the zoo's ResNet-18, Mask R-CNN on the scenes' instance masks, short real training
runs, and the bundled weights through the zoo's commands."""

from __future__ import annotations

import json

import pytest
import torch
import torchvision
from PIL import Image

import zoo
from zoo.cli import main
from zoo.detection.scenes import FashionMNISTScenesDataModule, make_scenes


def test_roi_pool_gives_the_books_numbers():
    # The book: a 4x4 map, two regions in input pixels at spatial_scale 0.1, 2x2 bins.
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    rois = torch.tensor([[0, 0, 0, 20, 20], [0, 0, 10, 30, 30]], dtype=torch.float32)
    out = torchvision.ops.roi_pool(x, rois, output_size=(2, 2), spatial_scale=0.1)
    assert torch.equal(out, torch.tensor([[[[5.0, 6.0], [9.0, 10.0]]], [[[9.0, 11.0], [13.0, 15.0]]]]))


def test_faster_rcnn_is_torchvisions_set_up_for_the_scenes():
    model = zoo.create_model("faster_rcnn")
    assert isinstance(model.rcnn, torchvision.models.detection.FasterRCNN)
    transform = model.rcnn.transform
    # The 96-px scene is the input (no resizing to 800), gray, normalised before it comes in.
    assert transform.min_size == (96,) and transform.max_size == 96
    assert transform.image_mean == [0.0] and transform.image_std == [1.0] and model.in_chans == 1
    assert model.rcnn.rpn.anchor_generator.sizes == ((16,), (32,), (64,))
    assert model.rcnn.rpn._post_nms_top_n == {"training": 100, "testing": 50}
    assert model.rcnn.roi_heads.box_predictor.cls_score.out_features == 11  # ten classes and background
    model.eval()
    found = model.detect(torch.randn(2, 1, 96, 96))
    assert len(found) == 2 and all(set(d) == {"boxes", "scores", "labels"} for d in found)
    assert all(((d["boxes"] >= 0) & (d["boxes"] <= 1)).all() and (d["labels"] < 10).all() for d in found)
    model.train()
    with pytest.raises(RuntimeError, match="eval mode"):
        model(torch.randn(1, 1, 96, 96))


def test_the_box_head_options_build_torchvisions_heads():
    model = zoo.create_model("faster_rcnn", box_convs=2, box_samples=64, pretrained_backbone=False)
    head = model.rcnn.roi_heads
    assert isinstance(head.box_head, torchvision.models.detection.faster_rcnn.FastRCNNConvFCHead)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in head.box_head.modules()) == 2
    assert head.fg_bg_sampler.batch_size_per_image == 64
    model.eval()
    assert len(model.detect(torch.randn(1, 1, 96, 96))) == 1
    for bad in ({"box_convs": -1}, {"box_samples": 0}, {"box_convs": 1.5}):
        with pytest.raises(ValueError, match=f"{next(iter(bad))} must be an integer"):
            zoo.create_model("faster_rcnn", **bad)


def test_the_backbone_starts_from_the_zoo_resnet18():
    model = zoo.create_model("faster_rcnn")
    before = model.backbone.body["5"][0].conv1.weight.clone()
    model.setup("fit")  # what training does first
    trained = zoo.load("resnet18").backbone
    assert torch.equal(model.backbone.body["0"].weight, trained[0].weight)
    assert torch.equal(model.backbone.body["6"][1].conv2.weight, trained[6][1].conv2.weight)
    assert not torch.equal(before, model.backbone.body["5"][0].conv1.weight)
    assert "7" not in dict(model.backbone.body.named_children())  # three stages: strides 4, 8, 16


def test_short_training_finds_items(tmp_path):
    from zoo.train import train

    recipe = zoo.Recipe(optimizer="adamw", lr=1e-3, schedule="cosine", warmup_epochs=0.2, epochs=1, batch_size=16)
    result = train("faster_rcnn", model_kwargs={"recipe": recipe}, train_limit=480, eval_limit=100, out_dir=tmp_path,
                   progress_bar=False)  # fmt: skip
    # 30 steps of 16 scenes: a floor that only a detector that learns clears (the full run: docs/scenes.md).
    assert result.metrics["test/map50"] > 0.1, result.metrics
    assert zoo.load(result.run_dir / "export").model_name == "faster_rcnn"


def test_bundled_faster_rcnn_draws_the_items_of_a_test_scene(tmp_path, capsys, fmnist):
    scenes, targets = make_scenes(fmnist["test_images"], fmnist["test_labels"], 1, seed=3)[:2]
    scene = tmp_path / "scene.png"
    Image.fromarray(scenes[0, 0].numpy()).save(scene)
    assert main(["predict", "faster_rcnn", str(scene), "--format", "json"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    names = zoo.load("faster_rcnn").label_names
    truth = {names[int(c)] for c in targets[0, :, 0] if c >= 0}
    assert {d["label"] for d in record["detections"]} == truth
    assert (tmp_path / "scene.pred.png").is_file()
    listed = zoo.get_weights("faster_rcnn")
    assert listed.location == "bundled" and listed.test_score > 0.89  # 0.8951 (docs/scenes.md; the target, 0.92, is missed)


def test_instance_maps_are_each_boxed_items_visible_pixels(fmnist):
    images, labels = fmnist["test_images"], fmnist["test_labels"]
    scenes, boxes, maps, instances = make_scenes(images, labels, 200, seed=6, label_maps=True, instance_maps=True)
    plain, plain_boxes = make_scenes(images, labels, 200, seed=6)
    assert torch.equal(scenes, plain) and torch.equal(boxes, plain_boxes)  # the same scenes either way
    assert torch.equal(instances > 0, maps > 0)  # the same pixels as the label maps
    items = 0
    for box_rows, label_map, instance_map in zip(boxes, maps, instances):
        for j, (c, x0, y0, x1, y1) in enumerate(box_rows.tolist()):
            mask = instance_map == j + 1
            if c < 0:
                assert not mask.any()
                continue
            items += 1
            assert (label_map[mask] == c + 1).all()  # the item's own class
            ys, xs = torch.nonzero(mask, as_tuple=True)
            assert len(ys) > 0
            assert xs.min() >= round(x0 * 96) and xs.max() < round(x1 * 96) and ys.min() >= round(y0 * 96) and ys.max() < round(y1 * 96)
    assert items > 400
    with pytest.raises(ValueError, match="choose one"):
        FashionMNISTScenesDataModule(label_maps=True, instance_maps=True)


def test_mask_rcnn_is_torchvisions_mask_head_on_faster_rcnn():
    model = zoo.create_model("mask_rcnn", pretrained_backbone=False)
    heads = model.rcnn.roi_heads
    assert heads.has_mask() and isinstance(heads.mask_head, torchvision.models.detection.mask_rcnn.MaskRCNNHeads)
    assert heads.mask_predictor.mask_fcn_logits.out_channels == 11  # a mask per class and background
    assert heads.mask_roi_pool.output_size == (14, 14) and heads.mask_roi_pool.featmap_names == heads.box_roi_pool.featmap_names
    assert model.score == "mask_map50" and model.monitor == "val/mask_map50"
    rates = {g.get("lr") for g in zoo.create_model("mask_rcnn", pretrained_backbone=False).parameter_groups()}
    assert rates == {None, model.recipe.lr * 0.3}  # the new mask head at the recipe's rate, the copied parts slower
    assert {g.get("lr") for g in zoo.create_model("mask_rcnn", detector=None).parameter_groups()} == {None}
    model.eval()
    found = model.detect(torch.randn(2, 1, 96, 96))
    assert all(set(d) == {"boxes", "scores", "labels", "masks"} for d in found)
    assert all(d["masks"].dtype == torch.bool and d["masks"].shape == (len(d["boxes"]), 96, 96) for d in found)
    for bad in ({"mask_channels": 0}, {"mask_convs": 1.5}):
        with pytest.raises(ValueError, match=f"{next(iter(bad))} must be an integer"):
            zoo.create_model("mask_rcnn", **bad)


def test_mask_rcnn_starts_from_the_trained_faster_rcnn():
    model = zoo.create_model("mask_rcnn")
    mask_before = model.rcnn.roi_heads.mask_head[0][0].weight.clone()
    model.setup("fit")  # what training does first
    detector = zoo.load("faster_rcnn").rcnn
    assert torch.equal(model.rcnn.roi_heads.box_predictor.cls_score.weight, detector.roi_heads.box_predictor.cls_score.weight)
    assert torch.equal(model.rcnn.rpn.head.conv[0][0].weight, detector.rpn.head.conv[0][0].weight)
    assert torch.equal(model.rcnn.roi_heads.mask_head[0][0].weight, mask_before)  # the mask head is new
    unlike = zoo.create_model("mask_rcnn", fpn_channels=32)
    with pytest.raises(ValueError, match="faster_rcnn's weights do not fit this mask_rcnn"):
        unlike.setup("fit")
    with pytest.raises(ValueError, match="detector must name a zoo Faster R-CNN.*'ssd_fmnist', a SSDFashion"):
        zoo.create_model("mask_rcnn", detector="ssd_fmnist").setup("fit")


def test_short_mask_rcnn_training_learns_masks(tmp_path):
    from zoo.train import train

    recipe = zoo.Recipe(optimizer="adamw", lr=3e-4, schedule="cosine", warmup_epochs=0.2, epochs=1, batch_size=16)
    result = train("mask_rcnn", model_kwargs={"recipe": recipe}, train_limit=320, eval_limit=100, out_dir=tmp_path,
                   progress_bar=False)  # fmt: skip
    # 20 steps of 16 scenes from the trained detector: its boxes stay, and the masks are learnt
    # from nothing (untrained, no mask overlaps an item by half; the full run: docs/scenes.md).
    m = result.metrics
    assert m["test/map50"] > 0.8 and m["test/mask_map50"] > 0.3, m
    assert zoo.load(result.run_dir / "export").model_name == "mask_rcnn"


def test_bundled_mask_rcnn_colours_the_items_of_a_test_scene(tmp_path, capsys, fmnist):
    scenes, targets, maps = make_scenes(fmnist["test_images"], fmnist["test_labels"], 1, seed=3, instance_maps=True)
    scene = tmp_path / "scene.png"
    Image.fromarray(scenes[0, 0].numpy()).save(scene)
    assert main(["predict", "mask_rcnn", str(scene), "--format", "json"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    names = zoo.load("mask_rcnn").label_names
    truth = {names[int(c)]: int((maps[0] == j + 1).sum()) for j, c in enumerate(targets[0, :, 0]) if c >= 0}
    assert {d["label"] for d in record["detections"]} == set(truth)
    for d in record["detections"]:  # each mask about the item's own visible pixels
        assert abs(d["mask_pixels"] - truth[d["label"]]) < 0.4 * truth[d["label"]], (d, truth)
    drawn = Image.open(tmp_path / "scene.pred.png").convert("RGB")
    tinted = [p for p in drawn.getdata() if len(set(p)) > 1 and p != (255, 0, 0)]  # neither the gray scene nor a red box
    assert len(tinted) > 0.5 * sum(truth.values())  # the masks, blended in their classes' colours
    assert main(["predict", "mask_rcnn", str(scene)]) == 0  # the text says each mask's size too
    assert f", mask {record['detections'][0]['mask_pixels']:,} px" in capsys.readouterr().out
    listed = zoo.get_weights("mask_rcnn")
    assert listed.location == "bundled" and listed.score_label == "mask mAP@0.5" and listed.test_score > 0.85
