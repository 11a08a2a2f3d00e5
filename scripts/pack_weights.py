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
from pathlib import Path

from zoo.publish import pack, unpack


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
    try:
        if args.command == "pack":
            for path in pack(args.folders, args.out, max_parts=args.max_parts, max_mb=args.max_mb):
                print(f"wrote {path} ({path.stat().st_size:,} bytes)")
        else:
            for folder in unpack(args.parts, args.to):
                print(f"unpacked {folder}")
    except ValueError as err:
        raise SystemExit(str(err)) from None


if __name__ == "__main__":
    main()
