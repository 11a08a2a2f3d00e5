"""scripts/check_recipes.py: the CPU check that a recipe learns, run for real on Fashion-MNIST
(the small classifiers here; every classifier with `python scripts/check_recipes.py --all`)."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import Ran, run_script

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "check_recipes.py"


def check(tmp_path, *args: str) -> tuple[Ran, list[dict]]:
    out = tmp_path / "check.json"
    proc = run_script(SCRIPT, *args, "--json", out)
    return proc, json.loads(out.read_text()) if out.is_file() else []


def test_the_registered_recipes_learn(tmp_path):
    # The small classifiers (DenseNet's 60 CPU steps cost the suite half a minute; run
    # `python scripts/check_recipes.py --all` for every classifier).
    proc, results = check(tmp_path, "--all", "--models", "softmax,mlp,lenet,lenet_bn")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert "4 of 4 checked recipes learn" in proc.stdout
    for r in results:
        assert r["ok"] and r["steps"] == 60 and r["loss_last"] < 0.9 * r["loss_first"] and r["val_acc"] >= 0.25, r
    assert {r["model"]: r["batch_size"] for r in results}["softmax"] == 64  # its 256 capped: same lr, a noisier batch


def test_a_recipe_that_does_not_learn_fails_the_check(tmp_path):
    # Steps far too small: the loss cannot fall. Far too large: SGD diverges.
    proc, results = check(tmp_path, "--models", "softmax", "--set", "lr=1e-7")
    assert proc.returncode == 1 and "FAILS: loss did not fall" in proc.stdout, proc.stdout + proc.stderr[-2000:]
    proc, results = check(tmp_path, "--models", "mlp", "--set", "optimizer=sgd", "--set", "lr=1000")
    assert proc.returncode == 1 and not results[0]["ok"], proc.stdout + proc.stderr[-2000:]
    assert results[0]["changes"] == {"optimizer": "sgd", "lr": 1000}


def test_bad_arguments_are_one_clear_line(tmp_path):
    proc, _ = check(tmp_path, "--models", "tiny_ssd")
    assert proc.returncode == 2 and "tiny_ssd is not a classifier" in proc.stderr
    proc, _ = check(tmp_path, "--set", "learning_rate=1")
    assert proc.returncode == 2 and "--set takes FIELD=VALUE with a recipe field" in proc.stderr


def test_recipes_a_full_run_measured_are_not_rechecked_by_default(tmp_path):
    proc, results = check(tmp_path, "--models", "softmax,lenet")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert "measured by a full run of this recipe: test top-1 0.8449" in proc.stdout
    assert [r["why"] for r in results] == ["skipped", "skipped"] and "2 measured by a full run, not re-checked" in proc.stdout
