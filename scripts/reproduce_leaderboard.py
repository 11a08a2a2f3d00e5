#!/usr/bin/env python
"""Retrain (or re-evaluate) every model with its recipe and rewrite the leaderboard.

    python scripts/reproduce_leaderboard.py --quick                         # whole pipeline, minutes on CPU
    python scripts/reproduce_leaderboard.py --models softmax,mlp,lenet,lenet_bn --eval-only
    python scripts/reproduce_leaderboard.py --models alexnet,vgg11,nin,googlenet,resnet18,densenet \\
        --accelerator gpu --precision bf16-mixed --channels-last            # the GPU rows

For each selected model: train with the registry recipe (exporting the checkpoint folder to the
local store), or with --eval-only load the existing checkpoint; evaluate the final weights with the
one shared routine (zoo.train.evaluate) on the official 10,000 test images and the validation
split; draw its training curves and test confusion matrix (results/plots/); then write
results/leaderboard.csv, the tables of docs/reproducing.md and the README's model table, and checkpoints.json. A model that
fails is reported and the others go on (exit status 1 at the end). --quick trains a few steps on
small subsets and writes results/leaderboard-quick.csv only: it proves the pipeline, not a number.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import shlex
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

import torch

import zoo
from zoo.checkpoint import CONFIG_NAME
from zoo.manifest import BUNDLED_DIR, portable, read_manifest, regenerate, write_manifest
from zoo.report import (
    confusion_matrix,
    leaderboard_markdown,
    models_markdown,
    plot_confusion,
    plot_curves,
    SCENES_FIELDS,
    read_leaderboard_csv,
    recipe_fingerprint,
    replace_between_markers,
    scenes_markdown,
    write_leaderboard_csv,
)
from zoo.runtime import store_dir
from zoo.train import evaluate, train

ROOT = Path(__file__).resolve().parents[1]

QUICK = dict(max_steps=8, train_limit=2048, eval_limit=500)


def is_scene_model(name: str) -> bool:
    """A detector or segmenter of the Fashion-MNIST scenes: the second table."""
    return zoo.get_spec(name).task in ("detection", "segmentation")


def select(patterns: str) -> list[str]:
    names = [n for n in zoo.list_models() if issubclass(zoo.get_spec(n).model_class, zoo.ImageClassifier) or is_scene_model(n)]
    chosen = [n for n in names if any(fnmatch.fnmatch(n, p.strip()) for p in patterns.split(","))]
    if not chosen:
        raise SystemExit(f"no model of the leaderboards matches {patterns!r}; they are: {', '.join(names)}")
    return chosen


def log_dirs(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "logs").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))


def find_run_logs(name: str, roots: list[Path]) -> list[Path]:
    """The CSV logs of the newest run of ``name`` under any of ``roots`` (for --eval-only plots)."""
    for root in roots:
        runs = sorted((root / name).glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
        if runs and log_dirs(runs[-1]):
            return log_dirs(runs[-1])
    return []


def trained(name: str, args: argparse.Namespace, command: str) -> tuple:
    """(model, its CSV log folders, command, wall seconds, hardware, seed, date, epochs): trained
    now with the registry recipe, or with --eval-only as the stored checkpoint recorded it."""
    quick = QUICK if args.quick else {}
    if args.eval_only:
        model = zoo.load(name)
        config = json.loads((Path(model.checkpoint["path"]) / CONFIG_NAME).read_text())
        training = config.get("training", {})
        logs = find_run_logs(name, [Path(args.out), ROOT / "runs" / "bundle", ROOT / "runs"])
        row_command = portable(training.get("command") or "")
        wall, hardware, seed, date = training.get("fit_seconds"), training.get("device"), training.get("seed"), training.get("date")
        epochs = model.recipe.epochs
    else:
        overrides = {k: v for k, v in dict(precision=args.precision, channels_last=args.channels_last or None,
                                          compile=args.compile or None, epochs=args.epochs).items() if v is not None}  # fmt: skip
        if args.quick:
            overrides["epochs"] = 1
        result = train(name, seed=args.seed, accelerator=args.accelerator, devices=args.devices, out_dir=Path(args.out) / name,
                       progress_bar=not args.no_progress, command=command, **overrides, **quick)  # fmt: skip
        model, m = result.model, result.metrics
        logs = log_dirs(result.run_dir)
        row_command = command
        wall, hardware, seed, date, epochs = m["fit_seconds"], m["device"], m["seed"], m["date"], m["epochs"]
    return model, logs, row_command, wall, hardware, seed, date, epochs


def run_scene_model(name: str, args: argparse.Namespace, command: str) -> dict:
    """A row of the scene models' table: the test score (mAP@0.5, mean IoU), the others, validation."""
    model, logs, row_command, wall, hardware, seed, date, epochs = trained(name, args, command)
    eval_limit = QUICK["eval_limit"] if args.quick else None
    test = evaluate(model, eval_limit=eval_limit, accelerator=args.accelerator)
    val = evaluate(model, split="val", eval_limit=eval_limit, accelerator=args.accelerator)
    if logs:
        plot_curves(logs, Path(args.plots) / f"{name}-curves.png", f"{name}: training curves")
    others = [f"{k.split('/')[1]} {v:.4f}" for k, v in test.items() if k not in (f"test/{model.score}", "test/loss")]
    return {
        "model": name, "task": model.task, "input_size": model.input_size, "params": sum(p.numel() for p in model.parameters()),
        "epochs": epochs, "score": model.score_label, "test_score": f"{test[f'test/{model.score}']:.4f}", "also": "; ".join(others),
        "val_score": f"{val[f'val/{model.score}']:.4f}", "wall_time_s": f"{float(wall or 0):.1f}", "hardware": hardware or "",
        "precision": model.recipe.precision, "seed": seed if seed is not None else "",
        "date": date or datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": row_command,
        "recipe": recipe_fingerprint(model.recipe.to_dict()),
    }  # fmt: skip


