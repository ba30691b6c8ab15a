"""The YOLO11 detection network in plain torch, built from the architecture a checkpoint records.

Ultralytics checkpoints are pickles of their own classes, so reading one needs
``ultralytics`` importable (and costs its import time). This module needs only torch: the
network is rebuilt here from the architecture dictionary the checkpoint stores (its
"model yaml": a list of ``[from, repeats, module, args]`` rows plus depth, width and
channel scaling), its weights are read from a safetensors file that
:mod:`postergenre.features.objects` converts from the checkpoint once, and the module
names follow the checkpoint's keys (``model.<row>.<part>``), so the weights load strictly.

The pieces, as YOLO11 uses them ("Conv" is conv + BatchNorm + SiLU throughout):

- ``Conv``: one such unit; ``DWConv``: the same, depthwise.
- ``Bottleneck``: two 3x3 Convs, plus the input when the widths allow (``shortcut``).
- ``C3k``: a CSP block: two 1x1 branches, one through a chain of Bottlenecks, joined by a 1x1.
- ``C3k2``: a 1x1 Conv split in two halves; the second half goes through a chain of
  Bottlenecks (or C3ks); the halves and every link's output are joined by a 1x1 Conv.
- ``SPPF``: a 1x1 Conv, three chained 5x5 stride-1 max-pools, all four concatenated, 1x1.
- ``C2PSA``: a 1x1 Conv split in two; one half goes through PSA blocks (multi-head
  self-attention over all positions with a depthwise 3x3 positional term, then a two-layer
  1x1 feed-forward, both residual); the halves are joined by a 1x1 Conv.
- ``nn.Upsample`` (nearest, x2) and ``Concat`` (channels) make the neck.
- ``Detect``: per level, a box branch giving 4 x 16 logits (a distribution over distances
  0..15 from the cell centre to each side, in strides; DFL) and a class branch giving 80
  logits. The output is (N, 4 + classes, anchors): box centre x, y and width, height in
  input pixels, then class probabilities (sigmoid), anchors level by level, row-major.

A ``Segment`` head is built as a ``Detect`` head: the box and class branches are the same;
the mask branches are left out.

This module imports torch at the top; only :mod:`postergenre.features.objects` imports it,
inside ``load``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from postergenre.errors import WeightsError

#: Tag of the converted weights file's layout; bump when what it stores changes.
FORMAT = "postergenre-yolo-detect/1"
#: Ultralytics builds every BatchNorm with eps 1e-3 (torch's default is 1e-5). Not part of
#: a state dict: the conversion reads it from the checkpoint's modules and checks it.
BN_EPS = 1e-3
_HEADS = ("Detect", "Segment")


def make_divisible(x: float, divisor: int = 8) -> int:
    return math.ceil(x / divisor) * divisor


class Conv(nn.Module):
    """conv (no bias, 'same' padding) -> BatchNorm -> SiLU (or nothing, ``act=False``)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int = 1,
        stride: int = 1,
        groups: int = 1,
        act: bool = True,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn: nn.Module = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.act: nn.Module = nn.SiLU() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.act(self.bn(self.conv(x)))
        return out

    def fuse(self) -> None:
        """Fold the BatchNorm into the conv (eval only; same function up to rounding)."""
        from torch.nn.utils.fusion import fuse_conv_bn_eval

        if isinstance(self.bn, nn.BatchNorm2d):
            self.conv = fuse_conv_bn_eval(self.conv.eval(), self.bn.eval())
            self.bn = nn.Identity()


def dw_conv(cin: int, cout: int, kernel: int) -> Conv:
    return Conv(cin, cout, kernel, groups=math.gcd(cin, cout))


class Bottleneck(nn.Module):
    def __init__(
        self,
        cin: int,
        cout: int,
        shortcut: bool = True,
        kernels: tuple[int, int] = (3, 3),
        expansion: float = 0.5,
    ) -> None:
        super().__init__()
        hidden = int(cout * expansion)
        self.cv1 = Conv(cin, hidden, kernels[0])
        self.cv2 = Conv(hidden, cout, kernels[1])
        self.add = shortcut and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.cv2(self.cv1(x))
        return x + out if self.add else out


class C3k(nn.Module):
    def __init__(self, cin: int, cout: int, n: int = 2, shortcut: bool = True) -> None:
        super().__init__()
        hidden = cout // 2
        self.cv1 = Conv(cin, hidden)
        self.cv2 = Conv(cin, hidden)
        self.cv3 = Conv(2 * hidden, cout)
        self.m = nn.Sequential(
            *(Bottleneck(hidden, hidden, shortcut, (3, 3), 1.0) for _ in range(n))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), dim=1))
        return out


