"""Fine-tuning on real image folders built from Fashion-MNIST test images regrouped into new classes."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from zoo.cli import main
from zoo.data.folder import FolderError, ImageFolderDataModule
from zoo.finetuning import FineTuner, finetune
from zoo.callbacks import last_checkpoint

from conftest import InterruptAt

# New classes from the old ones: the target task is not the source task.
GROUPS = {"footwear": (5, 7, 9), "tops": (0, 2, 4, 6), "other": (1, 3, 8)}


def make_folder(root, fmnist, per_class: int, *, start: int = 0, odd: bool = False):
    images, labels = fmnist["test_images"], fmnist["test_labels"]
    for name, old in GROUPS.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        idx = torch.nonzero(torch.isin(labels, torch.tensor(old))).squeeze(1)[start : start + per_class]
        for i in idx.tolist():
            Image.fromarray(images[i].numpy()).save(root / name / f"{i}.png")
    if odd:
        gray = images[0].numpy()
        Image.fromarray(gray).convert("RGB").resize((40, 33)).save(root / "tops" / "rgb.jpg")
        Image.fromarray(gray).convert("RGBA").save(root / "tops" / "rgba.png")
        Image.fromarray(gray).convert("P").save(root / "tops" / "palette.gif")
        Image.fromarray(gray.astype(np.uint16) * 257).save(root / "tops" / "deep.png")
        (root / "tops" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
        (root / "tops" / "notes.txt").write_text("not an image, ignored")
    return root


def test_folder_datamodule_reads_every_mode_and_splits_by_class(tmp_path, fmnist):
    root = make_folder(tmp_path / "data", fmnist, 20, odd=True)
    dm = ImageFolderDataModule(root, val_fraction=0.25)
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image file.*broken\.png"):
        dm.setup()
    assert dm.classes == ["footwear", "other", "tops"]
    # 20 + 20 + (20 + 4 odd images); a quarter of each class held out.
    assert len(dm.train_set) + len(dm.val_set) == 64
    assert sorted(dm.val_set.labels) == [0] * 5 + [1] * 5 + [2] * 6
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape[1:] == (1, 28, 28) and x.dtype == torch.float32
    again = ImageFolderDataModule(root, val_fraction=0.25)
    with pytest.warns(UserWarning):
        again.setup()
    assert [t.sum().item() for t in again.val_set.images] == [t.sum().item() for t in dm.val_set.images]
    with pytest.raises(FolderError, match="cannot read image .*broken.png"):
        ImageFolderDataModule(root, strict=True).setup()


def test_folder_errors_name_the_folder(tmp_path, fmnist):
    with pytest.raises(FolderError, match="does not exist"):
        ImageFolderDataModule(tmp_path / "nope").setup()
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.png").write_bytes(b"")
    with pytest.raises(FolderError, match="has no class folders"):
        ImageFolderDataModule(tmp_path / "flat").setup()
    root = make_folder(tmp_path / "d", fmnist, 3)
    (root / "empty").mkdir()
    (root / "empty" / "readme.md").write_text("no images here")
    with pytest.raises(FolderError, match="class folder .*empty has no image files"):
        ImageFolderDataModule(root).setup()
    (root / "empty" / "readme.md").unlink()
    Image.fromarray(fmnist["test_images"][0].numpy()).save(root / "empty" / "only.png")
    with pytest.raises(FolderError, match="'empty' .* has 1 readable image.*too few"):
        ImageFolderDataModule(root).setup()


def test_finetuner_copies_the_backbone_and_makes_a_new_head(tmp_path):
    source = zoo.load("lenet_bn")
    tuner = FineTuner(source="lenet_bn", num_classes=3, label_names=["a", "b", "c"], lr=1e-2, backbone_lr_ratio=0.1, schedule="none")
    assert tuner.head.out_features == 3 and tuner.model.label_names == ["a", "b", "c"]
    for key, value in tuner.backbone.state_dict().items():
        assert torch.equal(value, source.backbone.state_dict()[key]), key
    optimizer = tuner.configure_optimizers()
    head_ids = {id(p) for p in tuner.head.parameters()}
    for group in optimizer.param_groups:
        is_head = all(id(p) in head_ids for p in group["params"])
        assert group["lr"] == pytest.approx(1e-2 if is_head else 1e-3)
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == {id(p) for p in tuner.parameters()}


def _fit(module, dm, epochs, callbacks=(), ckpt_path=None, root=None):
    cbs = [cb for cb in (module.finetuning_callback(),) if cb is not None] + list(callbacks)
    if root is not None:
        cbs.append(last_checkpoint(root))
    trainer = L.Trainer(max_epochs=epochs, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, callbacks=cbs, enable_checkpointing=root is not None)  # fmt: skip
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path, weights_only=True)
    return trainer


def test_freeze_keeps_the_backbone_and_its_statistics(tmp_path, fmnist):
    dm = ImageFolderDataModule(make_folder(tmp_path / "d", fmnist, 30), batch_size=16)
    tuner = FineTuner(source="lenet_bn", num_classes=3, freeze="freeze", lr=1e-2)
    before = {k: v.clone() for k, v in tuner.backbone.state_dict().items()}
    head_before = tuner.head.weight.detach().clone()
    _fit(tuner, dm, 1)
    for key, value in tuner.backbone.state_dict().items():
        assert torch.equal(value, before[key]), f"frozen {key} changed"  # weights and BatchNorm statistics
    assert not torch.equal(tuner.head.weight, head_before)


def test_freeze_unfreeze_resumes_with_both_parameter_groups(tmp_path, fmnist):
    dm = ImageFolderDataModule(make_folder(tmp_path / "d", fmnist, 30), batch_size=16)
    kwargs = dict(source="lenet_bn", num_classes=3, freeze="freeze_unfreeze", unfreeze_epoch=1, lr=1e-2, backbone_lr_ratio=0.1, schedule="none")
    first = FineTuner(**kwargs)
    _fit(first, dm, 2, root=tmp_path / "ckpt")  # epoch 0 head only, epoch 1 unfrozen
    lrs = sorted({round(g["lr"], 6) for g in first.trainer.optimizers[0].param_groups})
    assert lrs == [1e-3, 1e-2]

    resumed = FineTuner(**kwargs)
    weights_at_resume = None

    class Probe(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            nonlocal weights_at_resume
            weights_at_resume = {k: v.clone() for k, v in pl_module.backbone.state_dict().items()}
            groups = trainer.optimizers[0].param_groups
            assert sorted({round(g["lr"], 6) for g in groups}) == [1e-3, 1e-2]
            in_optimizer = {id(p) for g in groups for p in g["params"]}
            assert all(p.requires_grad and id(p) in in_optimizer for p in pl_module.backbone.parameters())

    trainer = _fit(resumed, dm, 3, callbacks=[Probe()], ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    assert trainer.current_epoch == 3 and weights_at_resume is not None
    changed = [k for k, v in resumed.backbone.state_dict().items() if not torch.equal(v, weights_at_resume[k])]
    assert changed, "the backbone did not train after resuming past the unfreeze epoch"


def test_l2sp_pulls_the_copied_weights_back_to_the_pretrained_ones(tmp_path, fmnist):
    dm = ImageFolderDataModule(make_folder(tmp_path / "d", fmnist, 30), batch_size=16)
    source = {k: v.clone() for k, v in zoo.load("lenet_bn").backbone.state_dict().items()}
    # At l2sp = 1 / lr each step ends with a full pull back: the copied weights stay as loaded.
    pinned = FineTuner(source="lenet_bn", num_classes=3, lr=1e-2, backbone_lr_ratio=1.0, l2sp=100.0, schedule="none")
    free = FineTuner(source="lenet_bn", num_classes=3, lr=1e-2, backbone_lr_ratio=1.0, schedule="none")
    head_before = pinned.head.weight.detach().clone()
    for tuner in (pinned, free):
        _fit(tuner, dm, 1)
    for name, p in pinned.backbone.named_parameters():
        if p.ndim > 1:
            torch.testing.assert_close(p.detach(), source[name], rtol=0, atol=1e-7, msg=f"{name} left its pretrained value")
            assert not torch.allclose(dict(free.backbone.named_parameters())[name].detach(), source[name]), name
    assert not torch.equal(pinned.head.weight, head_before)  # the new head is not anchored
    assert pinned.configure_optimizers().param_groups[2]["weight_decay"] == 0.0  # no decay towards zero as well


class _LearningRates(L.Callback):
    """Every step's (head lr, backbone lr or None while frozen)."""

    def __init__(self):
        self.steps = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        groups = trainer.optimizers[0].param_groups
        head_ids = {id(p) for p in pl_module.head.parameters()}
        head = {g["lr"] for g in groups if all(id(p) in head_ids for p in g["params"])}
        rest = {g["lr"] for g in groups if not all(id(p) in head_ids for p in g["params"])}
        assert len(head) == 1 and len(rest) <= 1, (head, rest)
        self.steps.append((head.pop(), rest.pop() if rest else None))


