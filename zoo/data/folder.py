"""ImageFolderDataModule: your own images, one sub-folder per class, for fine-tuning.

Layouts:
    root/train/<class>/*  and  root/val/<class>/*     a split you made
    root/<class>/*                                     split here: seeded and stratified
Every format PIL reads; any size and mode (L, RGB, RGBA, P, 16-bit). Files that are not images by
their extension are ignored; images PIL cannot decode are skipped with one warning that lists
them (``strict=True`` makes that an error).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from ..runtime import seeded_rng
from .fashion_mnist import EpochShuffleSampler, ResumableLoader, next_augment_seed, resumed_samples
from .preprocess import PhotoSteps, Preprocess, per_channel

__all__ = ["ImageFolderDataModule", "IMAGE_EXTENSIONS", "scan_image_folder"]

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}


class FolderError(ValueError):
    """The image folder is missing, empty or laid out wrongly."""


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def scan_image_folder(root: Path) -> dict[str, list[Path]]:
    """{class name: image files} for ``root/<class>/*``, classes sorted; errors name the folder."""
    if not root.is_dir():
        raise FolderError(f"image folder {str(root)!r} does not exist")
    classes = _class_dirs(root)
    if not classes:
        raise FolderError(f"{root} has no class folders: expected {root}/<class name>/<images>")
    found = {}
    for folder in classes:
        files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise FolderError(f"class folder {folder} has no image files ({', '.join(sorted(IMAGE_EXTENSIONS))})")
        found[folder.name] = files
    return found


class _Images(Dataset):
    """Decoded images (float, in_chans x S x S) with labels, transformed per sample (or not)."""

    def __init__(self, images: list[torch.Tensor], labels: list[int], transform: Any = None) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return (self.transform(self.images[i]) if self.transform else self.images[i]), self.labels[i]


class ImageFolderDataModule(L.LightningDataModule):
    """Train/validation batches from an image folder, shaped for a given (source) model.

    Args:
        root: the folder (see the module docstring for the layouts).
        input_size, in_chans, mean, std: what the model expects; take them from the source model
            with :meth:`for_model`.
        batch_size: training batch size (validation uses twice it).
        val_fraction: share of each class held out when the folder has no train/val split.
        seed: seed of that split (the split depends only on it and the file names).
        augment: "standard" (the book's ch. 13.1: random resized crop, flip, colour jitter on colour
            images) or "none".
        hflip: include the horizontal flip (turn it off for digits, text, anything chiral).
        strict: raise on unreadable image files instead of skipping them with a warning.
        num_workers: DataLoader workers.
        steps: photo steps (:class:`~zoo.data.preprocess.PhotoSteps`) applied when decoding; none by default.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        input_size: int = 28,
        in_chans: int = 1,
        mean: Sequence[float] = (0.286,),
        std: Sequence[float] = (0.353,),
        batch_size: int = 64,
        val_fraction: float = 0.2,
        seed: int = 0,
        augment: str = "standard",
        hflip: bool = True,
        strict: bool = False,
        num_workers: int = 0,
        steps: PhotoSteps | None = None,
    ) -> None:
        super().__init__()
        if augment not in ("standard", "none"):
            raise ValueError(f"augment must be 'standard' or 'none', got {augment!r}")
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
        self.root = Path(root)
        self.input_size, self.in_chans = input_size, in_chans
        self.mean, self.std = per_channel(mean, in_chans, "mean"), per_channel(std, in_chans, "std")
        self.batch_size, self.val_fraction, self.seed = batch_size, val_fraction, seed
        self.augment, self.hflip, self.strict, self.num_workers = augment, hflip, strict, num_workers
        self.classes: list[str] = []
        self.skipped: list[Path] = []
        self.train_set = self.val_set = None
        self._aug_epoch, self._aug_batch = -1, 0
        # Decoding: mode/channels/size fitted exactly as zoo.load's preprocess does, minus normalising.
        # The photo steps default to none: a user's folder is its own data set, and a model trained
        # on it records the steps it was trained with (PhotoSteps in its config.json).
        self.steps = steps or PhotoSteps.plain()
        self._augmentation_steps = self._augmentation()
        self.normalize = v2.Normalize(self.mean, self.std)  # built once: it runs on every training batch
        self._decode = Preprocess(input_size=input_size, in_chans=in_chans, mean=[0.0] * in_chans, std=[1.0] * in_chans, steps=self.steps)

    @classmethod
    def for_model(cls, model: Any, root: str | os.PathLike, *, recipe: Any = None, **kwargs: Any) -> "ImageFolderDataModule":
        """A DataModule that feeds ``model``: its input size, channels and normalisation. With a
        :class:`~zoo.recipe.FinetuneRecipe`, its batch size, validation share and augmentation too."""
        if recipe is not None:
            kwargs = {"batch_size": recipe.batch_size, "val_fraction": recipe.val_fraction, "augment": recipe.augment,
                      "hflip": recipe.hflip, **kwargs}  # fmt: skip
        return cls(root, input_size=model.input_size, in_chans=model.in_chans, mean=model.mean, std=model.std, **kwargs)

    @property
    def num_classes(self) -> int:
        self.setup()
        return len(self.classes)

    # ---------------------------------------------------------------------------------- loading
    def _load(self, files: dict[str, list[Path]], class_index: dict[str, int]) -> tuple[list[torch.Tensor], list[int], dict[str, int]]:
        from PIL import UnidentifiedImageError

        from .images import open_image

        images, labels, per_class = [], [], {}
        for name, paths in files.items():
            for path in paths:
                try:
                    images.append(self._decode(open_image(path))[0])
                except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
                    if self.strict:
                        raise FolderError(f"cannot read image {path}: {err}") from err
                    self.skipped.append(path)
                    continue
                labels.append(class_index[name])
                per_class[name] = per_class.get(name, 0) + 1
        return images, labels, per_class

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        if not self.root.is_dir():
            raise FolderError(f"image folder {str(self.root)!r} does not exist")
        has_train, has_val = (self.root / "train").is_dir(), (self.root / "val").is_dir()
        if has_train != has_val:
            # Read as root/<class>/, this would be a 1-class (or train-vs-val) problem: never what was meant.
            present, missing = ("train", "val") if has_train else ("val", "train")
            raise FolderError(
                f"{self.root} has {present}/ but no {missing}/: add {self.root}/{missing}/<class>/<images>, or point "
                f"at {self.root}/train to hold out a share of it for validation (--val-fraction)"
            )
        split = has_train and has_val
        if split:
            train_files, val_files = scan_image_folder(self.root / "train"), scan_image_folder(self.root / "val")
            if set(train_files) != set(val_files):
                raise FolderError(
                    f"{self.root}/train and {self.root}/val must hold the same class folders; "
                    f"only in train: {sorted(set(train_files) - set(val_files))}, only in val: {sorted(set(val_files) - set(train_files))}"
                )
        else:
            train_files, val_files = scan_image_folder(self.root), None
        self.classes = sorted(train_files)
        if len(self.classes) < 2:
            where = f"{self.root}/train" if split else str(self.root)
            raise FolderError(
                f"{where} has {len(self.classes)} class folder ({', '.join(self.classes)}): a classifier needs at least 2; "
                f"put each class's images in its own folder, {where}/<class name>/<images>"
            )
        index = {c: i for i, c in enumerate(self.classes)}
        images, labels, counts = self._load(train_files, index)
        val_counts = None
        if val_files is not None:
            val_images, val_labels, val_counts = self._load(val_files, index)
        if self.skipped:
            warnings.warn(
                f"skipped {len(self.skipped)} unreadable image file(s) in {self.root}: " + ", ".join(str(p) for p in self.skipped[:10])
                + (" ..." if len(self.skipped) > 10 else "") + " (strict=True makes this an error)",
                stacklevel=2,
            )  # fmt: skip
        for name in self.classes:
            if counts.get(name, 0) == 0:
                raise FolderError(f"class folder {name!r} in {self.root} has no readable images")
            if val_counts is not None and val_counts.get(name, 0) == 0:
                raise FolderError(f"class folder {name!r} in {self.root}/val has no readable images")
        if val_files is None:
            train_idx, val_idx = self._split(labels)
            val_images, val_labels = [images[i] for i in val_idx], [labels[i] for i in val_idx]
            images, labels = [images[i] for i in train_idx], [labels[i] for i in train_idx]
        # Training images are augmented and normalised per batch (on_after_batch_transfer), from a seed.
        self.train_set = _Images(images, labels)
        self.val_set = _Images(val_images, val_labels, self.normalize)

    def _split(self, labels: list[int]) -> tuple[list[int], list[int]]:
        gen = torch.Generator().manual_seed(self.seed)
        train, val = [], []
        for c, name in enumerate(self.classes):
            members = [i for i, label in enumerate(labels) if label == c]
            n_val = max(1, round(len(members) * self.val_fraction))
            if len(members) - n_val < 1:
                raise FolderError(
                    f"class folder {name!r} in {self.root} has {len(members)} readable image(s): too few to keep at "
                    f"least one for training and one for validation (add images, or make train/ and val/ folders)"
                )
            order = torch.randperm(len(members), generator=gen).tolist()
            val += [members[i] for i in order[:n_val]]
            train += [members[i] for i in order[n_val:]]
        return sorted(train), sorted(val)

    # ---------------------------------------------------------------------------------- transforms
    def _augmentation(self) -> Any:
        """The book's per-image augmentation (ch. 13.1), on [0, 1] images before normalising."""
        steps: list[Any] = [v2.RandomResizedCrop(self.input_size, scale=(0.6, 1.0), antialias=True)]
        if self.hflip:
            steps.append(v2.RandomHorizontalFlip())
        if self.in_chans == 3:
            steps.append(v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3))
        return v2.Compose(steps)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        images, labels = batch
        trainer = getattr(self, "trainer", None)
        if trainer is None or not trainer.training:
            return batch  # validation images are normalised as they are read
        if self.augment != "none":
            # Each image its own crop and flip, drawn from the batch's seed: (seed, epoch, batch, rank)
            # only, so a resumed run augments as the uninterrupted one did.
            augment = self._augmentation_steps
            with seeded_rng(next_augment_seed(self), images.device):
                images = torch.stack([augment(image) for image in images])
        return self.normalize(images), labels

    def train_dataloader(self) -> DataLoader:
        self.setup()
        # The order depends only on (seed, epoch), so a resumed run sees the batches the uninterrupted one would.
        sampler = EpochShuffleSampler(len(self.train_set), self.seed, resumed=lambda: resumed_samples(self))
        return ResumableLoader(self.train_set, batch_size=self.batch_size, sampler=sampler,
                          num_workers=self.num_workers, drop_last=len(self.train_set) > self.batch_size)  # fmt: skip

    def val_dataloader(self) -> DataLoader:
        self.setup()
        return DataLoader(self.val_set, batch_size=2 * self.batch_size, num_workers=self.num_workers)
