"""``DetectorConfig``: every setting of a detector besides its networks, validated in one place."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from .image import DEFAULT_MAX_PIXELS

__all__ = ["DetectorConfig"]


def _probabilities(name: str, values, count: int) -> tuple[float, ...]:
    values = tuple(float(v) for v in values)
    if len(values) != count or not all(0 <= v <= 1 for v in values):
        raise ValueError(f"{name} must be {count} numbers between 0 and 1, got {values}")
    return values


@dataclass(frozen=True)
class DetectorConfig:
    """The settings of ``FacePoseDetector``; frozen, checked on creation and on ``dataclasses.replace``.

    Args:
        min_face_size: smallest face searched for, in pixels, at least P-Net's 12 px window (MTCNN: 20).
        thresholds: face-probability thresholds of P-Net, R-Net and FPNet.
        nms_thresholds: IoU thresholds of NMS within a pyramid level, over all levels, after R-Net,
            and (overlap over the smaller box) after FPNet.
        factor: pyramid scale step, in (0, 1).
        max_pixels: larger images are refused with ``ImageError``; ``None`` for no limit.
        flip_pose: average each face's rotation with the one FPNet finds in the mirrored crop (one
            more FPNet pass over the found faces only).
        any_rotation: also find faces turned in the image plane (sideways, upside down): the cascade runs on
            the image turned by 0, 90, 180 and 270 degrees and the faces are merged, each with its full
            rotation (roll anywhere in -180..180); turned faces are searched from twice ``min_face_size``.
            Costs about 2.1x upright detection (``facepose.turns``).
    """

    min_face_size: float = 20.0
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    nms_thresholds: tuple[float, float, float, float] = (0.5, 0.7, 0.7, 0.7)
    factor: float = 0.709
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    flip_pose: bool = True
    any_rotation: bool = False

    def __post_init__(self) -> None:
        put = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen dataclass)
        size = float(self.min_face_size)
        if not math.isfinite(size) or size < 12:
            raise ValueError(f"min_face_size must be at least 12 pixels (P-Net's window), got {self.min_face_size}")
        put("min_face_size", size)
        put("thresholds", _probabilities("thresholds", self.thresholds, 3))
        put("nms_thresholds", _probabilities("nms_thresholds", self.nms_thresholds, 4))
        if not 0 < float(self.factor) < 1:
            raise ValueError(f"factor must be between 0 and 1, got {self.factor}")
        put("factor", float(self.factor))
        if self.max_pixels is not None:
            if int(self.max_pixels) != self.max_pixels or self.max_pixels < 1:
                raise ValueError(f"max_pixels must be a positive whole number or None, got {self.max_pixels}")
            put("max_pixels", int(self.max_pixels))
        for name in ("flip_pose", "any_rotation"):
            if getattr(self, name) not in (True, False):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
            put(name, bool(getattr(self, name)))

    def replace(self, **changes) -> DetectorConfig:
        """A copy with ``changes``, validated like the constructor; unknown names raise ``TypeError``."""
        unknown = set(changes) - self.names()
        if unknown:
            raise TypeError(f"unknown detector settings {sorted(unknown)}; the settings are {sorted(self.names())}")
        return dataclasses.replace(self, **changes)

    @classmethod
    def names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    def to_dict(self) -> dict:
        """JSON-ready: tuples become lists."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> DetectorConfig:
        """The settings found in ``data`` (other keys, such as a version, are ignored); the rest default."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in cls.names()})
