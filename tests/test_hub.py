"""Checkpoint folders, strict verified loading, adaptation, the Hub paths and the manifest."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from zoo.checkpoint import CONFIG_NAME, WEIGHTS_NAME, CheckpointError, sha256_file, write_config
from zoo.manifest import BUNDLE_MAX_FILE_BYTES, BUNDLE_MAX_TOTAL_BYTES, BUNDLED_DIR, read_manifest
from zoo.pretrained import WeightsNotFoundError

ROOT = Path(__file__).resolve().parents[1]


def _trained_like(name: str, **kwargs) -> torch.nn.Module:
    """A model whose weights and BatchNorm statistics are not the initial ones."""
    torch.manual_seed(0)
    model = zoo.create_model(name, **kwargs)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
        model.train()(torch.randn(8, model.in_chans, model.input_size, model.input_size))
    return model.eval()


@pytest.fixture
def images(fmnist):
    return fmnist["test_images"][:16].unsqueeze(1)


def test_round_trip_gives_identical_outputs(tmp_path, images):
    model = _trained_like("lenet_bn")
    folder = zoo.save_checkpoint(model, tmp_path / "ckpt", metrics={"test/acc": 0.5})
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    loaded = zoo.load(folder)
    assert not loaded.training and loaded.label_names[9] == "Ankle boot"
    x = loaded.preprocess(images)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    # The safetensors file alone works too; its config.json sits beside it.
    assert torch.equal(zoo.load(folder / WEIGHTS_NAME)(x), loaded(x))


def test_float16_checkpoint_is_half_the_size_and_loads_as_float32(tmp_path, images):
    model = _trained_like("lenet_bn")
    full = zoo.save_checkpoint(model, tmp_path / "fp32")
    half = zoo.save_checkpoint(model, tmp_path / "fp16", dtype="float16")
    size32, size16 = (full / WEIGHTS_NAME).stat().st_size, (half / WEIGHTS_NAME).stat().st_size
    assert size16 < 0.55 * size32
    config = json.loads((half / CONFIG_NAME).read_text())
    assert config["dtype"] == "float16" and config["sha256"] == sha256_file(half / WEIGHTS_NAME)  # the stored file's hash
    loaded = zoo.load(half)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    # Every weight is the float16 rounding of the original; integer buffers are exact.
    for (key, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        if a.is_floating_point():
            assert torch.equal(b, a.half().float()), key
        else:
            assert a.dtype == b.dtype and torch.equal(a, b), key
    x = loaded.preprocess(images)
    assert (loaded(x).argmax(-1) == model(x).argmax(-1)).float().mean() >= 0.9
    with pytest.raises(ValueError, match="dtype must be one of"):
        zoo.save_checkpoint(model, tmp_path / "bad", dtype="int8")


def test_model_card_has_hub_metadata(tmp_path):
    folder = zoo.save_checkpoint(_trained_like("mlp"), tmp_path / "mlp", metrics={"test/acc": 0.8765, "val/acc": 0.88})
    card = (folder / "README.md").read_text()
    front = card.split("---")[1]
    for line in ("library_name: d2l-zoo", "pipeline_tag: image-classification", "- fashion_mnist", "model-index:", "value: 0.8765"):
        assert line in front, line
    assert 'zoo.load("mlp")' in card
    config = json.loads((folder / CONFIG_NAME).read_text())
    assert config["model"] == "mlp" and config["sha256"] == sha256_file(folder / WEIGHTS_NAME)
    assert config["recipe"]["optimizer"] == "sgd" and config["params"] == 203_530


@pytest.mark.parametrize("name", ["lenet", "ssd_fmnist", "faster_rcnn", "mask_rcnn", "fcn"])
def test_the_bundled_cards_code_runs_and_says_what_is_in_a_real_image(name, fmnist, capsys):
    """The card's snippet is what a user copies first: it must run on the model's own task."""
    from zoo.detection.scenes import make_scenes

    card = (BUNDLED_DIR / name / "README.md").read_text()
    code = card.split("```python\n")[1].split("```")[0]
    assert f'zoo.load("{name}")' in code
    if name == "lenet":
        image, truth = fmnist["test_images"][0], {zoo.load(name).label_names[int(fmnist["test_labels"][0])]}
    else:  # a test scene of three or so items
        scenes, targets = make_scenes(fmnist["test_images"], fmnist["test_labels"], 1, seed=3)[:2]
        image, names = scenes[0, 0], zoo.load(name).label_names
        truth = {names[int(c) + (name == "fcn")] for c in targets[0, :, 0] if c >= 0}  # fcn's label 0 is background
    exec(compile(code, f"{name}/README.md", "exec"), {"pil_image": Image.fromarray(image.numpy())})
    said = capsys.readouterr().out
    assert any(label in said for label in truth), (truth, said)


def test_tampered_weights_are_refused(tmp_path):
    folder = zoo.save_checkpoint(_trained_like("softmax"), tmp_path / "ckpt")
    weights = folder / WEIGHTS_NAME
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF  # one flipped bit pattern in the last weight
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"does not match its recorded hash.*expected sha256 [0-9a-f]{64}, got [0-9a-f]{64}"):
        zoo.load(folder)


def test_num_classes_reinitialises_only_the_head(tmp_path, caplog):
    model = _trained_like("resnet18")
    folder = zoo.save_checkpoint(model, tmp_path / "r18")
    five = zoo.load(folder, num_classes=5)
    assert "head re-initialised for 5 classes (checkpoint has 10)" in caplog.text
    assert five.head.out_features == 5 and five.num_classes == 5
    old, new = model.state_dict(), five.state_dict()
    for key, value in new.items():
        if key.startswith("head."):
            assert value.shape != old[key].shape
        else:
            assert torch.equal(value, old[key]), key
    assert five(torch.randn(2, 1, 96, 96)).shape == (2, 5)


@pytest.mark.parametrize("name", ["lenet_bn", "softmax", "nin"])
def test_in_chans_3_sees_a_replicated_gray_image_as_gray(tmp_path, images, name):
    model = _trained_like(name)
    folder = zoo.save_checkpoint(model, tmp_path / name)
    rgb = zoo.load(folder, in_chans=3)
    assert rgb.in_chans == 3
    gray = model.eval()
    x = zoo.Preprocess(input_size=gray.input_size, in_chans=1, mean=gray.mean, std=gray.std)(images)
    torch.testing.assert_close(rgb(x.expand(-1, 3, -1, -1)), gray(x), rtol=1e-4, atol=1e-4)
    # And back: a 3-channel checkpoint adapted to gray input.
    back_folder = zoo.save_checkpoint(rgb, tmp_path / f"{name}-rgb")
    torch.testing.assert_close(zoo.load(back_folder, in_chans=1)(x), gray(x), rtol=1e-4, atol=1e-4)


def test_wrong_architecture_fails_clearly(tmp_path):
    folder = zoo.save_checkpoint(_trained_like("lenet_bn"), tmp_path / "ckpt")
    config = json.loads((folder / CONFIG_NAME).read_text())
    write_config(folder, {**config, "model": "resnet50"})
    with pytest.raises(CheckpointError, match="names the architecture 'resnet50'.*Did you mean 'resnet18'"):
        zoo.load(folder)
    write_config(folder, {**config, "model": "lenet", "kwargs": {}})
    with pytest.raises(CheckpointError, match=r"does not fit LeNet: .*(missing|unexpected|wrong shape)"):
        zoo.load(folder)


def test_no_weights_anywhere_says_what_to_run(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_MANIFEST", str(tmp_path / "empty.json"))
    with pytest.raises(WeightsNotFoundError, match=r"no weights for 'googlenet'.*not bundled.*not in the local store.*zoo train googlenet"):
        zoo.load("googlenet")
    # Too large to bundle: the error says so, and gives the GPU command the leaderboard trained it with.
    with pytest.raises(WeightsNotFoundError, match=r"'alexnet'.*too large to bundle.*89 MiB even as float16.*Hub only.*"
                                                   r"`zoo train alexnet --accelerator gpu --precision bf16-mixed --channels-last`"):
        zoo.load("alexnet")
    with pytest.raises(KeyError, match="Did you mean 'resnet18'"):
        zoo.load("resnet-18")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        zoo.load(tmp_path / "missing" / "model.safetensors")


def test_preprocess_takes_any_image(images):
    pre = zoo.Preprocess(input_size=96, in_chans=1, mean=[0.286], std=[0.353])
    gray = Image.fromarray(images[0, 0].numpy())
    assert pre(gray).shape == (1, 1, 96, 96)
    rgb = gray.convert("RGB").resize((50, 37))
    rgba = rgb.convert("RGBA")
    pal = rgb.convert("P")
    wide = Image.fromarray(np.asarray(gray.resize((50, 37)), dtype=np.uint16) * 257)
    assert wide.mode == "I;16"
    batch = pre([rgb, rgba, pal, wide, gray.resize((50, 37))])
    assert batch.shape == (5, 1, 96, 96) and torch.isfinite(batch).all()
    # Colour that is really gray gives the gray result; 16-bit gives the 8-bit result.
    torch.testing.assert_close(batch[0], batch[4], atol=2e-2, rtol=0)
    torch.testing.assert_close(batch[3], batch[4], atol=1e-5, rtol=0)
    assert pre(images).shape == (16, 1, 96, 96)  # uint8 (N, 1, 28, 28)
    with pytest.raises(ValueError, match="1-, 3- or 4-channel image, got 2 channels"):
        pre(torch.zeros(2, 28, 28, dtype=torch.uint8))


def _unsafe_torch_loads(source: str) -> list[int]:
    """Lines of ``torch.load(...)`` calls without a literal ``weights_only=True``, read with ast
    (so nested parentheses and calls spread over lines are seen whole)."""
    bad = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load" \
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch":  # fmt: skip
            safe = any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True for k in node.keywords)
            if not safe:
                bad.append(node.lineno)
    return bad


def test_unsafe_unpickling_finder_sees_through_parentheses():
    assert _unsafe_torch_loads("torch.load(open(p), map_location='cpu')") == [1]  # the old regex stopped at "open(p)"
    assert _unsafe_torch_loads("x = torch.load(\n  str(p),\n  weights_only=False)") == [1]
    assert _unsafe_torch_loads("torch.load(str(p), map_location='cpu', weights_only=True)") == []


def test_no_unsafe_unpickling_in_the_code():
    sources = [*ROOT.joinpath("zoo").rglob("*.py"), *ROOT.joinpath("scripts").rglob("*.py"), *ROOT.joinpath("tests").rglob("*.py")]
    assert len(sources) > 40
    for path in sources:
        assert _unsafe_torch_loads(path.read_text()) == [], f"{path}: torch.load without weights_only=True"


# ------------------------------------------------------------------------------------------ manifest
def test_manifest_matches_the_real_files():
    top = (ROOT / "checkpoints.json").read_text()
    assert (ROOT / "zoo" / "checkpoints.json").read_text() == top  # the package's copy is the same
    entries = read_manifest(ROOT / "checkpoints.json")
    bundled = {e["model"] for e in entries.values() if e["bundled"]}
    assert bundled == {"softmax", "mlp", "lenet", "lenet_bn", "tiny_ssd", "ssd_fmnist", "faster_rcnn", "mask_rcnn", "fcn", "resnet18", "densenet"}
    total = 0
    for name in bundled:
        entry, folder = entries[name], BUNDLED_DIR / name
        weights = folder / WEIGHTS_NAME
        assert sha256_file(weights) == entry["sha256"] and weights.stat().st_size == entry["size"]
        assert entry["size"] <= BUNDLE_MAX_FILE_BYTES
        total += entry["size"]
        model = zoo.load(name, source="bundled")
        assert sum(p.numel() for p in model.parameters()) == entry["params"]
        if zoo.get_spec(name).book_params is not None:
            assert entry["params"] == zoo.get_spec(name).book_params
        config = json.loads((folder / CONFIG_NAME).read_text())
        assert entry["metrics"] == {k: v for k, v in config["metrics"].items() if k.startswith(("test/", "val/"))}
        assert entry["recipe"] == config["recipe"] and entry["hardware"] and entry["wall_time_s"] > 0
    assert total <= BUNDLE_MAX_TOTAL_BYTES


def test_bundled_accuracy_is_what_the_bundled_file_scores():
    # Re-measure one bundled model on the official test set: the manifest's number must be exact.
    from zoo.train import evaluate

    entry = read_manifest()["lenet"]
    assert evaluate(zoo.load("lenet"))["test/acc"] == pytest.approx(entry["metrics"]["test/acc"], abs=1e-6)


def _run_offline(code: str, env_extra: dict[str, str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "ZOO_"))}
    env.update({"HF_HUB_OFFLINE": "1", **env_extra})
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", ["resnet18", "densenet"])
def test_gpu_trained_weights_load_offline_and_classify_real_images(tmp_path, name):
    # A fresh process with no network, no store and no Hugging Face cache: the bundled float16 file.
    code = (
        "import json, sys, torch, zoo\n"
        "from zoo.data import load_fashion_mnist\n"
        f"m = zoo.load({name!r})\n"
        "d = load_fashion_mnist()\n"
        "x = m.preprocess(d['test_images'][:200].unsqueeze(1))\n"
        "with torch.no_grad(): acc = (m(x).argmax(-1) == d['test_labels'][:200]).float().mean().item()\n"
        "print(json.dumps({'source': m.checkpoint['source'], 'dtype': str(next(m.parameters()).dtype), 'acc': acc}))\n"
    )
    proc = _run_offline(code, {"ZOO_HOME": str(tmp_path / "empty-home"), "HF_HOME": str(tmp_path / "empty-hf")})
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["source"] == "bundled" and out["dtype"] == "torch.float32"
    assert out["acc"] > 0.9, out  # both score about 0.946 on all 10,000 test images
    entry = read_manifest()[name]
    assert entry["bundled"] and entry["hardware"] == "NVIDIA H200" and entry["metrics"]["test/acc"] > 0.94


def test_bundled_model_loads_offline_in_a_fresh_process(tmp_path):
    proc = _run_offline(
        "import zoo; m = zoo.load('lenet'); print(m.checkpoint['source'], m.label_names[0], m.training)",
        {"ZOO_HOME": str(tmp_path / "empty-home"), "HF_HOME": str(tmp_path / "empty-hf")},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["bundled", "T-shirt/top", "False"]


def _fill_hf_cache(cache: Path, repo_id: str, folder: Path, commit: str) -> None:
    """The Hugging Face cache layout as hf_hub_download leaves it."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for f in (CONFIG_NAME, WEIGHTS_NAME):
        (snapshot / f).write_bytes((folder / f).read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)


