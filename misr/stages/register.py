"""Stage register: the promotion gate's decision.

dvc.yaml runs `python -m misr.stages.register EVAL_DIR --artifact NAME`: the decision only, recorded
in EVAL_DIR/registration/, with no git changes inside `dvc repro`. `misr register`, after a commit,
runs the same gate and creates the GTO tags when it passes.
"""

from __future__ import annotations

from pathlib import Path

from misr.config.register import RegisterConfig
from misr.registry.gate import Decision, register
from misr.stages import load, parser
from misr.util.command import run_command

# Set by the command line, not read from params.yaml: each data set's model is an artifact of its own.
FROM_COMMAND = {"register.artifact": "--artifact"}  # keys of params.yaml a flag of the command sets: key -> flag


def run(
    register_cfg: RegisterConfig, eval_dir: str | Path, repo: str | Path = ".", commit: bool = False, decide_only: bool = False
) -> Decision:
    """Decide; unless `decide_only`, commit and, when the gate passes, tag the version and stage with GTO."""
    return register(register_cfg, repo, eval_dir, commit=commit, decide_only=decide_only)


def main() -> None:
    cli = parser(
        "Apply the promotion gate to EVAL_DIR and record the decision (no git changes).", ("eval_dir", "the evaluate stage's folder")
    )
    cli.add_argument("--artifact", required=True, help="the model's name in the registry (dvc.yaml artifacts:)")
    args = cli.parse_args()

    def body() -> None:
        params, _, _ = load(args)
        cfg = params.section("register", RegisterConfig).model_copy(update={"artifact": args.artifact})
        decision = run(cfg, args.eval_dir, decide_only=True)
        print(f"gate: {'promote' if decision.promote else 'do not promote'} {cfg.artifact} to {decision.stage!r}")
        for reason in decision.reasons:
            print(f"  - {reason}")

    run_command(body)


if __name__ == "__main__":
    main()
