"""The three stages of the cascade, each a function of an image and the boxes it is given.

Every stage works on one image held as a ``(1, 3, H, W)`` tensor of 0-255 RGB values (uint8 or float; its
integral image is what the stages read, ``crops.integral_image``) and on
``(N, 4)`` boxes in that image's pixels. They follow facenet-pytorch's MTCNN (same arithmetic, same
thresholds), with every crop of a stage resized in one batched gather instead of a Python loop.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .boxes import apply_offsets, nms, square
from .config import DetectorConfig
from .crops import cut_crops, integral_image
from .nets import CascadeNets, ONet, PNet, RNet, face_probability, select_rows
from .pyramid import pyramid_level, pyramid_scales
from .rotation import matrix_to_sixd, mirror_matrix, sixd_to_matrix

__all__ = ["Proposals", "Detections", "normalize", "propose", "propose_levels", "decode_level", "merge_levels",
           "refine", "finish", "finish_crops",
           "decode_last_stage", "flip_averaged", "mean_with_mirrored", "propose_and_refine",
           "run_cascade"]

STRIDE, CELL = 2, 12  # P-Net sees a 12x12 window every 2 pixels


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


@dataclass
class Detections:
    """The last stage's output for ``N`` faces."""

    boxes: torch.Tensor  # (N, 4) x1, y1, x2, y2
    scores: torch.Tensor  # (N,)
    landmarks: torch.Tensor  # (N, 5, 2) eyes, nose, mouth corners (x, y)
    rotations: torch.Tensor  # (N, 3, 3), or (N, 0, 0) when the network has no rotation head


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


def propose(
    pnet: PNet, ii: torch.Tensor, min_face_size: float, factor: float, threshold: float,
    nms_level: float = 0.5, nms_all: float = 0.7,
) -> Proposals:
    """Stage 1 on the image of integral image ``ii`` (``(3, H + 1, W + 1)``, ``crops.integral_image``): P-Net
    on the image pyramid, NMS per level and over all levels, box regression, squared."""
    height, width = ii.shape[-2] - 1, ii.shape[-1] - 1
    levels = [(scale, pyramid_level(ii, scale)) for scale in pyramid_scales(height, width, min_face_size, factor)]
    return propose_levels(pnet, levels, threshold, nms_level, nms_all)


def propose_levels(pnet: PNet, levels: list[tuple[float, torch.Tensor]], threshold: float, nms_level: float = 0.5,
                   nms_all: float = 0.7) -> Proposals:
    """Stage 1 on pyramid levels already resampled: ``(scale, (1, 3, h, w) level)`` pairs, largest first
    (``propose`` makes them; ``turns`` scans the same levels turned)."""
    found = [decode_level(*pnet(normalize(level)), scale, threshold, nms_level) for scale, level in levels]
    return merge_levels(found, nms_all, levels[0][1].device if levels else "cpu")


