"""MISR against its ablations and late fusion on a shifted synthetic test split, beside the oracle.

    python benchmarks/quality.py [--seeds 1111 1112 1113] [--epochs 30] [--models misr late_fusion ...]
                                 [-S key=value ...] [--json results.json]

The synthetic set (`misr synth`, settings from params.yaml unless overridden) has label imbalance and
cross-modal conflicts; its test split is shifted from train (balanced labels, a higher conflict rate).
Every model trains with the same data, encoders, optimiser and seeds; checkpoints are chosen on the
validation split; the table shows the test metrics (mean +- std over seeds) and the oracle's.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from misr.config import load_params  # noqa: E402
from misr.data.synth import generate  # noqa: E402
from misr.evaluation.convention import MOSI  # noqa: E402
from misr.evaluation.metrics import msa_metrics  # noqa: E402
from misr.stages.train import run as train  # noqa: E402
from misr.store import FeatureStore  # noqa: E402
from misr.training.batches import Batches  # noqa: E402
from misr.training.checkpoints import load_best  # noqa: E402
from misr.training.inference import predict  # noqa: E402

MODELS = ["misr", "misr_no_dist", "misr_no_inv", "misr_z_env", "late_fusion"]
KEYS = ["Non0_acc_2", "Mult_acc_7", "MAE", "Corr"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    ap.add_argument("--seeds", nargs="+", type=int, default=[1111, 1112, 1113])
    ap.add_argument("--epochs", type=int, default=None, help="default: train.epochs")
    ap.add_argument("-S", "--set", dest="overrides", action="append", default=[], help="params override, repeatable")
    ap.add_argument("--store", type=Path, default=None, help="reuse this synthetic store instead of generating one")
    ap.add_argument("--json", type=Path, default=None, help="also write the raw numbers here")
    args = ap.parse_args()

    overrides = list(args.overrides) + [f"train.seeds={args.seeds}"]
    if args.epochs:
        overrides.append(f"train.epochs={args.epochs}")
    base = load_params(REPO / "params.yaml", overrides)
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store or Path(tmp) / "store"
        if args.store is None:
            generate(base.data.synth, store)
        oracle = json.loads((store / "oracle.json").read_text())
        test = Batches(FeatureStore(store).load_split("test"), torch.device("cpu"))
        labels = test.data.labels.numpy()
        results: dict[str, list[dict[str, float]]] = {}
        for name in args.models:
            params = load_params(REPO / "params.yaml", overrides + [f"model.name={name}"])
            started = time.perf_counter()
            train(params.model, params.train, params.features, MOSI, store, Path(tmp) / name)
            results[name] = []
            for seed in args.seeds:
                model, _ = load_best(Path(tmp) / name / f"seed-{seed}")
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    results[name].append(msa_metrics(predict(model, test, 64), labels, "mosi"))
            print(f"{name}: trained {len(args.seeds)} seed(s) in {time.perf_counter() - started:.0f}s", file=sys.stderr)

    stats = oracle["label_stats"]
    print(
        f"synthetic set: train {stats['train']['n']} clips (positive {stats['train']['positive']:.2f}, conflict "
        f"{stats['train']['conflict']:.2f}); test {stats['test']['n']} clips (positive {stats['test']['positive']:.2f}, "
        f"conflict {stats['test']['conflict']:.2f}); seeds {args.seeds}"
    )
    header = f"{'model':<14}" + "".join(f"{k:>18}" for k in KEYS)
    print(header)
    print("-" * len(header))
    for name, runs in results.items():
        cells = []
        for k in KEYS:
            values = np.array([r[k] for r in runs])
            cells.append(f"{values.mean():.3f} +- {values.std():.3f}")
        print(f"{name:<14}" + "".join(f"{c:>18}" for c in cells))
    for label, block in (("oracle", oracle["oracle"]["test"]), ("train mean", oracle["train_mean_baseline"]["test"])):
        print(f"{label:<14}" + "".join(f"{block[k]:>18.3f}" for k in KEYS))
    if args.json:
        args.json.write_text(json.dumps({"results": results, "oracle": oracle}, indent=2))


if __name__ == "__main__":
    main()
