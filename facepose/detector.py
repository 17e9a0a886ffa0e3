"""``FacePoseDetector``: find every face in a photo, with landmarks and 3D head rotation."""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .cascade import run_cascade
from .image import DEFAULT_MAX_PIXELS, ImageInput, load_image
from .rotation import matrix_to_euler
from .weights import WEIGHTS_DIR, load_fpnet, load_pnet, load_rnet

__all__ = ["Face", "FacePoseDetector", "SETTINGS"]

# what a detector holds besides its networks: replace() changes these, config() and save_pretrained write them
SETTINGS = ("min_face_size", "thresholds", "nms_thresholds", "factor", "max_pixels", "flip_pose")


@dataclass
class Face:
    """One detected face, in pixels of the (EXIF-upright) input image.

    ``rotation`` maps head to camera coordinates (camera x right, y up, z toward the viewer; a frontal
    face is the identity); ``yaw``, ``pitch``, ``roll`` are degrees in the AFLW2000 convention (see
    ``facepose.rotation``). All four are ``None`` when the weights carry no trained pose head.
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: list[tuple[float, float]]  # left eye, right eye (as displayed), nose, mouth left, mouth right
    rotation: list[list[float]] | None
    yaw: float | None
    pitch: float | None
    roll: float | None

    def to_dict(self) -> dict:
        """JSON-ready dict with the same field names."""
        d = asdict(self)
        d["box"], d["landmarks"] = list(d["box"]), [list(p) for p in d["landmarks"]]
        return d


def _resolve_device(device: str | torch.device) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' was asked for, but PyTorch sees no CUDA GPU on this machine; use device='cpu'")
    return device


class FacePoseDetector:
    """MTCNN's cascade with FPNet as its last stage.

    Args:
        min_face_size: smallest face searched for, in pixels (MTCNN default 20).
        thresholds: face-probability thresholds of P-Net, R-Net, FPNet (default 0.6, 0.7, 0.7).
        nms_thresholds: IoU thresholds of NMS within a pyramid level, over all levels, after R-Net,
            and (overlap over the smaller box) after FPNet (default 0.5, 0.7, 0.7, 0.7).
        factor: pyramid scale step (default 0.709).
        weights: FPNet weights file (safetensors); default: ``fpnet.safetensors`` of ``weights_dir``.
            A file without a rotation head (such as ``onet.safetensors``) gives plain MTCNN.
        weights_dir: folder with ``pnet``, ``rnet`` and ``fpnet.safetensors``; default: the packaged ones.
        device: ``"cpu"`` or ``"cuda"``.
        max_pixels: larger images are refused with ``ImageError`` (default 80 MP).
        flip_pose: average each face's rotation with the one FPNet finds in the mirrored crop (one
            more FPNet pass over the found faces only; default True).
    """

    def __init__(
        self,
        min_face_size: float = 20,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        nms_thresholds: tuple[float, float, float, float] = (0.5, 0.7, 0.7, 0.7),
        factor: float = 0.709,
        weights: str | Path | None = None,
        device: str | torch.device = "cpu",
        weights_dir: str | Path | None = None,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        flip_pose: bool = True,
    ) -> None:
        if min_face_size < 12:
            raise ValueError(f"min_face_size must be at least 12 pixels (P-Net's window), got {min_face_size}")
        if not 0 < factor < 1:
            raise ValueError(f"factor must be between 0 and 1, got {factor}")
        if len(thresholds) != 3 or not all(0 <= t <= 1 for t in thresholds):
            raise ValueError(f"thresholds must be three probabilities, got {thresholds}")
        self.min_face_size = min_face_size
        self.thresholds = tuple(thresholds)
        self.nms_thresholds = tuple(nms_thresholds)
        self.factor = factor
        self.max_pixels = max_pixels
        self.flip_pose = bool(flip_pose)
        self.device = _resolve_device(device)
        folder = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
        self.weights = Path(weights) if weights is not None else folder / "fpnet.safetensors"
        fpnet, self.pose_available = load_fpnet(self.weights)
        nets = (load_pnet(folder / "pnet.safetensors"), load_rnet(folder / "rnet.safetensors"), fpnet)
        self.nets = tuple(net.to(self.device) for net in nets)

    def replace(self, **settings) -> "FacePoseDetector":
        """A copy with other ``min_face_size``, ``thresholds``, ``nms_thresholds``, ``factor``, ``max_pixels`` or ``flip_pose``,
        sharing this detector's networks (cheap; safe to use from several threads, inference only reads them)."""
        unknown = set(settings) - set(SETTINGS)
        if unknown:
            raise TypeError(f"replace() takes only {sorted(SETTINGS)}, not {sorted(unknown)}")
        twin = copy.copy(self)
        for name, value in settings.items():
            setattr(twin, name, tuple(value) if name.endswith("thresholds") else value)
        return twin

    def config(self) -> dict:
        """The detector's settings, as ``save_pretrained`` writes them to ``config.json``."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in ((k, getattr(self, k)) for k in SETTINGS)}

    @classmethod
    def from_pretrained(cls, repo_id_or_dir: str | Path, device: str = "cpu", **overrides) -> "FacePoseDetector":
        """A detector from a folder written by ``save_pretrained`` or a Hugging Face Hub model repo."""
        from .hub import load_pretrained

        return load_pretrained(cls, repo_id_or_dir, device=device, **overrides)

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write ``pnet``, ``rnet``, ``fpnet.safetensors`` and ``config.json`` to ``folder``."""
        from .hub import save_pretrained

        return save_pretrained(self, folder)

    def push_to_hub(self, repo_id: str, **kwargs) -> str:
        """``save_pretrained`` into a temporary folder and upload it to a Hub model repo (needs a token)."""
        from .hub import push_to_hub

        return push_to_hub(self, repo_id, **kwargs)

    @torch.inference_mode()
    def detect(self, image: ImageInput) -> list[Face]:
        """Find every face in ``image`` (path, PIL image, or HxWx3 uint8 RGB array), best first.

        Raises ``facepose.ImageError`` for a missing, unreadable, corrupt or too large image.
        """
        pixels = load_image(image, self.max_pixels)
        if not pixels.flags.writeable:  # torch wants to own writable memory; a copy is cheap
            pixels = pixels.copy()
        tensor = torch.from_numpy(pixels).to(self.device).permute(2, 0, 1)[None].float()
        det = run_cascade(self.nets, tensor, self.min_face_size, self.factor, self.thresholds, self.nms_thresholds,
                          self.flip_pose and self.pose_available)
        boxes = det.boxes.cpu().tolist()
        scores = det.scores.cpu().tolist()
        marks = det.landmarks.cpu().tolist()
        if self.pose_available:
            rotations = det.rotations.cpu()
            angles = matrix_to_euler(rotations.double()).tolist()
            rotations = rotations.tolist()
        else:
            rotations = [None] * len(boxes)
            angles = [(None, None, None)] * len(boxes)
        return [
            Face(tuple(b), s, [tuple(p) for p in m], r, *a)
            for b, s, m, r, a in zip(boxes, scores, marks, rotations, angles)
        ]

    def __repr__(self) -> str:
        return (
            f"FacePoseDetector(min_face_size={self.min_face_size}, thresholds={self.thresholds}, "
            f"factor={self.factor}, weights='{self.weights}', device='{self.device}', "
            f"pose_available={self.pose_available})"
        )
