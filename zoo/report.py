"""Pictures and tables of trained models: training curves, confusion matrices, the leaderboard."""

from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable

import torch

__all__ = ["plot_curves", "confusion_matrix", "plot_confusion", "write_leaderboard_csv", "read_leaderboard_csv",
           "leaderboard_markdown", "scenes_markdown", "models_markdown", "replace_between_markers", "recipe_fingerprint", "LEADERBOARD_FIELDS",
           "SCENES_FIELDS"]  # fmt: skip

LEADERBOARD_FIELDS = ["model", "input_size", "params", "epochs", "test_top1", "book_top1", "difference", "val_top1",
                      "wall_time_s", "hardware", "precision", "seed", "date", "command", "recipe"]  # fmt: skip

#: The second table: the models of the scenes (detection, segmentation), each scored its own way.
SCENES_FIELDS = ["model", "task", "input_size", "params", "epochs", "score", "test_score", "also", "val_score", "wall_time_s",
                 "hardware", "precision", "seed", "date", "command", "recipe"]  # fmt: skip

# Switches of a run, not of the recipe: a GPU run sets them on the command line.
_RUN_SWITCHES = ("precision", "channels_last", "compile", "compile_mode", "static_shapes", "fused", "eval_batch_size")
STALE = "recipe changed since this run: waiting for a GPU run"


def recipe_fingerprint(recipe: dict[str, Any]) -> str:
    """12 hex digits naming what a recipe trains with (not how fast): a leaderboard row whose
    fingerprint is not the registry's current one was measured with an older recipe."""
    core = {k: float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
            for k, v in sorted(recipe.items()) if k not in _RUN_SWITCHES}  # fmt: skip
    return hashlib.sha256(json.dumps(core, sort_keys=True).encode()).hexdigest()[:12]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    return plt


def plot_curves(log_dirs: Iterable[str | os.PathLike], out: str | os.PathLike, title: str) -> Path:
    """Loss and train/validation accuracy per epoch from Lightning CSV logs (every log version of
    a run, in order, so a resumed run draws as one), as the book draws them while training."""
    rows: list[dict[str, str]] = []
    for d in log_dirs:
        f = Path(d) / "metrics.csv"
        if f.is_file():
            with f.open() as fh:
                rows += list(csv.DictReader(fh))
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    if rows:
        # Loss is logged every few steps, accuracies once an epoch: put both on an epoch axis.
        # (The test rows after the last epoch carry the next epoch's number: leave them out.)
        fitted = [r for r in rows if r.get("train/loss") or any(k.startswith("val/") and v for k, v in r.items())]
        epochs = max(int(float(r["epoch"])) for r in fitted or rows) + 1
        steps = max(int(r["step"]) for r in fitted or rows) + 1
        loss = [(int(r["step"]) * epochs / steps, float(r["train/loss"])) for r in rows if r.get("train/loss")]
        if loss:
            ax.plot(*zip(*loss), label="train loss", lw=1)
        # Scores on an axis of their own, 0 to 1: a detector's loss starts above 10. Classifiers log
        # accuracy; the scene models their own score (mAP@0.5, mean IoU).
        scores = ax.twinx()
        scores.set_ylim(0, 1)
        scores.set_ylabel("score")
        for colour, (key, label) in enumerate((("train/acc", "train acc"), ("val/acc", "val acc"), ("val/map50", "val mAP@0.5"), ("val/miou", "val mean IoU")), 1):
            pts = [(float(r["epoch"]) + 1, float(r[key])) for r in rows if r.get(key)]
            if pts:
                scores.plot(*zip(*pts), marker="o", ms=3, label=label, color=f"C{colour}")
        handles = [h for a in (ax, scores) for h in a.get_legend_handles_labels()[0]]
        ax.legend(handles, [h.get_label() for h in handles], loc="center right")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return _save(plt, fig, out)


def _save(plt: Any, fig: Any, out: str | os.PathLike) -> Path:
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


@torch.no_grad()
def confusion_matrix(model: Any, *, data_dir: str | None = None, eval_limit: int | None = None, device: str = "cpu") -> torch.Tensor:
    """(true class, predicted class) counts of ``model`` on Fashion-MNIST's test set."""
    from torchmetrics.classification import MulticlassConfusionMatrix

    from .data import FashionMNISTDataModule

    dm = FashionMNISTDataModule.for_model(model, data_dir=data_dir, eval_limit=eval_limit)
    dm.setup("test")
    matrix = MulticlassConfusionMatrix(model.num_classes).to(device)
    model = model.to(device).eval()
    for images, labels in dm.test_dataloader():
        x = dm.transform(images.to(device), train=False)
        matrix.update(model(x).argmax(-1), labels.to(device))
    return matrix.compute().cpu()


