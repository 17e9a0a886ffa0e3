"""``FacePoseTracker``: faces on video, each with a stable ``track_id``, followed from frame to frame.

New faces are searched for once every ``every`` frames: the search is spread over the cycle, P-Net scanning
a third of the pyramid's pixels on each of three frames (``cascade.pyramid_part``: the largest level, the
next, the rest), so no frame pays for a whole search, and the candidates on faces already followed go no
further than P-Net or R-Net. The first frame gets the whole cascade; while no face is known after it, a part
of the search runs on every ``IDLE_EVERY``-th frame (a face coming into view is found within nine frames, under a
third of a second at 30 frames a second); when a face followed for a while is lost, the search starts again at once, a
part a frame.

On every frame, each known face is refined from where it was: its last box, moved half its last step on,
goes through FPNet alone (``FacePoseDetector.follow``: all faces in one batch, no pyramid, no R-Net, and
no NMS between faces, so a face keeps its id when another crosses it), its crop cut turned by the face's last
in-plane angle where it leans (``cascade.UPRIGHT_FOLLOW``), so FPNet sees it upright (PCN's idea) and a head
that rolls keeps its track. While that window moves less than ``HOLD`` of its side, the crop is cut where it
was: a still head is cut from the same pixels, so its pose does not jitter with its box. A face whose crop
FPNet no longer accepts is lost, and its track ends. The flip average of the pose (the crop and its mirror
image) runs its mirrored pass on one frame in ``MIRROR_EVERY`` (and on every frame a face is cut by the frame's
edge); the frames between correct the crop's rotation by what the mirrored pass changed last (``cascade.follow``'s mirror corrections).

A new face is reported at once when its detection is sure (``SURE_SCORE``); a less sure one only once it has
been followed ``CONFIRM_FRAMES`` frames with a mean score of ``CONFIRM_SCORE`` or more, and otherwise
dropped: a false face that MTCNN finds now and then (a pattern on equipment) scores lower on the next frames
than a face does. Boxes, landmarks and rotations are smoothed by One Euro filters (``smoothing``), the
rotation as a rotation.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import torch

from .arrays import to_numpy
from .boxes import box_overlap, square
from .cascade import KNOWN_IOU, Detections
from .detector import Face, FacePoseDetector
from .image import ImageInput
from .rotation import in_plane_angle, matrix_to_euler
from .smoothing import OneEuro, OneEuroRotation

__all__ = ["TrackedFace", "FacePoseTracker"]

MIN_STEP_IOU = 0.4  # a followed box must overlap its last box this much (faces do not jump between frames)
REFOLLOW_FRAMES = 10  # a face lost this many frames ago or less is still followed from where its motion takes it
SEARCH_PARTS = 3  # a search for new faces is spread over this many frames of each cycle
REVIVE_IOU = 0.3  # a new detection takes over a recently lost track it overlaps this much
RESTART_AGE = 10  # a face followed this many frames and lost starts the search again at once
VELOCITY_DAMPING = 0.5  # the next box is guessed half a step ahead: a full step overshoots when the box jitters
# the velocity is a running mean of the box's steps (each weighted this much less than the one after): a raw step
# swings the next window with the box's jitter, and a face cut by the frame's edge then rocks from frame to frame
VELOCITY_SMOOTHING = 0.5
HOLD = 0.05  # a followed face's crop is cut where it was while its window moves less than this share of its side
# the mirrored pass of the flip average runs on one frame in this many (and on a face's first frame followed); the
# frames between correct the crop's rotation by what it changed last (``cascade.follow``'s mirror corrections)
MIRROR_EVERY = 3
IDLE_EVERY = 3  # while no face is known, a part of the search for new faces runs on one frame in this many
SURE_SCORE = 0.99  # a new face detected this surely is reported at once
CONFIRM_FRAMES, CONFIRM_SCORE = 3, 0.95  # a less sure one, once followed this many frames with this mean score


def _numpy(d: Detections) -> Detections:
    """Detections as numpy arrays: a tracker works on a few numbers per face."""
    return Detections(*(to_numpy(t) for t in (d.boxes, d.scores, d.landmarks, d.rotations)))


def _face(d: Detections, k: int) -> tuple:
    """The ``k``-th face of numpy ``Detections``: ``(box, score, landmarks, rotation or None)``."""
    return d.boxes[k], d.scores[k], d.landmarks[k], d.rotations[k] if d.rotations.size else None


@dataclass
class TrackedFace(Face):
    """A ``Face`` on a video frame, with the id of the track it belongs to."""

    track_id: int = -1

    def to_dict(self) -> dict:
        return {"track_id": self.track_id, **super().to_dict()}


@dataclass
class _Track:
    track_id: int  # -1 until it is confirmed
    box: np.ndarray  # raw (unsmoothed) box of the last frame
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))
    window: np.ndarray | None = None  # the square window its crop was cut from on the last frame
    first_scores: list[float] = field(default_factory=list)  # its scores until it is confirmed
    confirmed: bool = False  # reported (a sure detection, or followed long enough with a high enough score)
    score: float = 0.0
    angle: float = 0.0  # the face's last in-plane angle (degrees): its crops are cut turned by it (beyond 10)
    correction: np.ndarray | None = None  # its last mirror correction (3, 3), float32
    missed: int = 0  # frames since it was last seen (a lost track is still looked for where it should be now)
    age: int = 0  # frames it has been reported
    box_filter: OneEuro = field(default_factory=lambda: OneEuro(min_cutoff=1.0, beta=0.02))
    marks_filter: OneEuro = field(default_factory=lambda: OneEuro(min_cutoff=1.0, beta=0.02))
    # a still head smoothed at 0.5 Hz; a turn raises the cutoff within a frame (its speed followed at 5 Hz)
    rotation_filter: OneEuroRotation = field(
        default_factory=lambda: OneEuroRotation(min_cutoff=0.5, beta=2.0, d_cutoff=5.0))

    @property
    def rejected(self) -> bool:
        """Followed ``CONFIRM_FRAMES`` frames and never confirmed: its track ends."""
        return not self.confirmed and len(self.first_scores) >= CONFIRM_FRAMES


class FacePoseTracker:
    """Follows faces through a video: ``update(frame, timestamp) -> list[TrackedFace]``.

    It uses the detector's public steps only: ``prepare`` a frame, ``detections`` (the whole cascade) and
    ``follow`` (known faces through FPNet alone, each cut turned by its last in-plane angle beyond 10 degrees). With the
    detector's ``any_rotation``, the full detections search every quarter turn, so a face is found at any roll.

    Args:
        detector: the detector whose networks and settings are used (default: the packaged one).
        every: search for new faces once in every this many frames (spread over three of them; again at once when a
            face followed for a while is lost; the whole cascade on the first frame, a part on every third frame
            while none is known): at 30 frames a second, the default finds a face that comes into view beside one
            already followed within a second.
        smooth: One Euro smoothing of boxes, landmarks and rotation (default on).
        fps: the frame rate assumed for frames given without a timestamp (frame ``n`` is at ``n / fps`` s), so
            that smoothing does not depend on how fast the machine runs.
        max_faces: follow at most this many faces (the best detections first), and search for new ones only while
            fewer are followed, as MediaPipe Face Mesh's ``max_num_faces``: a webcam app for one user sets 1 and
            pays for no search while its face is followed. ``None`` (default): every face, searched for always.
    """

    def __init__(self, detector: FacePoseDetector | None = None, every: int = 30, smooth: bool = True,
                 fps: float = 30.0, max_faces: int | None = None) -> None:
        if every < 1:
            raise ValueError(f"every must be at least 1, got {every}")
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        if max_faces is not None and max_faces < 1:
            raise ValueError(f"max_faces must be at least 1 (or None for every face), got {max_faces}")
        self.detector = detector or FacePoseDetector()
        self.every, self.smooth, self.fps, self.max_faces = every, smooth, fps, max_faces
        self.reset()

    def reset(self) -> None:
        """Forget every track (a new video)."""
        self.tracks: list[_Track] = []
        self.lost: list[tuple[int, _Track]] = []  # (frame lost, track): a face found again near it keeps its id
        self.frame_index = 0
        self._ids = itertools.count(1)
        self._last_time: float | None = None
        self._pending: list[int] = []  # search parts still to run, one a frame (a search restarted at once)

    def update(self, frame: ImageInput, timestamp: float | None = None) -> list[TrackedFace]:
        """The faces on the next frame (a path, PIL image or HxWx3 uint8 RGB array), best track first.
        ``timestamp``: the frame's time in seconds (a video's presentation time, a camera's capture time);
        default ``frame index / fps``."""
        image = self.detector.prepare(frame)
        now = timestamp if timestamp is not None else self.frame_index / self.fps
        dt = 0.0 if self._last_time is None else now - self._last_time
        self._last_time = now
        # faces followed for a while (3 frames or more) and lost in the last REFOLLOW_FRAMES are followed too, from
        # where their motion takes them: one that FPNet let slip for a frame or two (a small face, a fast
        # turn) comes back with its id; a one-frame flicker (a false face at a full detection) is not kept alive
        recent = [(k, t) for k, t in self.lost if self.frame_index - k <= REFOLLOW_FRAMES and t.age >= 3]
        again = {id(t) for _, t in recent}
        self.lost = [(k, t) for k, t in self.lost if self.frame_index - k <= 3 * REFOLLOW_FRAMES and id(t) not in again]
        lost_at, live = {id(t): k for k, t in recent}, len(self.tracks)
        self.tracks += [t for _, t in recent]
        found = self._follow(image)  # track index -> (box, score, landmarks, rotation)
        found = {i: f for i, f in found.items() if i < live or not self._duplicate(f[0], found, live)}
        if self.max_faces is not None:  # the faces followed longest first (live tracks, then lost ones found again)
            found = {i: found[i] for i in sorted(found)[:self.max_faces]}
        # a face that had been followed for a while (RESTART_AGE frames) and is gone: the search starts again at
        # once (one part a frame, beside the following of the lost face from where its motion takes it); one that
        # flickers at the threshold (a false face most often) waits for the next periodic search
        if any(t.age >= RESTART_AGE for i, t in enumerate(self.tracks[:live]) if i not in found):
            self._pending = list(range(self._parts()))
        for i, t in enumerate(self.tracks):
            if i not in found:
                t.missed += 1
                self.lost.append((lost_at.get(id(t), self.frame_index), t))
        self.tracks = [t for i, t in enumerate(self.tracks) if i in found]
        found = {k: found[i] for k, i in enumerate(sorted(found))}
        if self.max_faces is not None and len(found) >= self.max_faces:
            self._pending = []  # as many faces as wanted: no search
        elif self.frame_index == 0:  # the first frame: the whole cascade, every face at once
            found = self._detect(image, found)
        else:
            idle = not self.tracks  # no face known (all gone): a part of a search on every IDLE_EVERY-th frame
            if idle and not self._pending:
                self._pending = list(range(self._parts()))
            if (not idle or self.frame_index % IDLE_EVERY == 0) and (part := self._search_part()) is not None:
                found = self._detect(image, found, part)
        self.frame_index += 1
        faces = self._report(found, dt)
        self.tracks = [t for t in self.tracks if not t.rejected]
        return faces

    def _parts(self) -> int:
        """Into how many frames a search is spread (1 with ``any_rotation``: its search runs whole)."""
        return 1 if self.detector.config.any_rotation else min(SEARCH_PARTS, self.every)

    def _search_part(self) -> tuple[int, int] | None:
        """Which part of the search for new faces this frame makes: ``(k, n)`` (``detector.detections``'s
        ``part``), ``None`` for none. A search started again (a face lost) runs first, a part a frame; otherwise
        once a cycle, its parts spread over the cycle."""
        parts = self._parts()
        if self._pending:
            return self._pending.pop(0), parts
        at = [k * self.every // parts for k in range(parts)]
        offset = self.frame_index % self.every
        return (at.index(offset), parts) if offset in at else None

    def _follow(self, image: torch.Tensor) -> dict[int, tuple]:
        """Every known face refined from its predicted box (``detector.follow``); a face whose box jumped
        away from its last one is lost."""
        if not self.tracks:
            return {}
        last = np.stack([t.box + t.missed * t.velocity for t in self.tracks]).astype(np.float32)
        guess = square(np.stack([t.box + (t.missed + VELOCITY_DAMPING) * t.velocity for t in self.tracks]).astype(np.float32))
        for k, t in enumerate(self.tracks):  # a window that moved less than HOLD of its side is cut where it was
            g = guess[k]
            if t.window is not None and not t.missed and np.abs(g - t.window).max() < HOLD * (g[2] - g[0]):
                guess[k] = t.window
            t.window = guess[k].copy()
        # a leaning face is cut turned by its last in-plane angle, so FPNet sees it upright (PCN's idea): it
        # is read upright in one crop, without a detection's second, turned crop (``cascade.upright_pose``)
        turn = self.detector.config.any_rotation or self.detector.pose_available
        angles = torch.tensor([t.angle for t in self.tracks], dtype=torch.float32) if turn else None
        # a face cut by the frame's edge changes in its crop from frame to frame: its correction would be stale
        height, width = image.shape[-2:]
        cut = bool(((guess[:, :2] < 0) | (guess[:, 2:] > (width, height))).any())
        mirror = cut or self.frame_index % MIRROR_EVERY == 0 or any(t.correction is None for t in self.tracks)
        corrections = None if mirror else torch.from_numpy(np.stack([t.correction for t in self.tracks]))
        index, d, measured = self.detector.follow(image, torch.from_numpy(guess), angles, corrections)
        index, d = index.cpu().numpy(), _numpy(d)
        for k, i in enumerate(index if measured is not None else []):
            self.tracks[i].correction = to_numpy(measured[k])
        stays = box_overlap(d.boxes, last[index]).diagonal() > MIN_STEP_IOU
        return {int(index[k]): _face(d, k) for k in np.nonzero(stays)[0]}

    @staticmethod
    def _duplicate(box: np.ndarray, found: dict[int, tuple], live: int) -> bool:
        """Whether a lost track followed again landed on a face that a live track holds."""
        return any(box_overlap(box[None], f[0][None])[0, 0] > 0.5 for i, f in found.items() if i < live)

    def _detect(self, image: torch.Tensor, found: dict[int, tuple], part: tuple[int, int] | None = None) -> dict[int, tuple]:
        """The cascade (P-Net on the ``part`` of the pyramid, or all of it), its candidates on followed faces
        dropped early: detections that overlap a followed face update nothing (the followed box stays, so ids do
        not jump); the others start new tracks."""
        known = np.stack([f[0] for f in found.values()]).astype(np.float32) if found else None
        d = _numpy(self.detector.detections(image, part, None if known is None else torch.from_numpy(known)))
        overlap = box_overlap(d.boxes, known).max(1) if known is not None and len(d.boxes) else None
        for k in range(len(d.boxes)):  # best first
            if overlap is not None and overlap[k] > KNOWN_IOU:
                continue
            if self.max_faces is not None and len(found) >= self.max_faces:
                break
            self.tracks.append(self._revive(d.boxes[k]) or _Track(-1, d.boxes[k].astype(np.float64)))
            found[len(self.tracks) - 1] = _face(d, k)
        return found

    def _revive(self, box: np.ndarray) -> _Track | None:
        """The recently lost track whose predicted box this detection overlaps most (IoU above 0.3), if any:
        a face that FPNet let slip for a frame keeps its id."""
        if not self.lost:
            return None
        where = lambda moved: np.stack([t.box + moved * t.velocity * (self.frame_index - k)  # noqa: E731
                                        for k, t in self.lost]).astype(box.dtype)
        iou = np.maximum(box_overlap(box[None], where(0))[0], box_overlap(box[None], where(1))[0])
        best = int(iou.argmax())
        if iou[best] <= REVIVE_IOU:
            return None
        _, track = self.lost.pop(best)
        track.score = 0.0  # no velocity across the gap
        return track

    def _confirm(self, track: _Track) -> bool:
        """Whether a track is reported: a sure detection at once, a less sure one once followed ``CONFIRM_FRAMES``
        frames with a mean score of ``CONFIRM_SCORE`` or more (its id is given then); one that fails is rejected."""
        if not track.confirmed:
            track.first_scores.append(track.score)
            sure = track.first_scores[0] >= SURE_SCORE
            if sure or len(track.first_scores) >= CONFIRM_FRAMES:
                track.confirmed = sure or float(np.mean(track.first_scores)) >= CONFIRM_SCORE
            if track.confirmed:
                track.track_id = next(self._ids)
        return track.confirmed

    def _report(self, found: dict[int, tuple], dt: float) -> list[TrackedFace]:
        faces = []
        for i, (box, score, marks, rotation) in found.items():
            track = self.tracks[i]
            box = box.astype(np.float64)
            if track.score:  # a running mean of its steps (none across a gap: ``_revive``)
                step = (box - track.box) / (track.missed + 1)
                track.velocity = VELOCITY_SMOOTHING * track.velocity + (1 - VELOCITY_SMOOTHING) * step
            else:
                track.velocity = np.zeros(4)
            track.box, track.score, track.age, track.missed = box, float(score), track.age + 1, 0
            marks = marks.astype(np.float64).reshape(-1)
            r = None if rotation is None or not self.detector.pose_available else rotation.astype(np.float64)
            if r is not None:
                track.angle = float(in_plane_angle(r))
            if not self._confirm(track):
                continue
            if self.smooth:
                box, marks = track.box_filter(box, dt), track.marks_filter(marks, dt)
                r = track.rotation_filter(r, dt) if r is not None else None
            angles = matrix_to_euler(r).tolist() if r is not None else [None] * 3
            faces.append(TrackedFace(tuple(box.tolist()), float(score), [tuple(p) for p in marks.reshape(5, 2).tolist()],
                                     r.tolist() if r is not None else None, *angles, track_id=track.track_id))
        return sorted(faces, key=lambda f: f.track_id)
