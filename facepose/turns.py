"""Faces at any in-plane angle: the cascade on the image turned by 0, 90, 180 and 270 degrees, merged.

MTCNN and FPNet were trained on upright faces (roll within about +-45 degrees). Turning the image by
quarter turns brings every face within 45 degrees of upright in one of the four. The pyramid is resampled
once (area resampling commutes with quarter turns) and each level turned (but the largest, see
``TURNED_SKIP``: turned faces are searched from 1.4 times the minimum face size); P-Net scans each level in all
its turns in two batches (``propose_turns``); R-Net runs in each turn (there the candidates on faces that the
upright image found standing upright stop after P-Net or R-Net, ``KNOWN_LEAN``); FPNet runs on each turn's
survivors (a face a turned image finds leaning far is kept only if O-Net, shown it upright, sees a face:
``UPRIGHT_FACE``); boxes, landmarks and rotations are turned back into the input image's pixels and camera
frame, and the faces found in several turns merged by NMS.

Conventions: ``torch.rot90(x, k, dims=(-2, -1))`` turns the picture counter-clockwise (as displayed) by
``90 k`` degrees. Camera frame as everywhere: x right, y up, z toward the viewer, so a counter-clockwise
turn on screen is a positive rotation about z, and a head with rotation ``R`` in the input appears with
``Rz(90 k) R`` in the turned image: ``R = Rz(90 k)^T R_turned``.
"""
from __future__ import annotations

import math

import torch

from .boxes import nms, square
from .cascade import Detections, Proposals, decode_level, merge_levels, normalize, pyramid_levels, run_cascade
from .config import DetectorConfig
from .crops import integral_image, turned_crops
from .nets import CascadeNets, ONet, PNet, face_probability
from .rotation import in_plane_angle

__all__ = ["TURNS", "turn", "unturn_points", "unturn_boxes", "turn_boxes", "turn_matrix", "propose_turns",
           "upright_face_scores", "run_cascade_any_rotation"]

TURNS = (0, 1, 2, 3)  # quarter turns counter-clockwise
MERGE_IOU = 0.4  # faces of different turns overlapping more than this are one face
# A face found in a quarter turn is kept if FPNet sees it leaning less than this there: within a quarter
# turn's 45 degrees of upright, with room for FPNet's error (a face leaning 45 degrees is found in two turns).
# The upright image keeps every face, as the plain detector does.
MAX_TURN_LEAN = 60.0
# A face a quarter turn's pass finds leaning more than MAX_TURN_LEAN is kept only if O-Net, on its crop cut turned
# upright by that lean, is at least this sure it is a face (``upright_face_scores``). Most such finds are false
# faces or faces another turn finds upright (merged there), but some faces leaning about 45 degrees from two turns
# are found only in a turn where they lean about 135. On the validation faces turned by 45, 135, 225 or 315
# degrees, 0.9 and 0.97 keep the same 7 more of 761 faces; no face is added on the photos of ../shared/data/photos.
UPRIGHT_FACE = 0.97
# In the merge, a face seen within this many degrees of upright in its turn is taken, of those, by score: every
# face is within 45 degrees of upright in one of the four turns.
MERGE_UPRIGHT = 45.0
# A face the upright image finds leaning less than this is known to the turned passes: their candidates on it
# stop after P-Net or R-Net (``run_cascade``'s ``known``). A quarter turn away it leans 75 degrees or more,
# beyond MAX_TURN_LEAN: the turned passes would drop it anyway, so this saves their work on it.
KNOWN_LEAN = 15.0
# P-Net skips the largest pyramid level in the turned images: there, faces are searched from 1.41 times the
# minimum face size (1 / 0.709; 28 px at the default 20). The upright image keeps every level.
# python -m benchmarks.rotation measures what this saves.
TURNED_SKIP = 1


def turn(image: torch.Tensor, k: int) -> torch.Tensor:
    """``(..., H, W)`` -> the picture turned counter-clockwise by ``90 k`` degrees (a contiguous copy)."""
    return torch.rot90(image, k, dims=(-2, -1)).contiguous() if k % 4 else image


