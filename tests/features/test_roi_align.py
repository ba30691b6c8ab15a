"""Our RoIAlign samples exactly as torchvision.ops.roi_align does."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from postergenre.features.roi_align import roi_align  # noqa: E402


def _random_boxes(g: torch.Generator, k: int, height: int, width: int) -> torch.Tensor:
    size = torch.tensor([width, height, width, height], dtype=torch.float32)
    # Corners from 20% outside the image to 20% past it, then ordered.
    corners = torch.rand(k, 4, generator=g) * size * 1.4 - size * 0.2
    x0, x1 = corners[:, [0, 2]].min(dim=1).values, corners[:, [0, 2]].max(dim=1).values
    y0, y1 = corners[:, [1, 3]].min(dim=1).values, corners[:, [1, 3]].max(dim=1).values
    boxes = torch.stack([x0, y0, x1, y1], dim=1)
    boxes[0] = torch.tensor([0.0, 0.0, width, height])  # the whole image
    boxes[1] = torch.tensor([width - 3.0, height - 5.0, width, height])  # a corner, on the border
    boxes[2] = torch.minimum(boxes[2].clamp(min=0), size)  # clipped, as crop_faces does
    boxes[3] = torch.tensor([0.0, height / 3, width / 2, height])  # touching left and bottom
    return boxes


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize(
    ("output_size", "sampling_ratio", "aligned"),
    [(64, -1, True), (7, -1, True), ((5, 9), 2, True), (64, -1, False), ((3, 4), 0, False)],
)
def test_matches_torchvision(
    seed: int, output_size: int | tuple[int, int], sampling_ratio: int, aligned: bool
) -> None:
    ops = pytest.importorskip("torchvision.ops", reason="torchvision is the reference")
    g = torch.Generator().manual_seed(seed)
    height, width = (int(v) for v in torch.randint(1, 400, (2,), generator=g))
    images = torch.rand(2, 3, height, width, generator=g) * 2 - 1
    boxes = [_random_boxes(g, 6, height, width), _random_boxes(g, 4, height, width)]
    ours = roi_align(images, boxes, output_size, 1.0, sampling_ratio, aligned)
    theirs = ops.roi_align(
        images, boxes, output_size, 1.0, sampling_ratio=sampling_ratio, aligned=aligned
    )
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_spatial_scale_and_an_image_without_boxes() -> None:
    ops = pytest.importorskip("torchvision.ops", reason="torchvision is the reference")
    g = torch.Generator().manual_seed(1)
    images = torch.rand(2, 1, 50, 70, generator=g)
    boxes = [torch.zeros((0, 4)), torch.tensor([[10.0, 20.0, 130.0, 90.0], [0.0, 0.0, 140, 100]])]
    ours = roi_align(images, boxes, 16, 0.5, -1, True)
    theirs = ops.roi_align(images, boxes, 16, 0.5, sampling_ratio=-1, aligned=True)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_a_constant_image_pools_to_its_value_and_empty_boxes_to_zero() -> None:
    image = torch.full((1, 1, 30, 20), 0.25)
    boxes = [torch.tensor([[0.0, 0.0, 20.0, 30.0], [5.0, 5.0, 5.0, 9.0]])]
    out = roi_align(image, boxes, 8, sampling_ratio=-1, aligned=True)
    assert torch.allclose(out[0], torch.full((1, 8, 8), 0.25))
    assert not out[1].any()  # zero width: no samples
    assert roi_align(image, [torch.zeros((0, 4))], 8).shape == (0, 1, 8, 8)


def test_bad_inputs_are_value_errors() -> None:
    with pytest.raises(ValueError, match="expected \\(N, C, H, W\\)"):
        roi_align(torch.zeros((1, 5, 5)), [torch.zeros((1, 4))], 2)
    with pytest.raises(ValueError, match="expected \\(K, 4\\)"):
        roi_align(torch.zeros((1, 1, 5, 5)), [torch.zeros((1, 5))], 2)
