"""The comparison's report: numbers (JSON), a table for people (Markdown) and a picture (PNG).

Validation comes first, then test: each model's metrics (the data set's metric set) as mean +- std over
seeds (and stores); the paired test difference of each model against the reference, on MAE and on the
2-class accuracy, with a 95% interval over stores, each model's training seeds and test clips, a plain
reading of it and what the design can resolve (`misr.compare.statistics`); the same on the
robustness report's agree and conflict subsets; the seeds each model wins against the reference; the time.
Every number is computed from the saved predictions (predictions.parquet), which hold all a reader needs to
recompute it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from misr.compare.comparison import Comparison, Predictions
from misr.compare.statistics import difference_interval, spread
from misr.msa.convention import Convention
from misr.training.inference import score
from misr.util.atomic import atomic_path, write_json, write_text


def summarise(c: Comparison, convention: Convention, reference: str, tuning: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Every number of the report, from the comparison's predictions; `tuning` says how much each model was tuned."""
    report: dict[str, Any] = {
        "stores": [str(s.store) for s in c.stores],
        "models": c.labels,
        "reference": reference,
        "seeds": c.seeds,
        "convention": convention.name,
        "headline": list(convention.headline),
        "clips": {split: [len(s.labels[split]) for s in c.stores] for split in ("valid", "test")},
        # how often each store's test split had been read before this comparison (misr.store.ledger)
        "test_reads_before": {str(s.store): s.test_reads_before for s in c.stores},
    }
    for split in ("valid", "test"):
        report[split] = {label: metrics_over_runs(c.stores, split, label, convention) for label in c.labels}
    report["differences"] = {}
    subsets: dict[str, Any] = {}
    rules = {s.conflict_rule for s in c.stores if s.conflict is not None}
    if rules and all(s.conflict is not None for s in c.stores):
        subsets = {"rule": "; ".join(sorted(r for r in rules if r)), "agree": {}, "conflict": {}}
    for label in c.labels:
        if label == reference:
            continue
        report["differences"][label] = paired(c.stores, label, reference, convention, None)
        for name in ("agree", "conflict") if subsets else ():
            masks = [s.conflict if name == "conflict" else ~s.conflict for s in c.stores]
            if min(int(m.sum()) for m in masks) >= 2:
                subsets[name][label] = paired(c.stores, label, reference, convention, masks)
    if subsets:
        for name in ("agree", "conflict"):
            masks = [s.conflict if name == "conflict" else ~s.conflict for s in c.stores]
            subsets[name]["n"] = [int(m.sum()) for m in masks]
            subsets[name]["MAE"] = {
                label: spread(
                    [
                        float(convention.clip_errors(p[m], s.labels["test"][m]).mean())
                        for s, m in zip(c.stores, masks, strict=True)
                        for p in s.preds["test"][label].values()
                    ]
                )
                for label in c.labels
                if min(int(x.sum()) for x in masks) >= 1
            }
    report["subsets"] = subsets
    report["wins"] = {label: wins(c.stores, label, reference, convention) for label in c.labels if label != reference}
    report["seconds"] = {
        "total": c.seconds,
        "trained": c.trained,
        "reused": c.reused,
        "per_seed_training": {label: float(np.mean(v)) for label, v in c.fit_seconds.items()},
    }
    report["contenders"] = {
        label: {
            "tuning": tuning_of(label, tuning or {}),
            "runs": [{"store": str(s.store), "seed": seed, **chose} for s in c.stores for seed, chose in s.chose.get(label, {}).items()],
        }
        for label in c.labels
    }
    report["interval"] = {"level": 0.95, "over": "stores, seeds and clips" if len(c.stores) > 1 else "seeds and clips"}
    return report


def metrics_over_runs(stores: list[Predictions], split: str, label: str, convention: Convention) -> dict[str, dict[str, float]]:
    """Each metric's mean and std over the runs (stores x seeds)."""
    runs = [score(p, s.labels[split], convention) for s in stores for p in s.preds[split][label].values()]
    return {k: spread([r[k] for r in runs]) for k in runs[0]}


