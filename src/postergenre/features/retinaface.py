"""RetinaFace with a MobileNet-0.25 body: the network, its prior boxes, decoding and NMS.

The layer names and shapes follow ``mobilenet0.25_Final.pth`` (WIDER FACE training), so the
file loads with ``load_state_dict(strict=True)``:

- body: MobileNet-0.25 (a 3x3 conv then depthwise-separable convs, each BN + LeakyReLU(0.1)),
  read at strides 8, 16 and 32 (64, 128 and 256 channels);
- fpn: 1x1 lateral convs to 64 channels, top-down nearest upsampling, 3x3 merge convs;
- ssh1..3: SSH context modules (3x3, 5x5 and 7x7 receptive fields built from stacked 3x3s);
- ClassHead / BboxHead / LandmarkHead: 1x1 convs, two anchors per location.

This module imports torch at the top; only :mod:`postergenre.features.faces` imports it,
inside ``load``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

#: The network was trained on BGR images with these channel means subtracted (no scaling).
MEAN_BGR = (104.0, 117.0, 123.0)
STEPS = (8, 16, 32)
MIN_SIZES = ((16, 32), (64, 128), (256, 512))
VARIANCES = (0.1, 0.2)
NUM_ANCHORS = 2
#: Candidates per image that go to NMS, best scores first.
PRE_NMS_TOP_K = 1000
#: Canvases are padded to a multiple of this; any size works, as every level has
#: ceil(size / stride) cells.
CANVAS_MULTIPLE = 8

_LEAKY = 0.1


def _conv_bn(
    cin: int,
    cout: int,
    stride: int = 1,
    kernel: int = 3,
    groups: int = 1,
    leaky: float | None = _LEAKY,
) -> list[nn.Module]:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if leaky is not None:
        layers.append(nn.LeakyReLU(leaky, inplace=True))
    return layers


def _depthwise_separable(cin: int, cout: int, stride: int) -> nn.Sequential:
    # Indices 0/1 (depthwise conv, BN) and 3/4 (pointwise conv, BN) match the file's keys.
    return nn.Sequential(*_conv_bn(cin, cin, stride, groups=cin), *_conv_bn(cin, cout, kernel=1))


class MobileNet025(nn.Module):
    """MobileNet-v1 at width 0.25, split where the detector reads it (strides 8, 16, 32)."""

    def __init__(self) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(
            nn.Sequential(*_conv_bn(3, 8, stride=2)),
            _depthwise_separable(8, 16, 1),
            _depthwise_separable(16, 32, 2),
            _depthwise_separable(32, 32, 1),
            _depthwise_separable(32, 64, 2),
            _depthwise_separable(64, 64, 1),
        )
        self.stage2 = nn.Sequential(
            _depthwise_separable(64, 128, 2),
            *(_depthwise_separable(128, 128, 1) for _ in range(5)),
        )
        self.stage3 = nn.Sequential(
            _depthwise_separable(128, 256, 2),
            _depthwise_separable(256, 256, 1),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c3 = self.stage1(x)
        c4 = self.stage2(c3)
        c5 = self.stage3(c4)
        return c3, c4, c5


class FPN(nn.Module):
    def __init__(self, in_channels: Sequence[int] = (64, 128, 256), out_channels: int = 64):
        super().__init__()
        self.output1 = nn.Sequential(*_conv_bn(in_channels[0], out_channels, kernel=1))
        self.output2 = nn.Sequential(*_conv_bn(in_channels[1], out_channels, kernel=1))
        self.output3 = nn.Sequential(*_conv_bn(in_channels[2], out_channels, kernel=1))
        self.merge1 = nn.Sequential(*_conv_bn(out_channels, out_channels))
        self.merge2 = nn.Sequential(*_conv_bn(out_channels, out_channels))

    def forward(
        self, feats: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        p3 = self.output1(feats[0])
        p4 = self.output2(feats[1])
        p5 = self.output3(feats[2])
        # Sizes, not a factor of 2: odd-sized maps upsample onto the finer map exactly.
        p4 = self.merge2(p4 + F.interpolate(p5, size=p4.shape[-2:], mode="nearest"))
        p3 = self.merge1(p3 + F.interpolate(p4, size=p3.shape[-2:], mode="nearest"))
        return p3, p4, p5


class SSH(nn.Module):
    """Context module: 3x3, 5x5 and 7x7 receptive fields side by side (half, quarter, quarter)."""

    def __init__(self, channels: int = 64) -> None:
        super().__init__()
        half, quarter = channels // 2, channels // 4
        self.conv3X3 = nn.Sequential(*_conv_bn(channels, half, leaky=None))
        self.conv5X5_1 = nn.Sequential(*_conv_bn(channels, quarter))
        self.conv5X5_2 = nn.Sequential(*_conv_bn(quarter, quarter, leaky=None))
        self.conv7X7_2 = nn.Sequential(*_conv_bn(quarter, quarter))
        self.conv7x7_3 = nn.Sequential(*_conv_bn(quarter, quarter, leaky=None))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch3 = self.conv3X3(x)
        shared = self.conv5X5_1(x)
        branch5 = self.conv5X5_2(shared)
        branch7 = self.conv7x7_3(self.conv7X7_2(shared))
        return F.relu(torch.cat([branch3, branch5, branch7], dim=1))


class _Head(nn.Module):
    def __init__(self, channels: int, per_anchor: int) -> None:
        super().__init__()
        self.per_anchor = per_anchor
        self.conv1x1 = nn.Conv2d(channels, NUM_ANCHORS * per_anchor, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (N, A*k, H, W) -> (N, H*W*A, k): the order (row, column, anchor) of prior_boxes.
        out = self.conv1x1(x).permute(0, 2, 3, 1)
        return out.reshape(out.shape[0], -1, self.per_anchor)


class RetinaFace(nn.Module):
    """``forward(x)`` on a (N, 3, H, W) mean-subtracted BGR batch returns
    ``(loc (N, P, 4), logits (N, P, 2), landmarks (N, P, 10))`` for P = ``num_priors(H, W)``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.body = MobileNet025()
        self.fpn = FPN()
        self.ssh1 = SSH()
        self.ssh2 = SSH()
        self.ssh3 = SSH()
        self.ClassHead = nn.ModuleList(_Head(64, 2) for _ in STEPS)
        self.BboxHead = nn.ModuleList(_Head(64, 4) for _ in STEPS)
        self.LandmarkHead = nn.ModuleList(_Head(64, 10) for _ in STEPS)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        p3, p4, p5 = self.fpn(self.body(x))
        levels = (self.ssh1(p3), self.ssh2(p4), self.ssh3(p5))
        loc = torch.cat([h(f) for h, f in zip(self.BboxHead, levels, strict=True)], dim=1)
        logits = torch.cat([h(f) for h, f in zip(self.ClassHead, levels, strict=True)], dim=1)
        marks = torch.cat([h(f) for h, f in zip(self.LandmarkHead, levels, strict=True)], dim=1)
        return loc, logits, marks


