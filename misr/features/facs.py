"""The action units the landmark extractor measures: FACS geometry on normalised landmarks.

Each action unit is a distance or height measured in inter-ocular units on landmarks in the face frame
(`misr.features.visual.normalise`), turned into an activation (measure - neutral) / span * 5, not
clipped. `neutral` is the value on relaxed faces (measured here on the GRID speakers' frames, where the
speakers hold a neutral expression), `span` the change at which the AU counts as at full intensity.
What a model sees of them, raw or relative to the person, is `misr.features.person`.
"""

from __future__ import annotations

import numpy as np

# (name, measure, neutral, span): measures are defined in `au_measures`
AU_TABLE = (
    ("AU01_r", "inner_brow_height", 0.33, 0.15),
    ("AU02_r", "outer_brow_height", 0.27, 0.15),
    ("AU04_r", "inner_brow_lowering", -0.33, 0.10),
    ("AU05_r", "eye_opening", 0.136, 0.08),
    ("AU06_r", "lower_lid_raise", -0.049, 0.05),
    ("AU09_r", "nose_shortening", -0.84, 0.12),
    ("AU12_r", "lip_corner_raise", -0.41, 0.35),
    ("AU15_r", "lip_corner_drop", 0.41, 0.35),
    ("AU17_r", "chin_raise", -0.557, 0.15),
    ("AU20_r", "mouth_width", 0.80, 0.30),
    ("AU25_r", "lips_apart", 0.03, 0.25),
    ("AU26_r", "jaw_drop", 1.15, 0.35),
    ("AU45_r", "eye_closure", -0.33, 0.15),
)
QUANTILES = np.linspace(0.05, 0.95, 19)  # the levels of each clip's `au_quantiles`


def au_measures(p: np.ndarray) -> dict[str, np.ndarray]:
    """Geometric measures in inter-ocular units from normalised landmarks [N, 68, 2] (y downwards)."""
    y = p[..., 1]

    def dist(a: int, b: int) -> np.ndarray:
        return np.linalg.norm(p[:, a] - p[:, b], axis=1)

    inner_brow = (y[:, 39] + y[:, 42]) / 2 - (y[:, 21] + y[:, 22]) / 2
    eye_open = (dist(37, 41) + dist(38, 40) + dist(43, 47) + dist(44, 46)) / 4
    eye_width = (dist(36, 39) + dist(42, 45)) / 2
    corners_y = (y[:, 48] + y[:, 54]) / 2
    nose_base_y = y[:, 33]  # rigid: the upper lip's centre rises when the mouth opens wide
    return {
        "inner_brow_height": inner_brow,
        "outer_brow_height": (y[:, 36] + y[:, 45]) / 2 - (y[:, 17] + y[:, 26]) / 2,
        "inner_brow_lowering": -inner_brow,
        "eye_opening": eye_open,
        "lower_lid_raise": -((y[:, 40] + y[:, 41] + y[:, 46] + y[:, 47]) / 4 - (y[:, 36] + y[:, 39] + y[:, 42] + y[:, 45]) / 4),
        "nose_shortening": -dist(27, 33),
        "lip_corner_raise": nose_base_y - corners_y,
        "lip_corner_drop": corners_y - nose_base_y,
        "chin_raise": -dist(57, 8),
        "mouth_width": dist(48, 54),
        "lips_apart": dist(62, 66),
        "jaw_drop": dist(33, 8),
        "eye_closure": -(eye_open / np.maximum(eye_width, 1e-6)),
    }


def action_units(normalised: np.ndarray) -> np.ndarray:
    """Activations [N, len(AU_TABLE)]: 0 at the generic neutral face, 5 at full intensity, not clipped."""
    m = au_measures(normalised)
    return np.stack([(m[measure] - neutral) / span * 5.0 for _, measure, neutral, span in AU_TABLE], axis=1)
