"""Export a trained network for use without the zoo: ONNX, TorchScript or a torch.export program.

Only the network is exported (``head(backbone(x))``: normalised images in, logits out), with a
dynamic batch size; the preprocessing travels beside it as JSON (``<file>.json``: input size,
channels, mean, std, label names), since the formats carry tensors, not PIL steps.

    zoo export lenet --format onnx                       # lenet.onnx + lenet.onnx.json
    zoo export runs/lenet/version_0/export --format pt2 --out lenet.pt2
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .runtime import write_text_replacing

__all__ = ["FORMATS", "SUFFIXES", "export_model", "ExportError"]

FORMATS = ("onnx", "torchscript", "pt2")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "pt2": ".pt2"}


class ExportError(ValueError):
    """The model cannot be exported in the format asked for, or the file would overwrite one."""


class _Network(nn.Module):
    """The classifier's computation alone: no Lightning state, no Python input checks."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.backbone, self.head = model.backbone, model.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def _serialise(net: nn.Module, model: Any, format: str) -> bytes:
    """The exported file's bytes, with a dynamic batch size (any size from 1)."""
    x = torch.zeros(2, model.in_chans, model.input_size, model.input_size)
    batch = torch.export.Dim("batch", min=1)
    buffer = io.BytesIO()
    with torch.no_grad():
        if format == "onnx":
            # One self-contained file (external data only matters past ONNX's 2 GB limit).
            with tempfile.TemporaryDirectory() as tmp:
                torch.onnx.export(net, (x,), f"{tmp}/model.onnx", dynamo=True, input_names=["images"], output_names=["logits"],
                                  dynamic_shapes={"x": {0: batch}}, external_data=False, verbose=False)  # fmt: skip
                return Path(f"{tmp}/model.onnx").read_bytes()
        if format == "torchscript":
            torch.jit.save(torch.jit.trace(net, x), buffer)
        else:
            torch.export.save(torch.export.export(net, (x,), dynamic_shapes={"x": {0: batch}}), buffer)
    return buffer.getvalue()


def export_model(model: Any, path: str | os.PathLike, *, format: str = "onnx", overwrite: bool = False) -> Path:
    """Write ``model`` (a zoo classifier) to ``path`` in ``format`` and its preprocessing to
    ``path + ".json"``; returns the path. Refuses to overwrite an existing file unless asked."""
    if format not in FORMATS:
        raise ExportError(f"format must be one of {FORMATS}, got {format!r}")
    if getattr(model, "task", None) != "classification":
        raise ExportError(f"{type(model).__name__} is a {getattr(model, 'task', 'non-image')} model; export supports the classifiers "
                          "(a detector's box decoding and NMS are Python; use zoo.load for it)")  # fmt: skip
    path, sidecar = Path(path), Path(str(path) + ".json")
    for target in (path, sidecar):
        if target.exists() and not target.is_file():
            raise ExportError(f"{target} is not a regular file; give the path of a file to write")
        if target.exists() and not overwrite:
            raise ExportError(f"{target} exists; pass overwrite=True (zoo export --force) to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    # Serialised in memory, then written through a temporary file and a rename: TorchScript's C++
    # writer aborts the process on a full disk, and no half-written file may replace a good one.
    write_text_replacing(path, _serialise(_Network(model).eval().float(), model, format))
    meta = {
        "model": getattr(model, "model_name", type(model).__name__),
        "format": format,
        "input": {"name": "images", "shape": ["batch", model.in_chans, model.input_size, model.input_size], "dtype": "float32"},
        "output": {"name": "logits", "shape": ["batch", model.num_classes]},
        "mean": list(model.mean),
        "std": list(model.std),
        # what zoo.data.preprocess.PhotoSteps does to a photo before the resize and normalisation
        "preprocess": model.photo_steps.to_dict(),
        "label_names": list(model.label_names),
        "weights_sha256": (getattr(model, "checkpoint", None) or {}).get("sha256"),
    }
    write_text_replacing(sidecar, json.dumps(meta, indent=2) + "\n")  # a full disk leaves no empty sidecar
    return path
