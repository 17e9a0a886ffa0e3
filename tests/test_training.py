"""Distillation pipeline: teacher port and convention, rotation targets, IoU labelling, a tiny training run."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from safetensors import safe_open

from facepose.rotation import euler_to_matrix, geodesic_distance, matrix_to_euler, matrix_to_sixd, sixd_to_matrix

from .conftest import AFLW2000, SHARED, needs_aflw2000

needs_training_data = pytest.mark.skipif(
    not (SHARED / "aflw_faces").is_dir() or not (SHARED / "wider" / "train").is_dir(), reason="training data absent")
# the data set builder, training runs and the teacher: see tests/test_metrics.py for evaluation measures


@pytest.fixture(scope="module")
def teacher():
    from training.teacher import find_whenet_h5, load_whenet

    return load_whenet(find_whenet_h5())


@needs_aflw2000
def test_teacher_port_matches_aflw2000_labels(teacher):
    """WHENet's angles, turned into matrices, agree with the label matrices (the convention is shared);
    mean error on 40 faces within 8 degrees (the full benchmark measures 5.39)."""
    from PIL import Image

    from training.aflw2000 import crop_square, load_aflw2000, teacher_box

    samples = load_aflw2000(AFLW2000)[:40]
    x = torch.from_numpy(np.stack([crop_square(Image.open(s.image), teacher_box(s.landmarks)) for s in samples]))
    with torch.inference_mode():
        pred = teacher(x.permute(0, 3, 1, 2).float()).double()
    truth = torch.tensor(np.stack([s.angles for s in samples]))
    assert (pred - truth).abs().mean().item() < 8
    geo = torch.rad2deg(geodesic_distance(euler_to_matrix(*pred.T), euler_to_matrix(*truth.T)))
    assert geo.median().item() < 12
    mirrored = torch.rad2deg(geodesic_distance(euler_to_matrix(*pred.T), euler_to_matrix(-truth[:, 0], truth[:, 1], -truth[:, 2])))
    assert mirrored.mean().item() > geo.mean().item() + 15  # a sign slip would show


def test_rotation_target_pipeline():
    """Teacher angles -> matrix -> 6D target -> (network output) -> matrix -> angles is lossless."""
    angles = torch.tensor([[30.0, -10.0, 5.0], [-75.0, 20.0, -30.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    sixd = matrix_to_sixd(euler_to_matrix(*angles.T))
    assert sixd.shape == (3, 6)
    assert torch.allclose(sixd[2], torch.tensor([1.0, 0, 0, 0, 1, 0], dtype=torch.float64))
    assert torch.allclose(matrix_to_euler(sixd_to_matrix(sixd)), angles, atol=1e-9)
    # scaled and noisy 6D vectors still give the nearest proper rotation
    noisy = sixd * 3 + 0.01 * torch.randn(3, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert (matrix_to_euler(sixd_to_matrix(noisy)) - angles).abs().max() < 1.5


def test_mirrored_samples_have_mirrored_labels():
    from training.samples import mirror_batch

    crops = torch.arange(2 * 3 * 48 * 48, dtype=torch.float32).reshape(2, 3, 48, 48)
    box = torch.tensor([[0.1, 0.2, -0.3, 0.4], [0.1, 0.2, -0.3, 0.4]])
    sixd = matrix_to_sixd(euler_to_matrix(torch.tensor([40.0, 40.0]), torch.tensor([10.0, 10.0]), torch.tensor([20.0, 20.0]))).float()
    c, b, s = mirror_batch(crops, box, sixd, torch.tensor([True, False]))
    assert torch.equal(c[0], crops[0].flip(-1)) and torch.equal(c[1], crops[1])
    assert torch.allclose(b[0], torch.tensor([0.3, 0.2, -0.1, 0.4])) and torch.equal(b[1], box[1])
    angles = matrix_to_euler(sixd_to_matrix(s.double()))
    assert torch.allclose(angles[0], torch.tensor([-40.0, 10.0, -20.0], dtype=torch.float64), atol=1e-4)
    assert torch.allclose(angles[1], torch.tensor([40.0, 10.0, 20.0], dtype=torch.float64), atol=1e-4)


def test_photos_profiles_can_leave_the_pose_to_the_made_profiles(tmp_path):
    """``load_samples(..., real_pose_max_yaw=60)`` takes the pose from the faces of photos turned 60 degrees or more,
    and keeps it on the profiles made by ``training.profile_synthesis`` (exact labels) and on the photos' other faces."""
    from training.samples import KIND, load_samples

    yaws = np.array([10.0, -59.0, 60.0, -80.0, np.nan])
    for name, made_by in (("photos", "training.build_dataset"), ("made", "training.profile_synthesis")):
        (tmp_path / name / "shards").mkdir(parents=True)
        angles = np.stack([yaws, np.zeros(5), np.zeros(5)], 1).astype(np.float32)
        np.savez(tmp_path / name / "shards" / f"train_{name}.npz", crops=np.zeros((5, 48, 48, 3), np.uint8),
                 kind=np.full(5, KIND["positive"], np.int8), box=np.zeros((5, 4), np.float32),
                 sixd=np.zeros((5, 6), np.float32), angles=angles, has_pose=~np.isnan(yaws))
        (tmp_path / name / "manifest.json").write_text(json.dumps(
            {"made_by": made_by, "shards": {f"train_{name}": {"split": "train", "samples": 5}}}))
    folders = [tmp_path / "made", tmp_path / "photos"]  # shards load sorted by name: made, then photos
    assert load_samples(folders, "train").has_pose.tolist() == [True] * 4 + [False] + [True] * 4 + [False]
    assert load_samples(folders, "train", real_pose_max_yaw=60).has_pose.tolist() == \
        [True] * 4 + [False] + [True, True, False, False, False]