def test_a_cosine_schedule_drives_the_unfrozen_backbone_too(tmp_path, fmnist):
    # A LambdaLR only schedules the groups it was made with: the backbone that joins at the
    # unfreeze kept its constant rate. Now it follows the head at its ratio, resumed runs too.
    dm = ImageFolderDataModule(make_folder(tmp_path / "d", fmnist, 30), batch_size=16)
    kwargs = dict(source="lenet_bn", num_classes=3, freeze="freeze_unfreeze", unfreeze_epoch=1, lr=1e-2,
                  backbone_lr_ratio=0.1, schedule="cosine", warmup_epochs=1)  # fmt: skip
    rates = _LearningRates()
    _fit(FineTuner(**kwargs), dm, 4, callbacks=[rates], root=tmp_path / "ckpt")
    per_epoch = len(rates.steps) // 4
    head = [h for h, _ in rates.steps]
    assert head[per_epoch - 1] == pytest.approx(1e-2)  # warmed up over the first epoch
    assert all(a > b for a, b in zip(head[per_epoch:], head[per_epoch + 1 :]))  # then down the cosine
    assert head[-1] < 0.1 * head[per_epoch - 1]
    assert all(b is None for _, b in rates.steps[:per_epoch])  # frozen in epoch 0
    for h, b in rates.steps[per_epoch:]:
        assert b == pytest.approx(0.1 * h), "the unfrozen backbone is off the schedule"

    # Two epochs, then resumed for four: from there on, the four-epoch run's schedule, step by step
    # (the first resumed step too, though the two-epoch cosine had ended at 0).
    short = _fit(FineTuner(**kwargs), dm, 2, root=tmp_path / "ckpt2")
    assert short.global_step == 2 * per_epoch and short.optimizers[0].param_groups[0]["lr"] == pytest.approx(0, abs=1e-12)
    again = _LearningRates()
    _fit(FineTuner(**kwargs), dm, 4, callbacks=[again], ckpt_path=str(tmp_path / "ckpt2" / "last.ckpt"))
    for (h, b), (h0, b0) in zip(again.steps, rates.steps[2 * per_epoch :], strict=True):
        assert h == pytest.approx(h0) and b == pytest.approx(b0)


def test_finetune_learns_exports_and_predicts(tmp_path, fmnist, capsys):
    data = make_folder(tmp_path / "data", fmnist, 60)
    result = finetune("lenet", data, epochs=5, lr=1e-2, batch_size=16, out_dir=tmp_path / "run", progress_bar=False)
    assert result["run_dir"] == str(tmp_path / "run" / "version_0") and result["export"] == str(tmp_path / "run" / "version_0" / "export")
    # 3 regrouped classes, 144 training and 36 validation images: measured 0.944 (from scratch: 0.333).
    assert result["val_acc"] > 0.8, result
    assert result["classes"] == ["footwear", "other", "tops"]
    model = zoo.load(result["export"])
    assert model.label_names == ["footwear", "other", "tops"] and model.num_classes == 3
    shoe = data / "footwear" / sorted(p.name for p in (data / "footwear").iterdir())[0]
    bag_index = int(torch.nonzero(fmnist["test_labels"] == 8)[0])
    Image.fromarray(fmnist["test_images"][bag_index].numpy()).convert("RGB").resize((64, 64)).save(tmp_path / "bag.jpg")
    assert main(["predict", "--model", result["export"], "--top-k", "2", str(shoe), str(tmp_path / "bag.jpg")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith(f"{shoe}: footwear ") and lines[1].startswith(f"{tmp_path / 'bag.jpg'}: other ")
    assert main(["predict", "--model", result["export"], str(tmp_path / "missing.png")]) == 1
    assert "cannot read image" in capsys.readouterr().err


def test_timm_source_finetunes_exports_and_loads(tmp_path, fmnist):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    reference = timm.create_model("resnet18", pretrained=False)  # stands in for downloaded weights (offline)
    weights = tmp_path / "resnet18.safetensors"
    save_file(reference.state_dict(), str(weights))
    tuner = FineTuner(source="timm:resnet18", num_classes=3, in_chans=1, input_size=32, timm_weights=str(weights))
    assert torch.equal(tuner.backbone.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)
    # timm adapts the RGB stem to gray by summing over colour, like zoo.load(in_chans=1).
    torch.testing.assert_close(tuner.backbone.conv1.weight, reference.conv1.weight.sum(1, keepdim=True))
    assert tuner.head.out_features == 3 and tuner.input_size == 32

    data = make_folder(tmp_path / "data", fmnist, 16)
    result = finetune("timm:resnet18", data, epochs=1, in_chans=1, input_size=32, timm_weights=str(weights),
                      batch_size=16, out_dir=tmp_path / "run", progress_bar=False)  # fmt: skip
    model = zoo.load(result["export"])
    assert model.model_name == "timm" and model.label_names == ["footwear", "other", "tops"]
    x = model.preprocess(Image.fromarray(fmnist["test_images"][0].numpy()))
    assert x.shape == (1, 1, 32, 32) and model(x).shape == (1, 3)
    assert "timm" not in zoo.list_models() and "timm" in zoo.list_models(external=True)


def test_compare_with_scratch_reports_every_arm_over_seeds(tmp_path, fmnist, capsys):
    import json

    data = make_folder(tmp_path / "data", fmnist, 12)
    args = ["finetune", "--source", "lenet_bn", "--data", str(data), "--epochs", "1", "--batch-size", "8", "--compare-scratch",
            "--seeds", "0,1", "--out", str(tmp_path / "run"), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "run" / "version_0" / "compare.json").read_text())
    assert summary["seeds"] == [0, 1] and list(summary["scratch"]) == ["softmax", "mlp", "lenet", "lenet_bn"]
    for arm in [summary["finetuned"], *summary["scratch"].values()]:
        assert len(arm["runs"]) == 2 and all(0.0 <= r <= 1.0 for r in arm["runs"])
        assert abs(arm["mean"] - sum(arm["runs"]) / 2) <= 1e-4 and arm["sd"] >= 0.0
    best = max(summary["scratch"], key=lambda n: summary["scratch"][n]["mean"])
    assert summary["best_scratch"] == best
    assert summary["margin"] == round(summary["finetuned"]["mean"] - summary["scratch"][best]["mean"], 4)
    assert " ± " in out and f"best from scratch: {best}" in out
    assert summary["run_dir"] == str(tmp_path / "run" / "version_0")
    assert (tmp_path / "run" / "version_0" / "seed-1" / "export" / "model.safetensors").is_file()
    assert main(["finetune", "--source", "lenet_bn", "--data", str(data), "--seeds", "0,1"]) == 2  # --seeds needs --compare-scratch
    assert "--seeds goes with --compare-scratch" in capsys.readouterr().err


def test_the_default_budget_is_counted_in_steps(tmp_path, fmnist):
    from zoo.finetuning import DEFAULT_STEPS, default_epochs

    # The steps the training loader really gives: it drops a last partial batch, so 100 images in
    # batches of 32 are 3 steps an epoch, not 4 (the budget was 225 steps, not 300).
    dm = ImageFolderDataModule(make_folder(tmp_path / "d", fmnist, 30), batch_size=16)
    dm.setup()
    per_epoch = len(dm.train_dataloader())
    assert DEFAULT_STEPS <= default_epochs(len(dm.train_set), 16) * per_epoch < DEFAULT_STEPS + per_epoch
    assert default_epochs(100, 32) == 100  # 3 batches an epoch
    assert default_epochs(50, 32) == 300  # 1 batch an epoch
    assert default_epochs(20, 32) == 300  # one short batch, not dropped; at most 300 epochs
    assert default_epochs(1000, 32) == 10
    assert default_epochs(100_000, 32) == 5  # at least 5 epochs


def _weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "export" / "model.safetensors"))


