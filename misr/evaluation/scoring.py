"""Scoring a trained model: every seed's best checkpoint on each split, the mean and spread over seeds.

Checkpoints were chosen on the validation split during training; test is only scored here. The label
convention and the batch size are the ones the model was trained with (they travel in its checkpoint).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from misr.config.evaluate import EvaluateConfig
from misr.evaluation.robustness import robustness_report
from misr.features.person import view_for
from misr.store import SplitData, ledger
from misr.store.store import FeatureStore
from misr.training.batches import Batches
from misr.training.checkpoints import RunSettings, check_fits
from misr.training.groups import group_maes, parts_of
from misr.training.inference import predict, score
from misr.training.model_dir import ModelDir


@dataclass
class Evaluated:
    settings: RunSettings
    store_dir: Path
    model_dir: ModelDir
    summary: dict[str, Any]  # the model's summary.json
    splits: dict[str, SplitData]
    per_seed: dict[str, dict[str, dict[str, float]]]  # split -> seed -> metrics
    metrics: dict[str, Any]  # split -> mean/std over seeds, and the training-mean baseline
    mean_preds: dict[str, np.ndarray]  # split -> the seeds' mean prediction per clip
    robustness: dict[str, Any] | None
    test_reads_before: int | None = None  # reads of the store's test split on the ledger before this one (None: not read)

    @property
    def seeds(self) -> list[str]:
        return list(self.summary["seeds"])


def score_model(evaluate_cfg: EvaluateConfig, store_dir: str | Path, model_dir: str | Path) -> Evaluated:
    store_dir, folder = Path(store_dir), ModelDir(model_dir)
    summary = folder.summary()
    loaded = folder.load_ensemble()
    models = [model for model, _ in loaded]
    settings: RunSettings = loaded[0][1]["settings"]
    convention, batch_size = settings.convention, settings.train.batch_size
    fs = FeatureStore(store_dir)
    view = view_for(fs, loaded[0][1]["spec"].action_units)  # as the model saw its training data
    test_reads_before = ledger.record_read(store_dir) if "test" in evaluate_cfg.splits else None  # on the record
    splits = {s: view.apply_split(fs.load_split(s)) for s in evaluate_cfg.splits}
    for data in splits.values():
        check_fits(loaded[0][1]["spec"], data, store_dir, str(folder.root))

    per_seed: dict[str, dict[str, dict[str, float]]] = {s: {} for s in splits}
    preds: dict[str, list[np.ndarray]] = {s: [] for s in splits}
    for seed, model in zip(summary["seeds"], models, strict=True):
        for split, data in splits.items():
            p = predict(model, Batches(data, torch.device("cpu")), batch_size)
            preds[split].append(p)
            per_seed[split][seed] = score(p, data.labels.numpy(), convention)
            groups = summary["seeds"][seed].get("valid_groups")
            if split == "valid" and groups and len(groups["group"]) == len(p):  # beside the pooled MAE, as in training
                per_seed[split][seed].update(group_maes(p, data.labels.numpy(), np.asarray(groups["group"]), parts_of(groups)))
    metrics: dict[str, Any] = {}
    for split, by_seed in per_seed.items():
        keys = next(iter(by_seed.values())).keys()
        metrics[split] = {
            "mean": {k: float(np.mean([m[k] for m in by_seed.values()])) for k in keys},
            # the sample SD (n - 1): the population SD is 18% low at 3 seeds; 0 for one seed
            "std": {k: float(np.std([m[k] for m in by_seed.values()], ddof=1)) if len(by_seed) > 1 else 0.0 for k in keys},
        }
    metrics["train_mean_baseline"] = {"valid_MAE": summary["train_mean_valid_mae"]}
    robustness = None
    if evaluate_cfg.robustness and "test" in splits:
        robustness = robustness_report(models, splits["test"], convention, batch_size)
    mean_preds = {s: np.mean(p, axis=0) for s, p in preds.items()}
    return Evaluated(settings, store_dir, folder, summary, splits, per_seed, metrics, mean_preds, robustness, test_reads_before)
