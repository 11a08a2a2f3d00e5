#!/usr/bin/env python
"""Bundle trained weights in the package (zoo/weights/<model>/), re-measured on the bundled file.

    python scripts/bundle_weights.py                        # train softmax, mlp, lenet, lenet_bn here, bundle them
    python scripts/bundle_weights.py --models lenet --seed 1
    python scripts/bundle_weights.py --from DIR [DIR ...]   # bundle weights trained elsewhere (a GPU run)

``--from`` takes checkpoint folders (``export/`` of a run, with model.safetensors, or a folder
holding model.fp16.safetensors) or a folder of ``weights.tar.part-NNN`` files written by
``scripts/pack_weights.py`` on the GPU machine. Those weights are stored as float16 (half the
size; loading upcasts them) and re-scored on this machine, in float32, on the 10,000 test and
5,000 validation images: config.json's metrics and checkpoints.json are the scores of exactly the
bundled file, and what the training run recorded is kept under config.json's "training".

Weights trained here are bundled as float32 and must re-score exactly what training recorded; a
recipe trained in bf16 (autocast) is re-scored in float32 instead, as ``zoo eval`` scores it.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

import zoo
from zoo.card import model_card
from zoo.checkpoint import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME, load_weights, write_config
from zoo.manifest import BUNDLE_MAX_FILE_BYTES as MAX_FILE_BYTES
from zoo.manifest import BUNDLED_DIR, portable, regenerate, write_manifest
from zoo.publish import unpack
from zoo.registry import build_model
from zoo.train import evaluate, train

SMALL_MODELS = ("softmax", "mlp", "lenet", "lenet_bn")
FP16_NAME = "model.fp16.safetensors"


def _scores(folder: Path) -> dict[str, float]:
    model = zoo.load(folder)
    scores = {k: round(v, 6) for k, v in evaluate(model, split="val").items()}
    scores.update({k: round(v, 6) for k, v in evaluate(model, split="test").items()})
    return scores


def _set_metrics(folder: Path, metrics: dict[str, float]) -> None:
    config = json.loads((folder / CONFIG_NAME).read_text())
    config["metrics"] = metrics
    write_config(folder, config)
    (folder / CARD_NAME).write_text(model_card(config))


def bundle_trained_elsewhere(src: Path) -> Path:
    """Bundle one checkpoint folder as float16 and re-score it here; returns the bundled folder."""
    config = json.loads((src / CONFIG_NAME).read_text())
    name = config["model"]
    weights = next((src / f for f in (WEIGHTS_NAME, FP16_NAME) if (src / f).is_file()), None)
    if weights is None:
        raise SystemExit(f"{src}: no {WEIGHTS_NAME} or {FP16_NAME}")
    model = build_model(name, **config["kwargs"])
    load_weights(model, weights)  # the folder's config.json hashes the float32 original, so no sha256 check here
    # What the training run recorded stays, as provenance; the metrics become this file's own scores.
    training = {**config.get("training", {}), "metrics": config.get("metrics", {}), "trained_sha256": config.get("sha256"),
                "bundled_from": f"{config.get('dtype', 'float32')} weights, stored here as float16"}  # fmt: skip
    dst = zoo.save_checkpoint(model, BUNDLED_DIR / name, metrics={}, training=training, dtype="float16")
    if (dst / WEIGHTS_NAME).stat().st_size > MAX_FILE_BYTES:
        shutil.rmtree(dst)
        raise SystemExit(f"{name}: {FP16_NAME} is over {MAX_FILE_BYTES:,} bytes even as float16; it stays on the Hub only")
    scores = _scores(dst)
    _set_metrics(dst, scores)
    key = f"test/{model.score}"  # acc for a classifier, map50 for a detector, miou for a segmenter
    recorded = config.get("metrics", {}).get(key)
    print(f"{name}: bundled {dst} ({(dst / WEIGHTS_NAME).stat().st_size:,} bytes, float16) — test {model.score_label} "
          f"{scores[key]:.4f} re-measured here in float32 (training recorded {recorded})")  # fmt: skip
    return dst


def bundle_trained_here(name: str, seed: int, out: Path, command: str) -> Path:
    result = train(name, seed=seed, out_dir=out / name, progress_bar=False, command=command)
    dst = BUNDLED_DIR / name
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(result.run_dir / "export", dst)
    model = zoo.load(dst)
    key = f"test/{model.score}"
    recorded = result.metrics[key]
    precision = result.metrics["recipe"]["precision"]
    if precision == "32-true":
        scores = evaluate(model)
        if abs(scores[key] - recorded) > 1e-6:
            raise SystemExit(f"{name}: the bundled file scores {scores[key]:.6f}, training recorded {recorded:.6f}")
    else:
        # Trained and tested under autocast (a bf16 recipe): the float32 weights score a little
        # differently in float32, which is how `zoo eval` scores them on a CPU. Those scores go into
        # config.json; what training recorded is kept under "training".
        config = json.loads((dst / CONFIG_NAME).read_text())
        config["training"].update(metrics=config["metrics"], precision=precision)
        write_config(dst, config)
        scores = _scores(dst)
        _set_metrics(dst, scores)
        print(f"{name}: trained in {precision}; test {model.score_label} {recorded:.4f} under autocast, "
              f"{scores[key]:.4f} for the bundled float32 file in float32 (recorded)")  # fmt: skip
    print(f"{name}: bundled {dst} — test {model.score_label} {scores[key]:.4f} (re-measured on the bundled file), "
          f"{result.metrics['fit_seconds']:.0f} s of training")  # fmt: skip
    return dst


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(SMALL_MODELS), help="models to train here and bundle")
    p.add_argument("--from", dest="sources", nargs="+", type=Path, help="bundle these folders (or packed parts) instead")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/bundle"))
    args = p.parse_args()
    if args.sources:
        with tempfile.TemporaryDirectory() as tmp:
            folders = []
            for src in args.sources:
                if not src.is_dir():
                    raise SystemExit(f"{src} is not a folder")
                if (src / CONFIG_NAME).is_file():
                    folders.append(src)
                else:  # packed parts: every checkpoint folder inside them
                    folders += unpack(src, Path(tmp) / src.name)
            for folder in folders:
                bundle_trained_elsewhere(folder)
    else:
        command = portable(shlex.join(["python", "scripts/bundle_weights.py", *sys.argv[1:]]))
        for name in args.models.split(","):
            bundle_trained_here(name, args.seed, args.out, command)
    for path in write_manifest(regenerate()):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
