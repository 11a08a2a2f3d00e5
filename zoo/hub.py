"""Checkpoint folders, the checkpoints.json manifest, loading by name, and publishing to the Hub.

A checkpoint folder is what goes to the Hugging Face Hub:

    model.safetensors   the weights (never a pickle)
    config.json         registry name + constructor arguments (enough to rebuild the model), input
                        size, normalisation, label names, metrics, recipe, sha256 of the weights
    README.md           the model card (YAML front matter with model-index) and a usage snippet

``zoo.load(name)`` looks for a registered model's weights, in order: the weights bundled in the
package -> the local store that ``zoo train`` writes (``$ZOO_HOME/checkpoints/<name>``) -> the
Hugging Face cache -> the Hub, at the revision pinned in checkpoints.json. Every file is checked
against its sha256 before it is used, and loading is strict.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import torch
from safetensors.torch import load_file, save_file

from .data.fashion_mnist import zoo_home
from .data.preprocess import Preprocess
from .registry import create_model, get_spec

__all__ = [
    "CheckpointError",
    "WeightsNotFoundError",
    "save_checkpoint",
    "load",
    "load_checkpoint",
    "with_new_head",
    "read_manifest",
    "manifest_entry",
    "write_manifest",
    "push_to_hub",
    "zoo_home",
    "store_dir",
    "sha256_file",
]

log = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"
MANIFEST_NAME = "checkpoints.json"
PACKAGE_DIR = Path(__file__).resolve().parent
BUNDLED_DIR = PACKAGE_DIR / "weights"
HUB_ORG = "d2l-zoo"  # default Hub namespace: d2l-zoo/<model>
SOURCES = ("bundled", "store", "cache", "hub")


class CheckpointError(ValueError):
    """A checkpoint is corrupt, tampered with, or does not fit the model asked for."""


class WeightsNotFoundError(FileNotFoundError):
    """No source holds weights for the model asked for."""


def store_dir(name: str) -> Path:
    """Where ``zoo train`` exports the checkpoint folder of ``name``."""
    return zoo_home() / "checkpoints" / name


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------ save
def save_checkpoint(model: Any, folder: str | os.PathLike, *, metrics: dict[str, Any] | None = None,
                    training: dict[str, Any] | None = None) -> Path:  # fmt: skip
    """Write ``model`` as a checkpoint folder (weights, config.json, model card); returns the folder.

    The folder is written next to its final place and renamed into it, so an interrupted save
    never leaves a half-written checkpoint behind.
    """
    name = getattr(model, "model_name", None)
    if name is None:
        raise ValueError("save_checkpoint needs a model built by zoo.create_model or zoo.load (it has no model_name)")
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt", "zoo_model": name})
        config = {
            "model": name,
            "kwargs": model.zoo_kwargs,
            "num_classes": model.num_classes,
            "in_chans": model.in_chans,
            "input_size": model.input_size,
            "mean": model.mean,
            "std": model.std,
            "label_names": model.label_names,
            "params": sum(p.numel() for p in model.parameters()),
            "sha256": sha256_file(tmp / WEIGHTS_NAME),
            "size": (tmp / WEIGHTS_NAME).stat().st_size,
            "metrics": metrics or {},
            "recipe": model.recipe.to_dict(),
            "training": training or {},
            "saved": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
        (tmp / CARD_NAME).write_text(model_card(config))
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


_CARD = """
# d2l-zoo `{{ name }}`

