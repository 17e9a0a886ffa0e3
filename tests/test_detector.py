"""The detector on real photos: faces found, geometry of the output, input types."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from facepose import Face, FacePoseDetector, load_image
from facepose.boxes import box_overlap

from .conftest import PHOTOS, needs_photos

# photo -> faces a person counts in it (all clearly visible, at least 20 px)
EXPECTED_FACES = {
    "matplotlib_grace_hopper.jpg": 1,
    "skimage_astronaut_eileen_collins.png": 1,
    "nasa_astronaut_class_photo_b.png": 8,
    "nasa_iss_expedition_1.jpg": 3,
    "nasa_iss_sts_98_spacewalkers.jpg": 2,
    "pexels_women_on_phones.jpg": 2,
    "nasa_iss_soyuz_tma_10m.jpg": 0,
}


def iou(a, b) -> float:
    return box_overlap(torch.tensor([a]), torch.tensor([b]))[0, 0].item()


@needs_photos
@pytest.mark.parametrize("name,count", sorted(EXPECTED_FACES.items()))
def test_counts_faces(detector, name, count):
    faces = detector.detect(PHOTOS / name)
    assert len(faces) == count


@needs_photos
def test_pose_leaves_detection_as_o_nets(detector):
    """FPNet's pose part was trained with O-Net's weights frozen: on real photos the packaged detector
    finds exactly the boxes, scores and landmarks of MTCNN with its original O-Net (its faces lean less than
    20 degrees: a face leaning more gets the landmarks O-Net places in its crop turned upright)."""
    from facepose.weights import WEIGHTS_DIR

    onet = FacePoseDetector(weights=WEIGHTS_DIR / "onet.safetensors")
    total = 0
    for name in sorted(EXPECTED_FACES):
        ours, theirs = detector.detect(PHOTOS / name), onet.detect(PHOTOS / name)
        assert [(f.box, f.score, f.landmarks) for f in ours] == [(f.box, f.score, f.landmarks) for f in theirs], name
        assert all(f.yaw is not None for f in ours) and all(f.yaw is None for f in theirs)
        total += len(ours)
    assert total == sum(EXPECTED_FACES.values())


@needs_photos
def test_face_fields_and_geometry(detector):
    path = PHOTOS / "nasa_astronaut_class_photo_b.png"
    width, height = Image.open(path).size
    faces = detector.detect(path)
    assert faces and all(isinstance(f, Face) for f in faces)
    scores = [f.score for f in faces]
    assert scores == sorted(scores, reverse=True) and all(0.7 < s <= 1 for s in scores)
    for f in faces:
        x1, y1, x2, y2 = f.box
        assert -1 <= x1 < x2 <= width + 1 and -1 <= y1 < y2 <= height + 1
        assert len(f.landmarks) == 5
        (lex, ley), (rex, rey), (nx, ny), (mlx, mly), (mrx, mry) = f.landmarks
        assert x1 <= lex < rex <= x2 and x1 <= mlx < mrx <= x2  # left before right as displayed
        assert max(ley, rey) < ny < min(mly, mry)  # eyes above nose above mouth
        assert set(f.to_dict()) == {"box", "score", "landmarks", "rotation", "yaw", "pitch", "roll"}


@needs_photos
def test_untrained_pose_head_reports_no_angles(tmp_path):
    """Weights whose rotation head is marked untrained give boxes but no (meaningless) angles."""
    from facepose.nets import FPNetBranch
    from facepose.weights import WEIGHTS_DIR, load_last_stage, save_net

    fpnet = FPNetBranch()
    fpnet.load_state_dict(load_last_stage(WEIGHTS_DIR / "onet.safetensors")[0].state_dict(), strict=False)
    path = save_net(fpnet, tmp_path / "untrained.safetensors", {"pose": "untrained"})
    det = FacePoseDetector(weights=path)
    faces = det.detect(PHOTOS / "matplotlib_grace_hopper.jpg")
    assert not det.pose_available and len(faces) == 1
    assert faces[0].rotation is None and faces[0].yaw is None and faces[0].pitch is None and faces[0].roll is None


@needs_photos
def test_input_types_agree(detector):
    path = PHOTOS / "matplotlib_grace_hopper.jpg"
    pil = Image.open(path)
    array = np.asarray(pil.convert("RGB"))
    boxes = [detector.detect(x)[0].box for x in (path, str(path), pil, array)]
    assert all(b == boxes[0] for b in boxes)


@needs_photos
def test_grayscale_palette_rgba_and_16_bit(detector):
    gray = Image.open(PHOTOS / "skimage_camera_cameraman.png")
    assert gray.mode == "L" and len(detector.detect(gray)) == 1
    sixteen = Image.fromarray(np.asarray(gray).astype(np.uint16) * 257)
    assert sixteen.mode.startswith("I")
    assert detector.detect(sixteen)[0].box == detector.detect(gray)[0].box
    palette = Image.open(PHOTOS / "nasa_astronaut_class_photo_b.png")
    assert palette.mode == "P" and len(detector.detect(palette)) == 8
    rgba = Image.open(PHOTOS / "ibm_max_Luciano.png")
    assert rgba.mode == "RGBA" and len(detector.detect(rgba)) == 1
    assert len(detector.detect(np.asarray(rgba))) == 1


@needs_photos
def test_exif_orientation_is_honoured(detector, tmp_path):
    upright = Image.open(PHOTOS / "matplotlib_grace_hopper.jpg")
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what a sideways camera writes
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "sideways.jpg"
    stored.save(path, exif=exif, quality=95)
    assert load_image(path).shape == (upright.height, upright.width, 3)
    faces = detector.detect(path)
    assert len(faces) == 1 and iou(faces[0].box, detector.detect(upright)[0].box) > 0.9


def test_parameters_are_checked():
    with pytest.raises(ValueError, match="min_face_size"):
        FacePoseDetector(min_face_size=5)
    with pytest.raises(ValueError, match="factor"):
        FacePoseDetector(factor=1.5)
    with pytest.raises(ValueError, match="rnet_threshold"):
        FacePoseDetector(rnet_threshold=7)


@needs_photos
def test_min_face_size_and_threshold_change_results():
    path = PHOTOS / "nasa_iss_iss_partners_tour_kennedy_space_center.jpg"
    many = FacePoseDetector().detect(path)
    fewer = FacePoseDetector(min_face_size=60).detect(path)
    strict = FacePoseDetector(fpnet_threshold=0.999).detect(path)
    assert len(fewer) < len(many) and len(strict) < len(many)
    assert all(f.box[2] - f.box[0] > 30 for f in fewer)


def test_cuda_request_without_gpu_is_explained():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="CUDA"):
        FacePoseDetector(device="cuda")


@needs_photos
def test_replace_shares_networks_and_changes_settings(detector):
    strict = detector.replace(fpnet_threshold=0.9999, min_face_size=40)
    assert strict.nets is detector.nets and detector.config.fpnet_threshold == 0.7
    assert strict.config.min_face_size == 40 and strict.config.fpnet_threshold == 0.9999
    path = PHOTOS / "nasa_iss_iss_partners_tour_kennedy_space_center.jpg"
    assert len(strict.detect(path)) < len(detector.detect(path))
    with pytest.raises(TypeError, match="unknown detector settings \\['weights'\\]"):
        detector.replace(weights="x")
    with pytest.raises(ValueError, match="min_face_size"):  # validated like the constructor
        detector.replace(min_face_size=5)


@needs_photos
def test_known_faces_are_not_found_again(detector):
    """``detections(image, known=boxes)``: the faces in ``known`` are not reported again, every other face is
    (a tracker's search pays only for new faces)."""
    from facepose.cascade import KNOWN_IOU

    image = detector.prepare(PHOTOS / "nasa_astronaut_class_photo_b.png")
    every = detector.detections(image)
    assert len(every) == 8
    known, others = every.boxes[::2], every.boxes[1::2]
    new = detector.detections(image, known=known)
    assert len(new) == 4
    assert float(box_overlap(new.boxes, known).max()) <= KNOWN_IOU
    assert (box_overlap(new.boxes, others).max(0).values > 0.9).all()  # the others, as found with the rest
