"""`misr retrain`, `misr schedule`, `misr history`: retraining when new data lands, and its audit trail."""

from __future__ import annotations

from pathlib import Path

import typer

from pipelines.cli.common import ParamsOption, SetOption, app, load, out, table

RepoOption = typer.Option(Path("."), "--repo", help="the pipeline's git repository")


def _params_in(repo: Path, params: Path) -> Path:
    return params if params.is_absolute() else repo / params


@app.command("retrain", rich_help_panel="Retraining")
def retrain_command(repo: Path = RepoOption, params: Path = ParamsOption, set_: list[str] | None = SetOption) -> None:
    """Retrain once if the watched corpus changed: dvc repro, gate, commit, register, push, audit line."""
    from pipelines.prefect_api import prefect_api
    from pipelines.retrain import retrain_flow

    load(_params_in(repo, params), set_)  # validate before the flow starts
    with prefect_api():  # the pipeline's own `misr` commands use the same server
        entry = retrain_flow(str(repo), str(params), list(set_ or []))
    shown = ("data_version", "decision", "version", "push", "reason")
    out.print(f"{entry['outcome']}: " + ", ".join(f"{k} {v}" for k, v in entry.items() if k in shown and v))


@app.command("schedule", rich_help_panel="Retraining")
def schedule_command(repo: Path = RepoOption, params: Path = ParamsOption, set_: list[str] | None = SetOption) -> None:
    """Serve the retraining flow as a Prefect deployment on `retrain.cron` (runs until stopped).

    Start a local server first for schedules and the UI (`prefect server start`, then
    `prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api`).
    """
    from pipelines.retrain import serve

    cfg = load(_params_in(repo, params), set_)
    out.print(f"serving misr-retrain on cron '{cfg.retrain.cron}' for {repo.resolve()} (Ctrl-C stops)")
    serve(repo, cfg)


@app.command("history", rich_help_panel="Retraining")
def history_command(repo: Path = RepoOption, params: Path = ParamsOption, set_: list[str] | None = SetOption) -> None:
    """The audit trail of retraining runs: when, data version, code commit, decision, registered version."""
    from misr.registry.retrain import history

    cfg = load(_params_in(repo, params), set_)
    log = repo / cfg.retrain.audit_log
    rows = []
    for r in history(log):
        changed = ", ".join(f"{k} {v}" for k, v in (r.get("changes") or {}).items() if v)
        note = r.get("reason") or (r.get("error") or "")[:60] or changed
        rows.append(
            [
                r["when"],
                r["outcome"],
                str(r.get("data_version") or "")[:10],
                str(r.get("code_commit") or "")[:10],
                r.get("decision") or "",
                r.get("version") or "",
                note,
            ]
        )
    columns = ("when", "outcome", "data version", "code commit", "decision", "version", "note")
    out.print(table(f"retraining history ({log})", columns, rows, right=False) if rows else "no retraining has run yet")
