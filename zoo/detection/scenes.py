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
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from ..data.fashion_mnist import CLASSES, load_fashion_mnist, stratified_split
from .boxes import box_iou

__all__ = ["make_scenes", "FashionMNISTScenesDataModule", "MAX_OBJECTS"]

MAX_OBJECTS = 4


def make_scenes(images: torch.Tensor, labels: torch.Tensor, n: int, *, seed: int, canvas: int = 96, min_size: int = 28,
                max_size: int = 48, max_objects: int = MAX_OBJECTS, noise: int = 12) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """``n`` scenes from the uint8 ``images`` (N, 28, 28): (n, 1, canvas, canvas) uint8 and
    (n, max_objects, 5) float rows (class, x1, y1, x2, y2) with coordinates in [0, 1], padded with -1."""
    gen = torch.Generator().manual_seed(seed)
    scenes = torch.randint(0, noise + 1, (n, 1, canvas, canvas), generator=gen, dtype=torch.uint8)
    targets = torch.full((n, max_objects, 5), -1.0)
    for i in range(n):
        count = int(torch.randint(1, max_objects + 1, (1,), generator=gen))
        placed: list[torch.Tensor] = []
        for _ in range(count):
            for _attempt in range(20):  # keep items apart enough that each stays recognisable
                side = int(torch.randint(min_size, max_size + 1, (1,), generator=gen))
                x0 = int(torch.randint(0, canvas - side + 1, (1,), generator=gen))
                y0 = int(torch.randint(0, canvas - side + 1, (1,), generator=gen))
                square = torch.tensor([[x0, y0, x0 + side, y0 + side]], dtype=torch.float32)
                if not placed or box_iou(square, torch.cat(placed)).max() < 0.2:
                    break
            else:
                continue
            k = int(torch.randint(0, len(images), (1,), generator=gen))
            item = F.interpolate(images[k][None, None].float(), size=(side, side), mode="bilinear", align_corners=False)[0, 0]
            item = item.round().clamp(0, 255).to(torch.uint8)
            region = scenes[i, 0, y0 : y0 + side, x0 : x0 + side]
            torch.maximum(region, item, out=region)
            # The tight box of the item's visible pixels (Fashion-MNIST items rarely fill 28x28).
            rows = torch.nonzero(item.amax(dim=1) > 40).squeeze(1)
            cols = torch.nonzero(item.amax(dim=0) > 40).squeeze(1)
            if len(rows) == 0 or len(cols) == 0:
                continue
            box = torch.tensor([x0 + cols[0], y0 + rows[0], x0 + cols[-1] + 1, y0 + rows[-1] + 1], dtype=torch.float32)
            targets[i, len(placed)] = torch.cat([labels[k].float().view(1), box / canvas])
            placed.append(square)
    return scenes, targets


class FashionMNISTScenesDataModule(L.LightningDataModule):
    """Scenes for training (from the 55,000-image split), validation (the 5,000) and test (the
    official 10,000), generated once per process from ``seed``.

    Args:
        num_train, num_val, num_test: how many scenes of each split.
        canvas: side of the scenes; min_size/max_size: side range of the pasted items.
        batch_size: training batch size (evaluation uses twice it).
        mean, std: normalisation, Fashion-MNIST's by default (close to the scenes' own).
    """

    def __init__(self, *, data_dir: str | os.PathLike | None = None, num_train: int = 10_000, num_val: int = 1_000,
                 num_test: int = 2_000, canvas: int = 96, min_size: int = 28, max_size: int = 48, batch_size: int = 64,
                 seed: int = 0, mean: float = 0.286, std: float = 0.353, num_workers: int = 0) -> None:  # fmt: skip
        super().__init__()
        if not 8 <= min_size <= max_size <= canvas:
            raise ValueError(f"need 8 <= min_size <= max_size <= canvas, got {min_size}, {max_size}, {canvas}")
        self.data_dir, self.seed, self.batch_size, self.num_workers = data_dir, seed, batch_size, num_workers
        self.sizes = {"train": num_train, "val": num_val, "test": num_test}
        self.scene_kwargs = dict(canvas=canvas, min_size=min_size, max_size=max_size)
        self.mean, self.std = float(mean), float(std)
        self.classes = list(CLASSES)
        self.sets: dict[str, TensorDataset] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.sets:
            return
        data = load_fashion_mnist(self.data_dir)
        train_idx, val_idx = stratified_split(data["train_labels"], 500, 0)
        sources = {
            "train": (data["train_images"][train_idx], data["train_labels"][train_idx]),
            "val": (data["train_images"][val_idx], data["train_labels"][val_idx]),
            "test": (data["test_images"], data["test_labels"]),
        }
        for offset, (split, (images, labels)) in enumerate(sources.items()):
            scenes, targets = make_scenes(images, labels, self.sizes[split], seed=self.seed * 1000 + offset, **self.scene_kwargs)
            self.sets[split] = TensorDataset(scenes, targets)

    def normalise(self, scenes: torch.Tensor) -> torch.Tensor:
        return (scenes.float() / 255 - self.mean) / self.std

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        scenes, targets = batch
        return self.normalise(scenes), targets

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        self.setup()
        size = self.batch_size if split == "train" else 2 * self.batch_size
        return DataLoader(self.sets[split], batch_size=size, shuffle=shuffle, num_workers=self.num_workers)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)
