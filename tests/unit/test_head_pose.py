"""Head pose from landmarks: the generic face projected under known poses comes back, upright, never flipped."""

import math

import cv2
import numpy as np
import pytest

from misr.features.visual import _MODEL_3D, _POSE_POINTS, head_pose

W, H = 640, 480
CAMERA = np.array([[W, 0, W / 2], [0, W, H / 2], [0, 0, 1.0]])


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    y, p, r = map(math.radians, (yaw, pitch, roll))
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return rz @ ry @ rx


def landmarks_at(yaw, pitch, roll, where=(0.0, 0.0, 800.0), noise=0.0, rng=None) -> np.ndarray:
    """68 landmarks whose pose points are the generic face seen under this pose (the others anywhere)."""
    rvec, _ = cv2.Rodrigues(rotation(yaw, pitch, roll))
    image, _ = cv2.projectPoints(_MODEL_3D, rvec, np.array(where, dtype=np.float64), CAMERA, None)
    marks = np.full((68, 2), (W / 2, H / 2))
    marks[_POSE_POINTS] = image[:, 0, :] + (rng.normal(0, noise, (len(_POSE_POINTS), 2)) if noise else 0)
    return marks


@pytest.mark.parametrize("pose", [(0, 0, 0), (30, 0, 0), (-30, 0, 0), (0, 15, 0), (0, -15, 0), (0, 0, 20), (-40, 10, -25)])
def test_a_pose_comes_back(pose):
    assert head_pose(landmarks_at(*pose)[None], W, H)[0] == pytest.approx(pose, abs=0.5)


def test_noisy_upright_faces_are_never_flipped():
    """On detected landmarks the solver used to settle on a mirror solution behind the camera (roll ~180)."""
    rng = np.random.default_rng(0)
    poses = np.column_stack([rng.uniform(-45, 45, 300), rng.uniform(-25, 25, 300), rng.uniform(-30, 30, 300)])
    where = np.column_stack([rng.uniform(-100, 100, 300), rng.uniform(-80, 80, 300), rng.uniform(400, 1500, 300)])
    marks = np.stack([landmarks_at(*p, where=w, noise=1.0, rng=rng) for p, w in zip(poses, where, strict=True)])
    found = head_pose(marks, W, H)
    assert np.abs(found[:, 2]).max() < 90
    assert np.median(np.abs(found - poses), axis=0) == pytest.approx([0, 0, 0], abs=3)


def test_the_jaw_and_the_mouth_do_not_move_the_pose():
    still = landmarks_at(10, 5, 3)
    talking = still.copy()
    talking[list(range(4, 13)) + list(range(48, 68))] += (0, 25)  # the jaw drops, the mouth opens
    assert np.array_equal(head_pose(np.stack([still, talking, still]), W, H)[[0, 2]], head_pose(np.stack([still, still]), W, H))
    assert np.array_equal(head_pose(talking[None], W, H), head_pose(still[None], W, H))
