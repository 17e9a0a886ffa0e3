"""Train FPNet by distillation from the teacher's head rotations, with one of the recipes.

    python -m training.train [--recipe branch|grown|oriented|profiles|thesis] [--init BEST] [--data data_cache/fpnet]
                             [--out runs/fpnet]

The packaged FPNet takes four runs: ``--recipe branch`` (O-Net frozen, a pose branch and the rotation head
learn), ``--recipe grown`` with ``--init`` that run's ``best.safetensors`` (the branch grows finer maps and
trains on), the default ``oriented`` recipe with ``--init`` the grown run's ``best.safetensors`` (an
orientation head learns alone how far a face leans, at any roll), then ``--recipe profiles`` with ``--init``
the oriented run's and ``--data`` also the folder of ``training.profile_synthesis`` (the pose branch trains on
with profiles made from near-frontal faces). ``thesis`` trains the whole network as the thesis did. All are
described in ``training/recipes.py``; the other options only say where data and results go, where a network
starts and how long to run.
Logs to TensorBoard in ``--out``, keeps the best checkpoint by validation pose error as
``best.safetensors`` (metadata: architecture, ``pose=trained``) and resumes from ``last.pt``.
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
from facepose.nets import ONet, create_last_stage, face_probability
from facepose.rotation import geodesic_distance, in_plane_angle, matrix_to_euler, sixd_to_matrix
from facepose.weights import WEIGHTS_DIR, load_last_stage, save_net

from .augment import augment_crops, jitter_crops, turn_crops, turned_labels
from .metrics import angle_errors
from .recipes import RECIPES, Recipe
from .samples import KIND, Samples, epoch_indices, load_samples, load_turned, mirror_batch

__all__ = ["main", "train", "evaluate_samples", "build_parser", "make_model", "losses", "lean_loss", "orientation_loss"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", choices=sorted(RECIPES), default="oriented",
                   help="how to train (training/recipes.py): branch (O-Net frozen + pose branch), grown (that branch "
                        "grown, --init the branch run's best), oriented (default: an orientation head added, --init the "
                        "grown run's best), profiles (the pose branch trained on with profiles made from near-frontal faces, "
                        "--init the oriented run's best, --data also the profile_synthesis folder) or thesis (the whole "
                        "network)")
    p.add_argument("--init", type=Path, default=None,
                   help="best.safetensors of the previous run: where a grown or fine-tuned network starts")
    p.add_argument("--data", type=Path, nargs="+", default=[Path("data_cache/fpnet")],
                   help="output folder(s) of training.build_dataset")
    p.add_argument("--out", type=Path, default=Path("runs/fpnet"), help="checkpoints, TensorBoard logs, args.json")
    p.add_argument("--epochs", type=int, default=None, help="stop after this many epochs (default: the recipe's)")
    p.add_argument("--limit", type=int, default=None, help="use at most this many training samples (tests)")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (tests)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (the shipped run used 1)")
    return p


def make_model(recipe: Recipe, init: Path | None = None) -> ONet:
    """The recipe's network, with O-Net's weights where ``init="onet"`` (rotation part random), or grown
    from the trained branch in ``init`` where ``init="grow"``."""
    model = create_last_stage(recipe.arch, dropout=recipe.dropout, **recipe.sizes)
    if init is not None and recipe.init not in ("grow", "finetune"):
        raise SystemExit(f"--init starts a grown or fine-tuned network; the {recipe.name!r} recipe starts from {recipe.init}")
    if recipe.init == "grow":
        if init is None:
            raise SystemExit(f"the {recipe.name!r} recipe grows a trained branch: pass --init runs/branch/best.safetensors")
        start, _ = load_last_stage(init)
        onet, _ = load_last_stage(WEIGHTS_DIR / "onet.safetensors")
        state = start.state_dict()
        if start.arch != "fpnet_branch" or any(not torch.equal(v, state[k]) for k, v in onet.state_dict().items()):
            raise SystemExit(f"{init} is not a pose branch on MTCNN's O-Net (a run of the 'branch' recipe)")
        try:
            model.load_smaller_branch(state)
        except (ValueError, RuntimeError) as e:
            raise SystemExit(f"{init} cannot grow into {recipe.sizes}: {e}") from None
    elif recipe.init == "finetune":
        if init is None:
            raise SystemExit(f"the {recipe.name!r} recipe trains on from a trained network: pass --init FILE.safetensors")
        start, pose = load_last_stage(init)
        same = {k: v for k, v in model.sizes().items() if k != "orient_hidden"}
        if start.arch != recipe.arch or {k: v for k, v in start.sizes().items() if k != "orient_hidden"} != same or not pose:
            raise SystemExit(f"{init} is not a trained {recipe.arch} of sizes {same}")
        state = start.state_dict() if recipe.learn == "rotation" else \
            {k: v for k, v in start.state_dict().items() if not k.startswith("orient_")}  # the head learns anew
        missing, unexpected = model.load_state_dict(state, strict=False)
        assert not unexpected and all(k.startswith("orient_") for k in missing), (missing, unexpected)
    elif recipe.init == "onet":
        onet, _ = load_last_stage(WEIGHTS_DIR / "onet.safetensors")
        missing, unexpected = model.load_state_dict(onet.state_dict(), strict=False)
        assert all(k.startswith(("rotation", "pose_")) for k in missing) and not unexpected
    if not recipe.train_detection:
        for p in model.detection_parameters():
            p.requires_grad_(False)
    if recipe.learn == "orientation":  # the pose branch stays as it was
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith("orient_"))
    elif recipe.init == "finetune":  # an orientation head the network starts with stays as it was
        for name, p in model.named_parameters():
            if name.startswith("orient_"):
                p.requires_grad_(False)
    return model


def to_input(crops: torch.Tensor) -> torch.Tensor:
    """``(N, 48, 48, 3)`` uint8 -> normalised ``(N, 3, 48, 48)`` float, as the cascade feeds FPNet."""
    return normalize(crops.permute(0, 3, 1, 2).float())


def rotation_loss(predicted: torch.Tensor, target: torch.Tensor, posed: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean over the ``posed`` (N,) samples of ``(N, 6)`` 6D rotations: geodesic angle (radians) or L2."""
    if not posed.any():
        return predicted.sum() * 0
    if kind == "geodesic":
        return geodesic_distance(sixd_to_matrix(predicted[posed]), sixd_to_matrix(target[posed])).mean()
    return ((predicted[posed] - target[posed]) ** 2).sum(1).mean()


