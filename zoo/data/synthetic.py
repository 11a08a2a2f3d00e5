"""The book's synthetic regression data (ch. 3.3): y = Xw + b + noise."""

from __future__ import annotations

from typing import Sequence

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

__all__ = ["SyntheticRegressionDataModule"]


class SyntheticRegressionDataModule(L.LightningDataModule):
    """``num_train + num_val`` samples of y = Xw + b + ε with X ~ N(0, 1) and ε ~ N(0, noise²).

    Defaults are the book's: w = [2, -3.4], b = 4.2, noise 0.01, 1000 training samples, batch 32.
    The draw depends only on ``seed``.
    """

    def __init__(
        self,
        *,
        w: Sequence[float] = (2.0, -3.4),
        b: float = 4.2,
        noise: float = 0.01,
        num_train: int = 1000,
        num_val: int = 1000,
        batch_size: int = 32,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if num_train < 1 or batch_size < 1:
            raise ValueError(f"num_train and batch_size must be >= 1, got {num_train} and {batch_size}")
        self.w = torch.tensor(w, dtype=torch.float32)
        self.b = float(b)
        self.batch_size = batch_size
        gen = torch.Generator().manual_seed(seed)
        n = num_train + num_val
        self.X = torch.randn(n, len(self.w), generator=gen)
        self.y = (self.X @ self.w + self.b + noise * torch.randn(n, generator=gen)).unsqueeze(1)
        self.num_train = num_train

    def train_dataloader(self) -> DataLoader:
        ds = TensorDataset(self.X[: self.num_train], self.y[: self.num_train])
        return DataLoader(ds, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        ds = TensorDataset(self.X[self.num_train :], self.y[self.num_train :])
        return DataLoader(ds, batch_size=self.batch_size)

    test_dataloader = val_dataloader