class C3k2(nn.Module):
    def __init__(
        self, cin: int, cout: int, n: int = 1, c3k: bool = False, expansion: float = 0.5
    ) -> None:
        super().__init__()
        self.c = int(cout * expansion)
        self.cv1 = Conv(cin, 2 * self.c)
        self.cv2 = Conv((2 + n) * self.c, cout)
        self.m = nn.ModuleList(
            C3k(self.c, self.c, 2) if c3k else Bottleneck(self.c, self.c) for _ in range(n)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = list(self.cv1(x).chunk(2, dim=1))
        for block in self.m:
            parts.append(block(parts[-1]))
        out: torch.Tensor = self.cv2(torch.cat(parts, dim=1))
        return out


class SPPF(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int = 5) -> None:
        super().__init__()
        hidden = cin // 2
        self.cv1 = Conv(cin, hidden)
        self.cv2 = Conv(hidden * 4, cout)
        self.kernel = kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [self.cv1(x)]
        for _ in range(3):
            parts.append(F.max_pool2d(parts[-1], self.kernel, 1, self.kernel // 2))
        out: torch.Tensor = self.cv2(torch.cat(parts, dim=1))
        return out


class Attention(nn.Module):
    """Multi-head self-attention over the H*W positions, keys half the head width."""

    def __init__(self, dim: int, num_heads: int, key_ratio: float = 0.5) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.key_dim = int(self.head_dim * key_ratio)
        self.scale = self.key_dim**-0.5
        self.qkv = Conv(dim, dim + 2 * self.key_dim * num_heads, act=False)
        self.proj = Conv(dim, dim, act=False)
        self.pe = Conv(dim, dim, 3, groups=dim, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        per_head = self.qkv(x).view(n, self.num_heads, 2 * self.key_dim + self.head_dim, h * w)
        q, k, v = per_head.split([self.key_dim, self.key_dim, self.head_dim], dim=2)
        weights = ((q * self.scale).transpose(-2, -1) @ k).softmax(dim=-1)  # (n, heads, hw, hw)
        attended = (v @ weights.transpose(-2, -1)).view(n, c, h, w)
        out: torch.Tensor = self.proj(attended + self.pe(v.reshape(n, c, h, w)))
        return out


class PSABlock(nn.Module):
    def __init__(self, c: int, num_heads: int) -> None:
        super().__init__()
        self.attn = Attention(c, num_heads)
        self.ffn = nn.Sequential(Conv(c, 2 * c), Conv(2 * c, c, act=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        out: torch.Tensor = x + self.ffn(x)
        return out


class C2PSA(nn.Module):
    def __init__(self, cin: int, cout: int, n: int = 1) -> None:
        super().__init__()
        if cin != cout:
            raise WeightsError(f"C2PSA keeps its width, got {cin} -> {cout} channels")
        self.c = cin // 2
        self.cv1 = Conv(cin, 2 * self.c)
        self.cv2 = Conv(2 * self.c, cin)
        self.m = nn.Sequential(*(PSABlock(self.c, max(self.c // 64, 1)) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.cv1(x).split((self.c, self.c), dim=1)
        out: torch.Tensor = self.cv2(torch.cat((a, self.m(b)), dim=1))
        return out


class Upsample(nn.Module):
    def __init__(self, factor: int) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.factor, mode="nearest")


class Concat(nn.Module):
    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(xs, dim=1)


class DFL(nn.Module):
    """Expected value of each side's distance distribution: softmax over the bins, then a
    fixed 1x1 conv whose weights are the bin values 0..bins-1 (stored in the checkpoint)."""

    def __init__(self, bins: int = 16) -> None:
        super().__init__()
        self.bins = bins
        self.conv = nn.Conv2d(bins, 1, 1, bias=False).requires_grad_(False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.arange(bins, dtype=torch.float32).view(1, bins, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, a = x.shape  # (n, 4 * bins, anchors)
        probs = x.view(n, 4, self.bins, a).transpose(2, 1).softmax(dim=1)  # (n, bins, 4, a)
        out: torch.Tensor = self.conv(probs).view(n, 4, a)
        return out


class Detect(nn.Module):
    """Anchor-free head: (N, 4 + nc, anchors) with xywh boxes in input pixels, then scores."""

    def __init__(
        self, nc: int, channels: Sequence[int], strides: Sequence[float], bins: int = 16
    ) -> None:
        super().__init__()
        if len(strides) != len(channels):
            raise WeightsError(f"Detect: {len(channels)} levels but {len(strides)} strides")
        self.nc = nc
        self.bins = bins
        self.strides = [float(s) for s in strides]
        box_width = max(16, channels[0] // 4, 4 * bins)
        cls_width = max(channels[0], min(nc, 100))
        self.cv2 = nn.ModuleList(
            nn.Sequential(
                Conv(c, box_width, 3),
                Conv(box_width, box_width, 3),
                nn.Conv2d(box_width, 4 * bins, 1),
            )
            for c in channels
        )
        self.cv3 = nn.ModuleList(
            nn.Sequential(
                nn.Sequential(dw_conv(c, c, 3), Conv(c, cls_width)),
                nn.Sequential(dw_conv(cls_width, cls_width, 3), Conv(cls_width, cls_width)),
                nn.Conv2d(cls_width, nc, 1),
            )
            for c in channels
        )
        self.dfl = DFL(bins)
        self._grid: dict[tuple[Any, ...], tuple[torch.Tensor, torch.Tensor]] = {}

    def _anchors(self, feats: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Cell centres (2, A) in cells and each anchor's stride (1, A), levels in order."""
        key = (feats[0].device, feats[0].dtype, *(tuple(f.shape[2:]) for f in feats))
        if key not in self._grid:
            dtype, device = feats[0].dtype, feats[0].device
            centres, strides = [], []
            for f, stride in zip(feats, self.strides, strict=True):
                h, w = f.shape[2:]
                ys = torch.arange(h, device=device, dtype=dtype) + 0.5
                xs = torch.arange(w, device=device, dtype=dtype) + 0.5
                gy, gx = torch.meshgrid(ys, xs, indexing="ij")
                centres.append(torch.stack((gx, gy)).view(2, -1))
                strides.append(torch.full((1, h * w), stride, device=device, dtype=dtype))
            self._grid[key] = (torch.cat(centres, dim=1), torch.cat(strides, dim=1))
        return self._grid[key]

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        n = feats[0].shape[0]
        branches = zip(self.cv2, self.cv3, feats, strict=True)
        pairs = [(box(f), cls(f)) for box, cls, f in branches]
        dist = torch.cat([b.view(n, 4 * self.bins, -1) for b, _ in pairs], dim=2)
        logits = torch.cat([c.view(n, self.nc, -1) for _, c in pairs], dim=2)
        centres, strides = self._anchors(feats)
        left_top, right_bottom = self.dfl(dist).chunk(2, dim=1)
        x0y0, x1y1 = centres - left_top, centres + right_bottom
        boxes = torch.cat(((x0y0 + x1y1) / 2, x1y1 - x0y0), dim=1) * strides
        return torch.cat((boxes, logits.sigmoid()), dim=1)


class YoloDetector(nn.Module):
    """The rows of an Ultralytics architecture, run in order; ``forward`` returns the head's
    (N, 4 + nc, anchors) output for a (N, 3, H, W) RGB batch in [0, 1] (H, W multiples of 32).
    """

    def __init__(self, arch: Mapping[str, Any], strides: Sequence[float]) -> None:
        super().__init__()
        layers, sources = _build_rows(arch, strides)
        self.model = nn.ModuleList(layers)
        self.sources = sources
        head = layers[-1]
        assert isinstance(head, Detect)
        self.nc = head.nc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs: list[torch.Tensor] = []
        current: Any = x
        for layer, source in zip(self.model, self.sources, strict=True):
            if isinstance(source, list):
                current = [current if j == -1 else outputs[j] for j in source]
            elif source != -1:
                current = outputs[source]
            current = layer(current)
            outputs.append(current)
        result: torch.Tensor = current
        return result

    def fuse(self) -> YoloDetector:
        """Fold every BatchNorm into its conv (eval only; the state dict's keys change)."""
        for m in self.modules():
            if isinstance(m, Conv):
                m.fuse()
        return self


def _arg(args: Sequence[Any], i: int, default: Any) -> Any:
    value = args[i] if len(args) > i else default
    return default if value in (None, "None") else value


def _build_rows(
    arch: Mapping[str, Any], strides: Sequence[float]
) -> tuple[list[nn.Module], list[int | list[int]]]:
    """Modules and input sources of each row, with Ultralytics' depth and width scaling."""
    unsupported = [k for k in ("activation", "end2end", "kpt_shape") if arch.get(k)]
    if unsupported:
        raise WeightsError(f"YOLO architecture with {unsupported} is not supported")
    nc = int(arch["nc"])
    scale = arch.get("scale") or ""
    scales = arch.get("scales")
    if scales:
        scale = scale or next(iter(scales))  # Ultralytics' choice when none is recorded
        depth, width, max_channels = scales[scale]
    else:
        depth = arch.get("depth_multiple", 1.0)
        width = arch.get("width_multiple", 1.0)
        max_channels = math.inf
    rows = [*arch["backbone"], *arch["head"]]
    channels: list[int] = [3]
    layers: list[nn.Module] = []
    sources: list[int | list[int]] = []
    for i, (source, repeats, name, args) in enumerate(rows):
        n = max(round(repeats * depth), 1) if repeats > 1 else repeats
        if isinstance(source, list):
            source = [int(j) for j in source]
            cin = channels[source[0]]
        else:
            source = int(source)
            cin = channels[source]
        module: nn.Module
        if name in ("Conv", "C3k2", "SPPF", "C2PSA"):
            cout = make_divisible(min(args[0], max_channels) * width, 8)
            if name == "Conv":
                module = Conv(cin, cout, _arg(args, 1, 1), _arg(args, 2, 1))
            elif name == "C3k2":
                c3k = bool(_arg(args, 1, False)) or scale in ("m", "l", "x")
                module = C3k2(cin, cout, n, c3k, float(_arg(args, 2, 0.5)))
            elif name == "SPPF":
                if len(args) > 2:  # later SPPF rows (YOLO26) change the block
                    raise WeightsError(f"YOLO row {i}: SPPF with arguments {args} is not supported")
                module = SPPF(cin, cout, int(_arg(args, 1, 5)))
            else:
                module = C2PSA(cin, cout, n)
        elif name == "nn.Upsample":
            if _arg(args, 2, "nearest") != "nearest":
                raise WeightsError(f"YOLO row {i}: only nearest upsampling is supported")
            module, cout = Upsample(int(args[1])), cin
        elif name == "Concat":
            if not isinstance(source, list) or _arg(args, 0, 1) != 1:
                raise WeightsError(f"YOLO row {i}: only channel concatenation is supported")
            module, cout = Concat(), sum(channels[j] for j in source)
        elif name in _HEADS and i == len(rows) - 1:
            levels = source if isinstance(source, list) else [source]
            bins = int(arch.get("reg_max", 16))
            module = Detect(nc, [channels[j] for j in levels], strides, bins)
            cout = 0
        else:
            raise WeightsError(
                f"YOLO row {i}: module {name!r} is not supported",
                hint="postergenre reads YOLO11 checkpoints (e.g. yolo11n-seg.pt)",
            )
        layers.append(module)
        sources.append(source)
        if i == 0:
            channels = []
        channels.append(cout)
    return layers, sources


def build_detector(
    state: Mapping[str, torch.Tensor], meta: Mapping[str, str], fuse: bool = True
) -> tuple[YoloDetector, list[str]]:
    """The network described by ``meta`` (what :func:`detector_metadata` wrote), with the
    weights ``state`` loaded strictly; in eval mode, frozen, BN folded when ``fuse``."""
    if meta.get("format") != FORMAT:
        raise WeightsError(f"converted YOLO weights: format {meta.get('format')!r}, need {FORMAT}")
    try:
        arch = json.loads(meta["arch"])
        names = [str(n) for n in json.loads(meta["names"])]
        strides = [float(s) for s in json.loads(meta["strides"])]
    except (KeyError, ValueError, TypeError) as exc:
        raise WeightsError(f"converted YOLO weights: unreadable metadata ({exc})") from exc
    net = YoloDetector(arch, strides)
    try:
        net.load_state_dict(dict(state), strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"converted YOLO weights do not fit the network: {exc}") from exc
    if len(names) != net.nc:
        raise WeightsError(f"converted YOLO weights: {len(names)} names for {net.nc} classes")
    net.eval()
    if fuse:
        net.fuse()
    for param in net.parameters():
        param.requires_grad_(False)
    return net, names


def detector_metadata(
    arch: Mapping[str, Any], names: Sequence[str], strides: Sequence[float], source_sha256: str
) -> dict[str, str]:
    """What a converted weights file records besides the tensors (all strings)."""
    return {
        "format": FORMAT,
        "arch": json.dumps(arch),
        "names": json.dumps(list(names)),
        "strides": json.dumps([float(s) for s in strides]),
        "source_sha256": source_sha256,
    }


def detection_arch(arch: Mapping[str, Any]) -> dict[str, Any]:
    """``arch`` with its last row (a Detect or Segment head) made a plain Detect head."""
    out = json.loads(json.dumps(arch))  # a deep copy of plain data
    source, repeats, name, _ = out["head"][-1]
    if name not in _HEADS:
        raise WeightsError(f"YOLO checkpoint has a {name} head, expected one of {_HEADS}")
    out["head"][-1] = [source, repeats, "Detect", ["nc"]]
    return out


def detector_state(
    net: YoloDetector, source: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The tensors of ``source`` (a checkpoint's state dict) that ``net`` (unfused) needs."""
    wanted = net.state_dict()
    lacking = [k for k, v in wanted.items() if k not in source or source[k].shape != v.shape]
    if lacking:
        raise WeightsError(f"YOLO checkpoint lacks detector weights {lacking[:3]}...")
    return {k: source[k].detach().contiguous() for k in wanted}
