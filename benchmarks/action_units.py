"""Are action-unit levels comparable across people? Raw against relative to the person (misr.features.person).

    python benchmarks/action_units.py CLIP_DIR [CLIP_DIR ...] [--demo STORE]

1. Real speakers (every clip under the folders given is taken as one person, e.g. the GRID clips and the
   real face clips): each clip's face frames are cut into halves in time. The person's baseline comes from
   the first half only; the person's neutral level is then read on the second half (the baseline's
   quantile of each action unit), raw and relative, in activation units (unclipped). The cross-speaker
   spread is the standard deviation of those levels over speakers, averaged over the 13 action units.
   Target: the relative spread at least 3x smaller than the raw one. (Measured on the frames the baseline
   came from, the relative spread would be 0 by construction.)
2. With --demo (a store extracted by visual extractor landmarks 5, e.g. data/features/demo): the Spearman
   correlation over the train and valid clips of the clip-mean AU12 with the visual label, raw and relative
   (persons from the face descriptors). Target: >= 0.9. Test clips are not read.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import numpy as np  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from video_dirs import videos_under  # noqa: E402

from misr.config.params import load_params  # noqa: E402
from misr.data.corpus import Clip  # noqa: E402
from misr.features import person  # noqa: E402
from misr.features.registry import extractors_for  # noqa: E402
from misr.features.visual import AU_TABLE  # noqa: E402
from misr.store.store import FeatureStore  # noqa: E402

QUANTILES_TRIED = (0.05, 0.10, 0.25, 0.5)
NAMES = [a[0] for a in AU_TABLE]
EYES = np.array([n in person.EYE_AUS for n in NAMES])


def speakers(dirs: list[Path]) -> None:
    extractor = extractors_for(load_params(REPO / "params.yaml").features)["visual"]
    halves = []
    for _, path in videos_under(dirs):
        clip = Clip(f"{path.stem}$_${path.stem}", path.stem, path.stem, path, "", "test", 0.0)
        frames = extractor.extract(clip)["frames"]
        au = frames[frames[:, 0] > 0, -len(AU_TABLE) :]
        if len(au) < 20:
            print(f"  {path.name}: {len(au)} face frames, left out")
            continue
        halves.append((path.name, au[: len(au) // 2], au[len(au) // 2 :]))
    print(f"{len(halves)} speakers (one per clip): {', '.join(n for n, _, _ in halves)}")
    groups = {"all": halves, "GRID (.mpg)": [h for h in halves if h[0].endswith(".mpg")]}
    groups["the others"] = [h for h in halves if not h[0].endswith(".mpg")]
    for q in QUANTILES_TRIED:
        print(f"neutral level: the {q:g} quantile of each speaker's second half (the eyes: the median); baseline from the first half")
        print(f"  {'speakers':<12} {'raw':>6} {'relative':>8} {'ratio':>6}   per action unit, raw / relative")
        for name, rows in groups.items():
            if len(rows) < 2:
                continue
            raw, rel = [], []
            level = np.where(EYES, 0.5, q)  # the eyes' neutral level is their median (an open eye), as in the view
            for _, first, second in rows:
                base = np.stack([np.quantile(first, q, axis=0), np.quantile(first, 0.5, axis=0)])[None]
                raw.append(np.diag(np.quantile(second, level, axis=0)))
                rel.append(np.diag(np.quantile(person.relative(second[None], base)[0], level, axis=0)))
            s_raw, s_rel = np.std(raw, axis=0), np.std(rel, axis=0)
            ratio = s_raw.mean() / max(s_rel.mean(), 1e-9)
            cells = " ".join(f"{a:.1f}/{b:.1f}" for a, b in zip(s_raw, s_rel, strict=True))
            print(f"  {name:<12} {s_raw.mean():6.2f} {s_rel.mean():8.2f} {ratio:6.2f}   {cells}")
    print("  (std over speakers in activation units, mean over the 13 action units; target: ratio >= 3)")
    print("  action units: " + " ".join(NAMES))


def demo(store_dir: Path) -> None:
    fs = FeatureStore(store_dir)
    labels = {r["clip_key"]: r["label_V"] for r in fs.clips().to_pylist() if r["split"] in ("train", "valid")}
    views = {"raw": person.view_for(fs, "raw")}
    for q in QUANTILES_TRIED:
        previous, person.BASELINE_QUANTILE = person.BASELINE_QUANTILE, q
        try:
            views[f"relative q={q:g}"] = person.view_for(fs, "relative")
        finally:
            person.BASELINE_QUANTILE = previous
    real = person.persons
    try:  # the same, without face descriptors: every video its own person
        person.persons = lambda videos: {v: v for v in videos}
        views["relative, per video"] = person.view_for(fs, "relative")
    finally:
        person.persons = real
    print(f"demo store {store_dir}: {len(labels)} train and valid clips; persons found: {views['relative q=0.1'].persons}")
    for name, view in views.items():
        au12, y = [], []
        for split in ("train", "valid"):
            data = view.apply_split(fs.load_split(split, modalities=("visual",), as_torch=False))
            i = data.visual.feature_names.index("AU12_r")
            for j, key in enumerate(data.clip_keys):
                au12.append(data.visual.values[j, : data.visual.lengths[j], i].mean())
                y.append(labels[key])
        rho = spearmanr(au12, y)[0]
        print(f"  Spearman AU12 vs label_V, {name:<20} {rho:.3f}  ({'met' if rho >= 0.9 else 'NOT met'}: target >= 0.9)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirs", nargs="*", type=Path)
    ap.add_argument("--demo", type=Path)
    args = ap.parse_args()
    started = time.perf_counter()
    if args.dirs:
        speakers(args.dirs)
    if args.demo:
        demo(args.demo)
    print(f"total time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
