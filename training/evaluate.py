"""Evaluate FPNet: head pose on AFLW2000 (end to end and on ground-truth crops), the teacher side by
side, detection AP on WIDER FACE val against the original O-Net, speed and size.

    python -m training.evaluate [--weights facepose/data/fpnet.safetensors] [--out runs/eval]

Writes ``metrics.json`` and ``metrics.md`` (the tables) to ``--out``; ``training.model_card`` draws the plots.
"""
from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from facepose import FacePoseDetector
from facepose.boxes import box_overlap, square
from facepose.cascade import finish_crops, normalize, run_cascade
from facepose.config import DetectorConfig
from facepose.crops import cut_crops, integral_image
from facepose.image import load_image
from facepose.nets import face_probability
from facepose.rotation import matrix_to_euler, sixd_to_matrix
from facepose.weights import WEIGHTS_DIR, load_last_stage
from support.paths import AFLW2000, PHOTOS, WIDER_VAL
from support.timing import interleaved, median_ratio

from .aflw2000 import crop_square, load_aflw2000, teacher_box
from .labels import teacher_labels
from .mediapipe_teacher import FaceMeshTeacher
from .metrics import aflw2000_rows, angle_errors, ap_table, average_precision, common_table, geodesic_errors, pose_table, summary
from .sources import read_wider_boxes, small_faces
from .teacher import find_whenet_h5, flip_averaged, load_whenet

__all__ = ["evaluate_aflw2000", "by_yaw", "wider_crops", "wider_ap", "speed", "markdown", "main"]


def _matches(boxes: torch.Tensor, gt: np.ndarray) -> torch.Tensor:
    """Which of ``boxes (N, 4)`` are the face of the ground-truth box ``gt``: IoU above 0.3, centre inside it."""
    if not len(boxes):
        return torch.zeros(0, dtype=torch.bool)
    boxes = boxes.float().cpu()
    iou = box_overlap(boxes, torch.tensor(gt[None]).float())[:, 0]
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    inside = (centre[:, 0] > gt[0]) & (centre[:, 0] < gt[2]) & (centre[:, 1] > gt[1]) & (centre[:, 1] < gt[3])
    return (iou > 0.3) & inside


@torch.inference_mode()
def where_lost(detector: FacePoseDetector, pixels: np.ndarray, gt: np.ndarray) -> tuple[str, float]:
    """For a face the detector missed: the stage that lost it (``pnet``: no proposal on it, ``rnet``: R-Net
    rejected them all, ``fpnet``: the last stage did) and the best last-stage face score among R-Net's boxes on
    it (NaN if none reached it)."""
    image = torch.from_numpy(pixels).permute(2, 0, 1)[None]
    run = run_cascade(detector.nets, image, detector.config, until="rnet")
    if not _matches(run.proposals.boxes, gt).any():
        return "pnet", float("nan")
    boxes, crops = run.last_stage_input()
    on_face = _matches(boxes, gt)
    if not on_face.any():
        return "rnet", float("nan")
    scores = face_probability(detector.nets.fpnet(crops[on_face]).face_logits)
    return "fpnet", float(scores.max())


