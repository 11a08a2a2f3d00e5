#!/usr/bin/env python
"""Benchmark the zoo's training engine against the book's pipeline, on one machine, in one run.

    python scripts/benchmark.py --model resnet18                   # 96x96, CPU or the GPU if any
    python scripts/benchmark.py --model lenet --train-steps 200
    python scripts/benchmark.py --model resnet18 --device cuda --precision bf16-mixed --json out.json
    python scripts/benchmark.py --model resnet18 --device cuda --precision bf16-mixed --channels-last \
        --static-shapes --fused --compile default,reduce-overhead       # eager vs compiled, with MFU

Measures (images/s unless noted):
  data       the data pipeline alone: zoo's batched, device-resident path vs the book's
             (torchvision FashionMNIST + per-image Resize/ToTensor + DataLoader, its 4 workers
             capped at the core count), each ending with the batch on the device
  train      training throughput and seconds per 55,000-image epoch: zoo with Lightning vs a plain
             PyTorch loop over the same model, batches and optimizer, vs the plain loop fed by the
             book's pipeline; eager, and compiled in each of --compile's modes; with MFU (model
             FLOPs utilisation: training FLOPs per image from torch.utils.flop_counter x images/s,
             over the device's dense peak at the precision)
  infer      inference at batch 256, and single-image latency (median, ms)
Prints a table and writes JSON with the device, torch version, precision and thread count.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

import zoo
from zoo.train import keep_freed_memory_in_heap
from zoo.data.fashion_mnist import FILES, EpochShuffleSampler, FashionMNISTDataModule, _keep_batch, find_data_dir

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


# ------------------------------------------------------------------------------------------ data
def zoo_datamodule(model: zoo.ImageClassifier, batch_size: int, device: torch.device) -> FashionMNISTDataModule:
    dm = FashionMNISTDataModule.for_model(model, batch_size=batch_size, augment="none")
    dm.setup()
    dm.train_set = dm.train_set.to(device)  # what the DataModule does under a Trainer on `device`
    return dm


def zoo_batches(dm: FashionMNISTDataModule) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The zoo's path as Lightning runs it: index-gathered uint8 batch -> batched transform."""
    loader = DataLoader(dm.train_set, dm.batch_size, sampler=EpochShuffleSampler(len(dm.train_set), 0), collate_fn=_keep_batch,
                        drop_last=dm.static_shapes)  # fmt: skip
    while True:
        for images, labels in loader:
            yield dm._format(dm.transform(images, train=False)), labels


def book_dataset(root: Path, size: int):
    """The book's load_data_fashion_mnist (ch. 4.2): torchvision's dataset, per-image PIL
    Resize + ToTensor. torchvision wants the idx files un-gzipped in <root>/FashionMNIST/raw."""
    import torchvision
    from torchvision import transforms

    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    src = find_data_dir()
    for stem in FILES.values():
        if not (raw / stem).exists():
            (raw / stem).write_bytes(gzip.decompress((src / f"{stem}.gz").read_bytes()))
    trans = transforms.Compose([transforms.Resize(size), transforms.ToTensor()])
    return torchvision.datasets.FashionMNIST(root=str(root), train=True, transform=trans, download=False)


