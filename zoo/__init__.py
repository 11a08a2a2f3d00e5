"""d2l-zoo: the networks of *Dive into Deep Learning* as PyTorch Lightning modules.

    >>> import zoo
    >>> zoo.list_models("res*")
    ['resnet18']
    >>> net = zoo.create_model("lenet")
"""

from .classifier import ImageClassifier
from .data import FashionMNISTDataModule, SyntheticRegressionDataModule
from .registry import ModelSpec, Recipe, create_model, get_spec, list_models, register_model
from . import models  # noqa: F401  (registers every model)

__version__ = "0.1.0"

__all__ = [
    "ImageClassifier",
    "FashionMNISTDataModule",
    "SyntheticRegressionDataModule",
    "ModelSpec",
    "Recipe",
    "create_model",
    "get_spec",
    "list_models",
    "register_model",
]
