"""Stage register: the promotion gate's decision (inside `dvc repro`, no git changes: `decide_only`)."""

from __future__ import annotations

from pathlib import Path

from misr.config import RegisterConfig
from misr.registry.gate import Decision, register


def run(
    register_cfg: RegisterConfig, eval_dir: str | Path, repo: str | Path = ".", commit: bool = False, decide_only: bool = False
) -> Decision:
    """Decide; unless `decide_only`, commit and, when the gate passes, tag the version and stage with GTO."""
    return register(register_cfg, repo, eval_dir, commit=commit, decide_only=decide_only)
