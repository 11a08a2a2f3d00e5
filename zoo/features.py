"""Stage outputs of a classifier, like timm's ``features_only=True``: ``zoo.load(name, features_only=True)``.

A stage is a run of layers at one spatial resolution; its output is that of its last layer. The
stages are found by one probe forward pass at the model's input size, so no architecture has to
list them by hand, and they are checkable against the book: LeNet's are its 28x28 convolution,
the 14x14 pooling, the 10x10 convolution and the 5x5 pooling.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["FeatureExtractor"]


class FeatureExtractor(nn.Module):
    """Wraps a zoo classifier; ``forward(x)`` returns the list of its stage outputs, the last being
    ``model.forward_features(x)``. ``feature_info`` says, per stage, the index of its last layer
    in ``model.feature_split()[0]``, its channels and its reduction (input side / map side). A
    network without convolutions (softmax, mlp) has one stage: its last hidden layer (softmax: the
    flattened image), with reduction None. The model's weights are shared, not copied.
    """

    def __init__(self, model: Any) -> None:
        super().__init__()
        if not hasattr(model, "feature_split"):
            raise ValueError(f"{type(model).__name__} has no feature stages (features_only is for the zoo's classifiers)")
        self.model = model
        self.layers = nn.ModuleList(model.feature_split()[0])
        self.feature_info = self._probe()
        self._ends = {info["index"] for info in self.feature_info}
        for attr in ("preprocess", "label_names", "input_size", "in_chans", "mean", "std"):
            if hasattr(model, attr):
                setattr(self, attr, getattr(model, attr))

    @torch.no_grad()
    def _probe(self) -> list[dict[str, Any]]:
        model = self.model
        was_training = model.training
        model.eval()  # a probe in training mode would move BatchNorm's running statistics
        try:
            x = torch.zeros(1, model.in_chans, model.input_size, model.input_size, dtype=next(model.parameters()).dtype,
                            device=next(model.parameters()).device)  # fmt: skip
            shapes = []
            for layer in self.layers:
                x = layer(x)
                shapes.append(tuple(x.shape[1:]))
        finally:
            model.train(was_training)
        if not shapes or len(shapes[-1]) != 3:  # no feature map: the last hidden layer is the one stage
            return [{"index": len(shapes) - 1, "num_chs": shapes[-1][0] if shapes else model.in_chans * model.input_size ** 2,
                     "reduction": None}]  # fmt: skip
        info = []
        for i, shape in enumerate(shapes):
            last_at_this_size = i + 1 == len(shapes) or shapes[i + 1][1:] != shape[1:]
            if len(shape) == 3 and last_at_this_size:
                info.append({"index": i, "num_chs": shape[0], "reduction": round(model.input_size / shape[1], 2)})
        return info

    def channels(self) -> list[int]:
        """Channels of each stage output (timm: ``feature_info.channels()``)."""
        return [info["num_chs"] for info in self.feature_info]

    def reductions(self) -> list[float | None]:
        """Input side / map side of each stage output."""
        return [info["reduction"] for info in self.feature_info]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.model._check_input(x)
        outputs = []
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i in self._ends:
                outputs.append(x)
        return outputs