def evaluate_aflw2000(detector: FacePoseDetector, fpnet, teacher, root: Path, limit: int | None,
                      facemesh: FaceMeshTeacher | None = None) -> dict:
    """Pose on AFLW2000: FacePose end to end, FPNet on ground-truth crops, WHENet, and with ``facemesh``
    MediaPipe Face Mesh both as a user runs it (whole image, one pass) and as the second teacher (a square
    around the face, flip-averaged), the teachers' label (their mean), and FacePose against MediaPipe on
    the faces both find."""
    samples = load_aflw2000(root)[:limit]
    truth = np.stack([s.angles for s in samples])
    e2e_pred, e2e_single, e2e_idx, crop_pred, teach_pred, teach_flip, e2e_rot = [], [], [], [], [], [], []
    mesh_peer, mesh_teacher = [], []  # (3, 3) rotations or None per face
    batch_t, lost = [], {}
    single = detector.replace(flip_pose=False)
    for i, s in enumerate(tqdm(samples, desc="AFLW2000", unit="img")):
        pixels = load_image(s.image)
        gt = s.box68
        faces = detector.detect(pixels)
        ok = torch.nonzero(_matches(torch.tensor([f.box for f in faces]).reshape(-1, 4), gt)).flatten()
        if len(ok):
            k = int(ok[0])  # best scoring match
            f, g = faces[k], single.detect(pixels)[k]  # the same faces: flipping changes the pose only
            e2e_pred.append([f.yaw, f.pitch, f.roll])
            e2e_rot.append(f.rotation)
            e2e_single.append([g.yaw, g.pitch, g.roll])
            e2e_idx.append(i)
        else:
            lost[i] = where_lost(detector, pixels, gt)
        # FPNet on the ground-truth box (squared 68-landmark box), as the cascade would crop it
        image = torch.from_numpy(pixels).permute(2, 0, 1).float()
        crops, _ = cut_crops(integral_image(image), square(torch.tensor(gt[None]).float()), 48)
        with torch.inference_mode():
            out = fpnet(normalize(crops))
            crop_pred.append(matrix_to_euler(sixd_to_matrix(out.sixd.double()))[0].numpy())
        if facemesh is not None:
            mesh_peer.append(facemesh.rotation(pixels))
            mesh_teacher.append(facemesh.teach(pixels, teacher_box(s.landmarks)))
        batch_t.append(crop_square(Image.fromarray(pixels), teacher_box(s.landmarks)))
        if len(batch_t) == 32 or i == len(samples) - 1:
            x = torch.from_numpy(np.stack(batch_t)).permute(0, 3, 1, 2).float()
            with torch.inference_mode():
                teach_pred.append(teacher(x).numpy())
                teach_flip.append(flip_averaged(teacher, x).numpy())
            batch_t = []
    e2e = angle_errors(np.array(e2e_pred).reshape(-1, 3), truth[e2e_idx])
    teach = angle_errors(np.concatenate(teach_pred), truth)
    teach_f = angle_errors(np.concatenate(teach_flip), truth)
    mesh = _mediapipe_rows(np.concatenate(teach_flip), mesh_peer, mesh_teacher, truth, np.array(e2e_pred), e2e_idx)
    return mesh | {
        "faces": len(samples),
        "detected_share": len(e2e_idx) / len(samples),
        "end_to_end": summary(e2e),
        "end_to_end_without_flip": summary(angle_errors(np.array(e2e_single).reshape(-1, 3), truth[e2e_idx])),
        "fpnet_on_ground_truth_crops": summary(angle_errors(np.array(crop_pred), truth)),
        "teacher_on_detected": summary(teach[e2e_idx]),
        "teacher": summary(teach),
        "teacher_flip_averaged": summary(teach_f),
        "by_yaw": by_yaw(truth, e2e, e2e_idx, lost, detector.config.fpnet_threshold,
                         geodesic_errors(np.array(e2e_rot).reshape(-1, 3, 3), truth[e2e_idx])),
    }


def _mediapipe_rows(whenet: np.ndarray, peer: list, teacher: list, truth: np.ndarray, e2e: np.ndarray,
                    e2e_idx: list[int]) -> dict:
    """MediaPipe's rows of the AFLW2000 table (none without MediaPipe)."""
    if not peer:
        return {}
    as_angles = lambda rs: np.array([matrix_to_euler(torch.from_numpy(r)).numpy() for r in rs]).reshape(-1, 3)  # noqa: E731
    found = np.array([r is not None for r in peer])
    taught = np.array([r is not None for r in teacher])
    label, _ = teacher_labels(torch.from_numpy(whenet),
                              torch.from_numpy(np.stack([r if r is not None else np.full((3, 3), np.nan) for r in teacher])))
    detected = np.zeros(len(truth), bool)
    detected[e2e_idx] = True
    both = found & detected
    ours = np.full((len(truth), 3), np.nan)
    ours[e2e_idx] = e2e
    return {
        "mediapipe": summary(angle_errors(as_angles([r for r in peer if r is not None]), truth[found])),
        "mediapipe_teacher": summary(angle_errors(as_angles([r for r in teacher if r is not None]), truth[taught])),
        "teachers_mean": summary(angle_errors(matrix_to_euler(label).numpy(), truth)),
        "common_with_mediapipe": {
            "fpnet": summary(angle_errors(ours[both], truth[both])),
            "mediapipe": summary(angle_errors(as_angles([peer[i] for i in np.flatnonzero(both)]), truth[both])),
        },
    }


@dataclass
class WiderCrops:
    """What the last stage sees on WIDER FACE val: per image, R-Net's boxes and their 48x48 crops, and
    the true faces ``(boxes, ignore)`` (invalid or under ``min_face`` px)."""

    proposals: list[tuple[torch.Tensor, torch.Tensor]]
    truth: dict[int, tuple[np.ndarray, np.ndarray]]


