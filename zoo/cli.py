"""The ``zoo`` command: ``zoo list | train | eval | finetune | predict | export | serve | demo | push | stylize``."""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
from typing import Sequence

from .pretrained import SOURCES
from .recipe import FinetuneRecipe, Recipe
from .registry import build_model, get_spec, list_models
from .runs import LOGGERS, PRECISIONS, quiet_libraries
from .runtime import MissingExtraError, is_first_process, write_text_replacing

__all__ = ["main", "build_parser", "positive_int"]


def _devices(value: str) -> int | str | list[int]:
    if value == "auto":
        return value
    if "," in value:
        return [int(v) for v in value.split(",") if v]
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--devices takes 'auto', a count or a comma list of ids, got {value!r}") from None


def _seeds(value: str) -> list[int]:
    try:
        seeds = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds takes a comma list of integers, got {value!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"--seeds takes distinct integers, got {value!r}")
    return seeds


def _device(value: str) -> str:
    """An argparse type: a torch device ("cpu", "cuda", "cuda:1"...)."""
    import torch

    try:
        torch.device(value)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"not a device: {value!r} (cpu, cuda, cuda:1, ...)") from None
    return value


def _check_device(value: str) -> None:
    """A --device this machine has; checked when the command runs, so that a command written for
    a GPU machine still parses everywhere."""
    import torch

    device = torch.device(value)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {value}: no CUDA device is available (torch sees none); use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"--device {value}: there are {torch.cuda.device_count()} CUDA devices")


def _port(value: str) -> int:
    number = int(value)
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535, got {value}")
    return number


def _import_extra(module: str, extra: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtraError(f"zoo {extra} needs the {extra} extra: pip install 'd2l-zoo[{extra}]' ({err})") from None


def positive_int(value: str) -> int:
    """An argparse type: an integer of at least 1, or one line saying so."""
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return number


def _add_recipe_flags(group: argparse._ArgumentGroup, recipe: type, *, show_defaults: bool = False) -> None:
    """One flag per field of a recipe dataclass (``--weight-decay``, ``--ema``, ``--nesterov/--no-nesterov``...),
    made from the dataclass itself, so every field is reachable and none is copied by hand. Unset
    flags are None: the recipe keeps its value."""
    for f in dataclasses.fields(recipe):
        flag, meta = "--" + f.name.replace("_", "-"), f.metadata
        default = f" (default {f.default})" if show_defaults and f.default is not None else ""
        if meta["kind"] is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=meta["help"] + default)
        else:
            kind = positive_int if meta["kind"] is int else meta["kind"]
            group.add_argument(flag, type=kind, choices=meta["choices"], default=None, help=meta["help"] + default)


def _add_photo_flags(group: argparse._ArgumentGroup) -> None:
    """``--no-<step>`` for each PhotoSteps field, made from the dataclass, and ``--no-photo-steps``."""
    from .data.preprocess import PhotoSteps

    for f in dataclasses.fields(PhotoSteps):
        group.add_argument("--no-" + f.name.replace("_", "-"), dest=f"no_{f.name}", action="store_true", help=f"do not {f.metadata['help']}")
    group.add_argument("--no-photo-steps", action="store_true", help="none of these: only fit the channels and squash to the input size")


def _steps_off(args: argparse.Namespace) -> tuple[str, ...]:
    """The photo steps the command line switches off."""
    from .data.preprocess import PhotoSteps

    return tuple(f.name for f in dataclasses.fields(PhotoSteps) if args.no_photo_steps or getattr(args, f"no_{f.name}"))


def _apply_photo_flags(model, args: argparse.Namespace) -> None:
    """Switch off the photo steps the command line names, for this command only."""
    names = _steps_off(args)
    if names and hasattr(model, "preprocess"):
        model.preprocess = model.preprocess.without(*names)


def _given(args: argparse.Namespace, recipe: type) -> dict:
    """The recipe fields the command line sets (the others keep the recipe's values)."""
    return {name: getattr(args, name) for name in recipe.field_names() if getattr(args, name) is not None}


def _add_logger_flag(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--logger", choices=LOGGERS, default="csv", help="csv: logs/version_<k>/metrics.csv (default); "
                       "tensorboard: that and TensorBoard's files in tensorboard/ (the tensorboard extra)")  # fmt: skip


