"""Recipes: how a model is trained, as small dataclasses of plain JSON-able values.

:class:`Recipe` trains a registered model from scratch; a model's recipe is written once, in its
``register_model(recipe=...)``. :class:`FinetuneRecipe` fine-tunes a pretrained one; its defaults
are the measured recipe of ``zoo finetune``, ``zoo.finetune`` and ``zoo.FineTuner`` alike.
Overrides always layer on top: a dict (from Python, a checkpoint or the command line, whose flags
are generated from the fields) changes only the fields it names.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from .data.augment import AUGMENT_PRESETS

__all__ = ["Recipe", "FinetuneRecipe", "OPTIMIZERS", "SCHEDULES", "COMPILE_MODES", "AUGMENT_PRESETS", "FREEZE", "GPU_RECIPE"]

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("none", "cosine", "onecycle")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
#: What trains when fine-tuning: everything (the book's), the new head only, or the head until an epoch.
FREEZE = ("no_freeze", "freeze", "freeze_unfreeze")


def _field(default: Any, help: str, *, choices: tuple[str, ...] | None = None, kind: type | None = None) -> Any:
    # The help, the choices and the value's type (given where the default is None) make
    # `zoo train`'s flags: every field is reachable from the command line.
    return field(default=default, metadata={"help": help, "choices": choices, "kind": kind or type(default)})


class _Layered:
    """What both recipes share: overrides that change only the fields they name."""

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]

    def layered(self, value: "Any") -> "Any":
        """This recipe with ``value`` on top: None keeps it, a recipe of the same kind replaces it
        whole, a dict changes only the fields it names (``None`` is a value here: eval_batch_size=None)."""
        if value is None:
            return self
        if isinstance(value, type(self)):
            return value
        if isinstance(value, dict):
            unknown = sorted(set(value) - set(self.field_names()))
            if unknown:
                raise ValueError(f"unknown recipe field(s) {unknown}; known fields: {sorted(self.field_names())}")
            return dataclasses.replace(self, **value)  # type: ignore[type-var]
        raise TypeError(f"recipe must be a {type(self).__name__}, a dict or None, got {type(value).__name__}")

    @classmethod
    def coerce(cls, value: "Any", base: "Any" = None) -> "Any":
        """``value`` layered on ``base`` (default: the dataclass defaults); see :meth:`layered`."""
        return (base if base is not None else cls()).layered(value)

    def replace(self, **changes: Any) -> "Any":
        """A copy with some fields changed; ``None`` values are ignored (handy for CLI flags)."""
        return self.layered({k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    def _check_finite(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            # inf or nan in a hyperparameter trains a NaN model; stop it here, with the field's name.
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"recipe.{f.name} must be a finite number, got {value}")


@dataclass(frozen=True)
class Recipe(_Layered):
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
        self._check_finite()
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
        if not 0.0 <= self.momentum < 1.0:  # at 1 or more SGD's steps grow without bound
            raise ValueError(f"recipe.momentum must be in [0, 1), got {self.momentum}")

#: The leaderboard recipe shared by the GPU-trained CNNs (alexnet ... densenet); each model file
#: states only where its own recipe differs. The book trains each of them for 10 epochs of plain
#: SGD at lr 0.01-0.1.
GPU_RECIPE = Recipe(optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4, schedule="cosine",
                    warmup_epochs=1, label_smoothing=0.1, augment="standard", batch_size=256, epochs=20)  # fmt: skip


#: The fine-tuning budget when no epoch count is given: about this many optimisation steps (a
#: few-shot folder is a handful of batches an epoch), within MIN_EPOCHS..MAX_EPOCHS.
DEFAULT_STEPS = 300
MIN_EPOCHS, MAX_EPOCHS = 5, 300
#: The default warm-up before the schedule, as a share of the run's epochs.
WARMUP_FRACTION = 0.05


@dataclass(frozen=True)
class FinetuneRecipe(_Layered):
    """How a pretrained network is fine-tuned on an image folder (the book's ch. 13.2). The one place
    fine-tuning's defaults live: the recipe measured to beat training from scratch
    (docs/finetuning.md). ``zoo finetune``'s flags are generated from these fields, and a run
    records ``to_dict()`` in its checkpoints."""

    epochs: int | None = _field(None, "epochs (default: about 300 optimisation steps, 5 to 300 epochs, said when chosen)", kind=int)
    lr: float = _field(1e-2, "learning rate of the new head")
    backbone_lr_ratio: float = _field(1.0, "the copied layers learn at lr x this (the book's: 0.1)")
    freeze: str = _field("no_freeze", "what trains: everything (the book's), the head only, or the head until --unfreeze-epoch",
                         choices=FREEZE)  # fmt: skip
    unfreeze_epoch: int = _field(1, "the epoch at which freeze_unfreeze adds the copied layers")
    optimizer: str = _field("adamw", "optimizer (AdamW, or SGD with momentum 0.9)", choices=("adamw", "sgd"))
    schedule: str = _field("cosine", "learning rate over the run's steps", choices=SCHEDULES)
    warmup_epochs: float | None = _field(None, "linear warm-up before the schedule (default: 5 %% of the epochs)", kind=float)
    weight_decay: float = _field(1e-4, "weight decay of the weights; biases and norm parameters never decay")
    l2sp: float = _field(0.0, "decay the copied weights towards their pretrained values (L2-SP); 0: off")
    batch_size: int = _field(32, "training batch size")
    val_fraction: float = _field(0.2, "share of each class held out for validation when the folder has no val/")
    augment: str = _field("standard", "the book's augmentation (ch. 13.1): random resized crop, flip, colour jitter; or none",
                          choices=("standard", "none"))  # fmt: skip
    hflip: bool = _field(True, "horizontal flips in the augmentation (turn off for digits, text, anything chiral)")

    def __post_init__(self) -> None:
        self._check_finite()
        for name, choices in (("freeze", FREEZE), ("optimizer", ("adamw", "sgd")), ("schedule", SCHEDULES), ("augment", ("standard", "none"))):
            if getattr(self, name) not in choices:
                raise ValueError(f"recipe.{name} must be one of {choices}, got {getattr(self, name)!r}")
        if not self.lr > 0:
            raise ValueError(f"recipe.lr must be positive, got {self.lr}")
        if self.l2sp < 0 or (self.warmup_epochs or 0) < 0 or self.weight_decay < 0:
            raise ValueError(f"l2sp and warmup_epochs must be >= 0, got {self.l2sp} and {self.warmup_epochs} "
                             f"(weight_decay {self.weight_decay})")  # fmt: skip
        if not 0.0 <= self.backbone_lr_ratio <= 1.0:
            raise ValueError(f"backbone_lr_ratio must be between 0 and 1, got {self.backbone_lr_ratio}")
        if self.batch_size < 1 or (self.epochs is not None and self.epochs < 1) or self.unfreeze_epoch < 0:
            raise ValueError(f"recipe.batch_size and recipe.epochs must be >= 1 and unfreeze_epoch >= 0, got "
                             f"{self.batch_size}, {self.epochs} and {self.unfreeze_epoch}")  # fmt: skip
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be between 0 and 1, got {self.val_fraction}")

    def epochs_for(self, train_images: int) -> int:
        """``epochs``, or the epochs that give about DEFAULT_STEPS optimisation steps over
        ``train_images`` (at least MIN_EPOCHS, at most MAX_EPOCHS)."""
        if self.epochs is not None:
            return self.epochs
        # The folder's training loader drops a last partial batch (when there is more than one batch).
        steps_per_epoch = train_images // self.batch_size if train_images > self.batch_size else 1
        return min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(DEFAULT_STEPS / steps_per_epoch)))

    def warmup_for(self, epochs: int) -> float:
        """``warmup_epochs``, or WARMUP_FRACTION of ``epochs`` when a schedule runs (none without one)."""
        if self.warmup_epochs is not None:
            return self.warmup_epochs
        return round(WARMUP_FRACTION * epochs, 3) if self.schedule != "none" else 0.0
