"""Each stage of the cascade on its own, on a real photo: P-Net proposals, R-Net refinement, the last
stage, and flip averaging of the pose."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from facepose import DetectorConfig, cascade, load_image
from facepose.boxes import square
from facepose.cascade import STAGES, decode_last_stage, finish, finish_crops, follow, normalize, propose, refine, relook, run_cascade
from facepose.crops import integral_image, padded_crops
from facepose.nets import _max_pool_2x2
from facepose.rotation import geodesic_distance, mirror_matrix, sixd_to_matrix, turned_away

from .conftest import PHOTOS, REPO, landmark_roll, needs_photos

CLASS_PHOTO = "nasa_astronaut_class_photo_b.png"  # 8 faces


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    if not PHOTOS.is_dir():
        pytest.skip("../shared/data/photos is not here")
    return torch.from_numpy(load_image(PHOTOS / CLASS_PHOTO).copy()).permute(2, 0, 1)[None].float()


@pytest.fixture(scope="module")
def nets(detector):
    return detector.nets


def is_square(boxes: torch.Tensor) -> bool:
    return torch.allclose(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1], atol=1e-3)


def test_normalize_is_mtcnns_range_and_leaves_its_input_alone():
    pixels = torch.tensor([0.0, 127.5, 255.0])
    assert normalize(pixels).tolist() == [-127.5 / 128, 0.0, 127.5 / 128]
    assert pixels.tolist() == [0.0, 127.5, 255.0]


@needs_photos
def test_propose_gives_many_squared_candidates_above_the_threshold(nets, image):
    ii = integral_image(image[0])
    before = ii.clone()
    p = propose(nets.pnet, ii, DetectorConfig())
    assert torch.equal(ii, before)  # the integral image is not modified
    assert len(p) > 50 and p.boxes.shape == (len(p), 4) and is_square(p.boxes)
    assert bool((p.scores >= 0.6).all())
    strict = propose(nets.pnet, ii, DetectorConfig(pnet_threshold=0.95))
    assert 0 < len(strict) < len(p)
    assert len(propose(nets.pnet, ii, DetectorConfig(min_face_size=200))) < len(p)  # large faces only: fewer levels


@needs_photos
def test_propose_finds_nothing_in_a_flat_image(nets):
    assert len(propose(nets.pnet, integral_image(torch.full((3, 200, 300), 128.0)), DetectorConfig())) == 0


@needs_photos
def test_refine_keeps_fewer_squared_boxes_above_its_threshold(nets, image):
    ii = integral_image(image[0])
    config = DetectorConfig()
    p = propose(nets.pnet, ii, config)
    r = refine(nets.rnet, ii, p, config)
    assert 8 <= len(r) < len(p) and is_square(r.boxes) and bool((r.scores > 0.7).all())
    assert len(refine(nets.rnet, ii, p, config.replace(rnet_threshold=0.99))) < len(r)
    assert len(refine(nets.rnet, ii, type(p)(p.boxes[:0], p.scores[:0]), config)) == 0


@needs_photos
def test_finish_keeps_faces_with_landmarks_inside_and_a_rotation(nets, image):
    config = DetectorConfig()
    run = run_cascade(nets, image, config, until="rnet")
    ii, r = run.ii, run.refined
    d = finish(nets.fpnet, ii, r, config)
    assert len(d.boxes) == 8 and bool((d.scores > 0.7).all())
    assert d.landmarks.shape == (8, 5, 2) and d.rotations.shape == (8, 3, 3)
    x, y = d.landmarks[..., 0], d.landmarks[..., 1]
    assert bool(((x >= d.boxes[:, None, 0]) & (x <= d.boxes[:, None, 2])).all())
    assert bool(((y >= d.boxes[:, None, 1]) & (y <= d.boxes[:, None, 3])).all())
    eye = torch.eye(3).expand(8, 3, 3)
    assert torch.allclose(d.rotations @ d.rotations.transpose(1, 2), eye, atol=1e-5)
    assert torch.allclose(torch.linalg.det(d.rotations), torch.ones(8), atol=1e-5)
    none = finish(nets.fpnet, ii, type(r)(r.boxes[:0], r.scores[:0]), config)
    assert none.boxes.shape == (0, 4) and none.rotations.shape == (0, 3, 3)


@needs_photos
def test_flip_averaging_is_symmetric_and_moves_pose_only(nets, image):
    """Flip averaging leaves boxes, scores and landmarks alone, changes the rotation a little, and is
    exactly mirror-symmetric: the averaged pose of a mirrored crop is the mirrored averaged pose."""
    config = DetectorConfig()
    boxes, crops = run_cascade(nets, image, config, until="rnet").last_stage_input()
    single = finish_crops(nets.fpnet, boxes, crops, config)
    flipped = finish_crops(nets.fpnet, boxes, crops, config, flip_pose=True)
    assert torch.equal(single.boxes, flipped.boxes) and torch.equal(single.scores, flipped.scores)
    assert torch.equal(single.landmarks, flipped.landmarks)
    moved = torch.rad2deg(geodesic_distance(single.rotations, flipped.rotations))
    assert bool((moved < 15).all()) and bool((moved > 0).any())
    # each face crop alone, and its mirror image: the averaged rotations are mirror images of each other
    faces = torch.nonzero(torch.softmax(nets.fpnet(crops).face_logits, 1)[:, 1] > 0.7).flatten()[:8]
    assert len(faces) >= 8
    for k in faces.tolist():
        box, anything = boxes[k:k + 1], config.replace(fpnet_threshold=0.0)
        direct = finish_crops(nets.fpnet, box, crops[k:k + 1], anything, flip_pose=True).rotations
        mirrored = finish_crops(nets.fpnet, box, crops[k:k + 1].flip(-1), anything, flip_pose=True).rotations
        assert torch.allclose(mirror_matrix(direct), mirrored, atol=1e-5)


@needs_photos
def test_relook_cuts_near_frontal_faces_again_from_their_own_box(nets, image, monkeypatch):
    """On the class photo's eight faces, all near frontal and upright, the pose crops become the crops of
    FPNet's own boxes, squared; a face read turned further than ``RELOOK_TURN`` keeps its proposal's crop."""
    config = DetectorConfig()
    windows, crops = run_cascade(nets, image, config, until="rnet").last_stage_input()
    scores, boxes, _ = decode_last_stage(nets.fpnet(crops), windows)
    faces = torch.nonzero(scores > 0.7).flatten()
    boxes = boxes[faces]
    features = nets.fpnet.features(crops[faces])
    assert len(faces) >= 8 and bool((turned_away(sixd_to_matrix(nets.fpnet.rotation_6d(features))) < 45).all())
    again, which = relook(nets.fpnet, image, boxes, crops[faces], features)
    want = normalize(padded_crops(image, square(boxes), 48)[0])
    assert which.tolist() == list(range(len(faces)))
    assert torch.allclose(again, want, atol=1e-4)
    assert not torch.allclose(again, crops[faces], atol=0.05)  # R-Net's windows are not FPNet's boxes
    monkeypatch.setattr(cascade, "RELOOK_TURN", 0.0)  # every face counts as turned away: nothing is cut again
    same, none = relook(nets.fpnet, image, boxes, crops[faces], features)
    assert torch.equal(same, crops[faces]) and len(none) == 0


@needs_photos
def test_run_cascade_is_the_three_stages(nets, image, detector):
    config = DetectorConfig()
    run = run_cascade(nets, image, config)
    d = run.detections
    faces = detector.detect(PHOTOS / CLASS_PHOTO)
    assert d.boxes.tolist() == [list(f.box) for f in faces]
    assert set(run.seconds) == {"pyramid", *STAGES} and all(t > 0 for t in run.seconds.values())
    off = run_cascade(nets, image, config, flip_pose=False).detections
    assert torch.equal(off.boxes, d.boxes) and not torch.equal(off.rotations, d.rotations)


@needs_photos
def test_run_cascade_stops_after_any_stage(nets, image):
    full = run_cascade(nets, image, DetectorConfig())
    for stage in STAGES[:-1]:
        run = run_cascade(nets, image, DetectorConfig(), until=stage)
        assert run.detections is None and set(run.seconds) == {"pyramid", *STAGES[:STAGES.index(stage) + 1]}
        assert torch.equal(run.proposals.boxes, full.proposals.boxes)
    assert torch.equal(run.refined.boxes, full.refined.boxes)
    with pytest.raises(ValueError, match="until must be one of"):
        run_cascade(nets, image, DetectorConfig(), until="onet")


@needs_photos
def test_follow_keeps_known_faces_and_drops_an_empty_window(nets, image, detector):
    """Following the faces found in a photo, from their boxes, finds them again; a window on the sky does
    not hold a face."""
    config = DetectorConfig()
    found = run_cascade(nets, image, config).detections
    windows = torch.cat((found.boxes, torch.tensor([[0.0, 0.0, 40.0, 40.0]])))
    from facepose.boxes import box_overlap, square

    index, d, _ = follow(nets, image, square(windows), config)
    assert index.tolist() == list(range(len(found)))
    assert bool((box_overlap(d.boxes, found.boxes).diagonal() > 0.7).all()) and d.rotations.shape == (len(found), 3, 3)
    twin_index, twin, corrections = detector.follow(image, square(windows))
    assert torch.equal(twin_index, index) and torch.allclose(twin.rotations, d.rotations)
    # without the mirrored pass, the crop's rotation corrected by the mirror correction is the flip average again
    every = torch.eye(3).repeat(len(windows), 1, 1)
    every[index] = corrections
    again_index, again, none = detector.follow(image, square(windows), corrections=every)
    assert torch.equal(again_index, index) and none is None
    assert torch.allclose(again.rotations, twin.rotations, atol=1e-5)
    single = follow(nets, image, square(windows), config, flip_pose=False)[1].rotations
    assert not torch.allclose(single, twin.rotations, atol=1e-3)  # the correction does something


@needs_photos
def test_follow_cuts_a_nearly_upright_face_upright_and_a_leaning_one_turned(nets, image):
    """A tracker passes each face's last in-plane angle: within ``UPRIGHT_FOLLOW`` of upright the crop is the
    upright one (the same reading as no angle), beyond it the crop is turned and the rotation turned back; a face
    cut upright that reads beyond it (a sudden roll) is read again turned by what it reads. Without angles, a face
    upside down is read upright, with its landmarks, as a detection reads it."""
    from facepose.boxes import square
    from facepose.cascade import UPRIGHT_FOLLOW
    from facepose.crops import turned_crops
    from facepose.rotation import in_plane_angle

    config = DetectorConfig()
    windows = square(run_cascade(nets, image, config).detections.boxes).detach()
    plain = follow(nets, image, windows, config)[1]
    leans = in_plane_angle(plain.rotations)
    assert float(leans.abs().max()) < UPRIGHT_FOLLOW  # the class photo's faces stand upright
    small = follow(nets, image, windows, config, angles=torch.full((len(windows),), UPRIGHT_FOLLOW / 2))[1]
    assert torch.allclose(small.boxes, plain.boxes, atol=1e-3) and torch.allclose(small.rotations, plain.rotations, atol=1e-6)
    turned = follow(nets, image, windows, config, angles=torch.full((len(windows),), 30.0))[1]
    assert not torch.allclose(turned.rotations, plain.rotations, atol=1e-3)  # another crop, the same heads:
    assert float(torch.rad2deg(geodesic_distance(turned.rotations, plain.rotations)).max()) < 12
    # the photo turned by 50 degrees about a face's centre, that face followed with its upright angle: read again
    # (read from the upright crop alone, the lean stops short, at about 42 degrees)
    side = round(float(windows[0, 2] - windows[0, 0]))
    centre = (windows[0, :2] + windows[0, 2:]) / 2
    around = torch.cat((centre - 1.5 * side, centre + 1.5 * side))[None]
    picture, _ = turned_crops(image, around, torch.tensor([50.0]), 3 * side)  # 3 sides wide, the face in the middle
    window = torch.tensor([[side, side, 2 * side, 2 * side]], dtype=torch.float32)
    upright = float(in_plane_angle(follow(nets, picture, window, config, angles=torch.zeros(1))[1].rotations)[0])
    once = float(in_plane_angle(follow(nets, picture, window, config, angles=torch.tensor([upright]))[1].rotations)[0])
    assert abs(upright - once) < 1.5 and abs(upright - (float(leans[0]) - 50)) < 4  # counter-clockwise: negative
    # the face upside down, followed without an angle: read upright as a detection reads it, landmarks included
    # (O-Net alone places them as on an upright face)
    picture, _ = turned_crops(image, around, torch.tensor([180.0]), 3 * side)
    _, alone, _ = follow(nets, picture, window, config)
    lean = float(in_plane_angle(alone.rotations)[0])
    assert abs(lean) > 160 and abs((landmark_roll(alone.landmarks[0].tolist()) - lean + 180) % 360 - 180) < 15


@pytest.mark.parametrize("height, width", [(575, 767), (286, 382), (101, 100), (120, 121)])
def test_pnet_pooling_equals_max_pool_bit_for_bit(height, width):
    """P-Net's 2x2 max pooling of large maps (strided maxima, ceil mode) is torch's MaxPool2d exactly."""
    x = torch.randn(1, 10, height, width, generator=torch.Generator().manual_seed(width))
    x = x.contiguous(memory_format=torch.channels_last)
    expected = torch.nn.functional.max_pool2d(x, 2, 2, ceil_mode=True)
    got = _max_pool_2x2(x)
    assert got.shape == expected.shape and torch.equal(got, expected)


@needs_photos
def test_a_face_upside_down_gets_its_real_pose(detector):
    """The plain cascade finds this portrait's face upside down too; FPNet's orientation head sees it leaning
    about 180 degrees, the face is read again turned upright, and its pose is the upright one turned: the
    yaw and pitch a person sees, the roll 180 degrees on."""
    from facepose.rotation import in_plane_angle, turn_rotations

    upright = detector.detect(REPO / "examples" / "grace_hopper.jpg")
    if not detector.nets.fpnet.has_orientation:
        pytest.skip("these weights have no orientation head")
    pixels = load_image(REPO / "examples" / "grace_hopper.jpg")
    flipped = detector.detect(np.ascontiguousarray(pixels[::-1, ::-1]))  # turned by 180 degrees
    assert len(upright) == len(flipped) == 1
    want = turn_rotations(torch.tensor(upright[0].rotation)[None], torch.tensor([180.0]))
    got = torch.tensor(flipped[0].rotation)[None]
    assert abs(abs(float(in_plane_angle(got))) - 180) < 15
    assert float(torch.rad2deg(geodesic_distance(got, want))) < 10
