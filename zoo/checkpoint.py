"""Checkpoint folders: write one, read one back strictly, check it against its sha256, and its model card.

A checkpoint folder is what goes to the Hugging Face Hub:

    model.safetensors   the weights (never a pickle)
    config.json         registry name + constructor arguments (enough to rebuild the model), input
                        size, normalisation, label names, metrics, recipe, sha256 of the weights
    README.md           the model card (YAML front matter with model-index) and a usage snippet
                        (written by :mod:`zoo.card`)
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as safetensors_load
from safetensors.torch import load_file, save_file

from .card import model_card
from .data.preprocess import PhotoSteps
from .registry import build_model, get_spec

__all__ = ["CheckpointError", "WEIGHTS_NAME", "CONFIG_NAME", "CARD_NAME", "save_checkpoint", "load_checkpoint",
           "load_weights", "load_strict", "sha256_file"]  # fmt: skip

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"


class CheckpointError(ValueError):
    """A checkpoint is corrupt, tampered with, or does not fit the model asked for."""


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


STORED_DTYPES = {"float32": torch.float32, "float16": torch.float16}


def save_checkpoint(model: Any, folder: str | os.PathLike, *, metrics: dict[str, Any] | None = None,
                    training: dict[str, Any] | None = None, dtype: str = "float32") -> Path:  # fmt: skip
    """Write ``model`` as a checkpoint folder (weights, config.json, model card); returns the folder.

    ``dtype="float16"`` stores the floating-point tensors at half the size (integer ones, such as
    BatchNorm's step counter, stay as they are); loading upcasts them to the model's float32. The
    sha256 in config.json is that of the stored file. The folder is written next to its final
    place and renamed into it, so an interrupted save never leaves a half-written checkpoint behind.
    """
    if dtype not in STORED_DTYPES:
        raise ValueError(f"dtype must be one of {sorted(STORED_DTYPES)}, got {dtype!r}")
    name = getattr(model, "model_name", None)
    if name is None:
        raise ValueError("save_checkpoint needs a model built by zoo.create_model or zoo.load (it has no model_name)")
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        stored = STORED_DTYPES[dtype]
        state = {k: (v.to(stored) if v.is_floating_point() else v).detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt", "zoo_model": name, "dtype": dtype})
        config = {
            "model": name,
            "kwargs": model.zoo_kwargs,
            "num_classes": model.num_classes,
            "in_chans": model.in_chans,
            "input_size": model.input_size,
            "mean": model.mean,
            "std": model.std,
            "label_names": model.label_names,
            "preprocess": model.photo_steps.to_dict(),
            "params": sum(p.numel() for p in model.parameters()),
            "sha256": sha256_file(tmp / WEIGHTS_NAME),
            "size": (tmp / WEIGHTS_NAME).stat().st_size,
            "dtype": dtype,
            "metrics": metrics or {},
            "recipe": model.recipe.to_dict(),
            "training": training or {},
            "saved": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
        (tmp / CARD_NAME).write_text(model_card(config))
        _share_like_umask(tmp)
        _swap_in(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _share_like_umask(tmp: Path) -> None:
    # mkdtemp makes a private (0700) folder; a checkpoint gets the permissions any file the user
    # creates gets (the umask decides: the usual 022 lets others on a shared ZOO_HOME read it).
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)
    for f in tmp.iterdir():
        f.chmod(0o666 & ~umask)


def _swap_in(tmp: Path, folder: Path, attempts: int = 20) -> None:
    """Put the finished folder ``tmp`` at ``folder``, replacing what is there. Each step is a
    rename: the old folder is moved aside (then deleted), never deleted in place, so two saves at
    once both finish (the later one wins) instead of one failing half-way with ENOTEMPTY."""
    for _ in range(attempts):
        aside = folder.parent / f".{folder.name}-old-{os.getpid()}-{time.monotonic_ns()}"
        try:
            folder.rename(aside)
        except FileNotFoundError:
            aside = None
        try:
            tmp.rename(folder)
            return
        except OSError:  # another save put its folder there in between: move that aside too
            continue
        finally:
            if aside is not None:
                shutil.rmtree(aside, ignore_errors=True)
    raise CheckpointError(f"could not replace {folder}: other saves kept writing it")


# ------------------------------------------------------------------------------------------ load
def _verify(data: bytes, expected: str | None, where: Path, what: str) -> str:
    actual = hashlib.sha256(data).hexdigest()
    if expected is not None and actual != expected:
        raise CheckpointError(
            f"{where} does not match its recorded hash ({what}): expected sha256 {expected}, got {actual}. "
            "The file is corrupt or was modified; delete it and fetch or train it again."
        )
    return actual


#: Largest image side a checkpoint's config may ask for: a tampered "input_size" would otherwise
#: size the model (and the forward pass that sizes its linear layers) before any weight is read.
MAX_INPUT_SIZE = 1024

#: How long a reader waits for a save that is swapping the folder in (its two renames take
#: microseconds; the margin is for a loaded machine).
SWAP_WAIT_S = 2.0


def _saving(folder: Path) -> bool:
    """Is a save of ``folder`` under way? (its finished copy waits beside it as ``.NAME-*``)"""
    return any(folder.parent.glob(f".{glob.escape(folder.name)}-*"))


def _read_pair(folder: Path) -> tuple[str, bytes]:
    """config.json's text and the weights' bytes, read into memory.

    The weights are hashed and loaded from these same bytes, so nothing can change between the
    check and the load. A save replaces the folder by two renames; a reader that falls in between
    finds it missing for an instant, and waits (up to SWAP_WAIT_S) while a save is under way.
    """
    deadline, reread = time.monotonic() + SWAP_WAIT_S, False
    while True:
        try:
            return (folder / CONFIG_NAME).read_text(errors="replace"), (folder / WEIGHTS_NAME).read_bytes()
        except (FileNotFoundError, NotADirectoryError) as err:
            # A save under way, or one that finished (and tidied up) since the failed read: the
            # folder is back, so read it once more. A folder that really lacks a file fails then.
            back = not reread and folder.is_dir()
            if time.monotonic() < deadline and (back or _saving(folder)):
                reread = reread or back
                time.sleep(0.01)
                continue
            missing = Path(err.filename).name if err.filename else CONFIG_NAME
            raise CheckpointError(f"{folder} is not a zoo checkpoint folder: {missing} is missing") from None
        except IsADirectoryError as err:
            raise CheckpointError(f"{folder} is not a zoo checkpoint folder: {Path(err.filename).name} is a folder") from None
        except OSError as err:  # permissions, I/O errors
            raise CheckpointError(f"cannot read the checkpoint folder {folder}: {err}") from None


def load_checkpoint(folder: str | os.PathLike, *, expected_sha256: str | None = None, trust_unverified: bool = False) -> Any:
    """Rebuild the model a checkpoint folder describes and load its weights strictly.

    Nothing of the folder is used before it is checked: the weights must match a sha256 (the
    manifest's ``expected_sha256``, and the one config.json records, which must be there unless
    ``trust_unverified=True``), and config.json must be an object naming a registered model with
    plain constructor arguments in range. Every failure is a :class:`CheckpointError` naming the file.
    """
    folder = Path(folder)
    config_path, weights = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    for attempt in range(3):
        text, data = _read_pair(folder)
        try:
            config = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise CheckpointError(f"{config_path} is not a zoo config (not JSON: {err})") from None
        if not isinstance(config, dict) or not isinstance(config.get("model"), str) or not isinstance(config.get("kwargs"), dict):
            raise CheckpointError(f"{config_path} is not a zoo config: it must be an object with a \"model\" name and "
                                  "\"kwargs\" (an object of constructor arguments)")  # fmt: skip
        _verify(data, expected_sha256, weights, "checkpoints.json")
        if config.get("sha256") is None and expected_sha256 is None and not trust_unverified:
            raise CheckpointError(f"{config_path} records no sha256 of {WEIGHTS_NAME}, so the weights cannot be verified; "
                                  "load it with trust_unverified=True (zoo: --trust-unverified) only if you trust its source")  # fmt: skip
        try:
            _verify(data, config.get("sha256"), weights, CONFIG_NAME)
            break
        except CheckpointError:
            # A save that replaced the folder between our two reads is not tampering: its
            # config.json has changed too. Read the new pair.
            if attempt < 2 and _read_pair(folder)[0] != text:
                continue
            raise
    name, kwargs = config["model"], config["kwargs"]
    try:
        get_spec(name)
    except KeyError as err:
        raise CheckpointError(f"{config_path} names the architecture {name!r}, which this zoo does not have: {err.args[0]}") from None
    size = kwargs.get("input_size")
    if size is not None and not (isinstance(size, int) and 8 <= size <= MAX_INPUT_SIZE):
        raise CheckpointError(f"{config_path}: input_size must be an integer from 8 to {MAX_INPUT_SIZE}, got {size!r}")
    try:
        steps = PhotoSteps.from_dict(config["preprocess"]) if "preprocess" in config else None
    except ValueError as err:
        raise CheckpointError(f"{config_path}: {err}") from None
    try:
        model = build_model(name, **kwargs)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{config_path}: its kwargs do not build {name}: {err}") from None
    load_weights(model, data, where=weights)
    if steps is not None:  # folders saved before the steps existed keep the model's default
        model.photo_steps = steps
    model.checkpoint = {"path": str(folder), "sha256": config.get("sha256"), "metrics": config.get("metrics", {})}
    return model


def load_weights(model: torch.nn.Module, weights: str | os.PathLike | bytes, *, where: str | os.PathLike | None = None) -> None:
    """Load a safetensors file (a path, or its bytes) into ``model`` strictly; tensors stored as
    float16 (config "dtype") come back in the model's own float32."""
    own = model.state_dict()
    where = where or ("<bytes>" if isinstance(weights, bytes) else weights)
    try:
        stored = safetensors_load(weights) if isinstance(weights, bytes) else load_file(str(weights))
    except Exception as err:  # safetensors' SafetensorError (truncated, not safetensors), OSError
        raise CheckpointError(f"{where} is not a readable safetensors file ({type(err).__name__}: {err})") from None
    state = {k: v.to(own[k].dtype) if k in own and v.is_floating_point() else v for k, v in stored.items()}
    load_strict(model, state, where=str(where))


def load_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], *, where: str, skip_prefix: str | None = None) -> None:
    """load_state_dict(strict=True), with a message that names what does not fit."""
    own = model.state_dict()
    keys = [k for k in own if not (skip_prefix and k.startswith(skip_prefix))]
    theirs = [k for k in state if not (skip_prefix and k.startswith(skip_prefix))]
    missing = sorted(set(keys) - set(theirs))
    unexpected = sorted(set(theirs) - set(keys))
    wrong = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
             for k in keys if k in state and state[k].shape != own[k].shape]  # fmt: skip
    if missing or unexpected or wrong:
        details = "; ".join(
            part for part in (
                f"missing {missing[:5]}" if missing else "",
                f"unexpected {unexpected[:5]}" if unexpected else "",
                f"wrong shape {wrong[:5]}" if wrong else "",
            ) if part
        )  # fmt: skip
        raise CheckpointError(f"{where} does not fit {type(model).__name__}: {details}")
    model.load_state_dict({k: state[k] for k in keys}, strict=skip_prefix is None)


