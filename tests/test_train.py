"""Real Lightning training runs on real Fashion-MNIST subsets, resuming, and the zoo command."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch

import zoo
from zoo.cli import build_parser, main
from zoo.train import train

from conftest import InterruptAt


def test_lenet_bn_learns_fashion_mnist(tmp_path):
    # 10,000 real training images, 2 epochs; held-out: the first 2,000 validation and test images.
    # Seeds 0-2 measured 0.797-0.805 test accuracy (chance: 0.10; the book's 10 full epochs: 0.880).
    # A fixed recipe, so the test does not move when the leaderboard recipe is tuned.
    # A whole Recipe replaces the model's (a dict would only change the fields it names).
    recipe = zoo.Recipe(optimizer="sgd", lr=0.1, momentum=0.9, schedule="cosine", batch_size=128, epochs=2)
    result = train("lenet_bn", model_kwargs={"recipe": recipe}, train_limit=10000, eval_limit=2000, out_dir=tmp_path, progress_bar=False)
    m = result.metrics
    assert m["test/acc"] > 0.77, m
    assert m["val/acc"] > 0.77, m
    run = result.run_dir
    assert (run / "checkpoints" / "last.ckpt").is_file() and result.best_checkpoint.is_file()
    written = json.loads((run / "metrics.json").read_text())
    assert written["test/acc"] == m["test/acc"] and written["recipe"]["epochs"] == 2
    assert (run / "logs" / "version_0" / "metrics.csv").is_file()
    # The final weights were exported as a checkpoint folder, in the run and in the local store.
    assert (run / "export" / "model.safetensors").is_file()
    exported = zoo.load("lenet_bn", source="store")
    x = torch.randn(4, 1, 28, 28)
    torch.testing.assert_close(exported(x), result.model.eval()(x), rtol=0, atol=0)
    assert exported.checkpoint["metrics"]["test/acc"] == m["test/acc"]
    # The Lightning checkpoint rebuilds the same network from its saved hyperparameters.
    restored = type(result.model).load_from_checkpoint(run / "checkpoints" / "last.ckpt", weights_only=True)
    x = torch.randn(4, 1, 28, 28)
    torch.testing.assert_close(restored.eval()(x), result.model.eval()(x))


def test_linreg_recovers_w_and_b(tmp_path):
    result = train("linreg", out_dir=tmp_path, progress_bar=False, test=False)
    w = result.model.head.weight.detach().squeeze()
    b = result.model.head.bias.detach().item()
    assert torch.allclose(w, torch.tensor([2.0, -3.4]), atol=0.05), w
    assert b == pytest.approx(4.2, abs=0.05)


def test_resume_after_interruption_matches_an_uninterrupted_run(tmp_path):
    # Dropout and augmentation both draw random numbers: the hard case for exact resumption.
    kwargs = dict(epochs=3, train_limit=1024, eval_limit=256, augment="standard", progress_bar=False, test=False,
                  model_kwargs={"hidden": (64, 64), "dropout": (0.2, 0.5)})  # fmt: skip
    straight = train("mlp", out_dir=tmp_path / "straight", **kwargs)

    with pytest.raises(SystemExit):  # Lightning turns Ctrl+C into a graceful exit(1)
        train("mlp", out_dir=tmp_path / "broken", callbacks=[InterruptAt(2)], **kwargs)
    ckpts = tmp_path / "broken" / "version_0" / "checkpoints"
    assert (ckpts / "last.ckpt").is_file() and (ckpts / "on_exception.ckpt").is_file()

    resumed = train("mlp", out_dir=tmp_path / "broken", resume=True, progress_bar=False, test=False)
    assert resumed.run_dir == tmp_path / "broken" / "version_0"
    assert resumed.metrics["epochs"] == 3 and resumed.metrics["global_step"] == straight.metrics["global_step"]
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=f"{name} differs after resuming")


def test_last_checkpoint_is_written_every_epoch_even_without_a_new_best(tmp_path):
    # Lightning 2.6 writes save_last's last.ckpt only when a top-k checkpoint is saved at the same
    # step. At a rate too small to move validation accuracy there is no new best after epoch 0, and
    # a Ctrl+C in epoch 2 then lost epoch 1 (--resume redid it).
    kwargs = dict(epochs=3, train_limit=512, eval_limit=256, progress_bar=False, test=False, recipe={"lr": 1e-9, "batch_size": 128})
    with pytest.raises(SystemExit):
        train("softmax", out_dir=tmp_path, callbacks=[InterruptAt(2)], **kwargs)
    ckpts = tmp_path / "version_0" / "checkpoints"
    last = torch.load(ckpts / "last.ckpt", weights_only=True, map_location="cpu")
    assert (last["epoch"], last["global_step"]) == (1, 2 * 4)
    assert [p.name for p in ckpts.glob("best-*.ckpt")] == ["best-00.ckpt"]  # the best is still the first epoch's


def test_zoo_list_shows_every_model_with_its_parameter_count(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in zoo.list_models():
        assert f"\n{name} " in out
    assert "46,764,746" in out and "11,178,378" in out and "224x224" in out


def test_zoo_train_runs_and_reports(tmp_path, capsys):
    code = main(["train", "softmax", "--epochs", "1", "--train-limit", "2000", "--eval-limit", "1000",
                 "--out", str(tmp_path), "--no-progress", "--lr", "0.05"])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "test/acc" in out and "version_0" in out
    metrics = json.loads((tmp_path / "version_0" / "metrics.json").read_text())
    assert metrics["recipe"]["lr"] == 0.05 and metrics["train_limit"] == 2000
    assert metrics["test/acc"] > 0.5


def test_every_recipe_field_is_a_flag_and_overrides_layer_on_the_models_recipe(tmp_path):
    flags = {a.dest for a in build_parser()._subparsers._group_actions[0].choices["train"]._actions}
    assert set(zoo.Recipe.field_names()) <= flags
    # Fields no flag reached before (momentum, nesterov, warmup_epochs, ema, mixup, cutmix), on a real run.
    code = main(["train", "softmax", "--epochs", "1", "--train-limit", "512", "--eval-limit", "256", "--out", str(tmp_path),
                 "--no-progress", "--no-test", "--optimizer", "sgd", "--momentum", "0.5", "--nesterov", "--warmup-epochs", "0.5",
                 "--ema", "0.9", "--mixup", "0.2", "--cutmix", "0.5"])  # fmt: skip
    assert code == 0
    recipe = json.loads((tmp_path / "version_0" / "metrics.json").read_text())["recipe"]
    assert recipe == zoo.get_spec("softmax").recipe.replace(
        epochs=1, optimizer="sgd", momentum=0.5, nesterov=True, warmup_epochs=0.5, ema=0.9, mixup=0.2, cutmix=0.5
    ).to_dict()
    assert recipe["schedule"] == "cosine" and recipe["weight_decay"] == 1e-4  # softmax's own, kept


def test_train_takes_recipe_fields_by_name(tmp_path):
    result = train("softmax", epochs=1, ema=0.5, train_limit=256, eval_limit=128, out_dir=tmp_path, progress_bar=False, test=False)
    assert result.model.recipe == zoo.get_spec("softmax").recipe.replace(epochs=1, ema=0.5)
    with pytest.raises(TypeError, match="unexpected keyword.*'epoch'"):
        train("softmax", epoch=1, out_dir=tmp_path)


def test_zoo_train_bad_input_is_one_clear_line(tmp_path, capsys):
    assert main(["train", "lenett"]) == 2
    assert "unknown model 'lenett'. Did you mean 'lenet'" in capsys.readouterr().err
    assert main(["train", "lenet", "--data-dir", str(tmp_path / "none")]) == 2
    assert "apt-get install dataset-fashion-mnist" in capsys.readouterr().err
    assert main(["train", "lenet", "--resume", "--out", str(tmp_path)]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "lenet", "--epochs", "0"])


class _LrTrace(L.Callback):
    def __init__(self):
        self.lrs = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


@pytest.mark.parametrize("schedule", ["cosine", "onecycle"])
def test_lr_schedules_warm_up_then_anneal(tmp_path, schedule):
    trace = _LrTrace()
    recipe = {"optimizer": "sgd", "lr": 0.2, "schedule": schedule, "warmup_epochs": 1.0, "epochs": 4, "batch_size": 128,
              "label_smoothing": 0.1}  # fmt: skip
    train("softmax", model_kwargs={"recipe": recipe}, train_limit=1280, eval_limit=256, out_dir=tmp_path,
          progress_bar=False, test=False, callbacks=[trace])  # fmt: skip
    lrs = trace.lrs
    assert len(lrs) == 40  # 4 epochs of 10 batches, stepped per batch
    peak = max(range(len(lrs)), key=lrs.__getitem__)
    assert lrs[0] < 0.2 * 0.5 and max(lrs) == pytest.approx(0.2, rel=0.05)
    assert all(a <= b for a, b in zip(lrs[:peak], lrs[1 : peak + 1]))  # warming up
    assert all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1 :]))  # annealing
    assert lrs[-1] < 0.02
    assert peak == 9  # the warm-up is exactly one epoch


def test_ema_weights_are_the_final_weights(tmp_path):
    from zoo.callbacks import EMA

    seen = {}

    class Probe(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            seen["live"] = {k: v.clone() for k, v in pl_module.head.state_dict().items()}
            seen["ema"] = next(cb for cb in trainer.callbacks if isinstance(cb, EMA)).ema.module

    recipe = zoo.Recipe(optimizer="sgd", lr=0.1, epochs=1, batch_size=128, ema=0.9)
    result = train("softmax", model_kwargs={"recipe": recipe}, train_limit=2048, eval_limit=500, out_dir=tmp_path,
                   progress_bar=False, callbacks=[Probe()])  # fmt: skip
    final = result.model.head.state_dict()
    assert torch.equal(final["weight"], seen["ema"].head.weight) and not torch.equal(final["weight"], seen["live"]["weight"])
    assert result.metrics["test/acc"] > 0.6
    # The average travels in the checkpoint, so a resumed run continues it.
    ckpt = torch.load(result.last_checkpoint, map_location="cpu", weights_only=True)
    assert any("ema" in state for state in ckpt["callbacks"].values())


def test_mixup_and_cutmix_train_on_soft_targets(tmp_path):
    recipe = zoo.Recipe(optimizer="adamw", lr=3e-3, epochs=2, batch_size=128, mixup=0.2, cutmix=1.0, label_smoothing=0.1)
    result = train("lenet_bn", model_kwargs={"recipe": recipe}, train_limit=4096, eval_limit=1000, out_dir=tmp_path, progress_bar=False)
    assert result.metrics["test/acc"] > 0.6, result.metrics
    with pytest.raises(ValueError, match="recipe.mixup and recipe.cutmix are alphas"):
        zoo.Recipe(mixup=-1)


def test_commands_are_quiet_unless_verbose(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "ZOO_HOME": str(tmp_path / "home")}
    args = [sys.executable, "-m", "zoo", "train", "softmax", "--epochs", "1", "--train-limit", "512", "--eval-limit", "128", "--no-progress"]
    quiet = subprocess.run([*args, "--out", str(tmp_path / "q")], capture_output=True, text=True, env=env, timeout=300)
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    noise = ("GPU available", "TPU available", "💡", "LeafSpec", "does not have many workers", "Trainer.fit` stopped")
    assert not [n for n in noise if n in quiet.stdout + quiet.stderr], quiet.stdout + quiet.stderr
    assert "softmax: 1 epochs" in quiet.stdout
    verbose = subprocess.run([*args, "--out", str(tmp_path / "v"), "--verbose"], capture_output=True, text=True, env=env, timeout=300)
    assert verbose.returncode == 0 and "GPU available" in verbose.stdout + verbose.stderr


def test_a_module_trains_under_lightnings_barebones_trainer():
    # barebones=True sets log_every_n_steps to 0, which the loss logging divided by.
    model = zoo.create_model("softmax", recipe={"schedule": "none"})
    dm = model.datamodule(train_limit=512, eval_limit=64)
    trainer = L.Trainer(barebones=True, max_steps=3, accelerator="cpu", limit_val_batches=0)
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 3


def test_flip_tta_averages_each_image_with_its_mirror_image():
    from zoo.train import evaluate

    model = zoo.load("lenet_bn")
    dm = model.datamodule(eval_limit=512, train_limit=1)
    dm.setup("test")
    hits = 0
    with torch.no_grad():
        for images, labels in dm.test_dataloader():
            x, y = dm.on_after_batch_transfer((images, labels), 0)
            hits += int(((model(x) + model(x.flip(-1))) / 2).argmax(-1).eq(y).sum())
    scores = evaluate(model, eval_limit=512, tta="flip")
    assert scores["test/acc"] == pytest.approx(hits / 512, abs=1e-6)
    assert model.tta is None and evaluate(model, eval_limit=512)["test/acc"] != scores["test/acc"]
    with pytest.raises(ValueError, match="tta must be"):
        evaluate(zoo.load("tiny_ssd"), eval_limit=8, tta="flip")
