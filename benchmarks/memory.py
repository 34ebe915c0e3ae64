"""Peak memory of extraction as the corpus grows, and on one long high-resolution recording.

    python benchmarks/memory.py [--small 48] [--large 192] [--minutes 10] [--skip-long]

Runs `misr extract` (the command a user runs; threads runner, extract.max_workers from params.yaml)
as a child process and samples, every 50 ms, the resident memory of
  extract:  the `misr extract` process itself (where every clip is decoded and its features computed);
  tree:     that process plus its children (the Prefect API server it starts), summed.
The exact peak of the extract process is also read from the kernel (wait4's ru_maxrss).

1. Demo corpora of --small and --large clips: the peaks and their ratio (target: large <= 1.2 x small,
   and < 2 GiB).
2. One --minutes-long 1280x720 25 fps H.264 video with an AAC track, made here with PyAV from the GRID
   speaker (../shared/data/grid; the demo face when that is absent) moving on a 720p canvas: the
   peak while it is extracted (target: < 1 GiB for 10 minutes).
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

GRID = REPO.parent / "shared" / "data" / "grid"
GIB = 2**30


def peak_memory(cmd: list[str], env: dict[str, str]) -> tuple[int, int, int, float, str]:
    """Run `cmd`; (ru_maxrss of the process, sampled peak of the process, sampled peak of its tree, seconds, output)."""
    import psutil

    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peaks = {"own": 0, "tree": 0}
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(proc.stdout), daemon=True)
    reader.start()
    ps = psutil.Process(proc.pid)
    while True:
        try:
            own = ps.memory_info().rss
            tree = own + sum(c.memory_info().rss for c in ps.children(recursive=True) if c.is_running())
        except psutil.Error:
            own = tree = 0
        peaks["own"], peaks["tree"] = max(peaks["own"], own), max(peaks["tree"], tree)
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        time.sleep(0.05)
    reader.join(timeout=5)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{''.join(output)[-3000:]}")
    return usage.ru_maxrss * 1024, peaks["own"], peaks["tree"], seconds, "".join(output)


def extract(raw: Path, store: Path, env: dict[str, str]) -> tuple[int, int, int, float, str]:
    cmd = [sys.executable, "-m", "pipelines.cli", "extract", str(raw), "--out", str(store), "--set", "data.dataset=demo"]
    return peak_memory(cmd, env)


def speaker_frames() -> tuple[list[np.ndarray], np.ndarray, int]:
    """RGB frames and mono audio of one real speaker (GRID), or the demo face and voice."""
    import av

    clip = GRID / "swwp2s.mpg"
    if clip.exists():
        with av.open(str(clip)) as c:
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        with av.open(str(clip)) as c:
            resampler = av.AudioResampler(format="flt", layout="mono", rate=16000)
            audio = np.concatenate([o.to_ndarray().reshape(-1) for f in c.decode(audio=0) for o in resampler.resample(f)])
        return frames, audio, 16000
    from misr.data.democorpus import build_rig, synthesize_speech

    face = build_rig(224).image
    audio, _ = synthesize_speech(1.0, 3.0, 16000, np.random.default_rng(0))
    return [face] * 75, audio.astype(np.float32), 16000


def long_video(path: Path, minutes: float) -> None:
    """A 1280x720 25 fps recording: the speaker's clip looped, drifting slowly across the frame."""
    import av

    frames, audio, sr = speaker_frames()
    h, w = frames[0].shape[:2]
    n = int(minutes * 60 * 25)
    canvas = np.full((720, 1280, 3), 90, np.uint8)
    with av.open(str(path), "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=Fraction(25))
        video.width, video.height, video.pix_fmt = 1280, 720, "yuv420p"
        video.options = {"preset": "ultrafast", "crf": "23"}
        sound = out.add_stream("aac", rate=sr)
        sound.layout = "mono"
        for i in range(n):
            x = int(200 + 400 * (0.5 + 0.5 * np.sin(i / 250)))
            img = canvas.copy()
            img[200 : 200 + h, x : x + w] = frames[(i // 75) % 2 and 74 - i % 75 or i % 75]  # back and forth: no jump
            for packet in video.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        total = int(minutes * 60 * sr)
        looped = np.resize(audio, total).astype(np.float32)
        for start in range(0, total, 1024):
            frame = av.AudioFrame.from_ndarray(looped[None, start : start + 1024], format="flt", layout="mono")
            frame.sample_rate, frame.pts = sr, start
            for packet in sound.encode(frame):
                out.mux(packet)
        for packet in sound.encode(None):
            out.mux(packet)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", type=int, default=48)
    ap.add_argument("--large", type=int, default=192)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--skip-long", action="store_true", help="only the corpus-size comparison")
    args = ap.parse_args()
    try:
        import psutil  # noqa: F401
    except ImportError:
        sys.exit("this benchmark needs psutil (pip install psutil)")
    from misr.config.params import load_params
    from misr.data import democorpus

    params = load_params(REPO / "params.yaml", ["data.dataset=demo"])
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PREFECT_HOME": str(Path(tmp) / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        peaks = {}
        for n in (args.small, args.large):
            raw = Path(tmp) / f"raw-{n}"
            democorpus.generate(params.data.demo_corpus, raw, n_clips=n)
            exact, own, tree, seconds, _ = extract(raw, Path(tmp) / f"store-{n}", env)
            peaks[n] = exact
            mib = {k: v / 2**20 for k, v in (("exact", exact), ("own", own), ("tree", tree))}
            print(
                f"{n:>4} demo clips: extract {mib['exact']:7.0f} MiB (sampled {mib['own']:.0f}), "
                f"with children {mib['tree']:7.0f} MiB; {seconds:.0f}s"
            )
        ratio = peaks[args.large] / peaks[args.small]
        ok = ratio <= 1.2 and peaks[args.large] < 2 * GIB
        print(f"peak ratio {args.large}/{args.small} clips: {ratio:.2f} (target <= 1.2 and < 2 GiB: {'met' if ok else 'NOT met'})")
        if args.skip_long:
            return
        raw = Path(tmp) / "raw-long"
        (raw / "Raw" / "long").mkdir(parents=True)
        start = time.perf_counter()
        video = raw / "Raw" / "long" / "talk.mp4"
        long_video(video, args.minutes)
        with (raw / "label.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["video_id", "clip_id", "text", "label", "mode"])
            w.writerow(["long", "talk", "set white with p two soon " * 40, "0.0", "train"])
        made = time.perf_counter() - start
        exact, own, tree, seconds, output = extract(raw, Path(tmp) / "store-long", env)
        from misr.store.store import FeatureStore

        fs = FeatureStore(Path(tmp) / "store-long")
        visual = fs.decoded_seconds("visual")
        face = [r["face_ratio"] for r in _visual_rows(fs)]
        mib = video.stat().st_size / 2**20
        print(
            f"{args.minutes:g}-minute 1280x720 video ({mib:.0f} MiB, made in {made:.0f}s): extract {exact / 2**20:.0f} MiB peak "
            f"(with children {tree / 2**20:.0f} MiB) in {seconds:.0f}s; {sum(visual.values()):.0f} s of frames stored, "
            f"face in {face[0]:.3f} of them"
        )
        print(f"10-minute 720p target < 1 GiB: {'met' if exact < GIB else 'NOT met'}")


def _visual_rows(fs) -> list[dict]:
    import pyarrow.parquet as pq

    return [r for _, p in fs.part_files("visual") for r in pq.read_table(p, columns=["face_ratio"]).to_pylist()]


if __name__ == "__main__":
    main()
