"""Shared fixtures. Every test runs on the real Fashion-MNIST files (the Debian package's folder, or
ZOO_DATA_DIR); .ci/run installs them."""

from __future__ import annotations

import io
import logging
import os
import runpy
import sys
import warnings
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import pytest
import torch

from zoo.data import load_fashion_mnist


def pytest_configure(config: pytest.Config) -> None:
    # The suite runs on two pytest-xdist workers (pyproject.toml): one thread each keeps them from
    # fighting over two cores; run alone (-n 0), a test gets both.
    torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)


@pytest.fixture(scope="session")
def fmnist() -> dict[str, torch.Tensor]:
    return load_fashion_mnist()


@pytest.fixture(autouse=True)
def _isolated_zoo_home(tmp_path, monkeypatch):
    # Nothing a test trains or caches may land in the user's real store.
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "zoo_home"))


class InterruptAt(L.Callback):
    """Press Ctrl+C when epoch ``epoch`` starts (Lightning then writes on_exception.ckpt and exits)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise KeyboardInterrupt


@dataclass
class Ran:
    """What ``python SCRIPT ARGS`` gave: its exit status and what it printed."""

    returncode: int
    stdout: str
    stderr: str


def run_script(script: Path, *args: object) -> Ran:
    """Run a script as ``python script args`` does (as ``__main__``, with that ``sys.argv``), but in
    this process: a fresh Python pays about 10 s of imports on 2 cores, which the suite cannot
    afford for every call. The logging levels and warning filters a script sets are put back."""
    out, err = io.StringIO(), io.StringIO()
    argv, levels = sys.argv, {name: lg.level for name, lg in logging.root.manager.loggerDict.items() if isinstance(lg, logging.Logger)}
    disabled = logging.root.manager.disable
    sys.argv = [str(script), *map(str, args)]
    try:
        with warnings.catch_warnings(), redirect_stdout(out), redirect_stderr(err):
            try:
                runpy.run_path(str(script), run_name="__main__")
                code = 0
            except SystemExit as stop:
                if stop.code is None or isinstance(stop.code, int):
                    code = stop.code or 0
                else:  # SystemExit("message"): the interpreter prints it and exits with status 1
                    print(stop.code, file=sys.stderr)
                    code = 1
    finally:
        sys.argv = argv
        logging.disable(disabled)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
    return Ran(code, out.getvalue(), err.getvalue())