def test_lean_loss_weighs_the_lean_by_how_far_the_head_is_turned_away():
    """``lean_loss``: a head read 10 degrees turned in the picture costs nothing frontal, 10 degrees (in radians) at 60
    degrees of yaw and about 4.8 times that at 80; a roll of 10 degrees about the head's own axis at 80 degrees of
    yaw leans it in the picture only by about cos 80 times that."""
    from facepose.rotation import turn_rotations
    from training.train import lean_loss

    yaw = torch.tensor([0.0, 60.0, 80.0])
    truth = euler_to_matrix(yaw, torch.zeros(3), torch.zeros(3))
    read = turn_rotations(truth, torch.full((3,), -10.0))
    one = torch.ones(1, dtype=torch.bool)
    costs = [lean_loss(matrix_to_sixd(read[i:i + 1]).float(), matrix_to_sixd(truth[i:i + 1]).float(), one).item() for i in range(3)]
    assert costs[0] < 1e-6 and costs[1] == pytest.approx(math.radians(10), rel=1e-3)
    assert costs[2] == pytest.approx(math.radians(10) * (1 / math.cos(math.radians(80)) - 1), rel=1e-3)
    rolled = euler_to_matrix(yaw[2:], torch.zeros(1), torch.tensor([10.0]))
    cost = lean_loss(matrix_to_sixd(rolled).float(), matrix_to_sixd(truth[2:]).float(), one).item()
    assert cost == pytest.approx(costs[2] * math.cos(math.radians(80)), rel=0.02)


def test_orientation_losses_pull_back_a_crop_read_upside_down():
    """Every orientation loss but ``cosine`` pulls a reading 180 degrees off back toward the lean; the von Mises
    loss, fitted by gradient descent, learns a long vector where the leans agree and a short one where a crop
    leans either of two opposite ways half the time (the head's length is how sure it is)."""
    from training.train import orientation_loss

    lean = torch.zeros(1)
    for kind in ("angle", "von_mises"):
        v = torch.tensor([[-1.0, 1e-3]], requires_grad=True)
        orientation_loss(v, lean, kind).backward()
        step = (v - v.grad).detach()[0]  # one step of gradient descent
        assert abs(math.degrees(math.atan2(step[1], step[0]))) < 170, (kind, v.grad)
    lengths = {}
    for name, leans in {"sure": torch.zeros(64), "either way": torch.tensor([0.0, math.pi] * 32)}.items():
        v = torch.tensor([[0.5, 0.0]], requires_grad=True)
        optimiser = torch.optim.SGD([v], lr=0.5)
        for _ in range(200):
            optimiser.zero_grad()
            orientation_loss(v.expand(len(leans), 2), leans, "von_mises").backward()
            optimiser.step()
        lengths[name] = float(v.detach().norm())
    assert lengths["sure"] > 3 and lengths["either way"] < 0.1, lengths


