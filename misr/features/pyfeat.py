"""Visual, optional backend: py-feat's face, landmark, head-pose and AU models behind the same interface.

Needs `pip install -e .[pyfeat]` and py-feat's model weights, which py-feat downloads from a model hub
on first use (so this backend cannot run where that hub is out of reach, such as this project's CI).
Output columns follow the landmark backend: face, normalised landmarks, pose, then py-feat's AU
intensities (its xgb AU model: 20 AUs). It reads py-feat's documented `Fex` columns (FaceScore,
x_0..x_67, y_0..y_67, Pitch, Roll, Yaw, AUxx); it has not been run in this repository's tests.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from misr.data.corpus import Clip
from misr.data.media import ClipError, VideoStream
from misr.errors import MisrError
from misr.features.base import Extractor
from misr.features.visual import normalise

PYFEAT_AUS = (
    "AU01",
    "AU02",
    "AU04",
    "AU05",
    "AU06",
    "AU07",
    "AU09",
    "AU10",
    "AU11",
    "AU12",
    "AU14",
    "AU15",
    "AU17",
    "AU20",
    "AU23",
    "AU24",
    "AU25",
    "AU26",
    "AU28",
    "AU43",
)


class PyFeatExtractor(Extractor):
    name = "pyfeat"
    modality = "visual"
    version = "1"

    def __init__(self, features):
        super().__init__(features)
        self.cfg = features.visual
        try:
            import feat  # noqa: F401
        except ImportError:
            raise MisrError(
                "features.visual.backend is 'pyfeat' but py-feat is not installed",
                hint="pip install -e '.[pyfeat]' (py-feat downloads its model weights on first use), or use backend: landmarks",
            ) from None
        self._detector = None

    def config(self) -> dict[str, Any]:
        import feat

        return {"frame_rate": self.cfg.frame_rate, "py_feat": getattr(feat, "__version__", "unknown"), "au_model": "xgb"}

    def feature_names(self) -> list[str]:
        return [
            "face",
            *(f"x{i}" for i in range(68)),
            *(f"y{i}" for i in range(68)),
            "pose_yaw",
            "pose_pitch",
            "pose_roll",
            *(f"{a}_r" for a in PYFEAT_AUS),
        ]

    def extract(self, clip: Clip) -> dict[str, Any]:
        from feat import Detector

        if self._detector is None:
            self._detector = Detector(au_model="xgb")
        with VideoStream(
            clip.path, chunk=1, max_gap=self.settings.max_gap_seconds
        ) as video:  # decodability and the native frame rate, with our clear errors
            next(iter(video.chunks()))
            source_fps = video.source_fps
        skip = max(0, int(round(source_fps / self.cfg.frame_rate)) - 1)
        fex = self._detector.detect_video(str(clip.path), skip_frames=skip)
        frames = sorted(set(int(f) for f in fex["frame"]))
        out = np.zeros((len(frames), len(self.feature_names())), dtype=np.float32)
        for row, frame in enumerate(frames):
            faces = fex[fex["frame"] == frame]
            best = faces.loc[faces["FaceScore"].idxmax()] if faces["FaceScore"].notna().any() else None
            if best is None or not np.isfinite(best["FaceScore"]):
                continue
            pts = np.array([[best[f"x_{i}"], best[f"y_{i}"]] for i in range(68)], dtype=np.float32)[None]
            norm = normalise(pts)[0]
            out[row, 0] = 1.0
            out[row, 1:69], out[row, 69:137] = norm[:, 0], norm[:, 1]
            out[row, 137:140] = (best["Yaw"], best["Pitch"], best["Roll"])
            out[row, 140:] = [float(best.get(a, 0.0)) * 5.0 for a in PYFEAT_AUS]  # py-feat gives [0, 1]
        if not out[:, 0].any():
            raise ClipError("visual", "NoFace", f"py-feat found no face in {clip.path.name}")
        return {
            "clip_key": clip.key,
            "frames": np.nan_to_num(out),
            "frame_rate": self.cfg.frame_rate,
            "face_ratio": float(out[:, 0].mean()),
        }
