"""A model card as people read it: Markdown from the card's JSON (misr.evaluation.card builds that where
the store is read). The registration stage completes a card with this alone, so it reads no feature store.
"""

from __future__ import annotations

from typing import Any

import yaml

from misr.msa.convention import convention


def training_line(training: dict[str, Any]) -> str:
    where = f"Device {training['device']} ({training['world_size']} process(es))"
    if "steps" in training:
        return f"{where}, {training['steps']} optimisation steps in all."
    return f"{where}, {training['seconds']:.0f} s in all."  # a card written before cards held no times


def card_markdown(card: dict[str, Any]) -> str:
    keys = list(convention(card["dataset"]["convention"]).metric_keys)  # the convention's own metrics (SIMS has no Non0_*)
    title = f"{card['artifact']} ({card['model']})" if card.get("artifact") else card["model"]
    lines = [f"# Model card: {title}", ""]
    ds = card["dataset"]
    lines += [
        "## Data",
        "",
        f"Data set `{ds['name']}` ({ds['source']}, {ds['convention']} labels); {ds['quarantined_clips']} clip(s) quarantined.",
        "",
    ]
    lines += ["| split | clips | positive | neutral | negative | mean label |", "|---|---|---|---|---|---|"]
    for split, d in ds["label_distribution"].items():
        lines.append(f"| {split} | {d['clips']} | {d['positive']} | {d['neutral']} | {d['negative']} | {d['mean']:.3f} |")
    lines += ["", test_line(ds), ""]
    lines += ["", "## Metrics (mean +- std over seeds)", ""]
    first = next(iter(card["metrics"].values()))["mean"]
    keys = [k for k in keys if k in first] or list(first)
    lines += ["| split | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for split, m in card["metrics"].items():
        lines.append(f"| {split} | " + " | ".join(f"{m['mean'][k]:.3f} +- {m['std'][k]:.3f}" for k in keys) + " |")
    lines += ["", f"Validation MAE of predicting the training mean: {card['baseline']['valid_MAE']:.3f}.", ""]
    valid = card["metrics"].get("valid", {}).get("mean", {})
    if "worst_group_MAE" in valid:
        lines += [
            "Validation MAE by group (each training partition: the clips where its modality disagrees with the label "
            "in sign, and the rest): "
            + ", ".join(f"{k[:-4].replace('_', ' ')} {v:.3f}" for k, v in by_group(valid).items())
            + f"; group mean {valid['group_mean_MAE']:.3f}, worst {valid['worst_group_MAE']:.3f}.",
            "",
        ]
    rob = card.get("robustness")
    if rob:
        lines += [
            "## Robustness (test)",
            "",
            f"Conflict rule: {rob['conflict_rule']}.",
            "",
            "| subset | clips | MAE | Non0_acc_2 |",
            "|---|---|---|---|",
        ]
        for name, m in rob["subsets"].items():
            lines.append(f"| {name} | {m['n']} | {m.get('MAE', float('nan')):.3f} | {m.get('Non0_acc_2', float('nan')):.3f} |")
        lines += ["", "| modality zeroed | MAE | Non0_acc_2 |", "|---|---|---|"]
        for name, m in rob["zeroed"].items():
            lines.append(f"| {name} | {m.get('MAE', float('nan')):.3f} | {m.get('Non0_acc_2', float('nan')):.3f} |")
        lines.append("")
    tr = card["training"]
    lines += ["## Training", "", training_line(tr), ""]
    for seed, s in tr["seeds"].items():
        groups = f"; invariant across '{s['environments']}'" if s.get("environments") else ""
        if s.get("batches_missing_group"):
            groups += f" ({s['batches_missing_group']} training batches lacked a group)"
        lines.append(
            f"- seed {seed}: best validation MAE {s['best_valid_mae']:.4f} at epoch {s['best_epoch']} of {s['epochs_run']}{groups}"
        )
    lines += ["", "## Provenance", "", provenance_line(card["git"]), ""]
    lines += ["| what | path | DVC md5 (dvc.lock) | sha256 of the content |", "|---|---|---|---|"]
    for name, h in card["hashes"].items():
        lines.append(f"| {name} | {h['path']} | {h['dvc_md5'] or 'not in dvc.lock'} | {h['sha256'] or 'absent'} |")
    env = card["environment"]
    lines += [
        "",
        f"Python {env['python']} on {env['platform']}; " + ", ".join(f"{k} {v}" for k, v in env["packages"].items() if v) + ".",
        "",
    ]
    reg = card.get("registration")
    lines += ["## Registration", ""]
    if reg:
        lines += [
            f"Gate decision: **{'promote' if reg['promote'] else 'do not promote'}** to `{reg['stage']}`"
            + (f" (now holding {reg['prod_version']})" if reg.get("prod_version") else " (empty until now)")
            + ".",
            "",
        ]
        lines += [f"- {r}" for r in reg["reasons"]] + [""]
        lines += ["A promoted model is the commit that the GTO tags of this decision point to (`gto show`).", ""]
    else:
        lines += ["Not decided yet: `misr register` applies the promotion gate.", ""]
    lines += ["## Parameters", "", "```yaml", _params_yaml(card["params"]).rstrip(), "```", ""]
    return "\n".join(lines)


def test_line(ds: dict[str, Any]) -> str:
    """Whether test was scored, and how often it had been read before (the ledger, test-reads.jsonl)."""
    if ds.get("chose_settings"):
        return "Test not scored: settings were chosen on this data set, so its test split is no test (valid only)."
    before = ds.get("test_reads_before")
    if before is None:
        return "Test not scored (evaluate.splits)."
    if before == 0:
        return "No earlier read of this test split on the ledger (test-reads.jsonl; reads before the ledger are not on it)."
    return f"Test split read {before} time(s) before this evaluation (test-reads.jsonl): choices made since are not tested by it."


def _params_yaml(params: dict[str, Any]) -> str:
    return yaml.safe_dump(params, sort_keys=False)


def provenance_line(git: dict[str, Any]) -> str:
    """Which commit holds the code (and, once registered, the data) this card describes."""
    line = f"Code at git commit `{git.get('commit')}`"
    if git.get("code_dirty"):
        line += " with uncommitted changes to the code"
    elif git.get("code_dirty") is None:
        line += " (git could not tell whether the code was committed)"
    if git.get("registered_commit"):
        line += f"; code, dvc.lock and these reports committed together as `{git['registered_commit']}`"
    return line + "."


def by_group(metrics: dict[str, float]) -> dict[str, float]:
    """The per-group MAEs of a metrics record (e.g. visual_disagrees_MAE), in their order."""
    return {k: v for k, v in metrics.items() if k.endswith(("_agrees_MAE", "_disagrees_MAE"))}
