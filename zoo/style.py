"""Neural style transfer (ch. 14.12), as the book does it: the synthesised image is the only
parameter, and Adam moves its pixels so that a frozen network sees the content image's features in
it (content loss), the style image's Gram matrices (style loss), and little pixel noise (total
variation). ``zoo stylize CONTENT STYLE --out result.png`` runs it; :func:`stylize` is the same
from Python.

The feature network (:func:`feature_net`): the book's ImageNet VGG-19 cannot be downloaded here, so

- ``vgg19-random``: VGG-19's convolutions built from the zoo's ``vgg_block``s, with seeded random
  weights (random-weight networks are competitive for texture synthesis and style transfer: He et
  al., NeurIPS 2016; Ustyuzhaninov et al., ICLR 2017);
- a zoo classifier's name (``resnet18``...): its trained stages, ``zoo.load(name, features_only=True,
  in_chans=3)``;
- ``timm:vgg19`` with ``timm_weights=FILE``: timm's VGG-19 with ImageNet weights already on disk.

VGGs are read at the book's layers (style: the first convolution of each block; content: the last
of the fourth); a zoo classifier at every stage (style) and its stride-8 stage (content).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

__all__ = ["StyleTransfer", "FeatureNet", "feature_net", "stylize", "load_image", "sample_image", "SAMPLE_PAIRS", "gram", "content_loss", "style_loss", "tv_loss",
           "FEATURE_NETS", "DEFAULT_FEATURES", "DEFAULT_STEPS", "DEFAULT_LR", "VGG19_ARCH"]  # fmt: skip

#: (3x3 convolutions, channels) per block of VGG-19.
VGG19_ARCH = ((2, 64), (2, 128), (4, 256), (4, 512), (4, 512))
#: The book's layers of ``vgg19.features``: style at conv1_1, conv2_1, conv3_1, conv4_1, conv5_1; content at conv4_4.
BOOK_STYLE_LAYERS = (0, 5, 10, 19, 28)
BOOK_CONTENT_LAYERS = (25,)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
#: The feature networks by name; a zoo classifier's name and "timm:<vgg>" are accepted too.
FEATURE_NETS = ("vgg19-random",)
DEFAULT_FEATURES = "vgg19-random"
#: Adam steps of a run: the book's schedule (lr x 0.8 every 50 steps), cut to fit 2 CPU minutes at 256 px.
DEFAULT_STEPS = 100
#: Adam's learning rate on the (normalised) pixels: the book's 0.3 washes the content out within
#: 100 steps on the random VGG; 0.05 keeps it (docs/style.md).
DEFAULT_LR = 0.05


# ---------------------------------------------------------------------------------- the book's losses
def gram(x: torch.Tensor) -> torch.Tensor:
    """The Gram matrix of one image's feature maps (1, c, h, w), normalised by c * h * w."""
    c, n = x.shape[1], x.numel() // x.shape[1]
    x = x.reshape(c, n)
    return x @ x.T / (c * n)


def content_loss(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.square(y_hat - y.detach()).mean()


def style_loss(y_hat: torch.Tensor, gram_y: torch.Tensor) -> torch.Tensor:
    return torch.square(gram(y_hat) - gram_y.detach()).mean()


def tv_loss(y_hat: torch.Tensor) -> torch.Tensor:
    """Total variation: the mean absolute difference of neighbouring pixels, down and across."""
    return 0.5 * ((y_hat[:, :, 1:, :] - y_hat[:, :, :-1, :]).abs().mean() + (y_hat[:, :, :, 1:] - y_hat[:, :, :, :-1]).abs().mean())


# ---------------------------------------------------------------------------------- feature networks
class FeatureNet(nn.Module):
    """A frozen network as style transfer reads it: ``forward(x)`` -> (content maps, style maps).

    Args:
        layers: a module whose forward returns a list of feature maps (``taps``).
        content, style: indices into that list.
        mean, std: the RGB normalisation the network expects (images in [0, 1]).
        name: what it is called on the command line.
    """

    def __init__(self, layers: nn.Module, *, content: Sequence[int], style: Sequence[int], mean: Sequence[float],
                 std: Sequence[float], name: str) -> None:  # fmt: skip
        super().__init__()
        self.taps, self.content, self.style, self.name = layers.eval().requires_grad_(False), list(content), list(style), name
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1))

    def train(self, mode: bool = True) -> "FeatureNet":
        return super().train(False)  # frozen: BatchNorm statistics and dropout never change

    def normalise(self, image: torch.Tensor) -> torch.Tensor:
        return (image - self.mean) / self.std

    def denormalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.std + self.mean).clamp(0, 1)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        maps = self.taps(x)
        return [maps[i] for i in self.content], [maps[i] for i in self.style]


