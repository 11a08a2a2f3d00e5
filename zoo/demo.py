"""``zoo demo``: try the zoo's models in a web page (Gradio).

Pick any model that has weights, upload an image or draw one, and see the top-5 classes (a
classifier) or the scene with its boxes (the detector). A gallery holds real Fashion-MNIST test
images, and a toggle shows the input the network actually sees (28x28 or 96x96, after the photo
steps). The predictions come from :func:`zoo.predict.classify_images` and
:func:`zoo.predict.detect_image`, the code behind ``zoo predict`` and ``zoo serve``.
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path
from typing import Any

# No usage statistics or version checks from a demo that may run offline.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

try:
    import gradio as gr
except ImportError as err:  # the demo extra is optional
    raise ImportError("zoo demo needs Gradio: pip install 'd2l-zoo[demo]'") from err

from PIL import Image

__all__ = ["build_demo", "launch", "models_with_weights", "predict", "network_input"]

DEFAULT_MODEL = "lenet_bn"


def models_with_weights() -> list[str]:
    """The registered models whose trained weights can be loaded here (bundled or trained locally)."""
    from .pretrained import get_weights
    from .registry import list_models

    return [name for name in list_models() if get_weights(name).location in ("bundled", "store")]


@functools.lru_cache(maxsize=4)
def _model(name: str, steps_off: tuple[str, ...]) -> Any:
    from .pretrained import load

    model = load(name)
    model.preprocess = model.preprocess.without(*steps_off)
    return model


def network_input(model: Any, image: Image.Image, *, display: int = 280) -> Image.Image:
    """What the network sees of ``image``: its preprocessed input, un-normalised, enlarged with
    nearest-neighbour so that each input pixel shows as a square."""
    import torch

    x = model.preprocess(image)[0]
    mean, std = torch.tensor(model.mean).view(-1, 1, 1), torch.tensor(model.std).view(-1, 1, 1)
    pixels = ((x * std + mean).clamp(0, 1) * 255).round().to(torch.uint8)
    seen = Image.fromarray(pixels[0].numpy() if pixels.shape[0] == 1 else pixels.permute(1, 2, 0).numpy())
    return seen.resize((display, display), Image.Resampling.NEAREST)


def predict(model: Any, image: Image.Image) -> tuple[dict[str, float], Image.Image | None]:
    """(label -> probability of the top 5, detection -> score, or label -> share of the pixels;
    the image with boxes (detectors) or the coloured mask (segmenters), else None)."""
    from .predict import classify_images, detect_image, segment_image

    if model.task == "detection":
        drawn, found = detect_image(model, image, min_score=0.5)
        return {f"{d['label']} at {[round(v) for v in d['box']]}": d["score"] for d in found}, drawn
    if model.task == "segmentation":
        mask, shares = segment_image(model, image)
        return shares, mask
    (top,) = classify_images(model, [image], top_k=5)
    return {p["label"]: p["probability"] for p in top}, None


def _on_white(sketch: Any) -> Image.Image | None:
    """The sketchpad's drawing as the user sees it: dark strokes on a white canvas (its transparent
    background would otherwise be composited over black, hiding black strokes)."""
    composite = sketch.get("composite") if isinstance(sketch, dict) else sketch
    if composite is None:
        return None
    rgba = composite.convert("RGBA")
    if rgba.getextrema()[3][1] == 0:  # nothing drawn yet
        return None
    return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")


def _examples(folder: Path) -> list[str]:
    """One real Fashion-MNIST test image of each class, written as PNG files for the gallery."""
    from .data.fashion_mnist import CLASSES, load_fashion_mnist

    data = load_fashion_mnist()
    paths = []
    for c, name in enumerate(CLASSES):
        i = int((data["test_labels"] == c).nonzero()[0])
        path = folder / f"{i:05d}-{name.replace('/', '_').replace(' ', '_').lower()}.png"
        Image.fromarray(data["test_images"][i].numpy()).save(path)
        paths.append(str(path))
    return paths


def build_demo(*, default_model: str | None = None, steps_off: tuple[str, ...] = ()) -> "gr.Blocks":
    """The Gradio app; ``steps_off``: photo steps to switch off (``zoo demo --no-crop`` ...)."""
    models = models_with_weights()
    if not models:
        raise ValueError("no model has weights here: train one first (zoo train lenet)")
    default = default_model or (DEFAULT_MODEL if DEFAULT_MODEL in models else models[0])
    if default not in models:
        raise ValueError(f"{default!r} has no weights here; models with weights: {', '.join(models)}")
    examples = _examples(Path(tempfile.mkdtemp(prefix="zoo-demo-")))

    def run(name: str, image: Any, sketch: Any, source: str, show: bool) -> tuple[Any, Any, Any]:
        img = _on_white(sketch) if source == "sketch" else image
        if img is None:
            img = image if image is not None else _on_white(sketch)
        if img is None:
            return None, gr.update(value=None, visible=False), gr.update(value=None, visible=False)
        model = _model(name, tuple(steps_off))
        scores, drawn = predict(model, img)
        seen = network_input(model, img) if show else None
        return scores, gr.update(value=drawn, visible=drawn is not None), gr.update(value=seen, visible=show)

    with gr.Blocks(title="d2l-zoo demo") as demo:
        gr.Markdown("# d2l-zoo\nThe networks of *Dive into Deep Learning*, trained on Fashion-MNIST. Upload a photo of a "
                    "garment, draw one, or pick a test image below.")  # fmt: skip
        source = gr.State("image")
        with gr.Row():
            with gr.Column():
                model = gr.Dropdown(models, value=default, label="Model")
                with gr.Tab("Upload"):
                    image = gr.Image(type="pil", label="Image", sources=["upload", "clipboard"], height=280, elem_id="zoo-image")
                with gr.Tab("Draw"):
                    sketch = gr.Sketchpad(type="pil", label="Draw an item", canvas_size=(280, 280), elem_id="zoo-sketch")
                show = gr.Checkbox(label="Show what the network sees", value=False, elem_id="zoo-show-input")
                button = gr.Button("Predict", variant="primary", elem_id="zoo-predict")
                gr.Examples(examples=[[p] for p in examples], inputs=image, label="Fashion-MNIST examples (real test images)")
            with gr.Column():
                scores = gr.Label(num_top_classes=5, label="Top 5", elem_id="zoo-scores")
                boxes = gr.Image(label="Detections / mask", visible=False, interactive=False, elem_id="zoo-boxes")
                seen = gr.Image(label="What the network sees", visible=False, interactive=False, elem_id="zoo-seen")
        inputs, outputs = [model, image, sketch, source, show], [scores, boxes, seen]
        image.change(lambda: "image", None, source).then(run, inputs, outputs)
        sketch.change(lambda: "sketch", None, source).then(run, inputs, outputs)
        for trigger in (button.click, model.change, show.change):
            trigger(run, inputs, outputs)
    return demo


def launch(*, host: str = "127.0.0.1", port: int = 7860, default_model: str | None = None,
           steps_off: tuple[str, ...] = (), quiet: bool = True) -> None:  # fmt: skip
    """Build the demo and serve it until Ctrl+C."""
    app = build_demo(default_model=default_model, steps_off=steps_off)
    # The system's fonts: the default theme would fetch Google's, which an offline browser cannot.
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
    print(f"zoo demo on http://{host}:{port}; Ctrl+C stops", flush=True)
    app.launch(server_name=host, server_port=port, quiet=quiet, show_error=True, theme=theme)
