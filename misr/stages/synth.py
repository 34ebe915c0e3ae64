"""Stage synth: a synthetic MSA data set written straight into a feature store, with its oracle.

dvc.yaml runs `python -m misr.stages.synth STORE` (the settings of `data.synth`; compare/dvc.yaml adds
`--seed`, for a store no setting was chosen on); `misr synth` is the same with options for one-off stores.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from misr.config.synth import SynthConfig
from misr.data.synth import generate
from misr.stages import load, parser, say, text_table
from misr.util.command import run_command

LABEL_COLUMNS = ("split", "clips", "positive", "neutral", "conflict")
METRIC_KEYS = ("Non0_acc_2", "Mult_acc_7", "MAE", "Corr")
BOUND_COLUMNS = ("predictor", "split", *METRIC_KEYS)
CEILING_COLUMNS = ("metric", "split", "bayes", "erm", "predictor")


def run(
    synth: SynthConfig, out_dir: str | Path, force: bool = False, progress: Callable[[str, int, int], None] | None = None
) -> dict[str, Any]:
    """Write the store to `out_dir`; returns the oracle (label statistics, ceiling and floor metrics)."""
    return generate(synth, out_dir, force=force, progress=progress)


def label_rows(oracle: dict[str, Any]) -> list[list[str]]:
    return [
        [s, str(st["n"]), f"{st['positive']:.2f}", f"{st['neutral']:.2f}", f"{st['conflict']:.2f}"]
        for s, st in oracle["label_stats"].items()
    ]


def bound_rows(oracle: dict[str, Any]) -> list[list[str]]:
    """The ceiling (the oracle) and the floor (the training mean), split by split."""
    return [
        [name, split, *(f"{m[k]:.3f}" for k in METRIC_KEYS)]
        for name, block in (("oracle", oracle["oracle"]), ("train mean", oracle["train_mean_baseline"]))
        for split, m in block.items()
    ]


def ceiling_rows(oracle: dict[str, Any]) -> list[list[str]]:
    return [
        [metric, split, f"{c['bayes']:.3f}", f"{c['erm']:.3f}", c["predictor"]]
        for split, per_metric in oracle["ceilings"].items()
        for metric, c in per_metric.items()
    ]


def split_done(split: str, done: int, total: int) -> None:
    if done == total:
        say(f"synth {split}: {total} clips")


# keys of params.yaml a flag of the command sets (then not read from the file): key -> flag
FROM_COMMAND = {"data.synth.seed": "--seed"}


def main() -> None:
    p = parser("Write the synthetic store of data.synth to STORE (replacing it).", ("store", "the store to write"))
    p.add_argument("--seed", type=int, help="the data seed, instead of data.synth.seed (a store no setting was chosen on)")
    args = p.parse_args()

    def body() -> None:
        params, _, _ = load(args)
        synth = params.section("data.synth", SynthConfig)
        if args.seed is not None:
            synth = SynthConfig.model_validate({**synth.model_dump(), "seed": args.seed})
        oracle = run(synth, args.store, force=True, progress=split_done)
        print(text_table(LABEL_COLUMNS, label_rows(oracle)))
        print(text_table(BOUND_COLUMNS, bound_rows(oracle)))

    run_command(body)


if __name__ == "__main__":
    main()
