#!/usr/bin/env python
"""Regenerate checkpoints.json (and the package's copy) from checkpoint folders' real files.

    python scripts/make_manifest.py                                  # bundled folders + kept Hub entries
    python scripts/make_manifest.py --add runs/resnet18/version_0/export --revision 1a2b3c...

Bundled folders (zoo/weights/<model>) are always re-read; entries of models published only on the
Hub are kept as they are unless --add gives their folder again. Never edit checkpoints.json by hand.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from zoo.manifest import regenerate, write_manifest


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--add", type=Path, help="a checkpoint folder to add or replace")
    p.add_argument("--repo-id", help="its Hub repo (default d2l-zoo/<model>)")
    p.add_argument("--revision", help="the Hub commit that holds it (from zoo push)")
    args = p.parse_args()
    added = [(args.add, args.repo_id, args.revision)] if args.add else []
    try:
        entries = regenerate(added)
    except ValueError as err:
        raise SystemExit(str(err)) from None
    for path in write_manifest(entries):
        print(f"wrote {path} ({len(entries)} checkpoints)")


if __name__ == "__main__":
    main()
