"""ONNX export of the three networks, and ONNX Runtime sessions that stand in for them in the cascade.

Exported graphs take **0-255 RGB pixels** (float32, ``N x 3 x H x W``) and apply MTCNN's normalisation
``(x - 127.5) / 128`` inside, so a C++, C# or browser caller feeds image pixels as they are:

- ``pnet.onnx``: ``pixels (1, 3, H, W)`` (any H, W >= 12) -> ``prob (1, H', W')``, ``box (1, 4, H', W')``;
- ``rnet.onnx``: ``pixels (N, 3, 24, 24)`` -> ``prob (N,)``, ``box (N, 4)``;
- ``fpnet.onnx``: ``pixels (N, 3, 48, 48)`` -> ``face_logits (N, 2)``, ``box (N, 4)``, ``landmarks (N, 10)``,
  ``sixd (N, 6)`` (``(N, 0)`` for plain O-Net), and with an orientation head ``lean (N,)`` (degrees the face
  leans in its crop, ``FPNetBranch.in_plane``); model metadata ``arch`` and ``pose``;
- ``updown.onnx`` (where the weights have the up/down check): ``pixels (N, 3, 48, 48)`` (the disk crops of
  ``cascade.updown_crops``, before normalisation) -> ``upright (N,)``, the logit that the face stands upright.

``OnnxNet`` wraps a session so that the cascade (box decoding, NMS, crops, pose conversion: one
implementation for both backends) calls it like the torch module.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from .nets import REQUIRED_NETS, CascadeNets, FPNetOutput, UpDownNet

__all__ = ["ONNX_FILES", "export_onnx", "OnnxNet", "load_onnx_cascade", "require_onnxruntime"]

ONNX_FILES = {name: f"{name}.onnx" for name in CascadeNets._fields}
_SPECS = {  # example input, input axes that vary, output names
    "pnet": ((1, 3, 64, 80), {0: "batch", 2: "height", 3: "width"}, ["prob", "box"]),
    "rnet": ((2, 3, 24, 24), {0: "batch"}, ["prob", "box"]),
    "fpnet": ((2, 3, 48, 48), {0: "batch"}, ["face_logits", "box", "landmarks", "sixd"]),
    "updown": ((2, 3, 48, 48), {0: "batch"}, ["upright"]),
}


class _PixelInput(nn.Module):
    """A network with MTCNN's input normalisation in front: it takes 0-255 pixels."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, pixels: torch.Tensor):
        x = (pixels - 127.5) * 0.0078125
        if isinstance(self.net, UpDownNet):
            return self.net(x)
        if getattr(self.net, "has_orientation", False):
            f = self.net.features(x)
            return (*self.net.detection(f)[:3], self.net.rotation_6d(f), self.net.in_plane(f))
        return tuple(self.net(x))


def require_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise ImportError("the onnxruntime backend needs ONNX Runtime: pip install 'facepose[onnx]' "
                          "(or pip install onnxruntime)") from None
    return onnxruntime


def export_onnx(nets: CascadeNets, folder: str | Path, pose_available: bool = True, check: bool = True) -> list[Path]:
    """Write ``pnet``, ``rnet``, ``fpnet`` and (where ``nets`` has it) ``updown.onnx`` to ``folder`` (opset 17) and
    check each with ``onnx.checker`` (``check``; needs the ``onnx`` package)."""
    import warnings

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, net in nets._asdict().items():
        if net is None:
            continue
        shape, axes, outputs = _SPECS[name]
        if getattr(net, "has_orientation", False):
            outputs = [*outputs, "lean"]
        path = folder / ONNX_FILES[name]
        dynamic = {"pixels": axes}
        if name == "pnet":
            dynamic |= {"prob": {0: "batch", 1: "rows", 2: "cols"}, "box": {0: "batch", 2: "rows", 3: "cols"}}
        else:
            dynamic |= {o: {0: "batch"} for o in outputs}
        was_training = net.training
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(_PixelInput(net.cpu().eval()), (torch.rand(*shape) * 255,), str(path), input_names=["pixels"],
                              output_names=outputs, dynamic_axes=dynamic, opset_version=17, dynamo=False)
        net.train(was_training)
        _add_metadata(path, {"arch": getattr(net, "arch", name), "pose": "trained" if pose_available else "untrained"},
                      check)
        written.append(path)
    return written


