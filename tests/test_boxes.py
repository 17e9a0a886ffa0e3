"""NMS and crop resizing against plain reference implementations."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from facepose.boxes import box_overlap, nms, square
from facepose.crops import crop_resize, crop_windows, cut_crops, integral_image, padded_crops


def greedy_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str, plus_one: bool) -> list[int]:
    one = 1.0 if plus_one else 0.0
    area = (boxes[:, 2] - boxes[:, 0] + one) * (boxes[:, 3] - boxes[:, 1] + one)
    order = list(np.argsort(-scores, kind="stable"))
    keep = []
    while order:
        i = order.pop(0)
        keep.append(i)
        rest = []
        for j in order:
            w = max(0.0, min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0]) + one)
            h = max(0.0, min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1]) + one)
            inter = w * h
            denom = min(area[i], area[j]) if mode == "min" else area[i] + area[j] - inter
            if inter / denom <= threshold:
                rest.append(j)
        order = rest
    return keep


def random_boxes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * 200
    wh = torch.rand(n, 2, generator=g, dtype=torch.float64) * 60 + 5
    return torch.cat((xy, xy + wh), 1), torch.rand(n, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("mode,plus_one,threshold", [("union", False, 0.5), ("union", False, 0.7), ("min", True, 0.7)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nms_equals_greedy_reference(mode, plus_one, threshold, seed):
    boxes, scores = random_boxes(300, seed)
    expected = greedy_nms(boxes.numpy(), scores.numpy(), threshold, mode, plus_one)
    got = nms(boxes, scores, threshold, mode, plus_one)
    assert got.tolist() == expected


@pytest.mark.parametrize("mode,plus_one", [("union", False), ("min", True)])
def test_nms_on_neighbours_only_gives_the_same_answer(mode, plus_one):
    """Beyond ``dense_up_to`` boxes, NMS compares only boxes whose x-ranges meet: the same boxes kept."""
    boxes, scores = random_boxes(700, 5)
    boxes = boxes.float()
    boxes[::7, 2] = boxes[::7, 0] + 1  # thin boxes whose right edge sits where others start
    expected = greedy_nms(boxes.numpy(), scores.numpy(), 0.5, mode, plus_one)
    assert nms(boxes, scores, 0.5, mode, plus_one, dense_up_to=1000).tolist() == expected
    assert nms(boxes, scores, 0.5, mode, plus_one, dense_up_to=0).tolist() == expected


def test_nms_empty():
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).numel() == 0


def test_overlap_values():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    b = torch.tensor([[5.0, 0.0, 15.0, 10.0], [0.0, 0.0, 5.0, 5.0]])
    assert box_overlap(a, b).tolist()[0] == pytest.approx([50 / 150, 25 / 100])
    assert box_overlap(a, b, mode="min").tolist()[0] == pytest.approx([0.5, 1.0])


def test_square_keeps_centre():
    s = square(torch.tensor([[10.0, 20.0, 30.0, 60.0]]))
    assert s.tolist() == [[0.0, 20.0, 40.0, 60.0]]


def test_crop_resize_equals_area_interpolation_per_crop():
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, 97, 131), generator=g).float()
    boxes = torch.tensor([[5.0, 7.0, 60.0, 62.0], [-10.0, -4.0, 30.0, 36.0], [100.0, 60.0, 150.0, 110.0], [3.2, 4.9, 9.7, 11.1]])
    windows = crop_windows(boxes, 131, 97)
    got = crop_resize(integral_image(image), windows, 24)
    for k, (x0, y0, x1, y1) in enumerate(windows.tolist()):
        expected = F.interpolate(image[None, :, y0:y1, x0:x1], size=(24, 24), mode="area")[0]
        assert torch.allclose(got[k], expected, atol=1e-4)


@pytest.mark.parametrize("size, side", [(24, 97), (2, 600)], ids=["float32 sums", "bins over 65,793 px: float64"])
def test_crop_resize_is_the_correctly_rounded_bin_mean(size, side):
    """Each output is its bin's mean correctly rounded to float32, also where a bin's sum exceeds
    float32's exact integers; crops come out channels-last."""
    g = torch.Generator().manual_seed(1)
    image = torch.randint(200, 256, (3, side, side + 3), generator=g).float()  # bright: big sums
    windows = torch.tensor([[0, 0, side + 3, side], [1, 2, side // 2 + 7, side // 2 + 5]])
    got = crop_resize(integral_image(image), windows, size)
    assert got.is_contiguous(memory_format=torch.channels_last)
    for k, (x0, y0, x1, y1) in enumerate(windows.tolist()):
        for i in range(size):
            r0, r1 = y0 + i * (y1 - y0) // size, y0 + -(-(i + 1) * (y1 - y0) // size)
            for j in range(size):
                c0, c1 = x0 + j * (x1 - x0) // size, x0 + -(-(j + 1) * (x1 - x0) // size)
                exact = image[:, r0:r1, c0:c1].double().sum((1, 2)) / ((r1 - r0) * (c1 - c0))
                assert torch.equal(got[k, :, i, j], exact.float()), (k, i, j)


def test_padded_crops_match_the_integral_image_inside_and_pad_black_outside():
    """The tracker's crops: inside the image the same means as ``cut_crops`` (to float32 rounding); a box
    that leaves the image is cut whole with black where it is outside, not stretched from what is visible."""
    g = torch.Generator().manual_seed(3)
    image = torch.randint(0, 256, (1, 3, 90, 120), generator=g, dtype=torch.uint8)
    inside = torch.tensor([[10.4, 12.0, 70.9, 73.2], [50.0, 20.0, 100.0, 70.0]])
    crops, valid = padded_crops(image, inside, 24)
    expected, _ = cut_crops(integral_image(image[0]), inside, 24)
    assert valid.all() and torch.allclose(crops, expected, atol=1e-4, rtol=0)
    half_out = torch.tensor([[-39.0, 0.0, 41.0, 80.0]])  # window x from -40 to 41: the left half is outside
    crop, _ = padded_crops(image, half_out, 48)
    assert crop[0, :, :, :23].eq(0).all() and crop[0, :, :, 25:].gt(0).any()
    assert padded_crops(image, torch.tensor([[5.0, 5.0, 5.5, 30.0]]), 24)[1].tolist() == [False]  # empty window
