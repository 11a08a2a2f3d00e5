"""Fit a loaded network to new data: a fresh head for new classes (the book's fine-tuning steps 2
and 3), or a first layer for 1 or 3 input channels."""

from __future__ import annotations

import logging
from typing import Any

import torch

from .checkpoint import CheckpointError, load_strict
from .registry import build_model

__all__ = ["with_new_head", "with_in_chans", "adapt_in_chans"]

log = logging.getLogger(__name__)


def adapt_in_chans(weight: torch.Tensor, old: int, new: int) -> torch.Tensor:
    """First-layer weights for ``new`` input channels from ones trained on ``old``.

    1 -> 3: each colour channel gets a third of the gray weights, so an RGB image whose channels are
    all equal to a gray image gives exactly the gray activations. 3 -> 1: the colour weights are
    summed, the same equality read backwards. Works for convolutions (O, C, kh, kw) and for linear
    layers on flattened pixels (O, C*H*W).
    """
    shape = weight.shape
    w = weight.reshape(shape[0], old, -1)
    if old == 1:
        w = w.repeat(1, new, 1) / new
    elif new == 1:
        w = w.sum(dim=1, keepdim=True)
    else:
        raise CheckpointError(f"can adapt input channels between 1 and 3 only, not {old} -> {new}")
    return w.reshape(shape[0], new, *shape[2:]) if weight.ndim == 4 else w.reshape(shape[0], -1)


def _rebuild(model: Any, **changes: Any) -> Any:
    kwargs = {**model.zoo_kwargs, **changes}
    new = build_model(model.model_name, **kwargs)
    new.checkpoint = model.checkpoint
    new.photo_steps = model.photo_steps  # same training data, same way to read photos
    return new


def with_new_head(model: Any, num_classes: int, *, label_names: list[str] | None = None) -> Any:
    """The same network with a freshly initialised head for ``num_classes``; every other weight is
    copied strictly from ``model`` (the book's fine-tuning steps 2 and 3)."""
    new = _rebuild(model, num_classes=num_classes, label_names=list(label_names) if label_names else None)
    load_strict(new, model.state_dict(), where=model.checkpoint["path"], skip_prefix="head.")
    # A warning, so it shows without any logging set-up (Python prints warnings to stderr).
    log.warning("zoo: %s head re-initialised for %d classes (checkpoint has %d); every other layer loaded from the checkpoint",
                model.model_name, num_classes, model.num_classes)  # fmt: skip
    return new


def with_in_chans(model: Any, in_chans: int) -> Any:
    """The same network for ``in_chans`` (1 or 3) input channels; see :func:`adapt_in_chans`."""
    old = model.in_chans
    mean, std = model.mean, model.std
    new = _rebuild(model, in_chans=in_chans, mean=[sum(mean) / len(mean)] * in_chans, std=[sum(std) / len(std)] * in_chans)
    state = dict(model.state_dict())
    own = new.state_dict()
    changed = [k for k in state if k in own and state[k].shape != own[k].shape]
    if not changed:
        raise CheckpointError(f"could not find the input layer of {model.model_name} to adapt to {in_chans} channels")
    first = changed[0]  # the first layer in definition order is the only one that sees the channels
    state[first] = adapt_in_chans(state[first], old, in_chans)
    load_strict(new, state, where=model.checkpoint["path"])
    return new


