"""Stage evaluate: metrics per seed and over seeds, robustness, plots and the model card.

EVAL_DIR/
    metrics.json            valid and test: mean and std over seeds of every metric (dvc metrics)
    metrics_per_seed.json   each seed's metrics on valid and test
    robustness.json         test metrics where the modalities agree vs conflict, and with each modality zeroed
    plots/predictions.csv, confusion.csv, error_by_bin.csv     data for `dvc plots show`
    plots/*.png             the same plots and the training curves, for people who do not use DVC
    model_card.md, model_card.json   everything an auditor needs to re-create the model
                            (`misr register` adds the gate's decision, in EVAL_DIR/registration/)

dvc.yaml runs `python -m misr.stages.evaluate STORE MODEL_DIR EVAL_DIR --dataset NAME`.
"""

from __future__ import annotations

from pathlib import Path

from misr.config import DatasetConfig, EvaluateConfig
from misr.evaluation.card import card_markdown, model_card
from misr.evaluation.plots import write_plot_data, write_pngs
from misr.evaluation.scoring import Evaluated, score_model
from misr.stages import load, parser, text_table
from misr.util.atomic import check_writable, write_json, write_text
from misr.util.command import run_command


def run(
    evaluate: EvaluateConfig, dataset_name: str, dataset: DatasetConfig, store_dir: str | Path, model_dir: str | Path, out_dir: str | Path
) -> Evaluated:
    """Score the model in `model_dir` on the store and write everything to `out_dir`."""
    out = check_writable(out_dir)
    ev = score_model(evaluate, store_dir, model_dir)
    # per seed in a file of its own, so that `dvc metrics show` of metrics.json stays one readable row
    write_json(out / "metrics.json", ev.metrics)
    write_json(out / "metrics_per_seed.json", ev.per_seed)
    if ev.robustness is not None:
        write_json(out / "robustness.json", ev.robustness)
    focus = "test" if "test" in ev.splits else next(iter(ev.splits))
    convention = ev.settings.convention
    write_plot_data(out / "plots", ev.splits[focus], ev.mean_preds[focus], convention)
    write_pngs(out / "plots", ev.splits[focus].labels.numpy(), ev.mean_preds[focus], ev.model_dir, ev.seeds, convention)
    card = model_card(ev, dataset_name, dataset, evaluate)
    write_json(out / "model_card.json", card)
    write_text(out / "model_card.md", card_markdown(card))
    return ev


def headline_rows(ev: Evaluated) -> list[list[str]]:
    """Mean +- std over seeds of the convention's headline metrics, split by split."""
    keys = ev.settings.convention.headline
    return [[split, *(f"{m['mean'][k]:.3f} +- {m['std'][k]:.3f}" for k in keys)] for split, m in ev.metrics.items() if "mean" in m]


def main() -> None:
    args = parser(
        "Score the model on the store; write metrics, plots, robustness and the model card.",
        ("store", "the feature store"),
        ("model_dir", "the folder the train stage wrote"),
        ("out_dir", "where the reports go"),
    ).parse_args()

    def body() -> None:
        params, name, dataset = load(args)
        ev = run(params.evaluate, name, dataset, args.store, args.model_dir, args.out_dir)
        print(f"{ev.settings.model.name}: mean +- std over {len(ev.seeds)} seed(s)")
        print(text_table(("split", *ev.settings.convention.headline), headline_rows(ev)))

    run_command(body)


if __name__ == "__main__":
    main()
