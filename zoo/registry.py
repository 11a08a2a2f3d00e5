"""Model registry: names -> builders, with each model's metadata and training recipe kept as data.

The floor of the package: it imports nothing of zoo. Modelled on timm's registry and
``pretrained_cfg``: what a model needs besides its weights (the chapter it comes from, the book's
numbers, the recipe it trains with) lives in one :class:`ModelSpec` beside the builder, not in
constants scattered over scripts. Facts of the architecture itself (its input size, its task)
are read off the class the builder returns, so each is written once.
"""

from __future__ import annotations

import difflib
import fnmatch
import typing
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["ModelSpec", "register_model", "list_models", "get_spec", "build_model"]


@dataclass(frozen=True)
class ModelSpec:
    """Everything the zoo knows about a registered model besides its weights."""

    name: str
    builder: Callable[..., Any]
    model_class: type  # what the builder returns (its return annotation)
    chapter: str  # where the network is taught in the book
    recipe: Any  # the default training recipe (a zoo.recipe.Recipe)
    book_params: int | None = None  # parameter count of the book's layers at 1 channel, 10 classes
    book_top1: float | None = None  # the book's final-epoch Fashion-MNIST test accuracy
    external: bool = False  # an adapter, not one of the book's networks: left out of list_models()
    description: str = ""
    presets: dict[str, Any] = field(default_factory=dict)  # other named recipes ("speedrun")

    def get_recipe(self, name: str | None = None) -> Any:
        """The registered recipe, or the named preset (``"default"`` is the registered recipe)."""
        if name in (None, "default"):
            return self.recipe
        if name not in self.presets:
            known = ", ".join(["default", *self.presets])
            raise KeyError(f"{self.name} has no recipe preset {name!r}; it has: {known}")
        return self.presets[name]

    @property
    def input_size(self) -> int | None:
        """The side the book resizes Fashion-MNIST to for this network (None: not an image model)."""
        return getattr(self.model_class, "default_input_size", None)

    @property
    def task(self) -> str:
        """"classification", "detection" or "regression": the model class's own word for it."""
        return self.model_class.task


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    *,
    chapter: str,
    recipe: Any,
    book_params: int | None = None,
    book_top1: float | None = None,
    external: bool = False,
    presets: dict[str, Any] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register a builder function under its own name (``def lenet(**kw) -> LeNet``
    registers "lenet"). The builder must annotate the class it returns. ``presets`` names other
    recipes for the same network (``zoo train resnet18 --recipe speedrun``)."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        name = fn.__name__
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        model_class = typing.get_type_hints(fn).get("return")
        if not isinstance(model_class, type):
            raise TypeError(f"builder {name!r} must annotate the class it returns (def {name}(**kwargs) -> SomeModel)")
        doc = (fn.__doc__ or "").strip().splitlines()
        _REGISTRY[name] = ModelSpec(
            name=name,
            builder=fn,
            model_class=model_class,
            chapter=chapter,
            recipe=recipe,
            book_params=book_params,
            book_top1=book_top1,
            external=external,
            description=doc[0] if doc else "",
            presets=dict(presets or {}),
        )
        return fn

    return decorate


def list_models(pattern: str = "*", *, external: bool = False) -> list[str]:
    """Registered model names matching an fnmatch pattern (``"res*"``), in the book's order.
    ``external=True`` adds the adapters that are not the book's networks (``timm``)."""
    return [n for n, s in _REGISTRY.items() if fnmatch.fnmatch(n, pattern) and (external or not s.external)]


def get_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of a registered model; unknown names get a did-you-mean error."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise KeyError(
            f"unknown model {name!r}.{hint} Registered models: {', '.join(list_models())}"
        ) from None


def build_model(name: str, **kwargs: Any) -> Any:
    """A registered model with fresh weights, its recipe and input size from the registry.

    ``kwargs`` go to the model's constructor. A ``recipe`` given as a dict changes only the fields
    it names of the model's own recipe; a whole Recipe replaces it; a string names one of its
    presets (:meth:`ModelSpec.get_recipe`). The model remembers its name
    and constructor arguments (``model_name``, ``zoo_kwargs``): they rebuild this exact
    architecture, and are what a checkpoint's config.json holds.
    """
    spec = get_spec(name)
    recipe = kwargs.get("recipe")
    kwargs["recipe"] = spec.get_recipe(recipe) if isinstance(recipe, str) else spec.recipe.layered(recipe)
    if spec.input_size is not None:
        kwargs.setdefault("input_size", spec.input_size)
    size = kwargs.get("input_size")
    if spec.input_size is None or size == spec.input_size:
        model = spec.builder(**kwargs)
    else:
        # A size the network cannot take fails here, with its name, rather than deep in a conv (in
        # the builder, which sizes a linear layer by a forward pass, or on the first real batch).
        try:
            model = spec.builder(**kwargs)
            _probe_input_size(model, size)
        except RuntimeError as err:
            raise ValueError(f"{name} cannot take {size}x{size} inputs (its downsampling needs larger images; "
                             f"the book uses {spec.input_size}): {str(err).splitlines()[0]}") from None  # fmt: skip
    model.model_name = name
    model.zoo_kwargs = _jsonable(kwargs, f"create_model({name!r}, ...)")
    return model


def _probe_input_size(model: Any, size: int) -> None:
    """One forward pass of a blank image at ``size`` (in eval mode, so no statistics change)."""
    import torch

    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, model.in_chans, size, size))
    finally:
        model.train(was_training)


def _jsonable(value: Any, where: str) -> Any:
    if hasattr(value, "to_dict"):  # a Recipe
        return value.to_dict()
    if isinstance(value, dict):
        return {str(k): _jsonable(v, where) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, where) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"{where}: constructor arguments must be plain JSON values (numbers, strings, lists), got {type(value).__name__}")