def test_hub_download_path_reads_the_hf_cache_offline(tmp_path):
    folder = zoo.save_checkpoint(_trained_like("googlenet"), tmp_path / "googlenet")
    commit = "0123456789abcdef0123456789abcdef01234567"
    _fill_hf_cache(tmp_path / "hf" / "hub", "d2l-zoo/googlenet", folder, commit)
    from zoo.manifest import manifest_entry, write_manifest

    manifest = tmp_path / "checkpoints.json"
    write_manifest([manifest_entry(folder, revision=commit)], [manifest])
    code = ("import zoo, torch; m = zoo.load('googlenet'); print(m.checkpoint['source']); "
            "torch.manual_seed(0); print(float(m(torch.randn(1, 1, 96, 96)).sum()))")  # fmt: skip
    env = {"ZOO_MANIFEST": str(manifest), "ZOO_HOME": str(tmp_path / "home"), "HF_HOME": str(tmp_path / "hf")}
    proc = _run_offline(code, env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    source, value = proc.stdout.split()
    reference = zoo.load(folder)
    torch.manual_seed(0)
    expected = float(reference(torch.randn(1, 1, 96, 96)).sum())
    assert source == "cache" and float(value) == pytest.approx(expected, rel=1e-6)
    # A cached file that differs from the manifest's hash is refused.
    (tmp_path / "hf" / "hub" / "models--d2l-zoo--googlenet" / "snapshots" / commit / WEIGHTS_NAME).write_bytes(
        (zoo.save_checkpoint(_trained_like("googlenet", num_classes=10), tmp_path / "other") / WEIGHTS_NAME).read_bytes()
        [:-8] + b"\0" * 8
    )  # fmt: skip
    proc = _run_offline(code, env)
    assert proc.returncode != 0 and "does not match its recorded hash (checkpoints.json)" in proc.stderr


def test_push_uploads_the_folder_and_pins_the_revision(tmp_path, monkeypatch, capsys):
    from huggingface_hub import HfApi

    from zoo.cli import main

    calls = {}

    class Commit:
        oid = "fedcba9876543210fedcba9876543210fedcba98"
        commit_url = "https://huggingface.co/me/lenet/commit/fedcba98"

    # Only the network boundary is replaced.
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: calls.setdefault("create", (repo_id, kw)))
    def upload_folder(self, *, folder_path, repo_id, commit_message):
        calls["upload"] = (sorted(p.name for p in Path(folder_path).iterdir()), repo_id)
        return Commit()

    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    manifest = tmp_path / "checkpoints.json"
    manifest.write_text((ROOT / "checkpoints.json").read_text())
    monkeypatch.setenv("ZOO_MANIFEST", str(manifest))

    assert main(["push", "lenet", "--repo-id", "me/lenet", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would upload to https://huggingface.co/me/lenet" in out and "model.safetensors" in out and not calls

    assert main(["push", "lenet", "--repo-id", "me/lenet"]) == 0
    assert f'zoo.load("hf-hub:me/lenet@{Commit.oid}")' in capsys.readouterr().out
    assert calls["create"][0] == "me/lenet"
    assert calls["upload"] == (["README.md", "config.json", "model.safetensors"], "me/lenet")
    entry = read_manifest(manifest)["lenet"]
    assert entry["repo_id"] == "me/lenet" and entry["revision"] == Commit.oid and entry["bundled"]


def test_zoo_eval_scores_the_bundled_model(capsys):
    from zoo.cli import main

    assert main(["eval", "lenet", "--eval-limit", "1000"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("lenet (bundled: ")
    top1 = float(out.split("test top-1 ")[1].split()[0])
    assert top1 > 0.85  # the bundled LeNet scores 0.9103 on all 10,000
    assert main(["eval", "nin"]) == 2
    assert "Train them with `zoo train nin --accelerator gpu" in capsys.readouterr().err


def test_any_hub_repo_and_local_dir_in_the_zoo_format_load(tmp_path):
    # A user's own fine-tune published under their name: served from the HF cache offline, by
    # commit or by the branch the cache knows, verified against its own config.json.
    folder = zoo.save_checkpoint(_trained_like("lenet"), tmp_path / "mine")
    commit = "fedcba9876543210fedcba9876543210fedcba98"
    _fill_hf_cache(tmp_path / "hf" / "hub", "someone/lenet-shoes", folder, commit)
    code = ("import zoo, torch\n"
            "for spec in ('hf-hub:someone/lenet-shoes@" + commit + "', 'hf-hub:someone/lenet-shoes', 'local-dir:" + str(folder) + "'):\n"
            "    m = zoo.load(spec); torch.manual_seed(0); print(m.checkpoint['source'], float(m(torch.randn(1, 1, 28, 28)).sum()))\n")  # fmt: skip
    proc = _run_offline(code, {"ZOO_HOME": str(tmp_path / "home"), "HF_HOME": str(tmp_path / "hf")})
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line.split() for line in proc.stdout.splitlines()]
    assert [s for s, _ in lines] == ["hf-hub", "hf-hub", "path"] and len({v for _, v in lines}) == 1
    # A tampered cached file is refused; an unknown repo fails fast and says what was tried.
    snapshot = tmp_path / "hf" / "hub" / "models--someone--lenet-shoes" / "snapshots" / commit / WEIGHTS_NAME
    snapshot.write_bytes(snapshot.read_bytes()[:-8] + b"\0" * 8)
    proc = _run_offline("import zoo; zoo.load('hf-hub:someone/lenet-shoes@" + commit + "')",
                        {"ZOO_HOME": str(tmp_path / "home"), "HF_HOME": str(tmp_path / "hf")})  # fmt: skip
    assert proc.returncode != 0 and "does not match its recorded hash (config.json)" in proc.stderr
    # Timed inside the child, around the failing call only: the interpreter's imports are not the
    # fast failure's business, and take long on a loaded machine.
    code = ("import sys, time, zoo\nstart = time.perf_counter()\ntry:\n    zoo.load('hf-hub:someone/absent')\n"
            "except Exception as err:\n    print(time.perf_counter() - start)\n    sys.exit(str(err))\n")  # fmt: skip
    proc = _run_offline(code, {"HF_HOME": str(tmp_path / "hf")})
    assert proc.returncode != 0 and "no checkpoint folder for hf-hub:someone/absent" in proc.stderr
    assert float(proc.stdout.strip().splitlines()[-1]) < 5
    with pytest.raises(FileNotFoundError, match="local-dir:"):
        zoo.load("local-dir:" + str(tmp_path / "nowhere"))
