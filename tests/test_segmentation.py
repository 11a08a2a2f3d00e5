"""Semantic segmentation (ch. 14.9-14.11): the scenes' label maps, transposed convolution, the
bilinear kernel and the FCN, on real Fashion-MNIST scenes."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import zoo
from zoo.cli import main
from zoo.detection.scenes import ITEM_LEVEL, FashionMNISTScenesDataModule, make_scenes
from zoo.segmentation import bilinear_kernel, trans_conv

SEGMENT = Path(__file__).resolve().parents[1] / "scripts" / "segment.py"

# ------------------------------------------------------------------------------------------ 14.10
X = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
K = torch.tensor([[0.0, 1.0], [2.0, 3.0]])


def _torch_tconv(x: torch.Tensor, k: torch.Tensor, **kwargs) -> torch.Tensor:
    tconv = nn.ConvTranspose2d(1, 1, kernel_size=k.shape, bias=False, **kwargs)
    tconv.weight.data = k[None, None]
    return tconv(x[None, None]).detach()[0, 0]


def test_transposed_convolution_is_the_notes_and_torchs():
    # The notes' worked example: each input element scatters the kernel scaled by its value.
    assert torch.equal(trans_conv(X, K), torch.tensor([[0.0, 0.0, 1.0], [0.0, 4.0, 6.0], [4.0, 12.0, 9.0]]))
    assert torch.equal(trans_conv(X, K, padding=1), torch.tensor([[4.0]]))  # padding takes the borders off the output
    assert torch.equal(trans_conv(X, K, stride=2), torch.tensor([[0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 2.0, 3.0],
                                                                 [0.0, 2.0, 0.0, 3.0], [4.0, 6.0, 6.0, 9.0]]))  # fmt: skip
    for kwargs in ({}, {"padding": 1}, {"stride": 2}, {"stride": 3, "padding": 1}):
        torch.testing.assert_close(trans_conv(X, K, **kwargs), _torch_tconv(X, K, **kwargs))
    gen = torch.Generator().manual_seed(0)
    x, k = torch.rand(5, 4, generator=gen), torch.rand(3, 3, generator=gen)
    torch.testing.assert_close(trans_conv(x, k, stride=2, padding=1), _torch_tconv(x, k, stride=2, padding=1))
    # The notes' shape check: a transposed convolution undoes a convolution's shape change.
    x = torch.rand(1, 10, 16, 16, generator=gen)
    conv, tconv = nn.Conv2d(10, 20, kernel_size=5, padding=2, stride=3), nn.ConvTranspose2d(20, 10, kernel_size=5, padding=2, stride=3)
    assert tconv(conv(x)).shape == x.shape


def test_bilinear_kernel_upsamples_a_constant_to_the_same_constant():
    for s in (2, 4, 8):
        tconv = nn.ConvTranspose2d(3, 3, kernel_size=2 * s, padding=s // 2, stride=s, bias=False)
        tconv.weight.data.copy_(bilinear_kernel(3, 3, 2 * s))
        y = tconv(torch.full((1, 3, 6, 6), 0.7)).detach()
        assert y.shape == (1, 3, 6 * s, 6 * s)
        # Away from the border (half a stride in), every output pixel has its full set of inputs.
        torch.testing.assert_close(y[..., s : -s, s : -s], torch.full_like(y[..., s : -s, s : -s], 0.7))
    # Each channel feeds only itself, and the 1-D profile is the notes' triangle.
    w = bilinear_kernel(2, 2, 4)
    assert w[0, 1].abs().sum() == 0 and w[1, 0].abs().sum() == 0
    torch.testing.assert_close(w[0, 0], torch.outer(torch.tensor([0.25, 0.75, 0.75, 0.25]), torch.tensor([0.25, 0.75, 0.75, 0.25])))


# ------------------------------------------------------------------------------------------ 14.9: label maps
def test_label_maps_agree_with_the_boxes_and_leave_the_scenes_unchanged(fmnist):
    images, labels = fmnist["test_images"][:500], fmnist["test_labels"][:500]
    scenes, targets, maps = make_scenes(images, labels, 60, seed=5, label_maps=True)
    plain, plain_targets = make_scenes(images, labels, 60, seed=5)
    assert torch.equal(scenes, plain) and torch.equal(targets, plain_targets)  # the same scenes either way
    assert maps.shape == (60, 96, 96) and maps.dtype == torch.uint8
    for scene, target, label_map in zip(scenes[:, 0], targets, maps):
        rows = target[target[:, 0] >= 0]
        boxes_of = {}
        for cls, x1, y1, x2, y2 in rows.tolist():
            box = torch.zeros(96, 96, dtype=torch.bool)
            box[round(y1 * 96) : round(y2 * 96), round(x1 * 96) : round(x2 * 96)] = True
            boxes_of.setdefault(int(cls) + 1, torch.zeros_like(box))
            boxes_of[int(cls) + 1] |= box
            assert (label_map[box] == int(cls) + 1).any(), "a box holds none of its item's pixels"
        for value in label_map.unique().tolist():
            if value:
                # Every pixel of a class lies in a box of that class, and is one of the item's bright pixels.
                assert value in boxes_of and not (label_map == value)[~boxes_of[value]].any()
                assert scene[label_map == value].min() > ITEM_LEVEL
        assert scene[label_map == 0].max() <= ITEM_LEVEL  # every pixel an item shows is labelled


def test_segmentation_test_scenes_come_from_test_images_only(fmnist):
    dm = FashionMNISTScenesDataModule(num_train=10, num_val=10, num_test=20, label_maps=True)
    dm.setup()
    scenes, _, maps = make_scenes(fmnist["test_images"], fmnist["test_labels"], 20, seed=2, label_maps=True)  # seed*1000 + 2: test
    assert torch.equal(dm.sets["test"].tensors[0], scenes) and torch.equal(dm.sets["test"].tensors[1], maps)


# ------------------------------------------------------------------------------------------ 14.11: FCN
def test_fcn_is_the_notes_network_on_the_zoos_resnet18(tmp_path):
    model = zoo.create_model("fcn", output_stride=32)
    resnet = zoo.create_model("resnet18")
    # The notes: every layer of the classifier but its global pooling and output layer.
    assert len(model.backbone) == len(resnet.backbone) - 2
    tconv = model.head.transpose_conv
    assert (tconv.kernel_size, tconv.stride, tconv.padding) == ((64, 64), (32, 32), (16, 16))
    torch.testing.assert_close(tconv.weight, bilinear_kernel(11, 11, 64))
    assert model(torch.randn(2, 1, 96, 96)).shape == (2, 11, 96, 96)
    assert zoo.create_model("fcn", output_stride=8).head.transpose_conv.stride == (8, 8)
    with pytest.raises(ValueError, match="output_stride=12 is not one of them"):
        zoo.create_model("fcn", output_stride=12)

    # Training starts from the zoo's trained ResNet-18 (before a resumed run's checkpoint is restored).
    model.setup("fit")
    trained = zoo.load("resnet18")
    torch.testing.assert_close(model.backbone[0].weight, trained.backbone[0].weight)
    # A saved FCN reloads with its own weights, not the source's.
    folder = zoo.save_checkpoint(model, tmp_path / "fcn")
    x = torch.randn(1, 1, 96, 96)
    torch.testing.assert_close(zoo.load(folder)(x), model.eval()(x))


class _SeenScenes(L.Callback):
    """The training and validation scenes each epoch's loaders hold."""

    def __init__(self) -> None:
        self.train: list[torch.Tensor] = []
        self.val: list[torch.Tensor] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.train.append(trainer.train_dataloader.dataset.tensors[0].clone())
        self.val.append(trainer.val_dataloaders.dataset.tensors[0].clone())