{{ description }} From chapter {{ chapter }} of *Dive into Deep Learning* (https://d2l.ai), trained on
Fashion-MNIST with d2l-zoo.

| | |
|---|---|
| parameters | {{ params }} |
| input | {{ in_chans }} x {{ input_size }} x {{ input_size }}, normalised with mean {{ mean }}, std {{ std }} |
| Fashion-MNIST test {{ metric_name }} | {{ test_acc }} |
| validation {{ metric_name }} | {{ val_acc }} |
| recipe | `{{ recipe }}` |

{{ measured }}

```python
import torch, zoo
net = zoo.load("{{ name }}")          # eval mode, weights checked against their sha256
x = net.preprocess(pil_image)         # any size, gray or colour -> normalised batch
with torch.no_grad():
    probs = net(x).softmax(-1)
print(net.label_names[int(probs.argmax())], float(probs.max()))
```
"""


def model_card(config: dict[str, Any]) -> str:
    """The model card, through huggingface_hub's ModelCard (YAML front matter + model-index)."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    name = config["model"]
    spec = get_spec(name)
    detector = spec.task == "detection"
    task = "object-detection" if detector else "image-classification"
    key, metric = ("test/map50", "map_50") if detector else ("test/acc", "accuracy")
    test_acc = config["metrics"].get(key)
    eval_results = None
    if test_acc is not None:
        eval_results = [EvalResult(task_type=task, dataset_type="fashion_mnist", dataset_name="Fashion-MNIST" + (" scenes" if detector else ""),
                                   dataset_split="test", metric_type=metric, metric_value=float(test_acc))]  # fmt: skip
    data = ModelCardData(
        library_name="d2l-zoo",
        license="apache-2.0",
        tags=[task, "d2l", "fashion-mnist", name],
        datasets=["fashion_mnist"],
        pipeline_tag=task,
        model_name=f"d2l-zoo-{name}",
        eval_results=eval_results,
    )
    card = ModelCard.from_template(
        data,
        template_str="---\n{{ card_data }}\n---\n" + _CARD,
        name=name,
        description=spec.description,
        chapter=spec.chapter,
        params=f"{config['params']:,}",
        in_chans=config["in_chans"],
        input_size=config["input_size"],
        mean=[round(m, 4) for m in config["mean"]],
        std=[round(s, 4) for s in config["std"]],
        test_acc=f"{test_acc:.4f}" if test_acc is not None else "not measured",
        val_acc=f"{config['metrics'][key.replace('test', 'val')]:.4f}" if key.replace("test", "val") in config["metrics"] else "not measured",
        metric_name="mAP@0.5" if detector else "top-1",
        measured=("Measured on 2,000 test scenes made only from the official test images, with the final weights."
                  if detector else "Measured on the official 10,000 test images with the final weights; model selection "
                  "only on the fixed 5,000-image validation split."),
        recipe=json.dumps(config["recipe"]),
    )
    return str(card)


# ------------------------------------------------------------------------------------------ manifest
def _manifest_paths() -> list[Path]:
    # $ZOO_MANIFEST (tests, forks with their own Hub repos), else the repository's top-level copy
    # (source checkouts) and the package's own (installed wheels).
    if os.environ.get("ZOO_MANIFEST"):
        return [Path(os.environ["ZOO_MANIFEST"])]
    return [PACKAGE_DIR.parent / MANIFEST_NAME, PACKAGE_DIR / MANIFEST_NAME]


def read_manifest(path: str | os.PathLike | None = None) -> dict[str, dict[str, Any]]:
    """checkpoints.json as {model name: entry}; empty when there is none."""
    candidates = [Path(path)] if path else _manifest_paths()
    for candidate in candidates:
        if candidate.is_file():
            data = json.loads(candidate.read_text())
            return {entry["model"]: entry for entry in data["checkpoints"]}
    return {}


def manifest_entry(folder: str | os.PathLike, *, repo_id: str | None = None, revision: str | None = None,
                   bundled: bool = False) -> dict[str, Any]:  # fmt: skip
    """One checkpoints.json entry, computed from a checkpoint folder's real files."""
    folder = Path(folder)
    config = json.loads((folder / CONFIG_NAME).read_text())
    weights = folder / WEIGHTS_NAME
    training = config.get("training", {})
    return {
        "model": config["model"],
        "repo_id": repo_id or f"{HUB_ORG}/{config['model']}",
        "revision": revision,
        "filename": WEIGHTS_NAME,
        "sha256": sha256_file(weights),
        "size": weights.stat().st_size,
        "params": config["params"],
        "input_size": config["input_size"],
        "in_chans": config["in_chans"],
        "mean": config["mean"],
        "std": config["std"],
        "metrics": {k: v for k, v in config["metrics"].items() if k.startswith(("test/", "val/"))},
        "recipe": config["recipe"],
        "hardware": training.get("device"),
        "wall_time_s": training.get("fit_seconds"),
        "date": training.get("date", config.get("saved")),
        "command": training.get("command"),
        "bundled": bundled,
    }


def write_manifest(entries: Iterable[dict[str, Any]], paths: Iterable[str | os.PathLike] | None = None) -> list[Path]:
    """Write checkpoints.json (both copies by default), entries in the registry's order."""
    from .registry import list_models

    order = {name: i for i, name in enumerate(list_models())}
    data = {
        "about": "Generated by scripts/make_manifest.py from checkpoint folders; do not edit by hand.",
        "checkpoints": sorted(entries, key=lambda e: order.get(e["model"], len(order))),
    }
    text = json.dumps(data, indent=2) + "\n"
    written = []
    for p in paths or _manifest_paths():
        Path(p).write_text(text)
        written.append(Path(p))
    return written


# ------------------------------------------------------------------------------------------ load
def _verify(weights: Path, expected: str | None, what: str) -> str:
    actual = sha256_file(weights)
    if expected is not None and actual != expected:
        raise CheckpointError(
            f"{weights} does not match its recorded hash ({what}): expected sha256 {expected}, got {actual}. "
            "The file is corrupt or was modified; delete it and fetch or train it again."
        )
    return actual


def load_checkpoint(folder: str | os.PathLike, *, expected_sha256: str | None = None) -> Any:
    """Rebuild the model a checkpoint folder describes and load its weights strictly."""
    folder = Path(folder)
    config_path, weights = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    for f in (config_path, weights):
        if not f.is_file():
            raise CheckpointError(f"{folder} is not a zoo checkpoint folder: {f.name} is missing")
    try:
        config = json.loads(config_path.read_text())
        name, kwargs = config["model"], config["kwargs"]
    except (json.JSONDecodeError, KeyError) as err:
        raise CheckpointError(f"{config_path} is not a zoo config ({err})") from err
    _verify(weights, expected_sha256, "checkpoints.json")
    _verify(weights, config.get("sha256"), f"{CONFIG_NAME}")
    try:
        get_spec(name)
    except KeyError as err:
        raise CheckpointError(f"{config_path} names the architecture {name!r}, which this zoo does not have: {err.args[0]}") from None
    model = create_model(name, **kwargs)
    state = load_file(str(weights))
    _load_strict(model, state, where=str(weights))
    model.checkpoint = {"path": str(folder), "sha256": config.get("sha256"), "metrics": config.get("metrics", {})}
    return model


def _load_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], *, where: str, skip_prefix: str | None = None) -> None:
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


