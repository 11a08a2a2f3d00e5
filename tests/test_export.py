"""zoo export: every classifier to ONNX (run with onnxruntime), TorchScript and torch.export,
compared with PyTorch's own outputs on real Fashion-MNIST test images."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

import zoo
from zoo.cli import main
from zoo.data import CLASSES
from zoo.data.preprocess import Preprocess
from zoo.export import ExportError, export_model

ROOT = Path(__file__).resolve().parents[1]
CLASSIFIERS = [n for n in zoo.list_models() if zoo.get_spec(n).task == "classification"]


def _model(name: str):
    try:
        return zoo.load(name)  # the bundled weights where there are some
    except FileNotFoundError:
        torch.manual_seed(0)
        model = zoo.create_model(name).eval()
        model.preprocess = Preprocess(input_size=model.input_size, in_chans=model.in_chans, mean=model.mean, std=model.std)
        return model


def _run(path: Path, fmt: str, x: torch.Tensor) -> np.ndarray:
    if fmt == "onnx":
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(["logits"], {"images": x.numpy()})[0]
    module = torch.jit.load(str(path)) if fmt == "torchscript" else torch.export.load(str(path)).module()
    with torch.no_grad():
        return module(x).numpy()


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_every_classifier_exports_to_every_format_with_the_same_outputs(tmp_path, fmnist, name):
    model = _model(name)
    # Three real test images, and a batch size the export never saw (the batch is dynamic).
    x = model.preprocess([img.numpy() for img in fmnist["test_images"][:3]])
    with torch.no_grad():
        expected = model(x).numpy()
    for fmt in ("onnx", "torchscript", "pt2"):
        path = export_model(model, tmp_path / f"{name}.{fmt}", format=fmt)
        np.testing.assert_allclose(_run(path, fmt, x), expected, atol=1e-4, rtol=1e-4, err_msg=f"{name} as {fmt}")
        meta = json.loads(Path(f"{path}.json").read_text())
        assert meta["input"]["shape"][1:] == [model.in_chans, model.input_size, model.input_size]
        assert meta["label_names"] == model.label_names and meta["mean"] == list(model.mean)


def test_export_refuses_detectors_and_existing_files_and_the_cli_writes_one(tmp_path, capsys, fmnist):
    with pytest.raises(ExportError, match="export supports the classifiers"):
        export_model(zoo.create_model("tiny_ssd"), tmp_path / "ssd.onnx")
    out = tmp_path / "lenet.onnx"
    assert main(["export", "lenet", "--format", "onnx", "--out", str(out)]) == 0
    assert f"lenet -> {out}" in capsys.readouterr().out
    assert main(["export", "lenet", "--out", str(out)]) == 2
    assert "exists; pass overwrite=True (zoo export --force)" in capsys.readouterr().err
    assert main(["export", "lenet", "--out", str(out), "--force"]) == 0
    # The README's use: onnxruntime alone, with the preprocessing from the JSON beside the file.
    meta = json.loads(Path(f"{out}.json").read_text())
    image = fmnist["test_images"][0].numpy().astype(np.float32) / 255.0
    x = ((image - meta["mean"][0]) / meta["std"][0])[None, None]
    logits = ort.InferenceSession(str(out)).run(None, {"images": x})[0]
    assert meta["label_names"][int(logits.argmax())] == CLASSES[int(fmnist["test_labels"][0])]


def test_python_dash_m_zoo_is_the_zoo_command(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "zoo", "list", "res*"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "resnet18" in proc.stdout


def test_export_never_replaces_a_sidecar_it_was_not_asked_to(tmp_path, capsys):
    out = tmp_path / "mine"
    (tmp_path / "mine.json").write_text('{"my": "notes"}')  # the user's own file where the sidecar would go
    assert main(["export", "lenet", "--format", "torchscript", "--out", str(out)]) == 2
    assert "mine.json exists; pass overwrite=True (zoo export --force)" in capsys.readouterr().err
    assert (tmp_path / "mine.json").read_text() == '{"my": "notes"}' and not out.exists()
    assert main(["export", "lenet", "--format", "torchscript", "--out", str(out), "--force"]) == 0
    assert json.loads((tmp_path / "mine.json").read_text())["model"] == "lenet"
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left behind


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_an_output_that_is_no_file_is_one_line_and_a_full_disk_leaves_nothing(tmp_path, capsys):
    # TorchScript's writer aborted the whole process in C++ (exit 134) on /dev/full: a real process.
    proc = subprocess.run([sys.executable, "-m", "zoo", "export", "lenet", "--format", "torchscript", "--out", "/dev/full", "--force"],
                          capture_output=True, text=True, timeout=300, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == "zoo: error: /dev/full is not a regular file; give the path of a file to write"
    for fmt in ("onnx", "pt2"):
        for out in ("/dev/full", str(tmp_path)):
            assert main(["export", "lenet", "--format", fmt, "--out", out, "--force"]) == 2
            assert capsys.readouterr().err == f"zoo: error: {out} is not a regular file; give the path of a file to write\n"
    assert list(tmp_path.iterdir()) == []


def test_a_pt2_export_runs_at_any_batch_size(tmp_path):
    model = zoo.load("softmax")
    path = export_model(model, tmp_path / "softmax.pt2", format="pt2")
    x = torch.randn(5000, 1, 28, 28)
    with torch.no_grad():
        np.testing.assert_allclose(_run(path, "pt2", x), model(x).numpy(), atol=1e-4, rtol=1e-4)
