"""The book's own layer definitions (d2l.ai, PyTorch edition), transcribed with its Lazy modules,
kept independent of zoo/ so the parameter-count test compares the zoo against the book and not
against itself. Each function returns (net, input side)."""

from __future__ import annotations

import torch
from torch import nn


def materialise(net: nn.Module, side: int) -> nn.Module:
    net.eval()
    with torch.no_grad():
        net(torch.zeros(2, 1, side, side))
    return net


def softmax():
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(10)), 28


def mlp():
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(256), nn.ReLU(), nn.LazyLinear(10)), 28


def lenet():
    return nn.Sequential(
        nn.LazyConv2d(6, kernel_size=5, padding=2), nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.LazyConv2d(16, kernel_size=5), nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Flatten(),
        nn.LazyLinear(120), nn.Sigmoid(),
        nn.LazyLinear(84), nn.Sigmoid(),
        nn.LazyLinear(10),
    ), 28  # fmt: skip


def lenet_bn():
    return nn.Sequential(
        nn.LazyConv2d(6, kernel_size=5), nn.LazyBatchNorm2d(), nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.LazyConv2d(16, kernel_size=5), nn.LazyBatchNorm2d(), nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2), nn.Flatten(),
        nn.LazyLinear(120), nn.LazyBatchNorm1d(), nn.Sigmoid(),
        nn.LazyLinear(84), nn.LazyBatchNorm1d(), nn.Sigmoid(),
        nn.LazyLinear(10),
    ), 28  # fmt: skip


def alexnet():
    return nn.Sequential(
        nn.LazyConv2d(96, kernel_size=11, stride=4, padding=1), nn.ReLU(), nn.MaxPool2d(kernel_size=3, stride=2),
        nn.LazyConv2d(256, kernel_size=5, padding=2), nn.ReLU(), nn.MaxPool2d(kernel_size=3, stride=2),
        nn.LazyConv2d(384, kernel_size=3, padding=1), nn.ReLU(),
        nn.LazyConv2d(384, kernel_size=3, padding=1), nn.ReLU(),
        nn.LazyConv2d(256, kernel_size=3, padding=1), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2), nn.Flatten(),
        nn.LazyLinear(4096), nn.ReLU(), nn.Dropout(p=0.5),
        nn.LazyLinear(4096), nn.ReLU(), nn.Dropout(p=0.5),
        nn.LazyLinear(10),
    ), 224  # fmt: skip


def _vgg_block(num_convs, out_channels):
    layers = []
    for _ in range(num_convs):
        layers.append(nn.LazyConv2d(out_channels, kernel_size=3, padding=1))
        layers.append(nn.ReLU())
    layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*layers)


