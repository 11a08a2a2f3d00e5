"""Fashion-MNIST: find the four original idx files, parse them once into uint8 tensors, and serve
seeded train/validation/test splits as batches transformed on the device.

Where the files are looked for, in order:
1. the ``data_dir`` argument (or the ``ZOO_DATA_DIR`` environment variable);
2. the Debian package's folder ``/usr/share/datasets/fashion-mnist`` (``apt-get install dataset-fashion-mnist``);
3. torchvision's download into ``$ZOO_HOME/data`` -- on a connected machine only, when ``download=True``.
Each file may be gzipped (``.gz``, as published) or not.
"""

from __future__ import annotations

import gzip
import os
import zlib
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler

from ..runtime import batch_seed, seeded_rng, to_device, zoo_home
from .augment import BatchTransform
from .preprocess import per_channel

__all__ = [
    "CLASSES",
    "resumed_samples",
    "ResumableLoader",
    "MEAN",
    "STD",
    "DEBIAN_DIR",
    "DataNotFoundError",
    "CorruptDataError",
    "read_idx",
    "find_data_dir",
    "load_fashion_mnist",
    "FashionMNISTDataModule",
    "PAD_LABEL",
    "pad_batch",
]

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
# Mean and standard deviation of the 60,000 training images' pixels scaled to [0, 1]
# (tests/test_data.py recomputes them from the real files).
MEAN = 0.2860
STD = 0.3530
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_EXPECTED = {"train_images": (60000, 28, 28), "train_labels": (60000,), "test_images": (10000, 28, 28), "test_labels": (10000,)}
_HOW_TO_GET = (
    "Install it with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or pass data_dir= "
    "(--data-dir on the command line, or set ZOO_DATA_DIR) pointing to a folder with the four files "
    + ", ".join(f"{f}.gz" for f in FILES.values())
    + " from https://github.com/zalandoresearch/fashion-mnist; on a connected machine, download=True"
    " (zoo train --download) fetches them."
)


class DataNotFoundError(FileNotFoundError):
    """No folder holds the four Fashion-MNIST files."""


class CorruptDataError(ValueError):
    """A Fashion-MNIST file exists but is truncated or not an idx file."""



