"""Prediction over many images: files, folders (recursive) and globs, read in batches. The engine
behind ``zoo predict``; every record is a plain dict, written as a table, CSV or JSON.

An image that cannot be read (missing, not an image, truncated, over the zoo's size limit
:data:`zoo.data.images.MAX_PIXELS`) is reported through ``on_skip`` and left out; the others are
still predicted.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import re
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from .data.folder import IMAGE_EXTENSIONS

__all__ = ["expand_inputs", "read_image", "classify", "classify_images", "detect", "detect_image", "segment", "segment_image",
           "PALETTE", "MASK_COLOURS", "overlay_masks", "format_records", "evaluate_folder", "FORMATS"]  # fmt: skip

FORMATS = ("table", "csv", "json")
Skip = Callable[[str, str], None]


#: What the zoo writes into the PNG pictures it draws (``<image>.pred.png``, ``<image>.mask.png``):
#: such a file is never taken as an input of a folder or glob, and is the only kind it overwrites.
ZOO_MARK = ("Software", "d2l-zoo predict")


#: The names the zoo gives the pictures it draws.
OUTPUT_SUFFIXES = (".pred.png", ".mask.png")


def made_by_zoo(path: str | Path) -> bool:
    """Whether ``path`` is a picture the zoo drew: named as one, and carrying :data:`ZOO_MARK`
    (only such names are opened, so expanding a large folder reads no other file)."""
    if not str(path).lower().endswith(OUTPUT_SUFFIXES):
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:  # the header alone: the mark is written before the pixels
                return img.info.get(ZOO_MARK[0]) == ZOO_MARK[1]
    except (OSError, ValueError, Image.DecompressionBombError):
        return False


def _save_marked(img: Image.Image, out: Path) -> None:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text(*ZOO_MARK)
    img.save(out, pnginfo=info)


def expand_inputs(items: Iterable[str], on_skip: Skip) -> list[str]:
    """Files as given, folders as their image files (recursively, sorted), globs as their matches
    (``**`` recurses); pictures the zoo drew itself are left out of folders and globs. A folder
    without images or a glob without matches goes to ``on_skip``."""
    files: list[str] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(str(p) for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not made_by_zoo(p))
            if not found:
                on_skip(item, f"folder has no image files ({', '.join(sorted(IMAGE_EXTENSIONS))})")
            files += found
        elif any(ch in item for ch in "*?[") and not path.exists():
            found = sorted(p for p in glob.glob(item, recursive=True) if Path(p).is_file() and not made_by_zoo(p))
            if not found:
                on_skip(item, "the pattern matches no file")
            files += found
        else:
            files.append(item)
    return files


def read_image(path: str | Any, on_skip: Skip, *, name: str | None = None) -> Image.Image | None:
    """The image at ``path`` (or in a binary file object), fully read, or None (after
    ``on_skip(name or path, why)``) when it cannot be read: not an image, truncated, or over the
    zoo's size limit (:func:`zoo.data.images.open_image`, the reader every command shares)."""
    from .data.images import open_image

    try:
        return open_image(path)
    except UnidentifiedImageError:
        on_skip(name or str(path), "not an image file (PIL does not know its format)")
    except (OSError, ValueError) as err:  # ImageTooLarge is a ValueError
        on_skip(name or str(path), str(err) or type(err).__name__)
    return None


def _batches(paths: list[str], size: int, on_skip: Skip) -> Iterator[list[tuple[str, Image.Image]]]:
    batch = []
    for path in paths:
        img = read_image(path, on_skip)
        if img is not None:
            batch.append((path, img))
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@torch.no_grad()
def classify(model: Any, paths: list[str], *, on_skip: Skip, top_k: int = 3, batch_size: int = 64,
             device: str | torch.device = "cpu") -> Iterator[dict[str, Any]]:  # fmt: skip
    """One record per readable image: ``{"path", "predictions": [{"label", "probability"}, ...]}``
    (the ``top_k`` most probable classes, best first)."""
    model = model.to(device).eval()
    for batch in _batches(paths, batch_size, on_skip):
        for (path, _), predictions in zip(batch, classify_images(model, [img for _, img in batch], top_k=top_k)):
            yield {"path": path, "predictions": predictions}