def test_updown_crops_upright_and_upside_down_are_half_a_turn_apart():
    """``training.updown.updown_batch`` without augmentation: a face cut upside down is the same disk crop as the
    one cut upright, turned by 180 degrees; the disk is the same at any turn (black outside it)."""
    from training.updown import updown_batch

    gen = torch.Generator().manual_seed(0)
    context = (torch.rand(4, 72, 72, 3, generator=gen) * 255).to(torch.uint8)
    lean = torch.tensor([0.0, 30.0, -75.0, 160.0])
    up = updown_batch(context, lean, torch.ones(4, dtype=torch.bool), None)
    down = updown_batch(context, lean, torch.zeros(4, dtype=torch.bool), None)
    assert up.shape == (4, 3, 48, 48)
    assert torch.allclose(down, up.rot90(2, (-2, -1)), atol=0.05)
    corner = torch.zeros(48, 48, dtype=torch.bool)
    corner[:4, :4] = True
    assert torch.all(up[..., corner] == -127.5 / 128) and torch.all(down[..., corner] == -127.5 / 128)


def test_iou_labelling_on_hand_made_boxes():
    from training.build_dataset import label_proposals, offsets_to
    from training.samples import KIND

    faces = np.array([[100.0, 100.0, 200.0, 200.0], [400.0, 100.0, 410.0, 110.0]])
    ignore = np.array([False, True])  # the second face is too small to learn from
    proposals = np.array([
        [105.0, 105.0, 205.0, 205.0],  # IoU 0.82: positive
        [130.0, 130.0, 230.0, 230.0],  # IoU 0.32: neither
        [120.0, 100.0, 220.0, 200.0],  # IoU 0.67: positive
        [140.0, 100.0, 240.0, 200.0],  # IoU 0.43: part
        [500.0, 500.0, 560.0, 560.0],  # far: negative
        [400.0, 100.0, 410.0, 110.0],  # on the ignored face: neither
    ])
    kind, face = label_proposals(proposals, faces, ignore)
    assert kind.tolist() == [KIND["positive"], -1, KIND["positive"], KIND["part"], KIND["negative"], -1]
    assert face[0] == 0 and face[3] == 0
    off = offsets_to(proposals[:1], faces[:1])
    assert np.allclose(off, [[-5 / 101, -5 / 101, -5 / 101, -5 / 101]])
    kind, _ = label_proposals(proposals, np.zeros((0, 4)), np.zeros(0, bool))
    assert (kind == KIND["negative"]).all()


def test_small_face_rule():
    from training.sources import small_faces

    boxes = np.array([[0, 0, 30, 19], [0, 0, 20, 20], [5, 5, 100, 100.0]])
    assert small_faces(boxes, 20).tolist() == [True, False, False]


@needs_training_data
def test_labeller_sees_what_the_detector_sees():
    """The data set builder's cascade is the detector's: same O-Net detections on a photo, and its stored
    crops are the rounded crops the last stage is fed."""
    from facepose import FacePoseDetector, load_image
    from facepose.weights import WEIGHTS_DIR
    from training.build_dataset import Labeller

    from .conftest import PHOTOS

    pixels = load_image(PHOTOS / "nasa_astronaut_class_photo_b.png")
    c = Labeller().cascade(pixels)
    faces = FacePoseDetector(weights=WEIGHTS_DIR / "onet.safetensors").detect(pixels)
    assert len(c.detections) == len(faces) == 8
    assert np.allclose(c.detections, np.array([f.box for f in faces]), atol=1e-4)
    assert c.crops.dtype == np.uint8 and c.crops.shape == (len(c.boxes), 48, 48, 3)


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    """A real, tiny data set: 3 AFLW crops and 3 WIDER train photos through the builder."""
    if not (SHARED / "aflw_faces").is_dir() or not (SHARED / "wider" / "train").is_dir():
        pytest.skip("training data absent")
    from training.build_dataset import main as build

    data = tmp_path_factory.mktemp("data")
    build(["--out", str(data), "--limit", "3", "--chunk", "5", "--calibration-photos", "20"])
    return data


