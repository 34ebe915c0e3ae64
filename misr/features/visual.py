"""Visual: dlib's 68 facial landmarks per frame, head pose, and action-unit intensities from FACS geometry.

Per analysed frame (features.visual.frame_rate):
  face                  1 when a face was found (detected, or tracked since the last detection), else 0
  x0..x67, y0..y67      landmarks in a face frame: origin between the eyes, eyes level, inter-ocular
                        distance 1 (so position, scale and roll drop out)
  pose_yaw/pitch/roll   head pose in degrees (solvePnP against a generic 3D face)
  AU01_r ... AU45_r     action-unit intensities in [0, 5] from landmark geometry (below)
Frames without a face carry zeros. The detector (HOG, dlib) runs every `detect_every` frames, at a
scale that puts the face near its preferred size; in between, the landmark predictor follows the face
from the previous frame's landmarks, which is what makes hundreds of frames per second possible.

Action units: each is a distance or height measured in inter-ocular units, turned into an intensity
by (measure - neutral) / span * 5, clipped to [0, 5]. `neutral` is the value on relaxed faces
(measured here on the GRID speakers' frames, where the speakers hold a neutral expression), `span`
the change at which the AU counts as at full intensity. This approximates FACS intensities; it is no
substitute for a trained AU model (py-feat, the optional backend).
"""

from __future__ import annotations

import importlib.util
import math
import threading
from pathlib import Path
from typing import Any

import numpy as np

from misr.data.corpus import Clip
from misr.data.media import ClipError, read_video
from misr.features.base import Extractor

# (name, measure, neutral, span): measures are defined in `au_measures`
AU_TABLE = (
    ("AU01_r", "inner_brow_height", 0.33, 0.15),
    ("AU02_r", "outer_brow_height", 0.27, 0.15),
    ("AU04_r", "inner_brow_lowering", -0.33, 0.10),
    ("AU05_r", "eye_opening", 0.136, 0.08),
    ("AU06_r", "lower_lid_raise", -0.049, 0.05),
    ("AU09_r", "nose_shortening", -0.84, 0.12),
    ("AU12_r", "lip_corner_raise", -0.135, 0.35),
    ("AU15_r", "lip_corner_drop", 0.135, 0.35),
    ("AU17_r", "chin_raise", -0.557, 0.15),
    ("AU20_r", "mouth_width", 0.80, 0.30),
    ("AU25_r", "lips_apart", 0.03, 0.25),
    ("AU26_r", "jaw_drop", 1.15, 0.35),
    ("AU45_r", "eye_closure", -0.33, 0.15),
)
# a generic 3D face (arbitrary units) for the pose: nose tip, chin, eye corners, mouth corners
_MODEL_3D = np.array(
    [
        (0.0, 0.0, 0.0),
        (0.0, -330.0, -65.0),
        (-225.0, 170.0, -135.0),
        (225.0, 170.0, -135.0),
        (-150.0, -150.0, -125.0),
        (150.0, -150.0, -125.0),
    ]
)
_POSE_POINTS = [30, 8, 36, 45, 48, 54]


_local = threading.local()


def dlib_models():
    """The face detector and landmark predictor of this thread.

    dlib's detector is not thread-safe: shared between threads it reported faces in blank frames.
    Each thread of the extraction's thread pool therefore loads its own pair (once).
    """
    models = getattr(_local, "models", None)
    if models is None:
        models = _local.models = _load_dlib()
    return models


def _load_dlib():
    import dlib

    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        from misr.errors import MisrError

        raise MisrError("the landmark extractor needs the package face-recognition-models", hint="pip install face-recognition-models")
    folder = Path(list(spec.submodule_search_locations)[0]) / "models"
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(folder / "shape_predictor_68_face_landmarks.dat"))


def feature_names() -> list[str]:
    return [
        "face",
        *(f"x{i}" for i in range(68)),
        *(f"y{i}" for i in range(68)),
        "pose_yaw",
        "pose_pitch",
        "pose_roll",
        *(a[0] for a in AU_TABLE),
    ]


