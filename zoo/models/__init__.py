"""One module per family, in the book's order; importing them registers every model."""

from .linear import MLP, LinearRegression, SoftmaxRegression
from .lenet import LeNet
from .alexnet import AlexNet
from .vgg import VGG
from .nin import NiN
from .googlenet import GoogLeNet
from .resnet import ResNet
from .densenet import DenseNet
from .external import TimmClassifier
from ..detection.tiny_ssd import SSDFashion, TinySSD
from ..detection.rcnn import FasterRCNN, MaskRCNN
from ..segmentation.fcn import FCN

__all__ = ["LinearRegression", "SoftmaxRegression", "MLP", "LeNet", "AlexNet", "VGG", "NiN", "GoogLeNet", "ResNet", "DenseNet", "TimmClassifier", "TinySSD", "SSDFashion", "FasterRCNN", "MaskRCNN", "FCN"]