def plot_confusion(matrix: torch.Tensor, labels: list[str], out: str | os.PathLike, title: str) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 5.5))
    ax.imshow(matrix.float() / matrix.sum(1, keepdim=True).clamp(min=1), cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    for i in range(len(labels)):
        for j in range(len(labels)):
            n = int(matrix[i, j])
            if n:
                ax.text(j, i, n, ha="center", va="center", fontsize=6, color="white" if i == j else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return _save(plt, fig, out)


def read_leaderboard_csv(path: str | os.PathLike) -> dict[str, dict[str, str]]:
    path = Path(path)
    if not path.is_file():
        return {}
    with path.open() as fh:
        return {row["model"]: row for row in csv.DictReader(fh)}


def write_leaderboard_csv(rows: Iterable[dict[str, Any]], path: str | os.PathLike, order: list[str],
                          fields: list[str] = LEADERBOARD_FIELDS) -> Path:  # fmt: skip
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rank = {name: i for i, name in enumerate(order)}
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for row in sorted(rows, key=lambda r: rank.get(r["model"], len(rank))):
            writer.writerow({k: row.get(k, "") for k in fields})
    return path


def leaderboard_markdown(rows: Iterable[dict[str, Any]], waiting: Iterable[str] = (),
                         current: dict[str, str] | None = None) -> str:  # fmt: skip
    """The README table. ``current`` maps model names to the fingerprints of their registered
    recipes: a row measured with another recipe says so in its state column."""
    lines = [
        "| model | input | params | epochs | test top-1 | book | difference | hardware | wall time | precision | state |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|---|---|",
    ]
    for r in rows:
        stale = current is not None and r.get("recipe") and r["recipe"] != current.get(r["model"])
        lines.append(
            f"| `{r['model']}` | {r['input_size']}×{r['input_size']} | {int(r['params']):,} | {r['epochs']} | "
            f"**{float(r['test_top1']):.4f}** | {float(r['book_top1']):.3f} | {float(r['difference']):+.4f} | "
            f"{r['hardware']} | {float(r['wall_time_s']):.0f} s | {r['precision']} | {STALE if stale else 'current recipe'} |"
        )
    for name in waiting:
        lines.append(f"| `{name}` | | | | | | | | | | waiting for a GPU run |")
    return "\n".join(lines)


def scenes_markdown(rows: Iterable[dict[str, Any]]) -> str:
    """The README table of the scene models: each row's test score, its other score, the
    validation score, where and how long it trained, and the command that made it."""
    lines = ["| model | task | params | epochs | test score | also | validation | hardware | wall time | command |",
             "|---|---|---:|---:|---:|---|---:|---|---:|---|"]  # fmt: skip
    for r in rows:
        lines.append(
            f"| `{r['model']}` | {r['task']} | {int(r['params']):,} | {r['epochs']} | {r['score']} **{float(r['test_score']):.4f}** | "
            f"{r['also']} | {float(r['val_score']):.4f} | {r['hardware']} | {float(r['wall_time_s']) / 60:.1f} min | `{r['command']}` |"
        )
    return "\n".join(lines)


def models_markdown(rows: dict[str, dict[str, Any]], scene_rows: dict[str, dict[str, Any]], manifest: dict[str, dict[str, Any]]) -> str:
    """The README's one model table: every registered model with its chapter, size, the book's
    score and the zoo's, and whether weights can be loaded. The zoo's score is that of the weights
    ``zoo.load`` gives (the manifest's, re-measured on the file) where there are such weights, else
    the leaderboard run's."""
    from .registry import get_spec, list_models

    lines = ["| model | chapter | what it is | params | input | book | zoo | weights |",
             "|---|---|---|---:|---:|---:|---:|---|"]  # fmt: skip
    for name in list_models():
        spec, entry, row = get_spec(name), manifest.get(name, {}), rows.get(name) or scene_rows.get(name) or {}
        score_key = f"test/{getattr(spec.model_class, 'score', '')}"
        if entry.get("metrics", {}).get(score_key) is not None:
            score = entry["metrics"][score_key]
        else:
            score = row.get("test_top1") or row.get("test_score")
        label = "" if spec.task in ("classification", "regression") else f"{spec.model_class.score_label} "
        params = spec.book_params or entry.get("params") or row.get("params")
        size = f"{spec.input_size}×{spec.input_size}" if spec.input_size else "–"
        weights = "bundled" if entry.get("bundled") else "on the Hub" if entry.get("revision") else "none yet: train it"
        if spec.task == "regression":
            weights = "trains in seconds"
        lines.append(f"| `{name}` | {spec.chapter} | {spec.description.rstrip('.')} | {int(params):,} | {size} | "
                     f"{f'{spec.book_top1:.3f}' if spec.book_top1 else '–'} | "
                     f"{f'{label}**{float(score):.4f}**' if score else '–'} | {weights} |")  # fmt: skip
    return "\n".join(lines)


def replace_between_markers(text: str, name: str, body: str) -> str:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start not in text or end not in text:
        raise ValueError(f"README has no {start} ... {end} markers")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body}\n{end}{tail}"
