"""Model registration behind a promotion gate: DVC `artifacts:` in dvc.yaml, versions and stages as GTO tags.

The gate compares the candidate's validation metrics (EVAL_DIR/metrics.json) with those of the model
now in the stage (read from the commit that stage points to):
  - it must beat the stage's model on `register.metric` by at least `register.min_margin`, and
  - be no worse than it on each of `register.guard_metrics` by more than `register.tolerance`.
The first model (nothing in the stage yet) must beat predicting the training mean on validation MAE
by `min_margin`. The decision and its reasons go to EVAL_DIR/registration/decision.json and to the
model card completed with them (EVAL_DIR/registration/model_card.md and .json).

Registering needs a commit that holds the model's dvc.lock: with uncommitted changes nothing happens
unless `commit=True`. Only a promoted candidate gets tags (`gto register`, `gto assign --stage`).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from misr.config.register import RegisterConfig
from misr.errors import MisrError
from misr.evaluation.eval_dir import EvalDir
from misr.msa.convention import MOSI, Convention, convention
from misr.registry import versions
from misr.util import proc
from misr.util.atomic import write_json

LOWER_IS_BETTER = {"MAE"}


@dataclass
class Decision:
    promote: bool
    reasons: list[str]
    stage: str
    metric: str
    candidate: dict[str, float]
    prod_version: str | None = None
    prod_metrics: dict[str, float] | None = None
    version: str | None = None
    commit: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _better(metric: str, a: float, b: float) -> float:
    """How much better a is than b (positive = better), whatever the metric's direction."""
    return b - a if metric in LOWER_IS_BETTER else a - b


def gate_metrics(cfg: RegisterConfig, conv: Convention) -> tuple[str, list[str]]:
    """The gate's metric and guards for data of convention `conv`, each one of its metrics, or a clear error:
    a guard the data does not report would be skipped, and the gate would be weaker than it says."""
    guards = list(conv.guards if cfg.guard_metrics is None else cfg.guard_metrics)
    unknown = [m for m in [cfg.metric, *guards] if m not in conv.metric_keys]
    if unknown:
        raise MisrError(
            f"register: {', '.join(unknown)} is not a metric of {conv.name} data (its metrics: {', '.join(conv.metric_keys)})",
            hint="set register.metric and register.guard_metrics (null: the convention's guards) to metrics of this data set",
        )
    return cfg.metric, guards


def gate(
    candidate: dict[str, float], prod: dict[str, float] | None, baseline_mae: float, cfg: RegisterConfig, conv: Convention = MOSI
) -> tuple[bool, list[str]]:
    metric, guards = gate_metrics(cfg, conv)
    reasons = []
    if prod is None:
        gain = baseline_mae - candidate["MAE"]
        ok = gain >= cfg.min_margin
        reasons.append(
            f"first model: validation MAE {candidate['MAE']:.4f} vs {baseline_mae:.4f} for predicting the training mean "
            f"({'better' if ok else 'not better'} by {gain:+.4f}; needed {cfg.min_margin})"
        )
        return ok, reasons
    gain = _better(metric, candidate[metric], prod[metric])
    ok = gain >= cfg.min_margin
    reasons.append(
        f"{metric}: {candidate[metric]:.4f} vs {prod[metric]:.4f} in {cfg.stage} "
        f"({'better' if ok else 'not better'} by {gain:+.4f}; needed {cfg.min_margin})"
    )
    for name in guards:
        if name not in candidate or name not in prod:
            reasons.append(f"{name}: not reported for both models, not checked")
            continue
        change = _better(name, candidate[name], prod[name])
        held = change >= -cfg.tolerance
        ok = ok and held
        verdict = "within" if held else "beyond"
        reasons.append(f"{name}: {candidate[name]:.4f} vs {prod[name]:.4f} ({verdict} the tolerance {cfg.tolerance}; change {change:+.4f})")
    return ok, reasons


def card_convention(folder: EvalDir) -> Convention:
    """The label convention of the evaluated data, as its model card records it (MOSI for a card without one)."""
    path = folder.card()
    card = json.loads(path.read_text()) if path.exists() else {}
    return convention(str((card.get("dataset") or {}).get("convention", "mosi")))


# ------------------------------------------------------------------------------------ git and gto


def metrics_at(repo: Path, commit: str, path: Path) -> dict[str, Any] | None:
    rel = os.path.relpath(path, repo)
    text = proc.git(repo, "show", f"{commit}:{rel}", check=False)
    return json.loads(text) if text else None


