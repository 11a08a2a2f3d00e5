"""FashionMNISTScenes: a detection data set made from real Fashion-MNIST images.

Each scene is a ``canvas`` x ``canvas`` gray image holding 1-4 real Fashion-MNIST items, each resized
to a random side between ``min_size`` and ``max_size`` pixels and pasted at a random place (white
garments on black, combined by maximum so overlaps stay visible), over faint noise. The label of an
item is its class and the tight box around its visible pixels. Scenes depend only on the seed and
their index; training scenes use only training-split images, validation scenes the validation
split's, test scenes only the official test images.
"""

from __future__ import annotations

import os
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from ..data.fashion_mnist import CLASSES, find_data_dir, load_fashion_mnist, stratified_split

__all__ = ["make_scenes", "item_masks", "FashionMNISTScenesDataModule", "scenes_for", "MAX_OBJECTS", "ITEM_LEVEL", "BACKGROUNDS"]

MAX_OBJECTS = 4


#: An item's pixel counts as the item (for its box and its label) above this gray level; the
#: scenes' noise stays below it.
ITEM_LEVEL = 40


#: The backgrounds a scene can have: faint uniform noise (the book-like default), a clean black
#: canvas, or a linear gradient with a little noise; all stay below ITEM_LEVEL.
BACKGROUNDS = ("noise", "clean", "gradient")


def make_scenes(images: torch.Tensor, labels: torch.Tensor, n: int, *, seed: int, canvas: int = 96, min_size: int = 28,
                max_size: int = 48, max_objects: int = MAX_OBJECTS, noise: int = 12, label_maps: bool = False,
                instance_maps: bool = False, backgrounds: tuple[str, ...] = ("noise",)) -> tuple[torch.Tensor, ...]:  # fmt: skip
    """``n`` scenes from the uint8 ``images`` (N, 28, 28): (n, 1, canvas, canvas) uint8 and
    (n, max_objects, 5) float rows (class, x1, y1, x2, y2) with coordinates in [0, 1], padded with -1.

    With ``label_maps``, also (n, canvas, canvas) uint8 per-pixel labels: 0 for background, class + 1
    where an item's pixel is above :data:`ITEM_LEVEL` and visible (where items overlap, the brighter
    pixel shows, as in the scene, and labels the pixel). The scenes and boxes are the same either way.

    With ``instance_maps``, also (last) (n, canvas, canvas) uint8 instance maps: 0 for background, j + 1
    where the item of box row j shows (the same pixels as the label maps), so that ``map == j + 1``
    is that item's instance mask.

    ``backgrounds`` (of :data:`BACKGROUNDS`): each scene's is drawn from these; the items, their
    places and boxes depend only on ``seed``, whatever the backgrounds (a clean-canvas test set
    holds exactly the items of the noisy one)."""
    unknown = sorted(set(backgrounds) - set(BACKGROUNDS))
    if unknown or not backgrounds:
        raise ValueError(f"backgrounds must be some of {BACKGROUNDS}, got {backgrounds}")
    gen = torch.Generator().manual_seed(seed)
    scenes = torch.randint(0, noise + 1, (n, 1, canvas, canvas), generator=gen, dtype=torch.uint8)
    if tuple(backgrounds) != ("noise",):
        scenes = _backgrounds(scenes, backgrounds, noise, seed)
    targets = torch.full((n, max_objects, 5), -1.0)
    maps = torch.zeros((n, canvas, canvas), dtype=torch.uint8) if label_maps else None
    instances = torch.zeros((n, canvas, canvas), dtype=torch.uint8) if instance_maps else None
    # The pasting works on NumPy views of the same memory, and the overlap test on plain ints: a
    # scene is a few dozen tiny operations, where torch's per-call overhead was most of the time
    # (the scenes, boxes and maps are the same to the bit as with torch ops throughout).
    pixels, classes = scenes.numpy(), labels.tolist()
    maps_np, instances_np = (m.numpy() if m is not None else None for m in (maps, instances))
    for i in range(n):
        count = int(torch.randint(1, max_objects + 1, (1,), generator=gen))
        placed: list[tuple[int, int, int]] = []  # (x0, y0, side) of each item's square
        for _ in range(count):
            for _attempt in range(20):  # keep items apart enough that each stays recognisable
                side = int(torch.randint(min_size, max_size + 1, (1,), generator=gen))
                x0 = int(torch.randint(0, canvas - side + 1, (1,), generator=gen))
                y0 = int(torch.randint(0, canvas - side + 1, (1,), generator=gen))
                if all(_square_iou((x0, y0, side), other) < 0.2 for other in placed):
                    break
            else:
                continue
            k = int(torch.randint(0, len(images), (1,), generator=gen))
            item = F.interpolate(images[k][None, None].float(), size=(side, side), mode="bilinear", align_corners=False)[0, 0]
            item = item.round().clamp(0, 255).to(torch.uint8).numpy()
            region = pixels[i, 0, y0 : y0 + side, x0 : x0 + side]
            if maps_np is not None or instances_np is not None:  # before pasting: where this item's pixel shows
                shows = (item > ITEM_LEVEL) & (item >= region)
                if maps_np is not None:
                    maps_np[i, y0 : y0 + side, x0 : x0 + side][shows] = classes[k] + 1
                if instances_np is not None:  # an item without a box shows no pixel either, so rows stay aligned
                    instances_np[i, y0 : y0 + side, x0 : x0 + side][shows] = len(placed) + 1
            np.maximum(region, item, out=region)
            # The tight box of the item's visible pixels (Fashion-MNIST items rarely fill 28x28).
            rows = np.flatnonzero(item.max(axis=1) > ITEM_LEVEL)
            cols = np.flatnonzero(item.max(axis=0) > ITEM_LEVEL)
            if len(rows) == 0 or len(cols) == 0:
                continue
            box = (x0 + cols[0], y0 + rows[0], x0 + cols[-1] + 1, y0 + rows[-1] + 1)
            targets[i, len(placed)] = torch.tensor([classes[k], *(int(v) / canvas for v in box)])
            placed.append((x0, y0, side))
    return (scenes, targets, *(m for m in (maps, instances) if m is not None))


