"""FacePose: every face in a photo, where it is and which way the head is turned in 3D.

MTCNN's cascade (P-Net, R-Net) with FPNet, an O-Net that also regresses head rotation, as last stage.
"""
__version__ = "0.1.0"

from .config import DetectorConfig  # noqa: E402 (the version is read by hub on import)
from .detector import Face, FacePoseDetector  # noqa: E402
from .image import ImageError, load_image  # noqa: E402
from .weights import WeightsError  # noqa: E402

__all__ = ["DetectorConfig", "Face", "FacePoseDetector", "ImageError", "WeightsError", "load_image", "__version__"]
