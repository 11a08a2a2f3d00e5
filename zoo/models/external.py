"""Any timm image model as a zoo classifier, so a fine-tune of it saves, loads and predicts like
the book's networks. Not one of the book's networks: registered as external (not in ``zoo list``)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..classifier import ImageClassifier
from ..recipe import Recipe
from ..registry import build_model, register_model

__all__ = ["TimmClassifier", "timm_source"]


class TimmClassifier(ImageClassifier):
    """``backbone``: the timm model without its classifier (pooled features); ``head``: a linear
    layer on them. Built without weights: a fine-tune loads them (see :func:`timm_source`)."""

    default_input_size = 224  # timm's ImageNet models; timm_source takes the model's own

    def __init__(self, *, timm_name: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        import timm

        self.backbone = timm.create_model(timm_name, pretrained=False, num_classes=0, in_chans=self.in_chans)
        self.head = nn.Linear(self.backbone.num_features, self.num_classes)

    # timm's own feature contract, with the zoo head after its pooling.
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(self._check_input(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.backbone.forward_head(x, pre_logits=True)
        return x if pre_logits else self.head(x)


@register_model(chapter="-", recipe=Recipe(optimizer="adamw", lr=1e-3), external=True)
def timm(**kwargs: Any) -> TimmClassifier:
    """A timm model (timm_name=...) with a zoo head; the source of timm fine-tunes."""
    return TimmClassifier(**kwargs)


def timm_source(name: str, *, in_chans: int | None = None, input_size: int | None = None, weights: str | None = None) -> TimmClassifier:
    """A TimmClassifier carrying timm's pretrained weights for ``name``: from ``weights`` (a local
    .safetensors/.pth file, for offline machines) or timm's own cache/Hub download. timm adapts
    the first convolution when ``in_chans`` differs from the weights' (RGB -> gray sums them)."""
    import timm as timm_lib

    overlay = {"file": str(weights)} if weights else None
    try:
        pretrained = timm_lib.create_model(name, pretrained=True, num_classes=0, in_chans=in_chans or 3, pretrained_cfg_overlay=overlay)
    except Exception as err:  # unknown name, no network, no cached weights
        raise ValueError(
            f"timm could not build {name!r} with pretrained weights ({type(err).__name__}: {err}); offline, pass the "
            "weights file with --timm-weights / weights=PATH"
        ) from None
    cfg = pretrained.pretrained_cfg
    chans = in_chans or 3
    mean, std = list(cfg.get("mean", (0.5,) * 3)), list(cfg.get("std", (0.5,) * 3))
    if chans == 1:
        mean, std = [sum(mean) / len(mean)], [sum(std) / len(std)]
    model = build_model("timm", timm_name=name, in_chans=chans, input_size=input_size or int(cfg["input_size"][-1]), mean=mean, std=std)
    model.backbone.load_state_dict(pretrained.state_dict(), strict=True)
    model.checkpoint = {"path": f"timm:{name}" + (f" ({weights})" if weights else ""), "sha256": None, "metrics": {}}
    return model
