"""Extraction speed: on the real GRID clips on one core, or scaled out over Dask workers.

    python benchmarks/extract.py [--grid ../shared/data/grid] [--repeats 3]
    python benchmarks/extract.py --workers 1,2 [--clips 96] [--shard-size 4]

Prints, per modality, frames per second and the real-time factor (seconds of video per second of
work), beside the bare decode rate of the same files (PyAV, grayscale frames); then the whole-clip
real-time factor (text + audio + visual), and the time of a re-run of the extraction on an unchanged
corpus as a share of the first run (targets: visual >= 400 frames/s, whole clip >= 10x real time,
re-run < 5%). Torch, OpenCV and BLAS are held to one thread.

With --workers, a demo corpus of --clips clips is made once and extracted by the extraction flow
(`extract.runner=dask`, a LocalCluster of N single-threaded worker processes) for each N. It prints,
per N, the wall time of the flow (cluster start and model loading included) and the steady throughput:
clips per second from the moment every worker has finished its first shard (models loaded) to the
last shard; then the speed-up of each N over the first (target: 2 workers >= 1.8x one).
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

from misr.config.params import load_params  # noqa: E402
from misr.data.corpus import Clip  # noqa: E402
from misr.data.media import read_video  # noqa: E402
from misr.features.registry import extractors_for  # noqa: E402
from misr.msa.convention import MOSI  # noqa: E402
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
    ap.add_argument("--workers", type=str, default=None, help="comma-separated Dask worker counts, e.g. 1,2")
    ap.add_argument("--clips", type=int, default=96, help="demo clips for --workers")
    ap.add_argument("--shard-size", type=int, default=4, help="clips per extraction task for --workers")
    args = ap.parse_args()
    if args.workers:
        scale_out([int(w) for w in args.workers.split(",")], args.clips, args.shard_size)
        return
    import cv2
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    files = sorted(args.grid.glob("*.mpg"))
    if not files:
        sys.exit(f"no GRID clips (*.mpg) in {args.grid}")
    params = load_params(REPO / "params.yaml", ["data.dataset=demo", "extract.max_workers=1"])
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
    print(f"visual frames/s vs target 400: {visual_rate / 400:.2f}  ({'met' if visual_rate >= 400 else 'NOT met'})")

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
            extract.run(params.features, params.extract, MOSI, raw, store)

        first, _ = timed(run, 1)
        second, _ = timed(run, 1)
    print(f"re-run on the unchanged corpus: {second:.2f}s vs {first:.2f}s first = {100 * second / first:.1f}% (target < 5%)")


def scale_out(workers: list[int], n_clips: int, shard_size: int) -> None:
    from misr.data import democorpus
    from pipelines.extract import extract_flow
    from pipelines.prefect_api import prefect_api

    base = load_params(REPO / "params.yaml", ["data.dataset=demo"])
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw"
        start = time.perf_counter()
        democorpus.generate(base.data.demo_corpus, raw, n_clips=n_clips)
        print(f"demo corpus: {n_clips} clips made in {time.perf_counter() - start:.0f}s; shards of {shard_size} clips")
        rates: dict[int, float] = {}
        with prefect_api():
            for n in workers:
                p = load_params(
                    REPO / "params.yaml",
                    ["data.dataset=demo", "extract.runner=dask", f"extract.max_workers={n}", f"extract.shard_size={shard_size}"],
                )
                done: list[tuple[float, int]] = []

                def progress(event: str, info: dict, done: list = done) -> None:
                    if event == "shard":
                        done.append((time.perf_counter(), info["clips"]))

                start = time.perf_counter()
                summary = extract_flow(p.features, p.extract, MOSI, raw, Path(tmp) / f"store-{n}", progress)
                wall = time.perf_counter() - start
                if summary["complete"] != n_clips:
                    sys.exit(f"{n} worker(s): only {summary['complete']} of {n_clips} clips complete")
                warm = done[n - 1][0]  # every worker has loaded its models and finished a shard
                clips_after = sum(c for t, c in done[n:])
                rates[n] = clips_after / (done[-1][0] - warm)
                print(f"{n} worker(s): flow {wall:6.1f}s ({n_clips / wall:5.2f} clips/s end to end); steady {rates[n]:5.2f} clips/s")
    first = workers[0]
    for n in workers[1:]:
        ratio = rates[n] / rates[first]
        target = " (target >= 1.8x: " + ("met)" if ratio >= 1.8 else "NOT met)") if (n, first) == (2, 1) else ""
        print(f"speed-up {n} vs {first} worker(s): {ratio:.2f}x{target}")


if __name__ == "__main__":
    main()
