"""Pretrained weights: where a model's are (:func:`get_weights`), and a model loaded from them (:func:`load`).

A registered name's weights are looked for in one ordered list of sources, :data:`SOURCES`:
the weights bundled in the package -> the local store that ``zoo train`` writes
(``$ZOO_HOME/checkpoints/<name>``) -> the Hugging Face cache -> the Hub, at the revision pinned
in checkpoints.json. :func:`load` and :func:`get_weights` walk the same list; only :func:`load`
downloads. Every file is checked against its sha256 before it is used, and loading is strict.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from .adapt import with_in_chans, with_new_head
from .checkpoint import CONFIG_NAME, WEIGHTS_NAME, CheckpointError, load_checkpoint
from .data.fashion_mnist import MEAN, STD
from .data.preprocess import PhotoSteps, Preprocess
from .manifest import BUNDLE_MAX_FILE_BYTES, BUNDLED_DIR, read_manifest
from .registry import get_spec, list_models
from .runtime import store_dir

__all__ = ["WeightsNotFoundError", "WeightsInfo", "Found", "SOURCES", "find_weights", "get_weights", "load", "load_backbone_layers", "train_command"]

log = logging.getLogger(__name__)


class WeightsNotFoundError(FileNotFoundError):
    """No source holds weights for the model asked for."""


@dataclass(frozen=True)
class Found:
    """Where one source holds a model's weights. ``folder`` is None for the Hub when it was only
    asked whether it has them (nothing downloaded); ``sha256`` is what the file must hash to
    (None: checked against its own config.json, as for your own training); ``meta`` is the
    manifest entry or the folder's config.json, for :class:`WeightsInfo`."""

    source: str
    folder: Path | None
    sha256: str | None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def config_sha256(self) -> str | None:
        """What config.json's content must hash to: the manifest's, where ``sha256`` is too."""
        return self.meta.get("config_sha256") if self.sha256 is not None else None


# Each source: (name, entry in checkpoints.json or None, revision asked for, fetch) -> Found, or
# the reason it does not have them (a line of the error when none has). ``fetch=False`` only looks.
def _bundled(name: str, entry: dict[str, Any] | None, revision: str | None, fetch: bool) -> Found | str:
    folder = BUNDLED_DIR / name
    if (folder / WEIGHTS_NAME).is_file():
        if entry is None:
            if not fetch:
                return "bundled, but with no checkpoints.json entry to verify it against"
            raise CheckpointError(f"bundled weights of {name!r} have no checkpoints.json entry to verify them against")
        return Found("bundled", folder, entry["sha256"], entry)
    params = get_spec(name).book_params
    if params is not None and 2 * params > BUNDLE_MAX_FILE_BYTES:
        return (f"too large to bundle with the package ({params / 1e6:.1f}M parameters, {2 * params / 2**20:.0f} MiB even as "
                f"float16; the limit is {BUNDLE_MAX_FILE_BYTES // 2**20} MiB), so it is published on the Hub only: "
                f"`zoo push {name}` publishes it from a machine with the weights and a Hub token")  # fmt: skip
    return "not bundled with the package"


def _store(name: str, entry: dict[str, Any] | None, revision: str | None, fetch: bool) -> Found | str:
    folder = store_dir(name)
    if not (folder / WEIGHTS_NAME).is_file():
        return f"not in the local store ({folder})"
    try:
        config = json.loads((folder / CONFIG_NAME).read_text())
    except (OSError, ValueError):
        config = None
    meta = {**config, **config.get("kwargs", {})} if isinstance(config, dict) and isinstance(config.get("kwargs", {}), dict) else {}
    return Found("store", folder, None, meta)  # your own training: checked against its config.json


def _hub_source(local_only: bool) -> Callable[[str, dict[str, Any] | None, str | None, bool], Found | str]:
    def source(name: str, entry: dict[str, Any] | None, revision: str | None, fetch: bool) -> Found | str:
        where = "cache" if local_only else "hub"
        if entry is None or not entry.get("revision"):
            return "not published to the Hub yet (no pinned revision in checkpoints.json)"
        pinned = revision or entry["revision"]
        expected = entry["sha256"] if pinned == entry["revision"] else None
        if not fetch and not local_only:
            return Found(where, None, expected, entry)  # published: load would download it
        tried: list[str] = []
        folder = _from_hub(entry, pinned, local_only=local_only, tried=tried)
        return Found(where, folder, expected, entry) if folder is not None else tried[0]

    return source


#: The sources of a registered name's weights, in the order they are tried.
SOURCES: dict[str, Callable[[str, dict[str, Any] | None, str | None, bool], Found | str]] = {
    "bundled": _bundled, "store": _store, "cache": _hub_source(local_only=True), "hub": _hub_source(local_only=False),
}  # fmt: skip


