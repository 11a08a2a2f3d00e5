"""scripts/reproduce_leaderboard.py end to end on two small models (its --quick mode), and its
behaviour when one model fails."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from conftest import run_script
from zoo.manifest import BUNDLED_DIR

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "reproduce_leaderboard.py"


def run(tmp_path, *args):
    out = [f"--out={tmp_path / 'runs'}", f"--results={tmp_path / 'board.csv'}", f"--plots={tmp_path / 'plots'}", "--no-progress"]
    return run_script(SCRIPT, *args, *out)


def rows(path):
    with open(path) as fh:
        return {r["model"]: r for r in csv.DictReader(fh)}


def test_quick_pipeline_trains_evaluates_plots_and_writes_the_table(tmp_path):
    proc = run(tmp_path, "--quick", "--models", "softmax,lenet")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    board = rows(tmp_path / "board.csv")
    assert list(board) == ["softmax", "lenet"]
    for name, row in board.items():
        assert 0.1 < float(row["test_top1"]) <= 1.0 and row["book_top1"] in ("0.834", "0.776")
        assert abs(float(row["difference"]) - (float(row["test_top1"]) - float(row["book_top1"]))) < 1e-3
        assert row["command"].startswith("python scripts/reproduce_leaderboard.py --quick")
        for kind in ("curves", "confusion"):
            assert (tmp_path / "plots" / f"{name}-{kind}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Trained checkpoints were exported to the (test's) local store.
    assert (Path(os.environ["ZOO_HOME"]) / "checkpoints" / "lenet" / "model.safetensors").is_file()


def test_a_failing_model_is_reported_and_the_others_go_on(tmp_path):
    # nin has no weights anywhere (a fresh ZOO_HOME, not bundled, not on the Hub): --eval-only fails for it.
    proc = run(tmp_path, "--eval-only", "--models", "nin,softmax", "--no-readme")
    assert proc.returncode == 1
    assert "FAILED nin: WeightsNotFoundError" in proc.stdout
    board = rows(tmp_path / "board.csv")
    # Re-evaluated, the bundled file scores exactly what its config.json recorded at training.
    recorded = json.loads((BUNDLED_DIR / "softmax" / "config.json").read_text())["metrics"]["test/acc"]
    assert list(board) == ["softmax"] and board["softmax"]["test_top1"] == f"{recorded:.4f}"


def test_scene_models_get_their_own_table(tmp_path):
    # The bundled segmenter re-evaluated (--quick: 500 scenes) into the second table, not the first.
    proc = run(tmp_path, "--eval-only", "--quick", "--models", "fcn", f"--scene-results={tmp_path / 'scenes.csv'}")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (row,) = rows(tmp_path / "scenes.csv").values()
    assert row["model"] == "fcn" and row["task"] == "segmentation" and row["score"] == "mean IoU"
    assert 0.3 < float(row["test_score"]) <= 1.0 and row["also"].startswith("pixel_acc ")
    assert row["command"] == "python scripts/bundle_weights.py --models fcn"  # as recorded, without its --out folder
    assert not (tmp_path / "board.csv").exists() or "fcn" not in rows(tmp_path / "board.csv")
