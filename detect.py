"""The thesis' entry point, kept for its users: ``python detect.py src dest [--face_pose_net PATH] [--cuda]``.

Same behaviour as ``facepose detect SRC DEST [--weights PATH] [--device cuda]``.
"""
import argparse
import sys

from facepose.cli import main


def thesis_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Detect faces and head pose in an image or folder (thesis CLI).")
    parser.add_argument("src", help="an image file or a folder")
    parser.add_argument("dest", help="output folder")
    parser.add_argument("--face_pose_net", help="FPNet weights (.safetensors); default: packaged")
    parser.add_argument("--cuda", action="store_true", help="run on the GPU")
    args = parser.parse_args(argv)
    forwarded = ["detect", args.src, args.dest, "--device", "cuda" if args.cuda else "cpu"]
    if args.face_pose_net:
        forwarded += ["--weights", args.face_pose_net]
    return main(forwarded)


if __name__ == "__main__":
    sys.exit(thesis_main())
