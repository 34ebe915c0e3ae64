"""Which environments each seed of MISR is made invariant across, on the shortcut benchmark.

    python benchmarks/environments.py [--seeds 10] [--workers 2] [--quick] [-S key=value ...]

For each way of making the groups (model.groups.partition all / auto; sentiments from the store's
label_T/A/V or from the model's own unimodal predictions, as on MOSI), every training seed is trained
through the warm-up and one epoch with the penalty (the groups are fixed when the penalty switches on),
and its summary says which disagreement splits it kept. Printed per way: how many seeds kept the
shortcut modality's split, the splits the seeds kept, and how well the kept shortcut split matches the
true flipped clips (recall and precision of the "disagrees" group against the clips whose shortcut
modality is flipped against the label). Target: the flipped split among the environments of 10 of 10
seeds. The data is params.yaml's data.synth (the shortcut scenario); test is never loaded.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from misr.config.params import load_params  # noqa: E402

WAYS = {
    "all, labels": ["model.groups.partition=all"],
    "auto, labels": ["model.groups.partition=auto"],
    "all, predictions": ["model.groups.partition=all", "model.groups.source=predictions"],
    "auto, predictions": ["model.groups.partition=auto", "model.groups.source=predictions"],
}


def through_the_switch(job: tuple[list[str], Path, Path, int]) -> dict[str, Any]:
    """Train one seed until one epoch past the warm-up; its environments and its training clips' group codes."""
    import torch

    from misr.msa.convention import MOSI
    from misr.stages.train import run as train

    overrides, store, out, seed = job
    p = load_params(REPO / "params.yaml", overrides)
    epochs = p.model.invariance.warmup_epochs + 1
    p = load_params(REPO / "params.yaml", [*overrides, f"train.epochs={epochs}", f"train.seeds=[{seed}]", "train.threads=1"])
    summary = train(p.model, p.train, p.features, MOSI, store, out)
    state = torch.load(out / f"seed-{seed}" / "last.pt", weights_only=True)
    return {"environments": summary["seeds"][str(seed)]["environments"], "groups": state["groups"]}


def flipped_match(found: dict[str, Any], codes: list[int], flipped: np.ndarray, modality: str) -> tuple[float, float] | None:
    """Recall and precision of the seed's `modality` disagreement group against the truly flipped clips."""
    parts = found.get("parts") or []
    if modality not in parts:
        return None
    from misr.training.groups import group_bits

    disagrees = group_bits(codes, len(parts))[:, parts.index(modality)].numpy().astype(bool)
    hits = (disagrees & flipped).sum()
    return float(hits / max(1, flipped.sum())), float(hits / max(1, disagrees.sum()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=10, help="training seeds per way (1111, 1112, ...)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="trainings side by side, one thread each")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 2 seeds, a small store, a tiny model")
    ap.add_argument("-S", "--set", dest="overrides", action="append", default=[], help="params override, repeatable")
    args = ap.parse_args()
    from misr.data.synth import generate
    from misr.store.store import FeatureStore

    base = list(args.overrides)
    if args.quick:
        args.seeds = 2
        base = ["data.synth.n_clips={train: 200, valid: 48, valid_ood: 48, test: 16}", "model.d_model=16", "model.n_heads=2",
                "model.n_layers=1", "model.invariance.warmup_epochs=2", *base]  # fmt: skip
    p = load_params(REPO / "params.yaml", base)
    modality = p.data.synth.shortcut.modality
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="misr-environments-") as tmp:
        store = Path(tmp) / "store"
        generate(p.data.synth, store)
        train = FeatureStore(store).load_split("train", as_torch=False)
        flipped = np.sign(train.unimodal_labels[modality]) * np.sign(train.labels) < 0
        seeds = [1111 + i for i in range(args.seeds)]
        jobs = [([*base, *extra], store, Path(tmp) / f"{w}-{s}".replace(", ", "-"), s) for w, extra in WAYS.items() for s in seeds]
        with ProcessPoolExecutor(args.workers) as pool:
            results = list(pool.map(through_the_switch, jobs))
    print(
        f"shortcut benchmark (data seed {p.data.synth.seed}, {len(flipped)} training clips, {int(flipped.sum())} with the "
        f"{modality} cue flipped); seeds {seeds[0]}-{seeds[-1]}, groups fixed after {p.model.invariance.warmup_epochs} warm-up epochs"
    )
    print(f"{'groups':<20}{'seeds with the ' + modality + ' split':>28}   {'recall, precision of its disagrees group':<42}splits kept")
    for i, way in enumerate(WAYS):
        mine = results[i * len(seeds) : (i + 1) * len(seeds)]
        kept = Counter(f"{r['environments']['name']} ({r['environments']['source']})" for r in mine)
        matches = [m for r in mine if (m := flipped_match(r["environments"], r["groups"], flipped, modality))]
        match = f"{np.mean([m[0] for m in matches]):.2f}, {np.mean([m[1] for m in matches]):.2f}" if matches else "-"
        print(f"{way:<20}{f'{len(matches)} of {len(mine)}':>28}   {match:<42}{dict(kept)}")
    print(f"total time {time.perf_counter() - started:.0f} s ({len(jobs)} trainings, {args.workers} side by side)")


if __name__ == "__main__":
    main()
