"""Visual: dlib's 68 facial landmarks per frame, head pose, and action-unit intensities from FACS geometry.

Per analysed frame (features.visual.frame_rate):
  face                  1 when a face was found (detected, or tracked since the last detection), else 0
  x0..x67, y0..y67      landmarks in a face frame: origin between the eyes, eyes level, inter-ocular
                        distance 1 (so position, scale and roll drop out)
  pose_yaw/pitch/roll   head pose in degrees, 0 when upright and facing the camera (`head_pose`)
  AU01_r ... AU45_r     action-unit activations from landmark geometry (below), not clipped
Per clip, beside the frames: `au_quantiles`, the quantiles of each activation over the clip's face
frames (`QUANTILES`), and for the first clip of each video `face_descriptor`, the
person's face descriptor (dlib's face recognition network); `misr.features.person` turns them into a
neutral baseline per person.
Frames without a face carry zeros, as do the frame times before the video's first frame (frame k
is time k / frame_rate on the clip's timeline, shared with the audio features). Frames stream from
the decoder in bounded chunks (`VideoStream`), sampled at the frame rate by their time stamps,
through `FaceTracker`: dlib's HOG detector finds the face and checks it every `detect_every` frames;
in between, the landmark predictor follows it.

Action units (`misr.features.facs`): activations from landmark geometry against a generic neutral face,
stored unclipped; a model sees them clipped to [0, 5] (raw) or relative to the person's own neutral
level (`misr.features.person`): faces differ, and a generic neutral leaves one speaker's brows at the
ceiling on every frame. This approximates FACS intensities; it is no substitute for a trained AU model
(py-feat, the optional backend).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from misr.data.corpus import Clip
from misr.data.media import ClipError, VideoStream
from misr.features.base import Extractor
from misr.features.facs import AU_TABLE, QUANTILES, action_units
from misr.shipped import dlib_models, face_recognition_model

# A generic adult face for the head pose, in millimetres from the nose tip, in the camera's axes (x to
# the image's right, y down, z away from the camera), so a face looking into the camera has rotation 0.
# Only points that stay put when the jaw drops or the mouth smiles: the eye corners and the nose's
# bridge, tip and base (approximate anthropometric averages: outer canthi ~90 mm apart, inner ~32 mm).
_POSE_POINTS = [27, 30, 33, 36, 39, 42, 45]
_MODEL_3D = np.array(
    [
        (0.0, -48.0, 24.0),  # 27 nose bridge, between the eyes
        (0.0, 0.0, 0.0),  # 30 nose tip
        (0.0, 12.0, 16.0),  # 33 nose base
        (-45.0, -38.0, 38.0),  # 36 outer corner of the eye on the image's left
        (-16.0, -38.0, 26.0),  # 39 its inner corner
        (16.0, -38.0, 26.0),  # 42
        (45.0, -38.0, 38.0),  # 45
    ]
)
_OUTER_EYES_MM = 90.0


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
    version = "6"  # 3: head pose from rigid points (no flips); 4: the timeline, one person per clip;
    # 5: unclipped activations, lip corners against the nose base, per-clip quantiles and face descriptor;
    # 6: frames turned upright by the file's display matrix (phone video) before any face analysis

    def __init__(self, features):
        super().__init__(features)
        self.cfg = features.visual

    def config(self) -> dict[str, Any]:
        return {"frame_rate": self.cfg.frame_rate, "detect_every": self.cfg.detect_every, "aus": [list(a) for a in AU_TABLE]}

    def feature_names(self) -> list[str]:
        return feature_names()

    def extract(self, clip: Clip) -> dict[str, Any]:
        # frames stream through the tracker and the feature computation a chunk at a time
        parts, n_frames = [], 0
        with VideoStream(clip.path, self.cfg.frame_rate, max_gap=self.settings.max_gap_seconds) as video:
            tracker = FaceTracker(self.cfg.detect_every)
            for chunk in video.chunks():
                landmarks, found = tracker.track(chunk)
                parts.append(frame_features(landmarks, found, chunk.shape[2], chunk.shape[1]))
                n_frames += len(chunk)
            fps = video.fps
            leading, rotation = video.leading, video.rotation
            identity_changes = tracker.identity_changes
            # one descriptor per video is enough to tell which videos show one person (~0.1 s a face)
            descriptor = tracker.descriptor() if clip.first_in_video else None
        # output times before the video's first frame (it starts after the audio) have no picture: face 0
        frames = np.concatenate([np.zeros((leading, parts[0].shape[1]), np.float32), *parts])
        if not frames[:, 0].any():
            raise ClipError("visual", "NoFace", f"no face found in any of the {n_frames} frames of {clip.path.name}")
        return {
            "clip_key": clip.key,
            "frames": frames,
            "frame_rate": fps,
            "face_ratio": float(frames[:, 0].mean()),
            "identity_changes": identity_changes,
            "rotation": rotation,
            "au_quantiles": au_quantiles(frames),
            "face_descriptor": descriptor,
        }


# The tracker's tolerances, in units of the face box's width (the detector's box, about the eyebrows-to-chin square).
_DETECT_SIZE = 80.0  # px: the face size at which the detector is run when it looks near a known face
_SEARCH_MARGIN = 0.3  # the neighbourhood searched around a tracked face
_MAX_JUMP = 0.35  # the landmarks' centre may move this much between analysed frames
_EYE_SPAN = (0.22, 0.7)  # inter-ocular distance within this range of the box width
_MIN_OVERLAP = 0.3  # IoU for a detection to be the tracked face
_MIN_SIMILARITY = 0.6  # a followed face's picture correlates at least this well with the last checked one
_CONFIRM_THRESHOLD = -0.6  # dlib HOG score that still confirms a tracked face (detections count from 0)
# Face-descriptor distances (dlib's network, on the luma picture). dlib calls faces under 0.6 one person;
# on video the same person turned, backlit or in glasses reads up to 0.73, and small faces are noisy, so
# 0.6-0.8 is uncertain (taken, counted as a possible identity change); over 0.8 is another person (declined).
_SAME_PERSON, _OTHER_PERSON = 0.6, 0.8
# A face found within this many frames of losing the person, at another size (beyond this ratio; the
# detector's boxes come in steps of ~1.2), is someone else unless the descriptor is sure: a face does not
# shrink or grow that much in a second. Position is no such clue (a hand-held camera moves the same
# person across the picture: a rule on it declined 60 of the selfie clip's 224 face frames), nor is an
# uncertain match alone (declining those soon after a loss cost the selfie 72 face frames).
_RECENT_FRAMES, _SIZE_RATIO = 25, 1.4


class FaceTracker:
    """Follows one face through a stream of grayscale frames: 68 landmarks per frame, or none.

    Detection (dlib HOG) finds the face; between detections the landmark predictor follows it from the
    previous frame, which is what makes hundreds of frames per second possible. The track is kept honest:
      - a miss of the fast detector (reduced scale) is retried at full resolution, then upsampled for small faces;
      - every `detect_every` frames the detector looks again near the tracked face; a miss there does not end
        the track while a relaxed detector threshold still sees a face at that place (partly hidden or turned
        faces score just below dlib's default);
      - a track whose landmarks stop looking like a face (eyes too close or far for the box, wrong vertical
        order of eyes, nose, mouth and chin, mostly outside the frame), that jumps, or whose picture stops
        correlating with the face's picture at the last check (a cut, an occluder) is re-detected at once;
      - with several faces, the largest and most central is taken at the start, then the one overlapping the track.
    One person per clip: a face found elsewhere than where the person was last seen (after a loss, a cut,
    or a missed check) is compared with the clip's first face by dlib's face descriptor. Another
    person's face is declined (those frames have no face) and followed by position so that it is not
    checked again, as is an uncertain match of another size soon after the person was lost; any other
    uncertain match is taken and counted in `identity_changes` (a possible change of person, for the
    store). The descriptor (~0.1 s a face on one core) is computed only at such moments,
    never while the track holds.
    A frame is reported with a face only when a detection found or confirmed it at the last check.
    """

    def __init__(self, detect_every: int):
        self.detect_every = max(1, int(detect_every))
        self.detector, self.predictor = dlib_models()
        self.box: np.ndarray | None = None  # the detector's box (left, top, right, bottom) where the track was last (re)placed
        self.anchor: np.ndarray | None = None  # the landmarks' centre when `box` was placed
        self.previous: np.ndarray | None = None  # the last frame's landmarks
        self.patch: np.ndarray | None = None  # the face's picture at the last check, for `_similarity`
        self.since_check = 0
        self.since_lost = 0
        self.last_box: np.ndarray | None = None  # where the person was last seen (kept while the track is lost)
        self.reference: tuple[np.ndarray, np.ndarray] | None = None  # (picture, box) of the person's first detection
        self.identity: np.ndarray | None = None  # its face descriptor, computed when first needed
        self.declined: list[tuple[np.ndarray, float]] = []  # other people's faces in view: box, descriptor distance
        self.identity_changes = 0  # faces taken elsewhere that the descriptor did not confirm as this person
        self.since_seen = 0  # frames since the person was last found

    def track(self, frames: np.ndarray | list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """68 landmarks [N, 68, 2] (pixels) and a found flag [N] for a run of consecutive frames."""
        out = np.zeros((len(frames), 68, 2), dtype=np.float32)
        found = np.zeros(len(frames), dtype=bool)
        for i, gray in enumerate(frames):
            pts = self.update(np.ascontiguousarray(gray))
            if pts is not None:
                out[i], found[i] = pts, True
        return out, found

    def update(self, gray: np.ndarray) -> np.ndarray | None:
        pts = None
        if self.previous is not None:
            pts = self._follow(gray)
            if not self._plausible(pts, gray.shape, self.box, moved_from=self.previous):
                pts = None  # drift: look again now
            elif _similarity(self.patch, _patch(gray, self._current_box(pts))) < _MIN_SIMILARITY:
                pts = None  # the picture at the face changed (a cut, an occluder): look again now
            self.since_check += 1
        if pts is None or self.since_check >= self.detect_every:
            pts = self._check(gray, pts)
            self.since_check = 0
        self.previous = pts
        self.since_seen = 0 if pts is not None else self.since_seen + 1
        return pts

    def _check(self, gray: np.ndarray, followed: np.ndarray | None) -> np.ndarray | None:
        """A detection near the track (or anywhere, without one); the track's new landmarks or None."""
        if self.box is not None:
            box = self._detect_near(gray, self._current_box(followed), 0.0)
            if box is None and followed is not None:
                box = self._detect_near(gray, self._current_box(followed), _CONFIRM_THRESHOLD)
            if box is None:
                box = self._pick(self._detect_everywhere(gray, thorough=True), gray)
        else:
            self.since_lost += 1
            box = self._pick(self._detect_everywhere(gray, thorough=(self.since_lost - 1) % self.detect_every == 0), gray)
        if box is None:
            self.box = self.anchor = None
            return None
        self.since_lost = 0
        if followed is not None and _iou(box, self._current_box(followed)) >= _MIN_OVERLAP:
            self.box, self.anchor = box, followed.mean(axis=0)  # confirmed where it was followed: no new landmarks needed
            self.patch, self.last_box = _patch(gray, box), box
            return followed
        pts = self._landmarks(gray, box)
        if not self._plausible(pts, gray.shape, box):
            self.box = self.anchor = None
            return None
        self.box, self.anchor = box, pts.mean(axis=0)
        self.patch, self.last_box = _patch(gray, box), box
        if self.reference is None:
            self.reference = _face_view(gray, box)
        return pts

    def _current_box(self, followed: np.ndarray | None) -> np.ndarray:
        pts = followed if followed is not None else self.previous
        if pts is None or self.anchor is None:
            return self.box
        shift = pts.mean(axis=0) - self.anchor
        return self.box + np.array([shift[0], shift[1], shift[0], shift[1]])

    def _follow(self, gray: np.ndarray) -> np.ndarray:
        # the detector's box (the shape predictor was trained on such boxes), moved along with the face
        return self._landmarks(gray, self._current_box(self.previous))

    def _landmarks(self, gray: np.ndarray, box: np.ndarray) -> np.ndarray:
        import dlib

        left, top, right, bottom = (int(round(v)) for v in box)
        shape = self.predictor(gray, dlib.rectangle(left, top, right, bottom))
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)

    @staticmethod
    def _plausible(pts: np.ndarray, shape: tuple[int, int], box: np.ndarray, moved_from: np.ndarray | None = None) -> bool:
        """Landmarks that look like a face of the box's size, inside the frame, not far from `moved_from`."""
        h, w = shape
        size = max(box[2] - box[0], 1.0)
        inside = (pts[:, 0] >= 0) & (pts[:, 0] < w) & (pts[:, 1] >= 0) & (pts[:, 1] < h)
        if inside.mean() < 0.75:
            return False  # leaving the frame
        if moved_from is not None and np.linalg.norm(pts.mean(axis=0) - moved_from.mean(axis=0)) > _MAX_JUMP * size:
            return False
        left_eye, right_eye = pts[36:42].mean(axis=0), pts[42:48].mean(axis=0)
        across = right_eye - left_eye
        iod = float(np.hypot(across[0], across[1]))
        if not _EYE_SPAN[0] * size <= iod <= _EYE_SPAN[1] * size:
            return False
        # in the face's own frame (eyes level, y downwards): eyes, nose tip, upper lip, chin from top to bottom
        down = np.array([-across[1], across[0]]) / iod
        nose, mouth, chin = (pts[[30, 51, 8]] - (left_eye + right_eye) / 2) @ down
        return bool(0.0 < nose < mouth < chin)

    def _detect_near(self, gray: np.ndarray, box: np.ndarray, threshold: float) -> np.ndarray | None:
        """The detection overlapping `box`, searched in the neighbourhood at the detector's preferred face size."""
        h, w = gray.shape
        size = box[2] - box[0]
        margin = _SEARCH_MARGIN * size
        left, top = int(max(0, box[0] - margin)), int(max(0, box[1] - margin))
        right, bottom = int(min(w, box[2] + margin)), int(min(h, box[3] + margin))
        if right - left < 16 or bottom - top < 16:
            return None
        crop = gray[top:bottom, left:right]
        scale = _DETECT_SIZE / max(size, 1.0)
        if abs(scale - 1.0) > 0.1:
            import cv2

            crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        else:
            scale = 1.0
        rects, _, _ = self.detector.run(np.ascontiguousarray(crop), 0, threshold)
        boxes = [np.array([r.left(), r.top(), r.right(), r.bottom()], dtype=np.float64) / scale + [left, top, left, top] for r in rects]
        best = max(boxes, key=lambda b: _iou(b, box), default=None)
        return best if best is not None and _iou(best, box) >= _MIN_OVERLAP else None

    def _detect_everywhere(self, gray: np.ndarray, thorough: bool) -> list[np.ndarray]:
        """Detections on the whole frame: reduced scale first; then full resolution; then upsampled (small faces)."""
        h, w = gray.shape
        factor = max(1, min(h, w) // 240)  # HOG finds faces of ~60-150 px best, and faster on small images
        attempts = [(factor, 0)] + ([(1, 0)] if factor > 1 else [])
        if thorough:
            attempts.append((1, 1))
        for factor, upsample in attempts:
            image = gray if factor == 1 else np.ascontiguousarray(gray[::factor, ::factor])
            rects = self.detector(image, upsample)
            if len(rects):
                return [np.array([r.left(), r.top(), r.right(), r.bottom()], dtype=np.float64) * factor for r in rects]
            if not thorough:
                break
        return []

    def _pick(self, boxes: list[np.ndarray], gray: np.ndarray) -> np.ndarray | None:
        """The box overlapping the track (or where the person was last seen); elsewhere, the clip's person
        recognised by face; at the start, the largest, most central face."""
        if not boxes:
            return None
        current = self._current_box(self.previous) if self.box is not None else self.last_box
        if current is not None:
            best = max(boxes, key=lambda b: _iou(b, current))
            if _iou(best, current) >= _MIN_OVERLAP:
                return best
        if self.reference is None:
            return _largest_central(boxes, gray.shape)
        # a face declined before (followed by position) keeps its distance: the descriptor is not computed again
        distances = [next((d for old, d in self.declined if _iou(b, old) >= _MIN_OVERLAP), None) or self._distance(gray, b) for b in boxes]
        others = [self._someone_else(b, d) for b, d in zip(boxes, distances, strict=True)]
        self.declined = [(b, d) for b, d, other in zip(boxes, distances, others, strict=True) if other]
        takeable = [(d, i) for i, (d, other) in enumerate(zip(distances, others, strict=True)) if not other]
        if not takeable:
            return None
        distance, i = min(takeable)
        if distance > _SAME_PERSON:
            self.identity_changes += 1
        return boxes[i]

    def _someone_else(self, box: np.ndarray, distance: float) -> bool:
        """Decline the face: surely another person, or an uncertain match of another size soon after the loss."""
        if distance > _OTHER_PERSON:
            return True
        if distance <= _SAME_PERSON or self.last_box is None or self.since_seen > _RECENT_FRAMES:
            return False
        ratio = (box[2] - box[0]) / max(self.last_box[2] - self.last_box[0], 1.0)
        return not 1 / _SIZE_RATIO <= ratio <= _SIZE_RATIO

    def descriptor(self) -> np.ndarray | None:
        """The face descriptor of the person this track started with (None when no face was found)."""
        if self.identity is None and self.reference is not None:
            self.identity = self._descriptor(*self.reference)
        return self.identity

    def _distance(self, gray: np.ndarray, box: np.ndarray) -> float:
        """Face-descriptor distance between the face in `box` and the clip's person (0: the same picture)."""
        if self.identity is None:
            self.identity = self._descriptor(*self.reference)
        return float(np.linalg.norm(self._descriptor(*_face_view(gray, box)) - self.identity))

    def _descriptor(self, picture: np.ndarray, box: np.ndarray) -> np.ndarray:
        import dlib

        left, top, right, bottom = (int(round(v)) for v in box)
        shape = self.predictor(picture, dlib.rectangle(left, top, right, bottom))
        rgb = np.ascontiguousarray(np.repeat(picture[..., None], 3, axis=2))  # the network takes three channels
        return np.asarray(face_recognition_model().compute_face_descriptor(rgb, shape), dtype=np.float64)


def _largest_central(boxes: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    centre = np.array([w / 2, h / 2])

    def score(b: np.ndarray) -> float:
        offset = np.linalg.norm((b[:2] + b[2:]) / 2 - centre) / np.linalg.norm(centre)
        return float((b[2] - b[0]) * (b[3] - b[1]) * (1.0 - 0.5 * offset))

    return max(boxes, key=score)


def _face_view(gray: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A copy of the picture around a face (half a face of margin) and the box within it: enough for its descriptor."""
    h, w = gray.shape
    margin = 0.5 * (box[2] - box[0])
    left, top = int(max(0, box[0] - margin)), int(max(0, box[1] - margin))
    right, bottom = int(min(w, box[2] + margin)), int(min(h, box[3] + margin))
    return np.ascontiguousarray(gray[top:bottom, left:right]), box - np.array([left, top, left, top], dtype=np.float64)


def _patch(gray: np.ndarray, box: np.ndarray) -> np.ndarray | None:
    """The box's picture at 24x24, zero mean and unit norm (None when the box is off the frame)."""
    import cv2

    h, w = gray.shape
    left, top = int(max(0, box[0])), int(max(0, box[1]))
    right, bottom = int(min(w, box[2])), int(min(h, box[3]))
    if right - left < 8 or bottom - top < 8:
        return None
    step = max(1, min(right - left, bottom - top) // 48)  # thin out large faces first: area resampling is slow
    small = cv2.resize(gray[top:bottom:step, left:right:step], (24, 24), interpolation=cv2.INTER_AREA).astype(np.float32)
    small -= small.mean()
    norm = float(np.linalg.norm(small))
    return small / norm if norm > 1e-3 else None


def _similarity(a: np.ndarray | None, b: np.ndarray | None) -> float:
    """Normalised cross-correlation of two patches (1: the same picture); 0 when either is missing."""
    return float((a * b).sum()) if a is not None and b is not None else 0.0


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def track_landmarks(frames: list[np.ndarray], detect_every: int) -> tuple[np.ndarray, np.ndarray]:
    """68 landmarks [N, 68, 2] (pixels) and a found flag [N] for every frame of a short clip."""
    return FaceTracker(detect_every).track(frames)


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


def au_quantiles(frames: np.ndarray) -> np.ndarray:
    """[len(QUANTILES), len(AU_TABLE)]: each AU activation's quantiles over the frames with a face."""
    faces = frames[frames[:, 0] > 0, -len(AU_TABLE) :]
    return np.quantile(faces, QUANTILES, axis=0).astype(np.float32)


def head_pose(landmarks: np.ndarray, width: int, height: int) -> np.ndarray:
    """Yaw, pitch, roll in degrees per frame (0, 0, 0: upright, looking into the camera).

    solvePnP of seven rigid landmarks against a generic face, with a pinhole camera guess. Each frame
    starts from the upright, frontal pose at the distance its eye corners imply: started from scratch,
    the iterative solver can settle on a mirror solution with the face behind the camera (roll near
    180 degrees, yaw and pitch wrong). A solution behind the camera is dropped (zeros).
    """
    import cv2

    focal = float(width)
    camera = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]], dtype=np.float64)
    out = np.zeros((len(landmarks), 3), dtype=np.float32)
    for i, pts in enumerate(landmarks):
        image = pts[_POSE_POINTS].astype(np.float64)
        eyes = float(np.linalg.norm(image[6] - image[3]))
        if eyes < 1.0:
            continue
        depth = focal * _OUTER_EYES_MM / eyes
        centre = (image[1] - camera[:2, 2]) * depth / focal  # the nose tip, back-projected
        rvec = np.zeros((3, 1))
        tvec = np.array([[centre[0]], [centre[1]], [depth]])
        ok, rvec, tvec = cv2.solvePnP(_MODEL_3D, image, camera, None, rvec, tvec, True, cv2.SOLVEPNP_ITERATIVE)
        if not ok or tvec[2, 0] <= 0:
            continue
        rot, _ = cv2.Rodrigues(rvec)
        # rot = Rz(roll) Ry(yaw) Rx(pitch)
        pitch = math.degrees(math.atan2(rot[2, 1], rot[2, 2]))
        yaw = math.degrees(math.atan2(-rot[2, 0], math.hypot(rot[2, 1], rot[2, 2])))
        roll = math.degrees(math.atan2(rot[1, 0], rot[0, 0]))
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
