"""The ways FPNet is trained, kept as data: ``RECIPES["branch"]``, ``["grown"]``, ``["oriented"]``, ``["profiles"]``
and ``["thesis"]``.

The shipped FPNet takes four runs: ``python -m training.train --recipe branch`` trains the pose branch on
O-Net's features, ``--recipe grown --init BRANCH_BEST`` grows the branch by finer maps and trains on,
``--init GROWN_BEST`` (the default ``oriented`` recipe) adds an orientation head that learns, alone, how far a
face leans at any roll, then ``--recipe profiles --init ORIENTED_BEST`` trains the pose branch on with profiles
made from near-frontal faces (``training.profile_synthesis``) among its data. ``--recipe thesis`` is the thesis'
network. Nothing else about how a network learns
is a command-line flag: a new recipe is a new entry here.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

__all__ = ["Recipe", "RECIPES"]


@dataclass(frozen=True)
class Recipe:
    """How one FPNet is trained.

    Attributes:
        name: the key in ``RECIPES``.
        summary: one paragraph for the model card.
        arch: the last-stage architecture (``facepose.nets.ARCHITECTURES``): ``fpnet`` or ``fpnet_branch``.
        sizes: its sizes (``fpnet_branch``: ``pose_channels``, ``pose_hidden``, ``pose_early``).
        init: ``onet`` (MTCNN's O-Net weights, rotation part random), ``scratch`` (all random),
            ``grow`` (a trained ``fpnet_branch`` without early maps, given as ``train --init FILE``, grown to
            ``sizes``: its weights kept, the new maps joining at zero) or ``finetune`` (a trained
            ``fpnet_branch`` of the same sizes, ``train --init FILE``, trained on).
        train_detection: True: the whole network learns face score (cross-entropy on IoU labels, with
            ``mining``), box regression (L2) and rotation; False: O-Net stays frozen and only the rotation
            part learns, from the positives that carry a teacher rotation.
        rotation_loss: ``l2`` on the 6D vectors or ``geodesic`` (angle between rotation matrices).
        mining: ``middle60`` keeps the middle 60% of each batch by face loss (the thesis), ``none`` all.
        negatives_per_positive: negatives drawn per positive each epoch (outside and inside faces, 2:1).
        mirror: random horizontal mirroring with mirrored labels.
        jitter: crop shifts (6% of the side) and zooms (8%) times this (0: off); moves the face in the crop,
            so only where no box is learned.
        augment: share of crops given photometric augmentation and low resolution.
        turn: share of crops turned in the image plane by a uniform random angle (0-360 degrees), cut from
            the data set's context crops, their rotation label turned with them (``Rz(angle) R``); every
            crop is then cut from its context crop, jitter included. Only where no box is learned.
        proposals: with ``learn="orientation"``, the share of each batch's crops that are the crops the
            cascade really proposes on turned faces (``training.turned_proposals``: the data set's ``turned/``),
            beside its own crops turned (0: none).
        learn: what learns with O-Net frozen: ``rotation`` (the pose branch and rotation head, geodesic or L2
            loss) or ``orientation`` (only the orientation head, ``sizes["orient_hidden"]``: how far the face
            leans in its crop; the pose branch stays as ``--init`` gave it).
        orientation_loss: with ``learn="orientation"``, the loss on the lean's error: ``cosine`` (1 - cos of it)
            or ``angle`` (its absolute value in radians: a crop read upside down, 180 degrees off, is pulled
            back as hard as one read a little off, where 1 - cos has no slope) or ``von_mises`` (the negative log
            likelihood of the lean under a von Mises distribution whose natural parameter is the head's vector:
            its direction is the lean, its length how sure the head is; pulled back from upside down too).
        real_pose_max_yaw: with profiles made from near-frontal faces among the data, the photos' faces whose label
            turns this far (degrees of |yaw|) or further carry no pose in training, so the exact labels of the made
            profiles alone teach the pose there (0: every labelled face teaches).
        lean_weight: with ``learn="rotation"`` and O-Net frozen, beside the rotation loss this times ``train.lean_loss``:
            the error of the head's lean in the picture, weighted up at profiles, where pitch and roll measure it.
    """

    name: str
    summary: str
    arch: str
    sizes: dict[str, int] = field(default_factory=dict)
    init: str = "scratch"
    train_detection: bool = True
    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.01
    lr_decay: float = 0.83
    dropout: float = 0.25
    rotation_loss: str = "l2"
    mining: str = "middle60"
    negatives_per_positive: float = 1.5
    mirror: bool = True
    jitter: float = 0.0
    augment: float = 0.0
    turn: float = 0.0
    proposals: float = 0.0
    learn: str = "rotation"
    orientation_loss: str = "cosine"
    real_pose_max_yaw: float = 0.0
    lean_weight: float = 0.0

    def __post_init__(self) -> None:
        checks = [
            (self.arch in ("fpnet", "fpnet_branch"), f"arch must be fpnet or fpnet_branch, not {self.arch!r}"),
            (self.init in ("onet", "scratch", "grow", "finetune"),
             f"init must be onet, scratch, grow or finetune, not {self.init!r}"),
            (self.train_detection or self.init != "scratch", "a frozen O-Net needs its weights: init='onet'"),
            (self.init not in ("grow", "finetune") or self.arch == "fpnet_branch", "only the fpnet_branch grows or is fine-tuned"),
            (not (self.jitter and self.train_detection), "jitter moves the face in the crop: only with O-Net frozen"),
            (not (self.turn and self.train_detection), "turns move the face in the crop: only with O-Net frozen"),
            (0 <= self.turn <= 1, "turn is a share of the crops, between 0 and 1"),
            (0 <= self.proposals < 1, "proposals is a share of the crops, between 0 and 1"),
            (not self.proposals or self.learn == "orientation", "proposals teach the orientation head only"),
            (self.learn in ("rotation", "orientation"), f"learn must be rotation or orientation, not {self.learn!r}"),
            (self.learn == "rotation" or (self.sizes.get("orient_hidden") and not self.train_detection),
             "learning the orientation needs an orientation head (sizes orient_hidden) and O-Net frozen"),
            (self.rotation_loss in ("l2", "geodesic"), f"rotation_loss must be l2 or geodesic, not {self.rotation_loss!r}"),
            (self.orientation_loss in ("cosine", "angle", "von_mises"),
             f"orientation_loss must be cosine, angle or von_mises, not {self.orientation_loss!r}"),
            (0 <= self.real_pose_max_yaw <= 180, "real_pose_max_yaw is a |yaw| in degrees (0: off)"),
            (self.lean_weight >= 0 and (not self.lean_weight or (self.learn == "rotation" and not self.train_detection)),
             "lean_weight is a weight (0: off) for the pose part learning alone"),
            (self.mining in ("middle60", "none"), f"mining must be middle60 or none, not {self.mining!r}"),
            (self.epochs > 0 and self.batch_size > 0 and self.lr > 0, "epochs, batch_size and lr must be positive"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"recipe {self.name!r}: {message}")

    def replace(self, **changes) -> Recipe:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_BRANCH = ("O-Net frozen: its convolutions, dense layer and score, box and landmark heads keep MTCNN's "
           "weights. Trained: the pose branch (a 2x2 convolution with 64 maps over O-Net's third pooling, 96 dense "
           "units, PReLU) and the rotation head, which reads those and O-Net's 256 dense units. 20 epochs of Adam "
           "(lr 0.001 x 0.83 per epoch, batch 64, dropout 0.1; the best epoch by validation pose error against the "
           "teacher is kept) on the positives that carry a teacher rotation, geodesic loss to their label (the rotation "
           "mean of flip-averaged WHENet and MediaPipe Face Mesh where Face Mesh finds the face, WHENet "
           "elsewhere); random mirroring, crop jitter (shifts up to 12% of the side, zooms +-16%: "
           "R-Net's boxes vary around a face), photometric augmentation and low resolution on 30% of the crops.")

_GROWN = ("the branch grows finer maps: a 3x3 convolution with 48 maps over O-Net's second pooling (10x10, PReLU, "
          "2x2 max pooling) stacked on the third pooling's maps where the branch's 2x2 convolution reads them, "
          "joining at zero weight so training starts from the first run's network; 16 more epochs of the same losses "
          "and augmentation (lr 0.0005 x 0.83 per epoch, best epoch by validation pose error kept).")

RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe(
        name="branch",
        summary=_BRANCH,
        arch="fpnet_branch", sizes={"pose_channels": 64, "pose_hidden": 96}, init="onet", train_detection=False,
        epochs=20, lr=0.001, dropout=0.1, rotation_loss="geodesic", mining="none", negatives_per_positive=0.0,
        jitter=2.0, augment=0.3,
    ),
    Recipe(
        name="grown",
        summary="Two runs. First the `branch` recipe: " + _BRANCH + " Then " + _GROWN,
        arch="fpnet_branch", sizes={"pose_channels": 64, "pose_hidden": 96, "pose_early": 48}, init="grow",
        train_detection=False, epochs=16, lr=0.0005, dropout=0.1, rotation_loss="geodesic", mining="none",
        negatives_per_positive=0.0, jitter=2.0, augment=0.3,
    ),
    Recipe(
        name="oriented",
        summary="Three runs: the `branch` and `grown` recipes (" + _GROWN + "), then an orientation head joins the network "
        "and learns alone how far a face leans in its crop, at any roll: a 3x3 convolution with 32 maps over O-Net's "
        "second pooling (pooled to 4x4) stacked on the third pooling's maps, a 2x2 convolution with 48 maps, 64 "
        "dense units and a 2-vector (cos, sin of the lean) read with O-Net's 256 units. O-Net and the pose branch "
        "stay as they were. 20 epochs of Adam (lr 0.001 x 0.85 per epoch, batch 64) on the same faces, every crop cut "
        "from a context crop 1.5 times its box, half of them turned in the image plane by a uniform random angle, "
        "and as many again of the crops the cascade really proposes on the training faces turned by random angles "
        "(`training.turned_proposals`: P-Net and R-Net box a turned face further off it than an upright one), loss "
        "the absolute error of the lean in radians (the label's lean turned alike; 1 - cos of it leaves a crop read "
        "upside down with no slope to come back); the best epoch by the mean of the validation "
        "lean errors on turned crops and on proposed crops is kept. At inference a face leaning more than 20 degrees "
        "is cut again turned upright, and the pose branch reads it there.",
        arch="fpnet_branch", sizes={"pose_channels": 64, "pose_hidden": 96, "pose_early": 48, "orient_hidden": 64},
        init="finetune", train_detection=False, epochs=20, lr=0.001, lr_decay=0.85, dropout=0.1, rotation_loss="geodesic",
        mining="none", negatives_per_positive=0.0, jitter=2.0, augment=0.3, turn=0.5, proposals=0.5,
        learn="orientation", orientation_loss="angle",
    ),
    Recipe(
        name="profiles",
        summary="Four runs: the `oriented` recipe's three, then the pose branch and rotation head train on (O-Net and "
        "the orientation head stay as they were) on the same faces plus profiles made from near-frontal ones "
        "(`training.profile_synthesis`: each AFLW face within 30 degrees of frontal, labelled by both teachers, turned "
        "about the camera's vertical axis to 45-95 degrees of yaw by warping its picture along MediaPipe Face Mesh's 3D "
        "points, the crops R-Net proposes on it labelled with the exact turned rotation `Ry(-d) R`); 8 epochs of Adam "
        "(lr 0.0003 x 0.83 per epoch, batch 64), the same losses and augmentation, the best epoch by validation pose "
        "error kept.",
        arch="fpnet_branch", sizes={"pose_channels": 64, "pose_hidden": 96, "pose_early": 48, "orient_hidden": 64},
        init="finetune", train_detection=False, epochs=8, lr=0.0003, dropout=0.1, rotation_loss="geodesic",
        mining="none", negatives_per_positive=0.0, jitter=2.0, augment=0.3,
    ),
    Recipe(
        name="thesis",
        summary="The thesis' own: the whole network (O-Net with the rotation as a fourth output of its last "
        "layer) trained from random weights with face cross-entropy on IoU labels, box and rotation L2 (on the "
        "6D vectors), middle-60% sample mining, Adam lr 0.01 x 0.83 per epoch, batch 64, 30 epochs, dropout "
        "0.25, random mirroring.",
        arch="fpnet",
    ),
)}
