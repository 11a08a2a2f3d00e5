"""The feature contract over every classifier: forward_features, forward_head(pre_logits=True) and
features_only, as timm's."""

from __future__ import annotations

import pytest
import torch

import zoo
from zoo.data.fashion_mnist import load_fashion_mnist
from zoo.features import FeatureExtractor

CLASSIFIERS = [n for n in zoo.list_models() if zoo.get_spec(n).task == "classification"]
#: What the book's layers give at the registered input size: the last feature map before pooling
#: (C, H, W), or the last hidden layer (D,); the embedding width; the stage channels.
EXPECTED = {
    "softmax": ((784,), 784, [784]),
    "mlp": ((256,), 256, [256]),
    "lenet": ((16, 5, 5), 84, [6, 6, 16, 16]),  # conv 28x28, pool 14x14, conv 10x10, pool 5x5
    "lenet_bn": ((16, 4, 4), 84, [6, 6, 16, 16]),
    "alexnet": ((256, 5, 5), 4096, [96, 256, 256, 256]),  # 54, 26, 12, 5
    "vgg11": ((128, 7, 7), 4096, [16, 32, 64, 128, 128, 128]),  # the book's VGG-11 at a quarter of the width
    "nin": ((384, 5, 5), 384, [96, 256, 384, 384]),
    "googlenet": ((1024, 3, 3), 1024, [64, 192, 480, 832, 1024]),  # 48, 24, 12, 6, 3
    "resnet18": ((512, 3, 3), 512, [64, 64, 128, 256, 512]),
    "densenet": ((248, 3, 3), 248, [64, 96, 112, 120, 248]),  # a transition's 1x1 conv ends each resolution
}


def test_every_classifier_is_covered():
    assert sorted(EXPECTED) == sorted(CLASSIFIERS)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_features_head_and_stages_compose_to_forward(name):
    torch.manual_seed(0)
    model = zoo.create_model(name).eval()
    x = torch.randn(2, model.in_chans, model.input_size, model.input_size)
    feature_shape, embed, stage_channels = EXPECTED[name]
    with torch.no_grad():
        features = model.forward_features(x)
        embedding = model.forward_head(features, pre_logits=True)
        logits = model.forward_head(features)
        extractor = FeatureExtractor(model)
        stages = extractor(x)
        reference = model(x)
    assert tuple(features.shape) == (2, *feature_shape)
    assert tuple(embedding.shape) == (2, embed)
    torch.testing.assert_close(logits, reference)
    assert [s.shape[1] for s in stages] == stage_channels == extractor.channels()
    torch.testing.assert_close(stages[-1], features)


def test_features_only_from_zoo_load_on_real_images():
    data = load_fashion_mnist()
    net = zoo.load("lenet_bn", features_only=True)
    assert isinstance(net, FeatureExtractor) and not net.training
    x = net.preprocess(data["test_images"][:8, None])  # (N, 1, 28, 28) uint8
    with torch.no_grad():
        stages = net(x)
    assert [tuple(s.shape[1:]) for s in stages] == [(6, 24, 24), (6, 12, 12), (16, 8, 8), (16, 4, 4)]
    assert net.reductions() == [1.17, 2.33, 3.5, 7.0]
    full = zoo.load("lenet_bn")
    with torch.no_grad():  # the embedding of real images separates them: the head reads it
        torch.testing.assert_close(full.forward_head(stages[-1]), full(x))
    # the wrapped model was probed in eval mode: BatchNorm's running statistics did not move
    torch.testing.assert_close(net.model.state_dict()["backbone.1.running_mean"], full.state_dict()["backbone.1.running_mean"])
