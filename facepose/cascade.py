"""The cascade: its three stages, each a function of an image and the boxes it is given, and the one
runner that chains them (``run_cascade``) or follows known faces through FPNet alone (``follow``).

Every stage works on one image held as a ``(1, 3, H, W)`` tensor of 0-255 RGB values (uint8 or float; its
integral image is what the stages read, ``crops.integral_image``) and on
``(N, 4)`` boxes in that image's pixels. They follow facenet-pytorch's MTCNN (same arithmetic, same
thresholds), with every crop of a stage resized in one batched gather instead of a Python loop.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from .arrays import Array, namespace, to_numpy
from .boxes import apply_offsets, box_overlap, nms, square
from .config import DetectorConfig
from .crops import cut_crops, disk_crops, grown, integral_image, padded_crops, padded_crops_from, rotate_crops, turn_about, turned_crops
from .nets import UPDOWN_WINDOW, CascadeNets, LastStageFeatures, ONet, PNet, RNet, UpDownNet, face_probability, replace_rows, select_rows
from .pyramid import pyramid_level, pyramid_scales
from .rotation import in_plane_angle, matrix_to_sixd, mirror_matrix, sixd_to_matrix, turn_rotations, turned_away

__all__ = ["STAGES", "Proposals", "Detections", "CascadeRun", "normalize", "pyramid_levels", "propose",
           "propose_levels", "pyramid_part", "decode_level", "merge_levels", "refine", "last_stage_input", "finish", "finish_crops",
           "relook", "decode_last_stage", "place_in_image",
           "flip_averaged", "mean_with_mirrored", "mean_lean", "upright_pose", "updown_crops", "upside_down_pose", "run_cascade",
           "follow"]

STRIDE, CELL = 2, 12  # P-Net sees a 12x12 window every 2 pixels
STAGES = ("pnet", "rnet", "fpnet")  # the order they run in; ``run_cascade(until=...)`` stops after any
# A face leaning more than this in its crop (FPNet's orientation head) is cut again turned upright for its pose:
# the pose branch learnt upright heads (AFLW's rolls, mostly within 20 degrees) best.
RECUT_LEAN = 20.0
# The orientation head reads the lean of a face that leans little best: the crop is cut again this many times,
# each turned by the lean read so far plus what the head still sees in the last crop (chosen on the validation
# split of the training crops: pose error upside down 13.3, 12.2 and 10.6 degrees with 1, 2 and 3 cuts).
RECUT_STEPS = 3
# A followed face whose last in-plane angle is within this of upright is cut upright (a quarter of a turned crop's
# pixels, no resampling); one further is cut turned by it. Well inside ``RECUT_LEAN``, so a face near a detection's
# recut lean is cut the same way on every frame (chosen on ``benchmarks.live``'s clips: of 10, 20 and every face
# turned, 10 gives the tracked pose closest to ``detect``'s).
UPRIGHT_FOLLOW = 10.0
# A face that the up/down check (``nets.UpDownNet``) finds upside down as read is read again from the half turn; the
# new reading is taken where its roll stays within this of the half turn (the orientation head, refining the lean
# from there, can drift to a third reading that is neither; chosen on the validation split and on the reference
# faces of tests/data/aflw2000_reference.json: without it, an upright face of AFLW2000 was read 60 degrees off).
FLIP_SPREAD = 45.0
# FPNet reads the pose of a face turned less than this away from the camera (``rotation.turned_away``) again, from a
# crop of the box it found for the face, squared (as the tracker cuts a followed face): that box frames a face as
# training framed it (about the true box) better than R-Net's proposal does. A face turned further keeps the
# proposal's crop, which frames a profile better. Chosen on the validation split of the training crops
# (docs/training.md, "Reading the pose").
RELOOK_TURN = 60.0
# A candidate overlapping a face already known (a tracker's followed face) by more IoU than this is that face
KNOWN_IOU = 0.3


def normalize(pixels: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """0-255 RGB -> MTCNN's input range, ``(x - 127.5) / 128`` (any shape): a new tensor, or ``pixels``
    itself overwritten (``inplace``, for float crops just cut)."""
    if inplace:
        return pixels.sub_(127.5).mul_(0.0078125)
    return (pixels - 127.5) * 0.0078125


@dataclass
class Proposals:
    """Candidate faces after a stage: ``boxes (N, 4)`` and ``scores (N,)``."""

    boxes: torch.Tensor
    scores: torch.Tensor

    def __len__(self) -> int:
        return len(self.boxes)

    def without(self, known: torch.Tensor | None) -> Proposals:
        """The candidates that overlap none of the ``known (K, 4)`` boxes by more than ``KNOWN_IOU`` (IoU)."""
        if known is None or not len(known) or not len(self):
            return self
        new = box_overlap(self.boxes, known.to(self.boxes)).amax(1) <= KNOWN_IOU
        return Proposals(self.boxes[new], self.scores[new])


@dataclass
class Detections:
    """The last stage's output for ``N`` faces."""

    boxes: torch.Tensor  # (N, 4) x1, y1, x2, y2
    scores: torch.Tensor  # (N,)
    landmarks: torch.Tensor  # (N, 5, 2) eyes, nose, mouth corners (x, y)
    rotations: torch.Tensor  # (N, 3, 3), or (N, 0, 0) when the network has no rotation head

    @staticmethod
    def empty(like: torch.Tensor, has_rotation: bool) -> Detections:
        """No face, with ``like``'s dtype and device."""
        z, r = like.new_zeros(0), 3 if has_rotation else 0
        return Detections(z.reshape(0, 4), z, z.reshape(0, 5, 2), z.reshape(0, r, r))

    def __len__(self) -> int:
        return len(self.boxes)

    def cpu(self) -> Detections:
        return Detections(self.boxes.cpu(), self.scores.cpu(), self.landmarks.cpu(), self.rotations.cpu())

    def __getitem__(self, index) -> Detections:
        """The faces at ``index`` (a slice, indices or a boolean mask)."""
        return Detections(self.boxes[index], self.scores[index], self.landmarks[index], self.rotations[index])


