"""Real 2-process DDP on CPU through Lightning (gloo): disjoint shards, identical weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

PROBE = Path(__file__).with_name("ddp_probe.py")


def test_two_process_ddp_trains_on_disjoint_shards_and_agrees(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(PROBE.parent)}
    proc = subprocess.run([sys.executable, str(PROBE), str(tmp_path)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(rep["world_size"] == 2 for rep in reports)
    for epoch in ("0", "1"):
        shard0, shard1 = (set(rep["epochs"][epoch]) for rep in reports)
        assert len(shard0) == len(shard1) == 512  # half of the 1,024 training images each
        assert not shard0 & shard1, f"epoch {epoch}: both processes trained on {len(shard0 & shard1)} same images"
    # Reshuffled between epochs: a process does not see the same half twice.
    assert set(reports[0]["epochs"]["0"]) != set(reports[0]["epochs"]["1"])

    w0, w1 = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in (0, 1))
    assert w0.keys() == w1.keys()
    for key in w0:
        torch.testing.assert_close(w0[key], w1[key], rtol=0, atol=0, msg=f"{key} differs between the processes")

    assert [p.name for p in (tmp_path / "run").iterdir()] == ["version_0"]  # both ranks wrote one run
    metrics = json.loads((tmp_path / "run" / "version_0" / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["test/acc"] > 0.5