@pytest.mark.slow  # training
def test_dataset_shards_hold_labelled_crops(tiny_dataset):
    from training.samples import KIND, load_samples

    manifest = json.loads((tiny_dataset / "manifest.json").read_text())
    totals = manifest["totals"]
    assert totals["train_positive"] > 0 and totals["train_negative"] > 0 and totals["train_pose"] > 0
    assert totals["train_inside"] > 0  # negatives cut from inside faces
    assert len(manifest["teacher_box"]) == 4
    train = load_samples(tiny_dataset, "train")
    assert train.crops.shape[1:] == (48, 48, 3) and train.crops.dtype == torch.uint8
    posed = train.has_pose
    assert posed.any() and bool((train.kind[posed] == KIND["positive"]).all())  # only faces carry a pose
    r = sixd_to_matrix(train.sixd[posed].double())
    assert torch.allclose(torch.linalg.det(r), torch.ones(len(r), dtype=torch.float64), atol=1e-4)
    assert torch.allclose(matrix_to_euler(r), train.angles[posed].double(), atol=1e-3)


@pytest.mark.slow  # training
def test_dataset_rebuild_is_resumable(tiny_dataset):
    from training.build_dataset import main as build

    before = (tiny_dataset / "manifest.json").read_text()
    shards = {p.name: p.stat().st_mtime_ns for p in (tiny_dataset / "shards").iterdir()}
    build(["--out", str(tiny_dataset), "--limit", "3", "--chunk", "5"])
    assert json.loads((tiny_dataset / "manifest.json").read_text())["shards"] == json.loads(before)["shards"]
    assert {p.name: p.stat().st_mtime_ns for p in (tiny_dataset / "shards").iterdir()} == shards  # none rewritten


@pytest.mark.slow  # training
def test_thesis_recipe_trains_the_whole_network(tiny_dataset, tmp_path):
    """Two steps of the thesis recipe log to TensorBoard and save a checkpoint marked trained, with the
    thesis' architecture, whose O-Net layers learned as well (they start random)."""
    from facepose.nets import FPNet
    from facepose.weights import load_last_stage
    from training.train import main as train

    out = tmp_path / "run"
    best = train(["--recipe", "thesis", "--data", str(tiny_dataset), "--out", str(out), "--epochs", "1",
                  "--max-steps", "2"])
    assert set(best) >= {"pose_mae", "face_accuracy", "epoch"} and 0 <= best["face_accuracy"] <= 1
    net, pose = load_last_stage(out / "best.safetensors")
    assert type(net) is FPNet and pose
    assert all(p.requires_grad for p in net.parameters())
    with safe_open(str(out / "best.safetensors"), framework="pt") as f:
        assert f.metadata()["recipe"] == "thesis"
    assert any(p.name.startswith("events.out.tfevents") for p in out.iterdir())
    assert json.loads((out / "args.json").read_text())["recipe"]["name"] == "thesis"


