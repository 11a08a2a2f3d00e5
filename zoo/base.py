"""ImageModel: what every zoo image network shares, whatever its task.

Image facts (classes, channels, input size, normalisation, label names), the input check, and the
optimiser and learning-rate schedule the model's :class:`~zoo.recipe.Recipe` asks for. The task
lives in the subclasses: :class:`~zoo.classifier.ImageClassifier` and
:class:`~zoo.detection.detector.Detector` say what their loss, metrics and data are, and the class
attributes below tell the trainer, the CLI and the model card what they need to know, so that none
of them switches on the task's name.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Iterable, Sequence

import lightning as L
import torch

from .data.fashion_mnist import CLASSES, MEAN, STD
from .data.preprocess import PhotoSteps, per_channel
from .recipe import Recipe

__all__ = ["ImageModel", "ClassifierBackbone", "decay_groups", "log_train_loss", "with_schedule"]


def decay_groups(params: Iterable[torch.nn.Parameter], weight_decay: float, **group: Any) -> list[dict[str, Any]]:
    """Optimizer parameter groups: weights get ``weight_decay``; biases and norm parameters (every
    0-/1-d tensor) never do, since decaying a BatchNorm scale or a bias only fights the
    normalisation. ``group`` adds settings to both groups (e.g. their own ``lr``)."""
    params = [p for p in params if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    rest = [p for p in params if p.ndim <= 1]
    return [{"params": ps, "weight_decay": wd, **group} for ps, wd in ((decay, weight_decay), (rest, 0.0)) if ps]


def log_train_loss(module: L.LightningModule, loss: torch.Tensor) -> None:
    """Log train/loss, but only on the steps the logger writes (Lightning writes when
    (step + 1) % log_every_n_steps == 0): self.log costs Lightning ~0.5 ms of bookkeeping, 5-8 % of
    a LeNet step on a 2-core CPU (scripts/benchmarks/benchmark.py --model lenet)."""
    every = module.trainer.log_every_n_steps if module._trainer is not None else 1
    if every and (module._trainer is None or (module.trainer.global_step + 1) % every == 0):  # 0: no logging (barebones)
        module.log("train/loss", loss, prog_bar=True)


class ImageModel(L.LightningModule):
    """Base class of the zoo's image networks: ``backbone`` then ``head``, trained by a recipe.

    Args:
        num_classes: size of the output layer.
        in_chans: channels of the input images (Fashion-MNIST is 1; 3 for RGB data).
        input_size: side of the square images the network expects (default: the class's
            ``default_input_size``, the size the book resizes Fashion-MNIST to for it).
        mean, std: per-channel normalisation the inputs were trained with (one value = every channel).
        label_names: names of the classes, in output order.
        recipe: training recipe (a :class:`Recipe`, or a dict of the fields that differ from the
            dataclass defaults; ``zoo.create_model`` starts from the model's registered recipe).
    """

    #: "classification" or "detection".
    task: ClassVar[str]
    #: The side the book resizes Fashion-MNIST to for this network.
    default_input_size: ClassVar[int] = 28
    #: True when a flatten -> linear layer ties the network to exactly ``input_size``.
    fixed_input_size: ClassVar[bool] = False
    #: The score that rates a split ("acc" -> "val/acc", "test/acc"), and its name for people.
    score: ClassVar[str]
    score_label: ClassVar[str]
    #: The Hub's pipeline tag for the model card.
    hub_task: ClassVar[str]
    #: Higher is better for the score (ModelCheckpoint's mode).
    monitor_mode: ClassVar[str] = "max"
    #: Trained weights are exported as a checkpoint folder (zoo.load reads them back).
    exportable: ClassVar[bool] = True
    #: How photos are made to look like the training data (zoo.data.preprocess), unless a
    #: checkpoint's config.json says otherwise: a model trained on Fashion-MNIST gets every step.
    photo_steps: PhotoSteps = PhotoSteps()

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_chans: int = 1,
        input_size: int | None = None,
        mean: Sequence[float] | float = MEAN,
        std: Sequence[float] | float = STD,
        label_names: Sequence[str] | None = None,
        recipe: Recipe | dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if input_size is None:
            input_size = type(self).default_input_size
        for arg, value, low in (("num_classes", num_classes, 1), ("in_chans", in_chans, 1), ("input_size", input_size, 8)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{arg} must be an integer >= {low}, got {value!r}")
        if in_chans not in (1, 3):
            raise ValueError(f"in_chans must be 1 (gray) or 3 (RGB), got {in_chans}")
        if label_names is None and num_classes == len(CLASSES):
            label_names = CLASSES
        if label_names is not None and len(label_names) != num_classes:
            raise ValueError(f"label_names has {len(label_names)} names but num_classes is {num_classes}")
        self.recipe = Recipe.coerce(recipe)
        # Lightning collects the constructor arguments of the whole subclass chain, so a checkpoint
        # rebuilds the exact model; the resolved values are stored, not the Nones the caller may pass.
        self.save_hyperparameters()
        self.hparams["recipe"] = self.recipe.to_dict()
        self.hparams["input_size"] = input_size
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.input_size = input_size
        self.mean = per_channel(mean, in_chans, "mean")
        self.std = per_channel(std, in_chans, "std")
        self.label_names = list(label_names) if label_names is not None else [str(i) for i in range(num_classes)]

    @property
    def monitor(self) -> str:
        """The validation score that picks a run's best epoch (higher is better)."""
        return f"val/{self.score}"

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` checked (and cast to the weights' float dtype); the common mistakes get one
        clear error with the numbers, not a shape or dtype error deep in a conv."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{type(self).__name__} expects a torch.Tensor batch, got {type(x).__name__}; "
                            "for images use model.preprocess(image)")  # fmt: skip
        if not x.is_floating_point():
            raise ValueError(
                f"{type(self).__name__} expects normalised float images, got a {x.dtype} tensor; convert raw pixels "
                "with model.preprocess(image), or x.float().div(255) and then (x - model.mean) / model.std"
            )
        if x.ndim != 4:
            raise ValueError(
                f"{type(self).__name__} expects a batch of images (N, {self.in_chans}, H, W), "
                f"got a tensor of shape {tuple(x.shape)}"
            )
        if x.shape[1] != self.in_chans:
            raise ValueError(
                f"{type(self).__name__} was built for {self.in_chans}-channel images, got {x.shape[1]} "
                f"channels (shape {tuple(x.shape)}); build it with in_chans={x.shape[1]} or convert the images"
            )
        if self.fixed_input_size and tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            raise ValueError(
                f"{type(self).__name__} needs {self.input_size}x{self.input_size} inputs (its linear layers "
                f"are sized for them), got {x.shape[-2]}x{x.shape[-1]}; resize the images first"
            )
        weights = next(self.parameters(), None)
        # float64 or float16 input to float32 weights (or the other way round) is cast, as a
        # conv would not; under autocast the casts are autocast's.
        if weights is not None and x.dtype != weights.dtype and not torch.is_autocast_enabled(x.device.type):
            x = x.to(weights.dtype)
        return x

    def datamodule(self, **options: Any) -> L.LightningDataModule:
        """The data this model trains and is evaluated on, fitted to its input size, channels,
        normalisation and recipe. ``options``: data_dir, download, seed, train_limit, eval_limit,
        eval_batch_size, num_workers."""
        raise NotImplementedError

    # ----------------------------------------------------------------------------------- optimisation
    def parameter_groups(self) -> list[dict[str, Any]]:
        """The trainable parameters, weights decayed and biases/norm parameters not (:func:`decay_groups`)."""
        return decay_groups(self.parameters(), self.recipe.weight_decay)

    def configure_optimizers(self) -> Any:
        r = self.recipe
        groups = self.parameter_groups()
        # fused: one kernel updates every parameter; None keeps PyTorch's choice (foreach on GPUs).
        fused = True if r.fused else None
        if r.optimizer == "sgd":
            opt = torch.optim.SGD(groups, lr=r.lr, momentum=r.momentum, nesterov=r.nesterov and r.momentum > 0, fused=fused)
        else:
            opt = torch.optim.AdamW(groups, lr=r.lr, fused=fused)
        return with_schedule(opt, r, self)


class ClassifierBackbone:
    """Mixin of a scene model whose first layers are a zoo classifier's (``source``): when training
    starts (``setup("fit")``) and ``pretrained_backbone`` is on, ``backbone_layers()`` get the
    trained ``source``'s weights (``zoo.load``, verified), unless the model has weights of its own
    by then: any ``load_state_dict`` into it (``zoo.load``, a checkpoint Lightning restores) marks it
    so, and a loaded model is fine-tuned from its own weights, not reset to the classifier's."""

    source: str
    pretrained_backbone: bool

    def copy_backbone_on_fit(self) -> None:
        """Call at the end of ``__init__``."""
        self._backbone_copied = False
        self.register_load_state_dict_post_hook(lambda module, keys: setattr(module, "_backbone_copied", True))

    def backbone_layers(self) -> torch.nn.Module:
        """The layers that take the classifier's weights, under its backbone's names ("0", "1"...)."""
        raise NotImplementedError

    def copy_pretrained(self) -> None:
        """Copy the trained weights in: by default ``source``'s into :meth:`backbone_layers`."""
        from .pretrained import load_backbone_layers  # the registry's floor stays below the weights layer

        load_backbone_layers(self.backbone_layers(), self.source, in_chans=self.in_chans)

    def setup(self, stage: str) -> None:
        # Lightning calls setup before it restores a checkpoint: a resumed run ends with its own weights.
        if stage == "fit" and self.pretrained_backbone and not self._backbone_copied:
            self.copy_pretrained()
            self._backbone_copied = True


def with_schedule(opt: torch.optim.Optimizer, recipe: Any, module: Any) -> Any:
    """``opt`` with the learning-rate schedule ``recipe`` asks for (``schedule``, ``warmup_epochs``),
    as ``module.configure_optimizers`` returns it: the optimiser alone for "none", else a dict with
    a scheduler stepped every batch over its trainer's estimated steps."""
    r = recipe
    if r.schedule == "none":
        return opt  # no trainer needed: a module can be inspected before it is fitted
    trainer = module.trainer
    total = trainer.estimated_stepping_batches
    if not math.isfinite(total) or total < 1:
        raise ValueError(f"the {r.schedule!r} schedule needs a finite number of steps (set max_epochs or max_steps)")
    total = int(total)
    epochs = max(1, trainer.max_epochs or 1)
    warmup = int(round(r.warmup_epochs / epochs * total))
    if r.schedule == "onecycle":
        # warmup_epochs sets the rising phase; without it, PyTorch's default of 30 % of the steps.
        pct = warmup / total if warmup else 0.3
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=total, pct_start=pct)
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _warmup_cosine(warmup, total))
    # Stepped every batch: the schedules are defined over optimisation steps.
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def _warmup_cosine(warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor
