"""Faults a hostile but fair user meets: interruptions, bad numbers, bad folders, tampered
checkpoints, concurrent runs, bad data. Real processes, real signals, real files; each test failed
on the code before the hardening issue."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import lightning as L
import pytest
from lightning.pytorch.utilities.warnings import PossibleUserWarning
import torch
from PIL import Image

import zoo
from zoo.checkpoint import CheckpointError, load_checkpoint
from zoo.cli import main
from zoo.data.folder import FolderError, ImageFolderDataModule
from zoo.callbacks import TrainingDiverged
from zoo.runs import find_resume_checkpoint
from zoo.train import train

ROOT = Path(__file__).resolve().parents[1]


def _ctrl_c_works() -> None:
    # A shell running the suite in the background hands its children SIGINT ignored, and Python
    # then never turns Ctrl+C into KeyboardInterrupt; a user's terminal does not.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def zoo_cli(*args: str, cwd: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "zoo.cli", *args], cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_ctrl_c_works)  # fmt: skip


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, f"{path} never appeared"
        time.sleep(0.1)


# ------------------------------------------------------------------------------------------ 1. resume
def _slow_run(out: Path, tmp_path: Path, seed: int) -> subprocess.Popen:
    # LeNet on 20,000 images in batches of 8: one epoch, long enough (~10 s on a fast machine) to
    # interrupt 3 s in, and a resumed run (the rest of that epoch) short enough for a loaded one.
    return zoo_cli("train", "lenet", "--epochs", "1", "--train-limit", "20000", "--eval-limit", "64", "--batch-size", "8",
                   "--seed", str(seed), "--out", str(out), "--no-progress", cwd=tmp_path)  # fmt: skip


def _interrupt_in_epoch_0(proc: subprocess.Popen, run: Path, sig: int) -> str:
    wait_for(run / "logs" / "version_0" / "hparams.yaml", proc)  # written as fit starts
    time.sleep(3)  # inside the first epoch (about 10 s long), before its last.ckpt
    assert not (run / "checkpoints" / "last.ckpt").exists()
    proc.send_signal(sig)
    return proc.communicate(timeout=120)[1]


def test_resume_never_continues_an_older_run(tmp_path):
    out = tmp_path / "runs"
    first = train("softmax", epochs=1, train_limit=512, eval_limit=128, out_dir=out, progress_bar=False, test=False, seed=5)
    before = (first.run_dir / "metrics.json").read_text()
    proc = _slow_run(out, tmp_path, seed=7)
    _interrupt_in_epoch_0(proc, out / "version_1", signal.SIGKILL)  # no chance to write anything
    with pytest.raises(FileNotFoundError, match=r"newest run .*version_1 stopped before writing a checkpoint.*--resume .*version_0"):
        find_resume_checkpoint(out)
    assert main(["train", "lenet", "--resume", "--out", str(out)]) == 2
    assert (first.run_dir / "metrics.json").read_text() == before  # the older run is untouched


def test_resume_after_ctrl_c_continues_from_on_exception_ckpt(tmp_path):
    out = tmp_path / "runs"
    proc = _slow_run(out, tmp_path, seed=7)
    err = _interrupt_in_epoch_0(proc, out / "version_0", signal.SIGINT)
    assert f"continue it with: zoo train lenet --resume --out {out / 'version_0'}" in err, err[-2000:]
    ckpt = out / "version_0" / "checkpoints" / "on_exception.ckpt"
    assert ckpt.is_file() and find_resume_checkpoint(out) == ckpt
    assert main(["train", "lenet", "--resume", "--out", str(out), "--no-progress"]) == 0
    metrics = json.loads((out / "version_0" / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and metrics["seed"] == 7 and metrics["global_step"] == 20000 // 8
    assert "--resume" in metrics["resumed_by"][-1] and "--resume" not in metrics["command"]


class _CtrlCAt(L.Callback):
    """Ctrl+C, as Lightning meets it, before training batch ``step`` (0: before any step), or
    ``after`` it, once its optimizer step is taken."""

    def __init__(self, step: int, after: bool = False) -> None:
        self.step, self.after = step, after

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if not self.after and trainer.global_step == self.step:
            raise KeyboardInterrupt

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.after and trainer.global_step == self.step + 1:
            raise KeyboardInterrupt


_SMALL = dict(epochs=2, train_limit=2048, eval_limit=256, batch_size=64, progress_bar=False, seed=3)


@pytest.mark.parametrize("augment, after", [("none", False), ("strong", False), ("none", True)])  # strong: crop, flip, erasing
def test_a_run_resumed_from_on_exception_ends_exactly_as_an_uninterrupted_one(tmp_path, capsys, augment, after):
    whole = train("softmax", out_dir=tmp_path / "whole", augment=augment, **_SMALL)
    with pytest.raises(SystemExit), warnings.catch_warnings():
        warnings.simplefilter("error", PossibleUserWarning)  # Lightning's "your dataloader is not resumable"
        train("softmax", out_dir=tmp_path / "cut", callbacks=[_CtrlCAt(11, after)], augment=augment, **_SMALL)  # of 32 batches
    assert "continue it with: zoo train softmax --resume --out" in capsys.readouterr().err
    assert find_resume_checkpoint(tmp_path / "cut").name == "on_exception.ckpt"
    # Resumed without repeating the flags: the run's own (eval_limit too) come from its checkpoint.
    with warnings.catch_warnings():
        warnings.simplefilter("error", PossibleUserWarning)
        resumed = train("softmax", out_dir=tmp_path / "cut", resume=True, progress_bar=False)
    assert resumed.metrics["global_step"] == whole.metrics["global_step"] == 64
    assert resumed.metrics["eval_limit"] == 256 and resumed.metrics["test/acc"] == whole.metrics["test/acc"]
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_run_stopped_before_its_first_step_leaves_nothing_to_resume(tmp_path):
    with pytest.raises(SystemExit):
        train("softmax", out_dir=tmp_path / "runs", callbacks=[_CtrlCAt(0)], **_SMALL)
    assert not (tmp_path / "runs" / "version_0" / "checkpoints" / "on_exception.ckpt").exists()
    with pytest.raises(FileNotFoundError, match="stopped before writing a checkpoint"):
        find_resume_checkpoint(tmp_path / "runs")


@pytest.mark.parametrize("steps", ["0", "-5"])
def test_a_step_budget_that_is_no_budget_is_refused_before_a_run_folder_exists(tmp_path, capsys, steps):
    assert main(["train", "softmax", "--max-steps", steps, "--out", str(tmp_path / "runs")]) == 2
    assert "--max-steps" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_resume_refuses_other_data_limits_than_its_run(tmp_path):
    with pytest.raises(SystemExit):
        train("softmax", out_dir=tmp_path / "runs", callbacks=[_CtrlCAt(5)], **_SMALL)
    with pytest.raises(ValueError, match="started with eval_limit=256"):
        train("softmax", out_dir=tmp_path / "runs", resume=True, eval_limit=100, progress_bar=False)


def test_a_junk_resume_file_is_one_clear_line(tmp_path, capsys):
    junk = tmp_path / "last.ckpt"
    junk.write_bytes(b"not a checkpoint at all")
    assert main(["train", "lenet", "--resume", str(junk)]) == 2
    assert f"{junk} is not a readable training checkpoint" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ 2. NaN
@pytest.mark.parametrize("flag", [["--lr", "inf"], ["--weight-decay", "nan"], ["--momentum", "-1"]])
def test_non_finite_hyperparameters_are_refused(tmp_path, capsys, flag):
    assert main(["train", "softmax", "--epochs", "1", "--train-limit", "512", "--out", str(tmp_path), *flag]) == 2
    err = capsys.readouterr().err
    assert err.startswith("zoo: error: recipe.") and err.count("\n") == 1
    assert not (tmp_path / "zoo_home" / "checkpoints" / "softmax").exists()


def test_training_that_diverges_stops_and_exports_nothing(tmp_path, capsys):
    store = tmp_path / "zoo_home" / "checkpoints" / "softmax"
    with pytest.raises(TrainingDiverged, match="training diverged"):
        train("softmax", epochs=2, lr=1e30, optimizer="sgd", train_limit=4096, eval_limit=256, out_dir=tmp_path / "a", progress_bar=False)
    assert not store.exists() and not list((tmp_path / "a").glob("version_*/export"))
    assert main(["train", "softmax", "--epochs", "1", "--lr", "1e30", "--optimizer", "sgd", "--train-limit", "512",
                 "--out", str(tmp_path / "b"), "--no-progress"]) == 2  # fmt: skip
    assert "training diverged" in capsys.readouterr().err and not store.exists()


# ------------------------------------------------------------------------------------------ 3. fine-tune folders
def _folder(root: Path, classes: list[str], n: int = 4) -> Path:
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.new("L", (28, 28), color=40 * i).save(root / c / f"{i}.png")
    return root


@pytest.mark.parametrize("layout", ["one_class", "train_without_val", "split_one_class"])
def test_finetune_refuses_folders_that_make_no_classifier(tmp_path, layout):
    if layout == "one_class":
        root = _folder(tmp_path / "data", ["cats"])
        match = "has 1 class folder"
    elif layout == "train_without_val":
        root = tmp_path / "data"
        _folder(root / "train", ["cats", "dogs"])
        match = "has train/ but no val/"
    else:
        root = tmp_path / "data"
        _folder(root / "train", ["cats"])
        _folder(root / "val", ["cats"])
        match = "has 1 class folder"
    with pytest.raises(FolderError, match=match):
        ImageFolderDataModule(root=root).setup()
    assert main(["finetune", "--data", str(root), "--out", str(tmp_path / "out")]) == 2


# ------------------------------------------------------------------------------------------ 5. checkpoints
def _copy_bundled(tmp_path: Path, name: str = "softmax") -> Path:
    src = Path(zoo.load(name).checkpoint["path"])
    dst = tmp_path / f"{name}-copy"
    shutil.copytree(src, dst)
    return dst


def _edit_config(folder: Path, change) -> None:
    """Edit config.json as a determined attacker would: signed again when it is still an object."""
    from zoo.checkpoint import write_config

    config = change(json.loads((folder / "config.json").read_text()))
    if isinstance(config, dict):
        write_config(folder, config)
    else:
        (folder / "config.json").write_text(json.dumps(config))


def test_a_folder_named_like_a_model_does_not_shadow_it(tmp_path, monkeypatch):
    fake = _copy_bundled(tmp_path)
    fake.rename(tmp_path / "softmax")
    _edit_config(tmp_path / "softmax", lambda c: {**c, "sha256": None})
    monkeypatch.chdir(tmp_path)
    model = zoo.load("softmax")
    assert model.checkpoint["source"] == "bundled"
    with pytest.raises(CheckpointError, match="records no sha256"):
        zoo.load("./softmax")
    assert zoo.load("./softmax", trust_unverified=True).checkpoint["source"] == "path"


@pytest.mark.parametrize(
    "tamper, match",
    [
        (lambda c: [c], "must be an object"),
        (lambda c: {**c, "kwargs": None}, "must be an object"),
        (lambda c: {**c, "kwargs": {**c["kwargs"], "dropout_rate": 0.5}}, "kwargs do not build softmax"),
        (lambda c: {**c, "kwargs": {**c["kwargs"], "input_size": 12000}}, "input_size must be an integer from 8 to 1,024"),
        (lambda c: {k: v for k, v in c.items() if k != "sha256"}, "records no sha256"),
    ],
)
def test_tampered_configs_are_refused_before_anything_is_built(tmp_path, tamper, match):
    folder = _copy_bundled(tmp_path)
    _edit_config(folder, tamper)
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(folder)
    assert time.perf_counter() - start < 5


def test_a_truncated_file_signed_again_is_a_checkpoint_error(tmp_path, capsys):
    from zoo.checkpoint import sha256_file

    folder = _copy_bundled(tmp_path)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    _edit_config(folder, lambda c: {**c, "sha256": sha256_file(weights)})
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_checkpoint(folder)
    assert main(["eval", str(folder)]) == 2
    assert "not a readable safetensors file" in capsys.readouterr().err


def test_an_installed_wheel_reads_only_its_own_manifest(tmp_path):
    import zoo.manifest as manifest

    site = tmp_path / "site-packages"
    shutil.copytree(ROOT / "zoo", site / "zoo", ignore=shutil.ignore_patterns("__pycache__", "weights"))
    (site / "checkpoints.json").write_text("{}")  # a stray file beside the package
    code = "import zoo.manifest as m; print([str(p) for p in m.manifest_paths()])"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(site)},
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == str([str(site / "zoo" / "checkpoints.json")])
    assert manifest.manifest_paths()[0] == ROOT / "checkpoints.json"  # a source checkout still reads its own


# ------------------------------------------------------------------------------------------ 6. concurrency
def test_two_runs_started_together_in_one_folder_keep_their_own_versions(tmp_path):
    from zoo.runs import new_run_dir as _new_run_dir

    # Claiming a version is one atomic step: two claims in a row never get the same folder.
    assert _new_run_dir(tmp_path / "claims") != _new_run_dir(tmp_path / "claims")
    args = ("train", "softmax", "--epochs", "1", "--train-limit", "2048", "--eval-limit", "256", "--out", str(tmp_path / "runs"), "--no-progress")
    procs = [zoo_cli(*args, "--seed", str(seed), cwd=tmp_path) for seed in (1, 2)]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.communicate()
    seeds = sorted(json.loads((tmp_path / "runs" / v / "metrics.json").read_text())["seed"] for v in ("version_0", "version_1"))
    assert seeds == [1, 2]


def test_overlapping_saves_to_the_store_all_finish(tmp_path):
    code = (
        "import sys, zoo; from zoo.checkpoint import save_checkpoint\n"
        "m = zoo.create_model('mlp')\n"
        "for _ in range(15): save_checkpoint(m, sys.argv[1])\n"
    )
    dest = tmp_path / "store" / "mlp"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(dest)], env={**os.environ, "PYTHONPATH": str(ROOT)},
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]  # fmt: skip
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()[-2000:]
    assert load_checkpoint(dest).model_name == "mlp"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["mlp"]  # no leftovers
    mode = dest.stat().st_mode & 0o777
    assert mode == 0o777 & ~_umask()


def test_a_reader_during_saves_never_sees_a_false_hash_alarm(tmp_path):
    dest = tmp_path / "store" / "mlp"
    zoo.save_checkpoint(zoo.create_model("mlp"), dest)
    code = (
        "import sys, torch, zoo; from zoo.checkpoint import save_checkpoint\n"
        "for i in range(40):\n"
        "    torch.manual_seed(i); save_checkpoint(zoo.create_model('mlp'), sys.argv[1])\n"
    )
    writer = subprocess.Popen([sys.executable, "-c", code, str(dest)], env={**os.environ, "PYTHONPATH": str(ROOT)})
    loads, errors = 0, []
    while writer.poll() is None:
        try:
            load_checkpoint(dest)
            loads += 1
        except Exception as err:  # a hash alarm, "folder missing", or a raw FileNotFoundError: all wrong
            errors.append(f"{type(err).__name__}: {err}")
    assert writer.returncode == 0
    assert loads > 0 and not errors, (len(errors), errors[:2])


def test_a_reader_waits_out_the_instant_a_save_swaps_the_folder(tmp_path):
    # Between a save's two renames the folder is gone while its finished copy waits beside it
    # (.mlp-XXXX). A reader arriving then must wait for the rename, not report a missing folder.
    dest = tmp_path / "store" / "mlp"
    zoo.save_checkpoint(zoo.create_model("mlp"), dest)
    pending = dest.parent / ".mlp-pending"
    dest.rename(pending)
    threading.Timer(0.3, pending.rename, args=(dest,)).start()
    assert load_checkpoint(dest).model_name == "mlp"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ------------------------------------------------------------------------------------------ 7. bad data
def test_a_corrupt_data_file_leaves_no_run_folder(tmp_path, capsys):
    data = tmp_path / "fmnist"
    data.mkdir()
    from zoo.data.fashion_mnist import DEBIAN_DIR, FILES

    src = Path(os.environ.get("ZOO_DATA_DIR") or DEBIAN_DIR)
    for stem in FILES.values():
        shutil.copyfile(src / f"{stem}.gz", data / f"{stem}.gz")
    (data / "train-images-idx3-ubyte.gz").write_bytes((data / "train-images-idx3-ubyte.gz").read_bytes()[:5000])
    assert main(["train", "lenet", "--data-dir", str(data), "--out", str(tmp_path / "runs")]) == 2
    assert "train-images-idx3-ubyte" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


# ------------------------------------------------------------------------------------------ 9. smaller
def test_bad_model_arguments_and_inputs_are_one_clear_error():
    with pytest.raises(ValueError, match="in_chans must be 1 .gray. or 3"):
        zoo.create_model("lenet", in_chans=2)
    with pytest.raises(ValueError, match="alexnet cannot take 8x8 inputs"):
        zoo.create_model("alexnet", input_size=8)
    model = zoo.load("lenet")
    with pytest.raises(ValueError, match="expects normalised float images, got a torch.uint8 tensor"):
        model(torch.zeros(1, 1, 28, 28, dtype=torch.uint8))
    x = torch.randn(2, 1, 28, 28)
    assert torch.allclose(model(x.double()), model(x))  # float64 is cast to the weights' dtype


# ------------------------------------------------------------------------------------------ 8. offline Hub
def test_an_unreachable_hub_fails_fast_without_hf_hub_offline(tmp_path):
    from zoo.manifest import manifest_entry, write_manifest

    folder = zoo.save_checkpoint(zoo.create_model("googlenet"), tmp_path / "googlenet")
    manifest = tmp_path / "checkpoints.json"
    write_manifest([manifest_entry(folder, revision="0123456789abcdef0123456789abcdef01234567")], [manifest])
    # No network here, and nothing in the HF cache; HF_HUB_OFFLINE deliberately unset. An endpoint
    # nobody listens on stands for an unreachable Hub on a machine that has a network.
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env.update(ZOO_MANIFEST=str(manifest), ZOO_HOME=str(tmp_path / "home"), HF_HOME=str(tmp_path / "hf"),
               HF_ENDPOINT="https://127.0.0.1:9", PYTHONPATH=str(ROOT))  # fmt: skip
    code = "import time, zoo; t = time.perf_counter()\ntry: zoo.load('googlenet')\nexcept Exception as e: print(round(time.perf_counter() - t, 2)); print(e)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    seconds, message = out.stdout.split("\n", 1)
    assert float(seconds) < 5, out.stdout + out.stderr[-2000:]
    assert "the Hub was not reachable" in message and "zoo train googlenet" in message


# ------------------------------------------------------------------------------------------ 4. predict
def _real_image(fmnist, i: int = 0) -> Image.Image:
    return Image.fromarray(fmnist["test_images"][i].numpy(), mode="L")


def test_predict_skips_unreadable_images_reports_them_and_exits_1(tmp_path, capsys, fmnist):
    good1, good2, bad, bomb = tmp_path / "good1.png", tmp_path / "good2.png", tmp_path / "bad.jpg", tmp_path / "bomb.png"
    _real_image(fmnist, 0).save(good1)
    _real_image(fmnist, 1).save(good2)
    bad.write_bytes(b"\xff\xd8\xff not really a jpeg")
    Image.new("L", (14000, 14000)).save(bomb)  # 196 megapixels: PIL's decompression-bomb limit
    assert main(["predict", "--model", "lenet", str(good1), str(bad), str(bomb), str(good2)]) == 1
    out = capsys.readouterr()
    assert [line.split(":")[0] for line in out.out.splitlines()] == [str(good1), str(good2)]
    assert f"cannot read image {bad}" in out.err and f"cannot read image {bomb}" in out.err
    assert "skipped 2 input(s)" in out.err


def test_transparent_and_float_images_are_read_as_they_look(fmnist):
    model = zoo.load("lenet")
    item = _real_image(fmnist, 0)
    # Fully transparent: whatever colour the hidden pixels have, the image is blank (black).
    hidden = item.convert("RGBA")
    hidden.putalpha(0)
    blank = Image.new("L", item.size)
    assert torch.equal(model.preprocess(hidden), model.preprocess(blank))
    # Mode F with 0-255 values is the same picture as the uint8 one.
    as_float = Image.fromarray(fmnist["test_images"][0].numpy().astype("float32"), mode="F")
    assert torch.allclose(model.preprocess(as_float), model.preprocess(item), atol=1e-5)


def test_detector_outputs_of_inputs_with_the_same_name_do_not_overwrite_each_other(tmp_path, capsys, fmnist):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        _real_image(fmnist, 0).resize((96, 96)).save(tmp_path / folder / "scene.png")
    out = tmp_path / "out"
    assert main(["predict", "--model", "tiny_ssd", "--out-dir", str(out), str(tmp_path / "a" / "scene.png"), str(tmp_path / "b" / "scene.png")]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["scene-2.pred.png", "scene.pred.png"]
