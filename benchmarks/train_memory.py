"""Peak memory of one MISR training step on a batch that holds long clips, per `model.max_frames`.

    python benchmarks/train_memory.py [--max-frames 4096 500] [--batch 32]

Each case is one optimisation step (forward, the loss terms with the invariance penalty, backward) of
the model of params.yaml on the CPU, in a fresh process with one thread, on a padded batch of --batch
clips: every clip 10 s long (250 frames at 25 frames/s, the demo store's 20 audio and 153 visual
features, 50 text tokens) except the long ones named by the case (10 s, 60 s, 3 min, 10 min, and a
3-minute plus a 10-minute clip together). It prints the process's peak resident memory (ru_maxrss)
for every case and setting, and the total time. Target: < 4 GiB with a 3- and a 10-minute clip in a
batch of 32.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CASES = {"10 s": [250], "60 s": [1500], "3 min": [4500], "10 min": [15000], "3 + 10 min": [4500, 15000]}
GIB = 2**30

STEP = """
import json, resource, sys, torch
sys.path.insert(0, {repo!r})
torch.set_num_threads(1)
from misr.config.params import load_params
from misr.model import InputSpec, build_model
from misr.model.misr import loss_terms, total_loss
p = load_params({params!r}, ["model.max_frames={max_frames}"])
torch.manual_seed(0)
model = build_model(p.model, InputSpec(audio_dim=20, visual_dim=153, text_kind="tokens", vocab_size=30522)).train()
b, long = {batch}, {long}
lengths = torch.tensor(long + [250] * (b - len(long)))
t = int(lengths.max())
batch = {{
    "text_ids": torch.randint(1, 30522, (b, 50)), "text_mask": torch.ones(b, 50, dtype=torch.long),
    "audio": torch.randn(b, t, 20), "audio_lengths": lengths,
    "visual": torch.randn(b, t, 153), "visual_lengths": lengths,
}}
y = torch.rand(b) * 6 - 3
groups = torch.arange(b) % 2
out = model(batch)
terms = loss_terms(p.model, out, y, groups)
total_loss(terms, {{"risk": 1.0, "kl_prior": 1e-3, "kl_pair": 1e-3, "invariance": 1.0}}).backward()
print(json.dumps({{"peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}}))
"""


def peak_of(max_frames: int, long: list[int], batch: int) -> int:
    script = STEP.format(repo=str(REPO), params=str(REPO / "params.yaml"), max_frames=max_frames, batch=batch, long=long)
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=1800)
    if res.returncode != 0:  # -9: the kernel's out-of-memory killer
        return -2 if "MemoryError" in res.stderr or res.returncode == -9 else -1
    return json.loads(res.stdout.strip().splitlines()[-1])["peak"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-frames", type=int, nargs="+", default=[4096, 500], help="the settings to compare (500: the default)")
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    started = time.perf_counter()
    print(f"peak RSS of one training step, batch {args.batch} (other clips 10 s), CPU, 1 thread")
    print(f"{'long clip(s) in the batch':<26}" + "".join(f"{'max_frames ' + str(m):>18}" for m in args.max_frames))
    results = {}
    for name, long in CASES.items():
        row = []
        for m in args.max_frames:
            peak = peak_of(m, long, args.batch)
            results[(name, m)] = peak
            row.append({-2: "out of memory", -1: "failed"}.get(peak, f"{peak / GIB:.2f} GiB"))
        print(f"{name:<26}" + "".join(f"{cell:>18}" for cell in row))
    for m in args.max_frames:
        peak = results[("3 + 10 min", m)]
        verdict = "met" if 0 < peak < 4 * GIB else "NOT met"
        print(f"target < 4 GiB with a 3- and a 10-minute clip, max_frames {m}: {verdict}")
    print(f"total time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
