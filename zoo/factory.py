"""``zoo.create_model``: a registered network, fresh or pretrained. Sits above both the registry
(fresh weights) and zoo.pretrained (trained weights), so that neither has to import the other."""

from __future__ import annotations

from typing import Any

from .pretrained import load
from .registry import build_model

__all__ = ["create_model"]


def create_model(name: str, *, pretrained: bool = False, **kwargs: Any) -> Any:
    """Build a registered model with its recipe and input size from the registry.

    ``kwargs`` go to the model's constructor (``num_classes``, ``in_chans``, ...). A ``recipe``
    dict changes only the fields it names of the model's own recipe (``recipe={"lr": 0.01}``).
    ``pretrained=True`` returns ``zoo.load(name, ...)`` instead: trained, verified weights, with only
    ``num_classes``, ``in_chans`` and ``device`` allowed as changes.
    """
    if pretrained:
        allowed = {"num_classes", "in_chans", "device"}
        if set(kwargs) - allowed:
            raise ValueError(f"with pretrained=True only {sorted(allowed)} can be changed, got {sorted(set(kwargs) - allowed)}")
        return load(name, **kwargs)
    return build_model(name, **kwargs)
