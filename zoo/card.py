"""The model card of a checkpoint folder (its README.md): what the Hub shows, made from config.json."""

from __future__ import annotations

import json
from typing import Any

from .registry import get_spec

__all__ = ["model_card"]

_CARD = """
# d2l-zoo `{{ name }}`

{{ description }} From chapter {{ chapter }} of *Dive into Deep Learning* (https://d2l.ai), trained on
Fashion-MNIST with d2l-zoo.

| | |
|---|---|
| parameters | {{ params }} |
| input | {{ in_chans }} x {{ input_size }} x {{ input_size }}, normalised with mean {{ mean }}, std {{ std }} |
| Fashion-MNIST test {{ metric_name }} | {{ test_acc }} |
| validation {{ metric_name }} | {{ val_acc }} |
| recipe | `{{ recipe }}` |

{{ measured }}

```python
import torch, zoo
net = zoo.load("{{ name }}")          # eval mode, weights checked against their sha256
x = net.preprocess(pil_image)         # any size, gray or colour -> normalised batch
{{ usage }}
```
"""

# Per Hub pipeline tag: what the card's snippet does with the preprocessed batch ``x``.
_USAGE = {
    "image-classification": """with torch.no_grad():
    probs = net(x).softmax(-1)
print(net.label_names[int(probs.argmax())], float(probs.max()))""",
    "object-detection": """(found,) = net.detect(x)             # boxes (x0, y0, x1, y1) as fractions of the image's sides
for box, score, label in zip(found["boxes"], found["scores"], found["labels"]):
    if score >= 0.5:
        print(net.label_names[int(label)], round(float(score), 2), [round(float(v), 3) for v in box])""",
    "image-segmentation": """(labels,) = net.segment(x)           # a label per pixel of the model's input, 0 = background
for i in labels.unique().tolist():
    print(net.label_names[i], f"{float((labels == i).float().mean()):.1%} of the pixels")""",
}


# Per Hub pipeline tag: the data set's name and how the test score was measured.
_DATASET = {"image-classification": "Fashion-MNIST", "object-detection": "Fashion-MNIST scenes",
            "image-segmentation": "Fashion-MNIST scene label maps"}
_MEASURED = {
    "image-classification": "Measured on the official 10,000 test images with the final weights; model selection "
                            "only on the fixed 5,000-image validation split.",
    "object-detection": "Measured on 2,000 test scenes made only from the official test images, with the final weights.",
    "image-segmentation": "Mean IoU over background and the 10 classes, on the label maps of 2,000 test scenes made only "
                          "from the official test images, with the final weights.",
}  # fmt: skip
_HUB_METRIC = {"acc": "accuracy", "map50": "map_50", "mask_map50": "mask_map_50", "miou": "mean_iou"}


def model_card(config: dict[str, Any]) -> str:
    """The model card, through huggingface_hub's ModelCard (YAML front matter + model-index)."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    name = config["model"]
    spec = get_spec(name)
    cls = spec.model_class
    task = cls.hub_task
    key = f"test/{cls.score}"
    metric = _HUB_METRIC.get(cls.score, cls.score)
    test_acc = config["metrics"].get(key)
    eval_results = None
    if test_acc is not None:
        eval_results = [EvalResult(task_type=task, dataset_type="fashion_mnist", dataset_name=_DATASET[task],
                                   dataset_split="test", metric_type=metric, metric_value=float(test_acc))]  # fmt: skip
    data = ModelCardData(
        library_name="d2l-zoo",
        license="apache-2.0",
        tags=[task, "d2l", "fashion-mnist", name],
        datasets=["fashion_mnist"],
        pipeline_tag=task,
        model_name=f"d2l-zoo-{name}",
        eval_results=eval_results,
    )
    card = ModelCard.from_template(
        data,
        template_str="---\n{{ card_data }}\n---\n" + _CARD,
        name=name,
        description=spec.description,
        chapter=spec.chapter,
        params=f"{config['params']:,}",
        in_chans=config["in_chans"],
        input_size=config["input_size"],
        mean=[round(m, 4) for m in config["mean"]],
        std=[round(s, 4) for s in config["std"]],
        test_acc=f"{test_acc:.4f}" if test_acc is not None else "not measured",
        val_acc=f"{config['metrics'][key.replace('test', 'val')]:.4f}" if key.replace("test", "val") in config["metrics"] else "not measured",
        metric_name=cls.score_label,
        measured=_MEASURED[task],
        recipe=json.dumps(config["recipe"]),
        usage=_USAGE[task],
    )
    return str(card)
