"""How often the visual extractor reports a face, against dlib's detector run on every frame.

    python benchmarks/face_coverage.py VIDEO_DIR [VIDEO_DIR ...] [--frame-rate 25]

For every video under each VIDEO_DIR (searched recursively), on the same frames (the extractor's
`VideoStream` at `features.visual.frame_rate`), prints
  ours       the share of frames where `LandmarkExtractor` reports a face;
  dlib       the share where dlib's frontal detector, run on every full-resolution frame with upsample 1,
             finds one (the reference: slow, but it never gives up on a frame);
  ratio      ours / dlib (target >= 0.99 on every clip);
  extra      frames where we report a face and the reference finds none (a face the reference missed,
             or a false face: look at the clip when this is not 0).
Then the totals per folder and overall. Targets (issue 12): ratio >= 0.99 on every real clip, and
ours >= 0.99 outright on the shared GRID clips.
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
from misr.data.media import ClipError, VideoStream  # noqa: E402
from misr.features.visual import LandmarkExtractor  # noqa: E402
from misr.shipped import dlib_models  # noqa: E402


def reference(path: Path, frame_rate: float) -> np.ndarray:
    detector, _ = dlib_models()
    found = []
    with VideoStream(path, frame_rate) as video:
        for chunk in video.chunks():
            found.extend(len(detector(gray, 1)) > 0 for gray in chunk)
    return np.array(found, dtype=bool)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirs", type=Path, nargs="+", metavar="VIDEO_DIR")
    ap.add_argument("--frame-rate", type=float, default=None, help="default: features.visual.frame_rate of params.yaml")
    args = ap.parse_args()
    overrides = [f"features.visual.frame_rate={args.frame_rate}"] if args.frame_rate else []
    params = load_params(REPO / "params.yaml", overrides)
    extractor = LandmarkExtractor(params.features)
    rate = params.features.visual.frame_rate

    print(f"{'clip':<34} {'frames':>6} {'ours':>6} {'dlib':>6} {'ratio':>6} {'extra':>6} {'ms/frame':>9}")
    totals: dict[str, list[int]] = {}
    worst = (float("inf"), "")
    for folder, path in videos_under(args.dirs):
        name = str(path.relative_to(folder))
        clip = Clip(f"v$_${path.stem}", "v", path.stem, path, "", "test", 0.0)
        start = time.perf_counter()
        try:
            ours = extractor.extract(clip)["frames"][:, 0] > 0
        except ClipError as exc:  # a clip with no face at all is a result here, not a failure
            ours = None
            note = f"{type(exc).__name__}: {exc}"
        took = time.perf_counter() - start
        ref = reference(path, rate)
        if ours is None:
            ours = np.zeros_like(ref)
            print(f"  ({name}: {note})")
        n = min(len(ours), len(ref))
        ours, ref = ours[:n], ref[:n]
        ratio = ours.mean() / ref.mean() if ref.any() else float("nan")
        extra = int((ours & ~ref).sum())
        print(f"{name:<34} {n:>6} {ours.mean():>6.3f} {ref.mean():>6.3f} {ratio:>6.3f} {extra:>6} {1e3 * took / n:>9.2f}")
        key = f"{folder.name}/{Path(name).parent}" if Path(name).parent != Path(".") else folder.name
        t = totals.setdefault(key, [0, 0, 0, 0])
        t[0], t[1], t[2], t[3] = t[0] + n, t[1] + int(ours.sum()), t[2] + int(ref.sum()), t[3] + extra
        if ref.any() and ratio < worst[0]:
            worst = (ratio, name)

    print()
    print(f"{'total':<34} {'frames':>6} {'ours':>6} {'dlib':>6} {'ratio':>6} {'extra':>6}")
    all_t = [0, 0, 0, 0]
    for key, (n, o, r, e) in totals.items():
        print(f"{key:<34} {n:>6} {o / n:>6.3f} {r / n:>6.3f} {(o / r if r else float('nan')):>6.3f} {e:>6}")
        all_t = [a + b for a, b in zip(all_t, (n, o, r, e), strict=True)]
    n, o, r, e = all_t
    print(f"{'all':<34} {n:>6} {o / n:>6.3f} {r / n:>6.3f} {(o / r if r else float('nan')):>6.3f} {e:>6}")
    if worst[1]:
        verdict = "met" if worst[0] >= 0.99 else "NOT met"
        print(f"lowest per-clip ratio: {worst[0]:.3f} ({worst[1]}); target >= 0.99 on every clip: {verdict}")


if __name__ == "__main__":
    main()
