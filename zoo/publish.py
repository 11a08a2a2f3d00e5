"""Publishing weights: to the Hugging Face Hub (:func:`push_to_hub`), and off a GPU machine in a
few parts small enough to carry (:func:`pack`, :func:`unpack`; what ``scripts/pack_weights.py``
and ``scripts/bundle_weights.py --from`` use)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import tempfile
from pathlib import Path
from typing import Sequence

from .checkpoint import CONFIG_NAME, WEIGHTS_NAME, load_checkpoint, save_checkpoint, sha256_file
from .pretrained import load

__all__ = ["push_to_hub", "pack", "unpack", "PART_BYTES"]

PART_BYTES = 16 * 2**20
PART_GLOB = "weights.tar.part-*"


def pack(folders: Sequence[Path], out: Path, *, max_parts: int = 8, max_mb: float | None = None) -> list[Path]:
    """float16 copies of ``folders`` in one tar, split into parts of at most 16 MiB, with the
    whole tar's sha256 beside them; returns the files written. Refuses (ValueError) to write more
    than ``max_parts`` parts; ``max_mb`` leaves out the models whose float16 weights are larger."""
    out.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(fileobj=buffer, mode="w") as tar:
        for folder in folders:
            model = load(folder)
            config = json.loads((folder / CONFIG_NAME).read_text())
            half = save_checkpoint(model, Path(tmp) / model.model_name, metrics=config.get("metrics"),
                                       training=config.get("training"), dtype="float16")  # fmt: skip
            size = (half / WEIGHTS_NAME).stat().st_size
            if max_mb is not None and size > max_mb * 2**20:
                print(f"left out {model.model_name}: {size / 2**20:.1f} MiB as float16 (over --max-mb {max_mb})")
                continue
            tar.add(half, arcname=model.model_name)
            print(f"packed {model.model_name}: {size / 2**20:.1f} MiB as float16")
    data = buffer.getvalue()
    parts = [data[i : i + PART_BYTES] for i in range(0, len(data), PART_BYTES)]
    if len(parts) > max_parts:
        raise ValueError(f"{len(data) / 2**20:.1f} MiB needs {len(parts)} parts, over --max-parts {max_parts}; leave models out with --max-mb")
    written = []
    for i, part in enumerate(parts):
        path = out / f"weights.tar.part-{i:03d}"
        path.write_bytes(part)
        written.append(path)
    (out / "weights.tar.sha256").write_text(hashlib.sha256(data).hexdigest() + "\n")
    return written + [out / "weights.tar.sha256"]


def unpack(parts_dir: Path, to: Path) -> list[Path]:
    """Join and check the parts in ``parts_dir``; extract the checkpoint folders into ``to``."""
    parts = sorted(parts_dir.glob(PART_GLOB))
    if not parts:
        raise ValueError(f"{parts_dir} holds no {PART_GLOB} files")
    data = b"".join(p.read_bytes() for p in parts)
    expected = (parts_dir / "weights.tar.sha256").read_text().split()[0] if (parts_dir / "weights.tar.sha256").is_file() else None
    if expected is not None and hashlib.sha256(data).hexdigest() != expected:
        raise ValueError(f"the parts in {parts_dir} do not join into the packed tar (sha256 differs): a part is missing or damaged")
    to.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(to, filter="data")  # "data": no absolute paths, links out of `to` or devices
        names = sorted({m.name.split("/")[0] for m in tar.getmembers()})
    return [to / n for n in names if (to / n / CONFIG_NAME).is_file()]


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
