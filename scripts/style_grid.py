#!/usr/bin/env python
"""The README's style-transfer grid: content | style | result for scikit-image's photos and
textures, each result made by `zoo stylize` with its defaults (the command is printed per pair).

    python scripts/style_grid.py                      # writes results/plots/style-grid.png
    python scripts/style_grid.py --steps 300 --size 384 --features resnet18 --out grid.png
"""

from __future__ import annotations

import argparse
import shlex
import tempfile
from pathlib import Path

from PIL import Image

from zoo.cli import main as zoo
from zoo.style import SAMPLE_PAIRS, sample_image


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("results/plots/style-grid.png"))
    p.add_argument("--tile", type=int, default=256, help="height of each picture in the grid")
    args, extra = p.parse_known_args()  # the rest are `zoo stylize` flags (--steps 300, --features resnet18...)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for content, style in SAMPLE_PAIRS:
            paths = {}
            for name in (content, style):
                paths[name] = Path(tmp) / f"{name}.png"
                sample_image(name).save(paths[name])
            result = Path(tmp) / f"{content}-{style}.png"
            argv = ["stylize", str(paths[content]), str(paths[style]), "--out", str(result), "--no-progress", *extra]
            print("$ zoo " + shlex.join(a.replace(tmp + "/", "") for a in argv))
            if zoo(argv) != 0:
                raise SystemExit(f"zoo stylize failed on {content} | {style}")
            rows.append([Image.open(paths[content]).convert("RGB"), Image.open(paths[style]).convert("RGB"), Image.open(result).convert("RGB")])
    tiles = [[im.resize((round(im.width * args.tile / im.height), args.tile), Image.Resampling.LANCZOS) for im in row] for row in rows]
    widths = [max(row[i].width for row in tiles) for i in range(3)]
    grid = Image.new("RGB", (sum(widths) + 4 * 8, len(tiles) * (args.tile + 8) + 8), "white")
    for r, row in enumerate(tiles):
        x = 8
        for i, im in enumerate(row):
            grid.paste(im, (x + (widths[i] - im.width) // 2, 8 + r * (args.tile + 8)))
            x += widths[i] + 8
    args.out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
