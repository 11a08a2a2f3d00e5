"""zoo demo in a real browser: Debian's Chromium driven by Playwright. A real test image is uploaded;
the top label the page shows must be the one `zoo predict` prints. A photo-like JPEG and a
drawing go through the same page. The screenshot goes to $ZOO_DEMO_SCREENSHOT when set (the
README's picture), else to the test's folder."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("gradio")
playwright = pytest.importorskip("playwright.sync_api")

from zoo.data.fashion_mnist import CLASSES, load_fashion_mnist  # noqa: E402
from zoo.data.photos import photo_like  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def demo_url():
    import httpx

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "zoo", "demo", "--port", str(port)], env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"zoo demo exited {proc.returncode}: {proc.stdout.read()[-3000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            raise RuntimeError("zoo demo did not answer in 120 s")
        time.sleep(0.5)
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def page(demo_url):
    assert CHROMIUM, "the browser test needs Chromium: apt-get install -y chromium"
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(demo_url, wait_until="domcontentloaded")
        page.wait_for_selector("#zoo-image input[type=file]", state="attached", timeout=60_000)
        yield page
        browser.close()


def _top_label(page, previous: str | None = None) -> str:
    """The big label the page shows, once it is there (and differs from ``previous``)."""
    heading = page.locator("#zoo-scores h2, #zoo-scores [data-testid='label-output-value']").first
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if heading.count() and heading.inner_text().strip() and heading.inner_text().strip() != previous:
            return heading.inner_text().strip()
        time.sleep(0.2)
    raise AssertionError(f"no new label appeared; the page says: {page.inner_text('#zoo-scores')[:300]}")


def _zoo_predict_top(path: Path, tmp_path: Path) -> str:
    from zoo.cli import main

    out = tmp_path / f"{path.stem}.csv"
    assert main(["predict", "lenet_bn", str(path), "--format", "csv", "--top-k", "1", "--output", str(out)]) == 0
    return out.read_text().splitlines()[1].split(",")[2]


def test_the_page_shows_the_label_zoo_predict_gives(page, tmp_path):
    data = load_fashion_mnist()
    shown = None
    for i in (0, 1):  # Ankle boot, then Pullover: two different answers, each read from the page
        path = tmp_path / f"test-{i}.png"
        Image.fromarray(data["test_images"][i].numpy()).save(path)
        page.set_input_files("#zoo-image input[type=file]", str(path))
        shown = _top_label(page, previous=shown)
        assert shown == _zoo_predict_top(path, tmp_path) == CLASSES[int(data["test_labels"][i])]


def test_a_photo_is_read_through_the_photo_steps_and_shown_as_the_network_sees_it(page, tmp_path):
    data = load_fashion_mnist()
    path = tmp_path / "photo.jpg"
    path.write_bytes(photo_like(data["test_images"][2], size=(640, 480), seed=2))  # a Trouser, dark on off-white
    previous = page.locator("#zoo-scores h2").first.inner_text().strip() if page.locator("#zoo-scores h2").count() else None
    page.get_by_label("Show what the network sees").check()
    page.set_input_files("#zoo-image input[type=file]", str(path))
    shown = _top_label(page, previous=previous)
    assert shown == _zoo_predict_top(path, tmp_path) == CLASSES[int(data["test_labels"][2])]
    page.wait_for_selector("#zoo-seen img", timeout=60_000)
    time.sleep(1.0)  # let the images finish painting
    shot = Path(os.environ.get("ZOO_DEMO_SCREENSHOT") or tmp_path / "demo.png")
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


def test_a_drawing_and_a_scene_go_through_the_demo_s_code_path():
    from zoo.demo import _on_white, models_with_weights, network_input, predict
    from zoo.detection.scenes import make_scenes
    from zoo.pretrained import load

    assert {"lenet_bn", "resnet18", "tiny_ssd"} <= set(models_with_weights())
    data = load_fashion_mnist()
    # A sketchpad gives black strokes on a transparent canvas: read as the user sees them (on white).
    item = data["test_images"][1].numpy()  # a Pullover
    strokes = Image.fromarray(item).resize((280, 280))
    drawing = Image.new("RGBA", (280, 280), (0, 0, 0, 0))
    drawing.putalpha(strokes)  # black where the item is bright
    assert _on_white({"composite": Image.new("RGBA", (280, 280))}) is None  # nothing drawn yet
    model = load("lenet_bn")
    scores, drawn = predict(model, _on_white({"composite": drawing}))
    assert drawn is None and max(scores, key=scores.get) == "Pullover"
    assert network_input(model, _on_white({"composite": drawing})).size == (280, 280)
    scenes, targets = make_scenes(data["test_images"], data["test_labels"], n=1, seed=5)
    found, boxes = predict(load("tiny_ssd"), Image.fromarray(scenes[0, 0].numpy()))
    assert boxes.size == (96, 96) and found