def test_finetune_resumes_where_it_stopped_and_ends_as_an_uninterrupted_run(tmp_path, fmnist, capsys):
    import json

    data = make_folder(tmp_path / "data", fmnist, 16)
    common = ["--source", "lenet_bn", "--data", str(data), "--batch-size", "8", "--no-progress"]
    assert main(["finetune", *common, "--epochs", "4", "--out", str(tmp_path / "straight")]) == 0
    # Augmentation on (crops and flips drawn per image while a batch is fetched), and the cosine
    # schedule's rate restored: Ctrl+C as epoch 2 starts, then --resume.
    with pytest.raises(SystemExit):
        finetune("lenet_bn", data, epochs=4, batch_size=8, out_dir=tmp_path / "split", progress_bar=False,
                 callbacks=[InterruptAt(2)], command="zoo finetune ... --epochs 4 --out " + str(tmp_path / "split"))  # fmt: skip
    capsys.readouterr()
    assert main(["finetune", "--resume", "--out", str(tmp_path / "split"), "--no-progress"]) == 0
    assert "version_0" in capsys.readouterr().out
    run = tmp_path / "split" / "version_0"
    assert [p.name for p in (tmp_path / "split").iterdir()] == ["version_0"]  # resumed in place, no new run
    straight = json.loads((tmp_path / "straight" / "version_0" / "finetune.json").read_text())
    resumed = json.loads((run / "finetune.json").read_text())
    assert (resumed["global_step"], straight["global_step"]) == (4 * 4, 4 * 4)  # 39 training images, batches of 8, the partial one dropped
    assert resumed["resumed_by"] and resumed["command"].endswith("--epochs 4 --out " + str(tmp_path / "split"))
    a, b = _weights(tmp_path / "straight" / "version_0"), _weights(run)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=f"{key} differs after resuming")
    # One metrics.csv per start, the first two epochs' rows kept.
    epochs = [sorted({int(row["epoch"]) for row in _csv(run / "logs" / f"version_{k}" / "metrics.csv") if row["val/acc"]})
              for k in (0, 1)]  # fmt: skip
    assert epochs == [[0, 1], [2, 3]]

    # What a resumed run cannot change, and what it cannot be, in one line each.
    assert main(["finetune", "--resume", "--lr", "0.5", "--out", str(tmp_path / "split")]) == 2
    assert "--lr: a resumed run keeps its recorded recipe" in capsys.readouterr().err
    assert (resumed["schedule"], resumed["warmup_epochs"], resumed["l2sp"]) == ("cosine", 0.2, 0.0)  # 5 % of 4 epochs
    assert main(["finetune", "--resume", "--schedule", "none", "--l2sp", "0.1", "--out", str(tmp_path / "split")]) == 2
    assert "--schedule, --l2sp: a resumed run keeps its recorded recipe" in capsys.readouterr().err
    assert main(["finetune", "--resume", "--data", str(tmp_path), "--out", str(tmp_path / "split")]) == 2
    assert f"fine-tunes data {data}, not {tmp_path}" in capsys.readouterr().err
    assert main(["finetune", "--resume", "--out", str(tmp_path / "nothing")]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert main(["train", "lenet_bn", "--resume", str(run / "checkpoints" / "last.ckpt")]) == 2
    assert "is a `zoo finetune` checkpoint: continue it with `zoo finetune --resume`" in capsys.readouterr().err
    assert main(["finetune", "--source", "lenet_bn"]) == 2
    assert "--data is required" in capsys.readouterr().err
    assert main(["finetune", *common, "--strategy", "freeze"]) == 2
    assert "what trains is --freeze freeze" in capsys.readouterr().err
    assert main(["finetune", *common, "--l2sp", "-1", "--out", str(tmp_path / "bad")]) == 2
    assert "l2sp and warmup_epochs must be >= 0" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def _csv(path):
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_finetune_precision_and_loggers_as_train(tmp_path, fmnist, capsys):
    import json

    data = make_folder(tmp_path / "data", fmnist, 16)
    args = ["finetune", "--source", "lenet_bn", "--data", str(data), "--epochs", "2", "--batch-size", "8", "--out", str(tmp_path / "ft"),
            "--precision", "bf16-mixed", "--logger", "tensorboard", "--freeze", "freeze"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr()
    # The run says its precision; a progress bar as train's (Rich's on stdout where rich is installed, else tqdm's on stderr).
    assert "bf16-mixed" in out.out and "Epoch 1" in out.out + out.err
    run = tmp_path / "ft" / "version_0"
    config = json.loads((run / "export" / "config.json").read_text())
    assert config["training"]["precision"] == "bf16-mixed" and config["training"]["freeze"] == "freeze"
    rows = _csv(run / "logs" / "version_0" / "metrics.csv")
    assert {"train/loss", "val/acc"} <= set(rows[0]) and sum(1 for r in rows if r["val/acc"]) == 2
    assert list((run / "tensorboard" / "version_0").glob("events.out.tfevents.*"))
    model = zoo.load(run / "export")
    assert next(model.parameters()).dtype == torch.float32  # mixed precision trains float32 weights

    # zoo train has the same logger option.
    assert main(["train", "softmax", "--epochs", "1", "--train-limit", "256", "--eval-limit", "128", "--no-test", "--no-progress",
                 "--logger", "tensorboard", "--out", str(tmp_path / "tr")]) == 0  # fmt: skip
    assert list((tmp_path / "tr" / "version_0" / "tensorboard" / "version_0").glob("events.out.tfevents.*"))


def test_finetune_ddp_on_two_cpu_processes(tmp_path, fmnist, capsys):
    """Real 2-process DDP (gloo) through `python -m zoo finetune`: Lightning starts the second
    process by running the same command again; each trains on half the images."""
    import json
    import os
    import subprocess
    import sys

    data = make_folder(tmp_path / "data", fmnist, 20)  # 48 training images
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "zoo", "finetune", "--source", "lenet_bn", "--data", str(data), "--epochs", "2", "--batch-size", "8",
           "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp", "--out", str(tmp_path / "ft"), "--no-progress"]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("fine-tuned lenet_bn") == 1  # the first process reports
    assert [p.name for p in (tmp_path / "ft").iterdir()] == ["version_0"]  # both processes wrote one run
    result = json.loads((tmp_path / "ft" / "version_0" / "finetune.json").read_text())
    assert result["world_size"] == 2
    assert result["global_step"] == 2 * 3  # 48 images, 24 a process: 3 batches of 8 an epoch (6 on one process)
    assert zoo.load(tmp_path / "ft" / "version_0" / "export").num_classes == 3
    capsys.readouterr()
    assert main([*cmd[3:], "--freeze", "freeze_unfreeze"]) == 2  # refused before any process starts
    assert "freeze_unfreeze cannot run on several processes" in capsys.readouterr().err


def test_the_split_class_task_keeps_its_source_off_the_target_classes(tmp_path, fmnist):
    """scripts/studies/make_transfer_folders.py, which builds the README's split-class data set: a lenet_bn
    source that learnt the five source classes (and only those), and disjoint folders of the other five."""
    import json
    from pathlib import Path

    from conftest import run_script
    from zoo.data.augment import BatchTransform

    script = Path(__file__).resolve().parents[1] / "scripts" / "studies" / "make_transfer_folders.py"
    root = tmp_path / "split"
    ran = run_script(script, root, "--per-class", 2, "--val-per-class", 3, "--source-epochs", 1, "--source-augment", "standard")
    assert ran.returncode == 0, ran.stderr[-3000:]
    source = zoo.load(root / "source")
    assert source.label_names == ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat"]
    training = json.loads((root / "source" / "config.json").read_text())["training"]
    assert training["epochs"] == 1 and training["augment"] == "standard"
    # It learnt the source classes: real test images of those, well above the 0.2 of chance.
    keep = fmnist["test_labels"] < 5
    x = BatchTransform(input_size=28, mean=source.mean, std=source.std)(fmnist["test_images"][keep][:1000, None])
    with torch.no_grad():
        acc = (source(x).argmax(1) == fmnist["test_labels"][keep][:1000]).float().mean().item()
    assert acc > 0.6, acc
    targets = ["Ankle_boot", "Bag", "Sandal", "Shirt", "Sneaker"]
    for split, count in (("target/train", 2), ("target/val", 3), ("test", 1000)):
        assert sorted(p.name for p in (root / split).iterdir()) == targets
        assert all(len(list((root / split / c).glob("*.png"))) == count for c in targets)
    for c in targets:  # the training and validation images are different images
        pixels = lambda split: {Image.open(p).tobytes() for p in (root / split / c).glob("*.png")}  # noqa: E731
        assert not pixels("target/train") & pixels("target/val")
    again = run_script(script, root)
    assert again.returncode == 1 and "is not empty; give a new folder" in again.stderr
    bad = run_script(script, tmp_path / "other", "--per-class", 0)
    assert bad.returncode == 2 and "--per-class: must be at least 1, got 0" in bad.stderr and not (tmp_path / "other").exists()


def test_finetuner_finetune_and_the_cli_train_one_recipe_to_the_same_weights(tmp_path, fmnist):
    """zoo.FinetuneRecipe is the one home of the defaults: the same seed and folder give the same
    weights through `zoo finetune`, zoo.finetune(...) and zoo.FineTuner under a plain Trainer."""
    data = make_folder(tmp_path / "data", fmnist, 48)
    assert main(["finetune", "--source", "lenet_bn", "--data", str(data), "--epochs", "3", "--out", str(tmp_path / "cli"), "--no-progress"]) == 0
    from_python = zoo.finetune("lenet_bn", data, epochs=3, out_dir=tmp_path / "py", progress_bar=False)

    recipe = zoo.FinetuneRecipe()
    assert (recipe.lr, recipe.backbone_lr_ratio, recipe.schedule, recipe.freeze) == (1e-2, 1.0, "cosine", "no_freeze")
    dm = ImageFolderDataModule.for_model(zoo.load("lenet_bn"), data, recipe=recipe, seed=0)
    dm.setup()
    L.seed_everything(0, workers=True, verbose=False)
    tuner = zoo.FineTuner(source="lenet_bn", num_classes=len(dm.classes), label_names=dm.classes)
    assert tuner.finetune_recipe == recipe
    trainer = L.Trainer(max_epochs=3, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0)  # fmt: skip
    trainer.fit(tuner, datamodule=dm)
    assert trainer.global_step == from_python["global_step"] > 3  # several steps: the schedule and the augmentation ran
    cli, py = _weights(tmp_path / "cli" / "version_0"), _weights(tmp_path / "py" / "version_0")
    for key, value in tuner.model.state_dict().items():
        torch.testing.assert_close(cli[key], py[key], rtol=0, atol=0, msg=f"{key}: zoo finetune and zoo.finetune differ")
        torch.testing.assert_close(value, py[key], rtol=0, atol=0, msg=f"{key}: zoo.FineTuner and zoo.finetune differ")
