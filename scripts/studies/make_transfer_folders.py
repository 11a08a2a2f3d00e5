#!/usr/bin/env python
"""A few-shot split-class transfer task inside Fashion-MNIST, as image folders, with its own source.

    python scripts/studies/make_transfer_folders.py data/split --per-class 10
    zoo finetune --source data/split/source --data data/split/target --compare-scratch --seeds 0,1,2,3,4
    zoo eval runs/finetune/version_0/seed-0/export --data data/split/test

The source network (lenet_bn, trained here for --source-epochs on the training images of
T-shirt/top, Trouser, Pullover, Dress and Coat only, with --source-augment) never sees the other five classes. The
target is those five: Sandal, Shirt, Sneaker, Bag and Ankle boot, with --per-class training images
each (target/train) and 100 validation images each (target/val), both from the training split;
test/ holds the official test images of the five classes (1,000 each), for the final number only.
Everything is drawn with --seed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import lightning as L
import torch
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

import zoo
from zoo.cli import positive_int
from zoo.data.augment import AUGMENT_PRESETS, BatchTransform
from zoo.data.fashion_mnist import CLASSES, MEAN, STD, load_fashion_mnist

SOURCE, TARGET = (0, 1, 2, 3, 4), (5, 6, 7, 8, 9)


def folder_name(label: int) -> str:
    return CLASSES[label].replace("/", "_").replace(" ", "_")


def write(images: torch.Tensor, root: Path, label: int) -> None:
    folder = root / folder_name(label)
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        Image.fromarray(img.numpy()).save(folder / f"{i:05d}.png")


def train_source(images: torch.Tensor, labels: torch.Tensor, epochs: int, augment: str, seed: int, out: Path) -> float:
    """lenet_bn on the five source classes, from scratch with its registered optimiser; returns the
    training accuracy of the last epoch."""
    L.seed_everything(seed, verbose=False)
    remap = {old: new for new, old in enumerate(SOURCE)}
    model = zoo.create_model("lenet_bn", num_classes=5, label_names=[CLASSES[c] for c in SOURCE],
                             recipe={"epochs": epochs, "augment": augment, "schedule": "cosine", "warmup_epochs": 0})  # fmt: skip
    transform = BatchTransform(input_size=28, mean=[MEAN], std=[STD], augment=augment)
    y = torch.tensor([remap[int(v)] for v in labels])

    # Whole batches through the zoo's BatchTransform, as its DataModules do ("none": normalise only).
    def collate(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        x, t = map(torch.stack, zip(*batch))
        return transform(x[:, None], train=True), t

    loader = DataLoader(TensorDataset(images, y), batch_size=256, shuffle=True, collate_fn=collate)
    trainer = L.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_model_summary=False, accelerator="cpu")
    trainer.fit(model, train_dataloaders=loader)
    zoo.save_checkpoint(model, out, training={"classes": [CLASSES[c] for c in SOURCE], "epochs": epochs, "augment": augment,
                                              "seed": seed, "made_by": "scripts/studies/make_transfer_folders.py"})  # fmt: skip
    return float(trainer.callback_metrics["train/acc"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", type=Path)
    ap.add_argument("--per-class", type=positive_int, default=10, help="target training images per class")
    ap.add_argument("--val-per-class", type=positive_int, default=100)
    # 20, not the 5 of before: the fine-tune from a 5-epoch source was only level with lenet_bn from
    # scratch at 10 images a class (README, "Fine-tuning on your own images").
    ap.add_argument("--source-epochs", type=positive_int, default=20)
    # "none": a source trained with the zoo's crop-and-flip transferred worse, and 40 epochs no better
    # than 20 (README, "What else was tried for the split classes").
    ap.add_argument("--source-augment", default="none", choices=AUGMENT_PRESETS, help="the source's training augmentation")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.per_class + args.val_per_class > 6000:  # each class has 6,000 training images
        ap.error(f"--per-class + --val-per-class is {args.per_class + args.val_per_class}; a class has 6000 training images")
    if args.root.exists() and any(args.root.iterdir()):
        raise SystemExit(f"{args.root} is not empty; give a new folder")
    data = load_fashion_mnist()
    images, labels = data["train_images"], data["train_labels"]
    gen = torch.Generator().manual_seed(args.seed)
    source_idx = torch.nonzero(torch.isin(labels, torch.tensor(SOURCE))).squeeze(1)
    acc = train_source(images[source_idx], labels[source_idx], args.source_epochs, args.source_augment, args.seed, args.root / "source")
    for c in TARGET:
        idx = torch.nonzero(labels == c).squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=gen)]
        write(images[idx[: args.per_class]], args.root / "target" / "train", c)
        write(images[idx[args.per_class : args.per_class + args.val_per_class]], args.root / "target" / "val", c)
        write(data["test_images"][data["test_labels"] == c], args.root / "test", c)
    print(f"source: lenet_bn on {len(source_idx)} images of {[CLASSES[c] for c in SOURCE]}, {args.source_epochs} epochs, augment {args.source_augment}, "
          f"training accuracy {acc:.4f} -> {args.root / 'source'}")  # fmt: skip
    print(f"target: {args.per_class} training and {args.val_per_class} validation images of each of "
          f"{[CLASSES[c] for c in TARGET]} -> {args.root / 'target'}; test images -> {args.root / 'test'}")  # fmt: skip


if __name__ == "__main__":
    main()