def vgg11():
    arch = ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512))
    ratio = 4  # "small_conv_arch = [(pair[0], pair[1] // ratio) for pair in conv_arch]"
    conv_blks = [_vgg_block(n, c // ratio) for n, c in arch]
    return nn.Sequential(
        *conv_blks, nn.Flatten(),
        nn.LazyLinear(4096), nn.ReLU(), nn.Dropout(0.5),
        nn.LazyLinear(4096), nn.ReLU(), nn.Dropout(0.5),
        nn.LazyLinear(10),
    ), 224  # fmt: skip


def _nin_block(out_channels, kernel_size, strides, padding):
    return nn.Sequential(
        nn.LazyConv2d(out_channels, kernel_size, strides, padding), nn.ReLU(),
        nn.LazyConv2d(out_channels, kernel_size=1), nn.ReLU(),
        nn.LazyConv2d(out_channels, kernel_size=1), nn.ReLU(),
    )  # fmt: skip


def nin():
    return nn.Sequential(
        _nin_block(96, kernel_size=11, strides=4, padding=0), nn.MaxPool2d(3, stride=2),
        _nin_block(256, kernel_size=5, strides=1, padding=2), nn.MaxPool2d(3, stride=2),
        _nin_block(384, kernel_size=3, strides=1, padding=1), nn.MaxPool2d(3, stride=2),
        nn.Dropout(0.5),
        _nin_block(10, kernel_size=3, strides=1, padding=1),
        nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(),
    ), 224  # fmt: skip


class _Inception(nn.Module):
    def __init__(self, c1, c2, c3, c4):
        super().__init__()
        self.b1_1 = nn.LazyConv2d(c1, kernel_size=1)
        self.b2_1 = nn.LazyConv2d(c2[0], kernel_size=1)
        self.b2_2 = nn.LazyConv2d(c2[1], kernel_size=3, padding=1)
        self.b3_1 = nn.LazyConv2d(c3[0], kernel_size=1)
        self.b3_2 = nn.LazyConv2d(c3[1], kernel_size=5, padding=2)
        self.b4_1 = nn.MaxPool2d(kernel_size=3, stride=1, padding=1)
        self.b4_2 = nn.LazyConv2d(c4, kernel_size=1)

    def forward(self, x):
        b1 = torch.relu(self.b1_1(x))
        b2 = torch.relu(self.b2_2(torch.relu(self.b2_1(x))))
        b3 = torch.relu(self.b3_2(torch.relu(self.b3_1(x))))
        b4 = torch.relu(self.b4_2(self.b4_1(x)))
        return torch.cat((b1, b2, b3, b4), dim=1)


def googlenet():
    b1 = nn.Sequential(nn.LazyConv2d(64, kernel_size=7, stride=2, padding=3), nn.ReLU(), nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    b2 = nn.Sequential(nn.LazyConv2d(64, kernel_size=1), nn.ReLU(), nn.LazyConv2d(192, kernel_size=3, padding=1), nn.ReLU(),
                       nn.MaxPool2d(kernel_size=3, stride=2, padding=1))  # fmt: skip
    b3 = nn.Sequential(_Inception(64, (96, 128), (16, 32), 32), _Inception(128, (128, 192), (32, 96), 64),
                       nn.MaxPool2d(kernel_size=3, stride=2, padding=1))  # fmt: skip
    b4 = nn.Sequential(_Inception(192, (96, 208), (16, 48), 64), _Inception(160, (112, 224), (24, 64), 64),
                       _Inception(128, (128, 256), (24, 64), 64), _Inception(112, (144, 288), (32, 64), 64),
                       _Inception(256, (160, 320), (32, 128), 128), nn.MaxPool2d(kernel_size=3, stride=2, padding=1))  # fmt: skip
    b5 = nn.Sequential(_Inception(256, (160, 320), (32, 128), 128), _Inception(384, (192, 384), (48, 128), 128),
                       nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten())  # fmt: skip
    return nn.Sequential(b1, b2, b3, b4, b5, nn.LazyLinear(10)), 96


class _Residual(nn.Module):
    def __init__(self, num_channels, use_1x1conv=False, strides=1):
        super().__init__()
        self.conv1 = nn.LazyConv2d(num_channels, kernel_size=3, padding=1, stride=strides)
        self.conv2 = nn.LazyConv2d(num_channels, kernel_size=3, padding=1)
        self.conv3 = nn.LazyConv2d(num_channels, kernel_size=1, stride=strides) if use_1x1conv else None
        self.bn1 = nn.LazyBatchNorm2d()
        self.bn2 = nn.LazyBatchNorm2d()

    def forward(self, X):
        Y = torch.relu(self.bn1(self.conv1(X)))
        Y = self.bn2(self.conv2(Y))
        if self.conv3:
            X = self.conv3(X)
        return torch.relu(Y + X)


def resnet18():
    def block(num_residuals, num_channels, first_block=False):
        blk = []
        for i in range(num_residuals):
            if i == 0 and not first_block:
                blk.append(_Residual(num_channels, use_1x1conv=True, strides=2))
            else:
                blk.append(_Residual(num_channels))
        return nn.Sequential(*blk)

    b1 = nn.Sequential(nn.LazyConv2d(64, kernel_size=7, stride=2, padding=3), nn.LazyBatchNorm2d(), nn.ReLU(),
                       nn.MaxPool2d(kernel_size=3, stride=2, padding=1))  # fmt: skip
    arch = ((2, 64), (2, 128), (2, 256), (2, 512))
    net = nn.Sequential(b1)
    for i, b in enumerate(arch):
        net.add_module(f"b{i + 2}", block(*b, first_block=(i == 0)))
    net.add_module("last", nn.Sequential(nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.LazyLinear(10)))
    return net, 96


def _conv_block(num_channels):
    return nn.Sequential(nn.LazyBatchNorm2d(), nn.ReLU(), nn.LazyConv2d(num_channels, kernel_size=3, padding=1))


class _DenseBlock(nn.Module):
    def __init__(self, num_convs, num_channels):
        super().__init__()
        self.net = nn.Sequential(*[_conv_block(num_channels) for _ in range(num_convs)])

    def forward(self, X):
        for blk in self.net:
            X = torch.cat((X, blk(X)), dim=1)
        return X


def _transition_block(num_channels):
    return nn.Sequential(nn.LazyBatchNorm2d(), nn.ReLU(), nn.LazyConv2d(num_channels, kernel_size=1), nn.AvgPool2d(kernel_size=2, stride=2))


def densenet():
    num_channels, growth_rate, arch = 64, 32, (4, 4, 4, 4)
    b1 = nn.Sequential(nn.LazyConv2d(64, kernel_size=7, stride=2, padding=3), nn.LazyBatchNorm2d(), nn.ReLU(),
                       nn.MaxPool2d(kernel_size=3, stride=2, padding=1))  # fmt: skip
    net = nn.Sequential(b1)
    for i, num_convs in enumerate(arch):
        net.add_module(f"dense_blk{i + 1}", _DenseBlock(num_convs, growth_rate))
        num_channels += num_convs * growth_rate
        if i != len(arch) - 1:
            num_channels //= 2
            net.add_module(f"tran_blk{i + 1}", _transition_block(num_channels))
    net.add_module("last", nn.Sequential(nn.LazyBatchNorm2d(), nn.ReLU(), nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.LazyLinear(10)))
    return net, 96


BOOK_NETS = {
    "softmax": softmax, "mlp": mlp, "lenet": lenet, "lenet_bn": lenet_bn, "alexnet": alexnet, "vgg11": vgg11,
    "nin": nin, "googlenet": googlenet, "resnet18": resnet18, "densenet": densenet,
}  # fmt: skip