def paired(
    stores: list[Predictions],
    label: str,
    reference: str,
    convention: Convention,
    masks: list[np.ndarray] | None,
) -> dict[str, Any]:
    """Model minus reference on test: MAE and the 2-class accuracy, with intervals over stores, each model's
    training seeds and clips (misr.compare.statistics)."""
    mae, acc, acc_name = [], [], ""
    for i, s in enumerate(stores):
        y = s.labels["test"]
        keep = masks[i] if masks is not None else np.ones_like(y, dtype=bool)
        errors = {m: np.stack([convention.clip_errors(p, y) for p in s.preds["test"][m].values()]) for m in (label, reference)}
        mae.append((errors[label][:, keep], errors[reference][:, keep]))
        hits = {}
        for m in (label, reference):
            per_seed = [convention.two_class(p, y) for p in s.preds["test"][m].values()]
            acc_name, counted = per_seed[0][0], per_seed[0][2].astype(bool)
            hits[m] = np.stack([h for _, h, _ in per_seed]).astype(np.float64)
        use = keep & counted
        acc.append((hits[label][:, use], hits[reference][:, use]))
    out = {"MAE": difference_interval(mae).as_dict()}
    if all(a.shape[1] > 0 for a, _ in acc):
        out[acc_name] = difference_interval(acc).as_dict()
    return out


def wins(stores: list[Predictions], label: str, reference: str, convention: Convention) -> dict[str, int]:
    """Runs (store x seed) where the model's test MAE is below the reference's, seed paired with seed."""
    won = total = 0
    for s in stores:
        y = s.labels["test"]
        for seed, p in s.preds["test"][label].items():
            ref = s.preds["test"][reference].get(seed)
            if ref is None:
                continue
            total += 1
            won += bool(convention.clip_errors(p, y).mean() < convention.clip_errors(ref, y).mean())
    return {"wins": won, "of": total}


# ------------------------------------------------------------------------------------------- writing


