"""Train FPNet by distillation: face score, box, landmarks and the teacher's head rotation.

    python -m training.train [--data data_cache/fpnet] [--out runs/fpnet] [options]

Defaults are the thesis' recipe: Adam, learning rate 0.01 decayed x0.83 per epoch, batch 64, 30 epochs,
dropout 0.25, loss = face cross-entropy + for faces (box L2 + rotation L2 on the 6D vectors), online
sample mining that keeps the middle 60% of each batch by face loss, weights initialised at random.
Every part is a flag (``--init onet``, ``--rotation-loss geodesic``, ``--landmark-weight``,
``--distill-weight`` ...). The shipped FPNet: ``--init onet --freeze-detection --pose-hidden 96
--pose-channels 64 --jitter 2 ...`` (O-Net frozen, only a pose branch and the rotation head learn; see
README). Logs to TensorBoard in ``--out``, keeps the best checkpoint by validation
pose error as ``best.safetensors`` (metadata ``pose=trained``) and resumes from ``last.pt``.
"""
from __future__ import annotations

import argparse
import json
import math
import random
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from facepose.cascade import normalize
from facepose.nets import FPNet
from facepose.rotation import geodesic_distance, matrix_to_euler, sixd_to_matrix
from facepose.weights import WEIGHTS_DIR, load_fpnet, save_net

from .augment import augment_crops, jitter_crops
from .build_dataset import KIND
from .samples import Samples, epoch_indices, load_samples, mirror_batch

__all__ = ["main", "train", "evaluate_samples", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("data_cache/fpnet"))
    p.add_argument("--out", type=Path, default=Path("runs/fpnet"))
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--lr-decay", type=float, default=0.83, help="learning rate factor per epoch")
    p.add_argument("--dropout", type=float, default=0.25)
    p.add_argument("--init", choices=["scratch", "onet"], default="scratch", help="random weights, or O-Net's")
    p.add_argument("--init-from", type=Path, default=None, help="start from these FPNet weights (fine-tuning)")
    p.add_argument("--pose-hidden", type=int, default=0,
                   help="dense units of a pose branch of its own on the conv features (0: the rotation head "
                        "reads the shared 256 units only, the thesis' FPNet)")
    p.add_argument("--pose-channels", type=int, default=0,
                   help="the pose branch reads a 2x2 convolution of its own with this many maps over the third "
                        "pooling (0: it reads conv4's features)")
    p.add_argument("--freeze-detection", action="store_true",
                   help="train the rotation head (and pose branch) only; everything else keeps the weights of "
                        "--init/--init-from, so face scores, boxes and landmarks stay O-Net's exactly")
    p.add_argument("--rotation-loss", choices=["l2", "geodesic"], default="l2")
    p.add_argument("--rotation-weight", type=float, default=1.0)
    p.add_argument("--box-weight", type=float, default=1.0)
    p.add_argument("--landmark-weight", type=float, default=0.0, help="L2 to O-Net's landmarks (0: off)")
    p.add_argument("--distill-weight", type=float, default=0.0, help="weight of matching O-Net's face score (0: off)")
    p.add_argument("--distill-loss", choices=["bce", "logit"], default="bce",
                   help="bce: cross-entropy to O-Net's face probability; logit: squared error to O-Net's face "
                        "logit (log-odds), clipped at +-4 where both are sure, so scores near the threshold match")
    p.add_argument("--face-weight", type=float, default=1.0, help="weight of face cross-entropy on IoU labels")
    p.add_argument("--detection-teacher", choices=["none", "onet"], default="none",
                   help="onet: the frozen original O-Net, run on each (mirrored) batch, is the target of face "
                        "probability (--distill-weight), box offsets (--box-weight, all samples) and landmarks "
                        "(--landmark-weight), so detection stays O-Net's")
    p.add_argument("--mining", choices=["middle60", "hard70", "none"], default="middle60",
                   help="per batch keep the middle 60%% by face loss (thesis), the hardest 70%% (MTCNN), or all")
    p.add_argument("--negatives-per-positive", type=float, default=1.5)
    p.add_argument("--no-mirror", action="store_true", help="no random horizontal mirroring")
    p.add_argument("--augment", type=float, default=0.0,
                   help="share of crops given photometric augmentation and low resolution (training.augment); "
                        "with --detection-teacher onet, O-Net labels the augmented crops")
    p.add_argument("--jitter", type=float, default=0.0,
                   help="random shifts (up to 6%% of the side) and zooms (+-8%%) of the crops, times this factor "
                        "(0: off); with --freeze-detection only: boxes and landmarks would no longer fit")
    p.add_argument("--limit", type=int, default=None, help="use at most this many training samples (tests)")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (tests)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    return p


