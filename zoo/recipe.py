"""Recipe: how a model is trained, as one small dataclass of plain JSON-able values.

A registered model's recipe is written once, in its ``register_model(recipe=...)``. Overrides
always layer on top of it: a dict (from Python, a checkpoint or the command line, whose flags are
generated from the fields below) changes only the fields it names.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from .data.augment import AUGMENT_PRESETS

__all__ = ["Recipe", "OPTIMIZERS", "SCHEDULES", "COMPILE_MODES", "AUGMENT_PRESETS", "GPU_RECIPE"]

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("none", "cosine", "onecycle")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def _field(default: Any, help: str, *, choices: tuple[str, ...] | None = None, kind: type | None = None) -> Any:
    # The help, the choices and the value's type (given where the default is None) make
    # `zoo train`'s flags: every field is reachable from the command line.
    return field(default=default, metadata={"help": help, "choices": choices, "kind": kind or type(default)})


@dataclass(frozen=True)
class Recipe:
    """How a model is trained. Plain JSON-able values, so it travels in checkpoints and configs."""

    optimizer: str = _field("sgd", "optimizer (SGD with momentum, or AdamW)", choices=OPTIMIZERS)
    lr: float = _field(0.1, "peak learning rate")
    momentum: float = _field(0.9, "SGD momentum")
    nesterov: bool = _field(False, "Nesterov momentum (SGD)")
    weight_decay: float = _field(0.0, "weight decay of the weights; biases and norm parameters never decay")
    schedule: str = _field("none", "learning-rate schedule (cosine has a linear warm-up)", choices=SCHEDULES)
    warmup_epochs: float = _field(0.0, "warm-up epochs (cosine; onecycle's rising phase)")
    label_smoothing: float = _field(0.0, "label smoothing of the cross-entropy")
    batch_size: int = _field(256, "training batch size")
    epochs: int = _field(10, "training epochs")
    augment: str = _field("none", "augmentation: standard = crop + flip, strong = + random erasing", choices=AUGMENT_PRESETS)
    precision: str = _field("32-true", "Lightning precision, e.g. 32-true, bf16-mixed, 16-mixed")
    eval_batch_size: int | None = _field(None, "validation/test batch size (default: 2x batch size)", kind=int)
    channels_last: bool = _field(False, "NHWC memory format (faster convolutions on GPUs with tensor cores)")
    compile: bool = _field(False, "torch.compile the model (pays off on GPUs and long runs)")
    compile_mode: str = _field("default", "torch.compile mode (reduce-overhead: CUDA graphs, no per-kernel launch cost)",
                               choices=COMPILE_MODES)  # fmt: skip
    static_shapes: bool = _field(False, "every batch the same shape: drop the last partial training batch, pad the "
                                 "last evaluation batch (no recompiles; CUDA graphs need it)")  # fmt: skip
    fused: bool = _field(False, "fused optimizer kernels: one launch updates every parameter (GPUs)")
    ema: float = _field(0.0, "decay of an exponential moving average of the weights (timm ModelEmaV3); 0: off")
    mixup: float = _field(0.0, "timm Mixup alpha; 0: off")
    cutmix: float = _field(0.0, "timm CutMix alpha; 0: off")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            # inf or nan in a hyperparameter trains a NaN model; stop it here, with the field's name.
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"recipe.{f.name} must be a finite number, got {value}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"recipe.optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"recipe.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.compile_mode not in COMPILE_MODES:
            raise ValueError(f"recipe.compile_mode must be one of {COMPILE_MODES}, got {self.compile_mode!r}")
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
        if self.weight_decay < 0 or self.momentum < 0 or self.warmup_epochs < 0:
            raise ValueError(f"recipe.weight_decay, momentum and warmup_epochs must be >= 0, got "
                             f"{self.weight_decay}, {self.momentum} and {self.warmup_epochs}")  # fmt: skip
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"recipe.label_smoothing must be in [0, 1), got {self.label_smoothing}")

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def layered(self, value: "Recipe | dict[str, Any] | None") -> "Recipe":
        """This recipe with ``value`` on top: None keeps it, a Recipe replaces it whole, a dict
        changes only the fields it names (``None`` is a value here: eval_batch_size=None)."""
        if value is None:
            return self
        if isinstance(value, Recipe):
            return value
        if isinstance(value, dict):
            unknown = sorted(set(value) - set(self.field_names()))
            if unknown:
                raise ValueError(f"unknown recipe field(s) {unknown}; known fields: {sorted(self.field_names())}")
            return dataclasses.replace(self, **value)
        raise TypeError(f"recipe must be a Recipe, a dict or None, got {type(value).__name__}")

    @classmethod
    def coerce(cls, value: "Recipe | dict[str, Any] | None", base: "Recipe | None" = None) -> "Recipe":
        """``value`` layered on ``base`` (default: the dataclass defaults); see :meth:`layered`."""
        return (base if base is not None else cls()).layered(value)

    def replace(self, **changes: Any) -> "Recipe":
        """A copy with some fields changed; ``None`` values are ignored (handy for CLI flags)."""
        return self.layered({k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: The leaderboard recipe shared by the GPU-trained CNNs (alexnet ... densenet); each model file
#: states only where its own recipe differs. The book trains each of them for 10 epochs of plain
#: SGD at lr 0.01-0.1.
GPU_RECIPE = Recipe(optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4, schedule="cosine",
                    warmup_epochs=1, label_smoothing=0.1, augment="standard", batch_size=256, epochs=20)  # fmt: skip