def run_one(name: str, args: argparse.Namespace, command: str) -> dict:
    spec = zoo.get_spec(name)
    eval_limit = QUICK["eval_limit"] if args.quick else None
    model, logs, row_command, wall, hardware, seed, date, epochs = trained(name, args, command)
    test = evaluate(model, eval_limit=eval_limit, accelerator=args.accelerator)
    val = evaluate(model, split="val", eval_limit=eval_limit, accelerator=args.accelerator)
    plots = Path(args.plots)
    if logs:
        plot_curves(logs, plots / f"{name}-curves.png", f"{name}: training curves")
    device = "cuda" if torch.cuda.is_available() and args.accelerator != "cpu" else "cpu"
    matrix = confusion_matrix(model, eval_limit=eval_limit, device=device)
    plot_confusion(matrix, model.label_names, plots / f"{name}-confusion.png", f"{name}: test confusion matrix")
    assert int(matrix.sum()) == (eval_limit or 10_000)
    top1 = test["test/acc"]
    return {
        "model": name, "input_size": model.input_size, "params": sum(p.numel() for p in model.parameters()),
        "epochs": epochs, "test_top1": f"{top1:.4f}", "book_top1": f"{spec.book_top1:.3f}",
        "difference": f"{top1 - spec.book_top1:+.4f}", "val_top1": f"{val['val/acc']:.4f}",
        "wall_time_s": f"{float(wall or 0):.1f}", "hardware": hardware or "", "precision": model.recipe.precision,
        "seed": seed if seed is not None else "", "date": date or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": row_command, "recipe": recipe_fingerprint(model.recipe.to_dict()),
    }  # fmt: skip


def merge(csv_path: Path, rows: dict[str, dict], plots: Path) -> list[str]:
    """Rows measured elsewhere (a GPU run's leaderboard.csv, brought back) into ``rows``, as they
    were recorded. A row without a recipe fingerprint takes it from the run's
    ``logs/<model>/metrics.json`` beside the CSV, and that run's plots/ are copied beside ours."""
    import shutil

    merged = []
    for name, row in read_leaderboard_csv(csv_path).items():
        zoo.get_spec(name)  # a typo'd or foreign model name stops here
        if not row.get("recipe"):
            metrics = csv_path.parent / "logs" / name / "metrics.json"
            if metrics.is_file():
                row["recipe"] = recipe_fingerprint(json.loads(metrics.read_text())["recipe"])
        rows[name] = row
        merged.append(name)
        for kind in ("curves", "confusion"):
            src = csv_path.parent / "plots" / f"{name}-{kind}.png"
            if src.is_file():
                plots.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, plots / src.name)
    return merged


def update_tables(rows: dict[str, dict], scene_rows: dict[str, dict]) -> None:
    """docs/reproducing.md's two tables and the README's model table."""
    doc = ROOT / "docs" / "reproducing.md"
    order = zoo.list_models()
    ranked = [rows[n] for n in order if n in rows]
    waiting = [n for n in order if n not in rows and issubclass(zoo.get_spec(n).model_class, zoo.ImageClassifier)]
    current = {n: recipe_fingerprint(zoo.get_spec(n).recipe.to_dict()) for n in order}
    body = leaderboard_markdown(ranked, waiting, current)
    if ranked:
        best = max(ranked, key=lambda r: float(r["test_top1"]))["model"]
        body += (f"\n\n{len(ranked)} of {len(ranked) + len(waiting)} rows measured; a row whose recipe has changed since "
                 "its run keeps its old number until a new run replaces it.")  # fmt: skip
        body += (f"\n\nBest so far, `{best}`: training curves and test confusion matrix.\n\n"
                 f"![{best} training curves](../results/plots/{best}-curves.png) "
                 f"![{best} confusion matrix](../results/plots/{best}-confusion.png)")  # fmt: skip
    text = replace_between_markers(doc.read_text(), "leaderboard", body)
    scenes = [scene_rows[n] for n in order if n in scene_rows]
    doc.write_text(replace_between_markers(text, "scenes", scenes_markdown(scenes)) if scenes else text)
    readme = ROOT / "README.md"
    readme.write_text(replace_between_markers(readme.read_text(), "models", models_markdown(rows, scene_rows, read_manifest())))