def lean_loss(predicted: torch.Tensor, target: torch.Tensor, posed: torch.Tensor, cap: float = 5.0) -> torch.Tensor:
    """Mean over the ``posed`` (N,) samples of ``(N, 6)`` 6D rotations: the absolute error (radians) of the lean in the
    picture (``in_plane_angle``), weighted by ``1 / cos(yaw) - 1`` of the label (0 frontal, 1 at 60 degrees, about 4.8
    at 80), at most ``cap``: at profiles a degree of lean is several degrees of pitch and of roll."""
    if not posed.any():
        return predicted.sum() * 0
    pred, true = sixd_to_matrix(predicted[posed]), sixd_to_matrix(target[posed])
    error = torch.remainder(torch.deg2rad(in_plane_angle(pred) - in_plane_angle(true)) + math.pi, 2 * math.pi) - math.pi
    cos_yaw = torch.hypot(true[:, 1, 2], true[:, 2, 2]).clamp_min(1 / (1 + cap))
    return ((1 / cos_yaw - 1) * error.abs()).mean()


def orientation_loss(v: torch.Tensor, lean: torch.Tensor, kind: str) -> torch.Tensor:
    """The orientation head's loss: ``v (N, 2)`` its vectors (cos, sin of the lean, unnormalised), ``lean (N,)``
    the true leans in radians. ``cosine``: 1 - cos of the error; ``angle``: its absolute value (a crop read upside
    down is pulled back as hard as one read a little off); ``von_mises``: the negative log likelihood of the lean
    under the von Mises distribution with natural parameter ``v`` (direction the lean, length ``kappa`` the
    certainty: for a crop that could lean either of two opposite ways the best ``v`` is short)."""
    along = v[:, 0] * torch.cos(lean) + v[:, 1] * torch.sin(lean)  # |v| cos of the error
    if kind == "angle":
        across = v[:, 1] * torch.cos(lean) - v[:, 0] * torch.sin(lean)  # |v| sin of the error
        return torch.atan2(across, along).abs().mean()
    if kind == "von_mises":  # -log p = log(2 pi I0(kappa)) - v . (cos, sin)(lean), without the constant
        kappa = v.norm(dim=1).clamp_min(1e-6)
        return (torch.log(torch.special.i0e(kappa)) + kappa - along).mean()
    return (1 - along / v.norm(dim=1).clamp_min(1e-6)).mean()