def _adapt_in_chans(weight: torch.Tensor, old: int, new: int) -> torch.Tensor:
    """First-layer weights for ``new`` input channels from ones trained on ``old``.

    1 -> 3: each colour channel gets a third of the gray weights, so an RGB image whose channels are
    all equal to a gray image gives exactly the gray activations. 3 -> 1: the colour weights are
    summed, the same equality read backwards. Works for convolutions (O, C, kh, kw) and for linear
    layers on flattened pixels (O, C*H*W).
    """
    shape = weight.shape
    w = weight.reshape(shape[0], old, -1)
    if old == 1:
        w = w.repeat(1, new, 1) / new
    elif new == 1:
        w = w.sum(dim=1, keepdim=True)
    else:
        raise CheckpointError(f"can adapt input channels between 1 and 3 only, not {old} -> {new}")
    return w.reshape(shape[0], new, *shape[2:]) if weight.ndim == 4 else w.reshape(shape[0], -1)


def _resolve(name: str, source: str | None, revision: str | None) -> tuple[Path, str, str | None]:
    """(checkpoint folder, source, expected sha256) for a registered model name."""
    get_spec(name)  # unknown names: the registry's did-you-mean error
    entry = read_manifest().get(name)
    wanted = (source,) if source else SOURCES
    if source is not None and source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    tried = []
    for src in wanted:
        if src == "bundled":
            folder = BUNDLED_DIR / name
            if (folder / WEIGHTS_NAME).is_file():
                if entry is None:
                    raise CheckpointError(f"bundled weights of {name!r} have no checkpoints.json entry to verify them against")
                return folder, "bundled", entry["sha256"]
            tried.append("not bundled with the package")
        elif src == "store":
            folder = store_dir(name)
            if (folder / WEIGHTS_NAME).is_file():
                return folder, "store", None  # your own training: checked against its config.json
            tried.append(f"not in the local store ({folder})")
        elif src in ("cache", "hub"):
            if entry is None or not entry.get("revision"):
                if src == "cache":
                    tried.append("not published to the Hub yet (no pinned revision in checkpoints.json)")
                continue
            folder = _from_hub(entry, revision or entry["revision"], local_only=src == "cache", tried=tried)
            if folder is not None:
                return folder, src, entry["sha256"] if (revision or entry["revision"]) == entry["revision"] else None
    raise WeightsNotFoundError(
        f"no weights for {name!r}: " + "; ".join(tried) + ". "
        f"Train them with `zoo train {name}` (it exports to {store_dir(name)}), "
        f"or pass the path of a checkpoint folder to zoo.load."
    )


def _from_hub(entry: dict[str, Any], revision: str, *, local_only: bool, tried: list[str]) -> Path | None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    if not local_only and offline:
        tried.append("the Hub was not asked (HF_HUB_OFFLINE=1)")
        return None
    try:
        paths = [hf_hub_download(entry["repo_id"], f, revision=revision, local_files_only=local_only) for f in (CONFIG_NAME, WEIGHTS_NAME)]
    except LocalEntryNotFoundError:
        tried.append(f"not in the Hugging Face cache ({entry['repo_id']}@{revision[:12]})" if local_only
                     else f"the Hub was not reachable for {entry['repo_id']}")  # fmt: skip
        return None
    except Exception as err:  # network errors, 404s, auth: say which, then go on to the error
        tried.append(f"the Hub download of {entry['repo_id']} failed ({type(err).__name__}: {err})")
        return None
    return Path(paths[1]).parent


