"""Port fidelity: with O-Net as last stage the cascade reproduces facenet-pytorch's MTCNN.detect."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from PIL import Image

from facepose import FacePoseDetector, load_image
from facepose.boxes import box_overlap
from facepose.weights import WEIGHTS_DIR

from .conftest import PHOTOS, needs_photos

if importlib.util.find_spec("facenet_pytorch") is None:
    pytest.skip("needs: pip install --no-deps facenet-pytorch==2.6.0", allow_module_level=True)


@pytest.mark.slow  # end to end against facenet-pytorch on every photo
@needs_photos
def test_same_boxes_as_facenet_pytorch():
    from support.reference_mtcnn import facenet_mtcnn

    reference = facenet_mtcnn()
    ours = FacePoseDetector(weights=WEIGHTS_DIR / "onet.safetensors")
    photos = sorted(p for p in PHOTOS.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    assert len(photos) >= 20
    total = 0
    for path in photos:
        pixels = load_image(path)
        ref_boxes, _ = reference.detect(Image.fromarray(pixels))
        ref_boxes = np.zeros((0, 4), np.float32) if ref_boxes is None else np.asarray(ref_boxes, np.float32)
        faces = ours.detect(pixels)
        assert len(faces) == len(ref_boxes), path.name
        if len(faces):
            iou = box_overlap(torch.from_numpy(ref_boxes), torch.tensor([f.box for f in faces]))
            assert iou.max(1).values.min().item() >= 0.95, path.name
        total += len(faces)
    assert total > 100