def losses(model: ONet, batch: Samples, recipe: Recipe, gen: torch.Generator,
           proposed: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The recipe's losses on one batch (prepared on the CPU, learned from on the model's device);
    ``"loss"`` is their sum. ``proposed``: crops the cascade proposed on turned faces and their leans
    (``load_turned``), learned beside the batch by the orientation head."""
    turning = recipe.turn > 0
    if turning and batch.context is None:
        raise SystemExit(f"the {recipe.name!r} recipe cuts turned crops from context crops: rebuild the data set "
                         "with this version of training.build_dataset")
    x = (batch.context if turning else batch.crops).permute(0, 3, 1, 2).float()  # 0-255
    box, sixd = batch.box.float(), batch.sixd.float()
    if recipe.mirror:
        flip = torch.rand(len(x), generator=gen) < 0.5
        x, box, sixd = mirror_batch(x, box, sixd, flip)
    if turning:  # every crop cut from its context crop (black beyond it, as the tracker's turned crops)
        turned = torch.rand(len(x), generator=gen) < recipe.turn
        angles = torch.where(turned, 360 * torch.rand(len(x), generator=gen), torch.zeros(len(x)))
        x = turn_crops(x, angles, gen, 0.06 * recipe.jitter, 0.08 * recipe.jitter)
        sixd = turned_labels(sixd, angles)
    x = normalize(x)
    if recipe.jitter and not turning:
        x = jitter_crops(x, gen, 0.06 * recipe.jitter, 0.08 * recipe.jitter)
    if recipe.augment:
        x = augment_crops(x, gen, recipe.augment)
    device = next(model.parameters()).device
    if recipe.learn == "orientation":  # the lean of each head in its (turned) crop, at any roll
        posed = (batch.kind == KIND["positive"]) & batch.has_pose
        x, lean = x[posed], in_plane_angle(sixd_to_matrix(sixd[posed].double())).float()
        if proposed is not None:
            y, y_lean = proposed[0].permute(0, 3, 1, 2).float(), proposed[1].float()
            if recipe.mirror:  # a mirrored crop leans the other way
                flip = torch.rand(len(y), generator=gen) < 0.5
                y, y_lean = torch.where(flip[:, None, None, None], y.flip(-1), y), torch.where(flip, -y_lean, y_lean)
            y = normalize(y)
            x, lean = torch.cat((x, augment_crops(y, gen, recipe.augment) if recipe.augment else y)), torch.cat((lean, y_lean))
        if not len(x):
            return {"orientation": torch.zeros(()), "loss": torch.zeros((), requires_grad=True)}
        v = model.orientation_vector(model.features(x.to(device)))
        loss = orientation_loss(v, torch.deg2rad(lean).to(device), recipe.orientation_loss)
        return {"orientation": loss, "loss": loss}
    x, box, sixd = (t.to(device) for t in (x, box, sixd))
    kind, has_pose = batch.kind.to(device), batch.has_pose.to(device)
    out = model(x)
    is_face = kind == KIND["positive"]
    rotation = rotation_loss(out.sixd, sixd, is_face & has_pose, recipe.rotation_loss)
    if not recipe.train_detection:  # only the pose part learns
        if recipe.lean_weight:
            lean = lean_loss(out.sixd, sixd, is_face & has_pose)
            return {"rotation": rotation, "lean": lean, "loss": rotation + recipe.lean_weight * lean}
        return {"rotation": rotation, "loss": rotation}
    labelled = is_face | (kind == KIND["negative"]) | (kind == KIND["inside"])
    face_loss = F.cross_entropy(out.face_logits, is_face.long(), reduction="none")
    keep = labelled.clone()
    if recipe.mining == "middle60" and labelled.sum() > 4:
        idx = torch.nonzero(labelled).flatten()
        order = idx[torch.argsort(face_loss[idx].detach(), descending=True)]
        keep = torch.zeros_like(labelled)
        keep[order[int(0.2 * len(order)):int(0.8 * len(order))]] = True
    face = face_loss[keep].mean() if keep.any() else face_loss.sum() * 0
    has_box = is_face | (kind == KIND["part"])
    box_loss = ((out.box - box) ** 2).sum(1)[has_box].mean() if has_box.any() else out.box.sum() * 0
    return {"face": face, "box": box_loss, "rotation": rotation, "loss": face + box_loss + rotation}


def validation_angles(n: int) -> torch.Tensor:
    """``(n,)`` fixed turns in degrees for the turned validation: spread over the circle by the golden angle."""
    return torch.remainder(torch.arange(n, dtype=torch.float64) * 137.50776, 360).float()


@torch.inference_mode()
def evaluate_samples(model: ONet, samples: Samples, batch_size: int = 512, turned: bool = False,
                     proposed: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict:
    """Validation: face accuracy (at 0.5), pose error against the label in degrees (yaw, pitch, roll, mean;
    ``geodesic``: the angle between rotations). With ``turned`` (and context crops) also ``turned_geodesic``:
    the pose error on the labelled faces turned by ``validation_angles``, cut from their context crops, and
    the orientation head's mean lean error there (``turned_lean_error``) and the share it reads more than 90
    degrees off (``turned_lean_flips``). With ``proposed`` (``load_turned``) its mean lean error on the crops the
    cascade proposed on turned faces (``proposed_lean_error``) and the share of them it reads more than 90 degrees
    off (``proposed_lean_flips``)."""
    model.eval()
    device = next(model.parameters()).device
    probs, pred, true, geo = [], [], [], []
    for i in range(0, len(samples), batch_size):
        b = samples.subset(torch.arange(i, min(i + batch_size, len(samples))))
        out = model(to_input(b.crops).to(device))
        probs.append(face_probability(out.face_logits.cpu()))
        posed = (b.kind == KIND["positive"]) & b.has_pose
        if posed.any():
            rot = sixd_to_matrix(out.sixd.cpu()[posed].double())
            pred.append(matrix_to_euler(rot).numpy())
            true.append(b.angles[posed].double().numpy())
            geo.append(geodesic_distance(rot, sixd_to_matrix(b.sixd[posed].double())))
    prob = torch.cat(probs)
    labelled = samples.kind != KIND["part"]
    correct = (prob[labelled] > 0.5) == (samples.kind[labelled] == KIND["positive"])
    err = angle_errors(np.concatenate(pred), np.concatenate(true)).mean(0) if pred else np.full(3, np.nan)
    out_metrics = {"face_accuracy": correct.float().mean().item(), "yaw": float(err[0]), "pitch": float(err[1]),
                   "roll": float(err[2]), "pose_mae": float(err.mean()),
                   "geodesic": float(torch.rad2deg(torch.cat(geo)).mean()) if geo else float("nan")}
    posed = torch.nonzero((samples.kind == KIND["positive"]) & samples.has_pose).flatten()
    if turned and samples.context is not None and len(posed):
        posed = samples.subset(posed)
        angles, errors, lean_errors = validation_angles(len(posed)), [], []
        for i in range(0, len(posed), batch_size):
            b, a = posed.subset(torch.arange(i, min(i + batch_size, len(posed)))), angles[i:i + batch_size]
            crops = normalize(turn_crops(b.context.permute(0, 3, 1, 2).float(), a)).to(device)
            label = sixd_to_matrix(turned_labels(b.sixd.double(), a))
            f = model.features(crops)
            rot = sixd_to_matrix(model.rotation_6d(f).cpu().double())
            errors.append(geodesic_distance(rot, label))
            if model.has_orientation:
                lean_errors.append((model.in_plane(f).cpu().double() - in_plane_angle(label) + 180) % 360 - 180)
        out_metrics["turned_geodesic"] = float(torch.rad2deg(torch.cat(errors)).mean())
        if lean_errors:
            lean_errors = torch.cat(lean_errors).abs()
            out_metrics["turned_lean_error"] = float(lean_errors.mean())
            out_metrics["turned_lean_flips"] = float((lean_errors > 90).double().mean())
    if proposed is not None and model.has_orientation and len(proposed[0]):
        errors = []
        for i in range(0, len(proposed[0]), batch_size):
            lean = model.in_plane(model.features(to_input(proposed[0][i:i + batch_size]).to(device))).cpu()
            errors.append(((lean.double() - proposed[1][i:i + batch_size].double() + 180) % 360 - 180).abs())
        errors = torch.cat(errors)
        out_metrics["proposed_lean_error"] = float(errors.mean())
        out_metrics["proposed_lean_flips"] = float((errors > 90).double().mean())
    model.train()
    return out_metrics


def selection_error(metrics: dict) -> float:
    """What the best epoch minimises: the validation pose error (mean absolute angle error); with turned crops
    the mean of the upright and turned geodesic errors; with an orientation head, its lean error on turned crops
    (with crops the cascade proposed on turned faces, the mean of both lean errors)."""
    if "proposed_lean_error" in metrics:
        return (metrics["turned_lean_error"] + metrics["proposed_lean_error"]) / 2
    if "turned_lean_error" in metrics:
        return metrics["turned_lean_error"]
    if "turned_geodesic" in metrics:
        return (metrics["geodesic"] + metrics["turned_geodesic"]) / 2
    return metrics["pose_mae"]


def train(args: argparse.Namespace) -> dict:
    recipe = RECIPES[args.recipe]
    if args.epochs:
        recipe = recipe.replace(epochs=args.epochs)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    from torch.utils.tensorboard import SummaryWriter

    args.out.mkdir(parents=True, exist_ok=True)
    train_set, val_set = load_samples(args.data, "train", recipe.real_pose_max_yaw), load_samples(args.data, "val")
    proposed = val_proposed = None
    if recipe.proposals:
        try:
            proposed, val_proposed = load_turned(args.data, "train"), load_turned(args.data, "val")
        except FileNotFoundError as e:
            raise SystemExit(f"the {recipe.name!r} recipe learns from crops proposed on turned faces: {e}") from None
    if args.limit:
        train_set = train_set.subset(torch.randperm(len(train_set))[: args.limit])
    device = torch.device(args.device)
    model = make_model(recipe, args.init).to(device)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=recipe.lr)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=recipe.lr_decay)
    gen = torch.Generator().manual_seed(args.seed)
    start_epoch, best, step = 0, {"selection": float("inf")}, 0
    last = args.out / "last.pt"
    if last.exists():  # resume
        state = torch.load(last, weights_only=True)
        if state.get("recipe", recipe.name) != recipe.name:
            raise SystemExit(f"{last} is a run of the {state['recipe']!r} recipe, not {recipe.name!r}: use another --out")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"])
        start_epoch, step = state["epoch"] + 1, state["step"]
        best = json.loads(state["best"])
        print(f"resumed from {last} at epoch {start_epoch}")
    writer = SummaryWriter(str(args.out))
    run = {"recipe": recipe.to_dict(), "init": str(args.init) if args.init else None, "data": [str(d) for d in args.data],
           "seed": args.seed, "threads": args.threads,
           "device": args.device, "limit": args.limit, "max_steps": args.max_steps}
    (args.out / "args.json").write_text(json.dumps(run, indent=1))
    model.train()
    for epoch in range(start_epoch, recipe.epochs):
        if not recipe.train_detection:  # only faces with a teacher pose carry a loss
            posed = torch.nonzero((train_set.kind == KIND["positive"]) & train_set.has_pose).flatten()
            order = posed[torch.randperm(len(posed), generator=gen)]
        else:
            order = epoch_indices(train_set, gen, recipe.negatives_per_positive)
        sums: dict[str, float] = {}
        bar = tqdm(range(0, len(order), recipe.batch_size), desc=f"epoch {epoch + 1}/{recipe.epochs}", unit="batch")
        for i in bar:
            batch = train_set.subset(order[i:i + recipe.batch_size])
            extra = None
            if proposed is not None:  # proposals share of the crops: m of them beside the batch's
                m = round(len(batch) * recipe.proposals / (1 - recipe.proposals))
                pick = torch.randint(len(proposed[0]), (m,), generator=gen)
                extra = (proposed[0][pick], proposed[1][pick])
            parts = losses(model, batch, recipe, gen, extra)
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
        metrics = evaluate_samples(model, val_set, turned=recipe.turn > 0, proposed=val_proposed)
        metrics["selection"] = selection_error(metrics)
        for k, v in metrics.items():
            writer.add_scalar(f"val/{k}", v, epoch)
        writer.add_scalar("train/lr", optimizer.param_groups[0]["lr"], epoch)
        n = max(1, len(range(0, len(order), recipe.batch_size)))
        print(f"epoch {epoch + 1}: " + " ".join(f"{k} {v / n:.4f}" for k, v in sums.items())
              + " | val " + " ".join(f"{k} {v:.3f}" for k, v in metrics.items()), flush=True)
        if metrics["selection"] < best["selection"] or not math.isfinite(best["selection"]):
            best = {**metrics, "epoch": epoch + 1}
            save_net(model, args.out / "best.safetensors", {"pose": "trained", "recipe": recipe.name, "epoch": epoch + 1,
                                                            "val_pose_mae": metrics["pose_mae"]})
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "generator": gen.get_state(), "recipe": recipe.name, "epoch": epoch, "step": step, "best": json.dumps(best)}, last)
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
