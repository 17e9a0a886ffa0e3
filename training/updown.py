"""Train the up/down check (``facepose.nets.UpDownNet``): is a face, cut upright as its pose says, upright or upside down?

FPNet's orientation head reads how far a face leans at any roll, but a few faces look alike both ways in its 48x48
crop of the face's box and are read about 180 degrees off. This small CNN, trained from scratch, sees the box grown
1.5 times (hair, chin, neck) in a disk (the same at any turn: ``facepose.crops.disk_crops``). Data: the labelled faces
of ``training.build_dataset``'s data set, each cut from its context crop turned so that it stands upright (label 1) or
upside down (label 0), give or take a residual lean (normal, sigma 12 degrees, within +-35: what the head leaves), with
random mirroring, R-Net-like shifts and zooms, and photometric augmentation. 10 epochs of AdamW (one-cycle learning
rate up to 0.003, batch 128), binary cross-entropy; the epoch with the lowest validation loss (validation faces cut
exactly upright or upside down, half each) is kept. About half an hour with 2 threads.

    python -m training.updown --data data_cache/fpnet --out runs/updown --ship
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from facepose.cascade import normalize
from facepose.crops import disk_crops
from facepose.nets import UpDownNet
from facepose.rotation import in_plane_angle, sixd_to_matrix
from facepose.weights import WEIGHTS_DIR, save_net, update_manifest

from .augment import augment_crops, turn_crops
from .samples import KIND, Samples, load_samples, require_data_sets

__all__ = ["updown_batch", "train_updown", "main"]

RESIDUAL_LEAN = 12.0  # degrees, sigma of the lean left in a crop cut upright by the orientation head
MAX_RESIDUAL = 35.0


def _posed(samples: Samples) -> Samples:
    return samples.subset(torch.nonzero((samples.kind == KIND["positive"]) & samples.has_pose).flatten())


def updown_batch(context: torch.Tensor, lean: torch.Tensor, upright: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    """``UpDownNet`` input for faces of context crops ``(N, S, S, 3)`` uint8 (boxes grown 1.5 times) whose heads lean
    ``lean (N,)`` degrees (``rotation.in_plane_angle`` of their label): each turned to stand upright where ``upright
    (N,)`` is True, upside down elsewhere. With ``gen``: a residual lean, mirroring, shifts and zooms, photometric
    augmentation (training); without, exactly upright or upside down (validation). Returns ``(N, 3, 48, 48)``
    normalised."""
    n = len(context)
    train = gen is not None
    residual = (torch.randn(n, generator=gen) * RESIDUAL_LEAN).clamp(-MAX_RESIDUAL, MAX_RESIDUAL) if train else torch.zeros(n)
    target = residual + torch.where(upright, 0.0, 180.0)
    x = context.permute(0, 3, 1, 2).float()
    if train:  # a mirrored head leans the other way
        flip = torch.rand(n, generator=gen) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        lean = torch.where(flip, -lean, lean)
    # a crop turned counter-clockwise by a leans by (its lean - a)
    x = turn_crops(x, lean - target, gen, 0.12 if train else 0, 0.16 if train else 0, size=x.shape[-1])
    x = normalize(disk_crops(x))
    return augment_crops(x, gen, 0.3) if train else x


def train_updown(data: list[Path], out: Path, epochs: int = 10, width: int = 16, batch_size: int = 128, seed: int = 0,
                 limit: int | None = None) -> dict:
    """Train ``UpDownNet`` on the data sets ``data``; checkpoints and TensorBoard logs in ``out``
    (``best.safetensors``, the epoch of lowest validation loss). Returns that epoch's validation numbers."""
    from torch.utils.tensorboard import SummaryWriter

    require_data_sets(data)
    out.mkdir(parents=True, exist_ok=True)
    train_set, val_set = _posed(load_samples(data, "train")), _posed(load_samples(data, "val"))
    if train_set.context is None:
        raise SystemExit("the up/down check is cut from context crops: rebuild the data set with this version of "
                         "training.build_dataset")
    if not len(train_set) or not len(val_set):
        raise SystemExit(f"the data sets {', '.join(map(str, data))} hold no labelled faces in the "
                         f"{'training' if not len(train_set) else 'validation'} split")
    if limit:
        train_set = train_set.subset(torch.arange(min(limit, len(train_set))))
    lean = lambda s: in_plane_angle(sixd_to_matrix(s.sixd.double())).float()  # noqa: E731
    train_lean, val_lean = lean(train_set), lean(val_set)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = UpDownNet(width)
    optimizer = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    steps = epochs * math.ceil(len(train_set) / batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps, pct_start=0.15)
    val_gen = torch.Generator().manual_seed(seed + 1)
    val_upright = torch.rand(len(val_set), generator=val_gen) < 0.5
    writer = SummaryWriter(str(out))
    (out / "args.json").write_text(json.dumps({"data": [str(d) for d in data], "epochs": epochs, "width": width,
                                               "batch_size": batch_size, "seed": seed, "limit": limit}, indent=1))
    best: dict = {"val_loss": float("inf")}
    step = 0
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(train_set), generator=gen)
        total, batches = 0.0, 0
        for i in tqdm(range(0, len(train_set), batch_size), desc=f"epoch {epoch + 1}/{epochs}", unit="batch", mininterval=10):
            idx = order[i:i + batch_size]
            upright = torch.rand(len(idx), generator=gen) < 0.5
            x = updown_batch(train_set.context[idx], train_lean[idx], upright, gen)
            loss = F.binary_cross_entropy_with_logits(net(x), upright.float())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total, batches, step = total + loss.item(), batches + 1, step + 1
            if step % 50 == 0:
                writer.add_scalar("train/loss", loss.item(), step)
        net.eval()
        val_loss, wrong = 0.0, 0
        with torch.inference_mode():
            for i in range(0, len(val_set), 512):
                up = val_upright[i:i + 512]
                logits = net(updown_batch(val_set.context[i:i + 512], val_lean[i:i + 512], up, None))
                val_loss += F.binary_cross_entropy_with_logits(logits, up.float(), reduction="sum").item()
                wrong += int(((logits > 0) != up).sum())
        metrics = {"val_loss": val_loss / len(val_set), "val_wrong": wrong, "val_faces": len(val_set), "epoch": epoch + 1}
        for k in ("val_loss", "val_wrong"):
            writer.add_scalar(f"val/{k[4:]}", metrics[k], epoch)
        print(f"epoch {epoch + 1}: train loss {total / max(batches, 1):.4f} | val loss {metrics['val_loss']:.4f}, "
              f"{wrong} of {len(val_set)} faces read the wrong way up", flush=True)
        if metrics["val_loss"] < best["val_loss"]:
            best = metrics
            save_net(net, out / "best.safetensors", {"width": width, "epoch": epoch + 1})
    writer.close()
    (out / "best.json").write_text(json.dumps(best, indent=1))
    return best


def ship_updown(path: Path) -> Path:
    """Make ``path`` (an ``UpDownNet`` safetensors file) the package's up/down check and record its sha256."""
    dest = WEIGHTS_DIR / "updown.safetensors"
    shutil.copyfile(path, dest)
    update_manifest(WEIGHTS_DIR, [dest.name])
    return dest


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, nargs="+", default=[Path("data_cache/fpnet")],
                   help="output folder(s) of training.build_dataset")
    p.add_argument("--out", type=Path, default=Path("runs/updown"), help="best.safetensors, TensorBoard logs, args.json")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--limit", type=int, default=None, help="use at most this many training faces (tests)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--ship", action="store_true", help="then make the best epoch the package's up/down check")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    best = train_updown(args.data, args.out, args.epochs, limit=args.limit)
    print(f"best: {best}")
    if args.ship:
        print(f"shipped as {ship_updown(args.out / 'best.safetensors')}")
    return best


if __name__ == "__main__":
    main()
