"""Scheduled retraining: a Prefect flow over `misr.registry.retrain`'s steps; `misr schedule` serves it on a cron.

changed corpus? -> record its version (dvc add) -> dvc repro of the data set's stages (extract, train,
evaluate, gate) -> commit the .dvc file, dvc.lock and reports -> GTO register + assign when the gate
passes -> dvc push -> audit line and a Markdown artifact with the before/after metrics. Any failure
puts code, dvc.lock, models and reports back as they were, leaves the corpus as the user left it, and
fails the flow run with the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from misr.config.params import Params, load_params
from misr.errors import MisrError
from misr.registry.gate import register as apply_gate
from misr.registry.retrain import (
    Snapshot,
    append_history,
    changes,
    check_is_source,
    check_repository,
    data_state,
    decision_of,
    describe,
    eval_dir,
    metrics_of,
    now_utc,
    pipeline_stages,
    read_last_state,
    record_corpus,
    registration_stage,
    watched_corpus,
    write_last_state,
)
from misr.util import proc
from misr.util.lock import Busy, exclusive
from pipelines.user_errors import quiet_user_error_tracebacks

quiet_user_error_tracebacks()


@task(name="record-corpus", cache_policy=NO_CACHE)
def record(repo: Path, corpus: Path) -> str:
    return record_corpus(repo, corpus)


@task(name="dvc-repro", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=10)
def reproduce(repo: Path, target: str) -> None:
    proc.stream(repo, "dvc", "repro", target)


@task(name="commit", cache_policy=NO_CACHE)
def commit(repo: Path, message: str) -> str:
    if not proc.uncommitted(repo):  # the same data and code gave byte-identical outputs
        return proc.head(repo)
    return proc.commit(repo, message)


@task(name="register", cache_policy=NO_CACHE)
def register(params: Params, repo: Path) -> str | None:
    return apply_gate(params.registration, repo, eval_dir(repo, params)).version


@task(name="dvc-push", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def push(repo: Path) -> str:
    remotes = proc.run(repo, "dvc", "remote", "list").stdout.strip()
    if not remotes:
        return "no DVC remote configured: nothing pushed"
    proc.run(repo, "dvc", "push")
    return "pushed"


@flow(name="misr-retrain", log_prints=True)
def retrain_flow(repo: str = ".", params_file: str = "params.yaml", overrides: list[str] | None = None) -> dict[str, Any]:
    root = Path(repo).resolve()
    params = load_params(root / params_file, overrides or [])
    cfg = params.retrain
    check_repository(root)  # before anything is written into the folder (the lock, the audit log)
    # a repository without a commit yet: no commit to name, and the refusal below still gets its audit line
    code_commit = proc.git(root, "rev-parse", "--verify", "-q", "HEAD", check=False) or None
    entry: dict[str, Any] = {"when": now_utc(), "dataset": cfg.dataset, "code_commit": code_commit}
    audit = root / cfg.audit_log
    state_file = audit.with_name("last_data.json")
    try:
        with exclusive(root / cfg.lock_file, "another retraining"):
            corpus = watched_corpus(params, root)
            stages = pipeline_stages(root)
            check_is_source(stages, corpus, root, cfg.dataset)
            target = registration_stage(stages, eval_dir(root, params), cfg.dataset)
            state = data_state(corpus)
            last = read_last_state(state_file)
            diff = changes(last, state)
            entry.update(data_version=state["version"], changes=diff, summary=describe(diff))
            if last is not None and not any(diff.values()):
                entry["outcome"] = "unchanged"
                append_history(audit, entry)
                _artifact(entry, None, None)
                print(f"data {str(state['version'])[:10]} unchanged since the last retraining: nothing to do")
                return entry
            snapshot = Snapshot(root, corpus, stages, target)
            before = metrics_of(root, params)
            print(f"{cfg.dataset}: {entry['summary']} in {corpus.relative_to(root)}; reproducing {target}")
            try:
                entry["corpus_version"] = record(root, corpus)
                reproduce(root, target)
                decision = decision_of(root, params)
                verdict = "promote" if decision["promote"] else "keep"
                message = f"retrain {cfg.dataset}: data {str(state['version'])[:10]} ({entry['summary']}); gate: {verdict}"
                entry["commit"] = commit(root, message)
                entry["version"] = register(params, root) if decision["promote"] else None
                entry["push"] = push(root) if cfg.push else "off (retrain.push)"
            except BaseException as exc:
                entry.update(outcome="failed", error=str(exc)[-2000:], restored=snapshot.restore())
                append_history(audit, entry)
                raise
            write_last_state(state_file, state)
            after = metrics_of(root, params)
            entry.update(outcome="retrained", decision=verdict, reasons=decision["reasons"])
            append_history(audit, entry)
            _artifact(entry, before, after)
            return entry
    except Busy as exc:
        entry.update(outcome="skipped", reason=str(exc))
        append_history(audit, entry)
        print(f"skipped: {exc}")
        return entry
    except MisrError as exc:  # refused before any change (the corpus, the pipeline, a dirty checkout)
        if "outcome" not in entry:
            entry.update(outcome="refused", error=str(exc)[-2000:])
            append_history(audit, entry)
        raise


def _artifact(entry: dict[str, Any], before: dict | None, after: dict | None) -> None:
    lines = [
        f"# Retraining of `{entry['dataset']}`: {entry['outcome']}",
        "",
        f"Data version `{entry.get('data_version')}`: {entry.get('summary')}.",
        "",
    ]
    if after is not None:
        keys = ["MAE", "Non0_acc_2", "Corr"]
        lines += ["| metric (valid mean) | before | after |", "|---|---|---|"]
        for k in keys:
            b = f"{before['valid']['mean'][k]:.4f}" if before and "valid" in before else "-"
            lines.append(f"| {k} | {b} | {after['valid']['mean'][k]:.4f} |")
        lines += ["", f"Gate: **{entry.get('decision')}**; " + "; ".join(entry.get("reasons", [])), ""]
        lines += [f"Registered version: {entry.get('version') or 'none'}; commit `{entry.get('commit')}`; {entry.get('push')}."]
    create_markdown_artifact(key="misr-retrain", markdown="\n".join(lines), description=f"retraining of {entry['dataset']}")


def serve(repo: Path, params: Params, every: float | None = None) -> None:
    """Serve the flow as a deployment on `retrain.cron`, or every `every` seconds (blocks; Ctrl-C stops it)."""
    retrain_flow.serve(name="misr-retrain", **_schedule(params, every), parameters={"repo": str(repo.resolve())})


def deployment(repo: Path, params: Params, every: float | None = None):
    """The same deployment, as an object (e.g. to `apply()` it to a work pool in production)."""
    return retrain_flow.to_deployment(name="misr-retrain", **_schedule(params, every), parameters={"repo": str(repo.resolve())})


def _schedule(params: Params, every: float | None) -> dict[str, Any]:
    return {"interval": every} if every else {"cron": params.retrain.cron}
