"""Drawing detections: box, score, landmarks, and the head's three axes projected into the image."""
from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .detector import Face

__all__ = ["AXIS_COLORS", "axis_endpoints", "face_numbers", "draw_faces"]

AXIS_COLORS = ((230, 25, 25), (25, 200, 25), (40, 80, 255))  # x red, y green, z blue (Hopenet, 6DRepNet)
BOX_COLOR = (255, 200, 0)
LANDMARK_COLOR = (0, 230, 255)


@functools.lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.ImageFont:
    """Pillow's default font at ``size`` px, loaded once per size (video draws every frame)."""
    return ImageFont.load_default(size=size)


@functools.lru_cache(maxsize=512)
def _label(text: str, size: int) -> Image.Image:
    """``text`` rendered once as an "L" coverage mask of its ink in the default font at ``size`` px. A
    video's labels repeat frame after frame (rounded angles), and laying text out cost Pillow 1 ms a label."""
    left, top, right, bottom = _font(size).getbbox(text)
    mask = Image.new("L", (right - left, bottom - top))
    ImageDraw.Draw(mask).text((-left, -top), text, fill=255, font=_font(size))
    return mask


def axis_endpoints(rotation: Sequence[Sequence[float]], center: tuple[float, float], length: float) -> list[tuple[float, float]]:
    """Image points where the head's x, y and z axes end, drawn from ``center``.

    Orthographic projection of the rotation's columns: camera x is image right, camera y is image up
    (so image rows go the other way), z (out of the face) shows by its x and y parts.
    """
    r = np.asarray(rotation, dtype=float)
    cx, cy = center
    return [(cx + length * r[0, k], cy - length * r[1, k]) for k in range(3)]


def face_numbers(faces: Sequence[Face]) -> list[int]:
    """The number each face goes by in the picture, the 3D view, the table and the JSON: a tracked face's
    ``track_id``, else its place in the list from 1 (best first)."""
    return [getattr(f, "track_id", i + 1) for i, f in enumerate(faces)]


def draw_faces(image: Image.Image | np.ndarray, faces: Sequence[Face], landmarks: bool = True, axes: bool = True,
               numbers: Sequence[int] | None = None) -> Image.Image:
    """A copy of ``image`` (RGB) with each face's number, box and score, landmarks and head axes drawn;
    ``numbers`` default to ``face_numbers(faces)``."""
    canvas = Image.fromarray(image) if isinstance(image, np.ndarray) else image.convert("RGB")
    canvas = canvas.copy()
    draw = ImageDraw.Draw(canvas)
    scale = max(canvas.size) / 640
    width = max(1, round(2 * scale))
    font_size = max(10, round(12 * scale))
    for number, face in zip(face_numbers(faces) if numbers is None else numbers, faces):
        x1, y1, x2, y2 = face.box
        draw.rectangle((x1, y1, x2, y2), outline=BOX_COLOR, width=width)
        label = f"#{number} {face.score:.2f}"
        if face.yaw is not None:
            label += f"  y{face.yaw:+.0f} p{face.pitch:+.0f} r{face.roll:+.0f}"
        text = _label(label, font_size)
        text_w, text_h = text.size
        text_y = y1 - text_h - 2 * width if y1 - text_h - 2 * width >= 0 else y2 + width
        draw.rectangle((x1, text_y, x1 + text_w + 2 * width, text_y + text_h + 2 * width), fill=BOX_COLOR)
        draw.bitmap((round(x1) + width, round(text_y) + width), text, fill=(0, 0, 0))
        if landmarks:
            r = max(1.5, 1.5 * width)
            for px, py in face.landmarks:
                draw.ellipse((px - r, py - r, px + r, py + r), fill=LANDMARK_COLOR)
        if axes and face.rotation is not None:
            center = ((x1 + x2) / 2, (y1 + y2) / 2)
            ends = axis_endpoints(face.rotation, center, 0.5 * (x2 - x1))
            # draw the axis pointing most toward the viewer last, so it stays on top
            order = np.argsort([face.rotation[2][k] for k in range(3)])
            for k in order:
                draw.line((center, ends[k]), fill=AXIS_COLORS[k], width=2 * width)
    return canvas
