"""Do the extracted features follow the demo corpus's labels? Face coverage and rank correlations.

    python benchmarks/demo_features.py [STORE]      (default: data/features/demo, after `dvc repro`)

Prints the share of frames with a face, and the Spearman correlation over clips of the clip-mean
AU12 (lip corner puller) with the visual label, of the mean voiced f0 and of the loud-frame energy
(90th percentile of rms_db) with the audio label. Targets: face >= 0.99, each Spearman >= 0.7.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from misr.store.store import FeatureStore  # noqa: E402


def main() -> None:
    store = FeatureStore(sys.argv[1] if len(sys.argv) > 1 else REPO / "data" / "features" / "demo")
    labels = {r["clip_key"]: r for r in store.clips().to_pylist()}
    au12, f0, energy, visual, audio, face = [], [], [], [], [], []
    for split in ("train", "valid", "test"):
        d = store.load_split(split, as_torch=False)
        iv, iface = d.visual.feature_names.index("AU12_r"), d.visual.feature_names.index("face")
        i0, ie = d.audio.feature_names.index("f0_hz"), d.audio.feature_names.index("rms_db")
        for j, key in enumerate(d.clip_keys):
            v = d.visual.values[j, : d.visual.lengths[j]]
            a = d.audio.values[j, : d.audio.lengths[j]]
            au12.append(v[:, iv].mean())
            face.append(v[:, iface].mean())
            voiced = a[:, i0][a[:, i0] > 0]
            f0.append(voiced.mean() if voiced.size else 0.0)
            energy.append(np.percentile(a[:, ie], 90))
            visual.append(labels[key]["label_V"])
            audio.append(labels[key]["label_A"])
    print(f"{len(au12)} clips; face found in {np.mean(face):.4f} of frames (target >= 0.99)")
    for name, x, y in (("AU12 vs label_V", au12, visual), ("voiced f0 vs label_A", f0, audio), ("energy vs label_A", energy, audio)):
        rho = spearmanr(x, y)[0]
        print(f"Spearman {name:<22} {rho:.3f}  ({'met' if rho >= 0.7 else 'NOT met'}: target >= 0.7)")


if __name__ == "__main__":
    main()
