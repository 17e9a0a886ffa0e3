"""FacePose: every face in a photo, where it is and which way the head is turned in 3D.

MTCNN's cascade (P-Net, R-Net) with FPNet, an O-Net that also regresses head rotation, as last stage.
"""
from .detector import Face, FacePoseDetector
from .image import ImageError, load_image
from .weights import WeightsError

__all__ = ["Face", "FacePoseDetector", "ImageError", "WeightsError", "load_image"]
__version__ = "0.1.0"