# ------------------------------------------------------------------------------------ decide and register


def decide(cfg: RegisterConfig, repo: Path, eval_dir: Path) -> Decision:
    metrics_path = EvalDir(eval_dir).metrics
    if not metrics_path.exists():
        raise MisrError(f"no {metrics_path}", hint="run `misr evaluate` first")
    metrics = json.loads(metrics_path.read_text())
    if "valid" not in metrics:
        raise MisrError(
            f"{metrics_path} has no validation metrics; the gate compares on validation", hint="evaluate.splits must include valid"
        )
    candidate = metrics["valid"]["mean"]
    baseline = float(metrics["train_mean_baseline"]["valid_MAE"])
    holder = versions.stage_holder(repo, cfg.artifact, cfg.stage)
    prod_metrics = None
    if holder is not None:
        prod_all = metrics_at(repo, holder[1], metrics_path)
        if prod_all is None or "valid" not in prod_all:
            raise MisrError(
                f"the {cfg.stage} model {holder[0]} has no validation metrics at {os.path.relpath(metrics_path, repo)} "
                f"in its commit {holder[1][:10]}; cannot compare"
            )
        prod_metrics = prod_all["valid"]["mean"]
    promote, reasons = gate(candidate, prod_metrics, baseline, cfg, card_convention(EvalDir(eval_dir)))
    return Decision(
        promote=promote,
        reasons=reasons,
        stage=cfg.stage,
        metric=cfg.metric,
        candidate=candidate,
        prod_version=holder[0] if holder else None,
        prod_metrics=prod_metrics,
        extra={"train_mean_valid_mae": baseline},
    )


def record(eval_dir: Path, decision: Decision, artifact: str) -> Path:
    """EVAL_DIR/registration/: decision.json, and the model card completed with the decision.

    A folder of its own, so that the register stage never rewrites the evaluate stage's outputs.
    """
    folders = EvalDir(eval_dir)
    payload = asdict(decision)
    for key in ("commit", "version"):  # known only once the decision itself is committed and tagged
        payload.pop(key)
    write_json(folders.decision, payload)
    card = folders.read_card()
    if card is not None:
        folders.write_card({**card, "artifact": artifact, "registration": payload}, folders.registration)
    return folders.registration


def register(cfg: RegisterConfig, repo: str | Path, eval_dir: str | Path, commit: bool = False, decide_only: bool = False) -> Decision:
    """Apply the gate; unless `decide_only`, commit the decision and, when it promotes, tag the commit with GTO.

    The tagged commit holds the registered model card (EVAL_DIR/registered/), which names the commit
    before it: the one that holds the model's code, dvc.lock and reports.
    """
    repo, eval_dir = Path(repo).resolve(), Path(eval_dir).resolve()
    if not decide_only:
        if not (repo / ".git").exists():
            raise MisrError(f"{repo} is not a git repository; registration records versions as git tags")
        dirty = proc.uncommitted(repo)
        if dirty and not commit:
            shown = "\n    ".join(dirty[:15]) + ("\n    ..." if len(dirty) > 15 else "")
            raise MisrError(
                f"uncommitted changes; registration needs a commit that holds the model's dvc.lock:\n    {shown}",
                hint="commit them, or pass --commit to commit everything now",
            )
        if dirty:
            proc.commit(repo, f"misr: candidate for {cfg.artifact}")
    decision = decide(cfg, repo, eval_dir)
    record(eval_dir, decision, cfg.artifact)
    if decide_only:
        return decision
    verdict = "promote" if decision.promote else "keep"
    if proc.uncommitted(repo):  # the decision record changed: it belongs to the registered commit
        proc.commit(repo, f"misr: registration decision for {cfg.artifact}: {verdict}", [str(eval_dir)])
    decision.commit = proc.head(repo)
    if decision.promote:
        folders = EvalDir(eval_dir)
        card = folders.read_card(folders.registration)
        if card is not None:
            card["git"] = {**card.get("git", {}), "registered_commit": decision.commit}
            folders.write_card(card, folders.registered)
            decision.commit = proc.commit(repo, f"misr: model card of {cfg.artifact} at {decision.commit[:10]}", [str(eval_dir)])
        decision.version = versions.tag(repo, cfg.artifact, cfg.stage, decision.reasons[0])
    return decision