@pytest.mark.slow  # training
def test_shipped_recipes_keep_onet_frozen(tiny_dataset, tmp_path):
    """The shipped FPNet's first two runs learn only the pose part: every O-Net tensor stays bit for bit. The
    second grows the first run's branch, starting from its network exactly."""
    from facepose.nets import FPNetBranch
    from facepose.weights import WEIGHTS_DIR, load_last_stage
    from training.train import main as train

    out = tmp_path / "branch"
    best = train(["--recipe", "branch", "--data", str(tiny_dataset), "--out", str(out), "--epochs", "1", "--max-steps", "2"])
    net, pose = load_last_stage(out / "best.safetensors")
    assert pose and type(net) is FPNetBranch and net.sizes() == {"pose_channels": 64, "pose_hidden": 96}
    assert not torch.allclose(net.rotation.bias, torch.tensor([1.0, 0, 0, 0, 1, 0]))
    assert best["epoch"] == 1

    with pytest.raises(SystemExit, match="starts from onet"):
        train(["--recipe", "branch", "--init", str(out / "best.safetensors"), "--data", str(tiny_dataset),
               "--out", str(tmp_path / "branch-init"), "--epochs", "1", "--max-steps", "1"])
    with pytest.raises(SystemExit, match="pass --init"):
        train(["--recipe", "grown", "--data", str(tiny_dataset), "--out", str(tmp_path / "no-init"), "--epochs", "1",
               "--max-steps", "1"])
    with pytest.raises(SystemExit, match="not a pose branch on MTCNN's O-Net"):
        train(["--recipe", "grown", "--init", str(WEIGHTS_DIR / "onet.safetensors"), "--data", str(tiny_dataset),
               "--out", str(tmp_path / "bad-init"), "--epochs", "1", "--max-steps", "1"])
    train(["--recipe", "grown", "--init", str(out / "best.safetensors"), "--data", str(tiny_dataset), "--out", str(tmp_path / "grown"),
           "--epochs", "1", "--max-steps", "2"])
    grown, pose = load_last_stage(tmp_path / "grown" / "best.safetensors")
    assert pose and grown.sizes() == {"pose_channels": 64, "pose_hidden": 96, "pose_early": 48}
    onet = load_last_stage(WEIGHTS_DIR / "onet.safetensors")[0].state_dict()
    for trained in (net, grown):
        for name, tensor in trained.state_dict().items():
            if name in onet:
                assert torch.equal(tensor, onet[name]), name


def test_grown_branch_starts_as_the_smaller_one():
    """Growing early maps changes nothing until training moves them: same outputs bit for bit."""
    from facepose.nets import FPNetBranch

    torch.manual_seed(0)
    small, grown = FPNetBranch(8, 16).eval(), FPNetBranch(8, 16, pose_early=4).eval()
    grown.load_smaller_branch(small.state_dict())
    x = torch.randn(5, 3, 48, 48)
    assert all(torch.equal(a, b) for a, b in zip(small(x), grown(x)))
    with pytest.raises(ValueError, match="not a smaller FPNetBranch"):
        grown.load_smaller_branch({**small.state_dict(), "extra.weight": torch.zeros(1)})


@pytest.mark.slow  # training
def test_resuming_with_another_recipe_is_refused(tiny_dataset, tmp_path):
    from training.train import main as train

    out = tmp_path / "run"
    train(["--recipe", "branch", "--data", str(tiny_dataset), "--out", str(out), "--epochs", "1", "--max-steps", "1"])
    with pytest.raises(SystemExit, match="'branch' recipe, not 'thesis'"):
        train(["--recipe", "thesis", "--data", str(tiny_dataset), "--out", str(out), "--epochs", "2", "--max-steps", "1"])


def test_recipes_are_the_named_ones():
    from training.recipes import RECIPES, Recipe

    assert sorted(RECIPES) == ["branch", "grown", "oriented", "profiles", "thesis"]
    profiles = RECIPES["profiles"]  # trains the pose branch on from the oriented run, its orientation head kept
    assert (profiles.init, profiles.learn, profiles.train_detection, profiles.turn) == ("finetune", "rotation", False, 0)
    assert profiles.sizes == RECIPES["oriented"].sizes
    oriented = RECIPES["oriented"]
    assert (oriented.init, oriented.train_detection, oriented.learn) == ("finetune", False, "orientation") and oriented.turn > 0
    assert {k: v for k, v in oriented.sizes.items() if k != "orient_hidden"} == RECIPES["grown"].sizes
    with pytest.raises(ValueError, match="turns move the face"):
        thesis_like = RECIPES["thesis"]
        thesis_like.replace(turn=0.5)
    branch, shipped, thesis = RECIPES["branch"], RECIPES["grown"], RECIPES["thesis"]
    assert (branch.arch, branch.init, branch.train_detection) == ("fpnet_branch", "onet", False)
    assert (shipped.arch, shipped.init, shipped.train_detection) == ("fpnet_branch", "grow", False)
    assert {k: v for k, v in shipped.sizes.items() if k != "pose_early"} == branch.sizes
    assert (thesis.arch, thesis.init, thesis.train_detection, thesis.rotation_loss, thesis.mining) == \
        ("fpnet", "scratch", True, "l2", "middle60")
    assert (thesis.lr, thesis.lr_decay, thesis.epochs, thesis.batch_size) == (0.01, 0.83, 30, 64)
    with pytest.raises(ValueError, match="jitter moves the face"):
        thesis.replace(jitter=1.0)
    with pytest.raises(ValueError, match="frozen O-Net needs its weights"):
        Recipe(name="x", summary="", arch="fpnet_branch", init="scratch", train_detection=False)
    with pytest.raises(ValueError, match="only the fpnet_branch grows"):
        Recipe(name="x", summary="", arch="fpnet", init="grow")
    assert 0 < oriented.proposals < 1
    with pytest.raises(ValueError, match="proposals teach the orientation head only"):
        RECIPES["grown"].replace(proposals=0.5)