def find_weights(name: str, *, source: str | None = None, revision: str | None = None, fetch: bool = True) -> Found:
    """The first of :data:`SOURCES` (or only ``source``) that holds ``name``'s weights. With
    ``fetch=False`` nothing is downloaded or asked of the network: the Hub is reported as holding
    a published model's weights without asking it."""
    get_spec(name)  # unknown names: the registry's did-you-mean error
    if source is not None and source not in SOURCES:
        raise ValueError(f"source must be one of {tuple(SOURCES)}, got {source!r}")
    entry = read_manifest().get(name)
    tried: list[str] = []
    for src in (source,) if source else SOURCES:
        found = SOURCES[src](name, entry, revision, fetch)
        if isinstance(found, Found):
            return found
        if found not in tried:
            tried.append(found)
    raise WeightsNotFoundError(
        f"no weights for {name!r}: " + "; ".join(tried) + ". "
        f"Train them with `{train_command(name)}` (it exports to {store_dir(name)}), "
        f"or pass the path of a checkpoint folder to zoo.load."
    )


@dataclass(frozen=True)
class WeightsInfo:
    """What the zoo knows of a model's trained weights, read without building the model (like
    torchvision's ``Weights.meta``). ``location``: "bundled" (ships with the package), "store"
    (trained here, ``$ZOO_HOME/checkpoints``), "cache" (downloaded before, in the Hugging Face
    cache), "hub" (published, downloaded on first load) or "none"; the first that has them, in
    ``zoo.load``'s order."""

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
    """Where ``name``'s trained weights are and what they score, without loading (or downloading) them."""
    spec = get_spec(name)
    try:
        found: Found | None = find_weights(name, fetch=False)
    except WeightsNotFoundError:
        found = None
    meta = found.meta if found is not None else {}
    steps = getattr(spec.model_class, "photo_steps", PhotoSteps.plain())
    if meta.get("preprocess") is not None:  # what config.json records (folders from before the steps: the default)
        try:
            steps = PhotoSteps.from_dict(meta["preprocess"])
        except ValueError:
            pass  # zoo.load refuses such a folder, with the reason; here it is only described
    mean, std = meta.get("mean", MEAN), meta.get("std", STD)
    return WeightsInfo(
        name=name, location=found.source if found else "none", path=str(found.folder) if found and found.folder else None,
        sha256=meta.get("sha256"), size_bytes=meta.get("size"),
        test_score=(meta.get("metrics") or {}).get(f"test/{getattr(spec.model_class, 'score', 'loss')}"),
        score_label=getattr(spec.model_class, "score_label", "loss"),
        input_size=meta.get("input_size") or spec.input_size or 0, in_chans=meta.get("in_chans") or 1, photo_steps=steps,
        mean=tuple(mean if isinstance(mean, (list, tuple)) else [mean]), std=tuple(std if isinstance(std, (list, tuple)) else [std]),
    )  # fmt: skip


def train_command(name: str) -> str:
    """The command that trains ``name`` as the leaderboard did: on a GPU in bf16 for the big networks."""
    params = get_spec(name).book_params
    if params is not None and params > 1_000_000:  # the leaderboard's GPU rows
        return f"zoo train {name} --accelerator gpu --precision bf16-mixed --channels-last"
    return f"zoo train {name}"


# ------------------------------------------------------------------------------------------ the Hub
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


def load_backbone_layers(layers: Any, source: str, *, in_chans: int) -> None:
    """Copy into ``layers`` the trained weights of the first layers of the zoo classifier ``source``'s
    backbone (``zoo.load``, verified). ``layers`` holds them under the backbone's own names ("0",
    "1", ...), as ``nn.Sequential(*backbone[:k])`` or torchvision's ``IntermediateLayerGetter`` do:
    how a scene model starts from a classifier's features (the book's point)."""
    trained = load(source, in_chans=in_chans)
    names = {name for name, _ in layers.named_children()}
    state = {k: v for k, v in trained.backbone.state_dict().items() if k.split(".")[0] in names}
    layers.load_state_dict(state)


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
        found = find_weights(text, source=source, revision=revision)
        folder, where, expected, expected_config = found.folder, found.source, found.sha256, found.config_sha256
    elif path.exists():
        folder = path.parent if path.is_file() else path
        where, expected, expected_config = "path", None, None
    elif looks_like_path:
        raise FileNotFoundError(f"checkpoint path {text!r} does not exist")
    else:
        found = find_weights(text, source=source, revision=revision)
        folder, where, expected, expected_config = found.folder, found.source, found.sha256, found.config_sha256
    # A registered name must find that model: a LeNet folder copied into the store as "alexnet" is refused.
    registered = text if text in list_models() and not looks_like_path else None
    model = load_checkpoint(folder, expected_sha256=expected, trust_unverified=trust_unverified, model_name=registered,
                            expected_config_sha256=expected_config)  # fmt: skip
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
    model.preprocess = Preprocess(input_size=model.input_size, in_chans=model.in_chans, mean=model.mean,
                                                    std=model.std, steps=model.photo_steps)  # fmt: skip
    return model
