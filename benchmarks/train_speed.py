"""Training speed of MISR beside late fusion with the same encoders on the same data.

    python benchmarks/train_speed.py [--clips 960] [--like mosi] [--epochs 3] [-S key=value ...]

Trains each model for a few epochs on one synthetic store (device from train.device: CUDA when
present) and reports the mean optimisation-step time (forward, backward, update; validation and the
one-off inference of the groups excluded) and training samples per second. MISR's penalty is on from
the second epoch (its usual ERM warm-up would leave it out of a short run). Target: MISR costs at most 1.5x late fusion per step.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from misr.config.params import load_params  # noqa: E402
from misr.data.synth import generate  # noqa: E402
from misr.msa.convention import MOSI  # noqa: E402
from misr.stages.train import run as train  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=960, help="training clips")
    ap.add_argument("--like", choices=["mosi", "mosei"], default="mosi")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("-S", "--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    dims = {"mosi": (5, 20), "mosei": (74, 35)}[args.like]
    common = [
        f"data.synth.n_clips={{train: {args.clips}, valid: 64, valid_ood: 16, test: 16}}",
        f"data.synth.audio_dim={dims[0]}",
        f"data.synth.visual_dim={dims[1]}",
        f"train.epochs={args.epochs}",
        f"train.patience={args.epochs + 1}",
        "model.invariance.warmup_epochs=1",  # the penalty on after one epoch, so its cost is in the mean
        "train.seeds=[1111]",
        *args.overrides,
    ]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = load_params(REPO / "params.yaml", common)
        generate(base.data.synth, Path(tmp) / "store")
        for name in ("late_fusion", "misr"):
            params = load_params(REPO / "params.yaml", common + [f"model.name={name}"])
            summary = train(params.model, params.train, params.features, MOSI, Path(tmp) / "store", Path(tmp) / name)
            r = summary["seeds"]["1111"]
            rows[name] = (r["step_ms"], params.train.batch_size * 1000.0 / r["step_ms"], r["device"])
    for name, (ms, rate, device) in rows.items():
        print(f"{name:<12} {ms:8.1f} ms/step  {rate:8.0f} samples/s  ({device}, batch {base.train.batch_size}, {args.like}-like)")
    ratio = rows["misr"][0] / rows["late_fusion"][0]
    print(f"ratio misr/late_fusion per step: {ratio:.2f}  (target <= 1.5: {'met' if ratio <= 1.5 else 'NOT met'})")


if __name__ == "__main__":
    main()
