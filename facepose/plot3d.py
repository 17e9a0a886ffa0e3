"""An interactive Plotly 3D view of each face's rotation basis."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .detector import Face

__all__ = ["FACE_COLORS", "rotation_figure"]

FACE_COLORS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324", "#469990", "#808000")
AXIS_NAMES = ("x (subject's left)", "y (up)", "z (facing)")


def rotation_figure(faces: Sequence[Face], spacing: float = 2.6):
    """Three labelled arrows per face (its head axes in camera coordinates: x right, y up, z toward the
    viewer), one colour per face, faces side by side in detection order; yaw/pitch/roll on hover.
    The camera looks from the viewer's side, so a frontal face shows its z arrow pointing out of the screen."""
    import plotly.graph_objects as go

    data: list[dict] = []
    posed = [(i, f) for i, f in enumerate(faces) if f.rotation is not None]
    for slot, (i, face) in enumerate(posed):
        colour = FACE_COLORS[i % len(FACE_COLORS)]
        origin = np.array([slot * spacing, 0.0, 0.0])
        r = np.asarray(face.rotation)
        hover = f"face {i + 1}<br>yaw {face.yaw:+.1f}°<br>pitch {face.pitch:+.1f}°<br>roll {face.roll:+.1f}°"
        for k in range(3):
            tip = origin + r[:, k]
            hovertemplate = f"{hover}<br>axis {AXIS_NAMES[k]}<extra></extra>"
            data.append(dict(
                type="scatter3d", x=[origin[0], tip[0]], y=[origin[1], tip[1]], z=[origin[2], tip[2]], mode="lines",
                line=dict(color=colour, width=7 if k == 2 else 4, dash="solid" if k == 2 else ("dash" if k == 1 else "dot")),
                name=f"face {i + 1}", legendgroup=f"face {i + 1}", showlegend=k == 0, hovertemplate=hovertemplate,
            ))
            data.append(dict(
                type="cone", x=[tip[0]], y=[tip[1]], z=[tip[2]], u=[r[0, k]], v=[r[1, k]], w=[r[2, k]], sizemode="absolute",
                sizeref=0.25, anchor="tip", colorscale=[[0, colour], [1, colour]], showscale=False,
                legendgroup=f"face {i + 1}", hovertemplate=hovertemplate,
            ))
        data.append(dict(
            type="scatter3d", x=[origin[0] + 1.15 * r[0, k] for k in range(3)], y=[origin[1] + 1.15 * r[1, k] for k in range(3)],
            z=[origin[2] + 1.15 * r[2, k] for k in range(3)], mode="text", text=["x", "y", "z"],
            textfont=dict(color=colour, size=13), legendgroup=f"face {i + 1}", showlegend=False, hoverinfo="skip",
        ))
    span = max(1, len(posed)) * spacing
    layout = dict(
        scene=dict(
            xaxis=dict(title=dict(text="x (right)"), range=[-1.5, span - spacing + 1.5]),
            yaxis=dict(title=dict(text="y (up)"), range=[-1.5, 1.5]),
            zaxis=dict(title=dict(text="z (to viewer)"), range=[-1.5, 1.5]),
            aspectmode="data",
            camera=dict(eye=dict(x=0.35, y=0.45, z=2.0), up=dict(x=0, y=1, z=0)),
        ),
        margin=dict(l=0, r=0, t=30, b=0), height=420, legend=dict(orientation="h"),
        title=dict(text="Head rotation of each face (camera frame)" if posed else "No head pose to show", x=0.5),
    )
    # Built from plain dicts without Plotly's per-property validation (40 ms -> under 1 ms for a few faces);
    # tests/test_app.py validates the same spec once with validation on.
    return go.Figure(dict(data=data, layout=layout), _validate=False)