def item_masks(boxes: torch.Tensor, instance_map: torch.Tensor) -> torch.Tensor:
    """One scene's instance masks, (K, H, W) booleans: one per real box row of ``boxes`` (M, 5),
    in order; box row j's item is where ``instance_map`` (H, W) is j + 1 (:func:`make_scenes`)."""
    ids = torch.nonzero(boxes[:, 0] >= 0)[:, 0] + 1
    return instance_map[None] == ids[:, None, None].to(instance_map.device)


def _square_iou(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    """IoU of two squares given as (x0, y0, side), in exact integer arithmetic up to the division."""
    (ax, ay, aside), (bx, by, bside) = a, b
    w = max(0, min(ax + aside, bx + bside) - max(ax, bx))
    h = max(0, min(ay + aside, by + bside) - max(ay, by))
    inter = w * h
    return inter / (aside * aside + bside * bside - inter)


def _backgrounds(noisy: torch.Tensor, kinds: tuple[str, ...], noise: int, seed: int) -> torch.Tensor:
    """Each scene's background drawn from ``kinds``, from a generator of its own (the items' draws
    stay those of ``seed``): the default noise as drawn, black, or a ramp in a random direction
    (from 0-8 up by 16-32 gray levels) plus half the noise, kept below ITEM_LEVEL - 4."""
    gen = torch.Generator().manual_seed(seed + 7_919)
    n, _, h, w = noisy.shape
    kind = torch.randint(0, len(kinds), (n,), generator=gen)
    angle = torch.rand(n, generator=gen) * 2 * torch.pi
    low, span = torch.rand(n, generator=gen) * 8, 16 + torch.rand(n, generator=gen) * 16
    ys, xs = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    out = noisy.clone()
    for i in range(n):
        if kinds[int(kind[i])] == "clean":
            out[i] = 0
        elif kinds[int(kind[i])] == "gradient":
            ramp = (xs * torch.cos(angle[i]) + ys * torch.sin(angle[i])).add_(1).div_(2)  # about 0..1 along the direction
            out[i, 0] = (low[i] + span[i] * ramp + noisy[i, 0].float() * 0.5).round().clamp(0, ITEM_LEVEL - 4).to(torch.uint8)
    return out


class FashionMNISTScenesDataModule(L.LightningDataModule):
    """Scenes for training (from the 55,000-image split), validation (the 5,000) and test (the
    official 10,000), generated once per process from ``seed``.

    Args:
        num_train, num_val, num_test: how many scenes of each split.
        canvas: side of the scenes; min_size/max_size: side range of the pasted items.
        batch_size: training batch size (evaluation uses twice it).
        mean, std: normalisation, Fashion-MNIST's by default (close to the scenes' own).
        label_maps: batches of (scene, per-pixel labels (canvas, canvas), long) for segmentation,
            instead of (scene, boxes); the same scenes.
        instance_maps: batches of (scene, (boxes, instance maps (canvas, canvas), long)) for instance
            segmentation: ``maps == j + 1`` is the mask of box row j (see :func:`make_scenes`).
        backgrounds: the training scenes' backgrounds (see :func:`make_scenes`).
        test_backgrounds: the validation and test scenes' (the same items whatever they are).
        fresh_train: draw new training scenes every epoch (epoch e from its own seed; epoch 0's are
            the usual ones), so that a network meets ``num_train`` new scenes each epoch instead of
            learning the same ones by heart. Needs ``Trainer(reload_dataloaders_every_n_epochs=1)``,
            which ``zoo train`` sets when this is on. Validation and test scenes never change.
    """

    def __init__(self, *, data_dir: str | os.PathLike | None = None, num_train: int = 10_000, num_val: int = 1_000,
                 num_test: int = 2_000, canvas: int = 96, min_size: int = 28, max_size: int = 48, batch_size: int = 64,
                 seed: int = 0, mean: float = 0.286, std: float = 0.353, num_workers: int = 0, label_maps: bool = False,
                 instance_maps: bool = False, backgrounds: tuple[str, ...] = ("noise",), test_backgrounds: tuple[str, ...] = ("noise",),
                 fresh_train: bool = False) -> None:  # fmt: skip
        super().__init__()
        if not 8 <= min_size <= max_size <= canvas:
            raise ValueError(f"need 8 <= min_size <= max_size <= canvas, got {min_size}, {max_size}, {canvas}")
        if label_maps and instance_maps:
            raise ValueError("label_maps (segmentation) and instance_maps (instance segmentation) are two kinds of batch: choose one")
        self.data_dir, self.seed, self.batch_size, self.num_workers = data_dir, seed, batch_size, num_workers
        self.sizes = {"train": num_train, "val": num_val, "test": num_test}
        self.scene_kwargs = dict(canvas=canvas, min_size=min_size, max_size=max_size, label_maps=label_maps,
                                 instance_maps=instance_maps)  # fmt: skip
        self.label_maps, self.instance_maps = label_maps, instance_maps
        self.backgrounds = {"train": tuple(backgrounds), "val": tuple(test_backgrounds), "test": tuple(test_backgrounds)}
        self.mean, self.std = float(mean), float(std)
        self.classes = list(CLASSES)
        self.fresh_train = fresh_train
        self.sets: dict[str, TensorDataset] = {}
        self._sources: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._train_epoch = 0  # the epoch whose scenes self.sets["train"] holds

    def setup(self, stage: str | None = None) -> None:
        if self.sets:
            return
        data = load_fashion_mnist(self.data_dir)
        train_idx, val_idx = stratified_split(data["train_labels"], 500, 0)
        self._sources = {
            "train": (data["train_images"][train_idx], data["train_labels"][train_idx]),
            "val": (data["train_images"][val_idx], data["train_labels"][val_idx]),
            "test": (data["test_images"], data["test_labels"]),
        }
        for offset, split in enumerate(self._sources):
            self.sets[split] = self._draw(split, self.seed * 1000 + offset)

    def _draw(self, split: str, seed: int) -> TensorDataset:
        images, labels = self._sources[split]
        scenes, *targets = make_scenes(images, labels, self.sizes[split], seed=seed, backgrounds=self.backgrounds[split],
                                       **self.scene_kwargs)  # fmt: skip
        if self.instance_maps:
            return TensorDataset(scenes, *targets)  # boxes and instance maps
        return TensorDataset(scenes, targets[-1])  # the label maps, or the boxes

    def normalise(self, scenes: torch.Tensor) -> torch.Tensor:
        return (scenes.float() / 255 - self.mean) / self.std

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.instance_maps:
            scenes, boxes, instances = batch
            return self.normalise(scenes), (boxes, instances.long())
        scenes, targets = batch
        return self.normalise(scenes), (targets.long() if self.label_maps else targets)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        self.setup()
        size = self.batch_size if split == "train" else 2 * self.batch_size
        return DataLoader(self.sets[split], batch_size=size, shuffle=shuffle, num_workers=self.num_workers)

    def train_dataloader(self) -> DataLoader:
        self.setup()
        epoch = self.trainer.current_epoch if self.fresh_train and self.trainer is not None else 0
        if epoch != self._train_epoch:  # epoch 0 keeps setup's seed; the others each a seed of their own
            seed = self.seed * 1000 + (100 + epoch if epoch else 0)
            self.sets["train"], self._train_epoch = self._draw("train", seed), epoch
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)


def scenes_for(model: Any, *, label_maps: bool = False, data_dir: Any = None, download: bool = False, seed: int = 0,
               train_limit: int | None = None, eval_limit: int | None = None, num_workers: int = 0) -> FashionMNISTScenesDataModule:  # fmt: skip
    """The scenes a detector (boxes; and instance maps where the model has ``instance_masks``) or a
    segmenter (``label_maps``) trains on: on the model's canvas, in batches of its recipe;
    ``train_limit``/``eval_limit`` scenes instead of the defaults."""
    find_data_dir(data_dir, download=download)  # a missing data set fails here, in one line
    limits = {"num_train": train_limit} if train_limit else {}
    if eval_limit:
        limits.update(num_val=eval_limit, num_test=eval_limit)
    return FashionMNISTScenesDataModule(data_dir=data_dir, batch_size=model.recipe.batch_size, seed=seed, canvas=model.input_size,
                                        num_workers=num_workers, label_maps=label_maps,
                                        instance_maps=getattr(model, "instance_masks", False),
                                        backgrounds=getattr(model, "scene_backgrounds", ("noise",)),
                                        fresh_train=model.fresh_scenes, **limits)  # fmt: skip
