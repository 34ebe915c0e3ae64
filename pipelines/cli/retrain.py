"""`misr retrain`, `misr schedule`, `misr history`: retraining when new data lands, and its audit trail."""

from __future__ import annotations

from pathlib import Path

import typer

from pipelines.cli.common import ParamsOption, SetOption, app, load, out

RepoOption = typer.Option(Path("."), "--repo", help="the pipeline's git repository")


def _params_in(repo: Path, params: Path) -> Path:
    return params if params.is_absolute() else repo / params


@app.command("retrain", rich_help_panel="Retraining")
def retrain_command(repo: Path = RepoOption, params: Path = ParamsOption, set_: list[str] | None = SetOption) -> None:
    """Retrain once if the watched corpus changed: dvc repro, gate, commit, register, push, audit line."""
    from misr.registry.retrain import check_repository
    from pipelines.prefect_api import prefect_api
    from pipelines.retrain import retrain_flow

    load(_params_in(repo, params), set_)  # validate before the flow starts
    check_repository(repo.resolve())
    with prefect_api():  # the pipeline's own `misr` commands use the same server
        entry = retrain_flow(str(repo), str(params), list(set_ or []))
    shown = ("data_version", "decision", "version", "push", "reason")
    said = [entry["summary"]] if entry.get("summary") else []
    said += [f"{k} {v}" for k, v in entry.items() if k in shown and v]
    out.print(f"{entry['outcome']}: " + ", ".join(said))


@app.command("schedule", rich_help_panel="Retraining")
def schedule_command(
    repo: Path = RepoOption,
    every: float | None = typer.Option(
        None, "--every", min=1, help="run every this many seconds instead of on retrain.cron", metavar="SECONDS"
    ),
    params: Path = ParamsOption,
    set_: list[str] | None = SetOption,
) -> None:
    """Serve the retraining flow as a Prefect deployment on `retrain.cron` (runs until stopped).

    Start a local server first for schedules and the UI (`prefect server start`, then
    `prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api`). A tick that comes while a run
    holds the lock records "skipped" and stops.
    """
    from pipelines.retrain import serve

    cfg = load(_params_in(repo, params), set_)
    when = f"every {every:g} s" if every else f"on cron '{cfg.retrain.cron}'"
    out.print(f"serving misr-retrain {when} for {repo.resolve()} (Ctrl-C stops)")
    serve(repo, cfg, every)


@app.command("history", rich_help_panel="Retraining")
def history_command(repo: Path = RepoOption, params: Path = ParamsOption, set_: list[str] | None = SetOption) -> None:
    """The audit trail of retraining runs: when, outcome, data version, code commit, gate and version, what changed."""
    from rich import box
    from rich.table import Table

    from misr.registry.retrain import describe, history

    cfg = load(_params_in(repo, params), set_)
    log = repo / cfg.retrain.audit_log
    entries = history(log)
    if not entries:
        out.print(f"no retraining has run yet ({log})")
        return
    # fits 80 columns: fixed-width cells stay whole, the note wraps
    t = Table(box=box.SIMPLE_HEAD, padding=0, pad_edge=False, title=f"retraining history of {cfg.retrain.dataset}", title_justify="left")
    for name in ("when (UTC)", "outcome", "data", "code", "gate"):
        t.add_column(name, no_wrap=True)
    t.add_column("what changed / why", overflow="fold")
    for r, repeats, last in _runs_of_skips(entries):
        gate = r.get("decision") or ""
        if r.get("version"):
            gate = f"{r['version']} {cfg.registration.stage}"
        note = r.get("reason") or r.get("error") or r.get("summary") or describe(r.get("changes") or {})
        if repeats > 1:  # ticks that found a run holding the lock, one row for the lot
            note = f"{repeats} ticks until {str(last['when']).replace('T', ' ')[:16]}: another retraining was running"
        t.add_row(
            str(r["when"]).replace("T", " ")[:16],
            r["outcome"],
            str(r.get("data_version") or "")[:7],
            str(r.get("code_commit") or "")[:7],
            gate,
            " ".join(note.split())[:200],
        )
    out.print(t)
    out.print(f"log: {log}", overflow="fold")


def _runs_of_skips(entries: list[dict]) -> list[tuple[dict, int, dict]]:
    """The entries with each run of consecutive "skipped" ones as one: (first, how many, last)."""
    rows: list[tuple[dict, int, dict]] = []
    for r in entries:
        if r.get("outcome") == "skipped" and rows and rows[-1][0].get("outcome") == "skipped":
            first, n, _ = rows[-1]
            rows[-1] = (first, n + 1, r)
        else:
            rows.append((r, 1, r))
    return rows