def load(
    name_or_path: str | os.PathLike,
    *,
    num_classes: int | None = None,
    in_chans: int | None = None,
    device: str | torch.device | None = None,
    source: str | None = None,
    revision: str | None = None,
) -> Any:
    """A trained zoo model in eval mode, with ``label_names`` and ``preprocess`` attached.

    Args:
        name_or_path: a registered name ("lenet"), a checkpoint folder, or its model.safetensors.
        num_classes: a different output size: the head is re-initialised (and says so); every
            other weight is loaded strictly.
        in_chans: 1 or 3 input channels: the first layer's weights are adapted so that a gray image
            and the same image repeated over RGB give the same output.
        device: where to put the model.
        source: restrict a name's lookup to one of "bundled", "store", "cache", "hub".
        revision: a Hub revision other than the one pinned in checkpoints.json (not verified
            against the manifest, only against its own config.json).
    """
    path = Path(name_or_path)
    if path.exists():
        folder = path.parent if path.is_file() else path
        where, expected = "path", None
    elif any(sep in str(name_or_path) for sep in ("/", os.sep)) or str(name_or_path).endswith(".safetensors"):
        raise FileNotFoundError(f"checkpoint path {str(name_or_path)!r} does not exist")
    else:
        folder, where, expected = _resolve(str(name_or_path), source, revision)
    model = load_checkpoint(folder, expected_sha256=expected)
    log.info("loaded %s from %s (%s)", model.model_name, folder, where)
    model.checkpoint["source"] = where

    if in_chans is not None and in_chans != model.in_chans:
        model = _with_in_chans(model, in_chans)
    if num_classes is not None and num_classes != model.num_classes:
        model = with_new_head(model, num_classes)
    if device is not None:
        model = model.to(device)
    model.eval()
    model.preprocess = model.transform = Preprocess(input_size=model.input_size, in_chans=model.in_chans, mean=model.mean, std=model.std)
    return model


def _rebuild(model: Any, **changes: Any) -> Any:
    kwargs = {**model.zoo_kwargs, **changes}
    new = create_model(model.model_name, **kwargs)
    new.checkpoint = model.checkpoint
    return new


def with_new_head(model: Any, num_classes: int, *, label_names: list[str] | None = None) -> Any:
    """The same network with a freshly initialised head for ``num_classes``; every other weight is
    copied strictly from ``model`` (the book's fine-tuning steps 2 and 3)."""
    new = _rebuild(model, num_classes=num_classes, label_names=list(label_names) if label_names else None)
    _load_strict(new, model.state_dict(), where=model.checkpoint["path"], skip_prefix="head.")
    # A warning, so it shows without any logging set-up (Python prints warnings to stderr).
    log.warning("zoo: %s head re-initialised for %d classes (checkpoint has %d); every other layer loaded from the checkpoint",
                model.model_name, num_classes, model.num_classes)  # fmt: skip
    return new


def _with_in_chans(model: Any, in_chans: int) -> Any:
    old = model.in_chans
    mean, std = model.mean, model.std
    new = _rebuild(model, in_chans=in_chans, mean=[sum(mean) / len(mean)] * in_chans, std=[sum(std) / len(std)] * in_chans)
    state = dict(model.state_dict())
    own = new.state_dict()
    changed = [k for k in state if k in own and state[k].shape != own[k].shape]
    if not changed:
        raise CheckpointError(f"could not find the input layer of {model.model_name} to adapt to {in_chans} channels")
    first = changed[0]  # the first layer in definition order is the only one that sees the channels
    state[first] = _adapt_in_chans(state[first], old, in_chans)
    _load_strict(new, state, where=model.checkpoint["path"])
    return new


# ------------------------------------------------------------------------------------------ publish
def push_to_hub(folder: str | os.PathLike, repo_id: str, *, token: str | None = None, private: bool = False,
                dry_run: bool = False, commit_message: str | None = None) -> str | None:  # fmt: skip
    """Create ``repo_id`` if needed and upload a checkpoint folder; returns the commit hash to pin
    in checkpoints.json. ``dry_run`` prints what would be uploaded and uploads nothing."""
    folder = Path(folder)
    load_checkpoint(folder)  # never publish a folder that does not load
    files = sorted(p for p in folder.iterdir() if p.is_file())
    print(f"{'would upload' if dry_run else 'uploading'} to https://huggingface.co/{repo_id}:")
    for f in files:
        print(f"  {f.name:<20} {f.stat().st_size:>12,} bytes  sha256 {sha256_file(f)}")
    if dry_run:
        return None
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, exist_ok=True, private=private)
    info = api.upload_folder(folder_path=str(folder), repo_id=repo_id,
                             commit_message=commit_message or f"Upload {folder.name} checkpoint")  # fmt: skip
    print(f"pushed: {info.commit_url}")
    return info.oid
