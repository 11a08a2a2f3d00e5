#!/usr/bin/env python
"""Benchmark the zoo's training engine against the book's pipeline, on one machine, in one run.

    python scripts/benchmarks/benchmark.py --model resnet18                   # 96x96, CPU or the GPU if any
    python scripts/benchmarks/benchmark.py --model lenet --train-steps 200
    python scripts/benchmarks/benchmark.py --model resnet18 --device cuda --precision bf16-mixed --json out.json
    python scripts/benchmarks/benchmark.py --model resnet18 --device cuda --precision bf16-mixed --channels-last \
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
from torch.utils.data import DataLoader

import zoo
from zoo.bench import (EPOCH_IMAGES, autocast, lightning_loop, peak_flops, plain_loop, rate, sync, train_flops_per_image,
                       zoo_batches, zoo_datamodule)  # fmt: skip
from zoo.data.fashion_mnist import FILES, find_data_dir
from zoo.runtime import keep_freed_memory_in_heap


# ------------------------------------------------------------------------------------------ data
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
