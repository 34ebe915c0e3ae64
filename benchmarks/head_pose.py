"""Head pose on real recordings: flips and jumps of the visual extractor's yaw, pitch and roll.

    python benchmarks/head_pose.py VIDEO_DIR [VIDEO_DIR ...]

For every video under each VIDEO_DIR (searched recursively), on the frames where the extractor
reports a face, prints
  flips     the share of face frames with |roll| > 90 degrees: on an upright face, a pose solution
            behind the camera or upside down (target 0);
  jumps     the share of consecutive face-frame pairs (1/25 s apart) where yaw, pitch or roll changes
            by more than 30 degrees: a head does not turn that fast (target 0, apart from scene cuts);
  |yaw| |pitch| |roll|   the median absolute angles, to see that a frontal speaker reads near 0.
Then the totals. Use it on ../shared/data/grid, ../shared/data/faces and the variants of
benchmarks/face_variants.py (roll20 reads |roll| near 20 by design).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.video_dirs import videos_under  # noqa: E402
from misr.config.params import load_params  # noqa: E402
from misr.data.corpus import Clip  # noqa: E402
from misr.data.media import ClipError  # noqa: E402
from misr.features.visual import LandmarkExtractor, feature_names  # noqa: E402

POSE = [feature_names().index(f"pose_{a}") for a in ("yaw", "pitch", "roll")]


def angle_change(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs((b - a + 180.0) % 360.0 - 180.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirs", type=Path, nargs="+", metavar="VIDEO_DIR")
    args = ap.parse_args()
    extractor = LandmarkExtractor(load_params(REPO / "params.yaml").features)
    print(f"{'clip':<52} {'faces':>6} {'flips':>7} {'jumps':>7} {'|yaw|':>6} {'|pitch|':>7} {'|roll|':>6}")
    all_flips = all_jumps = all_faces = all_pairs = 0
    start = time.perf_counter()
    for folder, path in videos_under(args.dirs):
        name = f"{folder.name}/{path.relative_to(folder)}"
        clip = Clip(f"v$_${path.stem}", "v", path.stem, path, "", "test", 0.0)
        try:
            frames = extractor.extract(clip)["frames"]
        except ClipError as exc:
            print(f"{name:<52} ({type(exc).__name__})")
            continue
        face = frames[:, 0] > 0
        pose = frames[:, POSE]
        flips = int((np.abs(pose[face, 2]) > 90).sum())
        both = face[1:] & face[:-1]
        jumps = int((angle_change(pose[:-1], pose[1:]).max(axis=1) > 30)[both].sum())
        n, pairs = int(face.sum()), int(both.sum())
        all_flips, all_jumps, all_faces, all_pairs = all_flips + flips, all_jumps + jumps, all_faces + n, all_pairs + pairs
        med = np.median(np.abs(pose[face]), axis=0) if n else np.zeros(3)
        print(f"{name:<52} {n:>6} {flips / max(n, 1):>7.3f} {jumps / max(pairs, 1):>7.3f} {med[0]:>6.1f} {med[1]:>7.1f} {med[2]:>6.1f}")
    print(
        f"total: {all_faces} face frames; flips {all_flips} ({all_flips / max(all_faces, 1):.3f}); "
        f"jumps > 30 deg {all_jumps} of {all_pairs} pairs ({all_jumps / max(all_pairs, 1):.3f}); "
        f"{time.perf_counter() - start:.0f} s"
    )


if __name__ == "__main__":
    main()
