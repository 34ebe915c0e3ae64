"""Read throughput of the feature store into padded training tensors, beside pyarrow's raw read.

    python benchmarks/store.py [--clips 4000] [--like mosei] [--frames 50 400] [--repeats 5]

Builds a synthetic store (`misr synth`) in a temporary folder, then times
  raw:   pyarrow.parquet.read_table of every file the split needs (clips + each modality), all rows;
  store: FeatureStore.load_split("train") -> padded float32 torch tensors + lengths + labels.
Both are reported in clips per second; the ratio store/raw is the figure to watch (target >= 0.5).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from misr.config import load_params  # noqa: E402
from misr.data.synth import generate  # noqa: E402
from misr.store import MODALITIES, FeatureStore  # noqa: E402


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=4000, help="clips in the train split")
    ap.add_argument("--like", choices=["mosi", "mosei"], default="mosei")
    ap.add_argument("--frames", type=int, nargs=2, default=[50, 400], metavar=("MIN", "MAX"))
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    dims = {"mosi": (5, 20), "mosei": (74, 35)}[args.like]
    frames = f"[{args.frames[0]}, {args.frames[1]}]"
    params = load_params(
        REPO / "params.yaml",
        [
            f"data.synth.n_clips={{train: {args.clips}, valid: 10, test: 10}}",
            f"data.synth.audio_dim={dims[0]}",
            f"data.synth.visual_dim={dims[1]}",
            f"data.synth.audio_frames={frames}",
            f"data.synth.visual_frames={frames}",
        ],
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "store"
        t0 = time.perf_counter()
        generate(params.data.synth, root)
        print(f"built a {args.like}-like store of {args.clips + 20} clips in {time.perf_counter() - t0:.1f}s")
        fs = FeatureStore(root)
        files = [fs.clips_path] + [p for m in MODALITIES for _, p in fs.part_files(m)]
        size = sum(p.stat().st_size for p in files) / 2**20
        total = args.clips + 20

        raw_best, raw_med = best_of(lambda: [pq.read_table(p) for p in files], args.repeats)
        store_best, store_med = best_of(lambda: fs.load_split("train"), args.repeats)
        data = fs.load_split("train")

    raw_rate = total / raw_best
    store_rate = args.clips / store_best
    print(f"files: {len(files)}, {size:.1f} MiB; padded audio {tuple(data.audio.values.shape)}, visual {tuple(data.visual.values.shape)}")
    print(f"raw pyarrow read : {raw_rate:10.0f} clips/s  (best {raw_best * 1e3:.1f} ms, median {raw_med * 1e3:.1f} ms)")
    print(f"store load_split : {store_rate:10.0f} clips/s  (best {store_best * 1e3:.1f} ms, median {store_med * 1e3:.1f} ms)")
    ratio = store_rate / raw_rate
    print(f"ratio store/raw  : {ratio:.2f}  (target >= 0.50: {'met' if ratio >= 0.5 else 'NOT met'})")


if __name__ == "__main__":
    main()