def update_manifest(trained: list[str]) -> None:
    added = [(store_dir(n), None, None) for n in trained if not (BUNDLED_DIR / n).is_dir() and (store_dir(n) / CONFIG_NAME).is_file()]
    write_manifest(regenerate(added))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="*", help="comma-separated fnmatch patterns (default: every classifier)")
    p.add_argument("--quick", action="store_true", help="a few steps on subsets: check the pipeline in minutes")
    p.add_argument("--eval-only", action="store_true", help="evaluate existing checkpoints (zoo.load) instead of training")
    p.add_argument("--accelerator", default="auto")
    p.add_argument("--devices", default="auto")
    p.add_argument("--precision", help="override the recipes' precision, e.g. bf16-mixed on a GPU")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--epochs", type=int, help="override every selected recipe's epochs (to fit a time budget)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "runs" / "leaderboard"))
    p.add_argument("--results", help="CSV (default results/leaderboard.csv, or results/leaderboard-quick.csv with --quick)")
    p.add_argument("--scene-results", help="CSV of the detection and segmentation models (default results/leaderboard-scenes.csv, "
                   "or results/leaderboard-scenes-quick.csv with --quick)")  # fmt: skip
    p.add_argument("--plots", help="folder for the PNGs (default results/plots, or results/quick-plots)")
    p.add_argument("--no-readme", action="store_true", help="leave the tables (README.md, docs/reproducing.md) and checkpoints.json alone")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--merge", type=Path, help="add the rows of another run's leaderboard.csv (e.g. a GPU run's) instead of running")
    args = p.parse_args()
    if args.devices != "auto":
        args.devices = int(args.devices)
    args.results = Path(args.results or ROOT / "results" / ("leaderboard-quick.csv" if args.quick else "leaderboard.csv"))
    args.scene_results = Path(args.scene_results or ROOT / "results" / ("leaderboard-scenes-quick.csv" if args.quick else "leaderboard-scenes.csv"))
    args.plots = args.plots or str(ROOT / "results" / ("quick-plots" if args.quick else "plots"))
    command = shlex.join(["python", "scripts/reproduce_leaderboard.py", *sys.argv[1:]])

    rows = read_leaderboard_csv(args.results)
    scene_rows = read_leaderboard_csv(args.scene_results)
    failures: dict[str, str] = {}
    done: list[str] = []
    if args.merge:
        print(f"merged {', '.join(merge(args.merge, rows, Path(args.plots)))} from {args.merge}")
    for name in select(args.models) if not args.merge else []:
        start = time.perf_counter()
        print(f"\n=== {name} ===", flush=True)
        try:
            if is_scene_model(name):
                scene_rows[name] = row = run_scene_model(name, args, command)
                print(f"=== {name}: test {row['score']} {row['test_score']} ({row['also']}), {time.perf_counter() - start:.0f} s", flush=True)
            else:
                rows[name] = run_one(name, args, command)
                print(f"=== {name}: test top-1 {rows[name]['test_top1']} (book {rows[name]['book_top1']}), "
                      f"{time.perf_counter() - start:.0f} s", flush=True)  # fmt: skip
            done.append(name)
        except Exception as err:  # one model's failure must not stop the others
            traceback.print_exc()
            failures[name] = f"{type(err).__name__}: {err}"
            print(f"=== {name}: FAILED ({failures[name]})", flush=True)
    write_leaderboard_csv(rows.values(), args.results, zoo.list_models())
    print(f"\nwrote {args.results}")
    if scene_rows:
        write_leaderboard_csv(scene_rows.values(), args.scene_results, zoo.list_models(), SCENES_FIELDS)
        print(f"wrote {args.scene_results}")
    if not args.quick and not args.no_readme:
        if not args.eval_only and not args.merge:
            update_manifest(done)
        update_tables(rows, scene_rows)
        print("updated docs/reproducing.md, the README's model table and checkpoints.json")
    for name, why in failures.items():
        print(f"FAILED {name}: {why}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
