"""Transposed convolution (ch. 14.10) and the bilinear kernel that initialises it (ch. 14.11).

:func:`trans_conv` is the notes' definition, written out with loops so that it can be read against
them: every input element scatters a copy of the kernel, scaled by its value, into the output.
Padding is taken off the output's borders (the reverse of a convolution's padding), and a stride
spaces the copies ``stride`` apart. ``nn.ConvTranspose2d`` computes the same (tests/test_segmentation.py).
"""

from __future__ import annotations

import torch

__all__ = ["trans_conv", "bilinear_kernel"]


def trans_conv(X: torch.Tensor, K: torch.Tensor, *, stride: int = 1, padding: int = 0) -> torch.Tensor:
    """The transposed convolution of the 2-D input ``X`` with the 2-D kernel ``K``, one channel."""
    h, w = K.shape
    Y = torch.zeros(((X.shape[0] - 1) * stride + h, (X.shape[1] - 1) * stride + w), dtype=torch.promote_types(X.dtype, K.dtype))
    for i in range(X.shape[0]):
        for j in range(X.shape[1]):
            Y[i * stride : i * stride + h, j * stride : j * stride + w] += X[i, j] * K
    if padding:
        Y = Y[padding:-padding, padding:-padding]
    return Y


def bilinear_kernel(in_channels: int, out_channels: int, kernel_size: int) -> torch.Tensor:
    """Weights (in_channels, out_channels, k, k) that make a transposed convolution of stride
    ``s`` (with ``k = 2s`` and padding ``s/2``) upsample each channel bilinearly: the notes'
    ``bilinear_kernel``. Channel ``c`` feeds only channel ``c``."""
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = (torch.arange(kernel_size).reshape(-1, 1), torch.arange(kernel_size).reshape(1, -1))
    filt = (1 - torch.abs(og[0] - center) / factor) * (1 - torch.abs(og[1] - center) / factor)
    weight = torch.zeros((in_channels, out_channels, kernel_size, kernel_size))
    weight[range(in_channels), range(out_channels), :, :] = filt
    return weight