def book_batches(dataset, batch_size: int, device: torch.device, workers: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    loader = DataLoader(dataset, batch_size, shuffle=True, num_workers=workers, persistent_workers=workers > 0,
                        pin_memory=device.type == "cuda")  # fmt: skip
    while True:
        for x, y in loader:
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


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
def plain_loop(model: zoo.ImageClassifier, batches: Iterator, steps: int, device: torch.device, precision: str, warmup: int) -> float:
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
    def __init__(self, warmup: int, device: torch.device) -> None:
        self.warmup, self.device = warmup, device
        self.start = self.end = 0.0
        self.images = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.warmup:
            sync(self.device)
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step > self.warmup:
            self.images += batch[0].shape[0]
        sync(self.device)
        self.end = time.perf_counter()


def lightning_loop(model: zoo.ImageClassifier, dm: FashionMNISTDataModule, steps: int, device: torch.device, precision: str, warmup: int) -> float:
    """zoo's training as `zoo train` runs it (Trainer, logging, batch seeding), validation off."""
    from zoo.train import BatchSeed

    timer = _Timer(warmup, device)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = L.Trainer(
            accelerator=device.type if device.type != "cuda" else "gpu", devices=1, precision=precision,
            max_steps=warmup + steps, limit_val_batches=0, num_sanity_val_steps=0, enable_checkpointing=False,
            logger=L.pytorch.loggers.CSVLogger(tmp), log_every_n_steps=10, enable_progress_bar=False,
            enable_model_summary=False, benchmark=True, callbacks=[BatchSeed(0), timer],
        )  # fmt: skip
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


# ------------------------------------------------------------------------------------------ infer
@torch.no_grad()
def inference(model: zoo.ImageClassifier, device: torch.device, precision: str, batches: int) -> tuple[float, float]:
    model.to(device).eval()
    s = model.input_size
    x = torch.randn(256, model.in_chans, s, s, device=device)
    one = x[:1].clone()
    with autocast(device, precision):
        throughput = rate(lambda: model(x), batches, 256, device)
        latencies = []
        for _ in range(30):
            t = time.perf_counter()
            model(one)
            sync(device)
            latencies.append((time.perf_counter() - t) * 1000)
    return throughput, statistics.median(latencies[5:])


# ------------------------------------------------------------------------------------------ main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet18", help="registered model (default resnet18)")
    p.add_argument("--input-size", type=int, help="default: the model's (28, 96 or 224)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", default="32-true", help="32-true, bf16-mixed, 16-mixed")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--data-batches", type=int, default=20, help="batches timed per data pipeline")
    p.add_argument("--train-steps", type=int, default=10, help="training steps timed per loop")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before each timing")
    p.add_argument("--repeats", type=int, default=3, help="runs of the Lightning and plain loops (best kept)")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--static-shapes", action="store_true", help="drop the last partial batch (as the recipe switch)")
    p.add_argument("--fused", action="store_true", help="fused optimizer kernels")
    p.add_argument("--compile", default="", metavar="MODES",
                   help="comma list of torch.compile modes measured beside eager, e.g. default,reduce-overhead")
    p.add_argument("--peak-tflops", type=float, help="the device's peak at --precision, for MFU (default: known GPUs)")
    p.add_argument("--only", default="data,train,infer", help="comma list of data, train, infer")
    p.add_argument("--book-workers", type=int, default=min(4, os.cpu_count() or 1),
                   help="DataLoader workers of the book's pipeline (the book's default is 4)")  # fmt: skip
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()

    device = torch.device(args.device)
    if device.type == "cpu":
        # As `zoo train` does on CPU; set before any worker forks, so both pipelines run with it.
        results_malloc = keep_freed_memory_in_heap()
    else:
        results_malloc = False
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")
        torch.backends.cudnn.benchmark = True
    only = set(args.only.split(","))
    spec = zoo.get_spec(args.model)
    size = args.input_size or spec.input_size
    recipe = spec.recipe.replace(schedule="none", batch_size=args.batch_size, precision=args.precision, channels_last=args.channels_last,
                                 static_shapes=args.static_shapes, fused=args.fused)  # fmt: skip
    modes = [m for m in args.compile.split(",") if m]

    def fresh_model(compile_mode: str | None = None) -> zoo.ImageClassifier:
        torch.manual_seed(0)
        m = zoo.create_model(args.model, input_size=size, recipe=recipe)
        m = m.to(memory_format=torch.channels_last) if args.channels_last else m
        if compile_mode:
            m.compile(mode=compile_mode)  # as `zoo train --compile` does: the network's call, in place
        return m

    results: dict[str, Any] = {
        "model": args.model, "input_size": size, "batch_size": args.batch_size, "precision": args.precision,
        "channels_last": args.channels_last, "device": torch.cuda.get_device_name(device) if device.type == "cuda" else
        f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)", "torch": torch.__version__,
        "lightning": L.__version__, "threads": torch.get_num_threads(), "book_workers": args.book_workers,
        "heap_malloc": results_malloc,
    }  # fmt: skip
    dm = zoo_datamodule(fresh_model(), args.batch_size, device)
    with tempfile.TemporaryDirectory() as tmp:
        book = book_dataset(Path(tmp), size)
        if "data" in only:
            zoo_it, book_it = zoo_batches(dm), book_batches(book, args.batch_size, device, args.book_workers)
            results["data_zoo"] = rate(lambda: next(zoo_it), args.data_batches, args.batch_size, device)
            results["data_book"] = rate(lambda: next(book_it), args.data_batches, args.batch_size, device)
            del zoo_it, book_it  # shut the book loader's workers down before timing training
            results["data_speedup"] = results["data_zoo"] / results["data_book"]
        if "train" in only:
            steps, warm = args.train_steps, args.warmup
            # Alternate the two loops and keep each one's best run: what is left of the noise from
            # the rest of the machine then hits both alike.
            for mode in [None, *modes]:
                suffix = f"_{mode}" if mode else ""
                lightning, plain = [], []
                for _ in range(args.repeats):
                    lightning.append(lightning_loop(fresh_model(mode), dm, steps, device, args.precision, warm))
                    plain.append(plain_loop(fresh_model(mode), zoo_batches(dm), steps, device, args.precision, warm))
                results["train_lightning" + suffix], results["train_plain" + suffix] = max(lightning), max(plain)
                results["train_runs" + suffix] = {"lightning": lightning, "plain": plain}
            book_train = book_batches(book, args.batch_size, device, args.book_workers)
            results["train_book"] = plain_loop(fresh_model(), book_train, steps, device, args.precision, warm)
            results["lightning_vs_plain"] = results["train_plain"] / results["train_lightning"] - 1  # time overhead
            results["train_speedup_vs_book"] = results["train_lightning"] / results["train_book"]
            best = max((k for k in results if k.startswith("train_lightning")), key=results.__getitem__)
            results["best_train"] = best
            results["best_speedup_vs_book"] = results[best] / results["train_book"]
            # MFU: achieved FLOP/s over the device's peak, for each training loop measured.
            eager = fresh_model()
            results["train_flops_per_image"] = train_flops_per_image(eager, size, eager.in_chans)
            peak = args.peak_tflops * 1e12 if args.peak_tflops else peak_flops(results["device"], args.precision)
            results["peak_flops"] = peak
            if peak:
                for key in [k for k in results if k.startswith(("train_lightning", "train_plain", "train_book"))]:
                    if isinstance(results[key], float):
                        results["mfu_" + key.removeprefix("train_")] = results[key] * results["train_flops_per_image"] / peak
    if "infer" in only:
        results["infer_batch256"], results["latency_ms"] = inference(fresh_model(), device, args.precision, max(3, args.data_batches // 4))

    print(f"\n{args.model} at {size}x{size}, batch {args.batch_size}, {args.precision}, on {results['device']}, "
          f"torch {torch.__version__}, {results['threads']} threads")  # fmt: skip
    per_mode = []
    for mode in modes:
        per_mode += [(f"train_lightning_{mode}", f"training, zoo + Lightning, compile {mode}", "{:,.0f}".format),
                     (f"train_plain_{mode}", f"training, plain loop, compile {mode}", "{:,.0f}".format)]  # fmt: skip
    rows: list[tuple[str, str, Callable[[float], str]]] = [
        ("data_zoo", "data pipeline, zoo (images/s)", "{:,.0f}".format),
        ("data_book", "data pipeline, book (images/s)", "{:,.0f}".format),
        ("data_speedup", "  zoo / book", "{:.1f}x".format),
        ("train_lightning", "training, zoo + Lightning (images/s)", "{:,.0f}".format),
        ("train_plain", "training, plain PyTorch loop (images/s)", "{:,.0f}".format),
        *per_mode,
        ("train_book", "training, book pipeline + plain loop (images/s)", "{:,.0f}".format),
        ("lightning_vs_plain", "  Lightning's time over the plain loop's", "{:+.1%}".format),
        ("train_speedup_vs_book", "  zoo / book", "{:.1f}x".format),
        ("best_speedup_vs_book", "  zoo's fastest / book", "{:.1f}x".format),
        ("train_flops_per_image", "training FLOPs per image (fwd + bwd)", lambda v: f"{v / 1e9:.2f} G"),
        ("infer_batch256", "inference, batch 256 (images/s)", "{:,.0f}".format),
        ("latency_ms", "inference, one image (ms, median)", "{:.2f}".format),
    ]
    for key, label, fmt in rows:
        if key in results:
            extra = ""
            if key.startswith(("train_lightning", "train_plain")) and not key.startswith("train_runs"):
                extra = f"   ({EPOCH_IMAGES / results[key]:.1f} s per 55,000-image epoch)"
            mfu = results.get("mfu_" + key.removeprefix("train_")) if key.startswith("train_") else None
            if mfu is not None:
                extra += f"   MFU {mfu:.1%}"
            print(f"  {label:<50} {fmt(results[key]):>10}{extra}")
    if "peak_flops" in results:
        peak = results["peak_flops"]
        print(f"  MFU = images/s x training FLOPs per image / peak ({peak / 1e12:,.0f} TFLOP/s dense)" if peak else
              "  MFU: peak of this device unknown (pass --peak-tflops)")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nwritten: {args.json}")


if __name__ == "__main__":
    main()
