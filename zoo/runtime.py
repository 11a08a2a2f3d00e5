"""Where the zoo writes, how it seeds, and the process-wide settings the rest of the package shares."""

from __future__ import annotations

import ctypes
import os
import platform
import random
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

__all__ = ["zoo_home", "store_dir", "seed_torch", "seed_all", "batch_seed", "seeded_rng", "to_device", "MissingExtraError", "is_first_process",
           "keep_freed_memory_in_heap", "write_text_replacing"]  # fmt: skip


def zoo_home() -> Path:
    """Root of everything the zoo writes: ``$ZOO_HOME``, else ``~/.cache/zoo``."""
    return Path(os.environ.get("ZOO_HOME") or Path.home() / ".cache" / "zoo")


def store_dir(name: str) -> Path:
    """The local store's folder of ``name``: where ``zoo train`` exports its final weights, and
    where ``zoo.load(name)`` finds them (after the bundled ones)."""
    return zoo_home() / "checkpoints" / name


def seed_torch(seed: int) -> None:
    """torch.manual_seed without its cost on machines with no GPU in use: there, torch.manual_seed
    queues a lazy CUDA/XPU/MTIA seeding with a formatted stack trace, about 1 ms a call."""
    torch.default_generator.manual_seed(seed)
    if torch.cuda.is_initialized():  # not is_available(): that asks the driver (NVML) every call
        torch.cuda.manual_seed_all(seed)


def seed_all(seed: int) -> None:
    """Seed torch (the CPU and every CUDA device in use), NumPy's and Python's global generators.
    Not Lightning's seed_everything: that also rewrites PL_GLOBAL_SEED, which seeds DDP's sampler."""
    seed_torch(seed)
    random.seed(seed)
    np.random.seed(seed)


def batch_seed(seed: int, epoch: int, batch: int, rank: int) -> int:
    """The seed of one training batch: a function of (run seed, epoch, batch number, rank) only.
    The zoo's one seeding rule: dropout (:class:`zoo.callbacks.BatchSeed`) and each batch's
    augmentation (the DataModules, through :func:`seeded_rng`) draw from it, so a resumed run
    continues exactly as the uninterrupted one, whatever else drew random numbers in between."""
    return hash((seed, epoch, batch, rank)) % (2**31)


@contextmanager
def seeded_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Run a block with the global generators seeded (:func:`seed_all`), then put them back as they
    were (timm's RandomErasing draws from torch's and Python's)."""
    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        seed_all(seed)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


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


def keep_freed_memory_in_heap() -> bool:
    """Tell glibc to serve large allocations from its heap and keep freed memory there.

    By default glibc maps every block over 32 MB afresh from the kernel and unmaps it when freed, so
    a CPU training step page-faults its way through new memory for each large activation and batch
    (a 224x224 float batch of 256 is 51 MB); keeping them in the heap makes the big networks' CPU
    steps faster (docs/performance.md). Process-wide and glibc-only; a no-op elsewhere or with
    ZOO_MALLOPT=0. Returns whether it was applied.
    """
    if os.environ.get("ZOO_MALLOPT", "1") == "0" or platform.system() != "Linux":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    return bool(libc.mallopt(M_MMAP_THRESHOLD, 1 << 30) and libc.mallopt(M_TRIM_THRESHOLD, 1 << 30))


def write_text_replacing(path: Path, text: str | bytes) -> None:
    """Write ``text`` (or bytes) to ``path`` through a temporary file beside it and a rename: an error half-way
    (a name that cannot be encoded, a full disk) leaves the old file whole, never an empty or torn
    one. A folder, device or pipe at ``path`` is refused, never renamed over."""
    import tempfile

    path = Path(path)
    if path.exists() and not path.is_file():
        raise ValueError(f"{path} is not a regular file; give the path of a file to write")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb" if isinstance(text, bytes) else "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