def test_thesis_losses_on_a_hand_made_batch():
    """The thesis' losses: face cross-entropy with middle-60% mining, box L2 on faces and part faces,
    rotation L2 on posed faces; the shipped recipe has the rotation loss alone (geodesic)."""
    from facepose.nets import create_last_stage
    from training.recipes import RECIPES
    from training.samples import KIND, Samples
    from training.train import losses

    torch.manual_seed(0)
    n = 10
    kinds = torch.tensor([KIND["positive"]] * 4 + [KIND["part"]] * 2 + [KIND["negative"]] * 3 + [KIND["inside"]])
    batch = Samples(torch.randint(0, 256, (n, 48, 48, 3), dtype=torch.uint8), kinds.to(torch.int8),
                    torch.randn(n, 4) * 0.1, matrix_to_sixd(euler_to_matrix(*torch.zeros(3, n))).float(),
                    torch.zeros(n, 3), kinds == KIND["positive"])
    thesis = RECIPES["thesis"].replace(mirror=False)
    model = create_last_stage("fpnet", dropout=0.0)
    parts = losses(model, batch, thesis, torch.Generator().manual_seed(0))
    assert set(parts) == {"face", "box", "rotation", "loss"}
    assert torch.isclose(parts["loss"], parts["face"] + parts["box"] + parts["rotation"])
    assert parts["rotation"].item() < 1e-3  # an untrained head says frontal, and the targets are frontal
    shipped = RECIPES["grown"].replace(mirror=False, jitter=0.0, augment=0.0)
    branch = create_last_stage("fpnet_branch", dropout=0.0, **shipped.sizes)
    assert set(losses(branch, batch, shipped, torch.Generator())) == {"rotation", "loss"}


@needs_training_data
def test_sources_read_wider_and_celeba_layouts(tmp_path):
    """The WIDER FACE reader (with a face-less image's line of zeros) and a CelebA-layout folder."""
    import shutil

    from training.sources import celeba, read_wider_boxes

    gt = tmp_path / "wider_face_train_bbx_gt.txt"
    gt.write_text("a/one.jpg\n2\n10 20 30 40 0 0 0 0 0 0\n50 60 5 6 0 0 0 1 0 0\nb/none.jpg\n0\n0 0 0 0 0 0 0 0 0 0\n")
    boxes = read_wider_boxes(gt)
    assert boxes["a/one.jpg"][0].tolist() == [[10, 20, 40, 60], [50, 60, 55, 66]]
    assert boxes["a/one.jpg"][1].tolist() == [False, True] and boxes["b/none.jpg"][0].shape == (0, 4)

    folder = tmp_path / "celeba"
    (folder / "img_celeba").mkdir(parents=True)
    shutil.copy(SHARED / "photos" / "matplotlib_grace_hopper.jpg", folder / "img_celeba" / "000001.jpg")
    (folder / "list_bbox_celeba.txt").write_text("1\nimage_id x_1 y_1 width height\n000001.jpg 170 110 190 240\n")
    photos = list(celeba(folder))
    assert len(photos) == 1 and photos[0].key == "celeba/000001.jpg"
    assert photos[0].boxes.tolist() == [[170, 110, 360, 350]] and photos[0].pixels.shape == (600, 512, 3)


