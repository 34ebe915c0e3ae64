"""The model card: what was trained on what, how well it does, and exactly which code and data produced it.

Written by `misr evaluate` (EVAL_DIR/model_card.md and .json); `misr register` completes a copy with
the gate's decision and, once committed, the commit that holds the model's code, dvc.lock and reports.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from misr.config.dataset import DatasetConfig
from misr.config.evaluate import EvaluateConfig
from misr.store.store import FeatureStore
from misr.util.hashing import tree_sha256
from misr.util.proc import git_state

if TYPE_CHECKING:
    from misr.evaluation.scoring import Evaluated

# The files that make the code of a model: "uncommitted changes" in a card means changes to these.
CODE_PATHS = ("misr", "pipelines", "dvc.yaml", "params.yaml", "pyproject.toml")


PACKAGES = ("misr", "torch", "numpy", "pyarrow", "prefect", "dvc", "gto", "dvclive", "transformers", "librosa", "av", "dlib-bin")


def dvc_lock_hashes(repo: Path, paths: dict[str, Path]) -> dict[str, str | None]:
    """The md5 that dvc.lock records for each path (DVC's own hash), where the pipeline produced it."""
    lock = repo / "dvc.lock"
    found: dict[str, str | None] = {name: None for name in paths}
    if not lock.exists():
        return found
    stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
    wanted = {name: os.path.normpath(str(p)) for name, p in paths.items()}
    for stage in stages.values():
        for entry in (stage.get("outs") or []) + (stage.get("deps") or []):
            for name, rel in wanted.items():
                if os.path.normpath(entry.get("path", "")) == rel and entry.get("md5"):
                    found[name] = entry["md5"]
    return found


def package_versions() -> dict[str, str | None]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            out[name] = None
    return out


def model_card(ev: Evaluated, dataset_name: str, dataset: DatasetConfig, evaluate_cfg: EvaluateConfig) -> dict[str, Any]:
    """Everything an auditor needs to re-create the model: data, settings, metrics, hashes, provenance."""
    repo = Path.cwd()
    convention = ev.settings.convention
    fs = FeatureStore(ev.store_dir)
    clips = fs.clips().to_pylist()
    distribution: dict[str, Any] = {}
    for split in ("train", "valid", "test"):
        labels = np.array([c["label"] for c in clips if c["split"] == split], dtype=float)
        if labels.size:
            classes = convention.class_of(labels)
            distribution[split] = {
                "clips": int(labels.size),
                "positive": int((labels > 0).sum()),
                "neutral": int((labels == 0).sum()),
                "negative": int((labels < 0).sum()),
                "mean": float(labels.mean()),
                "classes": {str(c): int((classes == c).sum()) for c in convention.classes},
            }
    paths = {"raw_data": dataset.raw_dir, "features": Path(ev.store_dir), "model": ev.model_dir.root}
    rel = {k: Path(os.path.relpath(v, repo)) for k, v in paths.items() if v is not None}
    lock = dvc_lock_hashes(repo, rel)
    hashes = {
        name: {
            "path": str(p) if p is not None else None,
            "dvc_md5": lock.get(name),
            "sha256": tree_sha256(Path(p)) if p is not None else None,
        }
        for name, p in paths.items()
    }
    seeds = ev.summary["seeds"]
    settings = yaml.safe_load(ev.settings.to_yaml())
    return {
        "model": ev.settings.model.name,
        "artifact": None,  # the registry's name for it, filled in by `misr register`
        "dataset": {
            "name": dataset_name,
            "source": dataset.source,
            "convention": convention.name,
            "quarantined_clips": fs.errors().num_rows,
            "label_distribution": distribution,
            "chose_settings": dataset.chose_settings,
            # reads of its test split on the ledger (misr.store.ledger) before this evaluation's; None: test not read
            "test_reads_before": ev.test_reads_before,
        },
        "metrics": {split: {"mean": m["mean"], "std": m["std"]} for split, m in ev.metrics.items() if split in ev.splits},
        "baseline": ev.metrics["train_mean_baseline"],
        "robustness": ev.robustness,
        "training": {
            "device": ev.summary["device"],
            "world_size": ev.summary["world_size"],
            "steps": int(sum(s.get("steps", 0) for s in seeds.values())),  # no wall time: the same model, the same card
            "seeds": {
                k: {
                    "best_epoch": v["best_epoch"],
                    "best_valid_mae": v["best_valid_mae"],
                    "epochs_run": v["epochs_run"],
                    "environments": (v.get("environments") or {}).get("name"),  # the groups this seed was made invariant across
                    "batches_missing_group": v.get("batches_missing_group", 0),  # training batches whose penalty lacked a group
                }
                for k, v in seeds.items()
            },
        },
        "params": {**settings, "evaluate": evaluate_cfg.model_dump(mode="json")},
        "environment": {"python": platform.python_version(), "platform": platform.platform(), "packages": package_versions()},
        "git": {**git_state(repo, code_paths(repo, dataset_name)), "code_md5": code_hashes(repo, f"train@{dataset_name}")},
        "hashes": hashes,
        "registration": None,
    }


def code_paths(repo: Path, dataset_name: str) -> tuple[str, ...]:
    """The code the model and this card come from: the code deps dvc.lock records for the data set's train and
    evaluate stages, with the pipeline's files (all of CODE_PATHS where the pipeline has not run), so an edit
    elsewhere in the working tree does not mark the card as made from uncommitted code."""
    stages = [code_hashes(repo, f"{stage}@{dataset_name}") for stage in ("train", "evaluate")]
    if not all(stages):
        return CODE_PATHS
    return tuple(sorted({path for deps in stages for path in deps} | {"dvc.yaml", "params.yaml", "pyproject.toml"}))


def code_hashes(repo: Path, stage: str) -> dict[str, str]:
    """The md5 that dvc.lock records for each code dependency of `stage` (DVC's own hash of the code)."""
    lock = repo / "dvc.lock"
    if not lock.exists():
        return {}
    entry = (yaml.safe_load(lock.read_text()) or {}).get("stages", {}).get(stage, {})
    return {d["path"]: d["md5"] for d in entry.get("deps") or [] if not d["path"].startswith("data/") and d.get("md5")}