def test_short_training_beats_the_floor_and_predict_writes_the_mask(tmp_path, fmnist, capsys):
    from zoo.train import train

    seen = _SeenScenes()
    result = train("fcn", epochs=2, train_limit=300, eval_limit=200, out_dir=tmp_path / "run", progress_bar=False, callbacks=[seen])
    # Every epoch trains on scenes it has not seen (epoch 0: the usual ones) and is scored on the same.
    usual = FashionMNISTScenesDataModule(num_train=300, num_val=1, num_test=1, label_maps=True)
    usual.setup()
    assert torch.equal(seen.train[0], usual.sets["train"].tensors[0]) and not torch.equal(seen.train[0], seen.train[1])
    assert torch.equal(seen.val[0], seen.val[1])
    m = result.metrics
    # Background alone (every pixel 0) scores a mean IoU of about 0.08 (its IoU ~0.85, the 10 classes 0).
    assert m["test/miou"] > 0.15 and m["test/pixel_acc"] > 0.85, m
    export = result.run_dir / "export"

    scenes, _, maps = make_scenes(fmnist["test_images"], fmnist["test_labels"], 2, seed=9, label_maps=True)
    paths = []
    for i, scene in enumerate(scenes[:, 0]):
        Image.fromarray(scene.numpy()).resize((192, 192)).save(tmp_path / f"scene{i}.png")
        paths.append(str(tmp_path / f"scene{i}.png"))
    assert main(["predict", "--model", str(export), *paths]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[0].startswith(f"{paths[0]}: background ") and out[0].endswith(f"-> {tmp_path / 'scene0.mask.png'}")
    mask = Image.open(tmp_path / "scene0.mask.png")
    assert mask.size == (192, 192) and mask.mode == "RGB"  # the image's size, not the network's
    mask.load()
    assert main(["predict", "--model", str(export), paths[0], "--format", "csv", "--out-dir", str(tmp_path / "masks")]) == 0
    assert capsys.readouterr().out.startswith("path,label,pixel_share,mask\n")
    assert (tmp_path / "masks" / "scene0.mask.png").is_file()

    # zoo serve's API and zoo demo's predict give the same mask and shares (in process: the
    # HTTP layer is the classifiers' and detectors', tested in test_serve.py / test_demo.py).
    import base64
    import io

    from zoo.demo import predict as demo_predict
    from zoo.serve import ZooAPI

    api = ZooAPI(str(export))
    api.setup("cpu")
    encoded = base64.b64encode(open(paths[0], "rb").read()).decode()
    answer = api.encode_response(api.predict(api.decode_request({"image": encoded})))
    served = Image.open(io.BytesIO(base64.b64decode(answer["mask_png"])))
    assert (answer["width"], answer["height"]) == (192, 192) and (np.asarray(served) == np.asarray(mask)).all()
    shares, drawn = demo_predict(zoo.load(export), Image.open(paths[0]))
    assert shares == answer["labels"] and drawn.size == (192, 192)
    assert abs(sum(shares.values()) - 1) < 1e-3

    # zoo eval scores it on test scenes; a folder of class images is for classifiers, said in one line.
    assert main(["eval", str(export), "--eval-limit", "40"]) == 0
    assert "test mean IoU" in capsys.readouterr().out
    assert main(["eval", str(export), "--data", str(tmp_path)]) == 2
    assert "fcn is a segmentation model" in capsys.readouterr().err

    # scripts/segment.py draws its picture and prints each label's IoU, whose mean is the mean IoU.
    from conftest import run_script

    ran = run_script(SEGMENT, "--model", export, "--scenes", 2, "--iou-scenes", 40, "--out", tmp_path / "picture.png")
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    assert lines[0].startswith("IoU on 40 test scenes (mean ") and len(lines) == 1 + 11 + 1, lines
    ious = [float(line.split()[-1]) for line in lines[1:12]]
    assert ious == sorted(ious, reverse=True) and abs(sum(ious) / 11 - float(lines[0].split()[-1][:-2])) < 1e-3
    picture = Image.open(tmp_path / "picture.png")
    assert picture.width == 3 * 96 * 2 + 4 * 4 and picture.height > 2 * 96 * 2  # 3 columns; 2 rows and a legend


def test_a_loaded_scene_model_keeps_its_own_backbone_when_training_starts():
    # Fine-tuning a trained FCN must start from its own weights, not the classifier's it began from.
    model = zoo.load("fcn")
    own = model.backbone[0].weight.clone()
    model.setup("fit")  # what Trainer.fit does first
    assert torch.equal(model.backbone[0].weight, own)
    fresh = zoo.create_model("fcn")
    fresh.setup("fit")
    assert torch.equal(fresh.backbone[0].weight, zoo.load("resnet18").backbone[0].weight)
