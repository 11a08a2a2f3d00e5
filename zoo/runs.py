"""A run of ``zoo train`` or ``zoo finetune``: its folder, its Trainer, its record.

One run writes, under ``<root>/version_<n>/``:

    checkpoints/last.ckpt     resume from here (``--resume``); rewritten every epoch
    checkpoints/best-NN.ckpt  zoo train: the epoch with the best validation score
    checkpoints/on_exception.ckpt   written on Ctrl+C or a crash
    logs/version_<k>/         Lightning's CSV log, a new version per (re)start: metrics.csv, hparams.yaml
    tensorboard/version_<k>/  TensorBoard's event files, with ``logger="tensorboard"``
    metrics.json / finetune.json    the final weights' scores, the run's settings and timings
    export/                   the final weights as a checkpoint folder
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import re
import signal
import sys
import time
import typing
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import lightning as L
import torch
from lightning.fabric.plugins.precision.precision import _PRECISION_INPUT_STR
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from .callbacks import BatchSeed, RunMeta, StepsTakenCheckpoint, StopOnNonFinite, last_checkpoint, progress_bar as quiet_progress_bar
from .checkpoint import save_checkpoint
from .runtime import MissingExtraError, is_first_process

__all__ = ["PRECISIONS", "LOGGERS", "check_logger", "run_loggers", "zoo_trainer", "new_run_dir", "version_dirs",
           "find_resume_checkpoint", "resume_checkpoint", "read_checkpoint_meta", "fit", "export_run", "write_record", "device_name",
           "process_seconds", "quiet", "quiet_libraries"]  # fmt: skip

# Lightning advertises its cloud services ("💡 Tip: ...") on every Trainer start; keep the console for our output.
logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(lambda record: "💡 Tip" not in record.getMessage())

#: Lightning warnings that are noise for a zoo run, silenced around its own fit only.
QUIET = (
    r".*isinstance\(treespec, LeafSpec\)",  # an internal deprecation inside Lightning
    # With OnExceptionCheckpoint present, Lightning looks for a "last" checkpoint to resume from
    # even on a fresh run (whose new version folder has none); here resuming is explicit (resume=).
    r".*\.fit\(ckpt_path=\S*\)|.*there is no last checkpoint available",
    r"Checkpoint directory .* exists and is not empty",  # resuming writes into the run's own folder
)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence :data:`QUIET`'s warnings inside the block."""
    with warnings.catch_warnings():
        for pattern in QUIET:
            warnings.filterwarnings("ignore", message=pattern)
        yield


