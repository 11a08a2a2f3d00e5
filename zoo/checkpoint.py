"""Checkpoint folders: write one, read one back strictly, check it against its sha256, and its model card.

A checkpoint folder is what goes to the Hugging Face Hub:

    model.safetensors   the weights (never a pickle)
    config.json         registry name + constructor arguments (enough to rebuild the model), input
                        size, normalisation, label names, metrics, recipe, sha256 of the weights
    README.md           the model card (YAML front matter with model-index) and a usage snippet
                        (written by :mod:`zoo.card`)
"""

from __future__ import annotations

import errno
import glob
import hashlib
import json
import os
import shutil
import stat
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
           "load_weights", "load_strict", "sha256_file", "config_sha256", "write_config"]  # fmt: skip

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


#: The fields of config.json its own hash leaves out: the two hashes themselves.
UNHASHED = ("sha256", "config_sha256")


def config_sha256(config: dict[str, Any]) -> str:
    """The sha256 of a config's content (every field but :data:`UNHASHED`, as canonical JSON:
    sorted keys, no spaces), so an edited label name, mean or score no longer matches."""
    content = {k: v for k, v in config.items() if k not in UNHASHED}
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def write_config(folder: str | os.PathLike, config: dict[str, Any]) -> None:
    """Write ``config`` as ``folder``/config.json with its ``config_sha256`` recorded (use this, not
    a plain write, for any change to a checkpoint's config)."""
    config = {**{k: v for k, v in config.items() if k != "config_sha256"}, "config_sha256": config_sha256(config)}
    (Path(folder) / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")


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
        try:
            save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt", "zoo_model": name, "dtype": dtype})
        except Exception as err:  # safetensors raises its own error for a full disk, not an OSError
            raise OSError(f"cannot write the weights of {folder}: {err}") from None
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
        write_config(tmp, config)
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

#: Most classes a checkpoint's config may ask for (ImageNet-21k has 21,843): the label names of
#: 10**12 classes alone would fill the memory.
MAX_CLASSES = 100_000

#: How long a reader waits for a save that is swapping the folder in (its two renames take
#: microseconds; the margin is for a loaded machine).
SWAP_WAIT_S = 2.0


def _saving(folder: Path) -> bool:
    """Is a save of ``folder`` under way? (its finished copy waits beside it as ``.NAME-*``)"""
    return any(folder.parent.glob(f".{glob.escape(folder.name)}-*"))


#: The largest config.json and model.safetensors read: a file over them is refused unread (the
#: biggest zoo weights, VGG-11 at 224 px in float32, are about 0.5 GB).
MAX_CONFIG_BYTES = 1 << 20
MAX_WEIGHTS_BYTES = 2 << 30


def _read_regular(path: Path, limit: int) -> bytes:
    """The bytes of ``path`` if it is a regular file (links followed: the Hugging Face cache is
    made of them) of at most ``limit`` bytes. A device (a link to /dev/zero), a FIFO (which would
    block a reader forever) or a larger file is refused before a byte is read."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # non-blocking: opening a FIFO must not wait for a writer
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a folder", str(path))
        if not stat.S_ISREG(info.st_mode):
            raise CheckpointError(f"{path} is not a regular file (a device, FIFO or socket): refused unread")
        if info.st_size > limit:
            raise CheckpointError(f"{path} is {info.st_size:,} bytes, over the limit of {limit:,} for a zoo {path.name}")
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(limit + 1)
        if len(data) > limit:  # it grew after the check
            raise CheckpointError(f"{path} is over the limit of {limit:,} bytes for a zoo {path.name}")
        return data
    finally:
        os.close(fd)


def _read_pair(folder: Path) -> tuple[str, bytes]:
    """config.json's text and the weights' bytes, read into memory.

    The weights are hashed and loaded from these same bytes, so nothing can change between the
    check and the load. A save replaces the folder by two renames; a reader that falls in between
    finds it missing for an instant, and waits (up to SWAP_WAIT_S) while a save is under way.
    """
    deadline, reread = time.monotonic() + SWAP_WAIT_S, False
    while True:
        try:
            config = _read_regular(folder / CONFIG_NAME, MAX_CONFIG_BYTES).decode(errors="replace")
            return config, _read_regular(folder / WEIGHTS_NAME, MAX_WEIGHTS_BYTES)
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


def load_checkpoint(folder: str | os.PathLike, *, expected_sha256: str | None = None, trust_unverified: bool = False,
                    model_name: str | None = None, expected_config_sha256: str | None = None) -> Any:  # fmt: skip
    """Rebuild the model a checkpoint folder describes and load its weights strictly.

    Nothing of the folder is used before it is checked: the weights must match a sha256 (the
    manifest's ``expected_sha256``, and the one config.json records, which must be there unless
    ``trust_unverified=True``), config.json's content must match its own ``config_sha256`` when
    it records one (folders saved before it existed do not) and the manifest's
    ``expected_config_sha256``, config.json must be an object naming a registered model (the one
    asked for, with ``model_name``) with plain constructor arguments in range, and the model they
    build must have the stored tensors' shapes, checked on the ``meta`` device before a real
    parameter is allocated. Weights that are not finite are refused. Every failure is a
    :class:`CheckpointError` naming the file.
    """
    folder = Path(folder)
    config, data = _read_verified(folder, expected_sha256=expected_sha256, trust_unverified=trust_unverified)
    _verify_config(config, folder / CONFIG_NAME, expected_config_sha256)
    config_path, weights = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    name, kwargs = config["model"], config["kwargs"]
    if model_name is not None and name != model_name:
        raise CheckpointError(f"{folder} holds a {name!r}, not a {model_name!r} (its {CONFIG_NAME} says so): "
                              f"it is filed under the wrong name")  # fmt: skip
    try:
        get_spec(name)
    except KeyError as err:
        raise CheckpointError(f"{config_path} names the architecture {name!r}, which this zoo does not have: {err.args[0]}") from None
    for key, low, high in (("input_size", 8, MAX_INPUT_SIZE), ("num_classes", 1, MAX_CLASSES)):
        value = kwargs.get(key)
        if value is not None and not (isinstance(value, int) and low <= value <= high):
            raise CheckpointError(f"{config_path}: {key} must be an integer from {low} to {high:,}, got {value!r}")
    try:
        steps = PhotoSteps.from_dict(config["preprocess"]) if "preprocess" in config else None
    except ValueError as err:
        raise CheckpointError(f"{config_path}: {err}") from None
    stored = _read_tensors(data, weights)
    with torch.device("meta"):  # the shapes the kwargs ask for, with nothing allocated
        skeleton = _build(name, kwargs, config_path)
    load_strict(skeleton, stored, where=str(weights), check_only=True)
    model = _build(name, kwargs, config_path)
    _load_stored(model, stored, weights)
    if steps is not None:  # folders saved before the steps existed keep the model's default
        model.photo_steps = steps
    model.checkpoint = {"path": str(folder), "sha256": config.get("sha256"), "metrics": config.get("metrics", {})}
    return model


def _read_verified(folder: Path, *, expected_sha256: str | None, trust_unverified: bool) -> tuple[dict[str, Any], bytes]:
    """config.json (an object with a model name and kwargs) and the weights' bytes, which match
    the manifest's and config.json's sha256."""
    config_path, weights = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    for attempt in range(3):
        text, data = _read_pair(folder)
        try:
            config = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise CheckpointError(f"{config_path} is not a zoo config (not JSON: {err})") from None
        except RecursionError:
            raise CheckpointError(f"{config_path} is not a zoo config: its JSON is nested too deeply") from None
        if not isinstance(config, dict) or not isinstance(config.get("model"), str) or not isinstance(config.get("kwargs"), dict):
            raise CheckpointError(f"{config_path} is not a zoo config: it must be an object with a \"model\" name and "
                                  "\"kwargs\" (an object of constructor arguments)")  # fmt: skip
        _verify(data, expected_sha256, weights, "checkpoints.json")
        if config.get("sha256") is None and expected_sha256 is None and not trust_unverified:
            raise CheckpointError(f"{config_path} records no sha256 of {WEIGHTS_NAME}, so the weights cannot be verified; "
                                  "load it with trust_unverified=True (zoo: --trust-unverified) only if you trust its source")  # fmt: skip
        try:
            _verify(data, config.get("sha256"), weights, CONFIG_NAME)
            return config, data
        except CheckpointError:
            # A save that replaced the folder between our two reads is not tampering: its
            # config.json has changed too. Read the new pair.
            if attempt < 2 and _read_pair(folder)[0] != text:
                continue
            raise
    raise AssertionError("unreachable")


def _verify_config(config: dict[str, Any], config_path: Path, expected: str | None) -> None:
    actual = config_sha256(config)
    for recorded, what in ((config.get("config_sha256"), "the config_sha256 it records"), (expected, "checkpoints.json")):
        if recorded is not None and recorded != actual:
            raise CheckpointError(f"{config_path} does not match its recorded hash ({what}): expected config sha256 "
                                  f"{recorded}, got {actual}. It was edited after it was saved (label names, "
                                  "normalisation or scores); restore it, or fetch or train the model again (an edit of your own "
                                  "is signed by zoo.checkpoint.write_config(folder, config)).")  # fmt: skip


def _build(name: str, kwargs: dict[str, Any], config_path: Path) -> Any:
    try:
        return build_model(name, **kwargs)
    except (TypeError, ValueError, RuntimeError, OverflowError) as err:  # RuntimeError: torch refuses a negative size
        raise CheckpointError(f"{config_path}: its kwargs do not build {name}: {err}") from None


def load_weights(model: torch.nn.Module, weights: str | os.PathLike | bytes, *, where: str | os.PathLike | None = None) -> None:
    """Load a safetensors file (a path, or its bytes) into ``model`` strictly; tensors stored as
    float16 (config "dtype") come back in the model's own float32."""
    where = where or ("<bytes>" if isinstance(weights, bytes) else weights)
    _load_stored(model, _read_tensors(weights, where), where)


def _read_tensors(weights: str | os.PathLike | bytes, where: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file (a path or its bytes); non-finite values are refused, so
    no NaN weights ever reach a prediction, an export or the Hub."""
    try:
        stored = safetensors_load(weights) if isinstance(weights, bytes) else load_file(str(weights))
    except Exception as err:  # safetensors' SafetensorError (truncated, not safetensors), OSError
        raise CheckpointError(f"{where} is not a readable safetensors file ({type(err).__name__}: {err})") from None
    bad = [k for k, v in stored.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"{where}: {len(bad)} tensor(s) are not finite (NaN or inf), e.g. {bad[:3]}: "
                              "these weights cannot give a meaningful prediction")  # fmt: skip
    return stored


def _load_stored(model: torch.nn.Module, stored: dict[str, torch.Tensor], where: str | os.PathLike) -> None:
    own = model.state_dict()
    state = {k: v.to(own[k].dtype) if k in own and v.is_floating_point() else v for k, v in stored.items()}
    load_strict(model, state, where=str(where))


def load_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], *, where: str, skip_prefix: str | None = None,
                check_only: bool = False) -> None:  # fmt: skip
    """load_state_dict(strict=True), with a message that names what does not fit (``check_only``:
    the message, or nothing, and no load: for a model built on the meta device)."""
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
    if check_only:
        return
    model.load_state_dict({k: state[k] for k in keys}, strict=skip_prefix is None)


