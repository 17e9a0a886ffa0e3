"""A third pose label: the head rotation fitted to AFLW's hand-placed landmarks (how AFLW's own pose was made).

Each AFLW training crop carries up to 21 annotated points (``faces.csv``; "left" is the image's left). A 3D
template of those 21 points (``template``: MediaPipe's canonical face where it has the point, refined on
the training faces whose two teachers agree) is turned, scaled and shifted until its orthographic
projection meets the visible points (``fit_rotations``). Unlike the teachers it does not fade at profiles:
the ear and the far side's missing points pin the yaw, the visible eye, brow, nose and mouth the rest.

``python -m training.landmark_pose --data DIR [DIR ...]`` (after ``build_dataset``) fits every AFLW face of
the data sets, prints how each label source's yaw agrees with AFLW's annotated yaw per bin of |yaw| and
how the fit agrees with the teachers, weights the sources per bin by that agreement on the training split
(``labels.face_labels``) and writes the new labels into the shards (``landmark_cache.json`` beside them).
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from facepose.rotation import euler_to_matrix, geodesic_distance, matrix_to_euler, matrix_to_sixd, sixd_to_matrix
from support.paths import AFLW_FACES, AFLW_FACES_EXTRA

from .labels import LANDMARKS, UPRIGHT_WEIGHTS, YAW_EDGES, face_labels, teacher_labels, yaw_bins

__all__ = ["AFLW_POINTS", "MESH_VERTICES", "ROOTS", "read_landmarks", "read_yaw", "mesh_template", "refine_template",
           "fit_rotations", "residuals", "yaw_starts"]

AFLW_POINTS = ("left brow, outer", "left brow, centre", "left brow, inner", "right brow, inner", "right brow, centre",
               "right brow, outer", "left eye, outer", "left eye, centre", "left eye, inner", "right eye, inner",
               "right eye, centre", "right eye, outer", "left ear lobe", "nose, left wing", "nose tip",
               "nose, right wing", "right ear lobe", "mouth, left corner", "mouth, centre", "mouth, right corner",
               "chin")  # "left" = the image's left
# the canonical face's vertices whose mean starts each point (the ear lobes lie off the mesh: its cheek edge)
MESH_VERTICES = ((70, 46), (105, 66), (107, 55), (336, 285), (334, 296), (300, 276), (33,), (159, 145), (133,),
                 (362,), (386, 374), (263,), (132, 93), (64, 98), (1,), (294, 327), (361, 323), (61,), (13, 14),
                 (291,), (152,))

ROOTS = {"aflw": AFLW_FACES, "aflw_extra": AFLW_FACES_EXTRA}  # a face key's prefix -> its crop folder


def read_landmarks(root: Path | str) -> dict[str, np.ndarray]:
    """``faces.csv`` of an AFLW crop folder -> {image name: ``(21, 2)`` float64 pixels, NaN where hidden}."""
    out = {}
    with open(Path(root) / "faces.csv") as f:
        for row in csv.DictReader(f):
            out[row["image"]] = np.array([[float(row[f"{a}{k}"]) if row[f"{a}{k}"] else np.nan for a in "xy"]
                                          for k in range(1, 22)])
    return out


def read_yaw(root: Path | str) -> dict[str, float]:
    """``yaw.csv`` of an AFLW crop folder -> {image name: annotated yaw in degrees (project convention)}."""
    with open(Path(root) / "yaw.csv") as f:
        return {row["image"]: float(row["yaw_deg"]) for row in csv.DictReader(f)}


def mesh_template(canonical: np.ndarray) -> np.ndarray:
    """``(468, 3)`` canonical face -> ``(21, 3)`` AFLW points in the head frame (centimetres)."""
    return np.stack([canonical[list(v)].mean(0) for v in MESH_VERTICES])


def _to_camera(points: torch.Tensor) -> torch.Tensor:
    """Image pixels (x right, y down) -> the camera frame's x, y (y up)."""
    return points * torch.tensor([1.0, -1.0], dtype=points.dtype)


