"""A Plotly chart of yaw, pitch and roll over time, one colour per track (for video results)."""
from __future__ import annotations

import json
from pathlib import Path

__all__ = ["pose_timeline"]

COLOURS = ("#4063d8", "#e6550d", "#31a354", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
DASHES = {"yaw": "solid", "pitch": "dash", "roll": "dot"}


def pose_timeline(jsonl: str | Path):
    """A ``plotly.graph_objects.Figure`` from a ``facepose video`` JSONL file: per track, yaw (solid),
    pitch (dashed) and roll (dotted) in degrees against time in seconds."""
    import plotly.graph_objects as go

    tracks: dict[int, dict[str, list]] = {}
    for line in Path(jsonl).read_text().splitlines():
        frame = json.loads(line)
        for face in frame["faces"]:
            if face["yaw"] is None:
                continue
            t = tracks.setdefault(face["track_id"], {"time": [], "yaw": [], "pitch": [], "roll": []})
            t["time"].append(frame["time"])
            for angle in DASHES:
                t[angle].append(face[angle])
    fig = go.Figure()
    for k, (track_id, t) in enumerate(sorted(tracks.items())):
        for angle, dash in DASHES.items():
            fig.add_trace(go.Scatter(x=t["time"], y=t[angle], mode="lines", name=f"face {track_id} {angle}",
                                     line={"color": COLOURS[k % len(COLOURS)], "dash": dash}))
    fig.update_layout(xaxis_title="time (s)", yaxis_title="degrees", height=380, margin={"l": 40, "r": 10, "t": 30, "b": 40},
                      legend={"orientation": "h"}, title="Head pose over time (yaw solid, pitch dashed, roll dotted)")
    return fig
