"""``FacePoseDetector``: find every face in a photo, with landmarks and 3D head rotation."""
from __future__ import annotations

import copy
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from . import hub
from .cascade import Detections, follow, pyramid_levels, run_cascade
from .config import DetectorConfig
from .crops import integral_image
from .image import ImageInput, load_image
from .nets import REQUIRED_NETS, CascadeNets
from .rotation import matrix_to_euler
from .turns import run_cascade_any_rotation
from .weights import WEIGHTS_DIR, load_cascade

__all__ = ["Face", "FacePoseDetector"]


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


BACKENDS = ("torch", "onnxruntime")


def _onnx_nets(folder: Path, weights: str | Path | None, threads: int | None) -> tuple[CascadeNets, bool]:
    """ONNX Runtime sessions: the folder's ``.onnx`` files, or an export of its safetensors weights."""
    import tempfile

    from .onnx_backend import ONNX_FILES, export_onnx, load_onnx_cascade, require_onnxruntime

    require_onnxruntime()
    if weights is None and all((folder / ONNX_FILES[name]).is_file() for name in REQUIRED_NETS):
        return load_onnx_cascade(folder, threads)
    nets, pose = load_cascade(folder, Path(weights) if weights is not None else folder / "fpnet.safetensors")
    with tempfile.TemporaryDirectory(prefix="facepose-onnx-") as tmp:  # sessions hold the models in memory
        export_onnx(nets, tmp, pose)
        return load_onnx_cascade(tmp, threads)


def _resolve_device(device: str | torch.device) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' was asked for, but PyTorch sees no CUDA GPU on this machine; use device='cpu'")
    return device