class LandmarkExtractor(Extractor):
    name = "landmarks"
    modality = "visual"
    version = "1"

    def __init__(self, features):
        super().__init__(features)
        self.cfg = features.visual

    def config(self) -> dict[str, Any]:
        return {"frame_rate": self.cfg.frame_rate, "detect_every": self.cfg.detect_every, "aus": [list(a) for a in AU_TABLE]}

    def feature_names(self) -> list[str]:
        return feature_names()

    def extract(self, clip: Clip) -> dict[str, Any]:
        video = read_video(clip.path, self.cfg.frame_rate)
        landmarks, found = track_landmarks(video.frames, self.cfg.detect_every)
        if not found.any():
            raise ClipError("visual", "NoFace", f"no face found in any of the {len(video.frames)} frames of {clip.path.name}")
        h, w = video.frames[0].shape
        frames = frame_features(landmarks, found, w, h)
        return {"clip_key": clip.key, "frames": frames, "frame_rate": video.fps, "face_ratio": float(found.mean())}


def track_landmarks(frames: list[np.ndarray], detect_every: int) -> tuple[np.ndarray, np.ndarray]:
    """68 landmarks [N, 68, 2] (pixels) and a found flag [N] for every frame."""
    import dlib

    detector, predictor = dlib_models()
    h, w = frames[0].shape
    scale = 0.5 if min(h, w) >= 240 else 1.0  # HOG finds faces of ~80-150 px best, and faster on small images
    out = np.zeros((len(frames), 68, 2), dtype=np.float32)
    found = np.zeros(len(frames), dtype=bool)
    previous: np.ndarray | None = None
    box: np.ndarray | None = None  # the last detector box (l, t, r, b), moved along with the face
    anchor: np.ndarray | None = None  # the landmarks' centre when that box was placed
    for i, gray in enumerate(frames):
        if i % detect_every == 0 or previous is None:
            small = gray if scale == 1.0 else gray[:: int(1 / scale), :: int(1 / scale)]
            faces = detector(np.ascontiguousarray(small), 0)
            if len(faces) == 0 and scale == 1.0 and min(h, w) < 200:
                faces = detector(gray, 1)  # small frames: look for smaller faces too
            if len(faces):
                best = max(faces, key=lambda r: r.area())
                box, anchor = np.array([best.left(), best.top(), best.right(), best.bottom()], dtype=np.float64) / scale, None
            elif i % detect_every == 0:
                box = previous = None  # the detector lost the face: stop following it
        if box is None:
            continue
        if anchor is not None and previous is not None:
            # follow: the detector's box (the shape predictor was trained on such boxes), moved with the face
            shift = previous.mean(axis=0) - anchor
            left, top, right, bottom = box + np.array([shift[0], shift[1], shift[0], shift[1]])
        else:
            left, top, right, bottom = box
        shape = predictor(gray, dlib.rectangle(int(round(left)), int(round(top)), int(round(right)), int(round(bottom))))
        pts = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
        if anchor is None:
            anchor = pts.mean(axis=0)
        out[i], found[i], previous = pts, True, pts
    return out, found


def normalise(landmarks: np.ndarray) -> np.ndarray:
    """[N, 68, 2] pixels -> face frame: origin between the eye centres, eyes level, inter-ocular distance 1."""
    left = landmarks[:, 36:42].mean(axis=1)
    right = landmarks[:, 42:48].mean(axis=1)
    centre = (left + right) / 2
    d = right - left
    iod = np.maximum(np.linalg.norm(d, axis=1), 1e-6)
    cos, sin = d[:, 0] / iod, d[:, 1] / iod
    rel = landmarks - centre[:, None, :]
    x = (rel[..., 0] * cos[:, None] + rel[..., 1] * sin[:, None]) / iod[:, None]
    y = (-rel[..., 0] * sin[:, None] + rel[..., 1] * cos[:, None]) / iod[:, None]
    return np.stack([x, y], axis=-1)  # y grows downwards, as in the image


