"""Shared fixtures. Every test runs on the real Fashion-MNIST files (the Debian package's folder, or
ZOO_DATA_DIR); .ci/run installs them."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from zoo.data import load_fashion_mnist


def pytest_configure(config: pytest.Config) -> None:
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def fmnist() -> dict[str, torch.Tensor]:
    return load_fashion_mnist()


@pytest.fixture(autouse=True)
def _isolated_zoo_home(tmp_path, monkeypatch):
    # Nothing a test trains or caches may land in the user's real store.
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "zoo_home"))


class InterruptAt(L.Callback):
    """Press Ctrl+C when epoch ``epoch`` starts (Lightning then writes on_exception.ckpt and exits)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise KeyboardInterrupt
