"""Extraction speed on the real GRID clips (../shared/data/grid), on one core.

    python benchmarks/extract.py [--grid ../shared/data/grid] [--repeats 3]

Prints, per modality, frames per second and the real-time factor (seconds of video per second of
work), beside the bare decode rate of the same files (PyAV, grayscale frames); then the whole-clip
real-time factor (text + audio + visual), and the time of a re-run of the extraction on an unchanged
corpus as a share of the first run (targets: visual >= 250 frames/s, whole clip >= 10x real time,
re-run < 5%). Torch, OpenCV and BLAS are held to one thread.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[var] = "1"

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from misr.config import load_params  # noqa: E402
from misr.data.corpus import Clip  # noqa: E402
from misr.data.media import read_video  # noqa: E402
from misr.evaluation.convention import MOSI  # noqa: E402
from misr.features.registry import extractors_for  # noqa: E402
from misr.stages import extract  # noqa: E402


def timed(fn, repeats):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grid", type=Path, default=REPO.parent / "shared" / "data" / "grid")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    import cv2
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    files = sorted(args.grid.glob("*.mpg"))
    if not files:
        sys.exit(f"no GRID clips (*.mpg) in {args.grid}")
    params = load_params(REPO / "params.yaml", ["data.dataset=demo", "features.max_workers=1"])
    extractors = extractors_for(params.features)
    clips = [Clip(f"grid$_${f.stem}", "grid", f.stem, f, "bin blue at f two now", "test", 0.0) for f in files]
    for ex in extractors.values():  # load models, compile, warm caches: not part of the rate
        ex.extract(clips[0])

    video_seconds = 0.0
    frames = 0
    decode = 0.0
    per_modality = {m: 0.0 for m in extractors}
    counts = {m: 0 for m in extractors}
    for clip in clips:
        t, video = timed(lambda clip=clip: read_video(clip.path), args.repeats)
        decode += t
        frames += len(video.frames)
        video_seconds += video.duration
        for m, ex in extractors.items():
            t, rec = timed(lambda ex=ex, clip=clip: ex.extract(clip), args.repeats)
            per_modality[m] += t
            counts[m] += len(rec["frames"]) if "frames" in rec else len(rec["input_ids"])

    print(f"GRID: {len(clips)} clips, {frames} video frames, {video_seconds:.1f} s of video; one thread")
    print(f"bare decode (PyAV, grey)  {frames / decode:8.0f} frames/s  {video_seconds / decode:6.1f}x real time")
    for m, t in per_modality.items():
        unit = "tokens" if m == "text" else "frames"
        print(f"{m:<8} extraction        {counts[m] / t:8.0f} {unit}/s  {video_seconds / t:6.1f}x real time")
    whole = sum(per_modality.values())
    print(f"whole clip (all three)    {video_seconds / whole:6.1f}x real time  (target >= 10x)")
    visual_rate = counts["visual"] / per_modality["visual"]
    print(f"visual frames/s vs target 250: {visual_rate / 250:.2f}  ({'met' if visual_rate >= 250 else 'NOT met'})")

    # a corpus of the GRID clips, extracted twice: the second run finds everything done
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw"
        (raw / "Raw" / "grid").mkdir(parents=True)
        with (raw / "label.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["video_id", "clip_id", "text", "label", "mode"])
            for f in files:
                shutil.copy(f, raw / "Raw" / "grid" / f.name)
                w.writerow(["grid", f.stem, "bin blue at f two now", "0.0", "train"])
        store = Path(tmp) / "store"

        def run():
            extract.run(params.features, MOSI, raw, store)

        first, _ = timed(run, 1)
        second, _ = timed(run, 1)
    print(f"re-run on the unchanged corpus: {second:.2f}s vs {first:.2f}s first = {100 * second / first:.1f}% (target < 5%)")


if __name__ == "__main__":
    main()
