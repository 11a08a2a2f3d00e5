"""scripts/pack_weights.py: checkpoints as float16 parts small enough to carry off a GPU machine,
and back, on real bundled checkpoints (the script run as `python` runs it, in this process)."""

from __future__ import annotations

from pathlib import Path

import torch

import zoo
from conftest import Ran, run_script
from zoo.manifest import BUNDLED_DIR

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "pack_weights.py"


def run(*args) -> Ran:
    return run_script(SCRIPT, *args)


def test_pack_and_unpack_round_trip_as_float16(tmp_path):
    proc = run("pack", BUNDLED_DIR / "lenet_bn", BUNDLED_DIR / "mlp", "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr[-2000:]
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["weights.tar.part-000", "weights.tar.sha256"]
    proc = run("unpack", tmp_path / "out", "--to", tmp_path / "back")
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("lenet_bn", "mlp"):
        back, original = zoo.load(tmp_path / "back" / name), zoo.load(name)
        for (key, a), b in zip(original.state_dict().items(), back.state_dict().values()):
            assert torch.equal(b, a.half().float() if a.is_floating_point() else a), key


def test_a_damaged_part_is_refused(tmp_path):
    assert run("pack", BUNDLED_DIR / "softmax", "--out", tmp_path / "out").returncode == 0
    part = tmp_path / "out" / "weights.tar.part-000"
    part.write_bytes(part.read_bytes()[:-100])
    proc = run("unpack", tmp_path / "out", "--to", tmp_path / "back")
    assert proc.returncode != 0 and "do not join into the packed tar" in proc.stderr


def test_too_many_parts_is_refused_before_anything_is_lost(tmp_path):
    proc = run("pack", BUNDLED_DIR / "resnet18", "--out", tmp_path / "out", "--max-parts", "1")
    assert proc.returncode != 0 and "needs 2 parts, over --max-parts 1" in proc.stderr
    assert not list((tmp_path / "out").glob("weights.tar.part-*"))
