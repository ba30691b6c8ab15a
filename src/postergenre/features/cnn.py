"""``cnn``: the pooled penultimate embedding of an ImageNet CNN (torchvision's ImageNet weights).

Or of a backbone fine-tuned on posters by ``postergenre finetune`` (``finetuned``: the
sha256 of its safetensors file, the backbone's identity, recorded in store manifests and
model bundles like the rest of the config; see :mod:`postergenre.finetune.artifact`).

A poster (about 2:3) is fitted to the network input in one of four ways:
``squash`` (resize to the square, aspect lost), ``crop`` (shorter side to the square,
centre crop: the top and bottom of the poster are lost), ``pad`` (longer side to the
square, the rest filled with the ImageNet mean colour) or ``tall`` (a 2:3 portrait input,
``input_size`` wide and 1.5 times as tall, the poster fitted into it, aspect kept, and
padded like ``pad``: the convolutions and the global pooling take any shape, so the poster
fills the input instead of two thirds of a square). The default was chosen by
``benchmarks/cnn_fit.py`` among the square modes and by
``benchmarks/generalization.py`` for ``tall``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from postergenre.errors import ConfigError
from postergenre.features.base import Extractor, check_rgb

if TYPE_CHECKING:
    import torch

#: backbone -> embedding width (the channels of its last conv feature map).
BACKBONES: dict[str, int] = {
    "mobilenet_v2": 1280,
    "resnet18": 512,
    "resnet34": 512,
    "resnet50": 2048,
    "efficientnet_lite0": 1280,
    "efficientnet_lite2": 1280,
}
#: backbone -> the square input size it was trained at (the default ``input_size``).
NATIVE_SIZE: dict[str, int] = {
    "mobilenet_v2": 224,
    "resnet18": 224,
    "resnet34": 224,
    "resnet50": 224,
    "efficientnet_lite0": 224,
    "efficientnet_lite2": 260,
}
#: backbone -> the backbones ``CNNConfig.also`` joins to it by default.
DEFAULT_ALSO: dict[str, tuple[str, ...]] = {"mobilenet_v2": ("efficientnet_lite2",)}
FIT_MODES: tuple[str, ...] = ("squash", "crop", "pad", "tall")
#: backbone -> (where, channels) of the intermediate feature maps whose per-channel mean and
#: standard deviation are the ``style`` features: the last block of each resolution stage
#: below the final one (mobilenet_v2: ``features[i]``; resnets: ``layerN``).
STYLE_TAPS: dict[str, tuple[tuple[str, int], ...]] = {
    "mobilenet_v2": (("6", 32), ("10", 64), ("13", 96), ("16", 160)),
    "resnet18": (("layer1", 64), ("layer2", 128), ("layer3", 256)),
    "resnet34": (("layer1", 64), ("layer2", 128), ("layer3", 256)),
    "resnet50": (("layer1", 256), ("layer2", 512), ("layer3", 1024)),
}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: ``pad`` fills with the mean colour, which normalises to zero: the padding adds no signal.
_PAD_RGB = tuple(int(round(255 * m)) for m in IMAGENET_MEAN)


def normalisation(backbone: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) per RGB channel, on a 0..1 scale, that ``backbone``'s weights expect:
    torchvision's ImageNet statistics, or [-1, 1] for the EfficientNet-Lite files."""
    if backbone.startswith("efficientnet_lite"):
        from postergenre.features.efficientnet_lite import MEAN, STD

        return MEAN, STD
    return IMAGENET_MEAN, IMAGENET_STD


def pad_colour(backbone: str) -> tuple[int, ...]:
    """The RGB fill of ``pad`` and ``tall`` for ``backbone``: its mean colour, which
    normalises to zero."""
    return tuple(int(round(255 * m)) for m in normalisation(backbone)[0])


