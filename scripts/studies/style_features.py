#!/usr/bin/env python
"""Choose zoo stylize's default feature network by measurement: on fixed content/style pairs, each
candidate stylises at several style weights, and a judge network that none of the candidates is
scores every result's content and style distance; the candidate whose results have the lower style
distance at matched content distance wins. Three judges: two of opposite leanings, the zoo's
trained DenseNet (trained on Fashion-MNIST, as resnet18 is; gray, so blind to colour) and VGG-19
with other random weights (seed 1; the random candidate's architecture), and one of neither kind,
``gabor``: a fixed bank of oriented Gabor filters on each colour channel at four scales, the
classic hand-made texture statistics (no learnt or random weights; it sees colour). A fourth,
``colour``, reads colour alone: the pixels themselves at four scales, so its style distance is
that of the colours' second moments (the part of a style a gray-trained network cannot carry).
Writes a JSON of every point and a picture of the results side by side.

    python scripts/studies/style_features.py --out results/style-features.json --plot results/plots/style-features.png
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
from PIL import Image
from torchvision.transforms.functional import pil_to_tensor
from torchvision.utils import make_grid

from zoo.runs import quiet_libraries
from zoo.style import DEFAULT_LR, SAMPLE_PAIRS, FeatureNet, StyleTransfer, feature_net, load_image, sample_image, stylize


class GaborBank(torch.nn.Module):
    """Rectified responses of fixed Gabor filters (4 orientations x even/odd phase, wavelength 4 px)
    and a 3x3 blur, on each of R, G and B, at four scales (each half the last): one tap per scale."""

    def __init__(self, scales: int = 4, size: int = 7, wavelength: float = 4.0, sigma: float = 2.0) -> None:
        super().__init__()
        r = torch.arange(size, dtype=torch.float32) - size // 2
        yy, xx = torch.meshgrid(r, r, indexing="ij")
        kernels = []
        for k in range(4):
            theta = k * math.pi / 4
            u = xx * math.cos(theta) + yy * math.sin(theta)
            envelope = torch.exp(-(xx**2 + yy**2) / (2 * sigma**2))
            for phase in (torch.cos, torch.sin):
                g = envelope * phase(2 * math.pi * u / wavelength)
                kernels.append((g - g.mean()) / g.norm())  # zero mean: colour goes to the blur alone
        blur = torch.zeros(size, size)
        blur[size // 2 - 1: size // 2 + 2, size // 2 - 1: size // 2 + 2] = 1 / 9
        kernels.append(blur)
        bank = torch.stack(kernels)[:, None]  # (9, 1, size, size), applied to each colour channel
        self.register_buffer("weight", bank.repeat(3, 1, 1, 1))  # grouped: 9 filters per channel
        self.scales, self.pad = scales, size // 2

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = []
        for s in range(self.scales):
            if s:
                x = torch.nn.functional.avg_pool2d(x, 2)
            y = torch.nn.functional.conv2d(torch.nn.functional.pad(x, [self.pad] * 4, mode="reflect"), self.weight, groups=3)
            taps.append(y.abs())
        return taps


class ColourPyramid(torch.nn.Module):
    """The image itself at four scales (each half the last): its Gram matrices are the colours'
    (uncentred) second moments, locally averaged."""

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [x] + [torch.nn.functional.avg_pool2d(x, 2**s) for s in range(1, 4)]


def make_judge(spec: str):
    """A judge network: "gabor" (:class:`GaborBank`), "colour" (:class:`ColourPyramid`) or a zoo
    feature network, NAME or NAME:SEED."""
    if spec in ("gabor", "colour"):
        taps = GaborBank() if spec == "gabor" else ColourPyramid()
        return FeatureNet(taps, content=[1], style=[0, 1, 2, 3], mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), name=spec)
    name, _, seed = spec.partition(":")
    return feature_net(name, seed=int(seed or 0))


def judge_distances(judge, content, style, result) -> dict[str, float]:
    """The judge's content and style distances of ``result`` (3, H, W) to the pair."""
    module = StyleTransfer(content=content, style=style, features=judge)
    with torch.no_grad():
        module.image.copy_(judge.normalise(result[None]))
        d = module.distances()
    return {"content": float(d["content"]), "style": float(d["style"])}