class _SequentialTaps(nn.Module):
    """The outputs of the given layers of ``seq`` (stops after the last one)."""

    def __init__(self, seq: nn.Sequential, indices: Sequence[int]) -> None:
        super().__init__()
        self.indices = sorted(set(indices))
        self.layers = nn.Sequential(*list(seq.children())[: self.indices[-1] + 1])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i in self.indices:
                out.append(x)
        return out


def _book_vgg(features: nn.Sequential, name: str) -> FeatureNet:
    taps = _SequentialTaps(features, BOOK_STYLE_LAYERS + BOOK_CONTENT_LAYERS)
    where = {layer: i for i, layer in enumerate(taps.indices)}
    return FeatureNet(taps, content=[where[i] for i in BOOK_CONTENT_LAYERS], style=[where[i] for i in BOOK_STYLE_LAYERS],
                      mean=IMAGENET_MEAN, std=IMAGENET_STD, name=name)  # fmt: skip


def random_vgg19(seed: int = 0) -> nn.Sequential:
    """VGG-19's convolutions (3 channels in), from the zoo's ``vgg_block``, with He-normal random
    weights drawn from ``seed`` (variance kept through the depth, so every layer's Gram matrix
    counts) and zero biases; its layers are numbered as ``torchvision``'s ``vgg19().features``."""
    from .models.vgg import vgg_block

    blocks, channels = [], 3
    for num_convs, width in VGG19_ARCH:
        blocks.append(vgg_block(num_convs, channels, width))
        channels = width
    seq = nn.Sequential(*[layer for block in blocks for layer in block])
    gen = torch.Generator().manual_seed(seed)
    for m in seq.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * math.sqrt(2.0 / fan_in))
                m.bias.zero_()
    return seq


def _timm_vgg(name: str, weights: str | Path | None) -> FeatureNet:
    if weights is None:
        raise ValueError(f"--features timm:{name} needs --timm-weights FILE (ImageNet weights on disk; nothing is downloaded)")
    if not name.startswith("vgg"):
        raise ValueError(f"timm:{name}: only timm's VGGs are read at the book's layers (timm:vgg19)")
    import timm

    model = timm.create_model(name, pretrained=False)
    state = _read_weights(Path(weights))
    missing = [k for k in model.load_state_dict(state, strict=False).missing_keys if k.startswith("features.")]
    if missing:
        raise ValueError(f"{weights} is not a {name} state dict: it lacks {len(missing)} of its convolution weights ({missing[0]}, ...)")
    return _book_vgg(model.features, f"timm:{name}")


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a .safetensors file, or a torch file read with ``weights_only=True`` (never
    unpickled code); one line when it is neither."""
    if not path.is_file():
        raise FileNotFoundError(f"--timm-weights {path}: no such file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # safetensors' error, pickle's, a truncated zip: all say "not weights"
        raise ValueError(f"--timm-weights {path}: not a readable weights file ({type(err).__name__}: {err})") from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"--timm-weights {path}: holds no state dict of tensors")
    return state


def _zoo_classifier(name: str) -> FeatureNet:
    from .pretrained import load

    extractor = load(name, features_only=True, in_chans=3)
    reductions = extractor.reductions()
    if len(reductions) < 2 or reductions[0] is None:
        raise ValueError(f"--features {name}: it has no convolutional stages to read style from")
    content = min(range(len(reductions)), key=lambda i: abs(math.log2(reductions[i] / 8)))
    return FeatureNet(extractor, content=[content], style=list(range(len(reductions))), mean=extractor.mean,
                      std=extractor.std, name=name)  # fmt: skip


def feature_net(spec: str = DEFAULT_FEATURES, *, seed: int = 0, timm_weights: str | Path | None = None) -> FeatureNet:
    """The frozen network style transfer reads: "vgg19-random" (drawn from ``seed``), a zoo
    classifier's name (its trained weights), or "timm:vgg19" with ``timm_weights``."""
    from .registry import get_spec, list_models

    if timm_weights is not None and not spec.startswith("timm:"):
        raise ValueError(f"--timm-weights is for --features timm:<name>, not {spec!r}")
    if spec == "vgg19-random":
        return _book_vgg(random_vgg19(seed), spec)
    if spec.startswith("timm:"):
        return _timm_vgg(spec[len("timm:"):], timm_weights)
    if spec in list_models() and get_spec(spec).task == "classification":
        return _zoo_classifier(spec)
    classifiers = [n for n in list_models() if get_spec(n).task == "classification"]
    raise ValueError(f"unknown feature network {spec!r}: use {', '.join(FEATURE_NETS)}, timm:vgg19, or a zoo classifier "
                     f"({', '.join(classifiers)})")  # fmt: skip


