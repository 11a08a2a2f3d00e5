"""Linear networks and the multilayer perceptron (chapters 3-5 of the book).

- ``linreg``: linear regression (ch. 3.2-3.5), trained on the book's synthetic data.
- ``softmax``: softmax regression (ch. 4.1-4.5), a single linear layer on flattened pixels.
- ``mlp``: the multilayer perceptron (ch. 5.1-5.2), one hidden layer of 256 ReLU units; dropout
  (ch. 5.6) and weight decay (ch. 3.7) as options.
"""

from __future__ import annotations

from typing import Any, Sequence

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from ..classifier import ImageClassifier
from ..data.synthetic import SyntheticRegressionDataModule
from ..recipe import Recipe
from ..registry import register_model

__all__ = ["LinearRegression", "SoftmaxRegression", "MLP"]


class LinearRegression(L.LightningModule):
    """y = Xw + b, trained with squared loss and minibatch SGD (the book's ``LinearRegressionConcise``).

    Not an image classifier, so it stands alone; it keeps the zoo's ``backbone``/``head`` naming.
    """

    task = "regression"
    monitor, monitor_mode = "val/loss", "min"  # the best epoch has the lowest validation loss
    exportable = False  # no checkpoint folder: it trains in seconds on data made on the spot

    def __init__(self, *, num_inputs: int = 2, recipe: Recipe | dict[str, Any] | None = None) -> None:
        super().__init__()
        self.recipe = Recipe.coerce(recipe)
        self.save_hyperparameters()
        self.hparams["recipe"] = self.recipe.to_dict()
        self.backbone = nn.Identity()
        self.head = nn.Linear(num_inputs, 1)
        # The book: w ~ N(0, 0.01^2), b = 0.
        nn.init.normal_(self.head.weight, 0.0, 0.01)
        nn.init.zeros_(self.head.bias)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(X))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        X, y = batch
        loss = F.mse_loss(self(X), y)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        X, y = batch
        self.log("val/loss", F.mse_loss(self(X), y), prog_bar=True)

    test_step = validation_step

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.recipe.lr, momentum=self.recipe.momentum)

    def datamodule(self, *, seed: int = 0, **_: Any) -> L.LightningDataModule:
        """The book's synthetic data (w = [2, -3.4], b = 4.2); Fashion-MNIST options do not apply."""
        return SyntheticRegressionDataModule(batch_size=self.recipe.batch_size, seed=seed)


class SoftmaxRegression(ImageClassifier):
    """One fully connected layer from the flattened pixels to the class scores (ch. 4.5)."""

    fixed_input_size = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.backbone = nn.Flatten()
        self.head = nn.Linear(self.in_chans * self.input_size**2, self.num_classes)


class MLP(ImageClassifier):
    """Flatten -> [Linear -> ReLU -> Dropout] per hidden layer -> Linear (ch. 5.2, 5.6).

    Args:
        hidden: sizes of the hidden layers; the book's MLP has one of 256, its dropout MLP two.
        dropout: dropout probability after each hidden layer (one value for all, or one per layer);
            the book's dropout MLP uses (0.2, 0.5).
    """

    fixed_input_size = True

    def __init__(self, *, hidden: Sequence[int] = (256,), dropout: float | Sequence[float] = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        hidden = list(hidden)
        drops = [float(dropout)] * len(hidden) if isinstance(dropout, (int, float)) else list(dropout)
        if len(drops) != len(hidden):
            raise ValueError(f"dropout has {len(drops)} values for {len(hidden)} hidden layers")
        layers: list[nn.Module] = [nn.Flatten()]
        width = self.in_chans * self.input_size**2
        for h, p in zip(hidden, drops):
            layers += [nn.Linear(width, h), nn.ReLU()]
            if p > 0:
                layers.append(nn.Dropout(p))
            width = h
        self.backbone = nn.Sequential(*layers)
        self.head = nn.Linear(width, self.num_classes)


# The book's hyperparameters (ch. 3.5).
@register_model(chapter="3.5", recipe=Recipe(optimizer="sgd", lr=0.03, momentum=0.0, batch_size=32, epochs=3), book_params=3)
def linreg(**kwargs: Any) -> LinearRegression:
    """Linear regression on the book's synthetic data (w = [2, -3.4], b = 4.2)."""
    return LinearRegression(**kwargs)


# AdamW with a cosine schedule on normalised pixels: the better of two recipes on the validation
# split (docs/studies/recipes.md).
@register_model(chapter="4.5", recipe=Recipe(optimizer="adamw", lr=2e-3, weight_decay=1e-4, schedule="cosine", batch_size=256, epochs=20),
                book_params=7_850, book_top1=0.834)  # fmt: skip
def softmax(**kwargs: Any) -> SoftmaxRegression:
    """Softmax regression: one linear layer on the 784 pixels."""
    return SoftmaxRegression(**kwargs)


# SGD with momentum, cosine, weight decay and label smoothing: above AdamW on the validation split
# (docs/studies/recipes.md).
@register_model(chapter="5.2", recipe=Recipe(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4, label_smoothing=0.1,
                                            schedule="cosine", batch_size=256, epochs=30),
                book_params=203_530, book_top1=0.844)  # fmt: skip
def mlp(**kwargs: Any) -> MLP:
    """Multilayer perceptron, one hidden layer of 256 ReLU units (dropout/weight decay optional)."""
    return MLP(**kwargs)