def style_at(points: list[dict], content: float) -> float:
    """log style distance at ``content`` (log-linear between the two nearest runs of a pair)."""
    pts = sorted((math.log(p["content"]), math.log(p["style"])) for p in points)
    x = math.log(content)
    (x0, y0), (x1, y1) = next(((a, b) for a, b in zip(pts, pts[1:]) if a[0] <= x <= b[0]), (pts[0], pts[-1]))
    return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)


def compare(points: list[dict], candidates: list[str], judge: str) -> dict[str, dict[str, float]]:
    """Per pair, each candidate's style distance (by ``judge``) at the pair's matched content
    distance: the median of every run's on that pair."""
    summary = {}
    for pair in sorted({p["pair"] for p in points}):
        mine = [p for p in points if p["pair"] == pair]
        matched = sorted(p[judge]["content"] for p in mine)[len(mine) // 2]
        summary[pair] = {name: math.exp(style_at([p[judge] for p in mine if p["features"] == name], matched)) for name in candidates}
        summary[pair]["matched_content"] = matched
    return summary


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--candidates", default="vgg19-random,resnet18")
    p.add_argument("--judges", default="densenet,vgg19-random:1,gabor,colour",
                   help="the scoring networks (gabor, colour, NAME or NAME:SEED; none a candidate)")
    p.add_argument("--style-weights", default="1e3,1e4,1e5")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--lr", type=float, default=DEFAULT_LR, help="Adam's learning rate on the pixels")
    p.add_argument("--out", type=Path, default=Path("results/style-features.json"))
    p.add_argument("--plot", type=Path, default=Path("results/plots/style-features.png"))
    args = p.parse_args()
    quiet_libraries()
    candidates, weights = args.candidates.split(","), [float(w) for w in args.style_weights.split(",")]
    judges = {}
    for spec in args.judges.split(","):
        name, _, seed = spec.partition(":")
        if spec in candidates or (name in candidates and not seed):
            raise SystemExit(f"the judge {spec} must not be one of the candidates")
        judges[spec] = make_judge(spec)
    points, tiles = [], []
    for content_name, style_name in SAMPLE_PAIRS:
        content, style = load_image(sample_image(content_name), args.size), load_image(sample_image(style_name), args.size)
        row = [content, torch.nn.functional.interpolate(style[None], size=content.shape[-2:])[0]]
        for name in candidates:
            for w in weights:
                image, m = stylize(sample_image(content_name), sample_image(style_name), steps=args.steps, size=args.size,
                                   features=name, style_weight=w, lr=args.lr, progress_bar=False)  # fmt: skip
                result = pil_to_tensor(image).float() / 255
                point = {"pair": f"{content_name}|{style_name}", "features": name, "style_weight": w, "seconds": m["seconds"]}
                for judge_name, judge in judges.items():
                    d = judge_distances(judge, content, style, result)
                    point[judge_name] = {"content": d["content"], "style": d["style"]}
                points.append(point)
                print(json.dumps(points[-1]))
                if w == 1e4:
                    row.append(result)
        tiles += row
    summary = {judge: compare(points, candidates, judge) for judge in judges}
    wins = {judge: {name: sum(min(candidates, key=lambda n: row[n]) == name for row in rows.values()) for name in candidates}
            for judge, rows in summary.items()}  # fmt: skip
    # Over the pairs, each candidate's geometric mean style distance (pairs differ in scale; this
    # weighs a factor on any pair alike, where a count of wins ignores by how much).
    geomean = {judge: {name: math.exp(sum(math.log(row[name]) for row in rows.values()) / len(rows)) for name in candidates}
               for judge, rows in summary.items()}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"judges": list(judges), "size": args.size, "steps": args.steps, "lr": args.lr, "points": points,
                                    "style_at_matched_content": summary, "wins": wins, "geometric_mean": geomean}, indent=2) + "\n")  # fmt: skip
    size = tiles[0].shape[-2:]
    grid = make_grid([torch.nn.functional.interpolate(t[None], size=size)[0] for t in tiles], nrow=2 + len(candidates), padding=2)
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((grid.permute(1, 2, 0).numpy() * 255).round().astype("uint8")).save(args.plot)
    print(json.dumps({"style_at_matched_content": summary, "wins": wins, "geometric_mean": geomean}, indent=2))
    print(f"wrote {args.out} and {args.plot} (rows: content, style, then each candidate at style weight 1e4)")


if __name__ == "__main__":
    main()