def _similarity(projected: torch.Tensor, points: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """Least-squares scale and shift of ``projected (N, K, 2)`` onto ``points``: the fitted projection."""
    w = visible.to(points.dtype)[..., None]
    n = w.sum(1, keepdim=True).clamp(min=1)
    pm, xm = (projected * w).sum(1, keepdim=True) / n, (points * w).sum(1, keepdim=True) / n
    pc, xc = (projected - pm) * w, (points - xm) * w
    scale = (pc * xc).sum((1, 2), keepdim=True) / (pc * pc).sum((1, 2), keepdim=True).clamp(min=1e-9)
    return scale * (projected - pm) + xm


def residuals(rotations: torch.Tensor, template: torch.Tensor, points: torch.Tensor,
              visible: torch.Tensor) -> torch.Tensor:
    """``(N,)`` root-mean-square distance (pixels) between the visible points and the fitted projection."""
    cam = _to_camera(torch.nan_to_num(points))
    fitted = _similarity((template @ rotations.transpose(1, 2))[..., :2], cam, visible)
    d2 = ((fitted - cam) ** 2).sum(-1) * visible
    return (d2.sum(1) / visible.sum(1).clamp(min=1)).sqrt()


def yaw_starts(n: int, yaws: tuple[float, ...] = (-75.0, -40.0, 0.0, 40.0, 75.0)) -> torch.Tensor:
    """``(n, len(yaws), 3, 3)``: upright heads at a few yaws, starts for ``fit_rotations`` without a teacher."""
    grid = torch.stack([euler_to_matrix(torch.tensor(y), torch.tensor(0.0), torch.tensor(0.0)).double() for y in yaws])
    return grid[None].expand(n, -1, -1, -1)


def fit_rotations(points: torch.Tensor, template: torch.Tensor, starts: torch.Tensor, steps: int = 60) -> tuple[torch.Tensor, torch.Tensor]:
    """The head rotation whose template projects onto the points (scaled orthographic, least squares).

    Args:
        points: ``(N, 21, 2)`` pixels (x right, y down), NaN where hidden.
        template: ``(21, 3)`` the points in the head frame (x right for a frontal face, y up, z out of the face).
        starts: ``(N, S, 3, 3)`` rotations to start from (e.g. the teachers' label and turns of it); the
            fit with the smallest residual wins.
        steps: L-BFGS iterations.
    Returns:
        ``(N, 3, 3)`` float64 rotations in FacePose's frame and ``(N,)`` residuals in pixels.
    """
    points, template = points.double(), template.double()
    visible = ~torch.isnan(points).any(-1)
    n, s = starts.shape[:2]
    rep = lambda t: t[:, None].expand(n, s, *t.shape[1:]).reshape(n * s, *t.shape[1:])  # noqa: E731
    p, v = rep(points), rep(visible)
    sixd = matrix_to_sixd(starts.reshape(n * s, 3, 3).double()).clone().requires_grad_(True)
    opt = torch.optim.LBFGS([sixd], max_iter=steps, line_search_fn="strong_wolfe", tolerance_change=1e-12)

    def closure():
        opt.zero_grad()
        loss = (residuals(sixd_to_matrix(sixd), template, p, v) ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        rot = sixd_to_matrix(sixd)
        res = residuals(rot, template, p, v).reshape(n, s)
        best = res.argmin(1)
        return rot.reshape(n, s, 3, 3)[torch.arange(n), best], res[torch.arange(n), best]


def refine_template(template: torch.Tensor, points: torch.Tensor, rotations: torch.Tensor, rounds: int = 10) -> torch.Tensor:
    """The template that best explains ``points (N, 21, 2)`` seen at known ``rotations (N, 3, 3)``: alternately
    each face's scale and shift, then each point's 3D position by linear least squares. Its centre and size
    stay the starting template's."""
    points, template, rotations = points.double(), template.double().clone(), rotations.double()
    visible = ~torch.isnan(points).any(-1)
    cam = _to_camera(torch.nan_to_num(points))
    proj = rotations[:, :2, :]  # (N, 2, 3): head frame -> image plane
    w = visible.double()
    centre, size = template.mean(0), (template - template.mean(0)).norm(dim=1).mean()
    for _ in range(rounds):
        projected = template @ rotations.transpose(1, 2)
        xy = projected[..., :2]
        # per face: scale and shift of the projection onto the points
        nv = w.sum(1).clamp(min=1)[:, None]
        pm, xm = (xy * w[..., None]).sum(1) / nv, (cam * w[..., None]).sum(1) / nv
        pc, xc = (xy - pm[:, None]) * w[..., None], (cam - xm[:, None]) * w[..., None]
        scale = (pc * xc).sum((1, 2)) / (pc * pc).sum((1, 2)).clamp(min=1e-9)
        shift = xm - scale[:, None] * pm
        # per point: min over X of sum_faces |scale A X + shift - x|^2
        a = scale[:, None, None] * proj  # (N, 2, 3)
        for k in range(template.shape[0]):
            m = visible[:, k]
            if m.sum() < 20:
                continue
            ak, bk = a[m], cam[m, k] - shift[m]
            lhs = (ak.transpose(1, 2) @ ak).sum(0)
            rhs = (ak.transpose(1, 2) @ bk[..., None]).sum(0)[:, 0]
            template[k] = torch.linalg.solve(lhs, rhs)
        template = (template - template.mean(0)) * (size / (template - template.mean(0)).norm(dim=1).mean()) + centre
    return template


BIN_NAMES = [f"{a:g}-{b:g}" for a, b in zip((0, *YAW_EDGES), (*YAW_EDGES, 180))]


def _faces(folders: list[Path]) -> dict:
    """Every AFLW face the data sets hold, with its teachers' answers, landmarks and annotated yaw."""
    from .build_dataset import is_validation

    keys, points, yaw, whenet, mesh, where = [], [], [], [], [], []
    read = {}
    for folder in folders:
        if not (folder / "teacher_cache.json").is_file() or not (folder / "manifest.json").is_file():
            raise SystemExit(f"{folder} is not a data set of build_dataset (no teacher_cache.json / manifest.json): "
                             "run python -m training.build_dataset --out FOLDER first")
        cache = json.loads((folder / "teacher_cache.json").read_text())
        mp_path = folder / "mediapipe_cache.json"
        mp = json.loads(mp_path.read_text()) if mp_path.exists() else {}
        for key, angles in cache.items():
            prefix, name = key.split("/", 1)
            if prefix not in ROOTS or angles is None:
                continue
            if prefix not in read:
                read[prefix] = (read_landmarks(ROOTS[prefix]), read_yaw(ROOTS[prefix]))
            marks, yaws = read[prefix]
            name = name.split("#")[0]
            if name not in marks:
                continue
            keys.append(key)
            points.append(marks[name])
            yaw.append(yaws.get(name, np.nan))
            whenet.append(angles)
            mesh.append(mp.get(key) or [np.nan] * 9)
            where.append(folder)
    return {"keys": keys, "points": torch.tensor(np.array(points)), "yaw": torch.tensor(yaw, dtype=torch.float64),
            "whenet": torch.tensor(whenet, dtype=torch.float64), "mesh": torch.tensor(mesh, dtype=torch.float64).reshape(-1, 3, 3),
            "val": torch.tensor([is_validation(k.split("#")[0]) for k in keys]), "folder": where}


def _table(title: str, rows: list[list], header: list[str]) -> None:
    print(f"\n{title}\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in r) + " |")


def relabel(folders: list[Path], fit_steps: int = 60) -> dict:
    """Fit, compare, weigh and write the labels of the data sets in ``folders``; returns the weights and the
    agreement tables."""
    from training.mediapipe_teacher import load_canonical_face

    f = _faces(folders)
    if not f["keys"]:
        raise SystemExit(f"no AFLW faces with teacher labels in {', '.join(map(str, folders))}: run build_dataset first")
    teacher, source = teacher_labels(f["whenet"], f["mesh"])
    euler = matrix_to_euler(teacher)
    visible = (~torch.isnan(f["points"]).any(-1)).sum(1)
    train = ~f["val"]
    # the template: MediaPipe's points, refined on training faces where both teachers answer and agree well
    fit_on = train & (source == 2) & (euler[:, 0].abs() < 50) & (visible >= 6)
    template = refine_template(torch.tensor(mesh_template(load_canonical_face())), f["points"][fit_on], teacher[fit_on])
    starts = torch.stack([euler_to_matrix(torch.tensor(y), torch.tensor(0.0), torch.tensor(0.0)).double() @ teacher
                          for y in (0.0, -40.0, 40.0)], 1)
    ok = visible >= 4
    fit = torch.full_like(teacher, float("nan"))
    res = torch.full_like(f["yaw"], float("nan"))
    fit[ok], res[ok] = fit_rotations(f["points"][ok], template, starts[ok], steps=fit_steps)
    # how each source's yaw agrees with the annotated yaw, per bin; weights from the training split
    bins = yaw_bins(torch.nan_to_num(f["yaw"]))
    has_mesh = source == 2
    yaws = {"whenet": f["whenet"][:, 0], "mesh": matrix_to_euler(torch.nan_to_num(f["mesh"]))[:, 0],
            "fit": matrix_to_euler(torch.nan_to_num(fit))[:, 0], "teachers": euler[:, 0]}
    usable = {"whenet": ok, "mesh": ok & has_mesh, "fit": ok, "teachers": ok}
    errors = {split: {s: [float((yaws[s] - f["yaw"])[m & usable[s] & (bins == b)].abs().mean()) for b in range(len(BIN_NAMES))]
                      for s in yaws} for split, m in (("train", train), ("val", f["val"]))}
    weights = torch.tensor([UPRIGHT_WEIGHTS] + [[1 / errors["train"][s][b] ** 2 for s in ("whenet", "mesh", "fit")]
                                                for b in range(1, len(BIN_NAMES))])
    labels, label_source = face_labels(f["whenet"], f["mesh"], fit, f["yaw"], weights)
    lab_yaw = matrix_to_euler(labels)[:, 0]
    for split, m in (("train", train), ("val", f["val"])):
        _table(f"{split}: mean |yaw - annotated yaw| (degrees) per bin of annotated |yaw|",
               [[BIN_NAMES[b], int((m & ok & (bins == b)).sum()), *[errors[split][s][b] for s in yaws],
                 float((lab_yaw - f["yaw"])[m & ok & (bins == b)].abs().mean())] for b in range(len(BIN_NAMES))],
               ["abs yaw", "faces", "WHENet", "Face Mesh", "landmark fit", "teachers' label", "new label"])
    diff = (matrix_to_euler(torch.nan_to_num(fit)) - euler).abs()
    geo = torch.rad2deg(geodesic_distance(torch.nan_to_num(fit), teacher))
    _table("all faces: landmark fit against the teachers' label, mean absolute difference (degrees)",
           [[BIN_NAMES[b], *[float(diff[ok & (bins == b), i].mean()) for i in range(3)], float(geo[ok & (bins == b)].mean()),
             float(res[ok & (bins == b)].median()), float((has_mesh & ok & (bins == b)).double().sum() / (ok & (bins == b)).sum())]
            for b in range(len(BIN_NAMES))],
           ["abs yaw", "yaw", "pitch", "roll", "geodesic", "fit residual px (median)", "Face Mesh found"])
    _table("label weights per bin (WHENet, Face Mesh, landmark fit; 1 / train yaw error squared beyond 30)",
           [[BIN_NAMES[b], *[float(w) for w in weights[b]]] for b in range(len(BIN_NAMES))],
           ["abs yaw", "WHENet", "Face Mesh", "landmark fit"])
    index = {k: i for i, k in enumerate(f["keys"])}
    for folder in folders:
        cache = {k: {"rotation": fit[i].flatten().tolist(), "residual": float(res[i]), "annotated_yaw": float(f["yaw"][i])}
                 for k, i in index.items() if ok[i] and f["folder"][i] == folder}
        (folder / "landmark_cache.json").write_text(json.dumps(cache))
        _write_labels(folder, index, labels, label_source, weights)
    return {"weights": weights.tolist(), "errors": errors}


def _write_labels(folder: Path, index: dict, labels: torch.Tensor, label_source: torch.Tensor, weights: torch.Tensor) -> None:
    """Rewrite the pose labels of the shards in ``folder`` for the faces in ``index``; others keep theirs."""
    manifest = json.loads((folder / "manifest.json").read_text())
    for name, info in tqdm(sorted(manifest["shards"].items()), desc=f"relabel {folder.name}", unit="shard"):
        path = folder / "shards" / f"{name}.npz"
        if not info.get("samples") or not path.exists():
            continue
        with np.load(path) as z:
            data = {k: z[k] for k in z.files}
        rows = [(j, index[k]) for j, k in enumerate(data["face_key"]) if k in index and data["has_pose"][j]]
        if not rows:
            continue
        j, i = (torch.tensor(v) for v in zip(*rows))
        data["sixd"][j.numpy()] = matrix_to_sixd(labels[i]).float().numpy()
        data["angles"][j.numpy()] = matrix_to_euler(labels[i]).float().numpy()
        data["label_source"][j.numpy()] = label_source[i].numpy().astype(np.int8)
        np.savez(path, **data)
        info["pose_landmarks"] = int((data["label_source"] == LANDMARKS).sum())
    manifest["label_weights"] = {"bins": BIN_NAMES, "sources": ["whenet", "mediapipe", "landmarks"], "weights": weights.tolist()}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, nargs="+", default=[Path("data_cache/fpnet")],
                        help="data sets from build_dataset, relabelled together (default: data_cache/fpnet)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    return relabel(args.data)


if __name__ == "__main__":
    main()
