"""FashionMNISTDataModule on the real files: sizes, splits, augmentation, and bad data."""

from __future__ import annotations

import gzip
import shutil

import lightning as L
import pytest
import torch

from zoo.data import CLASSES, MEAN, STD, CorruptDataError, DataNotFoundError, FashionMNISTDataModule, find_data_dir, read_idx
from zoo.data.augment import random_crop, random_hflip
from zoo.data.fashion_mnist import FILES


def test_real_files_have_the_published_shapes_and_balance(fmnist):
    assert fmnist["train_images"].shape == (60000, 28, 28) and fmnist["train_images"].dtype == torch.uint8
    assert fmnist["test_images"].shape == (10000, 28, 28)
    assert torch.bincount(fmnist["train_labels"]).tolist() == [6000] * 10
    assert torch.bincount(fmnist["test_labels"]).tolist() == [1000] * 10


def test_normalisation_constants_are_the_training_sets(fmnist):
    x = fmnist["train_images"].float() / 255
    assert x.mean().item() == pytest.approx(MEAN, abs=1e-4)
    assert x.std().item() == pytest.approx(STD, abs=1e-4)


def test_split_sizes_disjoint_stratified_and_fixed():
    a = FashionMNISTDataModule()
    a.setup()
    assert (len(a.train_set), len(a.val_set), len(a.test_set)) == (55000, 5000, 10000)
    train_idx, val_idx = a.train_set.indices, a.val_set.indices
    assert not set(train_idx.tolist()) & set(val_idx.tolist())
    assert len(set(train_idx.tolist()) | set(val_idx.tolist())) == 60000
    assert torch.bincount(a.val_set.labels[val_idx]).tolist() == [500] * 10
    b = FashionMNISTDataModule()
    b.setup()
    assert torch.equal(a.train_set.indices, b.train_set.indices) and torch.equal(a.val_set.indices, b.val_set.indices)
    other = FashionMNISTDataModule(split_seed=1)
    other.setup()
    assert not torch.equal(a.val_set.indices, other.val_set.indices)
    assert a.classes == list(CLASSES) and a.classes[9] == "Ankle boot"


def test_batches_are_resized_and_normalised():
    dm = FashionMNISTDataModule(input_size=96, batch_size=64, eval_limit=64)
    dm.setup()
    images, labels = next(iter(dm.val_dataloader()))
    assert images.dtype == torch.uint8 and images.shape == (64, 1, 28, 28)  # uint8 until the device
    x, y = dm.on_after_batch_transfer((images, labels), 0)
    assert x.shape == (64, 1, 96, 96) and x.dtype == torch.float32
    assert abs(x.mean().item()) < 0.2 and 0.8 < x.std().item() < 1.2
    rgb = FashionMNISTDataModule(in_chans=3, mean=(MEAN,) * 3, std=(STD,) * 3).transform(images)
    assert rgb.shape == (64, 3, 28, 28) and torch.equal(rgb[:, 0], rgb[:, 2])


def test_random_crop_shifts_content_and_flip_mirrors():
    torch.manual_seed(0)
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).view(2, 1, 6, 6) + 1
    out = random_crop(x, padding=2)
    assert out.shape == x.shape
    for i in range(2):
        # Each output is a 6x6 window of the zero-padded image.
        padded = torch.nn.functional.pad(x[i], [2] * 4)
        windows = [padded[:, r : r + 6, c : c + 6] for r in range(5) for c in range(5)]
        assert any(torch.equal(out[i], w) for w in windows)
    flipped = random_hflip(x, p=1.0)
    assert torch.equal(flipped, x.flip(-1))
    assert torch.equal(random_hflip(x, p=0.0), x)


class _Recorder(L.LightningModule):
    """A real LightningModule that keeps the batches Lightning hands it."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(28 * 28, 10)
        self.seen = {"train": [], "val": []}

    def training_step(self, batch, batch_idx):
        self.seen["train"].append(batch[0].clone())
        return torch.nn.functional.cross_entropy(self.layer(batch[0].flatten(1)), batch[1])

    def validation_step(self, batch, batch_idx):
        self.seen["val"].append(batch[0].clone())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def _batches_seen(augment: str) -> dict[str, list[torch.Tensor]]:
    L.seed_everything(0, verbose=False)
    dm = FashionMNISTDataModule(batch_size=32, augment=augment, train_limit=64, eval_limit=64)
    module = _Recorder()
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0)  # fmt: skip
    trainer.fit(module, datamodule=dm)
    return module.seen


def test_augmentation_changes_training_batches_only():
    plain, augmented = _batches_seen("none"), _batches_seen("standard")
    assert len(plain["train"]) == len(augmented["train"]) == 2
    for a, b in zip(plain["val"], augmented["val"]):
        assert torch.equal(a, b)
    assert not torch.equal(plain["train"][0], augmented["train"][0])
    strong = _batches_seen("strong")
    assert not torch.equal(strong["train"][0], augmented["train"][0])
    # Same seed, same augmented batches: the pipeline is reproducible.
    assert torch.equal(_batches_seen("standard")["train"][0], augmented["train"][0])


def test_missing_folder_says_how_to_get_the_data(tmp_path):
    with pytest.raises(DataNotFoundError, match="does not exist.*apt-get install dataset-fashion-mnist"):
        find_data_dir(tmp_path / "nowhere")
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "train-images-idx3-ubyte.gz").write_bytes(b"")
    with pytest.raises(DataNotFoundError, match="lacks train-labels-idx1-ubyte.gz"):
        FashionMNISTDataModule(data_dir=tmp_path / "partial").setup()


def _copy_data(tmp_path):
    src = find_data_dir()
    dst = tmp_path / "fm"
    dst.mkdir()
    for stem in FILES.values():
        shutil.copy(src / f"{stem}.gz", dst / f"{stem}.gz")
    return dst


def test_truncated_gzip_gets_a_clear_error(tmp_path):
    folder = _copy_data(tmp_path)
    path = folder / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(CorruptDataError, match="t10k-labels-idx1-ubyte.gz is truncated"):
        FashionMNISTDataModule(data_dir=folder).setup()


def test_truncated_idx_payload_gets_a_clear_error(tmp_path):
    folder = _copy_data(tmp_path)
    path = folder / "t10k-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-784]))  # one image short
    with pytest.raises(CorruptDataError, match=r"truncated or padded.*\(10000, 28, 28\)"):
        read_idx(path)


def test_uncompressed_files_are_read_too(tmp_path):
    folder = _copy_data(tmp_path)
    for stem in FILES.values():
        gz = folder / f"{stem}.gz"
        (folder / stem).write_bytes(gzip.decompress(gz.read_bytes()))
        gz.unlink()
    dm = FashionMNISTDataModule(data_dir=folder)
    dm.setup()
    assert len(dm.test_set) == 10000
