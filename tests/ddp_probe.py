"""Run by test_ddp.py as `python tests/ddp_probe.py OUT`: train with real 2-process DDP on CPU (gloo)
and have each process write down which training images it was served and the weights it ended
with. Lightning's DDP launcher starts the second process by re-running this same command."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning as L
import torch
from safetensors.torch import save_file

from zoo.data.fashion_mnist import TensorImages
from zoo.train import train

_original_getitems = TensorImages.__getitems__


def _recording_getitems(self, idx):
    # Observe, don't change: note which images of the split this process fetched.
    self.__dict__.setdefault("served", []).append(list(idx))
    return _original_getitems(self, idx)


TensorImages.__getitems__ = _recording_getitems


class Report(L.Callback):
    def __init__(self, out: Path) -> None:
        self.out = out
        self.per_epoch: dict[int, list[int]] = {}

    def on_train_epoch_end(self, trainer, pl_module):
        train_set = trainer.datamodule.train_set
        served = [i for batch in train_set.__dict__.pop("served", []) for i in batch]
        # Positions in the split -> indices into the original 60,000 training images.
        self.per_epoch[trainer.current_epoch] = train_set.indices[torch.tensor(served)].tolist()

    def on_train_end(self, trainer, pl_module):
        rank = trainer.global_rank
        (self.out / f"rank{rank}.json").write_text(json.dumps({"world_size": trainer.world_size, "epochs": self.per_epoch}))
        save_file({k: v.contiguous() for k, v in pl_module.state_dict().items()}, str(self.out / f"rank{rank}.safetensors"))


if __name__ == "__main__":
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    train(
        "mlp",
        epochs=2,
        batch_size=64,
        train_limit=1024,
        eval_limit=512,
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        out_dir=out / "run",
        progress_bar=False,
        callbacks=[Report(out)],
    )
