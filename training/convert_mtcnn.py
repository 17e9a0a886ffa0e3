"""Convert MTCNN's weights from the facenet-pytorch 2.6.0 wheel into FacePose's safetensors.

    python -m training.convert_mtcnn [--wheel facenet_pytorch-2.6.0-py3-none-any.whl] [--out DIR] [--reset-fpnet]

Without ``--wheel`` it runs ``pip download --no-deps facenet-pytorch==2.6.0`` into a temporary folder.
Writes ``pnet``, ``rnet``, ``onet`` (the original O-Net, for comparisons) and records each file's sha256
in ``manifest.json``. ``fpnet`` (the shipped recipe's architecture with O-Net's weights and an untrained
pose part, marked ``"pose": "untrained"``) is written only if missing or with ``--reset-fpnet``, so a
trained FPNet is never replaced by accident.
"""
from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import torch

from facepose.nets import ONet, PNet, RNet, create_last_stage
from facepose.weights import WEIGHTS_DIR, save_net, update_manifest

from .recipes import RECIPES

# facenet-pytorch's layer names -> ours (same tensors, renamed heads)
RENAME = {
    "pnet": {"conv4_1": "score", "conv4_2": "box"},
    "rnet": {"dense5_1": "score", "dense5_2": "box"},
    "onet": {"dense6_1": "score", "dense6_2": "box", "dense6_3": "landmarks"},
}


def read_wheel_state(wheel: Path, name: str) -> dict[str, torch.Tensor]:
    with zipfile.ZipFile(wheel) as z:
        raw = z.read(f"facenet_pytorch/data/{name}.pt")
    state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    out = {}
    for key, value in state.items():
        layer, _, param = key.partition(".")
        out[f"{RENAME[name].get(layer, layer)}.{param}"] = value.float().contiguous()
    return out


def download_wheel(folder: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "facenet-pytorch==2.6.0", "-d", str(folder)],
        check=True,
    )
    return next(folder.glob("facenet_pytorch-2.6.0-*.whl"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel", type=Path, help="facenet_pytorch-2.6.0 wheel (default: pip download it)")
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR, help="output folder (default: the package's)")
    parser.add_argument("--reset-fpnet", action="store_true",
                        help="replace an existing fpnet.safetensors by the untrained O-Net-initialised one")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or download_wheel(Path(tmp))
        states = {name: read_wheel_state(wheel, name) for name in RENAME}
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"source": "facenet-pytorch 2.6.0"}
    written = []
    for name, net in (("pnet", PNet()), ("rnet", RNet()), ("onet", ONet())):
        net.load_state_dict(states[name], strict=True)
        save_net(net, args.out / f"{name}.safetensors", meta)
        written.append(f"{name}.safetensors")

    fpnet_path = args.out / "fpnet.safetensors"
    if args.reset_fpnet or not fpnet_path.exists():
        torch.manual_seed(0)
        shipped = RECIPES["oriented"]
        fpnet = create_last_stage(shipped.arch, **shipped.sizes)
        missing, unexpected = fpnet.load_state_dict(states["onet"], strict=False)
        assert all(k.startswith(("rotation.", "pose_", "orient_")) for k in missing) and not unexpected, (missing, unexpected)
        save_net(fpnet, fpnet_path, {**meta, "pose": "untrained"})
        written.append("fpnet.safetensors")
    update_manifest(args.out, written)
    print(f"wrote {', '.join(written)} to {args.out}")


if __name__ == "__main__":
    main()
