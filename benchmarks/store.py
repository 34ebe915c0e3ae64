"""The feature store read for training: padded loading beside pyarrow, and a MOSEI-size store streamed.

    python benchmarks/store.py [--clips 4000] [--like mosei] [--frames 50 400] [--repeats 5]
    python benchmarks/store.py --like mosei --n 22856 [--frames 500 500] [--batches 24]

Without --n: builds a synthetic store (`misr synth`) in a temporary folder, then times
  raw:   pyarrow.parquet.read_table of every file the split needs (clips + each modality), all rows;
  store: FeatureStore.load_split("train") -> padded float32 torch tensors + lengths + labels.
Both in clips per second; the ratio store/raw is the figure to watch (target >= 0.5).

With --n: writes a store of N clips in MOSEI's split proportions (16,326 / 1,871 / 4,659 of 22,856),
each with --frames audio frames x 74 features (COVAREP's width), as many visual frames x the landmark
extractor's 153 features, and 10-60 text tokens; part files of 2,048 clips, as extraction shards would
leave them in bulk. Then, as `misr train` does it (train.stream=auto):
  open:        the store opened for training and the first batch of the first epoch in hand;
  epoch share: --batches training steps of the default MISR model on the CPU, each timed in two parts:
               getting the batch (reading row groups, padding) and the step (forward, backward, update);
               the I/O share is the first over the sum (target < 10%; first batch < 5 s).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from misr.config.params import load_params  # noqa: E402
from misr.data.synth import generate  # noqa: E402
from misr.store import MODALITIES, ExtractorInfo, clip_key  # noqa: E402
from misr.store.store import FeatureStore  # noqa: E402

MOSEI_SPLITS = {"train": 16326, "valid": 1871, "test": 4659}
VISUAL_WIDTH = 153  # the landmark extractor: face flag, 136 landmark coordinates, 3 pose angles, 13 AUs


def best_of(fn, repeats: int) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def padded_load(args) -> None:
    dims = {"mosi": (5, 20), "mosei": (74, 35)}[args.like]
    frames = f"[{args.frames[0]}, {args.frames[1]}]"
    params = load_params(
        REPO / "params.yaml",
        [
            f"data.synth.n_clips={{train: {args.clips}, valid: 10, valid_ood: 10, test: 10}}",
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


def build_mosei_like(root: Path, n: int, frames: tuple[int, int], seed: int = 0) -> None:
    """Random features with MOSEI's shapes, written part by part (never the whole store in memory)."""
    rng = np.random.default_rng(seed)
    share = {s: c / sum(MOSEI_SPLITS.values()) for s, c in MOSEI_SPLITS.items()}
    counts = {"train": 0, "valid": 0, "test": 0}
    counts["valid"], counts["test"] = round(n * share["valid"]), round(n * share["test"])
    counts["train"] = n - counts["valid"] - counts["test"]
    # a pool of random numbers that clips take windows of: realistic bytes without drawing 2.6 G numbers
    pool = rng.standard_normal(8_000_000).astype(np.float32)
    store = FeatureStore(root)
    infos = {
        "text": ExtractorInfo("bench-text", "1", {"tokenizer": "synth-lexicon-v1", "vocab_size": 1000}, ()),
        "audio": ExtractorInfo("bench-audio", "1", {}, [f"a{j}" for j in range(74)]),
        "visual": ExtractorInfo("bench-visual", "1", {}, [f"v{j}" for j in range(VISUAL_WIDTH)]),
    }
    clips = []
    splits = [s for s, c in counts.items() for _ in range(c)]
    for start in range(0, n, 2048):
        rows = {"text": [], "audio": [], "visual": []}
        for i in range(start, min(n, start + 2048)):
            key = clip_key(f"video_{i // 8:05d}", str(i % 8))
            label = float(np.clip(rng.normal(0.5, 1.3), -3, 3))
            clips.append({"clip_key": key, "video_id": key.split("$_$")[0], "clip_id": str(i % 8), "split": splits[i], "label": label})
            ids = rng.integers(5, 1000, int(rng.integers(10, 61)))
            rows["text"].append({"clip_key": key, "input_ids": ids, "attention_mask": np.ones_like(ids)})
            for m, width in (("audio", 74), ("visual", VISUAL_WIDTH)):
                t = int(rng.integers(frames[0], frames[1] + 1))
                at = int(rng.integers(0, pool.size - t * width))
                rows[m].append({"clip_key": key, "frames": pool[at : at + t * width].reshape(t, width), "frame_rate": 25.0})
        for m, records in rows.items():
            store.write_modality(m, records, infos[m])
    store.write_clips(clips)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def streamed(args) -> None:
    import torch

    from misr.model.misr import build_model, loss_terms, loss_weights, total_loss
    from misr.training.batches import batches_for, epoch_batches
    from misr.training.setup import AUTO_STREAM_BYTES, feature_bytes, load_data

    torch.set_num_threads(max(1, torch.get_num_threads()))
    params = load_params(REPO / "params.yaml", ["train.device=cpu"])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "store"
        t0 = time.perf_counter()
        build_mosei_like(root, args.n, tuple(args.frames))
        fs = FeatureStore(root)
        on_disk = sum(p.stat().st_size for m in MODALITIES for _, p in fs.part_files(m)) / 2**30
        print(f"built a MOSEI-size store: {args.n} clips {fs.splits()}, {on_disk:.1f} GiB on disk, in {time.perf_counter() - t0:.0f}s")
        size = feature_bytes(fs)
        mode = "reads from the store" if size > AUTO_STREAM_BYTES else "loads the splits into memory"
        print(f"feature bytes {size / 2**30:.1f} GiB (threshold {AUTO_STREAM_BYTES / 2**30:.0f} GiB): train.stream=auto {mode}")
        rss_before = peak_rss_mib()

        start = time.perf_counter()
        loaded = load_data(params.model, root, params.train.stream)
        train = batches_for(loaded.train, torch.device("cpu"))
        pieces = epoch_batches(train.order(1111, 0), params.train.batch_size)
        first = train.get(pieces[0].indices)
        opened = time.perf_counter() - start
        print(
            f"open + first batch: {opened:.2f}s ({len(loaded.train)} train clips, {len(pieces)} batches an epoch; target < 5 s: "
            f"{'met' if opened < 5 else 'NOT met'}); audio batch {tuple(first['audio'].shape)}, visual {tuple(first['visual'].shape)}"
        )

        model = build_model(params.model, loaded.spec)
        optimizer = torch.optim.AdamW(model.parameters(), lr=params.train.lr)
        weights = loss_weights(params.model, params.model.invariance.warmup_epochs)  # the penalty on, as for most of an epoch
        data_s = step_s = 0.0
        n = min(args.batches, len(pieces))
        for piece in pieces[:n]:
            t = time.perf_counter()
            batch = train.get(piece.indices)
            data_s += time.perf_counter() - t
            t = time.perf_counter()
            out = model(batch)
            loss = total_loss(loss_terms(params.model, out, batch["y"]), weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step_s += time.perf_counter() - t
        share = data_s / (data_s + step_s)
        print(
            f"{n} training steps of batch {params.train.batch_size}: batch {1e3 * data_s / n:.0f} ms, step {1e3 * step_s / n:.0f} ms "
            f"on {torch.get_num_threads()} CPU thread(s)"
        )
        print(
            f"I/O share of the epoch: {100 * share:.1f}% (target < 10%: {'met' if share < 0.10 else 'NOT met'}); "
            f"an epoch would take ~{len(pieces) * (data_s + step_s) / n / 60:.0f} min"
        )
        print(f"peak RSS: {peak_rss_mib():.0f} MiB (building the store: {rss_before:.0f} MiB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=4000, help="clips in the train split (padded-load comparison)")
    ap.add_argument("--like", choices=["mosi", "mosei"], default="mosei")
    ap.add_argument("--frames", type=int, nargs=2, default=None, metavar=("MIN", "MAX"))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--n", type=int, default=None, help="a MOSEI-size store of N clips, streamed for training")
    ap.add_argument("--batches", type=int, default=24, help="training steps timed with --n (the first window of row groups holds 32)")
    args = ap.parse_args()
    if args.n:
        if args.like != "mosei":
            sys.exit("--n builds a MOSEI-like store; use --like mosei")
        args.frames = args.frames or [500, 500]
        streamed(args)
    else:
        args.frames = args.frames or [50, 400]
        padded_load(args)


if __name__ == "__main__":
    main()
