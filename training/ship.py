"""Make a trained FPNet the package's default: copy its weights and metrics into ``facepose/data``,
record the new sha256 in ``manifest.json``, and record what the new default detector gives on every 20th
AFLW2000 face in ``tests/data/aflw2000_reference.json`` (``tests/test_reference.py`` holds later code to it).

    python -m training.ship runs/fpnet/best.safetensors runs/eval [--train-args runs/fpnet/args.json]
                            [--summary "..."] [--variant-eval DIR --variant-note "..."]
                            [--compare-eval DIR --compare-name NAME --compare-note "..."]
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from facepose.weights import WEIGHTS_DIR, load_last_stage, update_manifest
from support.paths import AFLW2000

from .aflw2000 import load_aflw2000

REFERENCE = Path(__file__).resolve().parent.parent / "tests" / "data" / "aflw2000_reference.json"


def describe_data(folders: list[Path]) -> dict:
    """What the training data sets hold, from their manifests: teachers, photos per source, label shares."""
    teachers, shards, totals, weights = [], {}, {}, None
    turned = {"train_faces": 0, "train_samples": 0}
    for folder in folders:
        manifest = json.loads((folder / "manifest.json").read_text())
        if manifest.get("made_by") == "training.profile_synthesis":  # profiles made from near-frontal faces
            for info in manifest["shards"].values():
                if info["split"] == "train":
                    turned["train_faces"] += info["faces"]
                    turned["train_samples"] += info["samples"]
            continue
        teachers = manifest.get("teachers", ["whenet"])
        weights = manifest.get("label_weights", weights)
        shards.update(manifest["shards"])
        for key, value in manifest.get("totals", {}).items():
            totals[key] = totals.get(key, 0) + value
    sources = sorted({name.split("_0")[0].split("-")[0] for name in shards})
    posed = totals.get("train_pose", 0)
    aflw = "9,000" + (" + 7,080" if "aflw_extra" in sources else "")
    photos = (f"{aflw} AFLW face crops (research use only; with a margin so the cascade\n  sees context) and 400 WIDER "
              "FACE train photos (research use only)")
    landmarks = sum(info.get("pose_landmarks", 0) for info in shards.values() if info.get("split") == "train")
    return {"teachers": teachers + (["landmarks"] if weights else []), "sources": sources, "photos": photos,
            "train_posed_faces": posed,
            "two_teacher_share": totals.get("train_pose_two_teachers", 0) / posed if posed else 0.0,
            "landmark_share": landmarks / posed if posed else 0.0, "label_weights": weights,
            **({"profiles": turned} if turned["train_faces"] else {})}


def record_reference(out: Path = REFERENCE, root: Path = AFLW2000) -> int:
    """Boxes, scores and angles (flip-averaged and single crop) of the package's default detector on every
    20th face of AFLW2000's standard set, written to ``out``; returns the number of images."""
    from facepose import FacePoseDetector

    detector = FacePoseDetector()
    single = detector.replace(flip_pose=False)
    images = {}
    for sample in load_aflw2000(root)[::20]:
        faces, plain = detector.detect(sample.image), single.detect(sample.image)
        images[sample.image.name] = [{"box": list(f.box), "score": f.score, "angles": [f.yaw, f.pitch, f.roll],
                                      "single": [g.yaw, g.pitch, g.roll]} for f, g in zip(faces, plain)]
    about = ("Boxes and angles of the shipped detector (default settings, flip-averaged, and single crop) on every "
             "20th face of AFLW2000's standard 1969, recorded when these weights were shipped; tests/test_reference.py "
             "checks the detector still gives them. Derived numbers only, no image data.")
    out.write_text(json.dumps({"about": about, "images": images}, indent=1) + "\n")
    return len(images)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("weights", type=Path, help="trained FPNet (.safetensors, pose=trained)")
    p.add_argument("eval_dir", type=Path, help="output folder of python -m training.evaluate for these weights")
    p.add_argument("--train-args", type=Path, default=None,
                   help="args.json of the training run: its recipe goes to the model card")
    p.add_argument("--summary", default=None, help="how it was trained, for the model card (default: the recipe's)")
    p.add_argument("--variant-eval", type=Path, default=None,
                   help="evaluate output of an alternative FPNet, compared on the model card")
    p.add_argument("--variant-note", default="", help="what that alternative is, for the model card")
    p.add_argument("--compare-eval", type=Path, default=None,
                   help="evaluate output (--aflw2000-only is enough) of another FPNet, beside this one per bin of |yaw|")
    p.add_argument("--compare-name", default="compared", help="that FPNet's name in the card's table and plot")
    p.add_argument("--compare-note", default="", help="what it is, for the model card")
    args = p.parse_args(argv)
    _, pose = load_last_stage(args.weights)
    if not pose:
        raise SystemExit(f"{args.weights} has no trained pose head")
    metrics = json.loads((args.eval_dir / "metrics.json").read_text())
    run = json.loads(args.train_args.read_text()) if args.train_args else {}
    metrics["recipe"] = {**run.get("recipe", {}), "seed": run.get("seed"), "threads": run.get("threads")}
    if run.get("data"):
        metrics["data"] = describe_data([Path(d) for d in run["data"]])
    if args.summary:
        metrics["recipe"]["summary"] = args.summary
    if args.variant_eval:
        variant = json.loads((args.variant_eval / "metrics.json").read_text())
        metrics["variant"] = {"note": args.variant_note, "aflw2000": variant["aflw2000"], "wider_val": variant["wider_val"]}
    if args.compare_eval:
        other = json.loads((args.compare_eval / "metrics.json").read_text())["aflw2000"]
        metrics["compare"] = {"name": args.compare_name, "note": args.compare_note, "by_yaw": other.get("by_yaw"),
                              "end_to_end": other["end_to_end"], "detected_share": other["detected_share"]}
    shutil.copyfile(args.weights, WEIGHTS_DIR / "fpnet.safetensors")
    metrics["weights"] = "facepose/data/fpnet.safetensors"
    (WEIGHTS_DIR / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    update_manifest(WEIGHTS_DIR, ["fpnet.safetensors"])
    print(f"shipped {args.weights} as {WEIGHTS_DIR / 'fpnet.safetensors'}")
    print(f"recorded the new detector on {record_reference()} AFLW2000 images in {REFERENCE}")


if __name__ == "__main__":
    main()