def _file_in(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _complete(folder: Path) -> bool:
    return folder.is_dir() and all(_file_in(folder, stem) for stem in FILES.values())


def find_data_dir(data_dir: str | os.PathLike | None = None, *, download: bool = False) -> Path:
    """The first folder holding all four files, in the order described in the module docstring."""
    explicit = data_dir if data_dir is not None else os.environ.get("ZOO_DATA_DIR")
    if explicit is not None:
        folder = Path(explicit).expanduser()
        # torchvision's layout (<root>/FashionMNIST/raw) is accepted too.
        for candidate in (folder, folder / "FashionMNIST" / "raw"):
            if _complete(candidate):
                return candidate
        if not folder.is_dir():
            raise DataNotFoundError(f"Fashion-MNIST data_dir {str(folder)!r} does not exist. {_HOW_TO_GET}")
        missing = [stem for stem in FILES.values() if _file_in(folder, stem) is None]
        raise DataNotFoundError(
            f"Fashion-MNIST data_dir {str(folder)!r} lacks {', '.join(m + '.gz' for m in missing)}. {_HOW_TO_GET}"
        )
    if _complete(DEBIAN_DIR):
        return DEBIAN_DIR
    cache = zoo_home() / "data"
    if _complete(cache / "FashionMNIST" / "raw"):
        return cache / "FashionMNIST" / "raw"
    if download:
        try:
            from torchvision.datasets import FashionMNIST

            FashionMNIST(str(cache), train=True, download=True)
            FashionMNIST(str(cache), train=False, download=True)
        except Exception as err:  # no network, proxy, disk full: say so, then how to get the files
            raise DataNotFoundError(
                f"Fashion-MNIST is not on this machine and downloading it failed ({type(err).__name__}: {err}). {_HOW_TO_GET}"
            ) from err
        return cache / "FashionMNIST" / "raw"
    raise DataNotFoundError(f"Fashion-MNIST was not found in {DEBIAN_DIR} nor in {cache}. {_HOW_TO_GET}")


def read_idx(path: str | os.PathLike) -> torch.Tensor:
    """Parse one idx file (gzipped or not) into a uint8 tensor, checking it is whole.

    The idx format: two zero bytes, a type code (0x08 = uint8), the number of dimensions, then each
    dimension as a big-endian int32, then the data.
    """
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (EOFError, OSError, zlib.error) as err:
        raise CorruptDataError(
            f"{path} is truncated or not a valid gzip file ({err}); delete it and fetch it again. {_HOW_TO_GET}"
        ) from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise CorruptDataError(f"{path} is not an idx file of uint8 data (bad header {raw[:4].hex()})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise CorruptDataError(f"{path} is truncated: its header is incomplete")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape)) + header
    if len(raw) != expected:
        raise CorruptDataError(
            f"{path} is truncated or padded: header says shape {shape} ({expected} bytes), file has {len(raw)} bytes"
        )
    return torch.from_numpy(np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy())


@lru_cache(maxsize=4)
def _load_cached(folder: str, stamp: tuple[float, ...]) -> dict[str, torch.Tensor]:
    out = {key: read_idx(_file_in(Path(folder), stem)) for key, stem in FILES.items()}
    for key, shape in _EXPECTED.items():
        if tuple(out[key].shape) != shape:
            raise CorruptDataError(f"{FILES[key]} in {folder} has shape {tuple(out[key].shape)}, expected {shape}")
    for key in ("train_labels", "test_labels"):
        if int(out[key].max()) >= len(CLASSES):
            raise CorruptDataError(f"{FILES[key]} in {folder} has labels outside 0..9")
    return out


def load_fashion_mnist(data_dir: str | os.PathLike | None = None, *, download: bool = False) -> dict[str, torch.Tensor]:
    """All of Fashion-MNIST as uint8 tensors: train/test images (N, 28, 28) and labels (N,).

    Parsed once per process (about 0.6 s) and cached; a file changed on disk is parsed again.
    """
    folder = find_data_dir(data_dir, download=download)
    stamp = tuple(_file_in(folder, s).stat().st_mtime for s in FILES.values())
    return _load_cached(str(folder), stamp)


def stratified_split(labels: torch.Tensor, val_per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of a train/validation split holding ``val_per_class`` images of each class out for
    validation. Depends only on ``seed``: every run, every machine, gets the same split."""
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(labels), generator=gen)
    val_parts = []
    for c in range(int(labels.max()) + 1):
        of_class = perm[labels[perm] == c]
        if len(of_class) <= val_per_class:
            raise ValueError(f"class {c} has {len(of_class)} images, too few to hold out {val_per_class}")
        val_parts.append(of_class[:val_per_class])
    val = torch.cat(val_parts).sort().values
    mask = torch.ones(len(labels), dtype=torch.bool)
    mask[val] = False
    return torch.nonzero(mask).squeeze(1), val


class TensorImages(Dataset):
    """uint8 images (N, 1, H, W) + labels, fetched a batch at a time (``__getitems__``) so that a
    DataLoader makes one indexing call per batch instead of one Python call per image. When the
    tensors live on a GPU (:meth:`to`), the gather happens there too."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor | None = None) -> None:
        self.images = images if images.ndim == 4 else images.unsqueeze(1)
        self.labels = labels.long()
        self.indices = indices

    def __len__(self) -> int:
        return len(self.indices) if self.indices is not None else len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = self.__getitems__([i])
        return images[0], labels[0]

    def __getitems__(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx_t = to_device(torch.as_tensor(idx, dtype=torch.long), self.images.device)
        if self.indices is not None:
            idx_t = self.indices[idx_t]
        return self.images[idx_t], self.labels[idx_t]

    def to(self, device: torch.device) -> "TensorImages":
        """The same split with its tensors on ``device`` (Fashion-MNIST is 55 MB of uint8)."""
        if self.images.device == device:
            return self
        indices = self.indices.to(device) if self.indices is not None else None
        return TensorImages(self.images.to(device), self.labels.to(device), indices)


def keep_batch(batch: Any) -> Any:
    # __getitems__ already returns a collated batch; module-level so worker processes can pickle it.
    return batch


class EpochShuffleSampler(RandomSampler):
    """A random permutation that depends only on (seed, epoch): Lightning calls ``set_epoch``, so a
    run resumed from a checkpoint sees exactly the batches an uninterrupted run would have seen.
    ``resumed``, when given, says how many of the epoch's samples were trained on before a
    mid-epoch checkpoint (:func:`resumed_samples`); they are skipped, once.

    A RandomSampler subclass, so that under DDP Lightning swaps it for its DistributedSampler
    (each process gets its own shard, reshuffled every epoch from the run's seed; a mid-epoch
    resume then starts that epoch's shard again)."""

    def __init__(self, n: int, seed: int, *, resumed: Callable[[], int] | None = None) -> None:
        super().__init__(range(n))
        self.n, self.seed, self.epoch, self.resumed = n, seed, 0, resumed

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        start = self.resumed() if self.resumed is not None else 0
        return iter(torch.randperm(self.n, generator=gen)[start:].tolist())


def resumed_samples(dm: L.LightningDataModule) -> int:
    """On a run resumed from a checkpoint written mid-epoch (``on_exception.ckpt``), how many of
    that epoch's training samples it had trained on; else 0. Asked when the epoch's iterator is
    made, from Lightning's restored loop progress (Lightning itself restarts the iterator and would
    feed the epoch's first batches again). The augmentation count (:func:`next_augment_seed`)
    continues from there too."""
    trainer = dm.trainer
    if trainer is None:
        return 0
    loop = trainer.fit_loop
    epochs = loop.epoch_progress.total
    if not (loop.restarting and epochs.started == epochs.ready and epochs.processed == epochs.started - 1):
        return 0
    batches = loop.epoch_loop.batch_progress.current
    # A batch whose step was taken but not yet counted as completed (stopped in its end hooks) is
    # counted by Lightning as it restarts: skip it too.
    done = batches.completed + int(batches.processed > batches.completed)
    dm._aug_epoch, dm._aug_batch = trainer.current_epoch, done
    return done * dm.batch_size


class ResumableLoader(DataLoader):
    """A DataLoader whose sampler is an :class:`EpochShuffleSampler` that skips what a resumed run
    trained on. Its whole state (seed, epoch, batches done) is what Lightning restores anyway, so
    its state dict is empty; having one tells Lightning a mid-epoch resume is exact here."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def next_augment_seed(dm: L.LightningDataModule) -> int:
    """The seed of the next training batch's augmentation, from (``dm.seed``, epoch, batch number,
    rank) only: a resumed run augments exactly as the uninterrupted one, and nothing else's
    randomness (dropout, validation, a loader started early) shifts it. ``dm`` keeps the count in
    ``_aug_epoch`` / ``_aug_batch`` (start them at -1, 0)."""
    epoch, rank = dm.trainer.current_epoch, dm.trainer.global_rank
    if epoch != dm._aug_epoch:
        dm._aug_epoch, dm._aug_batch = epoch, 0
    dm._aug_batch += 1
    return batch_seed(dm.seed, epoch, dm._aug_batch - 1, rank)


#: The label of the blank images that pad an evaluation batch to full size (static shapes); the
#: value cross-entropy ignores by default, and the classifiers' metrics are told to ignore.
PAD_LABEL = -100


def pad_batch(images: torch.Tensor, labels: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad a batch to ``size`` with zero images labelled :data:`PAD_LABEL`."""
    n = size - len(labels)
    images = torch.cat([images, images.new_zeros((n, *images.shape[1:]))])
    return images, torch.cat([labels, labels.new_full((n,), PAD_LABEL)])


class FashionMNISTDataModule(L.LightningDataModule):
    """The shared Fashion-MNIST DataModule of every zoo classifier.

    Splits: 55,000 training and 5,000 validation images (500 per class, fixed by ``split_seed``)
    from the official training set, and the official 10,000 test images. Batches leave the
    DataLoader as uint8 and are converted, resized, augmented (training only) and normalised as a
    whole batch on the training device, in :meth:`on_after_batch_transfer`.

    Args:
        data_dir: folder with the four files (see the module docstring for the search order).
        input_size: side the images are resized to (28, 96 or 224 in the book).
        batch_size: training batch size; ``eval_batch_size`` defaults to twice it.
        augment: "none", "standard" or "strong" (see :class:`~zoo.data.augment.BatchTransform`).
        mean, std: normalisation; defaults are Fashion-MNIST's own.
        in_chans: 1, or 3 to feed RGB models (the gray channel is repeated).
        val_size: images held out for validation (a multiple of 10, split evenly over the classes).
        split_seed: seed of the train/validation split. ``seed`` seeds the training shuffle.
        train_limit, eval_limit: use only the first N images of the training / each evaluation split
            (small real subsets for tests and quick runs).
        device_resident: keep the uint8 tensors on the training device, so a batch is gathered,
            converted and augmented there with no host-to-device copy (ignored with num_workers > 0:
            worker processes serve batches from host memory).
        channels_last: hand batches over in NHWC memory format (pair with a channels-last model).
        static_shapes: every batch the same shape, so a compiled model never recompiles and CUDA
            graphs can replay: the last partial training batch is dropped, the last evaluation batch
            is padded with blank images labelled ``PAD_LABEL`` (which the metrics ignore).
        download: allow torchvision's download when no local copy is found.
    """

    def __init__(
        self,
        *,
        data_dir: str | os.PathLike | None = None,
        input_size: int = 28,
        batch_size: int = 256,
        eval_batch_size: int | None = None,
        augment: str = "none",
        mean: Sequence[float] | float = MEAN,
        std: Sequence[float] | float = STD,
        in_chans: int = 1,
        val_size: int = 5000,
        split_seed: int = 0,
        seed: int = 0,
        train_limit: int | None = None,
        eval_limit: int | None = None,
        num_workers: int = 0,
        device_resident: bool = True,
        channels_last: bool = False,
        static_shapes: bool = False,
        download: bool = False,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if val_size % len(CLASSES) or not 0 < val_size < 60000:
            raise ValueError(f"val_size must be a positive multiple of {len(CLASSES)} below 60000, got {val_size}")
        if in_chans not in (1, 3):
            raise ValueError(f"in_chans must be 1 or 3 for Fashion-MNIST, got {in_chans}")
        self.data_dir = data_dir
        self.input_size = input_size
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or 2 * batch_size
        self.val_size = val_size
        self.split_seed = split_seed
        self.seed = seed
        self.train_limit = train_limit
        self.eval_limit = eval_limit
        self.num_workers = num_workers
        self.download = download
        self.device_resident = device_resident
        self.channels_last = channels_last
        self.static_shapes = static_shapes
        self.transform = BatchTransform(input_size=input_size, mean=per_channel(mean, in_chans, "mean"),
                                        std=per_channel(std, in_chans, "std"), in_chans=in_chans, augment=augment)  # fmt: skip
        self.classes = list(CLASSES)
        self.num_classes = len(CLASSES)
        self.train_set = self.val_set = self.test_set = None
        self._aug_epoch, self._aug_batch = -1, 0

    @classmethod
    def for_model(cls, model: Any, **overrides: Any) -> "FashionMNISTDataModule":
        """A DataModule matching a model's input size, channels, normalisation and recipe."""
        kwargs = dict(
            input_size=model.input_size,
            in_chans=model.in_chans,
            mean=model.mean,
            std=model.std,
            batch_size=model.recipe.batch_size,
            eval_batch_size=model.recipe.eval_batch_size,
            augment=model.recipe.augment,
            channels_last=model.recipe.channels_last,
            static_shapes=model.recipe.static_shapes,
        )
        kwargs.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**kwargs)

    def prepare_data(self) -> None:
        # Runs on one process: the only place a download may happen.
        find_data_dir(self.data_dir, download=self.download)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        data = load_fashion_mnist(self.data_dir, download=self.download)
        train_idx, val_idx = stratified_split(data["train_labels"], self.val_size // len(CLASSES), self.split_seed)
        if self.train_limit is not None:
            train_idx = train_idx[: self.train_limit]
        test_idx = torch.arange(len(data["test_labels"]))
        if self.eval_limit is not None:
            val_idx, test_idx = val_idx[: self.eval_limit], test_idx[: self.eval_limit]
        self.train_set = TensorImages(data["train_images"], data["train_labels"], train_idx)
        self.val_set = TensorImages(data["train_images"], data["train_labels"], val_idx)
        self.test_set = TensorImages(data["test_images"], data["test_labels"], test_idx)

    def _device(self) -> torch.device:
        if self.trainer is not None and self.device_resident and self.num_workers == 0:
            return self.trainer.strategy.root_device
        return torch.device("cpu")

    def _loader(self, dataset: TensorImages, batch_size: int, sampler: Sampler | None = None) -> DataLoader:
        dataset = dataset.to(self._device())
        return (ResumableLoader if isinstance(sampler, EpochShuffleSampler) else DataLoader)(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            # Training only (a sampler is given); never down to no batch at all.
            drop_last=self.static_shapes and sampler is not None and len(dataset) >= batch_size,
            collate_fn=keep_batch,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        self.setup("fit")
        sampler = EpochShuffleSampler(len(self.train_set), self.seed, resumed=lambda: resumed_samples(self))
        return self._loader(self.train_set, self.batch_size, sampler)

    def val_dataloader(self) -> DataLoader:
        self.setup("validate")
        return self._loader(self.val_set, self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        self.setup("test")
        return self._loader(self.test_set, self.eval_batch_size)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        images, labels = batch
        training = self.trainer is not None and self.trainer.training
        if not training and self.static_shapes and len(labels) < self.eval_batch_size:
            images, labels = pad_batch(images, labels, self.eval_batch_size)
        if not training or self.transform.augment == "none":
            return self._format(self.transform(images, train=False)), labels
        # Each training batch's augmentation depends only on (seed, epoch, batch number, rank), so
        # a resumed run augments exactly as the uninterrupted one, and nothing else's randomness
        # (dropout, validation) shifts it.
        with seeded_rng(next_augment_seed(self), images.device):
            return self._format(self.transform(images, train=True)), labels

    def _format(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x
