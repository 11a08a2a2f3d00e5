#!/usr/bin/env python
"""Regenerate checkpoints.json (and the package's copy) from checkpoint folders' real files.

    python scripts/make_manifest.py                                  # bundled folders + kept Hub entries
    python scripts/make_manifest.py --add runs/resnet18/version_0/export --revision 1a2b3c...

Bundled folders (zoo/weights/<model>) are always re-read; entries of models published only on the
Hub are kept as they are unless --add gives their folder again. Never edit checkpoints.json by hand.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from zoo.checkpoint import CONFIG_NAME
from zoo.hub import BUNDLE_MAX_FILE_BYTES as MAX_FILE_BYTES
from zoo.hub import BUNDLE_MAX_TOTAL_BYTES as MAX_TOTAL_BYTES
from zoo.hub import BUNDLED_DIR, manifest_entry, read_manifest, write_manifest


def bundled_folders() -> list[Path]:
    return sorted(p.parent for p in BUNDLED_DIR.glob(f"*/{CONFIG_NAME}"))


def regenerate(added: list[tuple[Path, str | None, str | None]] = ()) -> list[dict]:
    old = read_manifest()
    entries: dict[str, dict] = {}
    total = 0
    for folder in bundled_folders():
        name = json.loads((folder / CONFIG_NAME).read_text())["model"]
        if folder.name != name:
            raise SystemExit(f"{folder} holds a {name!r} checkpoint; bundled folders are named after their model")
        prev = old.get(name, {})
        entry = manifest_entry(folder, repo_id=prev.get("repo_id"), revision=prev.get("revision"), bundled=True)
        if entry["size"] > MAX_FILE_BYTES:
            raise SystemExit(f"{folder} is {entry['size']:,} bytes: bundled files must stay under {MAX_FILE_BYTES:,}")
        total += entry["size"]
        entries[name] = entry
    if total > MAX_TOTAL_BYTES:
        raise SystemExit(f"bundled weights total {total:,} bytes, over the {MAX_TOTAL_BYTES:,} allowed")
    for name, entry in old.items():
        if name not in entries and not entry.get("bundled"):
            entries[name] = entry  # published on the Hub only: its files are not here to re-read
    for folder, repo_id, revision in added:
        entry = manifest_entry(folder, repo_id=repo_id, revision=revision, bundled=False)
        if entry["model"] in entries and entries[entry["model"]].get("bundled"):
            entry = {**entries[entry["model"]], "repo_id": repo_id or entry["repo_id"], "revision": revision}
        entries[entry["model"]] = entry
    return list(entries.values())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--add", type=Path, help="a checkpoint folder to add or replace")
    p.add_argument("--repo-id", help="its Hub repo (default d2l-zoo/<model>)")
    p.add_argument("--revision", help="the Hub commit that holds it (from scripts/push_to_hub.py)")
    args = p.parse_args()
    added = [(args.add, args.repo_id, args.revision)] if args.add else []
    entries = regenerate(added)
    for path in write_manifest(entries):
        print(f"wrote {path} ({len(entries)} checkpoints)")


if __name__ == "__main__":
    main()