class FacePoseDetector:
    """MTCNN's cascade with FPNet as its last stage.

    Settings are a ``DetectorConfig`` (``config=``), or its fields as keyword arguments: ``min_face_size``
    (default 20 px), each stage's threshold and NMS threshold (``pnet_threshold=0.6``, ``rnet_threshold=0.7``,
    ``fpnet_threshold=0.7``, ...), ``factor`` (0.709), ``max_pixels`` (80 MP), ``flip_pose`` (True: each
    face's rotation is averaged with the one FPNet finds in the mirrored crop) and ``any_rotation`` (False;
    True also finds sideways and upside-down faces, at a cost ``benchmarks.rotation`` measures). See ``DetectorConfig``.

    ``detect`` gives ``Face`` records; ``prepare``, ``detections`` and ``follow`` are the tensor-level steps
    that ``FacePoseTracker`` builds on.

    Args:
        weights: last-stage weights file (safetensors); default: ``fpnet.safetensors`` of ``weights_dir``.
            A file without a rotation head (such as ``onet.safetensors``) gives plain MTCNN.
        weights_dir: folder with ``pnet``, ``rnet`` and ``fpnet.safetensors``; default: the packaged ones.
        device: ``"cpu"`` or ``"cuda"``.
        backend: ``"torch"`` (default) or ``"onnxruntime"``: the same cascade with the three networks run
            by ONNX Runtime sessions (``pip install 'facepose[onnx]'``), from ``weights_dir``'s ``.onnx``
            files when it has them and ``weights`` is not given, else exported from the loaded weights.
        threads: CPU threads of the ONNX Runtime sessions (default: ``torch.get_num_threads()``).
        config: the settings; keyword settings given as well replace its fields.
    """

    def __init__(
        self,
        *,
        weights: str | Path | None = None,
        device: str | torch.device = "cpu",
        weights_dir: str | Path | None = None,
        config: DetectorConfig | None = None,
        backend: str = "torch",
        threads: int | None = None,
        **settings,
    ) -> None:
        self.config = (config or DetectorConfig()).replace(**settings)
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.backend = backend
        self.device = _resolve_device(device)
        folder = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
        self.weights = Path(weights) if weights is not None else folder / "fpnet.safetensors"
        if backend == "onnxruntime":
            if self.device.type != "cpu":
                raise ValueError("the onnxruntime backend runs on the CPU here; use device='cpu' or backend='torch'")
            self.nets, self.pose_available = _onnx_nets(folder, weights, threads)
            return
        nets, self.pose_available = load_cascade(folder, self.weights)
        # convolution weights held channels-last, as the networks read their input: oneDNN then uses them as they are
        # instead of converting them on every call (the same results, 10-15% faster)
        self.nets = CascadeNets(*(None if net is None else net.to(self.device, memory_format=torch.channels_last) for net in nets))

    def replace(self, **settings) -> FacePoseDetector:
        """A copy with other settings (``DetectorConfig``'s fields, validated the same way), sharing this
        detector's networks (cheap; safe to use from several threads, inference only reads them)."""
        twin = copy.copy(self)
        twin.config = self.config.replace(**settings)
        return twin

    @classmethod
    def from_pretrained(cls, repo_id_or_dir: str | Path, device: str = "cpu", backend: str = "torch",
                        threads: int | None = None, **settings) -> FacePoseDetector:
        """A detector from a folder written by ``save_pretrained`` or a Hugging Face Hub model repo
        (with ``backend="onnxruntime"``, its ``.onnx`` files); keyword settings replace the saved ones."""
        folder = hub.resolve(repo_id_or_dir)
        return cls(weights_dir=folder, device=device, backend=backend, threads=threads,
                   config=hub.read_config(folder).replace(**settings))

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write ``pnet``, ``rnet``, ``fpnet.safetensors``, their ONNX exports (when the ``onnx`` package is
        installed) and ``config.json`` to ``folder``."""
        if self.backend != "torch":
            raise ValueError("save_pretrained needs the torch networks: use a detector with backend='torch'")
        return hub.save_pretrained(folder, self.nets, self.config, self.pose_available)

    def push_to_hub(self, repo_id: str, **kwargs) -> str:
        """``save_pretrained`` into a temporary folder and upload it to a Hub model repo (needs a token)."""
        return hub.push_to_hub(self.save_pretrained, repo_id, **kwargs)

    def prepare(self, image: ImageInput) -> torch.Tensor:
        """``image`` (path, PIL image, or HxWx3 uint8 RGB array) as the ``(1, 3, H, W)`` uint8 tensor the
        cascade reads, on the detector's device (channels-last in memory).

        Raises ``facepose.ImageError`` for a missing, unreadable, corrupt or too large image.
        """
        pixels = load_image(image, self.config.max_pixels)
        if pixels.flags.writeable:
            tensor = torch.from_numpy(pixels)
        else:  # a read-only array (np.asarray of a PIL image): the cascade only reads the pixels, so no copy
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "The given NumPy array is not writable", UserWarning)
                tensor = torch.from_numpy(pixels)
        return tensor.to(self.device).permute(2, 0, 1)[None]

    @property
    def flip_pose(self) -> bool:
        """Whether rotations are flip-averaged: the setting, when the weights have a pose head."""
        return self.config.flip_pose and self.pose_available

    @torch.inference_mode()
    def detections(self, image: torch.Tensor, part: tuple[int, int] | None = None,
                   known: torch.Tensor | None = None) -> Detections:
        """The whole cascade (in every quarter turn with ``any_rotation``) on a ``prepare``d image: the faces'
        boxes, scores, landmarks and rotations as tensors, best first.

        ``part=(k, n)``: P-Net scans only the ``k``-th of ``n`` groups of pyramid levels (``cascade.pyramid_part``,
        about equal work each), so a search can be spread over ``n`` frames (the tracker's); upright only. One part of
        one (``(0, 1)``) is the whole cascade. ``known (K, 4)``: boxes of faces known already (a tracker's); the
        candidates on them stop after P-Net or R-Net (``run_cascade``'s ``known``); upright only."""
        if self.config.any_rotation and (part is None or part[1] == 1):
            return run_cascade_any_rotation(self.nets, image, self.config, self.flip_pose)
        ii = integral_image(image[0])
        levels = pyramid_levels(ii, self.config, part or (0, 1))
        if not levels:
            return Detections.empty(image.float(), self.nets.fpnet.has_rotation)
        return run_cascade(self.nets, image, self.config, flip_pose=self.flip_pose, levels=levels, ii=ii,
                           known=known).detections

    @torch.inference_mode()
    def follow(self, image: torch.Tensor, boxes: torch.Tensor, angles: torch.Tensor | None = None,
               corrections: torch.Tensor | None = None) -> tuple[torch.Tensor, Detections, torch.Tensor | None]:
        """Known faces on a ``prepare``d image: each of the square ``boxes (N, 4)`` refined by FPNet
        alone (``cascade.follow``), its crops turned upright by ``angles (N,)`` (degrees, each face's last
        ``rotation.in_plane_angle``) when given. With the detector's ``flip_pose``, the rotation is flip-averaged:
        by a mirrored pass, or, given each face's mirror ``corrections (N, 3, 3)`` from an earlier frame, by
        correcting the rotation read from the crop alone. Returns the indices of the boxes whose face is still
        there, their ``Detections``, and the mirror corrections measured by this call's mirrored pass (or
        ``None``)."""
        if angles is not None:
            angles = angles.to(self.device)
        if corrections is not None:
            corrections = corrections.to(self.device) if self.flip_pose else None
        return follow(self.nets, image, boxes.to(self.device), self.config, self.flip_pose, angles, corrections)

    def faces(self, det: Detections) -> list[Face]:
        """``Detections`` as ``Face`` records (Python numbers, angles in degrees)."""
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

    def detect(self, image: ImageInput) -> list[Face]:
        """Find every face in ``image`` (path, PIL image, or HxWx3 uint8 RGB array), best first.

        Raises ``facepose.ImageError`` for a missing, unreadable, corrupt or too large image.
        """
        return self.faces(self.detections(self.prepare(image)))

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in vars(self.config).items())
        return (f"FacePoseDetector({settings}, weights='{self.weights}', device='{self.device}', "
                f"backend='{self.backend}', last_stage={self.nets.fpnet.arch}, pose_available={self.pose_available})")