def make_model(init: str, dropout: float, pose_hidden: int = 0, pose_channels: int = 0) -> FPNet:
    model = FPNet(dropout=dropout, pose_hidden=pose_hidden, pose_channels=pose_channels)
    if init == "onet":
        onet, _ = load_fpnet(WEIGHTS_DIR / "onet.safetensors")
        missing, unexpected = model.load_state_dict(onet.state_dict(), strict=False)
        assert all(k.startswith(("rotation", "pose_")) for k in missing) and not unexpected
    return model


def to_input(crops: torch.Tensor) -> torch.Tensor:
    """``(N, 48, 48, 3)`` uint8 -> normalised ``(N, 3, 48, 48)`` float, as the cascade feeds FPNet."""
    return normalize(crops.permute(0, 3, 1, 2).float())


def face_logit(logits: torch.Tensor) -> torch.Tensor:
    """``(N, 2)`` two-class logits -> ``(N,)`` log-odds of "face" (the score is its sigmoid)."""
    return logits[:, 1] - logits[:, 0]


def clipped_logit_loss(student: torch.Tensor, teacher: torch.Tensor, clip: float = 4.0) -> torch.Tensor:
    """Mean squared error between ``(N,)`` log-odds; where the teacher is beyond ``+-clip`` (probability
    above 0.982 or below 0.018) the student only has to be beyond ``+-clip`` too."""
    target = teacher.clamp(-clip, clip)
    diff = student - target
    diff = torch.where(teacher >= clip, diff.clamp(max=0), torch.where(teacher <= -clip, diff.clamp(min=0), diff))
    return (diff ** 2).mean()


