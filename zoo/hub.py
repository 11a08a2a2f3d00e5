"""Where a model's weights come from, and where they go: the checkpoints.json manifest, ``zoo.load``
by name or path, the Hugging Face Hub download, and publishing.

``zoo.load(name)`` looks for a registered model's weights, in order: the weights bundled in the
package -> the local store that ``zoo train`` writes (``$ZOO_HOME/checkpoints/<name>``) -> the
Hugging Face cache -> the Hub, at the revision pinned in checkpoints.json. Every file is checked
against its sha256 before it is used, and loading is strict.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch

from .adapt import with_in_chans, with_new_head
from .checkpoint import CONFIG_NAME, WEIGHTS_NAME, CheckpointError, load_checkpoint, sha256_file
from .data.fashion_mnist import MEAN, STD
from .data.preprocess import PhotoSteps, Preprocess
from .registry import get_spec, list_models
from .runtime import zoo_home

__all__ = [
    "WeightsNotFoundError",
    "WeightsInfo",
    "get_weights",
    "load",
    "read_manifest",
    "manifest_entry",
    "write_manifest",
    "push_to_hub",
    "store_dir",
    "BUNDLED_DIR",
    "SOURCES",
]

log = logging.getLogger(__name__)

MANIFEST_NAME = "checkpoints.json"
PACKAGE_DIR = Path(__file__).resolve().parent
BUNDLED_DIR = PACKAGE_DIR / "weights"
HUB_ORG = "d2l-zoo"  # default Hub namespace: d2l-zoo/<model>
SOURCES = ("bundled", "store", "cache", "hub")
# The bundling rule: small enough to ship in every install (float16 counts: 2 bytes a parameter).
BUNDLE_MAX_FILE_BYTES = 25 * 2**20
BUNDLE_MAX_TOTAL_BYTES = 60 * 2**20


class WeightsNotFoundError(FileNotFoundError):
    """No source holds weights for the model asked for."""


def store_dir(name: str) -> Path:
    """Where ``zoo train`` exports the checkpoint folder of ``name``."""
    return zoo_home() / "checkpoints" / name


# ------------------------------------------------------------------------------------------ manifest
def _manifest_paths() -> list[Path]:
    # $ZOO_MANIFEST (tests, forks with their own Hub repos), else the repository's top-level copy
    # (source checkouts) and the package's own (installed wheels).
    if os.environ.get("ZOO_MANIFEST"):
        return [Path(os.environ["ZOO_MANIFEST"])]
    # The top-level copy only in a source checkout (beside pyproject.toml): for an installed wheel
    # that folder is site-packages, where a stray checkpoints.json must not shadow the package's.
    checkout = (PACKAGE_DIR.parent / "pyproject.toml").is_file()
    return [PACKAGE_DIR.parent / MANIFEST_NAME, PACKAGE_DIR / MANIFEST_NAME] if checkout else [PACKAGE_DIR / MANIFEST_NAME]


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
        "preprocess": config.get("preprocess"),
        "metrics": {k: v for k, v in config["metrics"].items() if k.startswith(("test/", "val/"))},
        "recipe": config["recipe"],
        "hardware": training.get("device"),
        "wall_time_s": training.get("fit_seconds"),
        "date": training.get("date", config.get("saved")),
        "command": portable(training["command"]) if training.get("command") else None,
        "bundled": bundled,
    }


def portable(command: str) -> str:
    """``command`` without its ``--out DIR``: where a run folder went is the machine's business,
    not part of how the number was made (the README shows these commands)."""
    words, kept = shlex.split(command), []
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word == "--out":
            skip = True
        elif not word.startswith("--out="):
            kept.append(word)
    return shlex.join(kept)


def write_manifest(entries: Iterable[dict[str, Any]], paths: Iterable[str | os.PathLike] | None = None) -> list[Path]:
    """Write checkpoints.json (both copies by default), entries in the registry's order."""
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
            params = get_spec(name).book_params
            if params is not None and 2 * params > BUNDLE_MAX_FILE_BYTES:
                tried.append(f"too large to bundle with the package ({params / 1e6:.1f}M parameters, "
                             f"{2 * params / 2**20:.0f} MiB even as float16; the limit is {BUNDLE_MAX_FILE_BYTES // 2**20} MiB), "
                             "so it is published on the Hub only")  # fmt: skip
            else:
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
        f"Train them with `{train_command(name)}` (it exports to {store_dir(name)}), "
        f"or pass the path of a checkpoint folder to zoo.load."
    )


