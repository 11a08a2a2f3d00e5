#!/usr/bin/env python
"""Compare faster_rcnn (or mask_rcnn) settings on the validation scenes before a full training is
spent on one: each variant (constructor arguments of the model; a "recipe" key holds recipe fields
that change its registered recipe) trains for a few short epochs of new scenes from several seeds,
and its validation mAP (and mask mAP) is reported as mean +- sd over the seeds. The test scenes
are never read. Runs write to a temporary ZOO_HOME, so the store's models are left alone. Variants
measured with the same settings add to the ``--out`` file's earlier ones.

    python scripts/studies/rcnn_variants.py --variants 'base={"representation_size": 256}' 'head1024={"representation_size": 1024}' --seeds 0,1
    python scripts/studies/rcnn_variants.py --model mask_rcnn --variants 'lr1e-3={}' 'lr3e-4={"recipe": {"lr": 3e-4}}'
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import tempfile
from pathlib import Path


def parse_variant(text: str) -> tuple[str, dict]:
    name, sep, kwargs = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"a variant is NAME=JSON, got {text!r}")
    try:
        value = json.loads(kwargs)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{name}: {e}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"{name}: the JSON must be an object of constructor arguments")
    return name, value


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="faster_rcnn", choices=["faster_rcnn", "mask_rcnn"])
    p.add_argument("--variants", nargs="+", type=parse_variant, required=True, metavar="NAME=JSON")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--train-limit", type=int, default=2560, help="training scenes per epoch")
    p.add_argument("--eval-limit", type=int, default=500, help="validation scenes")
    p.add_argument("--out", type=Path, help="default: results/rcnn-variants.json, results/mask_rcnn-variants.json")
    args = p.parse_args()
    args.out = args.out or Path("results/rcnn-variants.json" if args.model == "faster_rcnn" else f"results/{args.model}-variants.json")
    os.environ["ZOO_HOME"] = tempfile.mkdtemp(prefix="zoo-rcnn-")  # the store's faster_rcnn is not touched
    from zoo.train import train

    seeds = [int(s) for s in args.seeds.split(",")]
    settings = {"epochs": args.epochs, "train_limit": args.train_limit, "eval_limit": args.eval_limit}
    # Variants add to the file's earlier ones when they were measured the same way.
    earlier = json.loads(args.out.read_text()) if args.out.is_file() else {}
    results = earlier if earlier.get("settings") == settings else {"settings": settings, "variants": {}}
    command = shlex.join(["python", "scripts/studies/rcnn_variants.py", *sys.argv[1:]])
    scores = ("val_map50", "val_map") + (("val_mask_map50", "val_mask_map") if args.model == "mask_rcnn" else ())
    for name, kwargs in args.variants:
        runs = []
        model_kwargs = {k: v for k, v in kwargs.items() if k != "recipe"}
        for seed in seeds:
            r = train(args.model, recipe=kwargs.get("recipe"), model_kwargs=model_kwargs, seed=seed, epochs=args.epochs, train_limit=args.train_limit,
                          eval_limit=args.eval_limit, test=False, progress_bar=False, out_dir=Path(os.environ["ZOO_HOME"]) / "runs" / name)  # fmt: skip
            m = r.metrics
            runs.append({"seed": seed, **{k: round(float(m[k.replace("_", "/", 1)]), 4) for k in scores},
                         "fit_seconds": round(float(m.get("fit_seconds", 0)), 1)})  # fmt: skip
            print(name, json.dumps(runs[-1]), flush=True)
        summary = {k: (round(statistics.mean(r[k] for r in runs), 4), round(statistics.stdev(r[k] for r in runs), 4) if len(runs) > 1 else 0.0)
                   for k in scores}  # fmt: skip
        results["variants"][name] = {"kwargs": kwargs, "runs": runs, "mean_sd": summary, "command": command}
        print(name, "mean, sd:", summary, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