def _add_list(sub, common) -> None:
    p = sub.add_parser("list", parents=[common], help="list the registered models")
    p.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern, e.g. 'res*'")
    p.add_argument("--pretrained", action="store_true", help="which models have trained weights, where, and their score")


def _add_train(sub, common) -> None:
    p = sub.add_parser("train", parents=[common], help="train a model on Fashion-MNIST with its recipe, then test it")
    p.add_argument("model", help="registered model name (see `zoo list`)")
    p.add_argument("--recipe", metavar="PRESET", help="start from a named recipe of the model instead of its default "
                   "(resnet18: speedrun); the flags below still change it")  # fmt: skip
    _add_recipe_flags(p.add_argument_group("recipe overrides (default: the model's recipe, see `zoo list`)"), Recipe)
    h = p.add_argument_group("hardware")
    h.add_argument("--accelerator", default="auto", help="cpu, gpu, auto (default)")
    h.add_argument("--devices", type=_devices, default="auto", help="'auto', a count, or ids like 0,1")
    h.add_argument("--strategy", default="auto", help="auto, ddp, ...")
    h.add_argument("--num-nodes", type=positive_int, default=1)
    h.add_argument("--num-workers", type=int, default=0, help="DataLoader workers (0: batches are index lookups)")
    r = p.add_argument_group("run")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--data-dir", help="folder with the four Fashion-MNIST .gz files")
    r.add_argument("--download", action="store_true", help="download Fashion-MNIST if no local copy exists")
    r.add_argument("--train-limit", type=positive_int, help="train on the first N training images only")
    r.add_argument("--eval-limit", type=positive_int, help="validate and test on the first N images only")
    r.add_argument("--max-steps", type=int, default=-1, help="stop after N optimisation steps")
    r.add_argument("--out", help="run folder root (default: runs/MODEL)")
    r.add_argument("--resume", nargs="?", const=True, default=False, metavar="CKPT",
                   help="continue from the newest last.ckpt of the run folder, or from CKPT")  # fmt: skip
    r.add_argument("--no-test", action="store_true", help="skip the final test-set evaluation")
    r.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    _add_logger_flag(r)


def _add_eval(sub, common, loading, photo) -> None:
    p = sub.add_parser("eval", parents=[common, loading, photo], help="evaluate trained weights on Fashion-MNIST's test (or validation) set")
    p.add_argument("model", help="a model name (see `zoo.load`) or a checkpoint folder")
    p.add_argument("--split", choices=("test", "val"), default="test")
    p.add_argument("--source", choices=SOURCES, help="where to take a named model's weights from")
    p.add_argument("--data-dir", help="folder with the four Fashion-MNIST .gz files")
    p.add_argument("--eval-limit", type=positive_int, help="the first N images only")
    p.add_argument("--accelerator", default="auto")
    p.add_argument("--tta", choices=("flip",), help="classifiers: average each image's logits with its mirror image's")
    p.add_argument("--data", help="score on your image folder DATA/<class>/<images> instead (class folders named like the labels)")
    p.add_argument("--out", help="with --data: folder for eval.json and confusion.png (default: ./eval-<model>)")
    p.add_argument("--force", action="store_true", help="with --data: replace the eval.json and confusion.png already in --out")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--device", type=_device, default="cpu", help="with --data: cpu, cuda, ...")