def unturn_points(points: torch.Tensor, k: int, height: int, width: int) -> torch.Tensor:
    """Pixel coordinates ``(..., 2)`` (x, y) in the image turned by ``k`` quarter turns -> the same points in
    the original ``height x width`` image.

    >>> image = torch.arange(12.0).reshape(3, 4)
    >>> turned = turn(image, 1)
    >>> x, y = unturn_points(torch.tensor([[2.0, 1.0]]), 1, 3, 4)[0].long().tolist()
    >>> bool(turned[1, 2] == image[y, x])
    True
    """
    x, y = points[..., 0], points[..., 1]
    k %= 4
    if k == 0:
        return points.clone()
    if k == 1:
        out = (width - 1 - y, x)
    elif k == 2:
        out = (width - 1 - x, height - 1 - y)
    else:
        out = (y, height - 1 - x)
    return torch.stack(out, dim=-1)


def unturn_boxes(boxes: torch.Tensor, k: int, height: int, width: int) -> torch.Tensor:
    """``(N, 4)`` boxes (x1, y1, x2, y2) in the turned image -> the same boxes in the original image."""
    corners = unturn_points(boxes.reshape(-1, 2, 2), k, height, width)
    return torch.cat((corners.amin(dim=1), corners.amax(dim=1)), dim=1)


def turn_boxes(boxes: torch.Tensor, k: int, height: int, width: int) -> torch.Tensor:
    """``(N, 4)`` boxes in the original ``height x width`` image -> the same boxes in the image turned by ``k``
    quarter turns (``unturn_boxes`` the other way: turning by ``4 - k`` brings the turned image back).

    >>> box = torch.tensor([[10.0, 5.0, 19.0, 8.0]])
    >>> unturn_boxes(turn_boxes(box, 1, 30, 50), 1, 30, 50).tolist()
    [[10.0, 5.0, 19.0, 8.0]]
    """
    turned = (width, height) if k % 2 else (height, width)
    return unturn_boxes(boxes, (4 - k) % 4, *turned)