def write(report: dict[str, Any], c: Comparison, out: Path) -> dict[str, Path]:
    """comparison.json, comparison.md, comparison.png and predictions.parquet in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out / "comparison.json",
        "markdown": out / "comparison.md",
        "png": out / "comparison.png",
        "predictions": out / "predictions.parquet",
    }
    write_json(paths["json"], report)
    write_text(paths["markdown"], markdown(report))
    plot(report, paths["png"])
    write_predictions(c, paths["predictions"])
    return paths


def write_predictions(c: Comparison, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols: dict[str, list[Any]] = {k: [] for k in ("store", "model", "seed", "split", "clip_key", "label", "prediction", "conflict")}
    for s in c.stores:
        for split in ("valid", "test"):
            for model, by_seed in s.preds[split].items():
                for seed, p in by_seed.items():
                    n = len(p)
                    cols["store"] += [str(s.store)] * n
                    cols["model"] += [model] * n
                    cols["seed"] += [int(seed)] * n
                    cols["split"] += [split] * n
                    cols["clip_key"] += s.clip_keys[split]
                    cols["label"] += s.labels[split].tolist()
                    cols["prediction"] += p.tolist()
                    conflict = s.conflict.tolist() if split == "test" and s.conflict is not None else [None] * n
                    cols["conflict"] += conflict
    with atomic_path(path) as tmp:
        pq.write_table(pa.table(cols), tmp)


def fmt(m: dict[str, float]) -> str:
    return f"{m['mean']:.4f} ± {m['std']:.4f}"


def interval(d: dict[str, float]) -> str:
    return f"{d['estimate']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]"


def test_reads_line(r: dict[str, Any]) -> str:
    """What the ledger says of the test splits: a test read before is no longer a clean test."""
    before = r.get("test_reads_before", {})
    read = {store: n for store, n in before.items() if n}
    if not read:
        return "Test reads before this comparison: none on the ledger (test-reads.jsonl; reads before the ledger are not on it)."
    listed = ", ".join(f"{store} {n} time(s)" for store, n in read.items())
    return f"Test reads before this comparison: {listed}; choices made since those reads are not tested by this one."


def markdown(r: dict[str, Any]) -> str:
    keys, ref = r["headline"], r["reference"]
    runs = f"{len(r['seeds'])} seed(s)" + (f" x {len(r['stores'])} stores" if len(r["stores"]) > 1 else "")
    lines = [
        "# Model comparison",
        "",
        f"Stores: {', '.join(r['stores'])} ({r['convention']} convention). Seeds: {', '.join(map(str, r['seeds']))}.",
        f"Clips: valid {sum(r['clips']['valid'])}, test {sum(r['clips']['test'])}. Checkpoints chosen on valid; test read once, last.",
        test_reads_line(r),
        "",
    ]
    for split in ("valid", "test"):
        lines += [
            f"## {split.capitalize()}: mean ± std over {runs}",
            "",
            "| model | " + " | ".join(keys) + " |",
            "|---" * (len(keys) + 1) + "|",
        ]
        lines += [f"| {m} | " + " | ".join(fmt(r[split][m][k]) for k in keys) + " |" for m in r["models"]]
        lines.append("")
    lines += [
        f"## Test: each model minus {ref}, 95% interval over {r['interval']['over']}",
        "",
        "MAE: negative is better than the reference; 2-class accuracy: positive is better. The interval counts each",
        "model's training seeds as drawn at random (and the stores, when there are several), not only the test clips.",
        "",
    ]
    if r["differences"]:
        acc = next((k for k in next(iter(r["differences"].values())) if k != "MAE"), None)
        lines += [f"| model | MAE | {acc or ''} | wins (test MAE, seed by seed) | reading (MAE) |", "|---|---|---|---|---|"]
        for m, d in r["differences"].items():
            w = r["wins"][m]
            other = interval(d[acc]) if acc in d else ""
            lines.append(f"| {m} | {interval(d['MAE'])} | {other} | {w['wins']} of {w['of']} | {d['MAE']['reading']} |")
        first = next(iter(r["differences"].values()))["MAE"]
        lines += ["", f"Counted: {first['counts']}.", ""]
    if r["subsets"]:
        s = r["subsets"]
        lines += [
            f"## Test where the modalities agree or conflict ({s['rule']})",
            "",
            "| model | subset | clips | MAE | minus " + ref + " |",
            "|---|---|---|---|---|",
        ]
        for name in ("agree", "conflict"):
            for m in r["models"]:
                if m not in s[name]["MAE"]:
                    continue
                diff = interval(s[name][m]["MAE"]) if m in s[name] else "(reference)"
                lines.append(f"| {m} | {name} | {sum(s[name]['n'])} | {fmt(s[name]['MAE'][m])} | {diff} |")
        lines.append("")
    lines += contender_lines(r)
    sec = r["seconds"]
    lines += [f"Total time {sec['total']:.0f} s ({sec['trained']} seed(s) trained, {sec['reused']} reused from the cache).", ""]
    return "\n".join(lines)


def tuning_of(label: str, tuning: Mapping[str, str]) -> str:
    """What `compare.tuning` says of a model (MMSA's models: its `mmsa` entry unless one is named)."""
    stated = tuning.get(label) or (tuning.get("mmsa") if label.lower().startswith("mmsa:") else None)
    return stated or "not stated"


def contender_lines(r: dict[str, Any]) -> list[str]:
    """How each contender came about: its tuning (as stated), and per seed the epoch and groups it chose."""
    lines = ["## How each model came about", "", "| model | tuning | seeds: chosen epoch, environments |", "|---|---|---|"]
    for label, info in r.get("contenders", {}).items():
        lines.append(f"| {label} | {info['tuning']} | {runs_text(info['runs'], len(r['stores']) > 1)} |")
    return [*lines, ""]


def runs_text(runs: list[dict[str, Any]], name_stores: bool) -> str:
    """Each run's choices: `seed 1: epoch 12, invariant across 'visual disagrees'` (with its store when several)."""
    said = [f"seed {run['seed']}" + (f" on {Path(run['store']).name}" if name_stores else "") + f": {chose_text(run)}" for run in runs]
    return "; ".join(said) or "not recorded"


def chose_text(chose: dict[str, Any]) -> str:
    parts = [f"epoch {chose['best_epoch']}" if chose.get("best_epoch") is not None else None]
    parts.append(f"invariant across '{chose['environments']}'" if chose.get("environments") else None)
    parts.append(chose.get("selected_on") if chose.get("best_epoch") is None else None)  # MMSA's models: their own rule
    return ", ".join(p for p in parts if p) or "not recorded"


def plot(r: dict[str, Any], path: Path) -> None:
    """Left: test MAE per model (mean ± std over runs). Right: each model minus the reference, with its interval."""
    from misr.evaluation.plots import _pyplot, _save

    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 0.5 * len(r["models"]) + 2.2))
    models = r["models"]
    y = np.arange(len(models))
    means = [r["test"][m]["MAE"]["mean"] for m in models]
    stds = [r["test"][m]["MAE"]["std"] for m in models]
    left.barh(y, means, xerr=stds, color="#4c72b0", alpha=0.8)
    left.set_yticks(y, models)
    left.invert_yaxis()
    left.set_xlabel("test MAE (mean ± std over runs)")
    others = list(r["differences"])
    yd = np.arange(len(others))
    est = np.array([r["differences"][m]["MAE"]["estimate"] for m in others])
    low = np.array([r["differences"][m]["MAE"]["low"] for m in others])
    high = np.array([r["differences"][m]["MAE"]["high"] for m in others])
    right.errorbar(est, yd, xerr=[est - low, high - est], fmt="o", color="#dd8452", capsize=4)
    right.axvline(0, color="grey", lw=1)
    right.set_yticks(yd, others)
    right.invert_yaxis()
    right.set_xlabel(f"test MAE minus {r['reference']} (95% interval)")
    _save(fig, path)