@dataclass
class CascadeRun:
    """What ``run_cascade`` made of one image, stage by stage; a stage that did not run is ``None``.

    ``ii`` is the image's ``(3, H + 1, W + 1)`` integral image that the stages cut their crops from (``None``
    when P-Net proposed nothing on levels handed in); ``seconds`` the time of each step that ran
    (``pyramid``, ``pnet``, ``rnet``, ``fpnet``).
    """

    ii: torch.Tensor | None
    proposals: Proposals | None = None  # P-Net's, squared
    refined: Proposals | None = None  # R-Net's, squared: the last stage's input windows
    detections: Detections | None = None  # FPNet's (or O-Net's): the faces
    seconds: dict[str, float] = field(default_factory=dict)

    def last_stage_input(self) -> tuple[torch.Tensor, torch.Tensor]:
        """R-Net's boxes that overlap the image ``(N, 4)`` and their normalised ``(N, 3, 48, 48)`` crops: what the
        last stage reads (evaluation and the data set builder hand the same crops to other last stages)."""
        return last_stage_input(self.ii, self.refined)


def decode_level(prob: torch.Tensor, reg: torch.Tensor, scale: float, threshold: float,
                 nms_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """P-Net's output on one pyramid level (``prob (1, h', w')``, ``reg (1, 4, h', w')``) -> the windows scoring
    at least ``threshold`` that survive NMS within the level, as numpy ``(K, 8)`` float32 boxes (corners in
    the image's pixels, then the 4 regression offsets, kept for later) and ``(K,)`` scores.

    Decoded in numpy, where these small steps cost a tenth of torch's; the arithmetic is the same float32.
    """
    prob, reg = prob[0].detach().cpu().numpy(), reg[0].detach().cpu().numpy()
    rows, cols = np.nonzero(prob >= np.float32(threshold))
    xy = np.stack((cols, rows), axis=1).astype(np.float32)
    s = np.float32(scale)  # torch divides float32 by a Python float in float32 too: the same boxes
    boxes = np.concatenate((np.floor((STRIDE * xy + 1) / s), np.floor((STRIDE * xy + CELL) / s), reg[:, rows, cols].T), 1)
    scores = prob[rows, cols]
    keep = nms(boxes[:, :4], scores, nms_threshold)
    return boxes[keep], scores[keep]


def merge_levels(found: list[tuple[np.ndarray, np.ndarray]], nms_threshold: float,
                 device: torch.device | str = "cpu") -> Proposals:
    """The levels' ``decode_level`` outputs -> stage 1's proposals: NMS over all levels, box regression,
    squared, as tensors on ``device``."""
    if not found:
        return Proposals(torch.zeros(0, 4, device=device), torch.zeros(0, device=device))
    boxes, scores = (np.concatenate(parts) for parts in zip(*found))
    keep = nms(boxes[:, :4], scores, nms_threshold)
    boxes, scores = torch.from_numpy(boxes[keep]).to(device), torch.from_numpy(scores[keep]).to(device)
    return Proposals(square(apply_offsets(boxes[:, :4], boxes[:, 4:], plus_one=False)), scores)


def pyramid_levels(ii: torch.Tensor, config: DetectorConfig, part: tuple[int, int] = (0, 1)) -> list[tuple[float, torch.Tensor]]:
    """The image pyramid P-Net scans: ``(scale, (1, 3, h, w) level)`` pairs, largest first, area-resampled
    from the integral image ``ii`` (``(3, H + 1, W + 1)``) for ``config``'s minimum face size and factor.
    ``part=(k, n)``: only the levels of the ``k``-th of ``n`` groups (``pyramid_part``); ``(0, 1)``: all."""
    height, width = ii.shape[-2] - 1, ii.shape[-1] - 1
    scales = pyramid_part(pyramid_scales(height, width, config.min_face_size, config.factor), *part)
    return [(s, pyramid_level(ii, s)) for s in scales]


def pyramid_part(scales: list[float], part: int, parts: int) -> list[float]:
    """The ``part``-th of ``parts`` groups of consecutive pyramid ``scales`` (largest first), each group about an
    equal share of the pixels P-Net scans (a level's share is its scale squared): a search spread over several
    frames scans one group a frame. The largest level is about half the pixels, so with ``parts`` above the
    groups that this allows some groups are empty.

    >>> [[round(s, 2) for s in pyramid_part([0.6 * 0.7 ** k for k in range(6)], p, 3)] for p in range(3)]
    [[0.6], [0.42], [0.29, 0.21, 0.14, 0.1]]
    """
    if not 0 <= part < parts:
        raise ValueError(f"part must be in [0, {parts}), got {part}")
    shares = np.array([s * s for s in scales], dtype=np.float64)
    starts = np.concatenate(([0.0], np.cumsum(shares)[:-1])) / max(shares.sum(), 1e-12)
    group = np.minimum((starts * parts + 1e-9).astype(int), parts - 1)  # where each level's pixels begin
    return [s for s, g in zip(scales, group) if g == part]


def propose(pnet: PNet, ii: torch.Tensor, config: DetectorConfig) -> Proposals:
    """Stage 1 on the image of integral image ``ii`` (``(3, H + 1, W + 1)``, ``crops.integral_image``): P-Net
    on the image pyramid, NMS per level and over all levels, box regression, squared."""
    return propose_levels(pnet, pyramid_levels(ii, config), config)


def propose_levels(pnet: PNet, levels: list[tuple[float, torch.Tensor]], config: DetectorConfig) -> Proposals:
    """Stage 1 on pyramid levels already resampled: ``(scale, (1, 3, h, w) level)`` pairs, largest first
    (``pyramid_levels`` makes them)."""
    found = [decode_level(*pnet(normalize(level)), scale, config.pnet_threshold, config.pnet_nms) for scale, level in levels]
    return merge_levels(found, config.pnet_merge_nms, levels[0][1].device if levels else "cpu")


def _crops(ii: torch.Tensor, boxes: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised ``(M, 3, size, size)`` crops of the boxes that overlap the image, and which those are."""
    crops, valid = cut_crops(ii, boxes, size)
    return normalize(crops, inplace=True), valid


def refine(rnet: RNet, ii: torch.Tensor, proposals: Proposals, config: DetectorConfig) -> Proposals:
    """Stage 2: R-Net on 24x24 crops; keep scores above ``config.rnet_threshold``, NMS, box regression, squared."""
    if len(proposals) == 0:
        return proposals
    crops, valid = _crops(ii, proposals.boxes, 24)
    boxes = proposals.boxes[valid]
    scores, offsets = rnet(crops)
    passed = scores > config.rnet_threshold
    boxes, scores, offsets = boxes[passed], scores[passed], offsets[passed]
    keep = nms(boxes, scores, config.rnet_nms)
    return Proposals(square(apply_offsets(boxes[keep], offsets[keep])), scores[keep])


def last_stage_input(ii: torch.Tensor | None, proposals: Proposals) -> tuple[torch.Tensor, torch.Tensor]:
    """The proposals' boxes that overlap the image ``(N, 4)`` and their normalised ``(N, 3, 48, 48)`` crops."""
    if len(proposals) == 0:
        return proposals.boxes, proposals.boxes.new_zeros(0, 3, 48, 48)
    crops, valid = _crops(ii, proposals.boxes, 48)
    return proposals.boxes[valid], crops


def finish(fpnet: ONet, ii: torch.Tensor | None, proposals: Proposals, config: DetectorConfig,
           flip_pose: bool = False, image: torch.Tensor | None = None, updown: UpDownNet | None = None) -> Detections:
    """Stage 3: FPNet (or O-Net) on 48x48 crops: face score, box regression, landmarks, rotation;
    then NMS by overlap over the smaller box (see ``finish_crops``). With the ``(1, 3, H, W)`` image, a face near
    frontal is cut again from its own box for its pose (``relook``), one that FPNet's orientation head sees
    leaning cut again turned upright (``upright_pose``), and with ``updown`` one that is upside down as read is
    read again the other way up (``upside_down_pose``)."""
    return finish_crops(fpnet, *last_stage_input(ii, proposals), config, flip_pose, image, ii, updown)


def finish_crops(fpnet: ONet, boxes: torch.Tensor, crops: torch.Tensor, config: DetectorConfig,
                 flip_pose: bool = False, image: torch.Tensor | None = None, ii: torch.Tensor | None = None,
                 updown: UpDownNet | None = None) -> Detections:
    """Stage 3 on crops already cut: ``boxes (N, 4)`` and their normalised ``(N, 3, 48, 48)`` crops. Keeps the
    faces scoring above ``config.fpnet_threshold`` that survive NMS by overlap over the smaller box
    (``config.fpnet_nms``).

    ``flip_pose``: the rotation of each kept face is averaged with the mirrored rotation FPNet finds
    in the mirrored crop (one more FPNet pass over the kept faces only).
    ``image``: the ``(1, 3, H, W)`` image the crops come from: the faces near frontal are cut again from their own
    box for their pose (``relook``), and faces leaning more than ``RECUT_LEAN`` cut again turned upright
    (``upright_pose``); without it the pose is read from the crops as they are. ``ii``: the image's integral image
    (``relook`` cuts from it). ``updown``: with the image, every face is checked, cut upright as its pose says,
    and one found upside down is read again the other way up (``upside_down_pose``)."""
    if len(boxes) == 0:
        return Detections.empty(crops, fpnet.has_rotation)
    features = fpnet.features(crops)
    scores, boxes, marks = decode_last_stage(fpnet.detection(features), boxes)
    passed = scores > config.fpnet_threshold
    boxes, scores, marks = boxes[passed], scores[passed], marks[passed]
    keep = nms(boxes, scores, config.fpnet_nms, mode="min", plus_one=True)
    if not fpnet.has_rotation:
        return Detections(boxes[keep], scores[keep], marks[keep], scores.new_zeros(len(keep), 0, 0))
    faces = torch.nonzero(passed).flatten()[keep]  # the pose is worked out for these crops only
    pose_crops, kept = crops[faces], select_rows(features, faces)
    again = faces[:0]
    if image is not None and len(keep):  # faces near frontal: cut again from their own box
        pose_crops, again = relook(fpnet, image, boxes[keep], pose_crops, kept, ii)
    flip = flip_pose and len(keep)
    mirrored = None
    if len(again) or flip:  # one FPNet pass over the crops cut again and the mirrored crops
        seen = fpnet.features(torch.cat((pose_crops[again], pose_crops.flip(-1))) if flip else pose_crops[again])
        if len(again):
            kept = replace_rows(kept, again, select_rows(seen, slice(0, len(again))))
        mirrored = select_rows(seen, slice(len(again), None)) if flip else None  # what FPNet sees mirrored
    sixd = fpnet.rotation_6d(kept)
    rotations = sixd_to_matrix(sixd) if mirrored is None else mean_with_mirrored(sixd, fpnet.rotation_6d(mirrored))
    marks = marks[keep]
    if image is not None and fpnet.has_orientation and len(keep):
        lean = fpnet.in_plane(kept)
        if mirrored is not None:
            lean = mean_lean(lean, fpnet.in_plane(mirrored))
        rotations, marks = upright_pose(fpnet, image, boxes[keep], lean, rotations, marks, flip_pose)
        if updown is not None:
            rotations, marks = upside_down_pose(updown, fpnet, image, boxes[keep], rotations, marks, flip_pose)
    return Detections(boxes[keep], scores[keep], marks, rotations)


def relook(fpnet: ONet, image: torch.Tensor, boxes: torch.Tensor, crops: torch.Tensor, features: LastStageFeatures,
           ii: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The faces FPNet found in ``crops`` (``(N, 3, 48, 48)`` normalised, with their ``features``) and boxed as
    ``boxes (N, 4)`` in ``image (1, 3, H, W)``: those it reads turned less than ``RELOOK_TURN`` away from the camera
    (``rotation.turned_away``) and leaning at most ``RECUT_LEAN`` (the others are cut again turned upright, from the
    same box, by ``upright_pose``) cut again from the image at their box squared. Returns the crops, those faces'
    cut again and the others as they were, and the indices ``(K,)`` of the faces cut again (their pose is to be
    read from FPNet's features of the new crops). ``ii``: the image's integral image, to cut them from in one
    gather."""
    again = turned_away(sixd_to_matrix(fpnet.rotation_6d(features))) < RELOOK_TURN
    again &= fpnet.in_plane(features).abs() <= RECUT_LEAN
    again = torch.nonzero(again).flatten()
    if not len(again):
        return crops, again
    windows = square(boxes[again])
    cut, valid = padded_crops(image, windows, 48) if ii is None else padded_crops_from(ii, image, windows, 48)
    again = again[valid]
    crops = crops.clone()
    crops[again] = normalize(cut, inplace=True)
    return crops, again


def mean_lean(lean: torch.Tensor, lean_of_mirrored: torch.Tensor) -> torch.Tensor:
    """``(N,)`` degrees: the mean direction of each crop's lean and the opposite of its mirrored crop's (a mirrored
    crop leans the other way)."""
    a, b = torch.deg2rad(lean), -torch.deg2rad(lean_of_mirrored)
    return torch.rad2deg(torch.atan2(torch.sin(a) + torch.sin(b), torch.cos(a) + torch.cos(b)))


def upright_pose(fpnet: ONet, image: torch.Tensor, boxes: torch.Tensor, leans: torch.Tensor, rotations: torch.Tensor,
                 landmarks: torch.Tensor, flip_pose: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, 3, 3)`` rotations and ``(N, 5, 2)`` landmarks of the faces in ``boxes (N, 4)`` of ``image (1, 3, H, W)``:
    where the orientation head sees a face leaning more than ``RECUT_LEAN`` degrees (``leans (N,)``), its crop is
    cut again turned by that lean (``crops.turned_crops``), ``RECUT_STEPS`` times, each turned by the lean plus what the head still
    sees in the last crop and placed where O-Net's box regression puts the face in it (the cascade's boxes sit
    off a face it found leaning; upright, O-Net boxes it as it learnt to; with ``flip_pose`` the mean of the box
    it finds in the crop and the mirror image of the one in the mirrored crop); the pose branch, an upright expert,
    reads the last one upright, and its rotation is turned back (``Rz(-lean) R``); so are the landmarks O-Net
    places in it (O-Net learnt upright faces: on a face leaning far, upside down say, it places them as on an upright
    one). The other faces keep ``rotations`` and ``landmarks``. The boxes reported stay the cascade's."""
    leaning = torch.nonzero(leans.abs() > RECUT_LEAN).flatten()
    lean, windows = leans[leaning], square(boxes[leaning])
    for step in range(RECUT_STEPS):
        if not len(leaning):
            return rotations, landmarks
        crops, valid = turned_crops(image, windows, lean, 48)
        leaning, lean, windows, crops = leaning[valid], lean[valid], windows[valid], normalize(crops, inplace=True)
        if step + 1 < RECUT_STEPS and len(leaning):  # what the head still sees, and where the face sits upright
            features = fpnet.features(crops)
            still, offsets = fpnet.in_plane(features), fpnet.detection(features).box
            if flip_pose:
                mirrored = fpnet.features(crops.flip(-1))
                still = mean_lean(still, fpnet.in_plane(mirrored))
                m = fpnet.detection(mirrored).box  # in the mirrored crop: x1 and x2 swap and change sign
                offsets = (offsets + torch.stack((-m[:, 2], m[:, 1], -m[:, 0], m[:, 3]), 1)) / 2
            windows = square(_turned_back(apply_offsets(windows, offsets), windows, lean))
            lean = lean + still
    if not len(leaning):
        return rotations, landmarks
    out = fpnet(crops)
    upright = flip_averaged(fpnet, crops, out.sixd) if flip_pose else sixd_to_matrix(out.sixd)
    rotations, landmarks = rotations.clone(), landmarks.clone()
    rotations[leaning] = turn_rotations(upright, -lean)
    marks = place_in_image(out.box, out.landmarks, windows)[1]
    landmarks[leaning] = turn_about(marks, (windows[:, :2] + windows[:, 2:]) / 2, lean).to(landmarks.dtype)
    return rotations, landmarks


def updown_crops(image: torch.Tensor, boxes: torch.Tensor, angles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``nets.UpDownNet``'s normalised ``(M, 3, 48, 48)`` input for the faces in ``boxes (N, 4)`` of ``image (1, 3, H, W)``:
    each square box grown ``UPDOWN_WINDOW`` times, turned by ``angles (N,)`` degrees (its roll: so that it stands
    as its pose says), in a disk (``crops.disk_crops``). Returns them and the ``(N,)`` mask of boxes with a window."""
    size = round(48 * UPDOWN_WINDOW)
    windows = grown(to_numpy(square(boxes)), UPDOWN_WINDOW)
    context, valid = padded_crops(image, windows, size)
    turned = rotate_crops(context, to_numpy(angles)[valid], size)
    return normalize(disk_crops(turned), inplace=True), torch.from_numpy(np.asarray(valid)).to(boxes.device)


def upside_down_pose(updown: UpDownNet, fpnet: ONet, image: torch.Tensor, boxes: torch.Tensor, rotations: torch.Tensor,
                     landmarks: torch.Tensor, flip_pose: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, 3, 3)`` rotations and ``(N, 5, 2)`` landmarks of the faces in ``boxes (N, 4)`` of ``image (1, 3, H, W)``,
    checked for up and down: each face cut upright as its rotation says (turned by its roll,
    ``rotation.in_plane_angle``) is shown to ``updown`` with a wider view (``updown_crops``); where it says the face
    stands upside down there (FPNet's orientation head misread the lean by about 180 degrees: some faces look
    alike both ways in FPNet's crop), its pose is read again by ``upright_pose`` from the lean turned by 180
    degrees, and taken where it stays the other way up (its roll within ``FLIP_SPREAD`` of the half turn) and
    ``updown`` sees the face upright as that new pose says. The others keep ``rotations`` and ``landmarks``."""
    if not len(boxes):
        return rotations, landmarks
    lean = in_plane_angle(rotations.double()).float()
    crops, valid = updown_crops(image, boxes, lean)
    index = torch.nonzero(valid).flatten()
    down = index[updown(crops) < 0] if len(index) else index
    if not len(down):
        return rotations, landmarks
    again, marks = upright_pose(fpnet, image, boxes[down], lean[down] + 180, rotations[down], landmarks[down], flip_pose)
    new_lean = in_plane_angle(again.double()).float()
    crops, valid = updown_crops(image, boxes[down], new_lean)
    confirmed = torch.zeros_like(valid)
    confirmed[valid] = updown(crops) > 0  # the face read again stands upright as its new pose says
    confirmed &= ((new_lean - lean[down]) % 360 - 180).abs() <= FLIP_SPREAD  # and it is the other way up
    down, again, marks = down[confirmed], again[confirmed], marks[confirmed]
    rotations, landmarks = rotations.clone(), landmarks.clone()
    rotations[down], landmarks[down] = again, marks
    return rotations, landmarks


def decode_last_stage(out, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """FPNet's (or O-Net's) output for the crops of ``boxes (N, 4)`` -> face probability ``(N,)``, the
    regressed boxes ``(N, 4)`` and the landmarks ``(N, 5, 2)`` in image pixels."""
    return (face_probability(out.face_logits), *place_in_image(out.box, out.landmarks, boxes))


def place_in_image(offsets: Array, landmarks: Array, boxes: Array) -> tuple[Array, Array]:
    """The last stage's box offsets ``(N, 4)`` and landmarks ``(N, 10)`` (x then y, in units of the crop) for the
    crops of ``boxes (N, 4)`` -> the regressed boxes ``(N, 4)`` and the landmarks ``(N, 5, 2)`` in image pixels."""
    size = (boxes[:, 2:] - boxes[:, :2] + 1)[:, None, :]
    marks = landmarks.reshape(-1, 2, 5).swapaxes(1, 2) * size + boxes[:, None, :2] - 1
    return apply_offsets(boxes, offsets), marks


def flip_averaged(fpnet: ONet, crops: torch.Tensor, sixd: torch.Tensor) -> torch.Tensor:
    """``(N, 3, 3)`` rotations: FPNet's ``sixd (N, 6)`` for ``crops`` averaged with the mirrored rotation it
    finds in the mirrored crops (one more pass)."""
    return mean_with_mirrored(sixd, fpnet(crops.flip(-1)).sixd)


def mean_with_mirrored(sixd: Array, sixd_of_mirrored: Array) -> Array:
    """``(N, 3, 3)``: the mean of the rotations ``sixd (N, 6)`` and the mirror images of ``sixd_of_mirrored
    (N, 6)``, what FPNet sees in the mirrored crops."""
    mirrored = mirror_matrix(sixd_to_matrix(sixd_of_mirrored))
    return sixd_to_matrix(matrix_to_sixd(sixd_to_matrix(sixd) + mirrored))  # Gram-Schmidt of the summed columns: the mean


@contextmanager
def _timed(seconds: dict[str, float], step: str):
    start = time.perf_counter()
    yield
    seconds[step] = seconds.get(step, 0.0) + time.perf_counter() - start


def run_cascade(nets: CascadeNets, image: torch.Tensor, config: DetectorConfig, *, until: str = "fpnet",
                flip_pose: bool | None = None, levels: list[tuple[float, torch.Tensor]] | None = None,
                ii: torch.Tensor | None = None, known: torch.Tensor | None = None,
                proposals: Proposals | None = None) -> CascadeRun:
    """The cascade on one ``(1, 3, H, W)`` 0-255 image (uint8 or float), stage after stage, with ``config``'s
    settings; every caller (detector, turns, tracker, evaluation, data set builder, profiler) runs it here.

    Args:
        until: the last stage to run, one of ``STAGES`` (``"rnet"``: the last stage's input, not its faces).
        flip_pose: flip-average the rotation (default: ``config.flip_pose``).
        levels: P-Net's pyramid levels already resampled (``pyramid_levels``), scanned instead of the image's
            own (a search spread over frames scans a part of them).
        ii: the image's integral image (``crops.integral_image``), when the caller has made it already.
        known: ``(K, 4)`` boxes of faces known already (a tracker's followed faces): P-Net's and R-Net's
            candidates on them (``Proposals.without``) go no further, so a search pays only for new faces.
        proposals: P-Net's proposals, made already (``turns`` runs P-Net on all quarter turns in shared
            batches): the pyramid and P-Net are skipped.

    Returns:
        ``CascadeRun``: each stage's output and the seconds each step took.
    """
    if until not in STAGES:
        raise ValueError(f"until must be one of {STAGES}, got {until!r}")
    seconds: dict[str, float] = {}
    if proposals is None:
        if levels is None:
            with _timed(seconds, "pyramid"):
                ii = integral_image(image[0]) if ii is None else ii
                levels = pyramid_levels(ii, config)
        with _timed(seconds, "pnet"):
            proposals = propose_levels(nets.pnet, levels, config)
    proposals = proposals.without(known)
    if ii is None and len(proposals):
        with _timed(seconds, "pyramid"):
            ii = integral_image(image[0])
    run = CascadeRun(ii, proposals, seconds=seconds)
    if until == "pnet":
        return run
    with _timed(seconds, "rnet"):
        run.refined = refine(nets.rnet, ii, proposals, config).without(known)
    if until == "rnet":
        return run
    flip = config.flip_pose if flip_pose is None else flip_pose
    with _timed(seconds, "fpnet"):
        run.detections = finish(nets.fpnet, ii, run.refined, config, flip, image, nets.updown)
    return run


def _turned_back(boxes: Array, around: Array, angles: Array) -> Array:
    """Boxes found in crops of the boxes ``around`` turned by ``angles`` (as if those crops were upright) ->
    image boxes of the same size whose centres are turned back about the crops' centres."""
    centre = turn_about(((boxes[:, :2] + boxes[:, 2:]) / 2)[:, None], (around[:, :2] + around[:, 2:]) / 2, angles)[:, 0]
    half = (boxes[:, 2:] - boxes[:, :2]) / 2
    return namespace(boxes).concatenate((centre - half, centre + half), axis=1)


def _follow_crops(image: torch.Tensor, boxes: torch.Tensor, angles: np.ndarray | None) -> tuple[torch.Tensor, np.ndarray]:
    """48x48 crops of ``boxes (N, 4)``: turned by ``angles (N,)`` degrees (``crops.turned_crops``), upright where
    the angle is 0 or ``angles`` is None (``crops.padded_crops``: a quarter of a turned crop's pixels, no
    resampling). Returns the crops of the boxes with a window and the ``(N,)`` numpy mask of which those are."""
    turned = np.zeros(len(boxes), bool) if angles is None else angles != 0
    if not turned.any():
        crops, valid = padded_crops(image, boxes, 48)
        return crops, to_numpy(valid)
    if turned.all():
        crops, valid = turned_crops(image, boxes, angles, 48)
        return crops, to_numpy(valid)
    windows = to_numpy(boxes)
    upright, valid_upright = padded_crops(image, windows[~turned], 48)
    tilted, valid_turned = turned_crops(image, windows[turned], angles[turned], 48)
    valid = np.zeros(len(boxes), bool)
    valid[~turned], valid[turned] = valid_upright, valid_turned
    crops = upright.new_empty((int(valid.sum()),) + upright.shape[1:])
    at = torch.from_numpy(turned[valid]).to(crops.device)
    crops[~at], crops[at] = upright, tilted
    return crops, valid


def follow(nets: CascadeNets, image: torch.Tensor, boxes: torch.Tensor, config: DetectorConfig,
           flip_pose: bool | None = None, angles: torch.Tensor | None = None,
           corrections: torch.Tensor | None = None) -> tuple[torch.Tensor, Detections, torch.Tensor | None]:
    """Stage 3 alone on known faces, without P-Net, R-Net or NMS between them (a tracker's frame).

    Each of ``boxes (N, 4)`` (square windows where the faces are expected in the ``(1, 3, H, W)`` image, a
    face's last FPNet box moved on) is cut at 48x48 and goes through FPNet, which moves the box (its box
    regression, as for R-Net's boxes in a detection) and decides whether the face is still there
    (``config.fpnet_threshold``). Crops are cut with black padding where a box leaves the image (as the
    original MTCNN pads them): a face at the border is cut whole, not stretched from its visible part, so
    its box does not drift. The mirrored crops go through FPNet in the same batch as the crops. A face that
    FPNet's orientation head sees leaning is read upright, as in ``finish_crops`` (``upright_pose``), so a
    followed face gets the pose a detection gives it.

    ``angles (N,)``: each face's last in-plane angle (``rotation.in_plane_angle``), in degrees. A face leaning
    more than ``UPRIGHT_FOLLOW`` is then cut turned by it (``crops.turned_crops``) so that FPNet sees it upright
    (PCN's idea), and its box, landmarks and rotation are turned back into the image; the others are cut
    upright (one that reads more than ``UPRIGHT_FOLLOW`` there, a sudden roll, is read again at once from a crop
    turned by what it read). ``None``: upright crops, a leaning face read upright as in ``finish_crops``.

    ``corrections (N, 3, 3)``: each face's mirror correction measured on an earlier frame (returned by a call
    with the mirrored pass): this call skips the mirrored crops and reads each rotation from the crop alone,
    corrected by it (``R corrections``). A head moves little between frames, and the flip average's change to
    its rotation less (a degree or two, FPNet's left-right bias): a tracker pays for the mirrored pass on some
    frames only.

    Returns:
        the indices ``(K,)`` of the boxes whose face is still there, their ``Detections``, and, after a mirrored
        pass, each of those faces' mirror correction ``(K, 3, 3)``: ``Rc^T Ra``, from the rotation read from the
        crop alone ``Rc`` to the flip average ``Ra`` (in the head's frame, so it holds at any turn of the crop);
        ``None`` without a mirrored pass.
    """
    flip = (config.flip_pose if flip_pose is None else flip_pose) and nets.fpnet.has_rotation and corrections is None
    device = boxes.device
    if angles is not None:  # a face within UPRIGHT_FOLLOW of upright is cut upright, as a detection cuts it
        angles = to_numpy(angles).astype(np.float32)
        angles = np.where(np.abs(angles) > UPRIGHT_FOLLOW, angles, np.float32(0))
    crops, valid = _follow_crops(image, boxes, angles)
    valid = to_numpy(valid)
    index = np.nonzero(valid)[0]
    if not len(index):
        return torch.from_numpy(index).to(device), Detections.empty(boxes.float(), nets.fpnet.has_rotation), None
    windows = to_numpy(boxes)[valid]
    crops = normalize(crops, inplace=True)
    fpnet = nets.fpnet
    # on a few crops, one call with the mirrored ones costs about what each of two separate calls does
    features = fpnet.features(torch.cat((crops, crops.flip(-1))) if flip else crops)
    n = len(crops)
    out = fpnet.detection(select_rows(features, slice(0, n)) if flip else features)
    # from here on a few numbers per face: numpy (``arrays``)
    scores = to_numpy(face_probability(out.face_logits))
    found, marks = place_in_image(to_numpy(out.box), to_numpy(out.landmarks), windows)
    stays = scores > config.fpnet_threshold
    kept = np.nonzero(stays)[0]
    rotations, measured = np.zeros((len(kept), 0, 0), np.float32), None
    if fpnet.has_rotation:
        both = select_rows(features, torch.from_numpy(np.concatenate((kept, kept + n)) if flip else kept).to(device))
        sixd = to_numpy(fpnet.rotation_6d(both))
        k = len(kept)
        rotations = sixd_to_matrix(sixd[:k])
        if flip:
            averaged = mean_with_mirrored(sixd[:k], sixd[k:])
            rotations, measured = averaged, rotations.swapaxes(-1, -2) @ averaged
        elif corrections is not None:
            rotations = rotations @ to_numpy(corrections).astype(np.float32)[index[kept]]
        if angles is None and fpnet.has_orientation and k:  # as ``finish_crops``: a leaning face is read upright
            lean = fpnet.in_plane(both)
            lean = mean_lean(lean[:k], lean[k:]) if flip else lean
            if bool((lean.abs() > RECUT_LEAN).any()):
                rotations, upright_marks = upright_pose(fpnet, image, torch.from_numpy(found[kept]).to(device), lean,
                                                        torch.from_numpy(rotations).to(device),
                                                        torch.from_numpy(marks[kept]).to(device), flip)
                rotations = to_numpy(rotations)
                marks[kept] = to_numpy(upright_marks)  # marks: this call's own array
        elif angles is not None and k:  # a face cut upright that leans beyond UPRIGHT_FOLLOW now (a sudden roll)
            lean = np.where(angles[index[kept]] == 0, in_plane_angle(rotations), 0).astype(np.float32)
            again = np.nonzero(np.abs(lean) > UPRIGHT_FOLLOW)[0]
            if len(again):  # is read from a crop turned by it at once, as the next frame would read it
                redo = follow(nets, image, boxes[torch.from_numpy(index[kept][again]).to(device)], config, flip_pose,
                              torch.from_numpy(lean[again]), None if corrections is None else corrections[index[kept][again]])
                rotations = rotations.copy()
                rotations[again[to_numpy(redo[0])]] = to_numpy(redo[1].rotations)  # in the image, as these crops
    if angles is not None:  # from the turned crops back into the image
        turn = angles[index]
        found = _turned_back(found, windows, turn)
        marks = turn_about(marks, (windows[:, :2] + windows[:, 2:]) / 2, turn)
        rotations = turn_rotations(rotations, -turn[stays]) if rotations.size else rotations
    tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(device)  # noqa: E731
    return (tensor(index[stays]), Detections(tensor(found[stays]), tensor(scores[stays]), tensor(marks[stays]), tensor(rotations)),
            None if measured is None else tensor(measured))
