"""Stage evaluate: metrics per seed and over seeds, robustness, plots and the model card, into EVAL_DIR
(its layout: `misr.evaluation.eval_dir`).

dvc.yaml runs `python -m misr.stages.evaluate STORE MODEL_DIR EVAL_DIR --dataset NAME`.
"""

from __future__ import annotations

from pathlib import Path

from misr.config.dataset import DatasetConfig
from misr.config.evaluate import EvaluateConfig
from misr.evaluation.card import model_card
from misr.evaluation.card_text import by_group
from misr.evaluation.eval_dir import EvalDir
from misr.evaluation.plots import write_plot_data, write_pngs
from misr.evaluation.scoring import Evaluated, score_model
from misr.stages import load, parser, text_table
from misr.util.atomic import check_writable, write_json
from misr.util.command import run_command


def run(
    evaluate: EvaluateConfig, dataset_name: str, dataset: DatasetConfig, store_dir: str | Path, model_dir: str | Path, out_dir: str | Path
) -> Evaluated:
    """Score the model in `model_dir` on the store and write everything to `out_dir`."""
    out = EvalDir(check_writable(out_dir))
    if dataset.chose_settings and "test" in evaluate.splits:  # its test was used to choose: valid only, and said so
        evaluate = evaluate.model_copy(update={"splits": [s for s in evaluate.splits if s != "test"] or ["valid"]})
    ev = score_model(evaluate, store_dir, model_dir)
    # per seed in a file of its own, so that `dvc metrics show` of metrics.json stays one readable row
    write_json(out.metrics, ev.metrics)
    write_json(out.metrics_per_seed, ev.per_seed)
    # a declared output even when test is not scored (a data set settings were chosen on): it says so
    write_json(out.robustness, ev.robustness if ev.robustness is not None else {"test": "not scored", "splits": list(ev.splits)})
    focus = "test" if "test" in ev.splits else next(iter(ev.splits))
    convention = ev.settings.convention
    write_plot_data(out.plots, ev.splits[focus], ev.mean_preds[focus], convention)
    write_pngs(out.plots, ev.splits[focus].labels.numpy(), ev.mean_preds[focus], ev.model_dir, ev.seeds, convention)
    out.write_card(model_card(ev, dataset_name, dataset, evaluate))
    return ev


def headline_rows(ev: Evaluated) -> list[list[str]]:
    """Mean +- std over seeds of the convention's headline metrics, split by split."""
    keys = ev.settings.convention.headline
    return [[split, *(f"{m['mean'][k]:.3f} +- {m['std'][k]:.3f}" for k in keys)] for split, m in ev.metrics.items() if "mean" in m]


def group_line(ev: Evaluated) -> str | None:
    """The validation groups' MAE beside the pooled one (mean over seeds), where training set the groups."""
    valid = ev.metrics.get("valid", {}).get("mean", {})
    if "worst_group_MAE" not in valid:
        return None
    parts = [f"{k[:-4].replace('_', ' ')} {v:.3f}" for k, v in by_group(valid).items()]
    return (
        f"valid MAE {valid['MAE']:.3f}; by group: {', '.join(parts)}; "
        f"mean {valid['group_mean_MAE']:.3f}, worst {valid['worst_group_MAE']:.3f}; chosen on {ev.summary.get('selected_on', 'mae')}"
    )


def main() -> None:
    args = parser(
        "Score the model on the store; write metrics, plots, robustness and the model card.",
        ("store", "the feature store"),
        ("model_dir", "the folder the train stage wrote"),
        ("out_dir", "where the reports go"),
    ).parse_args()

    def body() -> None:
        params, name, dataset = load(args)
        ev = run(params.section("evaluate", EvaluateConfig), name, dataset, args.store, args.model_dir, args.out_dir)
        print(f"{ev.settings.model.name}: mean +- std over {len(ev.seeds)} seed(s)")
        print(text_table(("split", *ev.settings.convention.headline), headline_rows(ev)))
        if group_line(ev):
            print(group_line(ev))

    run_command(body)


if __name__ == "__main__":
    main()
