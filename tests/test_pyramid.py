"""The image pyramid that P-Net scans: MTCNN's scales, and the resized levels."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from facepose.crops import integral_image
from facepose.pyramid import pyramid_level, pyramid_scales


def test_scales_follow_mtcnn():
    """First scale maps a min_face_size face to P-Net's 12 px; each next is factor times smaller; the last
    level's short side is still at least 12 px, one more step would go under."""
    scales = pyramid_scales(480, 640, 20, 0.709)
    assert scales[0] == pytest.approx(12 / 20)
    assert all(b / a == pytest.approx(0.709) for a, b in zip(scales, scales[1:]))
    assert 480 * scales[-1] >= 12 > 480 * scales[-1] * 0.709
    assert len(scales) == 10  # 288 px short side at the first level, 288 * 0.709**9 = 12.6 px at the last


def test_more_levels_for_smaller_faces_and_finer_steps():
    assert len(pyramid_scales(480, 640, 12, 0.709)) > len(pyramid_scales(480, 640, 20, 0.709))
    assert len(pyramid_scales(480, 640, 20, 0.8)) > len(pyramid_scales(480, 640, 20, 0.709))


def test_image_smaller_than_the_face_has_no_level():
    assert pyramid_scales(15, 15, 20, 0.709) == []
    assert pyramid_scales(20, 300, 20, 0.709) == [pytest.approx(0.6)]  # 12 px short side: one level


def test_bad_arguments():
    with pytest.raises(ValueError, match="factor"):
        pyramid_scales(100, 100, 20, 1.0)
    with pytest.raises(ValueError, match="min_face_size"):
        pyramid_scales(100, 100, 0, 0.709)


def test_level_is_area_resampled_to_the_scaled_size():
    image = torch.arange(3 * 10 * 8, dtype=torch.float32).reshape(3, 10, 8)
    level = pyramid_level(integral_image(image), 0.5)
    assert level.shape == (1, 3, 6, 5)  # int(10 * 0.5 + 1), int(8 * 0.5 + 1)
    flat = torch.full((3, 40, 30), 77.0)
    assert torch.equal(pyramid_level(integral_image(flat), 0.3), torch.full((1, 3, 13, 10), 77.0))  # flat stays flat


@pytest.mark.parametrize("height, width", [(480, 640), (845, 1280), (333, 517), (37, 100)])
def test_level_equals_torch_area_interpolation_bit_for_bit(height, width):
    """Every level of MTCNN's pyramid equals ``F.interpolate(mode="area")`` of the image exactly: same bins,
    same float32 rounding, so the detector finds what facenet-pytorch's resampling would give it."""
    image = torch.randint(0, 256, (3, height, width), generator=torch.Generator().manual_seed(height)).float()
    ii = integral_image(image)
    for scale in pyramid_scales(height, width, 20, 0.709):
        size = (int(height * scale + 1), int(width * scale + 1))
        assert torch.equal(pyramid_level(ii, scale), F.interpolate(image[None], size=size, mode="area"))