def clean_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the ``module.`` prefix that DataParallel checkpoints carry."""
    prefix = "module."
    return {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in state.items()}


def fuse_batchnorm(net: nn.Module) -> nn.Module:
    """Fold every BatchNorm that follows a conv inside a Sequential into that conv (eval only).

    Same outputs up to rounding, a third less time on CPU: BN is a separate memory pass.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for seq in [m for m in net.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                seq[i] = fuse_conv_bn_eval(conv.eval(), bn.eval())
                seq[i + 1] = nn.Identity()
    return net


def prepare_for_inference(net: nn.Module, device: str, fuse: bool) -> nn.Module:
    """Eval mode on ``device``, BN folded when ``fuse``; channels-last on CPU, where oneDNN's
    depthwise convolutions run about twice as fast in that layout."""
    net = net.eval()
    if fuse:
        net = fuse_batchnorm(net)
    net = net.to(device)
    if device == "cpu":
        net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return net


def load_retinaface(path: str, device: str = "cpu", fuse: bool = True) -> RetinaFace:
    """A RetinaFace in eval mode with the weights of ``mobilenet0.25_Final.pth``.

    ``fuse`` folds BatchNorm into the convs (faster; the module's keys then differ).
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    net = RetinaFace()
    net.load_state_dict(clean_state_dict(state), strict=True)
    prepare_for_inference(net, device, fuse)
    return net


def feature_map_sizes(height: int, width: int) -> list[tuple[int, int]]:
    """(rows, cols) of the three head levels for an input of ``height`` x ``width``."""
    return [(math.ceil(height / s), math.ceil(width / s)) for s in STEPS]


def num_priors(height: int, width: int) -> int:
    return sum(r * c * NUM_ANCHORS for r, c in feature_map_sizes(height, width))


def prior_boxes(height: int, width: int, device: str | torch.device = "cpu") -> torch.Tensor:
    """(P, 4) anchors as (cx, cy, w, h), relative to the input size, in head order."""
    out = []
    for (rows, cols), step, sizes in zip(
        feature_map_sizes(height, width), STEPS, MIN_SIZES, strict=True
    ):
        cy = (torch.arange(rows, dtype=torch.float32, device=device) + 0.5) * step / height
        cx = (torch.arange(cols, dtype=torch.float32, device=device) + 0.5) * step / width
        gy, gx = torch.meshgrid(cy, cx, indexing="ij")
        per_anchor = [
            torch.stack(
                [gx, gy, torch.full_like(gx, s / width), torch.full_like(gy, s / height)], dim=-1
            )
            for s in sizes
        ]
        out.append(torch.stack(per_anchor, dim=2).reshape(-1, 4))
    return torch.cat(out, dim=0)


def decode_boxes(loc: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
    """Offsets (..., 4) against priors (..., 4) -> (x0, y0, x1, y1) relative boxes."""
    centre = priors[..., :2] + loc[..., :2] * VARIANCES[0] * priors[..., 2:]
    size = priors[..., 2:] * torch.exp(loc[..., 2:] * VARIANCES[1])
    return torch.cat([centre - size / 2, centre + size / 2], dim=-1)


def decode_landmarks(marks: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
    """Offsets (..., 10) -> five (x, y) points, relative, as (..., 10)."""
    points = marks.reshape(*marks.shape[:-1], 5, 2)
    decoded = priors[..., None, :2] + points * VARIANCES[0] * priors[..., None, 2:]
    return decoded.reshape(marks.shape)


@dataclass(frozen=True)
class Faces:
    """Faces found on one image, in that image's pixels, best score first.

    ``boxes`` (k, 4) as (x0, y0, x1, y1), clipped to the image; ``scores`` (k,);
    ``landmarks`` (k, 10): eyes, nose tip, mouth corners as (x, y) pairs.
    """

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])


class FaceDetector:
    """Batched RetinaFace: resize each image so its long side is ``input_size``, pad the
    batch to one canvas, run the net once, decode, NMS per image, map back to pixels.

    ``net`` is a :class:`RetinaFace` (or anything with its ``forward`` contract).
    """

    def __init__(
        self,
        net: nn.Module,
        device: str,
        input_size: int = 320,
        confidence: float = 0.7,
        nms_iou: float = 0.4,
        max_faces: int = 32,
    ) -> None:
        self.net = net
        self.device = device
        self.input_size = input_size
        self.confidence = confidence
        self.nms_iou = nms_iou
        self.max_faces = max_faces
        self._priors: dict[tuple[int, int], torch.Tensor] = {}

    def _prepare(self, images: Sequence[np.ndarray]) -> tuple[torch.Tensor, list[float]]:
        resized: list[torch.Tensor] = []
        scales: list[float] = []
        for image in images:
            h, w = image.shape[:2]
            scale = self.input_size / max(h, w)
            nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
            # A copy: posters decoded by PIL are read-only, which torch.from_numpy warns about.
            x = torch.tensor(image, device=self.device)
            # RGB HWC uint8 -> BGR CHW float, as the net was trained.
            x = x.permute(2, 0, 1).flip(0).float()[None]
            if (nh, nw) != (h, w):
                x = F.interpolate(
                    x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=scale < 1
                )
            resized.append(x[0])
            # The scale actually applied per axis differs from ``scale`` by rounding only.
            scales.append(scale)
        mult = CANVAS_MULTIPLE
        ch = max(t.shape[1] for t in resized)
        cw = max(t.shape[2] for t in resized)
        ch, cw = -(-ch // mult) * mult, -(-cw // mult) * mult
        mean = torch.tensor(MEAN_BGR, device=self.device).view(3, 1, 1)
        # Zero after mean subtraction: the padding looks like the training mean colour.
        canvas = torch.zeros((len(images), 3, ch, cw), device=self.device)
        for i, t in enumerate(resized):
            canvas[i, :, : t.shape[1], : t.shape[2]] = t - mean
        if self.device == "cpu":
            canvas = canvas.contiguous(memory_format=torch.channels_last)
        return canvas, scales

    def priors(self, height: int, width: int) -> torch.Tensor:
        key = (height, width)
        if key not in self._priors:
            self._priors[key] = prior_boxes(height, width, self.device)
        return self._priors[key]

    @torch.inference_mode()
    def __call__(self, images: Sequence[np.ndarray]) -> list[Faces]:
        from postergenre.features.nms import batched_nms

        canvas, scales = self._prepare(images)
        _, _, ch, cw = canvas.shape
        loc, logits, marks = self.net(canvas)
        scores = torch.softmax(logits, dim=-1)[..., 1]
        # Only the best candidates of each image go to NMS (quadratic in their number): a
        # real face lights up a handful of anchors, an untrained or confused net thousands.
        top_scores, top_idx = torch.topk(scores, min(PRE_NMS_TOP_K, scores.shape[1]), dim=1)
        img_idx, rank = torch.nonzero(top_scores > self.confidence, as_tuple=True)
        prior_idx = top_idx[img_idx, rank]
        priors = self.priors(ch, cw)[prior_idx]
        size = torch.tensor([cw, ch], dtype=torch.float32, device=self.device)
        boxes = decode_boxes(loc[img_idx, prior_idx], priors) * size.repeat(2)
        points = decode_landmarks(marks[img_idx, prior_idx], priors) * size.repeat(5)
        kept_scores = scores[img_idx, prior_idx]
        keep = batched_nms(boxes, kept_scores, img_idx, self.nms_iou)  # sorted by score
        img_idx_np = img_idx[keep].cpu().numpy()
        boxes_np = boxes[keep].cpu().numpy().astype(np.float64)
        points_np = points[keep].cpu().numpy().astype(np.float64)
        scores_np = kept_scores[keep].cpu().numpy().astype(np.float64)

        results = []
        for i, image in enumerate(images):
            sel = np.flatnonzero(img_idx_np == i)[: self.max_faces]
            h, w = image.shape[:2]
            b = boxes_np[sel] / scales[i]
            b[:, 0::2] = b[:, 0::2].clip(0, w)
            b[:, 1::2] = b[:, 1::2].clip(0, h)
            # A box that lies on the padding only has no pixels left once clipped.
            real = ((b[:, 2] - b[:, 0]) >= 1) & ((b[:, 3] - b[:, 1]) >= 1)
            results.append(Faces(b[real], scores_np[sel][real], points_np[sel][real] / scales[i]))
        return results
