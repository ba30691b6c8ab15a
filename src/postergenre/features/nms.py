"""Class-aware greedy non-maximum suppression, without torchvision.

:func:`batched_nms` keeps the same boxes, in the same order, as
``torchvision.ops.batched_nms``: within each group, boxes are visited best score first
(ties in input order), a box is kept unless a kept box of its group overlaps it with an
IoU strictly above the threshold, and the kept boxes come back best score first. IoUs are
computed in the boxes' own dtype, term by term as torchvision's CPU kernel does, and
compared with the threshold in double precision, so borderline boxes fall the same way.
(For small inputs torchvision shifts each group's boxes apart by a coordinate offset and
runs one NMS, which rounds coordinates when the offsets are large; here every group is
suppressed separately, which is exactly its behaviour for large inputs.)

The greedy loop runs on the CPU in NumPy: it visits boxes one at a time, which a GPU does
badly, and detectors hand it at most a few hundred candidates per image.

This module imports torch at the top; it is imported only inside extractors' ``load``
and inference code.
"""

from __future__ import annotations

import numpy as np
import torch


def _greedy(boxes: np.ndarray, threshold: float) -> list[int]:
    """Positions kept among ``boxes`` (m, 4) xyxy, which are sorted best score first."""
    x0, y0, x1, y1 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x1 - x0) * (y1 - y0)
    suppressed = np.zeros(len(boxes), dtype=bool)
    keep: list[int] = []
    for i in range(len(boxes)):
        if suppressed[i]:
            continue
        keep.append(i)
        rest = slice(i + 1, None)
        w = np.maximum(np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]), 0)
        h = np.maximum(np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]), 0)
        inter = w * h
        # Zero-area pairs give 0/0 = NaN, which suppresses nothing (as in torchvision).
        iou = inter / (areas[i] + areas[rest] - inter)
        suppressed[rest] |= iou.astype(np.float64) > threshold
    return keep


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """Indices (int64, on ``boxes``' device) of the boxes kept, best score first.

    ``boxes`` (n, 4) as (x0, y0, x1, y1); ``scores`` (n,); ``groups`` (n,) integers: boxes
    of different groups (classes, images) never suppress each other.
    """
    n = boxes.shape[0]
    if boxes.ndim != 2 or boxes.shape[1] != 4 or scores.shape != (n,) or groups.shape != (n,):
        raise ValueError(
            "batched_nms: expected boxes (n, 4), scores (n,) and groups (n,), got "
            f"{tuple(boxes.shape)}, {tuple(scores.shape)} and {tuple(groups.shape)}"
        )
    if n == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    b = boxes.detach().cpu().numpy()
    s = scores.detach().cpu().numpy()
    g = groups.detach().cpu().numpy()
    # Best score first, ties in input order; then gathered by group, keeping that order.
    order = np.argsort(-s, kind="stable")
    order = order[np.argsort(g[order], kind="stable")]
    starts = np.flatnonzero(np.r_[True, g[order][1:] != g[order][:-1]])
    ends = np.r_[starts[1:], n]
    kept: list[np.ndarray] = []
    with np.errstate(invalid="ignore", divide="ignore"):
        for start, end in zip(starts, ends, strict=True):
            members = order[start:end]
            if len(members) == 1:
                kept.append(members)
            else:
                kept.append(members[_greedy(b[members], float(iou_threshold))])
    keep = np.sort(np.concatenate(kept))
    keep = keep[np.argsort(-s[keep], kind="stable")]
    return torch.from_numpy(keep.astype(np.int64)).to(boxes.device)
