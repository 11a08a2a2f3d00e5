#!/usr/bin/env python
"""Pack checkpoint folders into a few files small enough to carry off a GPU machine, and back.

    python scripts/pack_weights.py pack runs/leaderboard/*/version_*/export --out OUT   # on the GPU machine
    python scripts/pack_weights.py unpack OUT --to DIR                                 # anywhere

``pack`` stores each folder's weights as float16 (config.json and the model card beside them),
puts them in one tar and splits it into ``weights.tar.part-NNN`` files of at most 16 MiB, with
``weights.tar.sha256`` holding the whole tar's hash. It refuses to write more than ``--max-parts``
parts (8): leave the largest models out (``--max-mb``) rather than lose the rest. ``unpack``
joins the parts, checks the hash and extracts the folders. ``scripts/bundle_weights.py --from
OUT`` does that and bundles them in one step.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import zoo  # noqa: E402
from zoo.checkpoint import CONFIG_NAME, WEIGHTS_NAME  # noqa: E402

PART_BYTES = 16 * 2**20
PART_GLOB = "weights.tar.part-*"


def pack(folders: list[Path], out: Path, *, max_parts: int = 8, max_mb: float | None = None) -> list[Path]:
    """float16 copies of ``folders`` in one tar, split into parts; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(fileobj=buffer, mode="w") as tar:
        for folder in folders:
            model = zoo.load(folder)
            config = json.loads((folder / CONFIG_NAME).read_text())
            half = zoo.save_checkpoint(model, Path(tmp) / model.model_name, metrics=config.get("metrics"),
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
        raise SystemExit(f"{len(data) / 2**20:.1f} MiB needs {len(parts)} parts, over --max-parts {max_parts}; leave models out with --max-mb")
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
        raise SystemExit(f"{parts_dir} holds no {PART_GLOB} files")
    data = b"".join(p.read_bytes() for p in parts)
    expected = (parts_dir / "weights.tar.sha256").read_text().split()[0] if (parts_dir / "weights.tar.sha256").is_file() else None
    if expected is not None and hashlib.sha256(data).hexdigest() != expected:
        raise SystemExit(f"the parts in {parts_dir} do not join into the packed tar (sha256 differs): a part is missing or damaged")
    to.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(to, filter="data")  # "data": no absolute paths, links out of `to` or devices
        names = sorted({m.name.split("/")[0] for m in tar.getmembers()})
    return [to / n for n in names if (to / n / CONFIG_NAME).is_file()]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    pk = sub.add_parser("pack")
    pk.add_argument("folders", nargs="+", type=Path)
    pk.add_argument("--out", type=Path, required=True)
    pk.add_argument("--max-parts", type=int, default=8)
    pk.add_argument("--max-mb", type=float, help="leave out models whose float16 weights are larger")
    up = sub.add_parser("unpack")
    up.add_argument("parts", type=Path)
    up.add_argument("--to", type=Path, required=True)
    args = p.parse_args()
    if args.command == "pack":
        for path in pack(args.folders, args.out, max_parts=args.max_parts, max_mb=args.max_mb):
            print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    else:
        for folder in unpack(args.parts, args.to):
            print(f"unpacked {folder}")


if __name__ == "__main__":
    main()
