"""Every registered network: shapes, gradients, the book's parameter counts, and the overrides."""

from __future__ import annotations

import pytest
import torch

import zoo
from zoo.classifier import ImageClassifier

from book_nets import BOOK_NETS, materialise

CLASSIFIERS = [n for n in zoo.list_models() if zoo.get_spec(n).task == "classification"]
BOOK_ORDER = ["linreg", "softmax", "mlp", "lenet", "lenet_bn", "alexnet", "vgg11", "nin", "googlenet", "resnet18", "densenet", "tiny_ssd", "ssd_fmnist", "faster_rcnn", "mask_rcnn", "fcn"]


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_registry_holds_the_books_networks_in_book_order():
    assert zoo.list_models() == BOOK_ORDER
    assert zoo.list_models("lenet*") == ["lenet", "lenet_bn"]
    with pytest.raises(KeyError, match="Did you mean 'resnet18'"):
        zoo.get_spec("resnet19")


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_parameter_count_matches_the_books_layers(name):
    book_net, side = BOOK_NETS[name]()
    expected = n_params(materialise(book_net, side))
    model = zoo.create_model(name)
    assert n_params(model) == expected
    assert zoo.get_spec(name).book_params == expected  # the registry's data agrees with the book
    assert zoo.get_spec(name).input_size == side == model.input_size


def test_alexnet_count_is_the_documented_one():
    assert n_params(zoo.create_model("alexnet")) == 46_764_746


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_forward_and_backward_at_default_size(name):
    torch.manual_seed(0)
    model = zoo.create_model(name)
    assert isinstance(model, ImageClassifier)
    assert hasattr(model, "backbone") and hasattr(model, "head")
    model.train()
    x = torch.randn(2, 1, model.input_size, model.input_size)
    logits = model(x)
    assert logits.shape == (2, 10)
    torch.nn.functional.cross_entropy(logits, torch.tensor([3, 7])).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}.{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}.{pname} has a non-finite gradient"
    assert any(p.grad.abs().sum() > 0 for p in model.head.parameters())


@pytest.mark.parametrize("name", ["softmax", "mlp", "lenet", "lenet_bn", "nin", "googlenet", "resnet18", "densenet"])
def test_num_classes_and_in_chans_overrides(name):
    model = zoo.create_model(name, num_classes=3, in_chans=3).eval()
    x = torch.randn(2, 3, model.input_size, model.input_size)
    assert model(x).shape == (2, 3)
    # Only the first layer and the head change size with the overrides.
    assert model.hparams["num_classes"] == 3 and model.hparams["in_chans"] == 3


def test_overrides_on_the_224_networks_keep_their_body():
    base = zoo.create_model("alexnet")
    other = zoo.create_model("alexnet", num_classes=5, in_chans=3)
    # First conv: 2 more input channels of 11x11x96; head: 5 fewer outputs of 4096 + 1.
    assert n_params(other) - n_params(base) == 2 * 11 * 11 * 96 - 5 * 4097
    assert zoo.create_model("vgg11", num_classes=4).eval()(torch.randn(1, 1, 224, 224)).shape == (1, 4)


def test_vgg11_full_width_option_matches_torchvision_features():
    import torchvision

    full = zoo.create_model("vgg11", width_ratio=1, in_chans=3)
    conv = sum(p.numel() for m in full.modules() if isinstance(m, torch.nn.Conv2d) for p in m.parameters())
    assert conv == n_params(torchvision.models.vgg11().features)  # 9,220,480


def test_mlp_dropout_and_weight_decay_options():
    model = zoo.create_model("mlp", hidden=(256, 256), dropout=(0.2, 0.5), recipe={"weight_decay": 1e-3})
    drops = [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert drops == [0.2, 0.5]
    groups = model.parameter_groups()
    decayed = {id(p) for p in groups[0]["params"]}
    assert groups[0]["weight_decay"] == 1e-3 and groups[1]["weight_decay"] == 0.0
    # Weights are decayed, biases never.
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            assert id(module.weight) in decayed and id(module.bias) not in decayed


def test_batch_norm_parameters_are_not_decayed():
    model = zoo.create_model("lenet_bn", recipe={"weight_decay": 5e-4})
    no_decay = {id(p) for p in model.parameter_groups()[1]["params"]}
    for module in model.modules():
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            assert id(module.weight) in no_decay and id(module.bias) in no_decay


def test_cnns_use_the_books_xavier_init():
    torch.manual_seed(0)
    conv = zoo.create_model("lenet").backbone[0]
    fan_in, fan_out = 1 * 25, 6 * 25
    bound = (6 / (fan_in + fan_out)) ** 0.5
    assert conv.weight.abs().max() <= bound
    # PyTorch's default (kaiming-uniform with a=sqrt(5)) would give bound 1/sqrt(25) = 0.2 here.
    assert conv.weight.abs().max() > 0.9 * bound and bound < 0.2


def test_bad_inputs_get_clear_errors():
    model = zoo.create_model("lenet")
    with pytest.raises(ValueError, match="built for 1-channel images, got 3 channels"):
        model(torch.zeros(1, 3, 28, 28))
    with pytest.raises(ValueError, match=r"needs 28x28 inputs.*got 32x32"):
        model(torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match="expects a batch of images"):
        model(torch.zeros(28, 28))
    with pytest.raises(ValueError, match="num_classes must be an integer"):
        zoo.create_model("resnet18", num_classes=0)
    with pytest.raises(ValueError, match="recipe.optimizer must be one of"):
        zoo.create_model("mlp", recipe={"optimizer": "adam"})
    with pytest.raises(ValueError, match="unknown recipe field"):
        zoo.create_model("mlp", recipe={"learning_rate": 0.1})


def test_predict_step_returns_probabilities():
    model = zoo.create_model("softmax").eval()
    probs = model.predict_step((torch.randn(4, 1, 28, 28), torch.zeros(4)), 0)
    assert probs.shape == (4, 10)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(4))
    assert model.label_names[0] == "T-shirt/top"


def test_hyperparameters_rebuild_the_model(tmp_path):
    model = zoo.create_model("mlp", hidden=(64,), num_classes=4)
    rebuilt = type(model)(**model.hparams)
    assert [p.shape for p in rebuilt.parameters()] == [p.shape for p in model.parameters()]
    assert rebuilt.recipe == model.recipe
