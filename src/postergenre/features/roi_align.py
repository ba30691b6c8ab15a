"""RoIAlign (Mask R-CNN's bilinear box pooling) in plain torch, without torchvision.

The sampling is that of ``torchvision.ops.roi_align``: each box is split into
``output_size`` bins; each bin averages a ``gh x gw`` grid of bilinear samples, where the
grid is ``sampling_ratio`` per axis or, when that is <= 0, ``ceil(box side / output
side)`` (adaptive: an anti-aliased resize). With ``aligned`` the box is shifted by half a
pixel so that pixel centres sit at integer + 0.5. A sample more than one pixel outside
the image is 0; one within a pixel of the border is clamped onto it.

Bilinear sampling on a separable grid is separable, and so is the outside-the-image rule,
so each box's output is ``Ay @ image @ Ax.T``, with ``Ay`` (output rows x H) and ``Ax``
(output columns x W) holding the summed interpolation weights of the samples of each bin:
two small matrix products instead of a gather per sample. The sample positions are
computed in float32 in torchvision's order of operations; weights and products in float64.

This module imports torch at the top; it is imported only inside extractors' inference code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def _axis_weights(
    start: torch.Tensor, length: torch.Tensor, bins: int, grid: int, size: int
) -> torch.Tensor:
    """(bins, size) float64: per bin, the summed bilinear weights of its ``grid`` samples
    along one axis of ``size`` pixels; ``start`` and ``length`` are float32 scalars."""
    device = start.device
    bin_size = length / bins
    bin_index = torch.arange(bins, device=device, dtype=torch.float32)[:, None]
    sub = torch.arange(grid, device=device, dtype=torch.float32)[None, :] + 0.5
    pos = start + bin_index * bin_size + sub * bin_size / grid  # (bins, grid), float32
    inside = (pos >= -1.0) & (pos <= size)
    pos = pos.clamp(min=0)
    low = pos.floor().long()  # pos >= 0: the truncation torchvision does
    at_end = low >= size - 1
    low = torch.where(at_end, size - 1, low)
    high = torch.where(at_end, size - 1, low + 1)
    pos = torch.where(at_end, low.to(pos.dtype), pos)
    frac_high = (pos - low.to(pos.dtype)).double()
    frac_low = 1.0 - frac_high
    mask = inside.double()
    weights = torch.zeros((bins, size), dtype=torch.float64, device=device)
    weights.scatter_add_(1, low, frac_low * mask)
    weights.scatter_add_(1, high, frac_high * mask)
    return weights


def roi_align(
    images: torch.Tensor,
    boxes: Sequence[torch.Tensor],
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> torch.Tensor:
    """Pool each box of each image to a fixed grid; same values as torchvision's ``roi_align``.

    ``images`` (N, C, H, W) float; ``boxes``: per image a (K_i, 4) tensor of (x0, y0, x1, y1)
    in input pixels (times ``spatial_scale``). Returns (sum K_i, C, out_h, out_w) in the
    dtype of ``images``, boxes in order.
    """
    if images.ndim != 4 or len(boxes) != images.shape[0]:
        raise ValueError(
            f"roi_align: expected (N, C, H, W) images and N box tensors, got shape "
            f"{tuple(images.shape)} and {len(boxes)} box tensors"
        )
    out_h, out_w = (output_size, output_size) if isinstance(output_size, int) else output_size
    _, channels, height, width = images.shape
    offset = 0.5 if aligned else 0.0
    pooled: list[torch.Tensor] = []
    for image, image_boxes in zip(images, boxes, strict=True):
        if image_boxes.ndim != 2 or image_boxes.shape[1] != 4:
            raise ValueError(f"roi_align: expected (K, 4) boxes, got {tuple(image_boxes.shape)}")
        pixels = image.double()
        for box in image_boxes.to(device=images.device, dtype=torch.float32):
            x0, y0 = box[0] * spatial_scale - offset, box[1] * spatial_scale - offset
            box_w = box[2] * spatial_scale - offset - x0
            box_h = box[3] * spatial_scale - offset - y0
            if not aligned:  # legacy mode: boxes at least a pixel wide
                box_w, box_h = box_w.clamp(min=1.0), box_h.clamp(min=1.0)
            grid_h = sampling_ratio if sampling_ratio > 0 else math.ceil(float(box_h / out_h))
            grid_w = sampling_ratio if sampling_ratio > 0 else math.ceil(float(box_w / out_w))
            if grid_h <= 0 or grid_w <= 0:  # an empty box samples nothing
                pooled.append(images.new_zeros((channels, out_h, out_w)))
                continue
            rows = _axis_weights(y0, box_h, out_h, grid_h, height)
            cols = _axis_weights(x0, box_w, out_w, grid_w, width)
            value = rows @ pixels @ cols.T / (grid_h * grid_w)  # (C, out_h, out_w)
            pooled.append(value.to(images.dtype))
    if not pooled:
        return images.new_zeros((0, channels, out_h, out_w))
    return torch.stack(pooled)
