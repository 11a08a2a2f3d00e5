"""The speed switches of a recipe (static shapes, fused optimizer, torch.compile), the speedrun
preset and the benchmark's MFU, on real Fashion-MNIST with a real Trainer. Their speed is measured
by scripts/benchmarks/benchmark.py and scripts/benchmarks/gpu_speed.sh; here: that they change nothing they should not."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch

import zoo
from conftest import run_script
from zoo.cli import main
from zoo.data import FashionMNISTDataModule
from zoo.data.fashion_mnist import PAD_LABEL
from zoo.train import evaluate, train

ROOT = Path(__file__).resolve().parents[1]


def test_static_shapes_drop_the_last_training_batch_and_pad_evaluation_batches():
    dm = FashionMNISTDataModule(batch_size=256, eval_batch_size=512, train_limit=1000, eval_limit=700, static_shapes=True)
    dm.setup()
    train_sizes = [len(y) for _, y in dm.train_dataloader()]
    assert train_sizes == [256, 256, 256]  # 1000 = 3 x 256 + 232 dropped
    val = [dm.on_after_batch_transfer(b, 0) for b in dm.val_dataloader()]
    assert [x.shape[0] for x, _ in val] == [512, 512]
    x, y = val[-1]
    assert (y[:188] != PAD_LABEL).all() and (y[188:] == PAD_LABEL).all()  # 700 - 512 real images, then padding
    # Without the switch, nothing changes.
    plain = FashionMNISTDataModule(batch_size=256, eval_batch_size=512, train_limit=1000, eval_limit=700)
    plain.setup()
    assert [len(y) for _, y in plain.train_dataloader()] == [256, 256, 256, 232]


def test_padded_evaluation_scores_exactly_as_unpadded():
    # The bundled LeNet on 700 real test images, in batches of 512: the padded 188-image batch must
    # not count its 324 blank images in the accuracy or the mean loss.
    model = zoo.load("lenet")
    plain = evaluate(model, eval_limit=700, batch_size=512, accelerator="cpu")
    model.recipe = model.recipe.replace(static_shapes=True)
    padded = evaluate(model, eval_limit=700, batch_size=512, accelerator="cpu")
    assert padded["test/acc"] == pytest.approx(plain["test/acc"], abs=1e-6)
    assert padded["test/loss"] == pytest.approx(plain["test/loss"], rel=1e-5)
    assert 0.85 < plain["test/acc"] < 0.95 and plain["test/loss"] < 0.5  # the real LeNet, not chance


def _short_run(tmp_path, name: str, **switches):
    torch.manual_seed(0)
    result = train("lenet", epochs=1, train_limit=2560, eval_limit=512, batch_size=256, lr=0.05, out_dir=tmp_path / name,
                   progress_bar=False, test=False, **switches)  # fmt: skip
    log = next((result.run_dir / "logs").glob("version_*/metrics.csv")).read_text().splitlines()
    header = log[0].split(",")
    losses = [float(r.split(",")[header.index("train/loss")]) for r in log[1:] if r.split(",")[header.index("train/loss")]]
    return result, losses


def test_fused_and_compiled_training_follow_eager_training(tmp_path):
    # Same seed, data and recipe: the fused optimizer and the compiled network must give the same
    # training curve as eager PyTorch (up to float rounding in a different kernel order).
    eager, eager_losses = _short_run(tmp_path, "eager", static_shapes=True)
    fused, fused_losses = _short_run(tmp_path, "fused", static_shapes=True, fused=True)
    compiled, compiled_losses = _short_run(tmp_path, "compiled", static_shapes=True, fused=True, compile=True)
    assert eager.metrics["global_step"] == 10 and len(eager_losses) == 1  # 2560 / 256 steps; loss logged at the 10th
    assert eager_losses[0] < 2.2  # it learned something in 10 steps
    assert fused_losses[0] == pytest.approx(eager_losses[0], rel=1e-4)
    assert compiled_losses[0] == pytest.approx(eager_losses[0], rel=1e-3)
    assert compiled.metrics["val/acc"] == pytest.approx(eager.metrics["val/acc"], abs=0.01)
    assert fused.model.trainer.optimizers[0].defaults["fused"] is True
    assert eager.model.trainer.optimizers[0].defaults["fused"] is None  # PyTorch's own choice
    # The compiled model's weights save and load like any other (nn.Module.compile keeps the keys).
    sd = compiled.model.state_dict()
    assert not any("_orig_mod" in k for k in sd) and set(sd) == set(eager.model.state_dict())
    assert zoo.load(str(compiled.run_dir / "export")).recipe.compile is True


def test_the_recipe_switches_are_not_part_of_the_recipe_fingerprint():
    from zoo.report import recipe_fingerprint

    r = zoo.get_spec("resnet18").recipe
    fast = r.replace(static_shapes=True, fused=True, compile=True, compile_mode="reduce-overhead", precision="bf16-mixed")
    assert recipe_fingerprint(fast.to_dict()) == recipe_fingerprint(r.to_dict())
    assert recipe_fingerprint(r.replace(lr=0.2).to_dict()) != recipe_fingerprint(r.to_dict())


def test_speedrun_preset_and_its_errors(tmp_path, capsys):
    spec = zoo.get_spec("resnet18")
    speedrun = spec.get_recipe("speedrun")
    assert speedrun.static_shapes and speedrun.fused and speedrun.precision == "bf16-mixed" and speedrun.batch_size == 512
    assert spec.get_recipe("default") == spec.recipe
    with pytest.raises(KeyError, match="resnet18 has no recipe preset 'fast'; it has: default, speedrun"):
        spec.get_recipe("fast")
    assert main(["train", "lenet", "--recipe", "speedrun"]) == 2
    assert "lenet has no recipe preset 'speedrun'; it has: default" in capsys.readouterr().err
    # A preset builds the model with it, and flags still layer on top (a tiny real run on the CPU).
    code = main(["train", "resnet18", "--recipe", "speedrun", "--precision", "32-true", "--epochs", "1", "--batch-size", "32",
                 "--train-limit", "64", "--eval-limit", "32", "--out", str(tmp_path), "--no-progress", "--no-test"])  # fmt: skip
    assert code == 0
    metrics = json.loads((tmp_path / "version_0" / "metrics.json").read_text())
    assert metrics["recipe"] == speedrun.replace(precision="32-true", epochs=1, batch_size=32).to_dict()
    assert metrics["global_step"] == 2 and 0 < metrics["process_seconds"] < 3600
    # The training loops alone, as the speedruns time them (validation and test left out).
    assert 0 < metrics["train_seconds"] < metrics["fit_seconds"] < metrics["process_seconds"]


def test_benchmark_counts_flops_and_reports_mfu(tmp_path):
    from zoo import bench as benchmark

    # softmax regression: one 784 -> 10 matmul forward (2 x 784 x 10 FLOPs an image) and one for the
    # weights' gradient; the input needs no gradient.
    model = zoo.create_model("softmax")
    assert benchmark.train_flops_per_image(model, 28, 1) == 2 * (2 * 784 * 10)
    assert benchmark.peak_flops("NVIDIA H100 PCIe", "bf16-mixed") == 756e12
    assert benchmark.peak_flops("NVIDIA H200", "32-true") == 494.5e12
    assert benchmark.peak_flops("cpu (x86_64, 2 cores)", "32-true") is None
    out = tmp_path / "bench.json"
    proc = run_script(ROOT / "scripts" / "benchmarks" / "benchmark.py", "--model", "lenet", "--device", "cpu", "--only", "train", "--train-steps", "5",
                      "--warmup", "2", "--repeats", "1", "--static-shapes", "--fused", "--peak-tflops", "1", "--json", out)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(out.read_text())
    assert r["mfu_lightning"] == pytest.approx(r["train_lightning"] * r["train_flops_per_image"] / 1e12)
    assert "MFU" in proc.stdout and r["train_flops_per_image"] > 1e6