def quiet_libraries() -> None:
    """The console is for the zoo's own output: Lightning's device banners and progress notes,
    and warnings that are about the libraries rather than the user's run, are switched off for
    the rest of the process (the CLI does this unless ``--verbose``)."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in (*QUIET, r".*does not have many workers", r".*smaller than the logging interval", r".*TF32 behavior"):
        warnings.filterwarnings("ignore", message=pattern)


#: Lightning's precision settings (the CLI's --precision choices).
PRECISIONS = tuple(p for p in typing.get_args(_PRECISION_INPUT_STR) if not p.startswith("transformer-engine"))

#: The loggers a run can have: metrics.csv always; "tensorboard" adds TensorBoard's event files.
LOGGERS = ("csv", "tensorboard")


def check_logger(logger: str) -> None:
    """Raise, before a run starts, when ``logger`` is unknown or its package is not installed."""
    if logger not in LOGGERS:
        raise ValueError(f"logger must be one of {LOGGERS}, got {logger!r}")
    if logger == "tensorboard":
        import importlib

        for name in ("tensorboard", "tensorboardX"):  # what Lightning's TensorBoardLogger writes with
            try:
                importlib.import_module(name)
                return
            except ImportError:
                pass
        raise MissingExtraError("--logger tensorboard needs the tensorboard extra: pip install 'd2l-zoo[tensorboard]'")


def run_loggers(run_dir: Path, logger: str = "csv") -> list[Any]:
    """The run's loggers: Lightning's CSVLogger (``<run>/logs/version_<k>/metrics.csv``, a new
    version per (re)start, so a resumed run never overwrites the earlier rows) and, for
    ``logger="tensorboard"``, a TensorBoardLogger beside it (``<run>/tensorboard/version_<k>/``)."""
    check_logger(logger)
    loggers: list[Any] = [CSVLogger(save_dir=str(run_dir), name="logs")]
    if logger == "tensorboard":
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", default_hp_metric=False))
    return loggers


def zoo_trainer(run_dir: Path, *, meta: RunMeta, seed: int, checkpoint: ModelCheckpoint | None = None, logger: str = "csv",
                progress_bar: bool = True, callbacks: Sequence[Callback] = (), **trainer_kwargs: Any) -> L.Trainer:  # fmt: skip
    """The Trainer of both ``zoo train`` and ``zoo finetune``: the run's loggers, per-batch seeding
    (an exact resume), the checkpoints (``checkpoints/last.ckpt`` every epoch, ``on_exception.ckpt``
    on Ctrl+C or a crash, and ``checkpoint``, e.g. the best epoch's, when given), the stop on
    inf/NaN, and a progress bar. ``trainer_kwargs`` go to ``L.Trainer`` (epochs, precision,
    accelerator, devices, strategy...)."""
    ckpt_dir = run_dir / "checkpoints"
    checkpoints = [*([checkpoint] if checkpoint is not None else []), last_checkpoint(ckpt_dir)]
    return L.Trainer(
        deterministic=False,
        logger=run_loggers(run_dir, logger),
        callbacks=[BatchSeed(seed), meta, *checkpoints, StepsTakenCheckpoint(ckpt_dir), StopOnNonFinite(), *callbacks,
                   *([quiet_progress_bar()] if progress_bar else [])],
        enable_progress_bar=progress_bar,
        enable_model_summary=False,  # a FLOPs row of 0 and a table of layers are not what a run's first screen is for
        **trainer_kwargs,
    )


# ------------------------------------------------------------------------------------ run folders
_RUN_DIR_ENV = "ZOO_RUN_DIR"


def version_dirs(root: Path) -> list[Path]:
    """The ``version_<n>`` folders under ``root``, in the order of n."""
    found = [(int(m.group(1)), p) for p in root.glob("version_*") if (m := re.fullmatch(r"version_(\d+)", p.name))]
    return [p for _, p in sorted(found)]


def new_run_dir(root: Path) -> Path:
    """The next ``version_<n>`` under ``root``. A DDP process that Lightning started for a run
    takes the run's folder from its environment instead, so every rank writes to the same place
    (counting folders again could race with rank 0 creating its own)."""
    if not is_first_process():
        inherited = os.environ.get(_RUN_DIR_ENV)
        if inherited:
            return Path(inherited)
    root.mkdir(parents=True, exist_ok=True)
    versions = version_dirs(root)
    n = int(versions[-1].name.split("_")[1]) + 1 if versions else 0
    while True:
        # mkdir is atomic: of two runs started together in one folder, each claims its own version.
        try:
            (root / f"version_{n}").mkdir()
            return root / f"version_{n}"
        except FileExistsError:
            n += 1


def find_resume_checkpoint(root: Path) -> Path:
    """The checkpoint that continues the newest run under ``root`` (a run folder, or a model's
    folder of ``version_<n>`` runs): its ``last.ckpt`` (written at each epoch's end: the resumed
    run then ends exactly as an uninterrupted one), else its ``on_exception.ckpt`` (written on
    Ctrl+C or a crash in the first epoch; Lightning continues that epoch where it stopped).

    Only the newest run is ever continued: when it has no checkpoint yet (stopped in its first
    epoch before either was written), continuing an older run instead would silently train and
    rewrite that one, so this raises and says how to choose."""
    versions = version_dirs(root)
    run = root if (root / "checkpoints").is_dir() or not versions else versions[-1]
    for c in (run / "checkpoints" / "last.ckpt", run / "checkpoints" / "on_exception.ckpt"):
        if c.is_file():
            return c
    if not versions and not (root / "checkpoints").is_dir():
        raise FileNotFoundError(f"nothing to resume: no run under {root}; train once without --resume first")
    older = [v for v in versions[:-1] if (v / "checkpoints" / "last.ckpt").is_file()]
    hint = f", or --resume {older[-1] / 'checkpoints' / 'last.ckpt'} to continue an older run" if older else ""
    raise FileNotFoundError(f"nothing to resume: the newest run {run} stopped before writing a checkpoint; "
                            f"train again without --resume{hint}")  # fmt: skip


def resume_checkpoint(root: Path, resume: bool | str | os.PathLike) -> Path:
    """The checkpoint ``resume`` names: the newest run's under ``root`` for True, else that path."""
    path = find_resume_checkpoint(root) if resume is True else Path(resume)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint to resume from not found: {path}")
    return path


def read_checkpoint_meta(path: Path, command: str = "train") -> dict[str, Any]:
    """The "zoo" entry (:class:`~zoo.callbacks.RunMeta`) of a training checkpoint written by
    ``zoo <command>`` (train or finetune)."""
    # weights_only=True: a checkpoint is data; never let it run code.
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError, a truncated zip, not a torch file at all...
        raise ValueError(f"{path} is not a readable training checkpoint ({type(err).__name__}); "
                         f"pass the last.ckpt or on_exception.ckpt of a `zoo {command}` run") from None  # fmt: skip
    meta = ckpt.get("zoo") if isinstance(ckpt, dict) else None
    if not meta:
        raise ValueError(f"{path} was not written by `zoo {command}` (it has no 'zoo' entry), so it cannot be resumed here")
    written_by = "finetune" if "finetune" in meta else "train"
    if written_by != command:
        raise ValueError(f"{path} is a `zoo {written_by}` checkpoint: continue it with `zoo {written_by} --resume`")
    return meta


# ------------------------------------------------------------------------------------ fitting
def fit(trainer: L.Trainer, module: L.LightningModule, datamodule: L.LightningDataModule, *, run_dir: Path,
        ckpt_path: Path | None, resume_command: str) -> float:  # fmt: skip
    """``trainer.fit`` for a zoo run; returns its seconds. Around it: Lightning's noise silenced,
    the run folder handed to the DDP processes Lightning starts, Ctrl+C given back to the caller
    afterwards (Lightning ignores SIGINT while it shuts down after one), and after a Ctrl+C
    ``resume_command``, the command that continues the run."""
    previous_sigint = signal.getsignal(signal.SIGINT)
    os.environ[_RUN_DIR_ENV] = str(run_dir)  # DDP processes Lightning starts later inherit it
    start = time.perf_counter()
    try:
        with quiet():
            trainer.fit(module, datamodule=datamodule, ckpt_path=str(ckpt_path) if ckpt_path else None, weights_only=True)
    except SystemExit:  # Lightning's answer to Ctrl+C, after StepsTakenCheckpoint wrote on_exception.ckpt
        if trainer.interrupted and is_first_process():
            print(f"zoo: stopped at epoch {trainer.current_epoch} (step {trainer.global_step}); continue it "
                  f"with: {resume_command}", file=sys.stderr)  # fmt: skip
        raise
    finally:
        signal.signal(signal.SIGINT, previous_sigint)
        if is_first_process():
            os.environ.pop(_RUN_DIR_ENV, None)
    return time.perf_counter() - start


def export_run(model: Any, run_dir: Path, *, metrics: dict[str, Any], training: dict[str, Any],
               store: Path | None = None) -> dict[str, str]:  # fmt: skip
    """The final weights as a checkpoint folder in ``<run>/export`` (and at ``store``, the local
    store that ``zoo.load(name)`` reads, when given). Returns where they went."""
    written = {"export": str(save_checkpoint(model, run_dir / "export", metrics=metrics, training=training))}
    if store is not None:
        written["store"] = str(save_checkpoint(model, store, metrics=metrics, training=training))
    return written


def write_record(run_dir: Path, name: str, record: dict[str, Any]) -> Path:
    """The run's record (``metrics.json``, ``finetune.json``) as indented JSON."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / name).write_text(json.dumps(record, indent=2) + "\n")
    return run_dir / name


def process_seconds() -> float | None:
    """Seconds since this process started (imports, data, compilation, training and test: what a
    speedrun's wall time counts); None where /proc is missing."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return round(uptime - start_ticks / os.sysconf("SC_CLK_TCK"), 2)


def device_name(trainer: L.Trainer) -> str:
    """The device a run trained on, for people: the GPU's name, or the CPU's architecture and cores."""
    root = trainer.strategy.root_device
    if root.type == "cuda":
        return torch.cuda.get_device_name(root)
    return f"{root.type} ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