@dataclass(frozen=True)
class CNNConfig:
    backbone: str = "mobilenet_v2"
    #: squash | crop | pad | tall: how the poster meets the network input. Among the square
    #: modes, benchmarks/cnn_fit.py (mobilenet_v2 @ 224; 1500 train / 800 val posters, seed 0;
    #: one-vs-rest logistic regression; val macro AP at each mode's best C): pad 0.2407, crop
    #: 0.2394, squash 0.2324. ``tall`` (default since December 2026) gives the poster the
    #: whole input instead of two thirds of a square; with ``benchmarks/generalization.py
    #: STORE --variants 5`` (an MLP head on the embedding, label-weighted val macro AP, all
    #: 17,880 train posters): MobileNetV2 0.272 pad -> 0.280 tall, EfficientNet-Lite2 0.265
    #: -> 0.278, both joined 0.284 -> 0.295 (README, "Choosing the embedding").
    fit: str = "tall"
    #: The square network input (``tall``: its width); None: the size the backbone was
    #: trained at (NATIVE_SIZE).
    input_size: int | None = None
    #: Average the embedding with that of the mirrored poster (twice the compute). Default
    #: since December 2026: with ``benchmarks/generalization.py STORE --variants 5`` (an MLP
    #: head on the embedding, label-weighted val macro AP) the joined tall embedding scores
    #: 0.298 against 0.295 without (0.2994 +/- 0.0014 against 0.2954 +/- 0.0026 over seeds
    #: 0, 1, 2); README, "Choosing the embedding".
    hflip: bool = True
    #: Also the per-channel mean and standard deviation of intermediate feature maps
    #: (:data:`STYLE_TAPS`): texture and finish (grain, line art, photo vs painting) that the
    #: last layer's pooled embedding averages away. Measured by ``benchmarks/cnn_style.py``
    #: (a 256-unit MLP trained on the 17,874 train posters, val macro AP): embedding alone
    #: 0.269, with these 704 values (mobilenet_v2) 0.303. Off by default since version 3:
    #: ``benchmarks/collection_audit.py`` found them the feature group that most tells the
    #: two training collections apart among posters of the same genres (ROC AUC 0.80,
    #: embedding 0.68, colour 0.51) and the one that moves most when the same poster is
    #: blurred or re-compressed (0.33 / 0.19 of the between-poster spread; embedding
    #: 0.25 / 0.18): they follow the scan, not the artwork.
    style: bool = False
    batch_size: int = 32
    #: False builds the network with random weights (seeded); for tests without weights.
    pretrained: bool = True
    seed: int = 0
    #: sha256 of a fine-tuned backbone's ``.safetensors`` (``postergenre finetune``), found by
    #: that sha256 in the weights cache's ``finetuned/`` folders; None: the ImageNet weights
    #: (or random ones, see ``pretrained``). A file with another sha256 is never used.
    #: :func:`postergenre.finetune.artifact.resolve` turns a path or a name into this.
    finetuned: str | None = None
    #: More ImageNet backbones whose pooled embeddings follow the first one's, each at its
    #: native input size (same ``fit`` and ``hflip``): one wider embedding. The style
    #: statistics, the ImageNet head and a fine-tuned backbone are the first one's.
    #: Default since December 2026: EfficientNet-Lite2 beside MobileNetV2. With
    #: ``benchmarks/generalization.py STORE --variants 5`` (an MLP head on the embedding,
    #: label-weighted val macro AP) the joined 2560-d embedding scores 0.284, MobileNetV2
    #: alone 0.272, Lite2 alone 0.265; the whole stack 0.291 against 0.285 (README,
    #: "Choosing the embedding").
    #: None: that pairing for the default backbone, none for any other.
    also: tuple[str, ...] | None = None

    @property
    def size(self) -> int:
        """The square network input in pixels (``tall``: its width; ``input_size``, resolved)."""
        return self.input_size or NATIVE_SIZE[self.backbone]

    @property
    def extras(self) -> tuple[str, ...]:
        """The backbones joined after the first (``also``, resolved)."""
        return DEFAULT_ALSO.get(self.backbone, ()) if self.also is None else tuple(self.also)

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ConfigError(
                f"cnn: backbone: expected one of {', '.join(BACKBONES)}, got {self.backbone!r}"
            )
        # None stays None (resolved by ``size`` and ``extras``), so dataclasses.replace with
        # another backbone gets that backbone's defaults.
        if self.also is not None:
            object.__setattr__(self, "also", tuple(self.also))  # a JSON list: a tuple
        for extra in self.extras:
            if extra not in BACKBONES:
                raise ConfigError(
                    f"cnn: also: expected backbones among {', '.join(BACKBONES)}, got {extra!r}"
                )
        if self.style and self.backbone not in STYLE_TAPS:
            raise ConfigError(f"cnn: style: not available for {self.backbone}")
        if self.fit not in FIT_MODES:
            raise ConfigError(f"cnn: fit: expected one of {', '.join(FIT_MODES)}, got {self.fit!r}")
        if not 32 <= self.size <= 1024:
            raise ConfigError(f"cnn: input_size: expected 32..1024, got {self.input_size}")
        if self.batch_size < 1:
            raise ConfigError(f"cnn: batch_size: expected >= 1, got {self.batch_size}")
        if self.finetuned is not None and not _is_sha256(self.finetuned):
            raise ConfigError(
                f"cnn: finetuned: expected the 64-hex sha256 of a fine-tuned backbone's "
                f"safetensors file, got {self.finetuned!r}",
                hint="postergenre.finetune.artifact.resolve(PATH_OR_NAME).cnn_config() gives "
                "the cnn config of a `postergenre finetune` output",
            )