def _crops(ii: torch.Tensor, boxes: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised ``(M, 3, size, size)`` crops of the boxes that overlap the image, and which those are."""
    crops, valid = cut_crops(ii, boxes, size)
    return normalize(crops, inplace=True), valid


def refine(rnet: RNet, ii: torch.Tensor, proposals: Proposals, threshold: float, nms_threshold: float = 0.7) -> Proposals:
    """Stage 2: R-Net on 24x24 crops; keep scores above ``threshold``, NMS, box regression, squared."""
    if len(proposals) == 0:
        return proposals
    crops, valid = _crops(ii, proposals.boxes, 24)
    boxes = proposals.boxes[valid]
    scores, offsets = rnet(crops)
    passed = scores > threshold
    boxes, scores, offsets = boxes[passed], scores[passed], offsets[passed]
    keep = nms(boxes, scores, nms_threshold)
    return Proposals(square(apply_offsets(boxes[keep], offsets[keep])), scores[keep])


def finish(fpnet: ONet, ii: torch.Tensor, proposals: Proposals, threshold: float, nms_threshold: float = 0.7,
           flip_pose: bool = False) -> Detections:
    """Stage 3: FPNet (or O-Net) on 48x48 crops: face score, box regression, landmarks, rotation;
    then NMS by overlap over the smaller box (see ``finish_crops``)."""
    if len(proposals) == 0:
        return finish_crops(fpnet, proposals.boxes, ii.new_zeros(0, 3, 48, 48).float(), threshold, nms_threshold)
    crops, valid = _crops(ii, proposals.boxes, 48)
    return finish_crops(fpnet, proposals.boxes[valid], crops, threshold, nms_threshold, flip_pose)


def finish_crops(fpnet: ONet, boxes: torch.Tensor, crops: torch.Tensor, threshold: float,
                 nms_threshold: float = 0.7, flip_pose: bool = False) -> Detections:
    """Stage 3 on crops already cut: ``boxes (N, 4)`` and their normalised ``(N, 3, 48, 48)`` crops.
    ``finish`` cuts them; evaluation reuses one set of crops for several last stages.

    ``flip_pose``: the rotation of each kept face is averaged with the mirrored rotation FPNet finds
    in the mirrored crop (one more FPNet pass over the kept faces only)."""
    n_rot = 3 if fpnet.has_rotation else 0
    if len(boxes) == 0:
        z = crops.new_zeros(0)
        return Detections(z.reshape(0, 4), z, z.reshape(0, 5, 2), z.reshape(0, n_rot, n_rot))
    features = fpnet.features(crops)
    scores, boxes, marks = decode_last_stage(fpnet.detection(features), boxes)
    passed = scores > threshold
    boxes, scores, marks = boxes[passed], scores[passed], marks[passed]
    keep = nms(boxes, scores, nms_threshold, mode="min", plus_one=True)
    if not n_rot:
        return Detections(boxes[keep], scores[keep], marks[keep], scores.new_zeros(len(keep), 0, 0))
    faces = torch.nonzero(passed).flatten()[keep]  # the pose is worked out for these crops only
    sixd = fpnet.rotation_6d(select_rows(features, faces))
    rotations = flip_averaged(fpnet, crops[faces], sixd) if flip_pose and len(keep) else sixd_to_matrix(sixd)
    return Detections(boxes[keep], scores[keep], marks[keep], rotations)


def decode_last_stage(out, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """FPNet's (or O-Net's) output for the crops of ``boxes (N, 4)`` -> face probability ``(N,)``, the
    regressed boxes ``(N, 4)`` and the landmarks ``(N, 5, 2)`` in image pixels."""
    scores = face_probability(out.face_logits)
    size = (boxes[:, 2:] - boxes[:, :2] + 1)[:, None, :]
    marks = out.landmarks.reshape(-1, 2, 5).transpose(1, 2) * size + boxes[:, None, :2] - 1
    return scores, apply_offsets(boxes, out.box), marks


def flip_averaged(fpnet: ONet, crops: torch.Tensor, sixd: torch.Tensor) -> torch.Tensor:
    """``(N, 3, 3)`` rotations: FPNet's ``sixd (N, 6)`` for ``crops`` averaged with the mirrored rotation it
    finds in the mirrored crops (one more pass)."""
    return mean_with_mirrored(sixd, fpnet(crops.flip(-1)).sixd)


def mean_with_mirrored(sixd: torch.Tensor, sixd_of_mirrored: torch.Tensor) -> torch.Tensor:
    """``(N, 3, 3)``: the mean of the rotations ``sixd (N, 6)`` and the mirror images of ``sixd_of_mirrored
    (N, 6)``, what FPNet sees in the mirrored crops."""
    mirrored = mirror_matrix(sixd_to_matrix(sixd_of_mirrored))
    return sixd_to_matrix(matrix_to_sixd(sixd_to_matrix(sixd) + mirrored))  # Gram-Schmidt of the summed columns: the mean


def propose_and_refine(
    pnet: PNet, rnet: RNet, image: torch.Tensor, config: DetectorConfig,
) -> tuple[torch.Tensor, Proposals]:
    """Stages 1 and 2 on one ``(1, 3, H, W)`` 0-255 image with ``config``'s minimum face size, pyramid
    factor and the first two thresholds and NMS thresholds: the image's integral image and R-Net's
    proposals, what the last stage crops from."""
    t, n = config.thresholds, config.nms_thresholds
    ii = integral_image(image[0])
    proposals = propose(pnet, ii, config.min_face_size, config.factor, t[0], n[0], n[1])
    return ii, refine(rnet, ii, proposals, t[1], n[2])


def run_cascade(nets: CascadeNets, image: torch.Tensor, config: DetectorConfig,
                flip_pose: bool | None = None) -> Detections:
    """All three stages on one ``(1, 3, H, W)`` 0-255 image; ``flip_pose`` (default: the config's) turns
    flip averaging of the rotation on or off."""
    ii, proposals = propose_and_refine(nets.pnet, nets.rnet, image, config)
    flip = config.flip_pose if flip_pose is None else flip_pose
    return finish(nets.fpnet, ii, proposals, config.thresholds[2], config.nms_thresholds[3], flip)
