"""Train FPNet by distillation: face score, box, landmarks and the teacher's head rotation.

    python -m training.train [--data data_cache/fpnet] [--out runs/fpnet] [options]

Defaults are the thesis' recipe: Adam, learning rate 0.01 decayed x0.83 per epoch, batch 64, 30 epochs,
dropout 0.25, loss = face cross-entropy + for faces (box L2 + rotation L2 on the 6D vectors), online
sample mining that keeps the middle 60% of each batch by face loss, weights initialised at random.
Every part is a flag (``--init onet``, ``--rotation-loss geodesic``, ``--landmark-weight``,
``--distill-weight`` ...). Logs to TensorBoard in ``--out``, keeps the best checkpoint by validation
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
    p.add_argument("--rotation-loss", choices=["l2", "geodesic"], default="l2")
    p.add_argument("--rotation-weight", type=float, default=1.0)
    p.add_argument("--box-weight", type=float, default=1.0)
    p.add_argument("--landmark-weight", type=float, default=0.0, help="L2 to O-Net's landmarks (0: off)")
    p.add_argument("--distill-weight", type=float, default=0.0, help="BCE to O-Net's face probability (0: off)")
    p.add_argument("--face-weight", type=float, default=1.0, help="weight of face cross-entropy on IoU labels")
    p.add_argument("--detection-teacher", choices=["none", "onet"], default="none",
                   help="onet: the frozen original O-Net, run on each (mirrored) batch, is the target of face "
                        "probability (--distill-weight), box offsets (--box-weight, all samples) and landmarks "
                        "(--landmark-weight), so detection stays O-Net's")
    p.add_argument("--mining", choices=["middle60", "hard70", "none"], default="middle60",
                   help="per batch keep the middle 60%% by face loss (thesis), the hardest 70%% (MTCNN), or all")
    p.add_argument("--negatives-per-positive", type=float, default=1.5)
    p.add_argument("--no-mirror", action="store_true", help="no random horizontal mirroring")
    p.add_argument("--limit", type=int, default=None, help="use at most this many training samples (tests)")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (tests)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    return p


def make_model(init: str, dropout: float) -> FPNet:
    model = FPNet(dropout=dropout)
    if init == "onet":
        onet, _ = load_fpnet(WEIGHTS_DIR / "onet.safetensors")
        missing, unexpected = model.load_state_dict(onet.state_dict(), strict=False)
        assert set(missing) == {"rotation.weight", "rotation.bias"} and not unexpected
    return model


def to_input(crops: torch.Tensor) -> torch.Tensor:
    """``(N, 48, 48, 3)`` uint8 -> normalised ``(N, 3, 48, 48)`` float, as the cascade feeds FPNet."""
    return normalize(crops.permute(0, 3, 1, 2).float())


def losses(model: FPNet, batch: Samples, args: argparse.Namespace, mirror: bool, gen: torch.Generator,
           onet: FPNet | None = None) -> dict:
    x = to_input(batch.crops)
    box, marks, sixd = batch.box.float(), batch.marks.float(), batch.sixd.float()
    if mirror:
        flip = torch.rand(len(x), generator=gen) < 0.5
        x, box, marks, sixd = mirror_batch(x, box, marks, sixd, flip)
    out = model(x)
    kind = batch.kind
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
    posed = is_face & batch.has_pose
    if posed.any():
        if args.rotation_loss == "geodesic":
            total["rotation"] = geodesic_distance(sixd_to_matrix(out.sixd[posed]), sixd_to_matrix(sixd[posed])).mean()
        else:
            total["rotation"] = ((out.sixd[posed] - sixd[posed]) ** 2).sum(1).mean()
    else:
        total["rotation"] = out.sixd.sum() * 0
    if args.landmark_weight:
        with_marks = torch.ones_like(is_face) if reference is not None else is_face
        total["landmarks"] = ((out.landmarks - marks) ** 2).sum(1)[with_marks].mean() if with_marks.any() else out.landmarks.sum() * 0
    if args.distill_weight:
        p = torch.softmax(out.face_logits, 1)[:, 1].clamp(1e-6, 1 - 1e-6)
        target = torch.softmax(reference.face_logits, 1)[:, 1] if reference is not None else batch.onet_score.float()
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
        out = model(to_input(b.crops))
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
    model = make_model(args.init, args.dropout).to(device)
    if args.init_from:
        model.load_state_dict(load_fpnet(args.init_from)[0].state_dict())
    onet = load_fpnet(WEIGHTS_DIR / "onet.safetensors")[0].to(device).eval() if args.detection_teacher == "onet" else None
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
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