@torch.inference_mode()
def wider_crops(detector: FacePoseDetector, root: Path, limit: int | None, min_face: float = 20) -> WiderCrops:
    """P-Net and R-Net with ``detector``'s settings once per image; every last stage then gets the same crops."""
    gt = list(read_wider_boxes(next(root.glob("wider_face_*_bbx_gt.txt"))).items())[:limit]
    proposals, truth = [], {}
    for i, (name, (boxes, invalid)) in enumerate(tqdm(gt, desc="WIDER val (P-Net, R-Net)", unit="img")):
        truth[i] = (boxes, invalid | small_faces(boxes, min_face))
        image = torch.from_numpy(load_image(root / "images" / name)).permute(2, 0, 1)[None].float()
        boxes, crops = run_cascade(detector.nets, image, detector.config, until="rnet").last_stage_input()
        proposals.append((boxes, crops.to(torch.float16)))  # half the memory
    return WiderCrops(proposals, truth)


@torch.inference_mode()
def wider_ap(last_stages: dict[str, torch.nn.Module], data: WiderCrops, config: DetectorConfig | None = None) -> dict:
    """AP at IoU 0.5 of each last stage (FPNet or O-Net) on the same R-Net proposals, with ``config``'s
    last-stage thresholds (default: the detector's defaults)."""
    config = config or DetectorConfig()
    out = {}
    for key, net in last_stages.items():
        dets = []
        for i, (boxes, crops) in enumerate(data.proposals):
            d = finish_crops(net.eval(), boxes, crops.float(), config)
            dets += [(s, i, b) for s, b in zip(d.scores.tolist(), d.boxes.numpy())]
        out[key] = {"ap50": average_precision(dets, data.truth), "detections": len(dets)}
    return out | {"images": len(data.truth), "faces": int(sum((~ig).sum() for _, ig in data.truth.values()))}