# ---------------------------------------------------------------------------------- the module
class StyleTransfer(L.LightningModule):
    """The book's style transfer as a LightningModule: ``image`` (the synthesised image, in the
    feature network's normalised space, starting from the content image) is its only parameter.

    Args:
        content, style: (3, H, W) float images in [0, 1]; the style image is resized to the content's size.
        features: the frozen :class:`FeatureNet`.
        content_weight, style_weight, tv_weight: the book's 1, 1e4 and 10.
        lr, lr_decay_steps, lr_gamma: Adam on the pixels, times 0.8 every 50 steps as in the book
            (whose 0.3 loses the content in 100 steps on random features: docs/style.md).
    """

    def __init__(self, *, content: torch.Tensor, style: torch.Tensor, features: FeatureNet, content_weight: float = 1.0,
                 style_weight: float = 1e4, tv_weight: float = 10.0, lr: float = DEFAULT_LR, lr_decay_steps: int = 50,
                 lr_gamma: float = 0.8) -> None:  # fmt: skip
        super().__init__()
        for name, value in (("content_weight", content_weight), ("style_weight", style_weight), ("tv_weight", tv_weight)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr must be a positive number, got {lr}")
        self.weights = {"content": content_weight, "style": style_weight, "tv": tv_weight}
        self.lr, self.lr_decay_steps, self.lr_gamma = lr, lr_decay_steps, lr_gamma
        self.features = features
        style = F.interpolate(style[None], size=content.shape[-2:], mode="bilinear", antialias=True, align_corners=False)
        x_content, x_style = features.normalise(content[None]), features.normalise(style)
        with torch.no_grad():
            content_y, _ = features(x_content)
            _, style_y = features(x_style)
        for i, y in enumerate(content_y):
            self.register_buffer(f"content_y{i}", y)
        for i, y in enumerate(style_y):
            self.register_buffer(f"style_gram{i}", gram(y))
        self.image = nn.Parameter(x_content.clone())

    def distances(self) -> dict[str, torch.Tensor]:
        """The three unweighted losses of the current image: content, style and total variation."""
        content_y, style_y = self.features(self.image)
        return {
            "content": sum(content_loss(y, getattr(self, f"content_y{i}")) for i, y in enumerate(content_y)),
            "style": sum(style_loss(y, getattr(self, f"style_gram{i}")) for i, y in enumerate(style_y)),
            "tv": tv_loss(self.image),
        }

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        d = self.distances()
        loss = sum(self.weights[k] * v for k, v in d.items())
        self.log("loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self) -> Any:
        opt = torch.optim.Adam([self.image], lr=self.lr)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=self.lr_decay_steps, gamma=self.lr_gamma)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def train_dataloader(self) -> DataLoader:
        # Nothing to load: each step only needs the image. One item per step of the run, so that
        # a Trainer(max_steps=N) runs one epoch of N steps.
        steps = self.trainer.max_steps if self._trainer is not None and self.trainer.max_steps > 0 else 1
        return DataLoader(range(steps), batch_size=1)

    @torch.no_grad()
    def result(self) -> torch.Tensor:
        """The synthesised image, (3, H, W) in [0, 1]."""
        return self.features.denormalise(self.image.detach().float())[0].cpu()


def stylize(content: Any, style: Any, *, steps: int = DEFAULT_STEPS, size: int = 256, features: str | FeatureNet = DEFAULT_FEATURES,
            content_weight: float = 1.0, style_weight: float = 1e4, tv_weight: float = 10.0, lr: float = DEFAULT_LR, seed: int = 0,
            timm_weights: str | Path | None = None, accelerator: str = "auto", precision: str = "32-true",
            progress_bar: bool = True) -> tuple[Any, dict[str, float]]:  # fmt: skip
    """``content`` in the style of ``style`` (PIL images or paths), ``size`` px on its long side.

    Returns the result (a PIL RGB image) and the distances before and after
    ("content", "style", "tv", each with a "start_" twin) and the seconds it took.
    """
    import time
    import warnings

    from .callbacks import progress_bar as quiet_progress_bar
    from .runtime import seed_all

    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if not isinstance(size, int) or not 16 <= size <= 4096:
        raise ValueError(f"size must be an integer from 16 to 4096 pixels, got {size!r}")
    seed_all(seed)
    net = features if isinstance(features, FeatureNet) else feature_net(features, seed=seed, timm_weights=timm_weights)
    module = StyleTransfer(content=load_image(content, size), style=load_image(style, size), features=net,
                           content_weight=content_weight, style_weight=style_weight, tv_weight=tv_weight, lr=lr)  # fmt: skip
    with torch.no_grad():
        start = {f"start_{k}": float(v) for k, v in module.distances().items()}
    trainer = L.Trainer(max_steps=steps, max_epochs=1, accelerator=accelerator, devices=1, precision=precision, logger=False,
                        enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=progress_bar,
                        callbacks=[quiet_progress_bar()] if progress_bar else [])  # fmt: skip
    began = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode")  # the frozen network, on purpose
        trainer.fit(module)
    seconds = time.perf_counter() - began
    module = module.cpu().float()
    with torch.no_grad():
        end = {k: float(v) for k, v in module.distances().items()}
    from PIL import Image

    pixels = (module.result().permute(1, 2, 0).numpy() * 255).round().astype("uint8")
    return Image.fromarray(pixels, "RGB"), {**start, **end, "seconds": round(seconds, 2), "steps": steps}


#: Content | style pairs of real photos and textures that ship with scikit-image (the stylize extra).
SAMPLE_PAIRS = (("astronaut", "gravel"), ("chelsea", "immunohistochemistry"), ("coffee", "brick"))


def sample_image(name: str) -> Any:
    """One of scikit-image's photos or textures (``skimage.data.<name>``) as a PIL RGB image."""
    try:
        from skimage import data
    except ImportError as err:
        from .runtime import MissingExtraError

        raise MissingExtraError(f"the sample photos come from scikit-image: pip install 'd2l-zoo[stylize]' ({err})") from None
    if not callable(getattr(data, name, None)) or name.startswith("_"):
        raise ValueError(f"skimage.data has no image {name!r}")
    from PIL import Image

    return Image.fromarray(getattr(data, name)()).convert("RGB")


def load_image(image: Any, size: int) -> torch.Tensor:
    """A PIL image or a path -> (3, H, W) float in [0, 1], its long side ``size`` px (EXIF
    orientation applied; an unreadable file is a ValueError naming it)."""
    from PIL import Image, ImageOps
    from torchvision.transforms.functional import pil_to_tensor

    if not isinstance(image, Image.Image):
        from .predict import read_image

        def refuse(name: str, why: str) -> None:
            raise ValueError(f"{name}: {why}")

        image = read_image(str(image), refuse)
    image = ImageOps.exif_transpose(image).convert("RGB")
    scale = size / max(image.size)
    image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.LANCZOS)
    return pil_to_tensor(image).float() / 255