@dataclass(frozen=True)
class WeightsInfo:
    """What the zoo knows of a model's trained weights, read without building the model (like
    torchvision's ``Weights.meta``). ``location``: "bundled" (ships with the package), "store"
    (trained here, ``$ZOO_HOME/checkpoints``), "hub" (published, downloaded on first load) or
    "none"; the first that has them, in ``zoo.load``'s order."""

    name: str
    location: str
    path: str | None
    sha256: str | None
    size_bytes: int | None
    test_score: float | None  # top-1 for classifiers, mAP@0.5 for detectors (score_label says which)
    score_label: str
    input_size: int
    in_chans: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    photo_steps: PhotoSteps

    def transforms(self) -> Preprocess:
        """The preprocessing ``zoo.load(name).preprocess`` applies (PIL images or tensors in)."""
        return Preprocess(input_size=self.input_size, in_chans=self.in_chans, mean=self.mean, std=self.std, steps=self.photo_steps)


def get_weights(name: str) -> WeightsInfo:
    """Where ``name``'s trained weights are and what they score, without loading them."""
    spec = get_spec(name)
    entry = read_manifest().get(name)
    found: tuple[str, Path | None, dict[str, Any] | None] = ("none", None, None)
    if entry is not None and (BUNDLED_DIR / name / WEIGHTS_NAME).is_file():
        found = ("bundled", BUNDLED_DIR / name, entry)
    elif (store_dir(name) / CONFIG_NAME).is_file() and (store_dir(name) / WEIGHTS_NAME).is_file():
        try:
            config = json.loads((store_dir(name) / CONFIG_NAME).read_text())
        except ValueError:
            config = None
        if isinstance(config, dict):
            found = ("store", store_dir(name), {**config, "size": config.get("size"), **config.get("kwargs", {})})
    elif entry is not None and entry.get("revision"):
        found = ("hub", None, entry)
    location, folder, meta = found
    meta = meta or {}
    size = meta.get("input_size") or spec.input_size or 0
    chans = meta.get("in_chans") or 1
    mean, std = meta.get("mean", MEAN), meta.get("std", STD)
    steps = getattr(spec.model_class, "photo_steps", PhotoSteps.plain())
    if meta.get("preprocess") is not None:  # what config.json records (folders from before the steps: the default)
        try:
            steps = PhotoSteps.from_dict(meta["preprocess"])
        except ValueError:
            pass  # zoo.load refuses such a folder, with the reason; here it is only described
    return WeightsInfo(
        name=name, location=location, path=str(folder) if folder else None, sha256=meta.get("sha256"), size_bytes=meta.get("size"),
        test_score=(meta.get("metrics") or {}).get(f"test/{getattr(spec.model_class, 'score', 'loss')}"),
        score_label=getattr(spec.model_class, "score_label", "loss"),
        input_size=size, in_chans=chans, photo_steps=steps,
        mean=tuple(mean if isinstance(mean, (list, tuple)) else [mean]), std=tuple(std if isinstance(std, (list, tuple)) else [std]),
    )  # fmt: skip


def train_command(name: str) -> str:
    """The command that trains ``name`` as the leaderboard did: on a GPU in bf16 for the big networks."""
    params = get_spec(name).book_params
    if params is not None and params > 1_000_000:  # the leaderboard's GPU rows
        return f"zoo train {name} --accelerator gpu --precision bf16-mixed --channels-last"
    return f"zoo train {name}"


