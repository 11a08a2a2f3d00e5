"""Timing the training engine: the zoo's batches, a plain PyTorch loop and the same step under
Lightning, on one model and device, with its FLOPs and the device's peak for MFU. What
``scripts/benchmarks/benchmark.py`` and ``cpu_speed.py`` measure with."""

from __future__ import annotations

import contextlib
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from .callbacks import RunMeta
from .classifier import ImageClassifier
from .data.fashion_mnist import EpochShuffleSampler, FashionMNISTDataModule, keep_batch
from .runs import quiet, zoo_trainer

__all__ = ["EPOCH_IMAGES", "sync", "autocast", "zoo_datamodule", "zoo_batches", "rate", "plain_loop", "lightning_loop",
           "PEAK_TFLOPS", "peak_flops", "train_flops_per_image"]  # fmt: skip

#: The images of one training epoch (the 55,000-image split).
EPOCH_IMAGES = 55_000


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, precision: str):
    if precision.startswith("bf16"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision.startswith("16"):
        return torch.autocast(device.type, dtype=torch.float16)
    return contextlib.nullcontext()


def zoo_datamodule(model: ImageClassifier, batch_size: int, device: torch.device) -> FashionMNISTDataModule:
    dm = FashionMNISTDataModule.for_model(model, batch_size=batch_size, augment="none")
    dm.setup()
    dm.train_set = dm.train_set.to(device)  # what the DataModule does under a Trainer on `device`
    return dm


def zoo_batches(dm: FashionMNISTDataModule) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The zoo's path as Lightning runs it: index-gathered uint8 batch -> batched transform."""
    loader = DataLoader(dm.train_set, dm.batch_size, sampler=EpochShuffleSampler(len(dm.train_set), 0), collate_fn=keep_batch,
                        drop_last=dm.static_shapes)  # fmt: skip
    while True:
        for images, labels in loader:
            yield dm.on_after_batch_transfer((images, labels), 0)  # no Trainer: the evaluation transform


def rate(step: Callable[[], Any], n: int, batch_size: int, device: torch.device, warmup: int = 2) -> float:
    """Images per second of ``step`` (one batch each call), after ``warmup`` untimed calls."""
    for _ in range(warmup):  # worker start-up, first-touch allocations, cudnn autotuning
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(n):
        step()
    sync(device)
    return n * batch_size / (time.perf_counter() - start)


# ------------------------------------------------------------------------------------------ train
def plain_loop(model: ImageClassifier, batches: Iterator, steps: int, device: torch.device, precision: str, warmup: int) -> float:
    """A hand-written PyTorch loop: the same model, loss, optimizer and batches as the zoo's."""
    model.to(device).train()
    opt = model.configure_optimizers()  # schedule "none": just the optimizer, no Trainer needed
    for i in range(warmup + steps):
        if i == warmup:
            sync(device)
            start = time.perf_counter()
        x, y = next(batches)
        with autocast(device, precision):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync(device)
    return steps * x.shape[0] / (time.perf_counter() - start)


class _Timer(L.Callback):
    """Wall time from the first timed step to the end of the last one, with one device sync at each
    end, as the plain loop is timed (a sync every step would take the GPU's queue away)."""

    def __init__(self, warmup: int, steps: int, device: torch.device) -> None:
        self.warmup, self.last, self.device = warmup, warmup + steps, device
        self.start = self.end = 0.0
        self.images = self.batch = 0

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if trainer.global_step == self.warmup and not self.start:
            sync(self.device)
            self.start, self.batch = time.perf_counter(), batch[0].shape[0]

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if trainer.global_step == self.last:  # before the epoch-end checkpoint is written
            sync(self.device)
            self.end = time.perf_counter()
            self.images = (self.last - self.warmup) * self.batch


def lightning_loop(model: ImageClassifier, dm: FashionMNISTDataModule, steps: int, device: torch.device, precision: str, warmup: int) -> float:
    """The zoo's training as `zoo train --no-progress` runs it (:func:`zoo.runs.zoo_trainer`: its
    logger, per-batch seeding, checkpoints and checks), validation off; images/s."""
    timer = _Timer(warmup, steps, device)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = zoo_trainer(Path(tmp), meta=RunMeta({}), seed=0, progress_bar=False, callbacks=[timer],
                              accelerator=device.type if device.type != "cuda" else "gpu", devices=1, precision=precision,
                              max_steps=warmup + steps, limit_val_batches=0, num_sanity_val_steps=0, log_every_n_steps=10,
                              benchmark=True)  # fmt: skip
        with quiet():
            trainer.fit(model, datamodule=dm)
    return timer.images / (timer.end - timer.start)


# ------------------------------------------------------------------------------------------ MFU
#: Dense peak TFLOP/s by (GPU name fragment, precision), from NVIDIA's datasheets (no sparsity).
#: float32 runs use TF32 tensor cores (torch.set_float32_matmul_precision("high"), as `zoo train`).
PEAK_TFLOPS = {
    ("H200", "bf16"): 989.0, ("H200", "16"): 989.0, ("H200", "32"): 494.5,
    ("H100 PCIe", "bf16"): 756.0, ("H100 PCIe", "16"): 756.0, ("H100 PCIe", "32"): 378.0,
    ("H100", "bf16"): 989.0, ("H100", "16"): 989.0, ("H100", "32"): 494.5,
    ("A100", "bf16"): 312.0, ("A100", "16"): 312.0, ("A100", "32"): 156.0,
}  # fmt: skip


def peak_flops(device_name: str, precision: str) -> float | None:
    """The device's dense peak FLOP/s at ``precision``, or None when it is not in the table."""
    kind = "bf16" if precision.startswith("bf16") else "16" if precision.startswith("16") else "32"
    for (fragment, prec), tflops in PEAK_TFLOPS.items():  # "H100 PCIe" is listed before "H100"
        if fragment in device_name and prec == kind:
            return tflops * 1e12
    return None


def train_flops_per_image(model: torch.nn.Module, size: int, in_chans: int) -> float:
    """FLOPs of one training image (forward + backward), counted by torch.utils.flop_counter on
    a CPU copy of the model (matmuls and convolutions: what the tensor cores do)."""
    import copy

    from torch.utils.flop_counter import FlopCounterMode

    m = copy.deepcopy(model).float().cpu().train()
    x = torch.randn(2, in_chans, size, size)
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(m(x), torch.zeros(2, dtype=torch.long)).backward()
    return counter.get_total_flops() / 2