def rotation_loss(predicted: torch.Tensor, target: torch.Tensor, posed: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean over the ``posed`` (N,) samples of ``(N, 6)`` 6D rotations: geodesic angle (radians) or L2."""
    if not posed.any():
        return predicted.sum() * 0
    if kind == "geodesic":
        return geodesic_distance(sixd_to_matrix(predicted[posed]), sixd_to_matrix(target[posed])).mean()
    return ((predicted[posed] - target[posed]) ** 2).sum(1).mean()


def losses(model: FPNet, batch: Samples, args: argparse.Namespace, mirror: bool, gen: torch.Generator,
           onet: FPNet | None = None) -> dict:
    x = to_input(batch.crops)
    box, marks, sixd = batch.box.float(), batch.marks.float(), batch.sixd.float()
    if mirror:
        flip = torch.rand(len(x), generator=gen) < 0.5
        x, box, marks, sixd = mirror_batch(x, box, marks, sixd, flip)
    if args.jitter:
        if not args.freeze_detection:
            raise ValueError("--jitter moves the face in the crop; it needs --freeze-detection")
        x = jitter_crops(x, gen, 0.06 * args.jitter, 0.08 * args.jitter)
    if args.augment:
        x = augment_crops(x, gen, args.augment)
    device = next(model.parameters()).device  # crops are prepared on the CPU, learned from on the device
    x, box, marks, sixd = (t.to(device) for t in (x, box, marks, sixd))
    kind, has_pose = batch.kind.to(device), batch.has_pose.to(device)
    out = model(x)
    if args.freeze_detection:  # only the pose part learns
        rotation = rotation_loss(out.sixd, sixd, (kind == KIND["positive"]) & has_pose, args.rotation_loss)
        return {"rotation": rotation, "loss": rotation}
    is_face = kind == KIND["positive"]
    labelled = is_face | (kind == KIND["negative"]) | (kind == KIND["inside"])
    face_loss = F.cross_entropy(out.face_logits, is_face.long(), reduction="none")
    keep = labelled.clone()
    if args.mining != "none" and labelled.sum() > 4:
        idx = torch.nonzero(labelled).flatten()
        order = idx[torch.argsort(face_loss[idx].detach(), descending=True)]
        n = len(order)
        chosen = order[int(0.2 * n):int(0.8 * n)] if args.mining == "middle60" else order[:int(math.ceil(0.7 * n))]
        keep = torch.zeros_like(labelled)
        keep[chosen] = True
    total = {"face": face_loss[keep].mean() if keep.any() else face_loss.sum() * 0}
    has_box = is_face | (kind == KIND["part"])
    reference = None
    if onet is not None:  # O-Net's own answers for these very crops
        with torch.no_grad():
            reference = onet(x)
        box, marks, has_box = reference.box, reference.landmarks, torch.ones_like(has_box)
    total["box"] = ((out.box - box) ** 2).sum(1)[has_box].mean() if has_box.any() else out.box.sum() * 0
    total["rotation"] = rotation_loss(out.sixd, sixd, is_face & has_pose, args.rotation_loss)
    if args.landmark_weight:
        with_marks = torch.ones_like(is_face) if reference is not None else is_face
        total["landmarks"] = ((out.landmarks - marks) ** 2).sum(1)[with_marks].mean() if with_marks.any() else out.landmarks.sum() * 0
    if args.distill_weight:
        if args.distill_loss == "logit":
            if reference is None:
                raise ValueError("--distill-loss logit needs --detection-teacher onet")
            total["distill"] = clipped_logit_loss(face_logit(out.face_logits), face_logit(reference.face_logits))
        else:
            p = torch.softmax(out.face_logits, 1)[:, 1].clamp(1e-6, 1 - 1e-6)
            target = torch.softmax(reference.face_logits, 1)[:, 1] if reference is not None else batch.onet_score.float().to(device)
            total["distill"] = F.binary_cross_entropy(p, target)
    weights = {"face": args.face_weight, "box": args.box_weight, "rotation": args.rotation_weight,
               "landmarks": args.landmark_weight, "distill": args.distill_weight}
    total["loss"] = sum(weights[k] * v for k, v in total.items())
    return total


@torch.inference_mode()
def evaluate_samples(model: FPNet, samples: Samples, batch_size: int = 512) -> dict:
    """Validation: face accuracy (at 0.5), pose error against the teacher in degrees (yaw, pitch, roll, mean)."""
    model.eval()
    probs, errors = [], []
    for i in range(0, len(samples), batch_size):
        b = samples.subset(torch.arange(i, min(i + batch_size, len(samples))))
        out = model(to_input(b.crops).to(next(model.parameters()).device))
        out = type(out)(*(t.cpu() for t in out))
        probs.append(torch.softmax(out.face_logits, 1)[:, 1])
        posed = (b.kind == KIND["positive"]) & b.has_pose
        if posed.any():
            angles = matrix_to_euler(sixd_to_matrix(out.sixd[posed].double()))
            diff = (angles - b.angles[posed].double()).abs()
            diff[:, 0] = torch.minimum(diff[:, 0], 360 - diff[:, 0])
            errors.append(diff)
    prob = torch.cat(probs)
    labelled = samples.kind != KIND["part"]
    correct = (prob[labelled] > 0.5) == (samples.kind[labelled] == KIND["positive"])
    err = torch.cat(errors).mean(0) if errors else torch.full((3,), float("nan"))
    model.train()
    return {"face_accuracy": correct.float().mean().item(), "yaw": err[0].item(), "pitch": err[1].item(),
            "roll": err[2].item(), "pose_mae": err.mean().item()}


def train(args: argparse.Namespace) -> dict:
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    from torch.utils.tensorboard import SummaryWriter

    args.out.mkdir(parents=True, exist_ok=True)
    train_set, val_set = load_samples(args.data, "train"), load_samples(args.data, "val")
    if args.limit:
        train_set = train_set.subset(torch.randperm(len(train_set))[: args.limit])
    device = torch.device(args.device)
    model = make_model(args.init, args.dropout, args.pose_hidden, args.pose_channels).to(device)
    if args.init_from:
        try:
            model.load_state_dict(load_fpnet(args.init_from)[0].state_dict())
        except RuntimeError:
            raise SystemExit(f"{args.init_from} does not fit FPNet(pose_hidden={args.pose_hidden}, "
                             f"pose_channels={args.pose_channels})") from None
    if args.freeze_detection:
        if args.init == "scratch" and not args.init_from:
            raise SystemExit("--freeze-detection needs trained detection weights: --init onet or --init-from")
        for p in model.detection_parameters():
            p.requires_grad_(False)
    onet = None
    if args.detection_teacher == "onet" and not args.freeze_detection:
        onet = load_fpnet(WEIGHTS_DIR / "onet.safetensors")[0].to(device).eval()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=args.lr)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=args.lr_decay)
    gen = torch.Generator().manual_seed(args.seed)
    start_epoch, best, step = 0, {"pose_mae": float("inf")}, 0
    last = args.out / "last.pt"
    if last.exists():  # resume
        state = torch.load(last, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"])
        start_epoch, step = state["epoch"] + 1, state["step"]
        best = json.loads(state["best"])
        print(f"resumed from {last} at epoch {start_epoch}")
    writer = SummaryWriter(str(args.out))
    (args.out / "args.json").write_text(json.dumps({k: str(v) for k, v in vars(args).items()}, indent=1))
    model.train()
    for epoch in range(start_epoch, args.epochs):
        if args.freeze_detection:  # only faces with a teacher pose carry a loss
            posed = torch.nonzero((train_set.kind == KIND["positive"]) & train_set.has_pose).flatten()
            order = posed[torch.randperm(len(posed), generator=gen)]
        else:
            order = epoch_indices(train_set, gen, args.negatives_per_positive)
        sums: dict[str, float] = {}
        bar = tqdm(range(0, len(order), args.batch_size), desc=f"epoch {epoch + 1}/{args.epochs}", unit="batch")
        for i in bar:
            batch = train_set.subset(order[i:i + args.batch_size])
            parts = losses(model, batch, args, not args.no_mirror, gen, onet)
            optimizer.zero_grad(set_to_none=True)
            parts["loss"].backward()
            optimizer.step()
            step += 1
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v.item()
            if step % 50 == 0:
                for k, v in parts.items():
                    writer.add_scalar(f"train/{k}", v.item(), step)
                bar.set_postfix(loss=f"{parts['loss'].item():.3f}")
            if args.max_steps and step >= args.max_steps:
                break
        scheduler.step()
        metrics = evaluate_samples(model, val_set)
        for k, v in metrics.items():
            writer.add_scalar(f"val/{k}", v, epoch)
        writer.add_scalar("train/lr", optimizer.param_groups[0]["lr"], epoch)
        n = max(1, len(range(0, len(order), args.batch_size)))
        print(f"epoch {epoch + 1}: " + " ".join(f"{k} {v / n:.4f}" for k, v in sums.items())
              + " | val " + " ".join(f"{k} {v:.3f}" for k, v in metrics.items()), flush=True)
        if metrics["pose_mae"] < best["pose_mae"] or not math.isfinite(best["pose_mae"]):
            best = {**metrics, "epoch": epoch + 1}
            save_net(model, args.out / "best.safetensors", {"pose": "trained", "epoch": epoch + 1, "val_pose_mae": metrics["pose_mae"]})
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "generator": gen.get_state(), "epoch": epoch, "step": step, "best": json.dumps(best)}, last)
        if args.max_steps and step >= args.max_steps:
            break
    writer.close()
    (args.out / "best.json").write_text(json.dumps(best, indent=1))
    print(f"best: {best}")
    return best


def main(argv: list[str] | None = None) -> dict:
    return train(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
