"""d2l-zoo: the networks of *Dive into Deep Learning* as PyTorch Lightning modules.

    >>> import zoo
    >>> zoo.list_models("res*")
    ['resnet18']
    >>> net = zoo.create_model("lenet")          # fresh weights
    >>> net = zoo.load("lenet")                  # trained weights, eval mode, .preprocess, .label_names
    >>> zoo.finetune("lenet_bn", "my_images/")   # the measured fine-tuning recipe (zoo.FinetuneRecipe)
    >>> image, _ = zoo.stylize("photo.jpg", "texture.png")   # neural style transfer (zoo.StyleTransfer)
"""

from .registry import ModelSpec, get_spec, list_models, register_model
from .recipe import FinetuneRecipe, Recipe
from .base import ImageModel
from .classifier import ImageClassifier
from .data import FashionMNISTDataModule, SyntheticRegressionDataModule
from .data.preprocess import PhotoSteps, Preprocess
from .checkpoint import CheckpointError, save_checkpoint
from .pretrained import WeightsInfo, WeightsNotFoundError, get_weights, load
from .factory import create_model
from .finetuning import FineTuner, compare_with_scratch, finetune
from .features import FeatureExtractor
from .style import StyleTransfer, stylize
from . import models  # noqa: F401  (registers every model)

__version__ = "0.1.0"

__all__ = [
    "load",
    "get_weights",
    "WeightsInfo",
    "save_checkpoint",
    "CheckpointError",
    "WeightsNotFoundError",
    "Preprocess",
    "PhotoSteps",
    "FeatureExtractor",
    "StyleTransfer",
    "stylize",
    "FineTuner",
    "FinetuneRecipe",
    "finetune",
    "compare_with_scratch",
    "ImageModel",
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
