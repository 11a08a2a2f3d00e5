"""zoo serve: the real LitServe server in a subprocess on a free port, talked to with a real HTTP
client: good images (multipart and base64 JSON), bad ones, an oversized body, concurrent clients
batched together, the detector's boxes, /health and /info."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("litserve")

import zoo  # noqa: E402
from zoo.data.fashion_mnist import load_fashion_mnist  # noqa: E402
from zoo.predict import classify_images  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, *args: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen([sys.executable, "-m", "zoo", "serve", *args, "--port", str(self.port)],
                                     env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"zoo serve exited {self.proc.returncode}: {self.proc.stdout.read()[-3000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError("zoo serve did not become healthy in 90 s")

    def stop(self) -> str:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the server and its worker processes
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.stdout.read()


@pytest.fixture(scope="module")
def lenet_server():
    server = Server("lenet", "--max-batch-size", "8", "--batch-timeout", "0.2")
    yield server
    log = server.stop()
    assert "Traceback" not in log, log[-3000:]  # every bad request was answered, none crashed a handler


@pytest.fixture(scope="module")
def images():
    data = load_fashion_mnist()
    return [data["test_images"][i].numpy() for i in range(16)]


def _png(array) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


def test_classifies_like_zoo_predict_over_multipart_and_base64(lenet_server, images):
    from PIL import Image

    model = zoo.load("lenet")
    expected = classify_images(model, [Image.fromarray(a) for a in images[:4]], top_k=5)
    for array, want in zip(images[:4], expected):
        form = httpx.post(lenet_server.url + "/predict", files={"image": ("item.png", _png(array), "image/png")}, timeout=30)
        assert form.status_code == 200, form.text
        assert form.json()["model"] == "lenet"
        got = form.json()["predictions"]
        assert [p["label"] for p in got] == [p["label"] for p in want]
        assert all(abs(a["probability"] - b["probability"]) < 1e-4 for a, b in zip(got, want))
        body = {"image": base64.b64encode(_png(array)).decode(), "top_k": 2}
        as_json = httpx.post(lenet_server.url + "/predict", json=body, timeout=30).json()
        assert [p["label"] for p in as_json["predictions"]] == [p["label"] for p in want[:2]]


def test_bad_requests_get_a_400_or_415_that_says_what_to_send(lenet_server):
    post = lambda **kw: httpx.post(lenet_server.url + "/predict", timeout=30, **kw)  # noqa: E731
    cases = [
        (post(files={"image": ("x.png", b"\x89PNG\r\n\x1a\n not an image", "image/png")}), 400, "cannot read the image"),
        (post(json={"image": "%%% not base64"}), 400, "not valid base64"),
        (post(json={"picture": "abc"}), 400, "no 'image' in the JSON"),
        (post(data={"top_k": "2"}, files={}), 400, "no image file in the form"),
        (post(files={"a": ("a.png", _png(load_fashion_mnist()["test_images"][0].numpy()), "image/png"),
                     "b": ("b.png", _png(load_fashion_mnist()["test_images"][1].numpy()), "image/png")}), 400, "one image file a request, got 2"),
        (post(content=b"{not json", headers={"content-type": "application/json"}), 400, "not valid JSON"),
        (post(content=b"raw bytes", headers={"content-type": "image/png"}), 415, "send multipart/form-data"),
        (post(json={"image": base64.b64encode(_png(load_fashion_mnist()["test_images"][0].numpy())).decode(), "top_k": 0}),
         400, "top_k must be at least 1"),
        (post(content=b'{"image": "' + base64.b64encode(_png(load_fashion_mnist()["test_images"][0].numpy())) + b'", "top_k": 1e999}',
              headers={"content-type": "application/json"}), 400, "top_k must be a finite"),
        (post(content=b'{"image": "' + base64.b64encode(_png(load_fashion_mnist()["test_images"][0].numpy())) + b'", "min_score": NaN}',
              headers={"content-type": "application/json"}), 400, "min_score must be a finite"),
    ]  # fmt: skip
    for response, status, words in cases:
        assert response.status_code == status, response.text
        assert words in response.json()["detail"], response.text


def test_one_image_under_any_field_name_is_accepted(lenet_server, images):
    # curl -F file=@shirt.png: "file" is what curl examples and most upload clients send.
    for field in ("file", "upload"):
        response = httpx.post(lenet_server.url + "/predict", files={field: ("item.png", _png(images[0]), "image/png")},
                              data={"top_k": "2"}, timeout=30)  # fmt: skip
        assert response.status_code == 200, response.text
        assert len(response.json()["predictions"]) == 2


def test_an_oversized_upload_is_refused(lenet_server):
    response = httpx.post(lenet_server.url + "/predict", files={"image": ("big.png", b"\0" * (11 * 2**20), "image/png")}, timeout=60)
    assert response.status_code == 413


def test_hostile_bodies_get_one_clear_answer_and_no_traceback(lenet_server):
    from hostile_files import bomb_png

    post = lambda **kw: httpx.post(lenet_server.url + "/predict", timeout=60, **kw)  # noqa: E731
    bomb = post(files={"image": ("bomb.png", bomb_png(13000, 13000), "image/png")})  # 0.5 MB on the wire, 0.5 GB decoded
    assert bomb.status_code == 400 and "over the zoo's limit" in bomb.json()["detail"], bomb.text
    no_boundary = post(content=b"--x\r\n\r\nabc", headers={"content-type": "multipart/form-data"})
    assert no_boundary.status_code == 400 and "boundary" in no_boundary.json()["detail"], no_boundary.text
    deep = post(content=b"[" * 100_000 + b"]" * 100_000, headers={"content-type": "application/json"})
    assert deep.status_code == 400 and "nested" in deep.json()["detail"], deep.text
    big_json = post(content=b'{"image": "' + b"A" * (12 * 2**20) + b'"}', headers={"content-type": "application/json"})
    assert big_json.status_code == 413, big_json.text


def test_slow_clients_are_cut_off_and_the_connection_limit_answers_503():
    # Sockets that send half a request and stall (slowloris) must not stay open, nor starve others.
    server = Server("lenet", "--read-timeout", "2", "--max-connections", "4")
    stalled = []
    try:
        for i in range(4):
            sock = socket.create_connection(("127.0.0.1", server.port))
            # Half of them stop inside the headers, half inside a body they promised.
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n" if i % 2 else
                         b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
            stalled.append(sock)
        time.sleep(0.5)
        assert httpx.get(server.url + "/health", timeout=10).status_code == 503  # over the connection limit
        for sock in stalled:
            sock.settimeout(30)
            try:
                assert sock.recv(65536) == b""  # the server closed it: read timeout
            except ConnectionResetError:
                pass
        assert httpx.get(server.url + "/health", timeout=10).text == "ok"  # room again
    finally:
        for sock in stalled:
            sock.close()
        log = server.stop()
    assert "Traceback" not in log, log[-3000:]


def test_concurrent_clients_are_batched_and_each_gets_its_own_answer(lenet_server, images):
    from PIL import Image

    want = [p[0]["label"] for p in classify_images(zoo.load("lenet"), [Image.fromarray(a) for a in images], top_k=1)]

    def ask(array):
        r = httpx.post(lenet_server.url + "/predict", files={"image": ("i.png", _png(array), "image/png")}, timeout=60)
        assert r.status_code == 200, r.text
        return r.json()

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, images))
    assert [a["predictions"][0]["label"] for a in answers] == want
    assert max(a["batch_size"] for a in answers) > 1  # some requests shared a forward pass


def test_health_and_info(lenet_server):
    assert httpx.get(lenet_server.url + "/health").text == "ok"
    info = httpx.get(lenet_server.url + "/info").json()["model"]
    bundled = zoo.get_weights("lenet")
    assert info["name"] == "lenet" and info["sha256"] == bundled.sha256 and info["test_score"] == bundled.test_score
    assert info["preprocessing"]["input_size"] == 28 and info["preprocessing"]["photo_steps"]["auto_invert"] is True
    assert info["max_upload_mb"] == 10 and info["max_batch_size"] == 8


def test_the_detector_returns_boxes_in_pixels_from_an_unbatched_server(tmp_path):
    from zoo.detection.scenes import make_scenes

    from PIL import Image

    from zoo.predict import detect_image

    data = load_fashion_mnist()
    scenes, _ = make_scenes(data["test_images"], data["test_labels"], n=3, seed=3)
    # --max-batch-size 1: LitServe then hands predict one request, not a list (a path of its own).
    server = Server("tiny_ssd", "--max-batch-size", "1")
    try:
        with ThreadPoolExecutor(3) as pool:
            answers = list(pool.map(lambda s: httpx.post(server.url + "/predict", files={"image": ("s.png", _png(s[0].numpy()), "image/png")},
                                                         data={"min_score": "0.3"}, timeout=60), scenes))  # fmt: skip
    finally:
        log = server.stop()
    assert "Traceback" not in log
    model = zoo.load("tiny_ssd")
    for r, scene in zip(answers, scenes):
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["width"] == body["height"] == scene.shape[-1] and body["detections"] and body["batch_size"] == 1
        _, local = detect_image(model, Image.fromarray(scene[0].numpy()), min_score=0.3)  # what zoo predict reports
        assert [d["label"] for d in body["detections"]] == [d["label"] for d in local]
        for a, b in zip(body["detections"], local):
            assert max(abs(u - v) for u, v in zip(a["box"], b["box"])) <= 0.2


def test_a_missing_model_fails_in_one_line_before_serving():
    out = subprocess.run([sys.executable, "-m", "zoo", "serve", "no_such_model", "--port", str(_free_port())],
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 2 and out.stderr.strip().startswith("zoo: error:") and "Traceback" not in out.stderr


def test_a_missing_extra_names_its_install_command(tmp_path):
    # Packages of those names that cannot be imported stand in for ones that are not installed; one
    # process runs the four commands (zoo's main, as `python -m zoo` does).
    for name in ("litserve", "gradio", "tensorboard", "tensorboardX"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f'raise ImportError("No module named {name}")\n')
    commands = {
        "serve": ["serve", "lenet", "--port", str(_free_port())],
        "demo": ["demo", "--port", str(_free_port())],
        "tensorboard": ["train", "softmax", "--logger", "tensorboard", "--out", str(tmp_path / "runs")],
        "tensorboard ": ["finetune", "--data", str(tmp_path), "--logger", "tensorboard", "--out", str(tmp_path / "runs")],
    }  # extra -> command (the two tensorboard ones told apart by a space)
    script = ("import contextlib, io, json, sys\nfrom zoo.cli import main\nout = {}\n"
              "for extra, args in json.loads(sys.argv[1]).items():\n    err = io.StringIO()\n"
              "    with contextlib.redirect_stderr(err):\n        rc = main(args)\n    out[extra] = [rc, err.getvalue()]\n"
              "print(json.dumps(out))\n")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", script, json.dumps(commands)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    for extra, (rc, err) in json.loads(proc.stdout.splitlines()[-1]).items():
        assert rc == 2 and "Traceback" not in err, (extra, err[-2000:])
        assert f"pip install 'd2l-zoo[{extra.strip()}]'" in err, (extra, err)
    assert not (tmp_path / "runs").exists()  # said before a run folder is made
