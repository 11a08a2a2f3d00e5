"""Hostile inputs, third round (issue 30): decompression bombs on every surface that reads an
image, requests that hold a server's sockets or nest JSON without end, untrusted checkpoint
configs. Real files, real processes, a real server; each test failed on the code before its fix.
Memory cases assert a refusal (the one line that names the limit), never a timing."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from zoo.cli import main
from zoo.data.folder import ImageFolderDataModule
from zoo.data.images import MAX_PIXELS, ImageTooLarge, open_image

from hostile_files import bomb_png


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    path.write_bytes(bomb_png(13000, 13000))
    return path


# ------------------------------------------------------------------------- 1. decompression bombs
def test_the_reader_refuses_an_image_over_the_limit_from_its_header(bomb):
    assert bomb.stat().st_size < 600_000 and 13000 * 13000 > MAX_PIXELS
    with pytest.raises(ImageTooLarge, match="13000x13000 pixels is over the zoo's limit of 64,000,000"):
        open_image(bomb)
    # One pixel under the limit in a thin strip is read whole (the limit counts pixels, not sides).
    ok = Image.open(io.BytesIO(bomb_png(MAX_PIXELS // 4, 4)))
    assert ok.size == (MAX_PIXELS // 4, 4)


def test_pil_warning_is_an_error_even_under_a_raised_limit(bomb, monkeypatch):
    import zoo.data.images as images

    monkeypatch.setattr(images, "MAX_PIXELS", 10**12)  # only PIL's own warning stands in the way now
    with pytest.raises(ImageTooLarge, match="13000x13000 pixels is over PIL.s decompression-bomb limit"):
        open_image(bomb)


def test_predict_refuses_a_bomb_in_one_line(bomb, tmp_path, capsys, fmnist):
    good = tmp_path / "good.png"
    Image.fromarray(fmnist["test_images"][0].numpy()).save(good)
    assert main(["predict", "--model", "lenet", str(bomb), str(good)]) == 1
    out = capsys.readouterr()
    assert out.out.startswith(str(good))
    assert f"cannot read image {bomb}: 13000x13000 pixels is over the zoo's limit" in out.err


def test_image_folders_skip_a_bomb_or_refuse_it_when_strict(bomb, tmp_path, fmnist):
    for cls in ("a", "b"):
        (tmp_path / "data" / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(fmnist["test_images"][i].numpy()).save(tmp_path / "data" / cls / f"{i}.png")
    (tmp_path / "data" / "a" / "bomb.png").write_bytes(bomb.read_bytes())
    data = ImageFolderDataModule(tmp_path / "data", input_size=28, in_chans=1, mean=[0.5], std=[0.5], val_fraction=0.34)
    data.setup()
    assert [p.name for p in data.skipped] == ["bomb.png"]
    strict = ImageFolderDataModule(tmp_path / "data", input_size=28, in_chans=1, mean=[0.5], std=[0.5], strict=True)
    with pytest.raises(ValueError, match="over the zoo's limit"):
        strict.setup()


def test_stylize_refuses_a_bomb(bomb, tmp_path, capsys):
    assert main(["stylize", str(bomb), str(bomb), "--out", str(tmp_path / "out.png"), "--steps", "1"]) == 2
    assert "over the zoo's limit" in capsys.readouterr().err
    assert not (tmp_path / "out.png").exists()


def test_expanding_a_folder_decodes_no_image_named_like_the_zoos_pictures(bomb, tmp_path, capsys, fmnist):
    Image.fromarray(fmnist["test_images"][0].numpy()).save(tmp_path / "good.png")
    (tmp_path / "huge.pred.png").write_bytes(bomb.read_bytes())  # named like a picture the zoo drew, but not one
    (tmp_path / "huger.pred.png").write_bytes(bomb_png(15000, 15000))  # past PIL's own refusal in open()
    assert main(["predict", "--model", "lenet", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "huge.pred.png: 13000x13000 pixels is over the zoo's limit" in err
    assert "huger.pred.png" in err and "Traceback" not in err


@pytest.mark.parametrize("flag", [["--max-upload-mb", "inf"], ["--max-upload-mb", "nan"], ["--read-timeout", "0"],
                                  ["--max-connections", "0"], ["--batch-timeout", "-1"]])  # fmt: skip
def test_serve_refuses_limits_that_are_no_limits_in_one_line(flag, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "lenet", *flag])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag[0]}" in err and "Traceback" not in err


# ------------------------------------------------------------------ 2. untrusted checkpoint folders
ROOT = Path(__file__).resolve().parents[1]


def _copy(tmp_path: Path, name: str = "lenet", as_name: str | None = None) -> Path:
    dst = tmp_path / (as_name or f"{name}-copy")
    shutil.copytree(ROOT / "zoo" / "weights" / name, dst)
    return dst


def _edit(folder: Path, change, *, sign: bool = True) -> None:
    """Edit config.json; ``sign``: write its config_sha256 again, as a determined attacker would."""
    from zoo.checkpoint import write_config

    config = change(json.loads((folder / "config.json").read_text()))
    if sign:
        write_config(folder, config)
    else:
        (folder / "config.json").write_text(json.dumps(config, indent=2))


def _resign(folder: Path, change_weights=None) -> None:
    """Change the weights (or not) and write their new sha256 into config.json, as an attacker would."""
    from safetensors.torch import load_file, save_file

    from zoo.checkpoint import sha256_file

    if change_weights is not None:
        path = str(folder / "model.safetensors")
        save_file(change_weights(load_file(path)), path)
    _edit(folder, lambda c: {**c, "sha256": sha256_file(folder / "model.safetensors")})


def _kwargs(**more):
    return lambda c: {**c, "kwargs": {**c["kwargs"], **more}}


def test_a_config_asking_for_a_huge_model_is_refused_before_anything_is_allocated(tmp_path):
    huge = [(_copy(tmp_path, "mlp", "mlp-wide"), _kwargs(hidden=[2_000_000])),  # 6.8 GB of weights
            (_copy(tmp_path, "lenet", "many-classes"), _kwargs(num_classes=10**12, label_names=None)),
            (_copy(tmp_path, "lenet", "vgg-big"), lambda c: {**c, "model": "vgg11", "kwargs": {"input_size": 1024}})]  # fmt: skip
    for folder, change in huge:
        _edit(folder, change)
    # The process's own peak (VmHWM starts afresh at exec; getrusage's would include the forking worker's).
    script = ("import sys, zoo\nfrom zoo.checkpoint import CheckpointError\nfor f in sys.argv[1:]:\n"
              "    try:\n        zoo.load(f)\n        print('LOADED', f)\n    except CheckpointError as e:\n        print('REFUSED', e)\n"
              "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0])\n")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", script, *[str(f) for f, _ in huge]], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    assert out.stdout.count("REFUSED") == 3, out.stdout
    peak_kib = int(out.stdout.split("VmHWM:")[1].split()[0])
    assert peak_kib < 1_500_000, f"peak {peak_kib / 1e6:.1f} GB: something was allocated"


def test_only_regular_files_are_read_and_up_to_a_size(tmp_path):
    # A link to /dev/zero reads until memory runs out; a FIFO blocks a reader forever: so a real
    # process, with a timeout, reading each folder in turn.
    words = {"dev_zero": "not a regular file", "fifo": "not a regular file", "oversized": "over the limit"}
    for make in words:
        weights = _copy(tmp_path, "lenet", make) / "model.safetensors"
        weights.unlink()
        if make == "dev_zero":
            weights.symlink_to("/dev/zero")
        elif make == "fifo":
            os.mkfifo(weights)
        else:
            with open(weights, "wb") as f:  # sparse: no disk used
                f.truncate(3 * 2**30)
    script = ("import sys, zoo\nfrom zoo.checkpoint import CheckpointError\nfor f in sys.argv[1:]:\n"
              "    try:\n        zoo.load(f)\n        print('LOADED', f)\n    except CheckpointError as e:\n        print(e)\n")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", script, *[str(tmp_path / m) for m in words]], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert len(lines) == 3 and all(w in line for w, line in zip(words.values(), lines)), out.stdout


def test_a_link_to_a_regular_file_still_loads(tmp_path):
    # The Hugging Face cache is made of such links (snapshots/<rev>/model.safetensors -> ../../blobs/<hash>).
    folder = _copy(tmp_path)
    blob = tmp_path / "blob"
    (folder / "model.safetensors").rename(blob)
    (folder / "model.safetensors").symlink_to(blob)
    assert zoo.load(str(folder)).model_name == "lenet"


@pytest.mark.parametrize(
    "tamper, match",
    [
        (None, "nested too deeply"),  # config.json is "[[[[...]]]]", 100,000 deep
        (_kwargs(hidden=[-1]), "kwargs do not build mlp"),
        (_kwargs(hidden=[10**13]), "does not fit"),
        (_kwargs(hidden=[1e13]), "kwargs do not build mlp"),
        (_kwargs(std=[0.0]), "std"),
        (_kwargs(mean=[float("nan")]), "mean"),
        (_kwargs(std=[float("inf")]), "std"),
    ],
)
def test_tampered_configs_are_one_checkpoint_error(tmp_path, tamper, match):
    from zoo.checkpoint import CheckpointError

    folder = _copy(tmp_path, "mlp")
    if tamper is None:
        (folder / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    else:
        _edit(folder, tamper)
    with pytest.raises(CheckpointError, match=match):
        zoo.load(str(folder))


def test_non_finite_weights_signed_again_are_refused(tmp_path, capsys):
    from zoo.checkpoint import CheckpointError

    folder = _copy(tmp_path)
    _resign(folder, lambda state: {k: v.fill_(float("nan")) if k.endswith("weight") else v for k, v in state.items()})
    with pytest.raises(CheckpointError, match="not finite"):
        zoo.load(str(folder))
    assert main(["predict", "--model", str(folder), str(ROOT / "docs")]) == 2
    assert "not finite" in capsys.readouterr().err


def test_a_folder_of_another_model_under_a_registered_name_is_refused(tmp_path, monkeypatch):
    from zoo.checkpoint import CheckpointError

    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "home"))
    store = tmp_path / "home" / "checkpoints"
    store.mkdir(parents=True)
    _copy(tmp_path, "lenet").rename(store / "softmax")  # a LeNet filed under softmax
    with pytest.raises(CheckpointError, match="holds a 'lenet', not a 'softmax'"):
        zoo.load("softmax", source="store")


def test_an_edited_config_is_refused_and_a_re_signed_one_for_a_registered_name(tmp_path, monkeypatch):
    from zoo.checkpoint import CheckpointError

    renamed = lambda c: {**c, "label_names": ["Tee"] + c["label_names"][1:], "kwargs": {**c["kwargs"], "label_names": ["Tee"] + c["label_names"][1:]}}  # noqa: E731
    folder = _copy(tmp_path)
    _edit(folder, renamed, sign=False)  # the weights' hash still matches: only config.json changed
    with pytest.raises(CheckpointError, match="config.json does not match its recorded hash"):
        zoo.load(str(folder))
    # Signed again, a folder of one's own loads; filed in the store as the registered lenet, the
    # manifest's pin refuses it.
    _edit(folder, lambda c: c)
    assert zoo.load(str(folder)).label_names[0] == "Tee"
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "home"))
    (tmp_path / "home" / "checkpoints").mkdir(parents=True)
    shutil.copytree(folder, tmp_path / "home" / "checkpoints" / "lenet")
    assert zoo.load("lenet", source="store").label_names[0] == "Tee"  # your own training: its own hashes
    bundled = _copy(tmp_path, "lenet", "bundled-copy")
    _edit(bundled, renamed)
    monkeypatch.setattr("zoo.pretrained.BUNDLED_DIR", tmp_path / "fake-bundle")
    (tmp_path / "fake-bundle").mkdir()
    bundled.rename(tmp_path / "fake-bundle" / "lenet")
    with pytest.raises(CheckpointError, match=r"checkpoints.json"):
        zoo.load("lenet", source="bundled")


# ------------------------------------------------------------------------- 5. one line, or it works
def test_a_half_precision_batch_is_cast_like_float64(fmnist):
    net = zoo.load("lenet")
    x = net.preprocess([Image.fromarray(a.numpy()) for a in fmnist["test_images"][:4]])
    with torch.no_grad():
        assert torch.allclose(net(x.half()), net(x), atol=1e-2)
        assert net(x.double()).dtype == torch.float32


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_preprocess_refuses_pixels_that_are_not_numbers(bad):
    pre = zoo.load("lenet").preprocess
    image = np.zeros((28, 28), dtype=np.float32)
    image[3, 4] = bad
    with pytest.raises(ValueError, match="not finite"):
        pre(image)


def test_a_newline_in_a_file_name_keeps_one_table_line_an_image(tmp_path, capsys, fmnist):
    odd = tmp_path / "new\nline.png"
    Image.fromarray(fmnist["test_images"][0].numpy()).save(odd)
    assert main(["predict", "--model", "lenet", str(odd)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith(str(tmp_path / "new\\nline.png") + ":")


def test_eval_and_finetune_say_an_out_that_is_a_file_is_not_a_folder(tmp_path, capsys):
    data = tmp_path / "data"
    for cls in ("trouser", "bag"):
        (data / cls).mkdir(parents=True)
        for i in range(4):
            Image.new("L", (28, 28), 40 * i).save(data / cls / f"{i}.png")
    (tmp_path / "taken").write_text("mine")
    assert main(["eval", "lenet", "--data", str(data), "--out", str(tmp_path / "taken")]) == 2
    assert main(["finetune", "--data", str(data), "--out", str(tmp_path / "taken"), "--epochs", "1"]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert errors == [f"zoo: error: --out {tmp_path / 'taken'} is a file; give a folder"] * 2
    assert (tmp_path / "taken").read_text() == "mine"


def test_list_pretrained_survives_a_store_config_whose_kwargs_is_a_string(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "home"))
    (tmp_path / "home" / "checkpoints").mkdir(parents=True)
    folder = _copy(tmp_path, "lenet")
    _edit(folder, lambda c: {**c, "kwargs": "oops"})
    folder.rename(tmp_path / "home" / "checkpoints" / "lenet")
    assert main(["list", "--pretrained"]) == 0
    assert "lenet" in capsys.readouterr().out


def test_a_store_save_on_a_full_disk_keeps_the_old_folder_and_leaves_no_temporary_one(tmp_path):
    # A file-size limit stands in for a full disk: the write fails with an OSError (EFBIG, as ENOSPC would).
    store = tmp_path / "store" / "lenet"
    shutil.copytree(ROOT / "zoo" / "weights" / "softmax", store)  # an older save, much smaller than lenet
    before = {p.name: p.read_bytes() for p in store.iterdir()}
    script = ("import resource, signal, sys, zoo\nsignal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
              "resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))\n"
              "try:\n    zoo.save_checkpoint(zoo.load('lenet'), sys.argv[1])\nexcept OSError as e:\n    print('REFUSED', e)\n")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", script, str(store)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert out.returncode == 0 and out.stdout.startswith("REFUSED"), out.stdout + out.stderr[-2000:]
    assert {p.name: p.read_bytes() for p in store.iterdir()} == before
    assert sorted(p.name for p in store.parent.iterdir()) == ["lenet"]
