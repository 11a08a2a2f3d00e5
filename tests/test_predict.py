"""zoo predict over files, folders and globs in batches, as table, CSV and JSON; zoo list
--pretrained and zoo.get_weights. Real test images written to disk as PNG files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

import zoo
from zoo.cli import main
from zoo.data import CLASSES


@pytest.fixture()
def image_tree(tmp_path, fmnist):
    """40 real test images: 20 in photos/a, 10 in photos/b/deep, 10 loose as loose-<i>.png."""
    paths = []
    for i in range(40):
        folder = tmp_path / ("photos/a" if i < 20 else "photos/b/deep" if i < 30 else ".")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / (f"{i:02d}.png" if i < 30 else f"loose-{i}.png")
        Image.fromarray(fmnist["test_images"][i].numpy(), mode="L").save(path)
        paths.append(path)
    return tmp_path, paths, [CLASSES[int(y)] for y in fmnist["test_labels"][:40]]


def test_predict_reads_folders_globs_and_files_in_batches(image_tree, capsys):
    root, paths, truth = image_tree
    inputs = [str(root / "photos"), str(root / "loose-*.png")]
    assert main(["predict", "lenet", *inputs, "--format", "json", "--batch-size", "7"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert sorted(r["path"] for r in records) == sorted(str(p) for p in paths)
    # The same predictions as the model itself, image by image.
    model = zoo.load("lenet")
    by_path = {r["path"]: r for r in records}
    with torch.no_grad():
        for path in paths[:5]:
            probs = model(model.preprocess(Image.open(path))).softmax(-1)[0]
            top = by_path[str(path)]["predictions"][0]
            assert top["label"] == model.label_names[int(probs.argmax())] and top["probability"] == pytest.approx(float(probs.max()), abs=1e-5)
    correct = sum(by_path[str(p)]["predictions"][0]["label"] == t for p, t in zip(paths, truth))
    assert correct >= 34  # the bundled LeNet scores 0.91 on the test set
    # Batching changes nothing (but the last float digit).
    assert main(["predict", "lenet", *inputs, "--format", "json", "--batch-size", "64"]) == 0
    for a, b in zip(json.loads(capsys.readouterr().out), records):
        assert a["path"] == b["path"] and [p["label"] for p in a["predictions"]] == [p["label"] for p in b["predictions"]]
        assert [p["probability"] for p in a["predictions"]] == pytest.approx([p["probability"] for p in b["predictions"]], abs=1e-5)


def test_predict_writes_csv_to_a_file_and_never_overwrites_one(image_tree, capsys):
    root, paths, _ = image_tree
    out = root / "predictions.csv"
    assert main(["predict", "--model", "lenet", str(root / "photos" / "a"), "--top-k", "2", "--format", "csv", "--output", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 2 * 20 and rows[0].keys() == {"path", "rank", "label", "probability"}
    assert {r["rank"] for r in rows} == {"1", "2"}
    assert main(["predict", "lenet", str(root / "photos"), "--output", str(out)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert main(["predict", "lenet", str(root / "nothing-*.png"), str(root / "photos" / "a")]) == 1
    assert "the pattern matches no file" in capsys.readouterr().err


def test_detector_predictions_as_json_with_drawn_images(tmp_path, capsys, fmnist):
    scene = tmp_path / "scene.png"
    Image.fromarray(fmnist["test_images"][0].numpy(), mode="L").resize((96, 96)).save(scene)
    assert main(["predict", "tiny_ssd", str(scene), "--format", "json", "--min-score", "0.3"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert record["path"] == str(scene) and (tmp_path / "scene.pred.png").is_file() and record["drawn"] == str(tmp_path / "scene.pred.png")
    assert all(set(d) == {"label", "score", "box"} and d["score"] >= 0.3 and len(d["box"]) == 4 for d in record["detections"])


def test_list_pretrained_and_get_weights(capsys, fmnist):
    assert main(["list", "--pretrained"]) == 0
    out = capsys.readouterr().out
    assert any(line.split()[:3] == ["lenet", "bundled", "top-1"] for line in out.splitlines())
    assert any(line.split()[:2] == ["googlenet", "none"] for line in out.splitlines())
    w = zoo.get_weights("lenet")
    model = zoo.load("lenet")
    assert w.location == "bundled" and w.sha256 == model.checkpoint["sha256"] and w.test_score == model.checkpoint["metrics"]["test/acc"]
    image = Image.fromarray(fmnist["test_images"][3].numpy(), mode="L")
    assert torch.equal(w.transforms()(image), model.preprocess(image))


def test_zoo_eval_scores_an_image_folder(tmp_path, capsys, fmnist):
    # 200 real test images in class folders named loosely like the labels ("t_shirt_top", "ankle boot").
    root = tmp_path / "data"
    names = {c: c.lower().replace("/", "_").replace("-", "_") for c in CLASSES}
    for i in range(200):
        label = CLASSES[int(fmnist["test_labels"][i])]
        folder = root / names[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(fmnist["test_images"][i].numpy(), mode="L").save(folder / f"{i}.png")
    out = tmp_path / "report"
    assert main(["eval", "lenet", "--data", str(root), "--out", str(out)]) == 0
    result = json.loads((out / "eval.json").read_text())
    # The same numbers as scoring those 200 images directly.
    model = zoo.load("lenet")
    with torch.no_grad():
        probs = model(model.preprocess([img.numpy() for img in fmnist["test_images"][:200]]))
    truth = fmnist["test_labels"][:200]
    assert result["images"] == 200
    assert result["top1"] == pytest.approx(float((probs.argmax(-1) == truth).float().mean()), abs=1e-6)
    assert result["top5"] == pytest.approx(float((probs.topk(5).indices == truth[:, None]).any(-1).float().mean()), abs=1e-6)
    assert sum(map(sum, result["confusion"])) == 200 and set(result["per_class"]) <= set(CLASSES)
    assert (out / "confusion.png").stat().st_size > 10_000
    assert f"top-1 {result['top1']:.4f}" in capsys.readouterr().out
    (root / "llama").mkdir()
    Image.new("L", (28, 28)).save(root / "llama" / "x.png")
    assert main(["eval", "lenet", "--data", str(root), "--out", str(out)]) == 2
    assert "class folder(s) ['llama'] match none of LeNet's labels" in capsys.readouterr().err
    # A second report into the same folder replaces the first only when asked to.
    import shutil

    shutil.rmtree(root / "llama")
    first = (out / "eval.json").read_bytes()
    assert main(["eval", "lenet", "--data", str(root / ".." / "data"), "--out", str(out)]) == 2
    assert "eval.json exists; pass --force" in capsys.readouterr().err and (out / "eval.json").read_bytes() == first
    assert main(["eval", "lenet", "--data", str(root), "--out", str(out), "--force"]) == 0


def test_bad_devices_and_unwritable_outputs_are_one_line(image_tree, capsys):
    root, paths, _ = image_tree
    one = str(paths[0])
    with pytest.raises(SystemExit) as stop:
        main(["predict", "lenet", one, "--device", "bogus"])
    assert stop.value.code == 2 and "--device: not a device: 'bogus'" in capsys.readouterr().err
    if not torch.cuda.is_available():  # parses (a GPU machine's command), then says why it cannot run here
        assert main(["predict", "lenet", one, "--device", "cuda"]) == 2
        assert "--device cuda: no CUDA device is available" in capsys.readouterr().err
    # A folder or a device given as the output file: one line, not a traceback, and the device left
    # a device (a file written beside it and renamed over it would replace /dev/full).
    (root / "a-folder").mkdir()
    for target in (root / "a-folder", Path("/dev/full")):
        if not target.exists():
            continue
        assert main(["predict", "lenet", one, "--output", str(target), "--force"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("zoo: error:") and "Traceback" not in err and "is not a regular file" in err
    assert Path("/dev/full").is_char_device() or not Path("/dev/full").exists()
    # A file that cannot be written (its folder is missing) is one line too.
    assert main(["predict", "lenet", one, "--output", str(root / "no" / "such" / "out.csv")]) == 2
    assert capsys.readouterr().err.startswith("zoo: error:")


def test_predict_never_writes_onto_a_file_it_did_not_make_and_skips_its_own_outputs(tmp_path, capsys, fmnist):
    folder = tmp_path / "scenes"
    folder.mkdir()
    Image.fromarray(fmnist["test_images"][0].numpy(), mode="L").resize((96, 96)).save(folder / "a.png")
    mine = folder / "a.pred.png"  # the user's own file, named as the zoo names its pictures
    Image.fromarray(fmnist["test_images"][1].numpy(), mode="L").resize((96, 96)).save(mine)
    before = mine.read_bytes()
    for _ in range(2):  # the second run finds the first run's pictures in the folder
        assert main(["predict", "tiny_ssd", str(folder), "--format", "json"]) == 0
        records = json.loads(capsys.readouterr().out)
        assert sorted(Path(r["path"]).name for r in records) == ["a.png", "a.pred.png"]  # its own outputs are not inputs
        assert mine.read_bytes() == before
        drawn = {Path(r["path"]).name: Path(r["drawn"]).name for r in records}
        assert drawn == {"a.png": "a-2.pred.png", "a.pred.png": "a.pred.pred.png"}
    assert sorted(p.name for p in folder.iterdir()) == ["a-2.pred.png", "a.png", "a.pred.png", "a.pred.pred.png"]
