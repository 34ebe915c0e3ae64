"""`misr register`: the register stage (the promotion gate, then GTO tags)."""

from __future__ import annotations

from pathlib import Path

import typer

from pipelines.cli.common import ParamsOption, SetOption, app, load, out


@app.command("register", rich_help_panel="Pipeline stages (dvc.yaml)")
def register_command(
    eval_dir: Path | None = typer.Option(
        None, "--eval", "-e", help="the folder `misr evaluate` wrote \\[default: the active data set's eval_dir]"
    ),
    repo: Path = typer.Option(Path("."), "--repo", help="the git repository holding dvc.yaml and dvc.lock"),
    commit: bool = typer.Option(False, "--commit", help="commit uncommitted changes first (otherwise refuse)"),
    decide_only: bool = typer.Option(
        False, "--decide-only", help="apply the gate and record the decision, touch no git state (the DVC stage does this)"
    ),
    params: Path = ParamsOption,
    set_: list[str] | None = SetOption,
) -> None:
    """Apply the promotion gate; if it passes, register a new version with GTO and assign it the stage."""
    from misr.stages import register

    cfg = load(params, set_)
    reg = cfg.registration
    decision = register.run(reg, eval_dir or cfg.data.active.eval_dir, repo, commit=commit, decide_only=decide_only)
    verdict = "[green]promote[/]" if decision.promote else "[yellow]do not promote[/]"
    out.print(f"gate: {verdict} {reg.artifact} to '{decision.stage}'")
    for reason in decision.reasons:
        out.print(f"  - {reason}", highlight=False)
    if decision.version:
        out.print(f"registered {reg.artifact}@{decision.version} and assigned '{decision.stage}' (commit {decision.commit[:10]})")
    elif not decide_only:
        out.print("no tag created")
