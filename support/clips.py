"""Synthetic video clips cut from a real two-face photo, with known motion, for the video tests and benchmarks."""
from __future__ import annotations

import numpy as np
from PIL import Image

from .paths import PHOTOS

__all__ = ["PHOTO", "ONE_FACE_PHOTO", "frames"]

PHOTO = PHOTOS / "pexels_women_on_phones.jpg"  # two faces
ONE_FACE_PHOTO = PHOTOS / "nasa_iss_peggy_whitson.jpg"


def frames(kind: str, n: int, size: tuple[int, int], photo=PHOTO) -> list[np.ndarray]:
    """``n`` RGB frames of ``size`` (w, h): ``moving`` (panned, zoomed and turned about 0.3 degrees a frame),
    ``still`` (unmoved, fresh pixel noise of sigma 3 each frame), ``turn`` (still, then turned by 15 degrees
    about the left face at frame 30) or ``spin`` (turning counter-clockwise through 360 degrees over the n
    frames about the frame's centre, the whole photo shrunk onto grey so both faces stay in the frame). Cut from
    ``photo`` (default: the two-face ``PHOTO``)."""
    w, h = size
    if kind == "spin":
        photo = Image.open(photo).convert("RGB")
        photo = photo.resize((w, round(w * photo.height / photo.width)))
        canvas = Image.new("RGB", (w, h), (128, 128, 128))
        canvas.paste(photo, ((w - photo.width) // 2, (h - photo.height) // 2))
        return [np.asarray(canvas.rotate(360.0 * i / n, resample=Image.BILINEAR, fillcolor=(128, 128, 128))) for i in range(n)]
    big = Image.open(photo).convert("RGB").resize((int(w * 1.3), int(h * 1.3)))
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        if kind == "moving":
            angle, zoom, dx = 0.3 * i, 1 + 0.002 * i, 0.8 * i
        elif kind == "turn":
            angle, zoom, dx = (15.0 if i >= 30 else 0.0), 1.0, 0.0
        else:
            angle, zoom, dx = 0.0, 1.0, 0.0
        centre = (0.2 * big.width, 0.3 * big.height) if kind == "turn" else None  # the turn: about the left face
        im = big.rotate(angle, resample=Image.BILINEAR, fillcolor=(128, 128, 128), center=centre)
        cw, ch = w / zoom, h / zoom
        left, top = (big.width - cw) / 2 - 40 + dx, (big.height - ch) / 2
        a = np.asarray(im.crop((int(left), int(top), int(left + cw), int(top + ch))).resize((w, h), Image.BILINEAR))
        if kind == "still":
            a = np.clip(a + rng.normal(0, 3, a.shape), 0, 255).astype(np.uint8)
        out.append(a)
    return out