def _is_sha256(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


@dataclass(frozen=True)
class _Placement:
    """Where the resized poster (rh x rw) lies on the square input: at (oy, ox), may be < 0."""

    rh: int
    rw: int
    oy: int
    ox: int


def input_shape(mode: str, size: int) -> tuple[int, int]:
    """(height, width) of the network input for fit ``mode`` at ``input_size`` ``size``."""
    return (round(size * 3 / 2), size) if mode == "tall" else (size, size)


def fit_to_input(
    image: np.ndarray, mode: str, size: int, fill: tuple[int, ...] = _PAD_RGB
) -> tuple[np.ndarray, _Placement]:
    """(H, W, 3) uint8 -> the network input (:func:`input_shape`: square but for ``tall``)
    by ``mode``, and where the poster went (``pad`` and ``tall`` fill the rest with ``fill``)."""
    import cv2

    if mode not in FIT_MODES:
        raise ConfigError(f"cnn: fit: expected one of {', '.join(FIT_MODES)}, got {mode!r}")
    h, w = image.shape[:2]
    out_h, out_w = input_shape(mode, size)
    if mode == "squash":
        rh, rw = size, size
    elif mode == "crop":
        scale = size / min(h, w)
        rh, rw = max(size, round(h * scale)), max(size, round(w * scale))
    else:  # pad, tall: the whole poster inside the input
        scale = min(out_h / h, out_w / w)
        rh, rw = max(1, min(out_h, round(h * scale))), max(1, min(out_w, round(w * scale)))
    # INTER_AREA only when shrinking both ways: it averages (no aliasing) but blocks when enlarging.
    interp = cv2.INTER_AREA if rh <= h and rw <= w else cv2.INTER_LINEAR
    resized = cv2.resize(image, (rw, rh), interpolation=interp)
    if mode == "squash":
        return resized, _Placement(rh, rw, 0, 0)
    if mode == "crop":
        y0, x0 = (rh - size) // 2, (rw - size) // 2
        out = np.ascontiguousarray(resized[y0 : y0 + size, x0 : x0 + size])
        return out, _Placement(rh, rw, -y0, -x0)
    canvas = np.empty((out_h, out_w, 3), dtype=np.uint8)
    canvas[:] = fill
    oy, ox = (out_h - rh) // 2, (out_w - rw) // 2
    canvas[oy : oy + rh, ox : ox + rw] = resized
    return canvas, _Placement(rh, rw, oy, ox)


def _unplace(heat: np.ndarray, placement: _Placement, height: int, width: int) -> np.ndarray:
    """A map over the network input -> an (height, width) map over the poster."""
    import cv2

    in_h, in_w = heat.shape
    p = placement
    poster = np.zeros((p.rh, p.rw), dtype=np.float32)
    # The overlap of the poster's rectangle [oy, oy+rh) x [ox, ox+rw) with the input.
    y0, y1 = max(p.oy, 0), min(p.oy + p.rh, in_h)
    x0, x1 = max(p.ox, 0), min(p.ox + p.rw, in_w)
    poster[y0 - p.oy : y1 - p.oy, x0 - p.ox : x1 - p.ox] = heat[y0:y1, x0:x1]
    return cv2.resize(poster, (width, height), interpolation=cv2.INTER_LINEAR)


def fuse_conv_bn(model: Any) -> Any:
    """Fold every eval-mode BatchNorm2d into the Conv2d just before it, in place.

    The same function (up to float rounding), about 30% less CPU time for mobilenet_v2.
    Works on our MobileNetV2 and torchvision's ResNets, where each such pair is registered
    consecutively and called in that order (Sequential, or conv1/bn1 attributes).
    """
    import torch
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for module in model.modules():
        names = list(module._modules)
        for first, second in zip(names, names[1:], strict=False):
            conv, bn = module._modules[first], module._modules[second]
            if isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d):
                module._modules[first] = fuse_conv_bn_eval(conv, bn)
                module._modules[second] = torch.nn.Identity()
    return model