@torch.no_grad()
def classify_images(model: Any, images: list[Any], *, top_k: int = 3) -> list[list[dict[str, Any]]]:
    """The ``top_k`` most probable classes of each image (one forward pass, on the model's device),
    best first, as ``[{"label", "probability"}, ...]``: what ``zoo predict``, ``zoo serve`` and
    ``zoo demo`` all report."""
    device = next(model.parameters()).device
    top = model(model.preprocess(images).to(device)).float().softmax(-1).topk(min(top_k, model.num_classes))
    return [[{"label": model.label_names[i], "probability": round(p, 6)} for p, i in zip(probs, idx)]
            for probs, idx in zip(top.values.tolist(), top.indices.tolist())]  # fmt: skip


@torch.no_grad()
def detect_image(model: Any, img: Image.Image, *, min_score: float = 0.5) -> tuple[Image.Image, list[dict[str, Any]]]:
    """A detector's boxes on one image: (the image as a viewer shows it, with the boxes drawn;
    ``[{"label", "score", "box"}]`` with boxes in its pixels, (x0, y0, x1, y1)). A detector that
    segments too (mask_rcnn) also colours each item's mask, and each detection gets "mask_pixels",
    the mask's area in the image's pixels."""
    from torchvision.transforms.v2.functional import pil_to_tensor
    from torchvision.utils import draw_bounding_boxes

    img = model.preprocess.upright(img)  # boxes are drawn on the image as a viewer shows it
    rgb = img.convert("RGB")
    device = next(model.parameters()).device
    (found,) = model.detect(model.preprocess(img).to(device))
    found = {k: v.cpu() for k, v in found.items()}
    keep = found["scores"] >= min_score
    boxes = found["boxes"][keep].clamp(0, 1) * torch.tensor([rgb.width, rgb.height, rgb.width, rgb.height])
    labels = [model.label_names[int(c)] for c in found["labels"][keep]]
    scores = [round(float(s), 4) for s in found["scores"][keep]]
    names = [f"{label} {score:.2f}" for label, score in zip(labels, scores)]
    pixels = pil_to_tensor(rgb)
    detections = [{"label": label, "score": score, "box": [round(v, 1) for v in box.tolist()]}
                  for label, score, box in zip(labels, scores, boxes)]  # fmt: skip
    if "masks" in found:  # the model's masks cover its input, the whole image resized: back to the image's size
        masks = F.interpolate(found["masks"][keep][:, None].float(), size=(rgb.height, rgb.width), mode="nearest")[:, 0] > 0.5
        pixels = overlay_masks(pixels, masks, found["labels"][keep], found["scores"][keep])
        for d, m in zip(detections, masks):
            d["mask_pixels"] = int(m.sum())
    drawn = draw_bounding_boxes(pixels, boxes, labels=names, colors="red", width=max(1, rgb.width // 96))
    return Image.fromarray(drawn.permute(1, 2, 0).numpy()), detections


def _output_path(path: str, out_dir: str | None, suffix: str, written: set[Path]) -> Path:
    """``<image stem><suffix>`` beside the image or in ``out_dir``, or ``-2``, ``-3``... where that
    name is taken: by this call's inputs or outputs (``written``), or by a file the zoo did not draw
    (a file of yours is never overwritten)."""
    out, n = Path(out_dir or Path(path).parent) / f"{Path(path).stem}{suffix}", 1
    while out.resolve() in written or (out.exists() and not made_by_zoo(out)):
        n += 1
        out = out.with_name(f"{Path(path).stem}-{n}{suffix}")
    written.add(out.resolve())
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


@torch.no_grad()
def detect(model: Any, paths: list[str], *, on_skip: Skip, min_score: float = 0.5, out_dir: str | None = None) -> Iterator[dict[str, Any]]:
    """One record per readable image: ``{"path", "detections": [{"label", "score", "box"}], "drawn"}``,
    boxes in the image's pixels (x0, y0, x1, y1), drawn onto a copy saved as ``<image>.pred.png``
    (beside the image, or in ``out_dir``; two inputs with the same name get ``-2``, ``-3``...)."""
    written = {Path(p).resolve() for p in paths}  # never onto an input
    for path in paths:
        img = read_image(path, on_skip)
        if img is None:
            continue
        drawn, detections = detect_image(model, img, min_score=min_score)
        out = _output_path(path, out_dir, ".pred.png", written)
        _save_marked(drawn, out)
        yield {"path": path, "detections": detections, "drawn": str(out)}


#: The colours of a segmentation mask, one per label: background black, then PASCAL VOC's colour map.
PALETTE = ((0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128), (128, 0, 128), (0, 128, 128), (128, 128, 128),
           (64, 0, 0), (192, 0, 0), (64, 128, 0), (192, 128, 0), (64, 0, 128), (192, 0, 128), (64, 128, 128), (192, 128, 128))  # fmt: skip

def overlay_masks(image: torch.Tensor, masks: torch.Tensor, labels: torch.Tensor, scores: torch.Tensor, *,
                  alpha: float = 0.5) -> torch.Tensor:  # fmt: skip
    """``image`` (3, H, W) uint8 with each boolean mask (K, H, W) blended in its class's colour
    (:data:`MASK_COLOURS`), the most confident last, so that it shows where two overlap
    (torchvision's ``draw_segmentation_masks`` blacks overlaps out when given them together)."""
    from torchvision.utils import draw_segmentation_masks

    for k in scores.argsort().tolist():
        image = draw_segmentation_masks(image, masks[k], alpha=alpha, colors=MASK_COLOURS[int(labels[k]) % len(MASK_COLOURS)])
    return image


#: The colours of instance masks laid over an image, one per class: saturated and never gray, so a
#: mask shows on a gray scene (Trubetskoy's distinct colours).
MASK_COLOURS = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
                (240, 50, 230), (210, 245, 60), (250, 190, 212))  # fmt: skip


@torch.no_grad()
def segment_image(model: Any, img: Image.Image) -> tuple[Image.Image, dict[str, float]]:
    """A segmenter's label for every pixel of one image: (the coloured mask at the image's size,
    as a viewer shows it, in :data:`PALETTE`'s colours; ``{label: share of the pixels}`` of every
    label found, largest first)."""
    if model.num_classes > len(PALETTE):
        raise ValueError(f"{model.num_classes} labels, but the mask palette has {len(PALETTE)} colours")
    img = model.preprocess.upright(img)
    device = next(model.parameters()).device
    (labels,) = model.segment(model.preprocess(img).to(device)).cpu().to(torch.uint8)
    # Nearest-neighbour back to the image's size: a label is never blended with its neighbours'.
    labels = torch.from_numpy(np.array(Image.fromarray(labels.numpy()).resize(img.size, Image.Resampling.NEAREST))).long()
    counts = torch.bincount(labels.flatten(), minlength=model.num_classes)
    shares = {model.label_names[i]: round(float(counts[i]) / float(counts.sum()), 4) for i in counts.argsort(descending=True).tolist()
              if counts[i] > 0}  # fmt: skip
    return Image.fromarray(torch.tensor(PALETTE, dtype=torch.uint8)[labels].numpy()), shares


@torch.no_grad()
def segment(model: Any, paths: list[str], *, on_skip: Skip, out_dir: str | None = None) -> Iterator[dict[str, Any]]:
    """One record per readable image: ``{"path", "labels": {label: share of the pixels}, "mask"}``,
    the coloured mask saved as ``<image>.mask.png`` (beside the image, or in ``out_dir``)."""
    written = {Path(p).resolve() for p in paths}  # never onto an input
    for path in paths:
        img = read_image(path, on_skip)
        if img is None:
            continue
        mask, shares = segment_image(model, img)
        out = _output_path(path, out_dir, ".mask.png", written)
        _save_marked(mask, out)
        yield {"path": path, "labels": shares, "mask": str(out)}


def format_records(records: list[dict[str, Any]], fmt: str) -> str:
    """The records as a table (one line an image), CSV (one row a prediction) or JSON."""
    if fmt == "json":
        return json.dumps(records, indent=2) + "\n"
    if fmt == "table":
        lines = []
        for r in records:
            # One line an image: a file name's control characters (a newline) are written escaped.
            r = {**r, "path": _printable(r["path"])}
            if "predictions" in r:
                lines.append(f"{r['path']}: " + ", ".join(f"{p['label']} {p['probability']:.3f}" for p in r["predictions"]))
            elif "labels" in r:
                lines.append(f"{r['path']}: " + ", ".join(f"{label} {share:.1%}" for label, share in r["labels"].items()) + f"  -> {r['mask']}")
            else:
                found = "; ".join(f"{d['label']} {d['score']:.2f} at {[round(v) for v in d['box']]}"
                                  + (f", mask {d['mask_pixels']:,} px" if "mask_pixels" in d else "") for d in r["detections"])  # fmt: skip
                lines.append(f"{r['path']}: {found or 'nothing found'}  -> {r['drawn']}")
        return "".join(line + "\n" for line in lines)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if records and "predictions" in records[0]:
        writer.writerow(["path", "rank", "label", "probability"])
        for r in records:
            writer.writerows([r["path"], rank, p["label"], p["probability"]] for rank, p in enumerate(r["predictions"], 1))
    elif records and "labels" in records[0]:
        writer.writerow(["path", "label", "pixel_share", "mask"])
        for r in records:
            writer.writerows([r["path"], label, share, r["mask"]] for label, share in r["labels"].items())
    else:
        writer.writerow(["path", "label", "score", "x0", "y0", "x1", "y1", "drawn"])
        for r in records:
            writer.writerows([r["path"], d["label"], d["score"], *d["box"], r["drawn"]] for d in r["detections"])
    return buf.getvalue()


def _printable(path: str) -> str:
    """``path`` with control characters escaped as Python writes them (a newline becomes \\n)."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in path)


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


@torch.no_grad()
def evaluate_folder(model: Any, root: str | Path, *, batch_size: int = 64, device: str | torch.device = "cpu",
                    on_skip: Skip | None = None) -> dict[str, Any]:  # fmt: skip
    """Score a classifier on an image folder ``root/<class>/<images>`` whose class folders are
    named like the model's labels (case, spaces and punctuation aside: ``t_shirt_top`` is
    "T-shirt/top"). Returns top-1, top-5, per-class accuracy and the confusion matrix (rows: true
    class, columns: predicted, over all the model's labels)."""
    from .data.folder import FolderError, scan_image_folder

    files = scan_image_folder(Path(root))
    labels = {_key(name): i for i, name in enumerate(model.label_names)}
    unknown = [c for c in files if _key(c) not in labels]
    if unknown:
        raise FolderError(f"{root}: class folder(s) {unknown} match none of {type(model).__name__}'s labels "
                          f"{model.label_names} (names are compared without case, spaces or punctuation)")  # fmt: skip
    skip = on_skip or (lambda path, why: None)
    model = model.to(device).eval()
    n = model.num_classes
    confusion = torch.zeros(n, n, dtype=torch.long)
    top5_hits = 0
    truth_of = {str(p): labels[_key(c)] for c, paths in files.items() for p in paths}
    for batch in _batches(list(truth_of), batch_size, skip):
        probs = model(model.preprocess([img for _, img in batch]).to(device)).float().cpu()
        truth = torch.tensor([truth_of[path] for path, _ in batch])
        confusion.index_put_((truth, probs.argmax(-1)), torch.ones(len(batch), dtype=torch.long), accumulate=True)
        top5_hits += int((probs.topk(min(5, n)).indices == truth[:, None]).any(-1).sum())
    total = int(confusion.sum())
    if total == 0:
        raise FolderError(f"{root}: no image could be read")
    per_class = {model.label_names[i]: round(float(confusion[i, i] / confusion[i].sum()), 6)
                 for i in range(n) if confusion[i].sum() > 0}  # fmt: skip
    return {"images": total, "top1": round(float(confusion.diag().sum()) / total, 6), "top5": round(top5_hits / total, 6),
            "per_class": per_class, "confusion": confusion.tolist(), "labels": list(model.label_names)}  # fmt: skip
