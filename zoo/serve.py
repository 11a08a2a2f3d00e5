"""``zoo serve MODEL``: a trained model behind HTTP, on LitServe.

    POST /predict   an image, as multipart form data (one file part, any field name) or JSON ``{"image": "<base64>"}``;
                    optional ``top_k`` (classifiers) or ``min_score`` (detectors), in the form or the JSON
                    -> {"model", "predictions": [{"label", "probability"}]}  (classifiers)
                    -> {"model", "width", "height", "detections": [{"label", "score", "box"}]}  (detectors)
                    -> {"model", "width", "height", "labels": {label: share of the pixels}, "mask_png": base64}  (segmenters)
    GET  /health    "ok" once the model is loaded
    GET  /info      the model's metadata (name, sha256, test score, preprocessing, labels) and the server's settings

Requests from different clients are batched (``max_batch_size`` images, waiting at most
``batch_timeout`` seconds to fill a batch). A request that is not a readable image gets a 400
with the reason (an image over 64 megapixels is one: :mod:`zoo.data.images`); a body over
``max_upload_mb`` gets a 413 before it is read. A client that has not sent a whole request
``read_timeout`` seconds after it connected is cut off, and a request over ``max_connections``
open connections gets a 503 (:func:`connection_limits`). The preprocessing is
the model's own (``zoo.load(...).preprocess``, photo steps included), as in ``zoo predict``.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
from typing import Any

__all__ = ["ZooAPI", "build_server", "connection_limits", "model_metadata", "DEFAULT_MAX_UPLOAD_MB", "DEFAULT_READ_TIMEOUT",
           "DEFAULT_MAX_CONNECTIONS"]

#: The largest request body accepted, in MiB: a 12-megapixel JPEG is 3-8 MiB.
DEFAULT_MAX_UPLOAD_MB = 10

#: Seconds a client has to send a whole request (headers and body) once it has connected or begun
#: one: a 10 MiB upload at 3 Mbit/s takes 28 s. A connection still sending then is closed.
DEFAULT_READ_TIMEOUT = 30.0

#: Connections open at once; a request beyond them gets a 503 (uvicorn's ``limit_concurrency``).
DEFAULT_MAX_CONNECTIONS = 64

#: What a client should send, for every 400 and 415.
SEND_HOW = "send multipart/form-data with one image file (any field name: 'image', 'file'...), or JSON {\"image\": \"<base64 of the image file>\"}"

try:
    import litserve as ls
    from fastapi import HTTPException
except ImportError as err:  # the serve extra is optional
    raise ImportError("zoo serve needs LitServe: pip install 'd2l-zoo[serve]'") from err


def model_metadata(model: Any) -> dict[str, Any]:
    """What a client may want to know of a loaded model (JSON-ready): the same facts as
    ``zoo.get_weights``, for the weights actually served."""
    info = getattr(model, "checkpoint", None) or {}
    key = f"test/{model.score}"
    return {
        "name": model.model_name,
        "task": model.task,
        "source": info.get("source"),
        "sha256": info.get("sha256"),
        "test_score": (info.get("metrics") or {}).get(key),
        "score_label": model.score_label,
        "label_names": list(model.label_names),
        "preprocessing": {"input_size": model.input_size, "in_chans": model.in_chans, "mean": list(model.mean),
                          "std": list(model.std), "photo_steps": model.preprocess.steps.to_dict()},  # fmt: skip
    }


class ZooAPI(ls.LitAPI):
    """The LitServe API of one zoo model: decode an image, batch, predict, encode.

    Args:
        model: a name or path for :func:`zoo.load` (loaded in ``setup``, once per worker).
        top_k: classes returned per image unless the request asks for another number.
        min_score: detectors: the lowest score returned unless the request asks otherwise.
        photo_steps: steps to switch off (names of :class:`~zoo.data.preprocess.PhotoSteps` fields).
        trust_unverified: load a folder whose config.json records no sha256.
        max_batch_size, batch_timeout: LitServe's batching across requests.
    """

    def __init__(self, model: str, *, top_k: int = 5, min_score: float = 0.5, steps_off: tuple[str, ...] = (),
                 trust_unverified: bool = False, max_batch_size: int = 16, batch_timeout: float = 0.01) -> None:  # fmt: skip
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout)
        self.model_ref, self.top_k, self.min_score = model, top_k, min_score
        self.steps_off, self.trust_unverified = tuple(steps_off), trust_unverified

    def setup(self, device: str) -> None:
        import torch

        from .pretrained import load

        torch.set_grad_enabled(False)  # serving never trains; set here, in the worker process
        self.model = load(self.model_ref, device=device, trust_unverified=self.trust_unverified)
        self.model.preprocess = self.model.preprocess.without(*self.steps_off)

    # ------------------------------------------------------------------------------- one request
    def decode_request(self, request) -> dict[str, Any]:  # no annotation: LitServe then hands over the parsed body
        from .predict import read_image

        if hasattr(request, "getlist"):  # multipart or url-encoded form: one file part, under any field name
            uploads = [value for _, value in request.multi_items() if hasattr(value, "file")]
            if not uploads:
                raise HTTPException(400, "no image file in the form: " + SEND_HOW)
            if len(uploads) > 1:
                raise HTTPException(400, f"send one image file a request, got {len(uploads)}: " + SEND_HOW)
            data, options = uploads[0].file.read(), request
        elif isinstance(request, dict):
            encoded = request.get("image")
            if not isinstance(encoded, str):
                raise HTTPException(400, "no 'image' in the JSON: " + SEND_HOW)
            try:
                data = base64.b64decode(encoded.split(",", 1)[-1] if encoded.startswith("data:") else encoded, validate=True)
            except (binascii.Error, ValueError):
                raise HTTPException(400, "'image' is not valid base64") from None
            options = request
        else:
            raise HTTPException(400, SEND_HOW)
        reasons: list[str] = []
        img = read_image(io.BytesIO(data), lambda _, why: reasons.append(why), name="upload")
        if img is None:
            raise HTTPException(400, f"cannot read the image: {reasons[0] if reasons else 'unknown format'}")
        return {"image": img, "top_k": _number(options, "top_k", int, self.top_k, low=1),
                "min_score": _number(options, "min_score", float, self.min_score, low=0.0)}  # fmt: skip

    def batch(self, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return inputs  # images of any size: preprocess stacks them in predict

    def predict(self, inputs: list[dict[str, Any]] | dict[str, Any]) -> list[dict[str, Any]] | dict[str, Any]:
        if isinstance(inputs, dict):  # max_batch_size 1: LitServe hands over one request, unbatched
            return self._predict([inputs])[0]
        return self._predict(inputs)

    def _predict(self, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from .predict import classify_images, detect_image, segment_image

        n = len(inputs)
        if self.model.task == "segmentation":
            outputs = []
            for item in inputs:
                mask, shares = segment_image(self.model, item["image"])
                png = io.BytesIO()
                mask.save(png, format="PNG")
                outputs.append({"width": mask.width, "height": mask.height, "labels": shares,
                                "mask_png": base64.b64encode(png.getvalue()).decode(), "batch_size": n})  # fmt: skip
            return outputs
        if self.model.task == "detection":
            outputs = []
            for item in inputs:
                drawn, found = detect_image(self.model, item["image"], min_score=item["min_score"])  # drawn: the upright image
                outputs.append({"width": drawn.width, "height": drawn.height, "detections": found, "batch_size": n})
            return outputs
        top = max(item["top_k"] for item in inputs)
        ranked = classify_images(self.model, [item["image"] for item in inputs], top_k=top)
        return [{"predictions": r[: item["top_k"]], "batch_size": n} for r, item in zip(ranked, inputs)]

    def unbatch(self, output: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return output

    def encode_response(self, output: dict[str, Any]) -> dict[str, Any]:
        # batch_size: how many requests shared this forward pass (what --max-batch-size tunes).
        return {"model": self.model.model_name, **output}


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0  # not a number at all: kind() below says so


def _number(options: Any, key: str, kind: type, default: Any, *, low: float) -> Any:
    value = options.get(key) if hasattr(options, "get") else None
    if value is None:
        return default
    # A finite number first: JSON may carry NaN, Infinity or 1e999, which int() cannot take and a
    # comparison with NaN lets through.
    if isinstance(value, bool) or (isinstance(value, (int, float, str)) and not math.isfinite(_as_float(value))):
        raise HTTPException(400, f"{key} must be a finite number, got {value!r}")
    try:
        number = kind(value)
    except (TypeError, ValueError, OverflowError):
        raise HTTPException(400, f"{key} must be a{'n integer' if kind is int else ' number'}, got {value!r}") from None
    if number < low:
        raise HTTPException(400, f"{key} must be at least {low}, got {value!r}")
    return number


class RequestCheck:
    """ASGI middleware: a POST to the predict path must be a form with a boundary or valid JSON
    within the size limit. Anything else gets a 413, 415 or 400 that says what to send (LitServe
    would answer 500 after logging a traceback)."""

    FORMS = ("multipart/form-data", "application/x-www-form-urlencoded")

    def __init__(self, app: Any, path: str = "/predict", max_bytes: int | None = None) -> None:
        self.app, self.path, self.max_bytes = app, path, max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self.path:
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        ctype, _, params = headers.get(b"content-type", b"").decode("latin-1").partition(";")
        ctype = ctype.strip().lower()
        if ctype == "multipart/form-data" and "boundary=" not in params.lower():
            return await _reply(scope, receive, send, 400, "multipart/form-data without a boundary: " + SEND_HOW)
        if ctype in self.FORMS:
            return await self.app(scope, receive, send)
        if ctype != "application/json":
            return await _reply(scope, receive, send, 415, f"content type {ctype or 'none'!r}: " + SEND_HOW)
        body = await self._read(receive)
        if body is None:
            limit = f" of {self.max_bytes:,} bytes" if self.max_bytes is not None else ""
            return await _reply(scope, receive, send, 413, f"the body is over the server's upload limit{limit}")
        try:
            json.loads(body)
        except RecursionError:
            return await _reply(scope, receive, send, 400, "the JSON is nested too deeply: " + SEND_HOW)
        except ValueError:
            return await _reply(scope, receive, send, 400, "the body is not valid JSON: " + SEND_HOW)
        sent = False

        async def replay() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    async def _read(self, receive: Any) -> bytes | None:
        """The whole body, or None once it passes ``max_bytes`` (not read further)."""
        from starlette.exceptions import HTTPException as Refused

        chunks, size, more = [], 0, True
        while more:
            try:
                message = await receive()
            except Refused as err:  # LitServe's size check, outside this middleware, counts first
                if err.status_code == 413:
                    return None
                raise
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if self.max_bytes is not None and size > self.max_bytes:
                return None
            more = message.get("more_body", False)
        return b"".join(chunks)



async def _reply(scope: dict, receive: Any, send: Any, status: int, detail: str) -> None:
    from starlette.responses import JSONResponse

    await JSONResponse({"detail": detail}, status_code=status)(scope, receive, send)


def build_server(model: Any, api: ZooAPI, *, accelerator: str = "cpu", workers: int = 1,
                 max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, timeout: float = 30.0) -> "ls.LitServer":  # fmt: skip
    """The LitServer for ``api``; ``model`` (loaded in this process) gives /info its metadata."""
    return ls.LitServer(api, accelerator=accelerator, devices=1, workers_per_device=workers, timeout=timeout,
                        model_metadata={**model_metadata(model), "max_batch_size": api.max_batch_size,
                                        "max_upload_mb": max_upload_mb},
                        max_payload_size=int(max_upload_mb * 1024 * 1024),
                        middlewares=[(RequestCheck, {"path": api.api_path, "max_bytes": int(max_upload_mb * 1024 * 1024)})])  # fmt: skip


def connection_limits(*, read_timeout: float | None = None, max_connections: int | None = None) -> dict[str, Any]:
    """uvicorn settings (for ``LitServer.run``) that keep slow or many clients from holding the
    server: a request must arrive whole within ``read_timeout`` seconds, and at most
    ``max_connections`` connections are served at once (a request beyond them gets a 503)."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class ReadDeadline(HttpToolsProtocol):
        """Closes a connection that has not sent a whole request ``read_timeout`` seconds after it
        connected or began one (uvicorn times out only idle keep-alive connections)."""

        timeout = read_timeout or DEFAULT_READ_TIMEOUT

        def connection_made(self, transport: Any) -> None:
            self.deadline = None
            super().connection_made(transport)
            self._arm()

        def _arm(self) -> None:
            self._disarm()
            self.deadline = self.loop.call_later(self.timeout, self._expire)

        def _disarm(self) -> None:
            if self.deadline is not None:
                self.deadline.cancel()
                self.deadline = None

        def _expire(self) -> None:
            self.deadline = None
            if not self.transport.is_closing():
                self.transport.close()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._disarm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return {"http": ReadDeadline, "limit_concurrency": max_connections or DEFAULT_MAX_CONNECTIONS}

