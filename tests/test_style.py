"""Neural style transfer (ch. 14.12) on real photos and textures (scikit-image's): the book's losses,
a real Lightning run, seeds, the feature networks, and `zoo stylize`'s one-line refusals."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from skimage import data  # the stylize extra (in dev): real photos and textures

from zoo.cli import main
from zoo.style import FeatureNet, StyleTransfer, feature_net, gram, load_image, stylize


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(data.chelsea()).save(folder / "chelsea.png")
    Image.fromarray(data.gravel()).save(folder / "gravel.png")
    return folder / "chelsea.png", folder / "gravel.png"


def test_gram_is_normalised_by_channels_times_pixels():
    x = torch.randn(1, 3, 4, 5)
    g = gram(x)
    flat = x.reshape(3, 20)
    assert g.shape == (3, 3) and torch.allclose(g, flat @ flat.T / 60)


def test_the_three_losses_fall_from_a_noise_start(photos):
    content, style = photos
    net = feature_net("vgg19-random", seed=0)
    module = StyleTransfer(content=load_image(content, 48), style=load_image(style, 48), features=net)
    with torch.no_grad():  # start from noise, so the content and total-variation losses have somewhere to go
        module.image.copy_(torch.randn_like(module.image))
        start = module.distances()
    opt = torch.optim.Adam([module.image], lr=0.1)
    for _ in range(40):
        loss = sum(module.weights[k] * v for k, v in module.distances().items())
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        end = module.distances()
    for key in ("content", "style", "tv"):
        assert end[key] < 0.7 * start[key], (key, start[key], end[key])


def test_style_distance_drops_while_content_stays_bounded(photos):
    content, style = photos
    image, m = stylize(content, style, steps=40, size=128, style_weight=1e5, seed=0, progress_bar=False)  # a real Lightning Trainer
    assert image.size == (128, 85) and image.mode == "RGB"
    assert m["style"] < 0.2 * m["start_style"], m  # measured: 0.09 of it
    # Bounded: far closer to the content's features than the style image itself is.
    net = feature_net("vgg19-random", seed=0)
    far = StyleTransfer(content=load_image(content, 128), style=load_image(style, 128), features=net)
    with torch.no_grad():
        far.image.copy_(net.normalise(torch.nn.functional.interpolate(load_image(style, 128)[None], size=(85, 128))))
        style_as_content = float(far.distances()["content"])
    assert m["content"] < 0.5 * style_as_content, (m, style_as_content)  # measured: 0.12 against 0.30


def test_the_same_seed_gives_the_same_image(photos):
    content, style = photos
    a, _ = stylize(content, style, steps=3, size=32, seed=1, progress_bar=False)
    b, _ = stylize(content, style, steps=3, size=32, seed=1, progress_bar=False)
    c, _ = stylize(content, style, steps=3, size=32, seed=2, progress_bar=False)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))  # another seed: another random feature network


def test_a_zoo_classifier_and_timm_vgg19_weights_on_disk_serve_as_features(tmp_path, photos):
    content, style = photos
    net = feature_net("resnet18")
    assert isinstance(net, FeatureNet) and len(net.style) == 5 and net.content == [2]  # every stage; the stride-8 one
    _, m = stylize(content, style, steps=2, size=32, features=net, progress_bar=False)
    assert m["style"] < m["start_style"]
    from safetensors.torch import save_file

    torch.manual_seed(0)
    state = {k: v for k, v in timm.create_model("vgg19", pretrained=False).state_dict().items() if k.startswith("features.")}
    save_file(state, tmp_path / "vgg19.safetensors")
    net = feature_net("timm:vgg19", timm_weights=tmp_path / "vgg19.safetensors")
    assert torch.equal(net.taps.layers[28].weight, state["features.28.weight"])
    (tmp_path / "junk.pth").write_bytes(b"not weights")
    with pytest.raises(ValueError, match="not a readable weights file"):
        feature_net("timm:vgg19", timm_weights=tmp_path / "junk.pth")


def test_zoo_stylize_writes_the_result_and_says_where(tmp_path, photos, capsys):
    content, style = photos
    out = tmp_path / "result.png"
    assert main(["stylize", str(content), str(style), "--out", str(out), "--steps", "2", "--size", "32", "--no-progress"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert Image.open(out).size == (32, 21)
    assert main(["stylize", str(content), str(style), "--out", str(out), "--steps", "2", "--size", "32"]) == 2
    assert "exists; pass --force" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["MISSING", "STYLE"], "No such file or directory"),
    (["CONTENT", "NOTIMAGE"], "not an image file"),
    (["CONTENT", "STYLE", "--features", "alexnet9"], "unknown feature network 'alexnet9'"),
    (["CONTENT", "STYLE", "--features", "timm:vgg19"], "needs --timm-weights FILE"),
    (["CONTENT", "STYLE", "--timm-weights", "w.pth"], "--timm-weights is for --features timm:"),
    (["CONTENT", "STYLE", "--out", "result.jpg"], "written as a PNG"),
])  # fmt: skip
def test_bad_inputs_get_one_line(tmp_path, photos, capsys, args, message):
    content, style = photos
    (tmp_path / "notes.png").write_text("not an image")
    names = {"CONTENT": str(content), "STYLE": str(style), "NOTIMAGE": str(tmp_path / "notes.png"), "MISSING": str(tmp_path / "missing.png"),
             "result.jpg": str(tmp_path / "result.jpg")}  # fmt: skip
    argv = ["stylize", *[names.get(a, a) for a in args], "--steps", "1", "--size", "16", "--no-progress"]
    if "--out" not in args:
        argv += ["--out", str(tmp_path / "out.png")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("zoo: error:") and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("flag, value", [("--style-weight", "nan"), ("--tv-weight", "inf"), ("--content-weight", "-1"), ("--steps", "0")])
def test_bad_numbers_are_refused_by_the_parser(photos, capsys, flag, value):
    content, style = photos
    with pytest.raises(SystemExit) as exit_:
        main(["stylize", str(content), str(style), flag, value])
    assert exit_.value.code == 2 and flag in capsys.readouterr().err
