"""Our class-aware NMS keeps the boxes torchvision keeps, in torchvision's order."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from postergenre.features.nms import batched_nms  # noqa: E402


def _random_case(
    rng: np.random.Generator, n: int, n_groups: int, quantised: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    xy = rng.uniform(0, 400, (n, 2))
    wh = rng.uniform(0, 120, (n, 2))
    if quantised:  # quarter pixels: torchvision's group offsets then add no rounding
        xy, wh = np.round(xy * 4) / 4, np.round(wh * 4) / 4
    boxes = torch.tensor(np.c_[xy, xy + wh], dtype=torch.float32)
    scores = torch.tensor(rng.uniform(0, 1, n), dtype=torch.float32)
    groups = torch.tensor(rng.integers(0, n_groups, n))
    return boxes, scores, groups


def test_a_hand_made_case() -> None:
    boxes = torch.tensor(
        [
            [0.0, 0.0, 10.0, 10.0],  # best of group 0
            [1.0, 1.0, 11.0, 11.0],  # IoU 0.68 with the first: suppressed
            [5.0, 0.0, 15.0, 10.0],  # IoU 1/3 with the first: kept
            [0.0, 0.0, 10.0, 10.0],  # same box, other group: kept
        ]
    )
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    groups = torch.tensor([0, 0, 0, 1])
    assert batched_nms(boxes, scores, groups, 0.5).tolist() == [3, 0, 2]
    assert batched_nms(boxes, scores, groups, 0.2).tolist() == [3, 0]
    assert batched_nms(boxes, scores, torch.zeros(4, dtype=torch.int64), 0.5).tolist() == [3, 2]


def test_empty_input_and_bad_shapes() -> None:
    kept = batched_nms(torch.zeros((0, 4)), torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.5)
    assert kept.dtype == torch.int64 and kept.shape == (0,)
    with pytest.raises(ValueError, match="expected boxes"):
        batched_nms(torch.zeros((3, 5)), torch.zeros(3), torch.zeros(3), 0.5)


@pytest.mark.parametrize("seed", range(12))
def test_same_kept_boxes_and_order_as_torchvision(seed: int) -> None:
    ops = pytest.importorskip("torchvision.ops", reason="torchvision is the reference")
    rng = np.random.default_rng(seed)
    # Small inputs go through torchvision's coordinate-offset path, large ones (> 1000
    # boxes) through its per-class loop; both must agree with ours.
    n = int(rng.choice([1, 7, 60, 400, 1500]))
    threshold = float(rng.choice([0.3, 0.45, 0.5, 0.7]))
    boxes, scores, groups = _random_case(rng, n, int(rng.integers(1, 40)), quantised=True)
    if seed % 3 == 0:
        scores = torch.round(scores * 8) / 8  # many ties: broken by input order
    ours = batched_nms(boxes, scores, groups, threshold)
    theirs = ops.batched_nms(boxes, scores, groups, threshold)
    if n > 1000 and seed % 3 == 0:
        # torchvision's per-class path sorts its result unstably: only the set is defined.
        assert sorted(ours.tolist()) == sorted(theirs.tolist())
    else:
        assert ours.tolist() == theirs.tolist()
    assert 0 < len(ours) <= n


@pytest.mark.parametrize("seed", range(6))
def test_each_group_is_plain_nms(seed: int) -> None:
    ops = pytest.importorskip("torchvision.ops", reason="torchvision is the reference")
    rng = np.random.default_rng(100 + seed)
    boxes, scores, groups = _random_case(rng, 300, 5, quantised=False)
    ours = batched_nms(boxes, scores, groups, 0.5)
    for g in range(5):
        members = torch.nonzero(groups == g).flatten()
        theirs = members[ops.nms(boxes[members], scores[members], 0.5)]
        assert ours[groups[ours] == g].tolist() == theirs.tolist()


def test_a_borderline_overlap_falls_as_in_torchvision() -> None:
    ops = pytest.importorskip("torchvision.ops", reason="torchvision is the reference")
    # IoU exactly 0.5 in float32 (25 / 50): 0.5 is not "above 0.5", so both are kept; an
    # IoU of float32(0.4) is above the double 0.4, so the second box goes.
    boxes = torch.tensor([[0.0, 0.0, 10.0, 5.0], [0.0, 0.0, 5.0, 5.0]])
    scores = torch.tensor([0.9, 0.8])
    groups = torch.zeros(2, dtype=torch.int64)
    for threshold in (0.5, 0.4999, 0.4):
        assert (
            batched_nms(boxes, scores, groups, threshold).tolist()
            == ops.batched_nms(boxes, scores, groups, threshold).tolist()
        )


def test_cuda_tensors_come_back_on_their_device() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0]], device="cuda")
    scores = torch.tensor([0.5, 0.9], device="cuda")
    kept = batched_nms(boxes, scores, torch.zeros(2, device="cuda"), 0.5)
    assert kept.device.type == "cuda" and kept.tolist() == [1]