def au_measures(p: np.ndarray) -> dict[str, np.ndarray]:
    """Geometric measures in inter-ocular units from normalised landmarks [N, 68, 2] (y downwards)."""
    y = p[..., 1]

    def dist(a: int, b: int) -> np.ndarray:
        return np.linalg.norm(p[:, a] - p[:, b], axis=1)

    inner_brow = (y[:, 39] + y[:, 42]) / 2 - (y[:, 21] + y[:, 22]) / 2
    eye_open = (dist(37, 41) + dist(38, 40) + dist(43, 47) + dist(44, 46)) / 4
    eye_width = (dist(36, 39) + dist(42, 45)) / 2
    corners_y = (y[:, 48] + y[:, 54]) / 2
    upper_lip_y = y[:, 51]  # the upper lip's centre barely moves when the jaw opens, unlike the lips' midline
    return {
        "inner_brow_height": inner_brow,
        "outer_brow_height": (y[:, 36] + y[:, 45]) / 2 - (y[:, 17] + y[:, 26]) / 2,
        "inner_brow_lowering": -inner_brow,
        "eye_opening": eye_open,
        "lower_lid_raise": -((y[:, 40] + y[:, 41] + y[:, 46] + y[:, 47]) / 4 - (y[:, 36] + y[:, 39] + y[:, 42] + y[:, 45]) / 4),
        "nose_shortening": -dist(27, 33),
        "lip_corner_raise": upper_lip_y - corners_y,
        "lip_corner_drop": corners_y - upper_lip_y,
        "chin_raise": -dist(57, 8),
        "mouth_width": dist(48, 54),
        "lips_apart": dist(62, 66),
        "jaw_drop": dist(33, 8),
        "eye_closure": -(eye_open / np.maximum(eye_width, 1e-6)),
    }


def action_units(normalised: np.ndarray) -> np.ndarray:
    m = au_measures(normalised)
    return np.stack([np.clip((m[measure] - neutral) / span * 5.0, 0.0, 5.0) for _, measure, neutral, span in AU_TABLE], axis=1)


def head_pose(landmarks: np.ndarray, width: int, height: int) -> np.ndarray:
    """Yaw, pitch, roll in degrees per frame from six landmarks (solvePnP, a pinhole camera guess)."""
    import cv2

    camera = np.array([[width, 0, width / 2], [0, width, height / 2], [0, 0, 1]], dtype=np.float64)
    out = np.zeros((len(landmarks), 3), dtype=np.float32)
    for i, pts in enumerate(landmarks):
        ok, rvec, _ = cv2.solvePnP(_MODEL_3D, pts[_POSE_POINTS].astype(np.float64), camera, None, flags=cv2.SOLVEPNP_ITERATIVE)
        if not ok:
            continue
        rot, _ = cv2.Rodrigues(rvec)
        sy = math.hypot(rot[0, 0], rot[1, 0])
        pitch = math.degrees(math.atan2(rot[2, 1], rot[2, 2]))
        yaw = math.degrees(math.atan2(-rot[2, 0], sy))
        roll = math.degrees(math.atan2(rot[1, 0], rot[0, 0]))
        # the generic model's y axis points up, the image's down: pitch comes out near +-180
        pitch = (pitch + 360) % 360 - 180
        out[i] = (yaw, pitch, roll)
    return out


def frame_features(landmarks: np.ndarray, found: np.ndarray, width: int, height: int) -> np.ndarray:
    n = len(landmarks)
    frames = np.zeros((n, 1 + 136 + 3 + len(AU_TABLE)), dtype=np.float32)
    if not found.any():
        return frames
    idx = np.nonzero(found)[0]
    norm = normalise(landmarks[idx])
    frames[idx, 0] = 1.0
    frames[idx, 1:69] = norm[..., 0]
    frames[idx, 69:137] = norm[..., 1]
    frames[idx, 137:140] = head_pose(landmarks[idx], width, height)
    frames[idx, 140:] = action_units(norm)
    return frames
