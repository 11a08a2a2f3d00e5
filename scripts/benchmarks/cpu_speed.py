#!/usr/bin/env python
"""CPU training speed of every convnet in float32, bf16 autocast and channels-last, and whether a
short real run learns as well in bf16 as in float32.

    python scripts/benchmarks/cpu_speed.py                           # all convnets (about 6 minutes on 2 cores)
    python scripts/benchmarks/cpu_speed.py --models lenet,resnet18 --json results/benchmark/cpu-precision.json
    python scripts/benchmarks/cpu_speed.py --no-learn                # speed only

speed   images/s of the plain training step (the benchmark's loop: same model, optimizer and
        zoo batches) at --batch-size, after a warm-up step, for each of: float32, bf16 autocast,
        channels-last, bf16 + channels-last; and seconds per 55,000-image epoch in float32.
learn   zoo.recipe_check's check (scripts/check_recipes.py) (60 steps of the model's recipe on real Fashion-MNIST,
        then validation top-1) in float32 and in bf16-mixed, same seed: a switch may become a CPU
        default only where it learns as float32 does.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch

import zoo
from zoo import bench
from zoo.recipe_check import check
from zoo.runtime import keep_freed_memory_in_heap

CONVNETS = ("lenet", "lenet_bn", "alexnet", "vgg11", "nin", "googlenet", "resnet18", "densenet")
VARIANTS = {"float32": ("32-true", False), "bf16": ("bf16-mixed", False), "channels_last": ("32-true", True),
            "bf16_channels_last": ("bf16-mixed", True)}  # fmt: skip


def speed(name: str, batch_size: int, steps: int) -> dict[str, float]:
    cpu = torch.device("cpu")
    out = {}
    for variant, (precision, channels_last) in VARIANTS.items():
        recipe = zoo.get_spec(name).recipe.replace(schedule="none", batch_size=batch_size, channels_last=channels_last)
        torch.manual_seed(0)
        model = zoo.create_model(name, recipe=recipe)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        dm = bench.zoo_datamodule(model, batch_size, cpu)
        dm.channels_last = channels_last
        out[variant] = bench.plain_loop(model, bench.zoo_batches(dm), steps, cpu, precision, warmup=1)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(CONVNETS))
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=3, help="timed steps per variant (after one warm-up step)")
    p.add_argument("--no-learn", action="store_true", help="skip the float32-vs-bf16 learning check")
    p.add_argument("--json")
    args = p.parse_args()
    keep_freed_memory_in_heap()  # as `zoo train` does on a CPU
    rows = []
    print(f"{'model':<10} {'fp32 img/s':>10} {'bf16':>7} {'ch-last':>7} {'both':>7} {'s/epoch':>8}  learns: fp32 / bf16 (val top-1)")
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        r = {"model": name, "batch_size": args.batch_size, **speed(name, args.batch_size, args.steps)}
        r["epoch_seconds_fp32"] = bench.EPOCH_IMAGES / r["float32"]
        line = (f"{name:<10} {r['float32']:>10,.0f} {r['bf16'] / r['float32']:>6.2f}x {r['channels_last'] / r['float32']:>6.2f}x "
                f"{r['bf16_channels_last'] / r['float32']:>6.2f}x {r['epoch_seconds_fp32']:>8.0f}")  # fmt: skip
        if not args.no_learn:
            for precision in ("32-true", "bf16-mixed"):
                c = check(name, changes={"precision": precision})
                r[f"learn_{precision}"] = {k: c[k] for k in ("ok", "loss_first", "loss_last", "val_acc")}
            f, b = r["learn_32-true"], r["learn_bf16-mixed"]
            line += f"  {'yes' if f['ok'] else 'NO'} ({f['val_acc']:.3f}) / {'yes' if b['ok'] else 'NO'} ({b['val_acc']:.3f})"
        print(line, flush=True)
        rows.append(r)
    if args.json:
        Path(args.json).write_text(json.dumps({"device": platform.machine(), "threads": torch.get_num_threads(),
                                               "torch": torch.__version__, "rows": rows}, indent=2) + "\n")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
