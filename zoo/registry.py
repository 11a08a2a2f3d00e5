"""Model registry: names -> builders, with each model's metadata and training recipe kept as data.

Modelled on timm's registry and ``pretrained_cfg``: what a model needs besides its weights (input
size, normalisation, the chapter it comes from, the book's numbers, the recipe it trains with) lives
in one :class:`ModelSpec` beside the builder, not in constants scattered over scripts.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["Recipe", "ModelSpec", "register_model", "list_models", "get_spec", "create_model"]

AUGMENT_PRESETS = ("none", "standard", "strong")
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("none", "cosine", "onecycle")


@dataclass(frozen=True)
class Recipe:
    """How a model is trained. Plain JSON-able values, so it travels in checkpoints and configs."""

    optimizer: str = "sgd"  # "sgd" (with momentum) or "adamw"
    lr: float = 0.1  # peak learning rate
    momentum: float = 0.9  # SGD only
    nesterov: bool = False  # SGD only
    weight_decay: float = 0.0  # applied to weights only; biases and norm parameters are never decayed
    schedule: str = "none"  # "none", "cosine" (with linear warm-up) or "onecycle"
    warmup_epochs: float = 0.0  # cosine only
    label_smoothing: float = 0.0
    batch_size: int = 256
    epochs: int = 10
    augment: str = "none"  # "none", "standard" (crop + flip) or "strong" (+ random erasing)
    precision: str = "32-true"  # any Lightning precision string, e.g. "bf16-mixed" on a GPU
    eval_batch_size: int | None = None  # validation/test batch size; None: twice batch_size
    channels_last: bool = False  # NHWC memory format (faster convolutions on GPUs with tensor cores)
    compile: bool = False  # torch.compile the model (pays off on GPUs and long runs)
    ema: float = 0.0  # decay of an exponential moving average of the weights (timm ModelEmaV3); 0: off
    mixup: float = 0.0  # timm Mixup alpha; 0: off
    cutmix: float = 0.0  # timm CutMix alpha; 0: off

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"recipe.optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"recipe.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.augment not in AUGMENT_PRESETS:
            raise ValueError(f"recipe.augment must be one of {AUGMENT_PRESETS}, got {self.augment!r}")
        if not self.lr > 0:
            raise ValueError(f"recipe.lr must be positive, got {self.lr}")
        if self.batch_size < 1 or self.epochs < 1:
            raise ValueError(
                f"recipe.batch_size and recipe.epochs must be >= 1, got {self.batch_size} and {self.epochs}"
            )
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"recipe.ema is a decay in [0, 1), got {self.ema}")
        if self.mixup < 0 or self.cutmix < 0:
            raise ValueError(f"recipe.mixup and recipe.cutmix are alphas >= 0, got {self.mixup} and {self.cutmix}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"recipe.label_smoothing must be in [0, 1), got {self.label_smoothing}")

    @classmethod
    def coerce(cls, value: "Recipe | dict[str, Any] | None", default: "Recipe | None" = None) -> "Recipe":
        """Accept a Recipe, a dict of its fields (as stored in checkpoints) or None (the default)."""
        if value is None:
            return default if default is not None else cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            known = {f.name for f in dataclasses.fields(cls)}
            unknown = sorted(set(value) - known)
            if unknown:
                raise ValueError(f"unknown recipe field(s) {unknown}; known fields: {sorted(known)}")
            return cls(**value)
        raise TypeError(f"recipe must be a Recipe, a dict or None, got {type(value).__name__}")

    def replace(self, **changes: Any) -> "Recipe":
        """A copy with some fields changed; ``None`` values are ignored (handy for CLI flags)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ModelSpec:
    """Everything the zoo knows about a registered model besides its weights."""

    name: str
    builder: Callable[..., Any]
    input_size: int  # the side the book resizes Fashion-MNIST to for this network
    chapter: str  # where the network is taught in the book
    recipe: Recipe  # default training recipe
    book_params: int | None = None  # parameter count of the book's layers at 1 channel, 10 classes
    book_top1: float | None = None  # the book's final-epoch Fashion-MNIST test accuracy
    task: str = "classification"
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    *,
    input_size: int,
    chapter: str,
    recipe: Recipe,
    book_params: int | None = None,
    book_top1: float | None = None,
    task: str = "classification",
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register a builder function under its own name (``def lenet(**kw)`` -> "lenet")."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        name = fn.__name__
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        doc = (fn.__doc__ or "").strip().splitlines()
        _REGISTRY[name] = ModelSpec(
            name=name,
            builder=fn,
            input_size=input_size,
            chapter=chapter,
            recipe=recipe,
            book_params=book_params,
            book_top1=book_top1,
            task=task,
            description=doc[0] if doc else "",
        )
        return fn

    return decorate


def _ensure_loaded() -> None:
    # Importing the models package runs every @register_model.
    from . import models  # noqa: F401


def list_models(pattern: str = "*", *, external: bool = False) -> list[str]:
    """Registered model names matching an fnmatch pattern (``"res*"``), in the book's order.
    ``external=True`` adds the adapters that are not the book's networks (``timm``)."""
    _ensure_loaded()
    return [n for n, s in _REGISTRY.items() if fnmatch.fnmatch(n, pattern) and (external or s.task != "external")]


def get_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of a registered model; unknown names get a did-you-mean error."""
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise KeyError(
            f"unknown model {name!r}.{hint} Registered models: {', '.join(_REGISTRY)}"
        ) from None


def create_model(name: str, *, pretrained: bool = False, **kwargs: Any) -> Any:
    """Build a registered model with its recipe and input size from the registry.

    ``kwargs`` go to the model's constructor (``num_classes``, ``in_chans``, ``recipe``, ...).
    ``pretrained=True`` returns ``zoo.load(name, ...)`` instead: trained, verified weights, with only
    ``num_classes``, ``in_chans`` and ``device`` allowed as changes.
    """
    if pretrained:
        allowed = {"num_classes", "in_chans", "device"}
        if set(kwargs) - allowed:
            raise ValueError(f"with pretrained=True only {sorted(allowed)} can be changed, got {sorted(set(kwargs) - allowed)}")
        from .hub import load

        return load(name, **kwargs)
    spec = get_spec(name)
    kwargs.setdefault("recipe", spec.recipe)
    if spec.task in ("classification", "detection", "external"):
        kwargs.setdefault("input_size", spec.input_size)
    model = spec.builder(**kwargs)
    # Name + arguments rebuild this exact architecture: they are what a checkpoint's config.json holds.
    model.model_name = name
    model.zoo_kwargs = _jsonable(kwargs, f"create_model({name!r}, ...)")
    return model


def _jsonable(value: Any, where: str) -> Any:
    if isinstance(value, Recipe):
        return value.to_dict()
    if isinstance(value, dict):
        return {str(k): _jsonable(v, where) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, where) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"{where}: constructor arguments must be plain JSON values (numbers, strings, lists), got {type(value).__name__}")
