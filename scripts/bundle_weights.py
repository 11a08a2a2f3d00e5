#!/usr/bin/env python
"""Train the small CPU models with their recipes and bundle their weights in the package.

    python scripts/bundle_weights.py                       # softmax, mlp, lenet, lenet_bn
    python scripts/bundle_weights.py --models lenet --seed 1

Each model is trained on the 55,000-image split with its registry recipe, exported, copied to
zoo/weights/<model>/, loaded back from there and re-evaluated on the 10,000 test images; the
bundled entry in checkpoints.json carries that accuracy, measured on exactly the bundled file.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
from pathlib import Path

import zoo
from zoo.hub import BUNDLED_DIR, write_manifest
from zoo.train import evaluate, train

sys.path.insert(0, str(Path(__file__).parent))
from make_manifest import regenerate  # noqa: E402

SMALL_MODELS = ("softmax", "mlp", "lenet", "lenet_bn")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(SMALL_MODELS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/bundle"))
    args = p.parse_args()
    command = shlex.join(["python", "scripts/bundle_weights.py", *sys.argv[1:]])
    for name in args.models.split(","):
        result = train(name, seed=args.seed, out_dir=args.out / name, progress_bar=False, command=command)
        dst = BUNDLED_DIR / name
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(result.run_dir / "export", dst)
        bundled = zoo.load(dst)
        scores = evaluate(bundled)
        recorded = result.metrics["test/acc"]
        if abs(scores["test/acc"] - recorded) > 1e-6:
            raise SystemExit(f"{name}: the bundled file scores {scores['test/acc']:.6f}, training recorded {recorded:.6f}")
        print(f"{name}: bundled {dst} — test top-1 {scores['test/acc']:.4f} (re-measured on the bundled file), "
              f"{result.metrics['fit_seconds']:.0f} s of training")  # fmt: skip
    for path in write_manifest(regenerate()):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
