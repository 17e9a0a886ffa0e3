"""The interactive Plotly 3D view: a small head per face, turned by its rotation, where the face is.

The view is laid out like the photo and seen from the camera by default: x right, y up, z toward the
viewer, in the image's pixels (y counted up from the bottom edge). Each face gets a head (MediaPipe's
canonical face, ``data/head_mesh.json``) scaled to its box, its three axes (x red, y green, z blue, as
drawn on the image) and its number, the same number as in the annotated image, the table and the JSON.
Hover shows the number, yaw, pitch and roll.
"""
from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from importlib import resources

import numpy as np

from .detector import Face
from .draw import AXIS_COLORS, face_numbers

__all__ = ["FACE_COLORS", "head_mesh", "head_figure"]

FACE_COLORS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324", "#469990", "#808000")
HEAD_WIDTH = 0.9  # a head's width over its box's: the box runs from ear to ear, a little wider than the face
AXIS_LENGTH = 0.75  # an axis over the box's width
ZOOM = 2.4  # the scene's longer side over Plotly's default


@functools.lru_cache(maxsize=1)
def head_mesh() -> tuple[np.ndarray, np.ndarray]:
    """The head drawn for each face: ``(V, 3)`` vertices in the head frame (x toward the subject's left,
    y up, z out of the face; unit width, centred) and ``(T, 3)`` triangles (vertex indices)."""
    data = json.loads(resources.files("facepose.data").joinpath("head_mesh.json").read_text())
    # small dtypes: Plotly sends numpy arrays as typed binary, so a head costs about 4 kB
    return np.asarray(data["vertices"], dtype=np.float64), np.asarray(data["triangles"], dtype=np.int16)


def _hover(number: int, face: Face) -> str:
    return f"face {number}<br>yaw {face.yaw:+.1f}°<br>pitch {face.pitch:+.1f}°<br>roll {face.roll:+.1f}°<extra></extra>"


def _region(faces: Sequence[Face], width: int, height: int) -> tuple[list[float], list[float]]:
    """The part of the image (x and y-up ranges, pixels) the view shows: around the faces, with a margin
    of half the largest face, inside the image where the faces are."""
    if not faces:
        return [0.0, float(width)], [0.0, float(height)]
    boxes = np.array([f.box for f in faces], dtype=np.float64)
    margin = 0.6 * (boxes[:, 2] - boxes[:, 0]).max()
    x0, x1 = boxes[:, 0].min() - margin, boxes[:, 2].max() + margin
    y0, y1 = height - boxes[:, 3].max() - margin, height - boxes[:, 1].min() + margin
    return [float(x0), float(x1)], [float(y0), float(y1)]


def head_figure(faces: Sequence[Face], width: int, height: int, numbers: Sequence[int] | None = None):
    """A Plotly figure with one head per face of a ``width`` x ``height`` image, numbered by ``numbers``
    (default: ``draw.face_numbers``, as the annotated image). Faces without a rotation are left out.

    Light to send: one mesh trace per face (160 vertices as float32, triangles as int16), and all axes and
    numbers in four more traces.
    """
    import plotly.graph_objects as go

    vertices, triangles = head_mesh()
    numbers = face_numbers(faces) if numbers is None else list(numbers)
    data: list[dict] = []
    axes: list[list] = [[], [], []]  # per axis: x, y, z point lists with None between faces
    labels = {"x": [], "y": [], "z": [], "text": [], "hovertemplate": []}
    shown = 0
    for number, face in zip(numbers, faces):
        if face.rotation is None:
            continue
        shown += 1
        x1, y1, x2, y2 = face.box
        size = x2 - x1
        centre = np.array([(x1 + x2) / 2, height - (y1 + y2) / 2, 0.0])
        r = np.asarray(face.rotation, dtype=np.float64)
        points = (centre + HEAD_WIDTH * size * vertices @ r.T).astype(np.float32)  # head frame -> camera frame, pixels
        colour = FACE_COLORS[(number - 1) % len(FACE_COLORS)]
        data.append(dict(
            type="mesh3d", x=points[:, 0], y=points[:, 1], z=points[:, 2],
            i=triangles[:, 0], j=triangles[:, 1], k=triangles[:, 2], color=colour, opacity=1.0, flatshading=True,
            lighting=dict(ambient=0.55, diffuse=0.7, specular=0.1), name=f"face {number}", hovertemplate=_hover(number, face),
        ))
        for k in range(3):
            tip = centre + AXIS_LENGTH * size * r[:, k]
            axes[k].append((centre, tip))
        labels["x"].append(centre[0])
        labels["y"].append(centre[1] + 0.62 * size)
        labels["z"].append(0.0)
        labels["text"].append(str(number))
        labels["hovertemplate"].append(_hover(number, face))
    for k, segments in enumerate(axes):
        xs, ys, zs = [], [], []
        for start, end in segments:
            xs += [start[0], end[0], None]
            ys += [start[1], end[1], None]
            zs += [start[2], end[2], None]
        data.append(dict(type="scatter3d", x=xs, y=ys, z=zs, mode="lines", hoverinfo="skip", showlegend=False,
                         line=dict(color="rgb({},{},{})".format(*AXIS_COLORS[k]), width=5), name="xyz"[k]))
    data.append(dict(type="scatter3d", mode="text", showlegend=False, name="numbers",
                     textfont=dict(size=16 if shown <= 10 else 12, color="#111111"), **labels))
    x_range, y_range = _region(faces, width, height)
    span = max(x_range[1] - x_range[0], y_range[1] - y_range[0])
    ticks = dict(showbackground=False, showspikes=False, gridcolor="#dddddd", zeroline=False)
    layout = dict(
        scene=dict(
            xaxis=dict(title=dict(text="x (right)"), range=x_range, **ticks),
            yaxis=dict(title=dict(text="y (up)"), range=y_range, **ticks),
            zaxis=dict(title=dict(text="z"), range=[-span / 4, span / 4], showticklabels=False, **ticks),
            aspectmode="manual",
            # with an orthographic camera Plotly zooms by the aspect ratio: ZOOM fills the plot with the region
            aspectratio=dict(x=ZOOM * (x_range[1] - x_range[0]) / span, y=ZOOM * (y_range[1] - y_range[0]) / span, z=ZOOM / 2),
            camera=dict(eye=dict(x=0, y=0, z=2), up=dict(x=0, y=1, z=0), projection=dict(type="orthographic")),
        ),
        margin=dict(l=0, r=0, t=30, b=0), height=460, showlegend=False,
        title=dict(text="Each face's head where it is, numbered as in the picture (drag to turn)" if shown
                   else "No head pose to show", x=0.5),
    )
    # Built from plain dicts without Plotly's per-property validation, which costs far more than building;
    # tests/test_app.py validates the same spec once with validation on.
    return go.Figure(dict(data=data, layout=layout), _validate=False)