def _add_finetune(sub, common) -> None:
    p = sub.add_parser("finetune", parents=[common], help="fine-tune a pretrained network on your image folder (root/<class>/*)")
    p.add_argument("--source", help="zoo model name, checkpoint folder, or timm:<name> (default lenet)")
    p.add_argument("--data", help="image folder: root/<class>/* or root/train|val/<class>/* (required unless --resume)")
    f = p.add_argument_group("recipe (recorded in the run: --resume keeps it, only --epochs may change)")
    _add_recipe_flags(f, FinetuneRecipe, show_defaults=True)
    f.add_argument("--strict", action="store_true", default=None, help="fail on unreadable images instead of skipping them")
    f.add_argument("--in-chans", type=int, choices=(1, 3), help="adapt the source to 1 or 3 input channels")
    f.add_argument("--input-size", type=positive_int, help="timm sources: image side (default: timm's)")
    f.add_argument("--timm-weights", help="timm sources: a local weights file (offline machines)")
    f.add_argument("--seed", type=int, help="seed of the split, the new head and the augmentation (default 0)")
    h = p.add_argument_group("hardware (as zoo train)")
    h.add_argument("--accelerator", default="auto", help="cpu, gpu, auto (default)")
    h.add_argument("--devices", type=_devices, default=1, help="a count or ids like 0,1 (default 1)")
    h.add_argument("--strategy", default="auto", help="Lightning's: auto, ddp, ... (what trains is --freeze)")
    h.add_argument("--precision", choices=PRECISIONS, default="32-true", help="Lightning precision (default 32-true)")
    r = p.add_argument_group("run")
    r.add_argument("--compare-scratch", action="store_true",
                   help="also train the zoo's small classifiers and the source's network from scratch, each at its own "
                        "registered learning rate, with the same data and budget; report the best")  # fmt: skip
    r.add_argument("--seeds", type=_seeds, help="with --compare-scratch: run every arm once per seed (e.g. 0,1,2,3,4) "
                   "and report mean ± sd")  # fmt: skip
    r.add_argument("--out", default="runs/finetune", help="run folder root: each run is OUT/version_<n> (default runs/finetune)")
    r.add_argument("--resume", nargs="?", const=True, default=False, metavar="CKPT",
                   help="continue the newest run under --out from its last checkpoint, or from CKPT")  # fmt: skip
    _add_logger_flag(r)
    r.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")


def _add_predict(sub, common, loading, photo) -> None:
    p = sub.add_parser("predict", parents=[common, loading, photo], help="classify image files, draw a detector's boxes on them, or write a segmenter's mask")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="MODEL (a zoo name or checkpoint folder; or use --model) then image files, folders (searched "
                        "recursively) or globs such as 'photos/**/*.jpg'")  # fmt: skip
    p.add_argument("--model", help="zoo model name or checkpoint folder (instead of the first argument)")
    p.add_argument("--top-k", type=positive_int, default=3)
    p.add_argument("--batch-size", type=positive_int, default=64, help="images per forward pass")
    p.add_argument("--device", type=_device, default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--output", help="write the predictions here instead of to the console")
    p.add_argument("--force", action="store_true", help="replace an existing --output file")
    p.add_argument("--min-score", type=float, default=0.5, help="detectors: keep detections scoring at least this")
    p.add_argument("--out-dir", help="detectors and segmenters: where to write <image>.pred.png / <image>.mask.png "
                   "(default: beside the image)")  # fmt: skip


def _add_export(sub, common, loading) -> None:
    p = sub.add_parser("export", parents=[common, loading], help="export a trained classifier to ONNX, TorchScript or torch.export (.pt2)")
    p.add_argument("model", help="a model name (see `zoo.load`) or a checkpoint folder")
    p.add_argument("--format", choices=("onnx", "torchscript", "pt2"), default="onnx")
    p.add_argument("--out", help="output file (default: <model><suffix> in the working directory)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")


def _add_serve(sub, common, loading, photo) -> None:
    p = sub.add_parser("serve", parents=[common, loading, photo], help="serve a trained model over HTTP (LitServe; the serve extra)")
    p.add_argument("model", help="a model name (see `zoo.load`) or a checkpoint folder")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=_port, default=8000)
    p.add_argument("--device", type=_device, default="cpu", help="cpu or cuda")
    p.add_argument("--max-batch-size", type=positive_int, default=16, help="requests batched into one forward pass")
    p.add_argument("--batch-timeout", type=_finite, default=0.01, help="seconds to wait for a batch to fill")
    p.add_argument("--workers", type=positive_int, default=1, help="model workers (processes) on the device")
    p.add_argument("--top-k", type=positive_int, default=5, help="classes returned unless a request asks for top_k")
    p.add_argument("--min-score", type=float, default=0.5, help="detectors: lowest score returned unless a request asks")
    p.add_argument("--max-upload-mb", type=_positive, default=None, help="largest request body in MiB (default 10); larger gets 413")
    p.add_argument("--read-timeout", type=_positive, default=None, help="seconds a client has to send a whole request "
                   "(default 30); a connection still sending then is closed")  # fmt: skip
    p.add_argument("--max-connections", type=positive_int, default=None, help="open connections at once (default 64); "
                   "a request over it gets 503")  # fmt: skip


