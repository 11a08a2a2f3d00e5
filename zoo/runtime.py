"""Where the zoo writes, and how it seeds: the two process-wide facts the rest of the package shares."""

from __future__ import annotations

import os
import random
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

__all__ = ["zoo_home", "seed_torch", "seeded_rng", "to_device", "MissingExtraError", "is_first_process"]


def zoo_home() -> Path:
    """Root of everything the zoo writes: ``$ZOO_HOME``, else ``~/.cache/zoo``."""
    return Path(os.environ.get("ZOO_HOME") or Path.home() / ".cache" / "zoo")


def seed_torch(seed: int) -> None:
    """torch.manual_seed without its cost on machines with no GPU in use: there, torch.manual_seed
    queues a lazy CUDA/XPU/MTIA seeding with a formatted stack trace, about 1 ms a call."""
    torch.default_generator.manual_seed(seed)
    if torch.cuda.is_initialized():  # not is_available(): that asks the driver (NVML) every call
        torch.cuda.manual_seed_all(seed)


@contextmanager
def seeded_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Run a block with torch's and Python's global generators seeded, then put them back as they
    were (timm's RandomErasing draws from both)."""
    py_state = random.getstate()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        seed_torch(seed)
        random.seed(seed)
        try:
            yield
        finally:
            random.setstate(py_state)


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t.to(device)`` for a small CPU tensor made during a step (indices, random draws) without
    stalling the host: a copy from pageable memory waits for the GPU's queue to drain, a copy
    from pinned memory (PyTorch caches the pinned buffers) is queued like a kernel."""
    if device.type != "cuda" or t.device.type != "cpu" or os.environ.get("ZOO_PIN") == "0":  # ZOO_PIN=0: A/B measurements
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


class MissingExtraError(ImportError):
    """An optional extra (serve, demo, export, tensorboard) is not installed."""


def is_first_process() -> bool:
    """False in the processes Lightning starts for DDP ranks other than 0: they train, and leave
    reporting and writing shared files to the first."""
    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"
