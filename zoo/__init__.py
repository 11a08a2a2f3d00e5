"""d2l-zoo: the networks of *Dive into Deep Learning* as PyTorch Lightning modules.

    >>> import zoo
    >>> zoo.list_models("res*")
    ['resnet18']
    >>> net = zoo.create_model("lenet")          # fresh weights
    >>> net = zoo.load("lenet")                  # trained weights, eval mode, .preprocess, .label_names
"""

from .classifier import ImageClassifier
from .data import FashionMNISTDataModule, SyntheticRegressionDataModule
from .registry import ModelSpec, Recipe, create_model, get_spec, list_models, register_model
from .hub import CheckpointError, WeightsNotFoundError, load, save_checkpoint
from .data.preprocess import Preprocess
from .finetune import FineTuner
from . import models  # noqa: F401  (registers every model)

__version__ = "0.1.0"

__all__ = [
    "load",
    "save_checkpoint",
    "CheckpointError",
    "WeightsNotFoundError",
    "Preprocess",
    "FineTuner",
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