def _add_metadata(path: Path, metadata: dict[str, str], check: bool) -> None:
    try:
        import onnx
    except ImportError:
        if check:
            raise ImportError("checking the exported ONNX files needs: pip install onnx") from None
        return
    model = onnx.load(str(path))
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    if check:
        onnx.checker.check_model(str(path))


class _Outputs(NamedTuple):
    """The last stage's graph outputs, what ``OnnxNet.features`` hands the cascade (rows select together)."""

    face_logits: torch.Tensor
    box: torch.Tensor
    landmarks: torch.Tensor
    sixd: torch.Tensor
    lean: torch.Tensor


class OnnxNet:
    """An ONNX Runtime session that the cascade calls like the torch network it was exported from: it is
    given MTCNN-normalised tensors and returns torch tensors (``FPNetOutput`` for the last stage)."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        from .weights import WeightsError

        ort = require_onnxruntime()
        path = Path(path)
        if not path.is_file():
            raise WeightsError(f"ONNX model not found: {path}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        # Idle pool threads sleep instead of spinning: the cascade's own torch/numpy steps run between the
        # sessions' calls, and three spinning pools would take the cores from them.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own error types for unreadable or invalid models
            raise WeightsError(f"{path} is not a usable ONNX model ({type(e).__name__}: {str(e).splitlines()[0]})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        self.path, self.arch = path, meta.get("arch", path.stem)
        self.pose_trained = meta.get("pose") == "trained"
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.has_rotation = "sixd" in self.outputs and self.arch not in ("onet", "pnet", "rnet")
        self.has_orientation = "lean" in self.outputs
        self.training = False

    def _run(self, x: torch.Tensor) -> list[torch.Tensor]:
        pixels = (x.detach().float() * 128.0 + 127.5).contiguous().cpu().numpy()  # the graph normalises again
        return [torch.from_numpy(o) for o in self.session.run(None, {"pixels": pixels})]

    def __call__(self, x: torch.Tensor):
        out = self._run(x)
        if len(out) == 1:  # the up/down check's logits
            return out[0]
        return FPNetOutput(*out[:4]) if len(out) >= 4 else tuple(out)

    def features(self, x: torch.Tensor) -> _Outputs:
        """The last stage's interface to the cascade (``ONet.features``): the graph runs whole, so its
        "features" are its outputs."""
        out = self._run(x)
        return _Outputs(*out[:4], out[4] if len(out) > 4 else out[0].new_zeros(len(out[0])))

    def detection(self, out: _Outputs) -> FPNetOutput:
        return FPNetOutput(*out[:4])

    def rotation_6d(self, out: _Outputs) -> torch.Tensor:
        return out.sixd

    def in_plane(self, out: _Outputs) -> torch.Tensor:
        return out.lean

    def eval(self) -> OnnxNet:
        return self


def load_onnx_cascade(folder: str | Path, threads: int | None = None) -> tuple[CascadeNets, bool]:
    """Sessions for ``pnet``, ``rnet``, ``fpnet`` and, where the folder has it, ``updown.onnx`` of ``folder``, and
    whether the pose is trained."""
    folder = Path(folder)
    nets = CascadeNets(*(OnnxNet(folder / ONNX_FILES[name], threads) for name in REQUIRED_NETS),
                       OnnxNet(folder / ONNX_FILES["updown"], threads) if (folder / ONNX_FILES["updown"]).is_file() else None)
    return nets, nets.fpnet.pose_trained and nets.fpnet.has_rotation
