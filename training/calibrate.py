"""Calibrate FPNet's face score to O-Net's operating point.

    python -m training.calibrate runs/fpnet/best.safetensors runs/fpnet/calibrated.safetensors

Distillation leaves FPNet's face probabilities a little lower than O-Net's on faces unlike its training
crops (small, blurred), so at the same threshold it keeps fewer. This runs both cascades (last-stage
threshold 0) on training photos (WIDER FACE train by default; never evaluation data), finds the shift
``b`` of FPNet's face logit that makes it keep as many detections above 0.7 as O-Net does, and writes
the weights with ``b`` folded into the score layer's bias (metadata ``face_logit_shift``).
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from tqdm import tqdm

from facepose import FacePoseDetector
from facepose.image import load_image
from facepose.weights import WEIGHTS_DIR, load_fpnet, save_net

from .sources import SHARED, read_wider_boxes


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("weights", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--photos", type=Path, default=SHARED / "wider" / "train", help="folder in WIDER FACE layout")
    p.add_argument("--threshold", type=float, default=0.7)
    args = p.parse_args(argv)
    if "val" in args.photos.name.lower():
        raise SystemExit("refusing to calibrate on evaluation data")
    names = list(read_wider_boxes(next(args.photos.glob("wider_face_*_bbx_gt.txt"))))
    fp = FacePoseDetector(weights=args.weights, thresholds=(0.6, 0.7, 0.0))
    on = FacePoseDetector(weights=WEIGHTS_DIR / "onet.safetensors", thresholds=(0.6, 0.7, 0.0))
    fp_scores, on_scores = [], []
    for name in tqdm(names, desc="calibrating", unit="img"):
        pixels = load_image(args.photos / "images" / name)
        fp_scores += [f.score for f in fp.detect(pixels)]
        on_scores += [f.score for f in on.detect(pixels)]
    target = int((np.array(on_scores) > args.threshold).sum())
    ranked = np.sort(logit(np.array(fp_scores)))[::-1]
    if not 0 < target < len(ranked):
        raise SystemExit(f"cannot calibrate: O-Net keeps {target} detections, FPNet proposes {len(ranked)}")
    # put the threshold midway between FPNet's target-th and next detection (a narrow gap: exact count)
    shift = float(logit(np.array(args.threshold)) - (ranked[target - 1] + ranked[target]) / 2)
    net, _ = load_fpnet(args.weights)
    with torch.no_grad():
        net.score.bias[1] += shift / 2
        net.score.bias[0] -= shift / 2
    with safe_open(str(args.weights), framework="pt") as f:
        meta = dict(f.metadata() or {})
    save_net(net, args.out, {**meta, "face_logit_shift": f"{shift:.4f}"})
    before = int((np.array(fp_scores) > args.threshold).sum())
    print(f"O-Net keeps {target} detections above {args.threshold}, FPNet {before}; "
          f"face logit shift {shift:+.3f} ({math.exp(shift):.2f}x odds) -> {args.out}")


if __name__ == "__main__":
    main()
