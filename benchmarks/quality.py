"""MISR against its ablations and late fusion on the shortcut benchmark: settings chosen on valid_ood, test read once.

    python benchmarks/quality.py select [-S key=value ...]    # one setting: valid and valid_ood MAE (the DVC stage)
    python benchmarks/quality.py search [--only NAME ...]     # the search, queued and run as DVC experiments
    python benchmarks/quality.py choose                       # every setting tried (`dvc exp show`), ranked on valid_ood
    python benchmarks/quality.py report [--data-seed 2027] [--seeds 1111 ... 1115] [--json FILE]

The data is `misr synth`'s shortcut scenario (data.synth in params.yaml): the visual modality carries the
label's sign in ~90% of train and valid clips and the reversed sign in ~60% of valid_ood and test clips.

1. `search` queues every setting of SEARCH as a DVC experiment of the pipeline benchmarks/quality/dvc.yaml
   (`dvc exp run --queue -S ...`), then runs the queue (`dvc queue start`). Each experiment is `select`: it
   trains `model.name` for train.seeds on data.synth (data seed data.synth.seed) and records the MAE on
   valid (the training distribution) and on valid_ood (drawn like test). Test is never loaded.
2. `choose` lists them all, best valid_ood first per model; the chosen settings go into params.yaml, each
   with a comment naming the experiment that justifies it.
3. `report` trains every model with params.yaml's settings (the ablations switch one part of MISR off) on
   a fresh data seed that no choice has seen, for 5 training seeds, and reads test once. It prints
   validation first, then test (mean +- std over seeds), the paired difference MISR - baseline with a
   bootstrap 95% CI over test clips, the share of the late-fusion-to-oracle gap MISR closes, the reliance
   on the shortcut modality, and each target of issue 10, met or not.

`late_fusion_no_cue` is a reference: late fusion trained and tested on the same clips with the shortcut
modality's sentiment muted (`generate(cue="muted")`), about the best an invariant model can do with
these encoders.

Reliance: the mean absolute change of the prediction when the shortcut modality's expressed sentiment is
negated (the counterfactual store of `generate(..., cue="reversed")`: same clips, same noise, only that
modality's features differ), per unit of expressed sentiment changed: mean|y(x) - y(x')| / mean|e_v - e_v'|.
0 for a model that ignores the cue; ~1 for one that follows it one to one.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from misr.config import Params, load_params  # noqa: E402
from misr.errors import MisrError  # noqa: E402

PIPELINE = "benchmarks/quality/dvc.yaml"
SELECTION = REPO / "benchmarks" / "quality" / "selection.json"
MODELS = ["misr", "misr_no_dist", "misr_no_inv", "misr_z_env", "late_fusion"]
# A reference, not a competitor: late fusion trained and tested where the shortcut modality carries no
# sentiment (`generate(cue="muted")`): about the best a model that ignores the cue can do with these encoders.
REFERENCE = "late_fusion_no_cue"
REPORT_SEEDS = [1111, 1112, 1113, 1114, 1115]
BOOTSTRAP = 2000

# The settings tried, each a DVC experiment: name -> overrides of params.yaml. MISR starts from environments
# that are groups of clips (issue 10, item 2), the penalty at full weight after 10 ERM epochs (the validation
# MAE of ERM levels off near epoch 10 on this data) and light distributional constraints; what is chosen is
# the penalty's weight (lambda) and kind, the weight of the constraints, the environments and the fusion.
MISR_BASE = {
    "model.name": "misr",
    "model.environments": "groups",
    "model.invariance.kind": "vrex",
    "model.loss.kind": "l1",
    "model.invariance.weight": 10.0,
    "model.invariance.warmup_epochs": 10,
    "model.invariance.schedule": "step",
    "model.kl.prior_weight": 0.001,
    "model.kl.pairwise_weight": 0.001,
    "model.fusion": "softmax",
}
SEARCH: dict[str, dict[str, Any]] = {
    "late_fusion": {"model.name": "late_fusion"},
    "misr_no_inv": {**MISR_BASE, "model.name": "misr_no_inv"},
    **{f"misr-vrex-w{w:g}": {**MISR_BASE, "model.invariance.weight": w} for w in (1.0, 3.0, 10.0, 30.0)},
    "misr-irm-w10": {**MISR_BASE, "model.invariance.kind": "irm", "model.loss.kind": "pseudo_huber"},
    "misr-vrex-w10-kl0.01": {**MISR_BASE, "model.kl.prior_weight": 0.01, "model.kl.pairwise_weight": 0.01},
    "misr-vrex-w10-zenv": {**MISR_BASE, "model.environments": "z_plus_unimodal"},
    "misr-vrex-w10-poe": {**MISR_BASE, "model.fusion": "poe"},
    # the second round: the two best of the first, combined
    "misr-vrex-w1-poe": {**MISR_BASE, "model.invariance.weight": 1.0, "model.fusion": "poe"},
}


def params_with(overrides: list[str]) -> Params:
    p = load_params(REPO / "params.yaml", overrides)
    synth = p.data.synth
    if synth.scenario != "shortcut" or "valid_ood" not in synth.n_clips:
        raise MisrError(
            "benchmarks/quality.py needs the shortcut scenario with a valid_ood split",
            hint="set data.synth.scenario=shortcut and data.synth.n_clips.valid_ood in params.yaml",
        )
    return p


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def train_and_predict(p: Params, store: Path, out: Path, splits: dict[str, Path]) -> dict[int, dict[str, np.ndarray]]:
    """Train p.model.name for p.train.seeds; per seed, the predictions on each (name -> store) split."""
    import torch

    from misr.msa.convention import MOSI
    from misr.stages.train import run as train
    from misr.store import FeatureStore
    from misr.training.batches import Batches
    from misr.training.inference import predict
    from misr.training.model_dir import ModelDir

    def progress(kind: str, info: dict[str, Any]) -> None:
        if kind == "seed":
            log(f"  {p.model.name}: seed {info['seed']} ({info['epochs']} epochs at most)")

    started = time.perf_counter()
    train(p.model, p.train, p.features, MOSI, store, out, progress=progress)
    data = {name: Batches(FeatureStore(path).load_split(name.split(":")[-1]), torch.device("cpu")) for name, path in splits.items()}
    preds = {}
    for seed in p.train.seeds:
        model, _ = ModelDir(out).load_best(seed)
        preds[seed] = {name: predict(model, batches, 64) for name, batches in data.items()}
    log(f"  {p.model.name}: {len(p.train.seeds)} seed(s) in {time.perf_counter() - started:.0f} s")
    return preds


def labels_of(store: Path, split: str) -> np.ndarray:
    from misr.store import FeatureStore

    return FeatureStore(store).load_split(split).labels.numpy().astype(np.float64)


def mae(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.abs(pred - y)))


# ------------------------------------------------------------------------------------------- select


def select(args: argparse.Namespace) -> None:
    from misr.data.synth import generate

    p = params_with(args.overrides)
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        log(f"select: {p.model.name} on data seed {p.data.synth.seed}, training seeds {p.train.seeds}")
        generate(p.data.synth, store)
        preds = train_and_predict(p, store, Path(tmp) / "model", {"valid": store, "valid_ood": store})
        y = {split: labels_of(store, split) for split in ("valid", "valid_ood")}
    per_seed = {str(s): {split: mae(preds[s][split], y[split]) for split in y} for s in preds}
    result = {"model": p.model.name, "data_seed": p.data.synth.seed}
    for split in y:
        values = [v[split] for v in per_seed.values()]
        result[f"{split}_mae"] = float(np.mean(values))
        result[f"{split}_mae_std"] = float(np.std(values))
    result["per_seed"] = per_seed
    out = Path(args.out) if args.out else SELECTION
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"{p.model.name}: valid MAE {result['valid_mae']:.4f} +- {result['valid_mae_std']:.4f}, "
        f"valid_ood MAE {result['valid_ood_mae']:.4f} +- {result['valid_ood_mae_std']:.4f}"
    )


# ------------------------------------------------------------------------------------------- search


def dvc(*args: str, capture: bool = False) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=REPO, text=True, capture_output=capture)
    if res.returncode != 0:
        raise MisrError(f"dvc {' '.join(args)} failed" + (f": {res.stderr.strip()}" if capture else ""))
    return res


def experiments() -> list[dict[str, Any]]:
    """Every experiment of the selection pipeline: name, params (flattened), metrics."""
    # every commit: experiments stay attached to the commit they were queued from
    shown = json.loads(dvc("exp", "show", "--json", "--force", "--all-commits", capture=True).stdout)
    rows = []
    for commit in shown:
        for exp in commit.get("experiments") or []:
            rev = exp["revs"][0]
            data = rev.get("data") or {}
            metrics = ((data.get("metrics") or {}).get("benchmarks/quality/selection.json") or {}).get("data")
            if not metrics:
                continue
            params = flatten((data.get("params") or {}).get("params.yaml", {}).get("data", {}))
            rows.append({"name": exp.get("name") or rev.get("name"), "rev": rev["rev"][:7], "params": params, "metrics": metrics})
    return rows


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def search(args: argparse.Namespace) -> None:
    done = {row["name"] for row in experiments()}
    wanted = [name for name in SEARCH if (not args.only or name in args.only)]
    queued = 0
    for name in wanted:
        if name in done and not args.again:
            log(f"{name}: already an experiment (--again to run it anew)")
            continue
        sets = [x for k, v in SEARCH[name].items() for x in ("-S", f"params.yaml:{k}={v}")]
        dvc("exp", "run", "--queue", PIPELINE, "-n", name, *sets, *(["--force"] if name in done else []))
        queued += 1
    if not queued:
        log("nothing to run")
        return
    log(f"running {queued} experiment(s) one at a time: `dvc queue status` and `dvc queue logs NAME` show where they are")
    dvc("queue", "start", "-j", "1")
    while True:
        status = dvc("queue", "status", capture=True).stdout
        lines = [line for line in status.splitlines() if any(s in line for s in ("Queued", "Running"))]
        if not lines:
            break
        if "0 active" in status and not any("Running" in line for line in lines):
            dvc("queue", "start", "-j", "1")  # a worker can stop between tasks with work still queued
        time.sleep(15)
    failed = [line for line in dvc("queue", "status", capture=True).stdout.splitlines() if "Failed" in line]
    if failed:
        log("failed experiments (see `dvc queue logs NAME`):\n" + "\n".join(failed))
    choose(args)


# ------------------------------------------------------------------------------------------- choose


def choose(args: argparse.Namespace) -> None:
    rows = experiments()
    if not rows:
        raise MisrError("no experiment of the selection pipeline yet", hint="python benchmarks/quality.py search")
    keys = sorted({k for name in SEARCH for k in SEARCH[name]} - {"model.name"})
    print(f"{'experiment':<28}{'valid':>16}{'valid_ood':>16}  " + "  ".join(k.split(".", 1)[1] for k in keys))
    for model in dict.fromkeys(r["params"].get("model.name") for r in rows):
        mine = sorted((r for r in rows if r["params"].get("model.name") == model), key=lambda r: r["metrics"]["valid_ood_mae"])
        for i, r in enumerate(mine):
            m = r["metrics"]
            cells = "  ".join(str(r["params"].get(k)) for k in keys)
            mark = " *" if i == 0 else ""
            print(
                f"{r['name'] + mark:<28}{m['valid_mae']:>9.4f}+-{m['valid_mae_std']:.3f}"
                f"{m['valid_ood_mae']:>9.4f}+-{m['valid_ood_mae_std']:.3f}  {cells}"
            )
    print("* best valid_ood MAE of its model (test was never read)")


# ------------------------------------------------------------------------------------------- report


def bootstrap_ci(a: np.ndarray, b: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[float, float, float]:
    """MAE(a) - MAE(b), a and b [seeds, clips] paired by seed: the mean over seeds, and its 95% percentile
    interval over BOOTSTRAP resamples of the test clips (the same clips for both models and every seed)."""
    diff = np.abs(a - y[None]) - np.abs(b - y[None])  # [seeds, clips]
    per_clip = diff.mean(axis=0)
    idx = rng.integers(0, y.size, size=(BOOTSTRAP, y.size))
    means = per_clip[idx].mean(axis=1)
    return float(per_clip.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def report(args: argparse.Namespace) -> None:
    from misr.data.synth import generate
    from misr.msa.metrics import msa_metrics

    base = params_with(args.overrides)
    if args.data_seed == base.data.synth.seed:
        raise MisrError(f"--data-seed {args.data_seed} is data.synth.seed, the data the settings were chosen on", hint="pick another")
    seeds = args.seeds
    synth_override = [f"data.synth.seed={args.data_seed}", f"train.seeds={seeds}"]
    results: dict[str, dict[int, dict[str, np.ndarray]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        store, reversed_store, muted_store = Path(tmp) / "store", Path(tmp) / "reversed", Path(tmp) / "muted"
        cfg = params_with(args.overrides + synth_override).data.synth
        oracle = generate(cfg, store)
        generate(cfg, reversed_store, cue="reversed")
        if REFERENCE in args.models:
            generate(cfg, muted_store, cue="muted")
        y = {split: labels_of(store, split) for split in ("valid", "test")}
        cue = {
            "original": _cue_labels(store, cfg.shortcut.modality),
            "reversed": _cue_labels(reversed_store, cfg.shortcut.modality),
        }
        for name in args.models:
            p = params_with(args.overrides + synth_override + [f"model.name={'late_fusion' if name == REFERENCE else name}"])
            kept = Path(args.keep) / f"{name}.json" if args.keep else None
            settings = {
                "model": p.model.model_dump(mode="json"),
                "train": p.train.model_dump(mode="json"),
                "synth": cfg.model_dump(mode="json"),
            }
            if kept is not None and kept.exists() and json.loads(kept.read_text())["settings"] == settings:
                log(f"report: {name}: predictions of {kept} (same settings)")
                saved = json.loads(kept.read_text())["predictions"]
                results[name] = {int(s): {k: np.array(v) for k, v in per.items()} for s, per in saved.items()}
                continue
            log(f"report: {name}")
            if name == REFERENCE:  # trained and scored where the cue modality carries no sentiment
                splits = {"valid": muted_store, "test": muted_store, "reversed:test": muted_store}
                results[name] = train_and_predict(p, muted_store, Path(tmp) / name, splits)
            else:
                splits = {"valid": store, "test": store, "reversed:test": reversed_store}
                results[name] = train_and_predict(p, store, Path(tmp) / name, splits)
            if kept is not None:
                kept.parent.mkdir(parents=True, exist_ok=True)
                predictions = {str(s): {k: v.tolist() for k, v in per.items()} for s, per in results[name].items()}
                kept.write_text(json.dumps({"settings": settings, "predictions": predictions}))

    def stack(name: str, split: str) -> np.ndarray:
        return np.stack([results[name][s][split] for s in seeds])  # [seeds, clips]

    print(
        f"shortcut benchmark: data seed {args.data_seed} (the settings were chosen on data seed {base.data.synth.seed}); "
        f"{len(y['test'])} test clips; training seeds {seeds}"
    )
    print(
        f"settings: params.yaml{' with ' + ' '.join(args.overrides) if args.overrides else ''}; "
        f"model.environments {base.model.environments}, invariance {base.model.invariance.kind} "
        f"weight {base.model.invariance.weight:g}, loss {base.model.loss.kind}, kl {base.model.kl.prior_weight:g}/"
        f"{base.model.kl.pairwise_weight:g}, fusion {base.model.fusion}"
    )
    table: dict[str, dict[str, Any]] = {}
    for name in results:
        row = {}
        for split in ("valid", "test"):
            per = [msa_metrics(results[name][s][split], y[split], "mosi") for s in seeds]
            for k in ("MAE", "Non0_acc_2", "Corr"):
                values = np.array([m[k] for m in per])
                row[f"{split}_{k}"] = (float(values.mean()), float(values.std()), values.tolist())
        moved = np.abs(stack(name, "test") - stack(name, "reversed:test")).mean(axis=1)
        per_unit = moved / np.abs(cue["original"] - cue["reversed"]).mean()
        row["reliance"] = (float(per_unit.mean()), float(per_unit.std()), per_unit.tolist())
        table[name] = row

    print("\nvalidation (the training distribution), mean +- std over seeds")
    print(f"{'model':<20}{'MAE':>18}{'Non0_acc_2':>18}{'Corr':>18}")
    for name, row in table.items():
        print(
            f"{name:<20}" + "".join(f"{row[f'valid_{k}'][0]:>11.4f} +- {row[f'valid_{k}'][1]:.3f}" for k in ("MAE", "Non0_acc_2", "Corr"))
        )
    print("\ntest (60% of clips with the cue reversed), read once; mean +- std over seeds")
    print(f"{'model':<20}{'MAE':>18}{'Non0_acc_2':>18}{'Corr':>18}{'reliance':>18}")
    for name, row in table.items():
        print(
            f"{name:<20}"
            + "".join(f"{row[f'test_{k}'][0]:>11.4f} +- {row[f'test_{k}'][1]:.3f}" for k in ("MAE", "Non0_acc_2", "Corr"))
            + f"{row['reliance'][0]:>11.4f} +- {row['reliance'][1]:.3f}"
        )
    ceil = oracle["ceilings"]["test"]
    print(
        f"{'oracle (test-aware Bayes)':<27}MAE {ceil['MAE']['bayes']:.4f}   "
        f"ERM ceiling (Bayes of the training distribution) MAE {ceil['MAE']['erm']:.4f}"
    )

    verdicts = []
    if "misr" in table:
        rng = np.random.default_rng(0)
        print("\npaired test MAE difference MISR - baseline (negative: MISR better): mean over seeds, bootstrap 95% CI over clips")
        mine = stack("misr", "test")
        for other in (n for n in table if n != "misr"):
            theirs = stack(other, "test")
            d, lo, hi = bootstrap_ci(mine, theirs, y["test"], rng)
            wins = int(sum(mae(mine[i], y["test"]) < mae(theirs[i], y["test"]) for i in range(len(seeds))))
            print(f"  misr - {other:<19} {d:+.4f}  [{lo:+.4f}, {hi:+.4f}]   MISR better in {wins}/{len(seeds)} seeds")
            if other in ("late_fusion", "misr_no_inv"):
                verdicts.append((f"MISR beats {other} in every seed, CI excludes 0", wins == len(seeds) and hi < 0))
            if other in ("misr_no_dist", "misr_z_env"):  # (late_fusion_no_cue is a reference: no target)
                verdicts.append((f"{other} has a worse mean test MAE than MISR", d < 0))
        if "late_fusion" in table:
            lf, me = table["late_fusion"]["test_MAE"][0], table["misr"]["test_MAE"][0]
            closed = (lf - me) / (lf - ceil["MAE"]["bayes"])
            print(f"\nshare of the late_fusion -> oracle test-MAE gap MISR closes: {closed:.2f}")
            verdicts.append(("MISR closes >= half of the gap to the oracle", closed >= 0.5))
            ratio = table["misr"]["reliance"][0] / table["late_fusion"]["reliance"][0]
            print(f"reliance on the shortcut modality, MISR / late_fusion: {ratio:.2f}")
            verdicts.append(("MISR's reliance <= half of late_fusion's", ratio <= 0.5))
            gap = table["misr"]["valid_MAE"][0] - table["late_fusion"]["valid_MAE"][0]
            print(f"valid MAE, MISR - late_fusion: {gap:+.4f}")
            verdicts.append(("MISR's valid MAE within 0.02 of late_fusion's", gap <= 0.02))
        print("\ntargets (issue 10; step time: benchmarks/train_speed.py)")
        for text, ok in verdicts:
            print(f"  {'met    ' if ok else 'NOT met'}  {text}")
    if args.json:
        Path(args.json).write_text(json.dumps({"data_seed": args.data_seed, "seeds": seeds, "table": table, "ceilings": ceil}, indent=2))


def _cue_labels(store: Path, modality: str) -> np.ndarray:
    from misr.store import FeatureStore

    return FeatureStore(store).load_split("test").unimodal_labels[modality].numpy().astype(np.float64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("select", help="one setting: train, then valid and valid_ood MAE (never test)")
    s.add_argument("--out", default=None, help=f"default {SELECTION.relative_to(REPO)}")
    s = sub.add_parser("search", help="queue and run the settings of SEARCH as DVC experiments")
    s.add_argument("--only", nargs="+", choices=list(SEARCH), help="these settings only")
    s.add_argument("--again", action="store_true", help="run settings that already have an experiment anew")
    sub.add_parser("choose", help="every experiment, ranked on valid_ood MAE per model")
    s = sub.add_parser("report", help="params.yaml's settings on a fresh data seed; test read once")
    s.add_argument("--data-seed", type=int, default=2027)
    s.add_argument("--seeds", nargs="+", type=int, default=REPORT_SEEDS)
    s.add_argument("--models", nargs="+", default=MODELS + [REFERENCE], choices=MODELS + [REFERENCE])
    s.add_argument("--json", default=None, help="also write the raw numbers here")
    s.add_argument("--keep", default=None, help="keep each model's predictions in this folder; a rerun with the same settings reuses them")
    for p in sub.choices.values():
        p.add_argument("-S", "--set", dest="overrides", action="append", default=[], help="params override, repeatable")
    args = ap.parse_args()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        {"select": select, "search": search, "choose": choose, "report": report}[args.command](args)


if __name__ == "__main__":
    main()