def speed(weights: Path, photos: Path, repeats: int = 5) -> dict:
    """Seconds per photo with FPNet and with O-Net (the median of ``repeats`` passes over the photos, the two
    detectors taking turns photo by photo so that the machine's drift hits both, ``support.timing.interleaved``);
    what pose adds: the median over the passes of FPNet's time over O-Net's in the same pass, less one."""
    files = sorted(p for p in photos.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    arrays = [load_image(p) for p in files]
    detectors = {"fpnet": FacePoseDetector(weights=weights), "onet": FacePoseDetector(weights=WEIGHTS_DIR / "onet.safetensors")}
    times = interleaved({name: det.detect for name, det in detectors.items()}, arrays, repeats)
    out = {f"{name}_s_per_image": statistics.median(t) for name, t in times.items()}
    out["pose_overhead"] = median_ratio(times["fpnet"], times["onet"]) - 1
    return out


YAW_TABLE_EDGES = (0, 30, 60, 75, 100)  # the model card's bins of |yaw| (AFLW2000's faces reach 99 degrees)
YAW_PLOT_EDGES = tuple(range(0, 101, 10))  # the plot's


def by_yaw(truth: np.ndarray, e2e: np.ndarray, e2e_idx: list[int], lost: dict[int, tuple[str, float]],
           threshold: float, geodesic: np.ndarray | None = None) -> dict:
    """Per bin of the true |yaw|: faces, the share found, the mean error per axis of those found (and, given their
    ``geodesic`` errors, the mean angle between the rotation found and the true one), and where the missed ones
    were lost (``where_lost``), for the table (``YAW_TABLE_EDGES``) and the plot (``YAW_PLOT_EDGES``)."""
    yaw = np.abs(truth[:, 0])
    errors = np.full((len(truth), 4), np.nan)
    errors[e2e_idx, :3] = e2e
    if geodesic is not None:
        errors[e2e_idx, 3] = geodesic
    out = {}
    for name, edges in (("table", YAW_TABLE_EDGES), ("plot", YAW_PLOT_EDGES)):
        rows = []
        for lo, hi in zip(edges[:-1], edges[1:]):
            inside = np.flatnonzero((yaw >= lo) & (yaw < hi))
            err = errors[inside]
            found = ~np.isnan(err[:, 0])
            stages = [lost[i] for i in inside if i in lost]
            rows.append({"from": lo, "to": hi, "faces": int(len(inside)), "found": int(found.sum()),
                         **{axis: float(err[found, k].mean()) if found.any() else None for k, axis in enumerate(("yaw", "pitch", "roll"))},
                         **({"geodesic": float(err[found, 3].mean()) if found.any() else None} if geodesic is not None else {}),
                         **{f"lost_at_{stage}": sum(1 for s, _ in stages if s == stage) for stage in ("pnet", "rnet", "fpnet")},
                         "lost_scores": sorted(round(v, 3) for s, v in stages if s == "fpnet")})
        out[name] = rows
    out["fpnet_threshold"] = threshold
    return out


def markdown(m: dict) -> str:
    a, w, s = m["aflw2000"], m["wider_val"], m["speed"]
    lines = [f"### Head pose on AFLW2000 ({a['faces']} faces, detected: {100 * a['detected_share']:.1f}%)", "",
             pose_table(aflw2000_rows(a)), "", *common_table(a),
             f"### Detection on WIDER FACE val ({w['images']} images, {w['faces']} faces of 20 px or more)", "",
             ap_table([("FPNet", w["fpnet"]["ap50"]), ("original O-Net", w["onet"]["ap50"])]), "",
             "### Size and speed", "", f"- FPNet weights: {m['fpnet_bytes'] / 1e6:.2f} MB",
             f"- detector with FPNet: {1000 * s['fpnet_s_per_image']:.0f} ms per photo, with O-Net: "
             f"{1000 * s['onet_s_per_image']:.0f} ms (pose adds {100 * s['pose_overhead']:.1f}%)"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", type=Path, default=WEIGHTS_DIR / "fpnet.safetensors")
    p.add_argument("--out", type=Path, default=Path("runs/eval"))
    p.add_argument("--aflw2000", type=Path, default=AFLW2000)
    p.add_argument("--wider-val", type=Path, default=WIDER_VAL)
    p.add_argument("--photos", type=Path, default=PHOTOS)
    p.add_argument("--teacher", type=Path, default=None)
    p.add_argument("--limit", type=int, default=None, help="at most this many images per benchmark")
    p.add_argument("--no-mediapipe", action="store_true", help="leave MediaPipe Face Mesh out of the comparison")
    p.add_argument("--aflw2000-only", action="store_true",
                   help="only the AFLW2000 pose measures (a model compared on the card, see training.ship --compare-eval)")
    p.add_argument("--repeats", type=int, default=5, help="passes over the photos for the speed (their median is kept)")
    p.add_argument("--speed-only", type=Path, metavar="METRICS_JSON",
                   help="only measure the speed again and rewrite the 'speed' entry of this metrics.json of the same "
                        "weights (after a change to the detector's code; then python -m training.model_card)")
    args = p.parse_args(argv)
    if args.speed_only:
        metrics = json.loads(args.speed_only.read_text())
        if metrics.get("fpnet_bytes") != args.weights.stat().st_size:
            raise SystemExit(f"{args.speed_only} is not the metrics of {args.weights} (its size differs)")
        metrics["speed"] = speed(args.weights, args.photos, args.repeats)
        args.speed_only.write_text(json.dumps(metrics, indent=1) + "\n")
        print(json.dumps(metrics["speed"], indent=1))
        return metrics
    args.out.mkdir(parents=True, exist_ok=True)
    fpnet, pose = load_last_stage(args.weights)
    if not pose:
        raise SystemExit(f"{args.weights} has no trained pose head")
    detector = FacePoseDetector(weights=args.weights)
    teacher = load_whenet(find_whenet_h5(args.teacher))
    metrics = {"weights": str(args.weights), "fpnet_bytes": args.weights.stat().st_size}
    facemesh = None
    if not args.no_mediapipe:
        try:
            facemesh = FaceMeshTeacher()
        except ImportError as e:
            print(f"note: no MediaPipe rows ({e})")
    metrics["aflw2000"] = evaluate_aflw2000(detector, fpnet, teacher, args.aflw2000, args.limit, facemesh)
    if args.aflw2000_only:
        (args.out / "metrics.json").write_text(json.dumps(metrics, indent=1))
        return metrics
    metrics["wider_val"] = wider_ap({"fpnet": fpnet, "onet": load_last_stage(WEIGHTS_DIR / "onet.safetensors")[0]},
                                    wider_crops(detector, args.wider_val, args.limit), detector.config)
    metrics["speed"] = speed(args.weights, args.photos, args.repeats)
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    (args.out / "metrics.md").write_text(markdown(metrics))
    print(markdown(metrics))
    return metrics


if __name__ == "__main__":
    main()