def turn_matrix(k: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``Rz(90 k)``: the ``(3, 3)`` camera rotation of a counter-clockwise quarter turn of the picture."""
    c, s = round(math.cos(k * math.pi / 2)), round(math.sin(k * math.pi / 2))
    return torch.tensor([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=dtype)


def propose_turns(pnet: PNet, levels: list[tuple[float, torch.Tensor]], config: DetectorConfig) -> list[Proposals]:
    """Stage 1 in each of ``TURNS``: P-Net's proposals (``cascade.propose_levels``) in the image turned by ``k``
    quarter turns, for each ``k``, from the upright image's pyramid ``levels`` (``(scale, (1, 3, h, w) level)``,
    largest first) turned; the turned images skip the first ``TURNED_SKIP`` levels. A level and its half turn
    have one shape, its quarter and three-quarter turns another: each pair goes through P-Net as one batch of two
    (on the small levels a call's fixed cost is most of its time)."""
    found: list[list] = [[] for _ in TURNS]
    for i, (scale, level) in enumerate(levels):
        for pair in ((0, 2), (1, 3)):
            pair = tuple(k for k in pair if k == 0 or i >= TURNED_SKIP)
            if not pair:
                continue
            probs, offsets = pnet(normalize(torch.cat([turn(level, k) for k in pair])))
            for j, k in enumerate(pair):
                found[k].append(decode_level(probs[j:j + 1], offsets[j:j + 1], scale, config.pnet_threshold,
                                             config.pnet_nms))
    device = levels[0][1].device if levels else "cpu"
    return [merge_levels(f, config.pnet_merge_nms, device) for f in found]


def upright_face_scores(fpnet: ONet, image: torch.Tensor, boxes: torch.Tensor, leans: torch.Tensor) -> torch.Tensor:
    """``(N,)`` O-Net's face probability for the faces in ``boxes (N, 4)`` of ``image (1, 3, H, W)`` (0-255), each
    cut from its box squared turned by its lean ``leans (N,)`` (degrees clockwise as displayed,
    ``rotation.in_plane_angle``), so that it stands upright as O-Net learnt faces; 0 for a box with no window."""
    crops, valid = turned_crops(image, square(boxes), leans, 48)
    scores = boxes.new_zeros(len(boxes))
    if len(crops):
        scores[valid] = face_probability(fpnet.detection(fpnet.features(normalize(crops, inplace=True))).face_logits)
    return scores


@torch.inference_mode()
def run_cascade_any_rotation(nets: CascadeNets, image: torch.Tensor, config: DetectorConfig,
                             flip_pose: bool | None = None) -> Detections:
    """All three stages on one ``(1, 3, H, W)`` 0-255 image in each quarter turn; the faces of all turns in
    the input's pixels and camera frame (rotations composed with the turn: roll anywhere in -180..180),
    best first.

    FPNet tells how far each face leans in the turn it was found in (``rotation.in_plane_angle`` of its pose,
    read upright by ``cascade.upright_pose``). A face found in a quarter turn where it leans more than
    ``MAX_TURN_LEAN`` is dropped (there it is not a face seen right way up: a false face, or a real one that
    its own turn finds upright), unless O-Net, shown it cut upright, is ``UPRIGHT_FACE`` sure it is a face (a
    face leaning about 45 degrees from two turns may be found only in a third). The upright image keeps all its
    faces, the plain detector's (FPNet may misjudge the lean of a small or blurred face). Faces found in several
    turns are merged by IoU, keeping of the turns that see the face within ``MERGE_UPRIGHT`` of upright the best
    scoring. (Chosen on the validation split of the training crops: 5.39 degrees of pose error, upright and
    turned by quarter turns alike, against 5.61 for keeping the most upright turn; the plain detector's is 5.00
    there.)"""
    height, width = image.shape[-2:]
    ii = integral_image(image[0])
    # resampled once: area resampling commutes with quarter turns
    proposals = propose_turns(nets.pnet, pyramid_levels(ii, config), config)
    found, leans, standing = [], [], None  # standing: the upright pass's faces standing upright (k = 0 comes first)
    for k in TURNS:
        turned = turn(image, k)  # the image itself for k = 0
        if k == 0:
            det = run_cascade(nets, image, config, flip_pose=flip_pose, ii=ii, proposals=proposals[k]).detections
        else:
            det = run_cascade(nets, turned, config, flip_pose=flip_pose, proposals=proposals[k],
                              known=turn_boxes(standing, k, height, width)).detections
        rotations = det.rotations
        if rotations.shape[-1] == 3:
            signed = in_plane_angle(rotations)
            lean = signed.abs()
            upright = (lean <= MAX_TURN_LEAN) | (k == 0)  # the upright image keeps the plain detector's faces
            doubt = torch.nonzero(~upright).flatten()
            if len(doubt):  # leaning far in this turn: kept if O-Net, shown it upright, is sure it is a face
                upright[doubt] = upright_face_scores(nets.fpnet, turned, det.boxes[doubt], signed[doubt]) >= UPRIGHT_FACE
            det, lean, rotations = det[upright], lean[upright], rotations[upright]
            rotations = turn_matrix(k, rotations.dtype).T.to(rotations.device) @ rotations
        else:
            lean = det.scores.new_zeros(len(det))
        if k == 0:  # known to the turned passes
            standing = det.boxes[lean < KNOWN_LEAN]
        found.append(Detections(unturn_boxes(det.boxes, k, height, width), det.scores,
                                unturn_points(det.landmarks, k, height, width), rotations))
        leans.append(lean)
    boxes = torch.cat([d.boxes for d in found])
    scores = torch.cat([d.scores for d in found])
    # A face within about 45 degrees of two turns is found in both, with boxes of about the same size: merged
    # by IoU, the best scoring of those seen within MERGE_UPRIGHT of upright first (the orientation head misjudges
    # the lean of a few near-profiles: by the smallest lean, a wrong turn won more often). Not by overlap over the
    # smaller box, which would let a small face (a reflection, a face on a shirt) found in another turn remove
    # the large face around it.
    order = scores - 2.0 * (torch.cat(leans) > MERGE_UPRIGHT)  # scores are at most 1: upright candidates first
    keep = nms(boxes, order, MERGE_IOU)
    keep = keep[torch.argsort(scores[keep], descending=True, stable=True)]
    return Detections(boxes[keep], scores[keep], torch.cat([d.landmarks for d in found])[keep],
                      torch.cat([d.rotations for d in found])[keep])