def _hub_reachable(timeout: float = 2.0) -> bool:
    """Whether a TCP connection to the Hub's endpoint opens within ``timeout`` seconds."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout=timeout):
            return True
    except OSError:
        return False


def _from_hub_repo(spec: str) -> Path:
    """The folder of ``ORG/NAME[@REVISION]`` (any Hub repo in the zoo's folder format): from the
    Hugging Face cache first, else downloaded. It is verified against its own config.json."""
    repo_id, _, revision = spec.partition("@")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"hf-hub: takes ORG/NAME or ORG/NAME@REVISION, got {spec!r}")
    tried: list[str] = []
    entry = {"repo_id": repo_id}
    folder = _from_hub(entry, revision or "main", local_only=True, tried=tried) or _from_hub(entry, revision or "main", local_only=False, tried=tried)
    if folder is None:
        raise WeightsNotFoundError(f"no checkpoint folder for hf-hub:{spec}: " + "; ".join(tried))
    return folder


def _from_hub(entry: dict[str, Any], revision: str, *, local_only: bool, tried: list[str]) -> Path | None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    if not local_only and offline:
        tried.append("the Hub was not asked (HF_HUB_OFFLINE=1)")
        return None
    if not local_only and not _hub_reachable():
        # huggingface_hub would retry for ~25 s before giving up; one short connect says the same.
        tried.append("the Hub was not reachable (no network connection; set HF_HUB_OFFLINE=1 to skip this check)")
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
    trust_unverified: bool = False,
    features_only: bool = False,
) -> Any:
    """A trained zoo model in eval mode, with ``label_names`` and ``preprocess`` attached.

    Args:
        name_or_path: a registered name ("lenet"), a checkpoint folder, or its model.safetensors;
            ``"local-dir:PATH"`` (a folder, said explicitly) or ``"hf-hub:ORG/NAME@REVISION"``
            (any Hub repo in the zoo's folder format, from the HF cache when offline; verified
            against its own config.json).
        num_classes: a different output size: the head is re-initialised (and says so); every
            other weight is loaded strictly.
        in_chans: 1 or 3 input channels: the first layer's weights are adapted so that a gray image
            and the same image repeated over RGB give the same output.
        device: where to put the model.
        source: restrict a name's lookup to one of "bundled", "store", "cache", "hub".
        revision: a Hub revision other than the one pinned in checkpoints.json (not verified
            against the manifest, only against its own config.json).
        trust_unverified: load a folder whose config.json records no sha256 of its weights
            (refused by default: nothing would then check them).
        features_only: return a :class:`~zoo.features.FeatureExtractor` of the classifier instead:
            its forward gives the output of every stage (timm's ``features_only``).
    """
    model = _load(name_or_path, num_classes=num_classes, in_chans=in_chans, device=device, source=source,
                  revision=revision, trust_unverified=trust_unverified)  # fmt: skip
    if features_only:
        from .features import FeatureExtractor

        return FeatureExtractor(model).eval()
    return model


def _load(name_or_path: str | os.PathLike, *, num_classes: int | None, in_chans: int | None, device: Any, source: str | None,
          revision: str | None, trust_unverified: bool) -> Any:  # fmt: skip
    text = str(name_or_path)
    if text.startswith("local-dir:"):
        name_or_path = text = text[len("local-dir:"):]
        if not Path(text).exists():
            raise FileNotFoundError(f"checkpoint folder {text!r} (local-dir:) does not exist")
    elif text.startswith("hf-hub:"):
        return _finish(load_checkpoint(_from_hub_repo(text[len("hf-hub:"):]), trust_unverified=trust_unverified),
                       "hf-hub", num_classes=num_classes, in_chans=in_chans, device=device)  # fmt: skip
    path = Path(name_or_path)
    looks_like_path = isinstance(name_or_path, os.PathLike) or any(sep in text for sep in ("/", os.sep)) or text.endswith(".safetensors")
    if text in list_models(external=True) and not looks_like_path:
        # A registered name always means the registered weights, even when a folder of that name
        # happens to be in the working directory (write "./mlp" for the folder).
        folder, where, expected = _resolve(text, source, revision)
    elif path.exists():
        folder = path.parent if path.is_file() else path
        where, expected = "path", None
    elif looks_like_path:
        raise FileNotFoundError(f"checkpoint path {text!r} does not exist")
    else:
        folder, where, expected = _resolve(text, source, revision)
    model = load_checkpoint(folder, expected_sha256=expected, trust_unverified=trust_unverified)
    return _finish(model, where, num_classes=num_classes, in_chans=in_chans, device=device)


def _finish(model: Any, where: str, *, num_classes: int | None, in_chans: int | None, device: Any) -> Any:
    log.info("loaded %s from %s (%s)", model.model_name, model.checkpoint["path"], where)
    model.checkpoint["source"] = where
    if in_chans is not None and in_chans != model.in_chans:
        model = with_in_chans(model, in_chans)
    if num_classes is not None and num_classes != model.num_classes:
        model = with_new_head(model, num_classes)
    if device is not None:
        model = model.to(device)
    model.eval()
    model.preprocess = model.transform = Preprocess(input_size=model.input_size, in_chans=model.in_chans, mean=model.mean,
                                                    std=model.std, steps=model.photo_steps)  # fmt: skip
    return model


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
