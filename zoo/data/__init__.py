"""Data modules: Fashion-MNIST for every classifier, synthetic data for linear regression."""

from .fashion_mnist import (
    CLASSES,
    MEAN,
    STD,
    CorruptDataError,
    DataNotFoundError,
    FashionMNISTDataModule,
    find_data_dir,
    load_fashion_mnist,
    read_idx,
)
from .synthetic import SyntheticRegressionDataModule

__all__ = [
    "CLASSES",
    "MEAN",
    "STD",
    "CorruptDataError",
    "DataNotFoundError",
    "FashionMNISTDataModule",
    "SyntheticRegressionDataModule",
    "find_data_dir",
    "load_fashion_mnist",
    "read_idx",
]