def _add_demo(sub, common, photo) -> None:
    p = sub.add_parser("demo", parents=[common, photo], help="try the models in a web page (Gradio; the demo extra)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=_port, default=7860)
    p.add_argument("--model", help="the model selected first (default: lenet_bn)")


def _add_push(sub, common) -> None:
    p = sub.add_parser("push", parents=[common], help="publish a checkpoint folder to the Hugging Face Hub")
    p.add_argument("target", help="a model name (its bundled or locally trained folder) or a checkpoint folder")
    p.add_argument("--repo-id", help="Hub repo (default: d2l-zoo/<model>)")
    p.add_argument("--dry-run", action="store_true", help="print what would be uploaded, upload nothing")
    p.add_argument("--private", action="store_true")
    p.add_argument("--token", help="Hub token (default: HF_TOKEN or the saved login)")
    p.add_argument("--no-manifest", action="store_true", help="do not pin the new revision in checkpoints.json")


def _out_folder(out: str | None) -> None:
    """An ``--out`` that must be a folder: one line, before any work, when it is a file."""
    import os

    if out is not None and os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out} is a file; give a folder")


def _positive(value: str) -> float:
    """An argparse type: a finite number above 0 (a size, a time)."""
    number = float(value)
    if not 0 < number < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {value}")
    return number