def test_augmentation_keeps_labels_valid():
    """Photometric augmentation stays in the network's input range and leaves unchosen crops alone;
    jitter without amplitude is the identity, and a shift moves the content by the asked fraction."""
    from training.augment import augment_crops, jitter_crops

    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(32, 3, 48, 48, generator=gen) * 255 - 127.5) / 128
    assert augment_crops(x, gen, 0.0) is x
    y = augment_crops(x, gen, 1.0)
    assert y.shape == x.shape and y.abs().max() <= 127.5 / 128 + 1e-6 and not torch.allclose(x, y)
    assert torch.allclose(jitter_crops(x, gen, 0.0, 0.0), x, atol=1e-5)
    dot = torch.zeros(1, 3, 48, 48)
    dot[..., 20:28, 20:28] = 1
    moved = jitter_crops(dot.expand(64, -1, -1, -1), gen, 0.1, 0.0)
    centres = (moved[:, 0].sum(1) * torch.arange(48)).sum(1) / moved[:, 0].sum((1, 2))  # x centre of mass
    assert (centres - 23.5).abs().max() <= 0.1 * 48 + 0.5 and (centres - 23.5).abs().max() > 1


def test_turned_crops_and_labels_turn_together():
    """A crop cut turned by 90 degrees is the picture turned by a quarter (torch.rot90, as facepose.turns), its
    label is Rz(90) R (turns.turn_matrix), and points found in a turned crop map back into the image."""
    from facepose.crops import rotate_crops, turn_about
    from facepose.rotation import euler_to_matrix, matrix_to_sixd, sixd_to_matrix
    from facepose.turns import turn_matrix
    from training.augment import turn_crops, turned_labels

    context = torch.rand(2, 3, 72, 72, generator=torch.Generator().manual_seed(0)) * 255
    middle = context[..., 12:60, 12:60]
    assert torch.allclose(turn_crops(context, torch.zeros(2)), middle, atol=0.01)
    for k in (1, 2, 3):
        assert torch.allclose(turn_crops(context, torch.full((2,), 90.0 * k)), torch.rot90(middle, k, dims=(-2, -1)), atol=0.01)
    r = euler_to_matrix(torch.tensor([20.0, -60.0]).double(), torch.tensor([-10.0, 15.0]).double(), torch.tensor([5.0, -30.0]).double())
    turned = sixd_to_matrix(turned_labels(matrix_to_sixd(r), torch.tensor([90.0, 270.0])))
    assert torch.allclose(turned[0], turn_matrix(1, torch.float64) @ r[0], atol=1e-9)
    assert torch.allclose(turned[1], turn_matrix(3, torch.float64) @ r[1], atol=1e-9)
    # a bright pixel at (x, y) = (50, 20) of the context, seen in the crop turned by 30 degrees
    dot = torch.zeros(1, 1, 72, 72)
    dot[0, 0, 20, 50] = 1.0
    crop = rotate_crops(dot, torch.tensor([30.0]), 48)[0, 0]
    y, x = divmod(int(crop.argmax()), 48)
    back = turn_about(torch.tensor([[[x + 0.5 + 12, y + 0.5 + 12]]]), torch.tensor([[36.0, 36.0]]), torch.tensor([30.0]))
    assert torch.allclose(back[0, 0], torch.tensor([50.5, 20.5]), atol=1.0)


@pytest.fixture(scope="module")
def turned_dataset(tiny_dataset):
    """The tiny data set with the crops the cascade proposes on its faces turned (``training.turned_proposals``)."""
    from training.turned_proposals import main as turned_proposals

    turned_proposals(["--data", str(tiny_dataset), "--turns", "2"])
    return tiny_dataset


@pytest.mark.slow  # training
def test_turned_proposals_are_written_per_split(turned_dataset, tmp_path):
    """Each split's proposed crops load with their leans; a folder of profiles made by ``training.profile_synthesis``
    (no photos to turn) beside the data set adds none, and a data set without them says what to run."""
    from training.samples import load_turned

    crops, leans = load_turned(turned_dataset, "train")
    assert crops.dtype == torch.uint8 and crops.shape[1:] == (48, 48, 3) and len(crops) == len(leans) > 0
    assert leans.abs().max() <= 180
    made = tmp_path / "profiles"
    made.mkdir()
    (made / "manifest.json").write_text(json.dumps({"shards": {}, "made_by": "training.profile_synthesis"}))
    both, _ = load_turned([turned_dataset, made], "train")
    assert torch.equal(both, crops)
    (made / "manifest.json").write_text(json.dumps({"shards": {}}))
    with pytest.raises(FileNotFoundError, match="training.turned_proposals"):
        load_turned([turned_dataset, made], "train")