def _builder(backbone: str) -> Callable[..., Any]:
    """``build(weights=None)`` -> an untrained network of ``backbone``, keys as in its file.

    MobileNetV2 and EfficientNet-Lite are our own modules (plain torch: importing
    torchvision costs about a second of start-up, mostly torch._dynamo that its ops pull
    in); the ResNets are torchvision's.
    """
    if backbone == "mobilenet_v2":
        from postergenre.features.mobilenet import MobileNetV2

        def build(weights: None = None) -> Any:
            return MobileNetV2()

        return build
    if backbone.startswith("efficientnet_lite"):
        from postergenre.features.efficientnet_lite import EfficientNetLite

        def build_lite(weights: None = None) -> Any:
            return EfficientNetLite(backbone)

        return build_lite
    import torchvision

    resnet: Callable[..., Any] = getattr(torchvision.models, backbone)
    return resnet


class CNNExtractor(Extractor):
    """Pooled penultimate ImageNet embedding (mobilenet_v2 1280-d, resnet18/34 512, resnet50 2048).

    Also offers the ImageNet classifier's top classes (:meth:`imagenet_top`) and Grad-CAM
    maps of a direction in embedding space (:meth:`gradcam`), for explanations.
    """

    name: ClassVar[str] = "cnn"
    # "2": the style statistics (``style=True``) joined the default outputs.
    # "3": and left them again (``style=False``): they follow the scan, not the artwork.
    version: ClassVar[str] = "3"
    Config: ClassVar[type[Any]] = CNNConfig
    # Stores and bundles made before ``also`` existed embedded with the one backbone.
    RECORD_DEFAULTS: ClassVar[dict[str, Any]] = {"also": ()}
    config: CNNConfig

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self._model: Any = None
        self._extras: list[CNNExtractor] = []

    @property
    def dim(self) -> int:
        """Width of the pooled embedding (the first ``dim`` features): the first backbone's
        and then each of ``also``'s."""
        return sum(BACKBONES[b] for b in (self.config.backbone, *self.config.extras))

    @property
    def main_dim(self) -> int:
        """Width of the first backbone's part of the embedding."""
        return BACKBONES[self.config.backbone]

    def config_dict(self) -> dict[str, Any]:
        # Without a fine-tuned backbone or extra backbones the keys are left out, so stores
        # and bundles made before the options existed keep matching (their configs lack it).
        out = super().config_dict()
        if out.get("finetuned") is None:
            out.pop("finetuned", None)
        out["input_size"] = self.config.size  # recorded resolved
        if self.config.extras:
            out["also"] = list(self.config.extras)
        else:
            out.pop("also", None)
        return out

    def _extra_extractors(self) -> list[CNNExtractor]:
        c = self.config
        return [
            CNNExtractor(
                CNNConfig(
                    backbone=b,
                    fit=c.fit,
                    hflip=c.hflip,
                    batch_size=c.batch_size,
                    pretrained=c.pretrained,
                    seed=c.seed,
                    also=(),
                )
            )
            for b in c.extras
        ]

    def feature_names(self) -> list[str]:
        names = [f"cnn.{i:04d}" for i in range(self.dim)]
        if self.config.style:
            for where, channels in STYLE_TAPS[self.config.backbone]:
                tap = where.removeprefix("layer").zfill(2)
                for stat in ("mean", "std"):
                    names += [f"cnn.style{tap}.{stat}.{c:03d}" for c in range(channels)]
        return names

    # -- loading --------------------------------------------------------------------
    def _load(self, device: str) -> None:
        import torch

        build = _builder(self.config.backbone)
        if self.config.finetuned is not None:
            model = self._load_finetuned(build, self.config.finetuned)
        elif self.config.pretrained:
            from postergenre import weights

            path = weights.resolve(self.config.backbone)
            model = build(weights=None)
            state = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        else:
            # Random init must not disturb (or depend on) the caller's global torch RNG.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.config.seed)
                model = build(weights=None)
        model.eval()
        fuse_conv_bn(model)
        # The batch is built NHWC, so channels_last avoids a layout copy and is faster on CPU.
        model = model.to(device=device, memory_format=torch.channels_last)
        for param in model.parameters():
            param.requires_grad_(False)
        self._model = model
        self._torch_device = torch.device(device)
        extras = self._extra_extractors()
        for extra in extras:
            extra.load(device)
        self._extras = extras

    def _load_finetuned(self, build: Callable[..., Any], sha256: str) -> Any:
        """The network with a fine-tuned backbone's weights, after checking its sha256."""
        import torch
        from safetensors.torch import load

        from postergenre.finetune.artifact import BACKBONE_PREFIX, locate

        c = self.config
        found = locate(sha256)
        found.check_cnn_config(c)
        # The bytes that were hashed are the bytes that are loaded.
        tensors = load(found.read_verified(sha256))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.seed)
            model = build(weights=None)
        state = {
            k[len(BACKBONE_PREFIX) :]: v
            for k, v in tensors.items()
            if k.startswith(BACKBONE_PREFIX)
        }
        model.load_state_dict(state)
        return model

    # -- network pieces ---------------------------------------------------------------
    def _feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised input (n, 3, S, S) -> last conv feature map (n, dim, h, w)."""
        m = self._model
        if not self.config.backbone.startswith("resnet"):
            return m.features(x)  # type: ignore[no-any-return]
        x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        return m.layer4(m.layer3(m.layer2(m.layer1(x))))  # type: ignore[no-any-return]

    def _head(self, embedding: torch.Tensor) -> torch.Tensor:
        """Embedding (n, dim) -> ImageNet logits (n, 1000), the original classifier."""
        m = self._model
        head = m.fc if self.config.backbone.startswith("resnet") else m.classifier
        return head(embedding)  # type: ignore[no-any-return]

    def _batch_tensor(self, images: Sequence[np.ndarray]) -> tuple[torch.Tensor, list[_Placement]]:
        import torch

        c = self.config
        fill = pad_colour(c.backbone)
        fitted = [fit_to_input(im, c.fit, c.size, fill) for im in images]
        nhwc = np.stack([f[0] for f in fitted])
        x = torch.from_numpy(nhwc).to(self._torch_device).permute(0, 3, 1, 2).float()
        mean_rgb, std_rgb = normalisation(c.backbone)
        mean = torch.tensor(mean_rgb, device=x.device).view(1, 3, 1, 1) * 255.0
        std = torch.tensor(std_rgb, device=x.device).view(1, 3, 1, 1) * 255.0
        x = ((x - mean) / std).contiguous(memory_format=torch.channels_last)
        return x, [f[1] for f in fitted]

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        fmap = self._feature_map(x)
        return fmap.mean(dim=(2, 3))

    def _embed_with_style(self, x: torch.Tensor) -> torch.Tensor:
        """(n, 3, S, S) -> (n, len(feature_names())): pooled embedding, then each tap's
        per-channel mean and standard deviation (over the whole input, padding included)."""
        import torch

        m = self._model
        taps = {where for where, _ in STYLE_TAPS[self.config.backbone]}
        stats: list[torch.Tensor] = []

        def tap(name: str, h: torch.Tensor) -> None:
            if name in taps:
                stats.extend((h.mean(dim=(2, 3)), h.std(dim=(2, 3))))

        if self.config.backbone == "mobilenet_v2":
            h = x
            for i, block in enumerate(m.features):
                h = block(h)
                tap(str(i), h)
        else:
            h = m.maxpool(m.relu(m.bn1(m.conv1(x))))
            for name in ("layer1", "layer2", "layer3", "layer4"):
                h = getattr(m, name)(h)
                tap(name, h)
        return torch.cat([h.mean(dim=(2, 3)), *stats], dim=1)

    # -- protocol -------------------------------------------------------------------------
    def _extract(self, images: Sequence[np.ndarray]) -> np.ndarray:
        import torch

        own = self.main_dim + (len(self.feature_names()) - self.dim)  # pooled + style
        out = np.empty((len(images), own), dtype=np.float32)
        bs = self.config.batch_size
        embed = self._embed_with_style if self.config.style else self._embed
        with torch.inference_mode():
            for start in range(0, len(images), bs):
                batch = images[start : start + bs]
                x, _ = self._batch_tensor(batch)
                if self.config.hflip:
                    # Fit the mirrored poster itself rather than mirror the fitted input: with
                    # an odd pad or crop margin the two differ by a pixel of placement. Both
                    # views go through the network as one batch.
                    mirrored, _ = self._batch_tensor([im[:, ::-1] for im in batch])
                    both = embed(torch.cat([x, mirrored]))
                    emb = (both[: len(batch)] + both[len(batch) :]) / 2
                else:
                    emb = embed(x)
                out[start : start + len(batch)] = emb.float().cpu().numpy()
        if not self._extras:
            return out
        # The extra embeddings go right after the first backbone's pooled embedding.
        extra = [e._extract(images) for e in self._extras]
        return np.hstack([out[:, : self.main_dim], *extra, out[:, self.main_dim :]])

    # -- explanations ---------------------------------------------------------------------
    def imagenet_top(
        self, images: Sequence[np.ndarray], k: int = 5
    ) -> list[list[tuple[str, float]]]:
        """The ``k`` most probable ImageNet classes of each image, as (label, probability).

        Uses the backbone's original 1000-class head (meaningful with pretrained weights only;
        a fine-tuned backbone keeps the head it started from, which fits its changed
        embedding less well the further fine-tuning moved it).
        """
        from torchvision.models import MobileNet_V2_Weights

        if not 1 <= k <= 1000:
            raise ConfigError(f"cnn: k: expected 1..1000, got {k}")
        for i, image in enumerate(images):
            check_rgb(image, where=f"cnn: image {i}")
        # All torchvision IMAGENET1K weights share this category list and order.
        labels: list[str] = MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"]
        probs = self.class_probabilities(images)
        top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        return [
            [(labels[i], float(row[i])) for i in idx] for row, idx in zip(probs, top, strict=True)
        ]

    def class_probabilities(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(n, 1000) float64 probabilities of the backbone's original ImageNet head, for
        checked RGB images (the same fit and batching as the embedding)."""
        import torch

        if self.device is None:
            self.load("auto")
        out = np.empty((len(images), 1000), dtype=np.float64)
        bs = self.config.batch_size
        with torch.inference_mode():
            for start in range(0, len(images), bs):
                x, _ = self._batch_tensor(images[start : start + bs])
                logits = self._head(self._embed(x)).double()
                out[start : start + len(x)] = torch.softmax(logits, dim=1).cpu().numpy()
        return out

    def _score_density(self, image: np.ndarray, d: np.ndarray) -> np.ndarray:
        """Grad-CAM of this network's ``pooled embedding . d`` over the poster (H, W),
        unclipped, scaled by the feature map's cell count (score per unit of map area).
        With ``hflip`` the embedding is the mean of the poster's and its mirror's, so the
        map is the mean of the two maps, the mirror's flipped back onto the poster."""
        if not self.config.hflip:
            return self._view_density(image, d)
        mirrored = self._view_density(np.ascontiguousarray(image[:, ::-1]), d)[:, ::-1]
        return (self._view_density(image, d) + mirrored) / 2

    def _view_density(self, image: np.ndarray, d: np.ndarray) -> np.ndarray:
        """:meth:`_score_density` of one view of the poster (no mirror averaging)."""
        import cv2
        import torch

        with torch.inference_mode():
            x, placements = self._batch_tensor([image])
            fmap = self._feature_map(x)
        # Gradients flow from the feature map only; the trunk stays frozen and grad-free.
        with torch.enable_grad():
            a = fmap.clone().requires_grad_(True)
            score = a.mean(dim=(2, 3))[0] @ torch.from_numpy(np.ascontiguousarray(d)).to(a.device)
            (grad,) = torch.autograd.grad(score, a)
            weights = grad.mean(dim=(2, 3), keepdim=True)
            cam = torch.relu((weights * a).sum(dim=1))[0].detach().float().cpu().numpy()
        cam *= cam.size
        in_h, in_w = input_shape(self.config.fit, self.config.size)
        heat = cv2.resize(cam, (in_w, in_h), interpolation=cv2.INTER_LINEAR)
        return _unplace(heat, placements[0], image.shape[0], image.shape[1])

    def gradcam(self, image: np.ndarray, direction: np.ndarray) -> np.ndarray:
        """Grad-CAM of ``embedding . direction`` on the last conv map, as an (H, W) map in [0, 1].

        ``direction`` is a (dim,) vector in embedding space (e.g. a linear head's weights
        for one genre), or one over all :meth:`feature_names` (only its first ``dim``
        count). The map covers the whole poster, whatever the fit mode; parts the network
        never saw (``crop``) are 0. All zeros when nothing pushes the score up.
        """

        check_rgb(image, where="cnn: image")
        d = np.array(direction, dtype=np.float32)  # a private, writable copy for torch
        n_all = len(self.feature_names())
        if d.shape not in ((self.dim,), (n_all,)) or not np.all(np.isfinite(d)):
            raise ConfigError(
                f"cnn: direction: expected a finite ({self.dim},) or ({n_all},) vector, "
                f"got shape {d.shape}"
            )
        # Over every feature: the map follows the pooled-embedding part (style statistics
        # pool whole intermediate maps, so they have no place to point at). With extra
        # backbones each part's map is its share of the score per unit of area, so the
        # parts add up.
        d = np.ascontiguousarray(d[: self.dim])
        if self.device is None:
            self.load("auto")
        heat = self._score_density(image, d[: self.main_dim])
        start = self.main_dim
        for e in self._extras:
            heat += e._score_density(image, d[start : start + e.dim])
            start += e.dim
        heat = np.clip(heat, 0.0, None)
        peak = float(heat.max())
        if peak <= 0 or not np.isfinite(peak):
            return np.zeros(image.shape[:2], dtype=np.float32)
        return (heat / peak).astype(np.float32)