def _finite(value: str) -> float:
    """An argparse type: a finite number of at least 0 (a loss weight)."""
    number = float(value)
    if not (number >= 0 and number != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {value}")
    return number


def _add_stylize(sub, common) -> None:
    from .style import DEFAULT_FEATURES, DEFAULT_LR, DEFAULT_STEPS

    p = sub.add_parser("stylize", parents=[common], help="neural style transfer: CONTENT painted in the style of STYLE (ch. 14.12)")
    p.add_argument("content", help="the content image")
    p.add_argument("style", help="the style image")
    p.add_argument("--out", help="the result, a PNG (default: <content>.stylized.png in the working directory)")
    p.add_argument("--force", action="store_true", help="replace an existing --out file")
    p.add_argument("--steps", type=positive_int, default=DEFAULT_STEPS, help="Adam steps on the pixels")
    p.add_argument("--size", type=positive_int, default=256, help="pixels on the long side of the result")
    p.add_argument("--content-weight", type=_finite, default=1.0)
    p.add_argument("--style-weight", type=_finite, default=1e4)
    p.add_argument("--tv-weight", type=_finite, default=10.0, help="total-variation weight (smoothness)")
    p.add_argument("--lr", type=_finite, default=DEFAULT_LR, help="Adam's learning rate on the pixels")
    p.add_argument("--seed", type=int, default=0, help="seeds the run and a random feature network")
    p.add_argument("--features", default=DEFAULT_FEATURES,
                   help="the feature network: vgg19-random, a zoo classifier (resnet18, ...), or timm:vgg19 with --timm-weights")
    p.add_argument("--timm-weights", help="ImageNet weights on disk for --features timm:<name> (.safetensors or a torch state dict)")
    p.add_argument("--device", type=_device, default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--precision", choices=PRECISIONS, default="32-true")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    """The ``zoo`` command's parser: one sub-parser per command, each built by its ``_add_<command>``."""
    parser = argparse.ArgumentParser(prog="zoo", description="The networks of Dive into Deep Learning, trained on Fashion-MNIST.")
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--verbose", action="store_true", help="show Lightning's banners and library warnings")
    loading = argparse.ArgumentParser(add_help=False)  # the commands that load trained weights
    loading.add_argument("--trust-unverified", action="store_true", help="load a folder whose config.json records no sha256")
    photo = argparse.ArgumentParser(add_help=False)  # the commands that read image files
    _add_photo_flags(photo.add_argument_group("photo steps (default: as the model's config.json records them)"))
    _add_list(sub, common)
    _add_train(sub, common)
    _add_eval(sub, common, loading, photo)
    _add_finetune(sub, common)
    _add_predict(sub, common, loading, photo)
    _add_export(sub, common, loading)
    _add_serve(sub, common, loading, photo)
    _add_demo(sub, common, photo)
    _add_push(sub, common)
    _add_stylize(sub, common)
    return parser


def cmd_serve(args: argparse.Namespace) -> int:
    serve = _import_extra("zoo.serve", "serve")
    from .pretrained import load

    _check_device(args.device)
    model = load(args.model, trust_unverified=args.trust_unverified)  # fails here, in one line, before any worker starts
    _apply_photo_flags(model, args)
    api = serve.ZooAPI(args.model, top_k=args.top_k, min_score=args.min_score, steps_off=_steps_off(args),
                       trust_unverified=args.trust_unverified, max_batch_size=args.max_batch_size, batch_timeout=args.batch_timeout)  # fmt: skip
    accelerator = "cuda" if args.device.startswith("cuda") else "cpu"
    server = serve.build_server(model, api, accelerator=accelerator, workers=args.workers,
                                max_upload_mb=args.max_upload_mb or serve.DEFAULT_MAX_UPLOAD_MB)  # fmt: skip
    print(f"serving {model.model_name} on http://{args.host}:{args.port}: POST /predict (an image), GET /health, GET /info; "
          "Ctrl+C stops", flush=True)  # fmt: skip
    server.run(host=args.host, port=args.port, generate_client_file=False, log_level="info" if args.verbose else "warning",
               num_api_servers=1, **serve.connection_limits(read_timeout=args.read_timeout, max_connections=args.max_connections))  # fmt: skip
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    demo = _import_extra("zoo.demo", "demo")
    demo.launch(host=args.host, port=args.port, default_model=args.model, steps_off=_steps_off(args), quiet=not args.verbose)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .pretrained import load
    from .train import evaluate

    _check_device(args.device)
    model = load(args.model, source=args.source, trust_unverified=args.trust_unverified)
    if args.data and model.task != "classification":
        raise ValueError(f"--data scores a classifier on folders of class images; {model.model_name} is a {model.task} model "
                         "(zoo eval without --data scores it on its test scenes)")  # fmt: skip
    if args.data:
        _apply_photo_flags(model, args)
        return _eval_folder(model, args)
    scores = evaluate(model, split=args.split, data_dir=args.data_dir, eval_limit=args.eval_limit, accelerator=args.accelerator,
                      tta=args.tta)  # fmt: skip
    info = model.checkpoint
    print(f"{model.model_name} ({info['source']}: {info['path']})")
    key, name = f"{args.split}/{model.score}", model.score_label
    print(f"  {args.split} {name} {scores[key]:.4f}   " + "   ".join(f"{k} {v:.4f}" for k, v in scores.items() if k != key))
    recorded = info.get("metrics", {}).get(key)
    if recorded is not None and args.eval_limit is None and not args.tta:
        print(f"  recorded at training: {recorded:.4f}")
    return 0


def _eval_folder(model, args: argparse.Namespace) -> int:
    """zoo eval MODEL --data FOLDER: top-1, top-5, per-class accuracy, eval.json and confusion.png."""
    import json
    from pathlib import Path

    _out_folder(args.out)
    import torch

    from .predict import evaluate_folder
    from .report import plot_confusion

    skip, skipped = _skipper()

    result = evaluate_folder(model, args.data, batch_size=args.batch_size, device=args.device, on_skip=skip)
    out = Path(args.out or f"eval-{model.model_name}")
    for name in ("eval.json", "confusion.png"):
        if (out / name).exists() and not args.force:
            raise ValueError(f"{out / name} exists; pass --force to replace it, or give another --out")
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(json.dumps({"model": model.model_name, "data": str(args.data), "skipped": skipped, **result}, indent=2) + "\n")
    plot_confusion(torch.tensor(result["confusion"]), result["labels"], out / "confusion.png", f"{model.model_name} on {args.data}")
    print(f"{model.model_name} on {args.data}: {result['images']} images")
    print(f"  top-1 {result['top1']:.4f}   top-5 {result['top5']:.4f}")
    for name, acc in result["per_class"].items():
        print(f"  {name:<12} {acc:.4f}")
    print(f"  written: {out / 'eval.json'}, {out / 'confusion.png'}")
    return 1 if skipped else 0


#: zoo finetune's run settings besides the recipe: recorded in the run too, fixed once it has started.
_FINETUNE_RUN = ("strict", "in_chans", "input_size", "timm_weights", "seed")


def _finetune_hardware(args: argparse.Namespace) -> dict:
    return dict(accelerator=args.accelerator, precision=args.precision, logger=args.logger, progress_bar=not args.no_progress,
                command=shlex.join(["zoo", *args.argv]))  # fmt: skip


def cmd_finetune(args: argparse.Namespace) -> int:
    from .finetuning import compare_with_scratch, finetune
    from .recipe import FREEZE

    _out_folder(args.out)
    if args.strategy in FREEZE:
        raise ValueError(f"--strategy is Lightning's (auto, ddp, ...); what trains is --freeze {args.strategy}")
    if args.seeds and not args.compare_scratch:
        raise ValueError("--seeds goes with --compare-scratch (one fine-tune takes --seed)")
    recipe = _given(args, FinetuneRecipe)
    run = {d: getattr(args, d) for d in _FINETUNE_RUN if getattr(args, d) is not None}
    hardware = {**_finetune_hardware(args), "devices": args.devices, "strategy": args.strategy}
    if args.resume:
        if args.compare_scratch:
            raise ValueError("a comparison cannot be resumed; resume one of its fine-tunes with --resume OUT/version_<n>/seed-<seed>/checkpoints/last.ckpt")
        changed = [d for d in (*recipe, *run) if d != "epochs"]
        if changed:
            flags = ", ".join("--" + d.replace("_", "-") for d in changed)
            raise ValueError(f"{flags}: a resumed run keeps its recorded recipe (only --epochs may change); start a new run to change it")
        r = finetune(args.source, args.data, epochs=args.epochs, out_dir=args.out, resume=args.resume, **hardware)
        return _report_finetune(r, args)
    if not args.data:
        raise ValueError("--data is required: the image folder to fine-tune on (root/<class>/*), unless --resume")
    if args.compare_scratch:
        if args.devices not in (1, "1", [0]) or args.strategy != "auto":
            raise ValueError("a comparison runs on one device (its arms one after another); drop --devices/--strategy")
        seeds = args.seeds or [run.pop("seed", 0)]
        run.pop("seed", None)
        c = compare_with_scratch(args.source or "lenet", args.data, seeds=seeds, out_dir=args.out, recipe=recipe, **run,
                                 **_finetune_hardware(args))  # fmt: skip
        return _report_comparison(c)
    return _report_finetune(finetune(args.source, args.data, recipe=recipe, out_dir=args.out, **run, **hardware), args)


def _report_comparison(c: dict) -> int:
    n = len(c["seeds"])
    print(f"\n{c['source']} on {len(c['classes'])} classes ({c['train_images']} training, {c['val_images']} validation images), "
          f"{c['epochs']} epochs, batch {c['batch_size']}, seed{'s' if n > 1 else ''} {','.join(map(str, c['seeds']))}: val/acc")
    arm = lambda a: f"{a['mean']:.4f}" + (f" ± {a['sd']:.4f}" if n > 1 else "")  # noqa: E731
    print(f"  fine-tuned {c['source']:<22} {arm(c['finetuned'])}")
    for name, a in c["scratch"].items():
        print(f"  from scratch {name:<20} {arm(a)}")
    print(f"  best from scratch: {c['best_scratch']}; fine-tuning {c['margin']:+.4f}"
          + ("" if n > 1 else "  (one seed: use --seeds 0,1,2,3,4 before drawing a conclusion)"))  # fmt: skip
    print(f"  written: {c['written']}; exports: {c['run_dir']}/seed-*/export")
    return 0


def _report_finetune(r: dict, args: argparse.Namespace) -> int:
    if not is_first_process():
        return 0  # under DDP, the first process reports
    world = f" on {r['world_size']} processes" if r["world_size"] > 1 else ""
    print(f"\nfine-tuned {r['source']} on {len(r['classes'])} classes ({r['train_images']} training, {r['val_images']} validation images), "
          f"{r['epochs']} epochs ({r['global_step']} steps{world}, {r['precision']}) in {r['fit_seconds']:.1f} s")
    print(f"  val/acc fine-tuned    {r['val_acc']:.4f}")
    print(f"  run folder: {r['run_dir']}  (finetune.json, logs/, checkpoints/last.ckpt)")
    print(f"  exported: {r['export']}   try: zoo predict --model {r['export']} IMAGE...")
    return 0


def _skipper() -> tuple:
    """(skip, skipped): ``skip(path, why)`` reports an input that cannot be used, once, and lists it."""
    skipped: list[str] = []

    def skip(path: str, why: str) -> None:
        print(f"zoo: cannot read image {path}: {why}; skipped", file=sys.stderr)
        skipped.append(path)

    return skip, skipped


def cmd_predict(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .detection.detector import Detector
    from .pretrained import load
    from .predict import classify, detect, expand_inputs, format_records, segment
    from .segmentation.segmenter import Segmenter

    inputs = list(args.inputs)
    if args.model is None:  # zoo predict MODEL INPUTS...
        if len(inputs) < 2:
            raise ValueError("give a model and at least one image: zoo predict MODEL INPUT [INPUT...]")
        args.model, inputs = inputs[0], inputs[1:]
    if args.output and Path(args.output).exists() and not args.force:
        raise ValueError(f"{args.output} exists; pass --force to replace it")
    _check_device(args.device)
    skip, skipped = _skipper()

    model = load(args.model, trust_unverified=args.trust_unverified)
    _apply_photo_flags(model, args)
    files = expand_inputs(inputs, skip)
    if isinstance(model, Detector):
        records = list(detect(model, files, on_skip=skip, min_score=args.min_score, out_dir=args.out_dir))
    elif isinstance(model, Segmenter):
        records = list(segment(model, files, on_skip=skip, out_dir=args.out_dir))
    else:
        records = list(classify(model, files, on_skip=skip, top_k=args.top_k, batch_size=args.batch_size, device=args.device))
    text = format_records(records, args.format)
    if args.output:
        write_text_replacing(Path(args.output), text)
        print(f"{len(records)} prediction(s) -> {args.output}")
    else:
        sys.stdout.write(text)
    if skipped:
        print(f"zoo: skipped {len(skipped)} input(s) that could not be read: {', '.join(skipped)}", file=sys.stderr)
        return 1
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import SUFFIXES, export_model
    from .pretrained import load

    model = load(args.model, trust_unverified=args.trust_unverified)
    out = export_model(model, args.out or f"{model.model_name}{SUFFIXES[args.format]}", format=args.format, overwrite=args.force)
    print(f"{model.model_name} -> {out} ({out.stat().st_size:,} bytes), preprocessing in {out}.json")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from .checkpoint import CONFIG_NAME
    from .manifest import BUNDLED_DIR, HUB_ORG, manifest_entry, read_manifest, write_manifest
    from .publish import push_to_hub
    from .runtime import store_dir

    folder = Path(args.target)
    if not folder.is_dir():
        get_spec(args.target)  # a name: did-you-mean for typos
        candidates = [store_dir(args.target), BUNDLED_DIR / args.target]
        folder = next((c for c in candidates if (c / CONFIG_NAME).is_file()), None)
        if folder is None:
            raise FileNotFoundError(f"no checkpoint of {args.target!r} to push: train it first with `zoo train {args.target}`")
    name = json.loads((folder / CONFIG_NAME).read_text())["model"]
    repo_id = args.repo_id or f"{HUB_ORG}/{name}"
    revision = push_to_hub(folder, repo_id, token=args.token, private=args.private, dry_run=args.dry_run)
    if revision:
        print(f'load it anywhere with: zoo.load("hf-hub:{repo_id}@{revision}")')
    if revision and not args.no_manifest:
        entries = read_manifest()
        old = entries.get(name, {})
        entry = manifest_entry(folder, repo_id=repo_id, revision=revision, bundled=bool(old.get("bundled")))
        if old.get("bundled") and old.get("sha256") != entry["sha256"]:
            print(f"note: pushed weights differ from the bundled {name}; checkpoints.json keeps the bundled entry")
        else:
            entries[name] = entry
            write_manifest(entries.values())
            print(f"pinned {repo_id}@{revision} in checkpoints.json")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    names = list_models(args.pattern)
    if not names:
        print(f"no model matches {args.pattern!r}; registered: {', '.join(list_models())}", file=sys.stderr)
        return 1
    if args.pretrained:
        from .pretrained import get_weights

        print(f"{'model':<10} {'weights':<8} {'test score':>17} {'size':>10}  sha256")
        for name in names:
            w = get_weights(name)
            score = f"{w.score_label} {w.test_score:.4f}" if w.test_score is not None else "-"
            size = "-" if not w.size_bytes else f"{w.size_bytes / 2**20:.1f} MiB" if w.size_bytes >= 2**20 else f"{w.size_bytes / 1024:.0f} KiB"
            print(f"{name:<10} {w.location:<8} {score:>17} {size:>10}  {(w.sha256 or '-')[:12]}")
        print("\nbundled: ships with the package; store: trained here ($ZOO_HOME/checkpoints); hub: downloaded on first "
              "load; none: train it (zoo train NAME)")  # fmt: skip
        return 0
    header = f"{'model':<10} {'params':>12} {'input':>7}  {'chapter':<7} {'book top-1':>10}  description"
    print(header)
    print("-" * len(header))
    for name in names:
        spec = get_spec(name)
        params = sum(p.numel() for p in build_model(name).parameters())
        size = f"{spec.input_size}x{spec.input_size}" if spec.input_size is not None else "-"
        book = f"{spec.book_top1:.3f}" if spec.book_top1 is not None else "-"
        print(f"{name:<10} {params:>12,} {size:>7}  {spec.chapter:<7} {book:>10}  {spec.description}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .train import train

    _out_folder(args.out)
    result = train(
        args.model,
        seed=args.seed,
        accelerator=args.accelerator,
        devices=args.devices,
        strategy=args.strategy,
        num_nodes=args.num_nodes,
        num_workers=args.num_workers,
        data_dir=args.data_dir,
        download=args.download,
        train_limit=args.train_limit,
        eval_limit=args.eval_limit,
        max_steps=args.max_steps,
        out_dir=args.out,
        resume=args.resume,
        test=not args.no_test,
        progress_bar=not args.no_progress,
        logger=args.logger,
        command=shlex.join(["zoo", *args.argv]),
        recipe=args.recipe,
        **_given(args, Recipe),
    )
    m = result.metrics
    if not is_first_process():
        return 0  # under DDP, the first process reports
    print(f"\n{args.model}: {m['epochs']} epochs in {m['fit_seconds']:.1f} s on {m['device']}")
    score = getattr(result.model, "score", None)
    for key in (f"val/{score}", f"test/{score}") if score else ():
        if key in m:
            print(f"  {key:<9} {m[key]:.4f}")
    print(f"  run folder: {result.run_dir}  (metrics.json, checkpoints/last.ckpt, export/)")
    if "store" in m:
        print(f"  exported:   {m['store']}  (zoo.load({str(m['store'])!r}))")
    return 0


def cmd_stylize(args: argparse.Namespace) -> int:
    import io
    from pathlib import Path

    import torch

    from .style import stylize

    out = Path(args.out or f"{Path(args.content).stem}.stylized.png")
    if out.exists() and not args.force:
        raise ValueError(f"{out} exists; pass --force to replace it, or choose another --out")
    if out.suffix.lower() != ".png":
        raise ValueError(f"--out {out}: the result is written as a PNG; give a name ending in .png")
    _check_device(args.device)
    device = torch.device(args.device)
    image, m = stylize(args.content, args.style, steps=args.steps, size=args.size, features=args.features, seed=args.seed,
                       content_weight=args.content_weight, style_weight=args.style_weight, tv_weight=args.tv_weight,
                       lr=args.lr, timm_weights=args.timm_weights, accelerator="gpu" if device.type == "cuda" else "cpu",
                       precision=args.precision, progress_bar=not args.no_progress)  # fmt: skip
    buf = io.BytesIO()
    image.save(buf, "PNG")
    write_text_replacing(out, buf.getvalue())  # a failed write leaves no torn file
    print(f"wrote {out} ({image.width}x{image.height}, {args.steps} steps in {m['seconds']:.0f} s; style distance "
          f"{m['start_style']:.3g} -> {m['style']:.3g}, content distance {m['content']:.3g})")  # fmt: skip
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    if not args.verbose:
        quiet_libraries()
    from .data import CorruptDataError, DataNotFoundError
    from .callbacks import TrainingDiverged

    try:
        commands = {"list": cmd_list, "train": cmd_train, "eval": cmd_eval, "finetune": cmd_finetune, "predict": cmd_predict, "export": cmd_export, "push": cmd_push,
                    "serve": cmd_serve, "demo": cmd_demo, "stylize": cmd_stylize}  # fmt: skip
        return commands[args.command](args)
    except (KeyError, DataNotFoundError, CorruptDataError, OSError, ValueError, TrainingDiverged, MissingExtraError) as err:  # FolderError is a ValueError
        # Bad input, or a file that cannot be read or written (OSError: a folder, a full disk):
        # one clear line, not a traceback (ZOO_DEBUG=1 shows the traceback).
        if os.environ.get("ZOO_DEBUG"):
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        print(f"zoo: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