@pytest.mark.slow  # training
def test_oriented_recipe_needs_a_trained_network(tiny_dataset, tmp_path):
    """The oriented recipe adds an orientation head to a trained network (it does not start from O-Net)."""
    from training.train import main as train

    with pytest.raises(SystemExit, match="trains on from a trained network"):
        train(["--recipe", "oriented", "--data", str(tiny_dataset), "--out", str(tmp_path / "a"), "--max-steps", "1"])


@pytest.mark.slow  # training
def test_orientation_head_learns_alone(turned_dataset, tmp_path):
    """Two steps of the oriented recipe from the packaged FPNet move the orientation head only: O-Net and the
    pose branch stay bit-identical, so the upright pose is the packaged one exactly. Without the crops proposed on
    turned faces it says what to run."""
    from facepose.weights import WEIGHTS_DIR, load_last_stage
    from training.train import main as train

    bare = tmp_path / "bare"
    (bare / "shards").mkdir(parents=True)
    (bare / "manifest.json").write_text((turned_dataset / "manifest.json").read_text())
    for shard in (turned_dataset / "shards").iterdir():
        (bare / "shards" / shard.name).symlink_to(shard)
    with pytest.raises(SystemExit, match="training.turned_proposals"):
        train(["--recipe", "oriented", "--init", str(WEIGHTS_DIR / "fpnet.safetensors"), "--data", str(bare),
               "--out", str(tmp_path / "no-turned"), "--epochs", "1", "--max-steps", "1"])
    out = tmp_path / "oriented"
    train(["--recipe", "oriented", "--init", str(WEIGHTS_DIR / "fpnet.safetensors"), "--data", str(turned_dataset),
           "--out", str(out), "--epochs", "1", "--max-steps", "2"])
    start, _ = load_last_stage(WEIGHTS_DIR / "fpnet.safetensors")
    trained, pose = load_last_stage(out / "best.safetensors")
    assert pose and trained.has_orientation and trained.sizes()["orient_hidden"] > 0
    before = start.state_dict()
    for name, value in trained.state_dict().items():
        if not name.startswith("orient_"):
            assert torch.equal(value, before[name]), name


@pytest.mark.slow  # training
def test_crops_proposed_on_turned_faces_lean_as_labelled(tiny_dataset):
    """On AFLW faces turned by 35 degrees either way and upside down, the crops R-Net proposes and the crop cut
    again turned back carry the lean the packaged FPNet's orientation head reads in them (within 30 degrees), so
    crops and labels agree."""
    from facepose.cascade import normalize
    from facepose.nets import CascadeNets
    from facepose.weights import WEIGHTS_DIR, load_last_stage, load_pnet, load_rnet
    from training import sources
    from training.build_dataset import face_from_teacher_box
    from training.turned_proposals import face_crops, face_labels

    nets = CascadeNets(load_pnet(), load_rnet(), load_last_stage(WEIGHTS_DIR / "onet.safetensors")[0].eval())
    fpnet = load_last_stage(WEIGHTS_DIR / "fpnet.safetensors")[0].eval()
    labels = face_labels(tiny_dataset)
    rel = json.loads((tiny_dataset / "manifest.json").read_text())["teacher_box"]
    crops, leans = [], []
    for photo in sources.aflw_faces(limit=3):
        face = face_from_teacher_box(photo.teacher_boxes[0], rel)
        for angle in (35.0, 180.0, 325.0):
            c, lean = face_crops(nets, photo, face, labels[f"{photo.key}#0"], angle, np.random.default_rng(0))
            crops.append(c)
            leans.append(lean)
    crops, leans = torch.from_numpy(np.concatenate(crops)), torch.from_numpy(np.concatenate(leans))
    assert len(crops) >= 6 and (leans.abs() > 20).sum() >= 3  # leaning faces found, and their recut crops
    with torch.inference_mode():
        read = fpnet.in_plane(fpnet.features(normalize(crops.permute(0, 3, 1, 2).float())))
    off = ((read - leans + 180) % 360 - 180).abs()
    assert (off < 30).float().mean() >= 0.8, off
