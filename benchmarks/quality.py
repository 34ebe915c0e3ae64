"""MISR against its ablations, late fusion and group-aware references on the shortcut benchmark.

    python benchmarks/quality.py select [-S key=value ...]    # one setting: valid and valid_ood MAE (the DVC stage)
    python benchmarks/quality.py search [--only NAME ...]     # the first search, queued and run as DVC experiments
    python benchmarks/quality.py choose                       # every experiment (`dvc exp show`), ranked on valid_ood
    python benchmarks/quality.py protocol-select [--workers N] [--json FILE]
    python benchmarks/quality.py report [--data-seeds ...] [--models ...] [--workers N] [--json FILE]

The data is `misr synth`'s shortcut scenario (data.synth in params.yaml): the visual modality carries the
label's sign in ~90% of train and valid clips and the reversed sign in ~60% of valid_ood and test clips.

`select`, `search` and `choose` are the first search (one data seed; benchmarks/quality/dvc.yaml's stage).
`protocol-select` and `report` are the powered protocol of benchmarks/quality/README.md: the choices of
CANDIDATES on the selection data seeds (worst validation group; test never loaded), then every entry of
ENTRIES on report data seeds that chose nothing, test read once, with hierarchical bootstrap CIs (data
seeds, then clips), per-group test MAE, the headroom H = MAE(late_fusion) - MAE(known_groups) and the
share of it MISR closes, and the targets. Jobs run side by side, one thread each; their predictions are
kept in .quality-runs/ under a hash of their settings and of misr's code.

Reliance: the mean absolute change of the prediction when the shortcut modality's expressed sentiment is
negated (the counterfactual store of `generate(..., cue="reversed")`: same clips, same noise, only that
modality's features differ), per unit of expressed sentiment changed: mean|y(x) - y(x')| / mean|e_v - e_v'|.
0 for a model that ignores the cue; ~1 for one that follows it one to one.
"""

from __future__ import annotations

import argparse
import json
import os
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
BOOTSTRAP = 2000

# The settings tried, each a DVC experiment: name -> overrides of params.yaml. MISR starts from environments
# that are groups of clips, the penalty at full weight after 10 ERM epochs (the validation
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


# ------------------------------------------------------------------------------------------- protocol

# The powered protocol (see benchmarks/quality/README.md): settings chosen on SELECTION_SEEDS, reported on
# REPORT_DATA_SEEDS that no choice has seen, each with TRAINING_SEEDS; bigger splits than params.yaml's so that
# differences of 0.01-0.03 can be seen (a 300-clip valid_ood could not: paired SE 0.02-0.03).
SELECTION_SEEDS = [1111, 1112]
REPORT_DATA_SEEDS = [2027, 2028, 2029, 2030, 2031]
TRAINING_SEEDS = [1111, 1112, 1113]
PROTOCOL_SPLITS = "data.synth.n_clips={train: 600, valid: 1000, valid_ood: 2000, test: 2000}"
# the invariance choices, each chosen on the worst validation group (in-distribution valid, 1000 clips): the penalty
# on the clips the risk fits, on held-out clips, or no penalty; and the plain validation MAE for reference
CANDIDATES: dict[str, list[str]] = {
    "misr (select on mae)": [],
    "misr": ["train.select_on=worst_group_mae"],
    "misr held-out penalty": ["train.select_on=worst_group_mae", "model.invariance.penalty_on=held_out"],
    "misr_no_inv": ["train.select_on=worst_group_mae", "model.name=misr_no_inv"],
    "misr weight 3": ["train.select_on=worst_group_mae", "model.invariance.weight=3"],  # the published risk is larger
}
# what the report trains: MISR with params.yaml's settings, its ablations, late fusion and two references
ENTRIES: dict[str, list[str]] = {
    "misr": [],
    "late_fusion": ["model.name=late_fusion"],
    "known_groups": ["model.name=late_fusion_groups", "model.groups.partition={cue}"],  # the true flipped groups
    "misr_inferred": ["model.groups.source=predictions"],  # label_T/A/V hidden, as on MOSI or MOSEI
    "misr_pooled": ["model.invariance.risk=pooled"],
    "misr_no_inv": ["model.name=misr_no_inv"],
    "misr_no_dist": ["model.name=misr_no_dist"],
}


def job_key(name: str, overrides: list[str], data_seed: int, splits: tuple[str, ...]) -> str:
    from misr.util.hashing import stable_hash

    p = params_with(overrides)
    settings = {
        "model": p.model.model_dump(mode="json"),
        "train": p.train.model_dump(mode="json"),
        "synth": p.data.synth.model_dump(mode="json"),
    }
    code = stable_hash({str(f.relative_to(REPO)): f.read_text() for f in sorted((REPO / "misr").rglob("*.py"))})  # changed code: run again
    return f"{name.replace(' ', '_')}-{data_seed}-{stable_hash({'settings': settings, 'splits': splits, 'code': code})[:12]}"


def run_job(name: str, overrides: list[str], data_seed: int, splits: tuple[str, ...], cache: str) -> dict[str, Any]:
    """Train one setting on one data seed (every training seed, one thread): predictions per split and the
    training summary, kept in `cache` under a key of the settings (a rerun with the same ones reads it)."""
    from misr.data.synth import generate

    overrides = [*overrides, f"data.synth.seed={data_seed}", "train.threads=1"]
    target = Path(cache) / f"{job_key(name, overrides, data_seed, splits)}.json"
    if target.exists():
        return json.loads(target.read_text())
    p = params_with(overrides)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        store, reversed_store = Path(tmp) / "store", Path(tmp) / "reversed"
        generate(p.data.synth, store)
        where = {split: store for split in splits if not split.startswith("reversed:")}
        if any(split.startswith("reversed:") for split in splits):
            generate(p.data.synth, reversed_store, cue="reversed")
            where.update({split: reversed_store for split in splits if split.startswith("reversed:")})
        preds = train_and_predict(p, store, Path(tmp) / "model", where)
        summary = json.loads((Path(tmp) / "model" / "summary.json").read_text())
    result = {
        "name": name,
        "data_seed": data_seed,
        "overrides": overrides,
        "seconds": time.perf_counter() - started,
        "predictions": {str(s): {k: v.tolist() for k, v in per.items()} for s, per in preds.items()},
        "summary": {
            s: {k: r.get(k) for k in ("best_epoch", "best_valid_mae", "best_valid_score", "valid_groups", "environments")}
            for s, r in summary["seeds"].items()
        },
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    partial.write_text(json.dumps(result))
    partial.replace(target)  # a run killed while writing leaves no half file to be read as done
    return result


def run_jobs(jobs: list[tuple[str, list[str], int, tuple[str, ...]]], cache: str, workers: int) -> list[dict[str, Any]]:
    """The jobs in `workers` processes of one thread each (several trainings on shared cores otherwise thrash)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    started = time.perf_counter()
    log(f"{len(jobs)} job(s) ({len(TRAINING_SEEDS)} training seeds each) on {workers} process(es) of one thread; results kept in {cache}")
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(run_job, *job, cache) for job in jobs]
        out = []
        for i, future in enumerate(futures):
            out.append(future.result())
            r, elapsed = out[-1], time.perf_counter() - started
            log(f"  {i + 1}/{len(jobs)} done: {r['name']} on data seed {r['data_seed']} ({r['seconds']:.0f} s), {elapsed:.0f} s so far")
    return out


def cue_groups(cue: np.ndarray, y: np.ndarray) -> np.ndarray:
    """1 where the shortcut modality's sentiment is flipped against the label (the minority in training)."""
    return (np.sign(cue) * np.sign(y) < 0).astype(int)


def truth_of(data_seed: int, overrides: list[str], splits: tuple[str, ...], reversed_change: bool = False) -> dict[str, Any]:
    """Per split, the labels and the flipped indicator of the data seed's store (regenerated: a seed gives the same
    data); with `reversed_change`, also the mean change of the cue on test in the counterfactual store."""
    from misr.data.synth import generate
    from misr.store import FeatureStore

    p = params_with([*overrides, f"data.synth.seed={data_seed}"])
    modality = p.data.synth.shortcut.modality
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        generate(p.data.synth, Path(tmp) / "s")
        for split in splits:
            d = FeatureStore(Path(tmp) / "s").load_split(split, as_torch=False)
            y = d.labels.astype(np.float64)
            out[split] = (y, cue_groups(d.unimodal_labels[modality].astype(np.float64), y))
        if reversed_change:
            generate(p.data.synth, Path(tmp) / "r", cue="reversed")
            cue = FeatureStore(Path(tmp) / "s").load_split("test", as_torch=False).unimodal_labels[modality]
            flipped = FeatureStore(Path(tmp) / "r").load_split("test", as_torch=False).unimodal_labels[modality]
            out["reversed_change"] = float(np.abs(cue - flipped).mean())
    return out


def protocol_select(args: argparse.Namespace) -> None:
    """The invariance choices on the selection data seeds: each candidate's worst-group and group-mean validation MAE
    (in-distribution valid), and valid_ood MAE beside them; test is never loaded."""
    started = time.perf_counter()
    base = [PROTOCOL_SPLITS, f"train.seeds={TRAINING_SEEDS}", *args.overrides]
    splits = ("valid", "valid_ood")
    jobs = [(name, [*base, *extra], seed, splits) for name, extra in CANDIDATES.items() for seed in args.data_seeds]
    results = run_jobs(jobs, args.cache, args.workers)
    truth = {seed: truth_of(seed, base, splits) for seed in args.data_seeds}
    rows = {}
    for name in CANDIDATES:
        per = {k: [] for k in ("valid", "worst", "mean", "valid_ood")}
        for r in (r for r in results if r["name"] == name):
            (yv, gv), (yo, _) = truth[r["data_seed"]]["valid"], truth[r["data_seed"]]["valid_ood"]
            for preds in r["predictions"].values():
                pv = np.asarray(preds["valid"])
                by_group = [mae(pv[gv == g], yv[gv == g]) for g in (0, 1)]
                per["valid"].append(mae(pv, yv))
                per["worst"].append(max(by_group))
                per["mean"].append(float(np.mean(by_group)))
                per["valid_ood"].append(mae(np.asarray(preds["valid_ood"]), yo))
        rows[name] = {k: (float(np.mean(v)), float(np.std(v) / np.sqrt(len(v)))) for k, v in per.items()}
    p = params_with(base)
    n = p.data.synth.n_clips
    print(f"selection: data seeds {args.data_seeds} x training seeds {p.train.seeds}; valid {n['valid']} clips, valid_ood {n['valid_ood']}")
    print("(validation groups: the clips whose shortcut modality is flipped against the label, and the rest)")
    print(f"{'candidate':<26}{'valid MAE':>18}{'worst group':>18}{'group mean':>18}{'valid_ood MAE':>18}")
    for name, row in sorted(rows.items(), key=lambda kv: kv[1]["worst"][0]):
        print(f"{name:<26}" + "".join(f"{row[k][0]:>11.4f} +-{row[k][1]:.3f}" for k in ("valid", "worst", "mean", "valid_ood")))
    print("(mean over data seeds x training seeds, +- its standard error; ranked on the worst validation group, the criterion)")
    print(f"total time {time.perf_counter() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


def hierarchical_ci(diff: dict[int, np.ndarray], rng: np.random.Generator, n: int = BOOTSTRAP) -> tuple[float, float, float]:
    """Mean of per-clip paired differences (each [clips], averaged over training seeds) over data seeds, and its
    95% interval: data seeds resampled (outer), then clips within each (inner)."""
    seeds = list(diff)
    point = float(np.mean([diff[s].mean() for s in seeds]))
    means = np.empty(n)
    for b in range(n):
        picked = rng.choice(seeds, len(seeds), replace=True)
        means[b] = np.mean([diff[s][rng.integers(0, diff[s].size, diff[s].size)].mean() for s in picked])
    return point, float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def report(args: argparse.Namespace) -> None:
    """Every entry with params.yaml's settings on the report data seeds; test read once, at the end."""
    started = time.perf_counter()
    base_params = params_with(args.overrides)
    cue_modality = base_params.data.synth.shortcut.modality
    base = [PROTOCOL_SPLITS, f"train.seeds={TRAINING_SEEDS}", *args.overrides]
    used = set(SELECTION_SEEDS) | {base_params.data.synth.seed}
    if used & set(args.data_seeds):
        raise MisrError(f"data seeds {sorted(used & set(args.data_seeds))} chose settings; report on others")
    splits = ("valid", "test", "reversed:test")
    entries = {name: ENTRIES[name] for name in args.models}
    jobs = [
        (name, [*base, *(x.format(cue=cue_modality) for x in extra)], seed, splits)
        for name, extra in entries.items()
        for seed in args.data_seeds
    ]
    results = run_jobs(jobs, args.cache, args.workers)
    base_params_run = params_with(base)
    known = {seed: truth_of(seed, base, ("valid", "test"), reversed_change=True) for seed in args.data_seeds}
    truth = {seed: known[seed]["test"] for seed in args.data_seeds}
    valid_truth = {seed: known[seed]["valid"] for seed in args.data_seeds}
    reversed_cue = {seed: known[seed]["reversed_change"] for seed in args.data_seeds}
    # per entry and data seed: predictions [training seeds, clips]
    preds = {
        (r["name"], r["data_seed"]): {k: np.stack([np.asarray(p[k]) for p in r["predictions"].values()]) for k in splits} for r in results
    }

    def per_clip_error(name: str, seed: int, split: str = "test") -> np.ndarray:
        y = (truth if split == "test" else valid_truth)[seed][0]
        return np.abs(preds[(name, seed)][split] - y[None]).mean(axis=0)  # [clips], averaged over training seeds

    table = {}
    for name in entries:
        row = {}
        for split in ("valid", "test"):
            ys = truth if split == "test" else valid_truth
            values = [mae(one, ys[s][0]) for s in args.data_seeds for one in preds[(name, s)][split]]
            row[split] = (float(np.mean(values)), float(np.std(values)))
        for g, label in ((1, "flipped"), (0, "not flipped")):
            values = [float(per_clip_error(name, s)[truth[s][1] == g].mean()) for s in args.data_seeds]
            row[label] = (float(np.mean(values)), float(np.std(values)))
        moved = [np.abs(preds[(name, s)]["test"] - preds[(name, s)]["reversed:test"]).mean() / reversed_cue[s] for s in args.data_seeds]
        row["reliance"] = (float(np.mean(moved)), float(np.std(moved)))
        table[name] = row
    print(
        f"shortcut benchmark, powered protocol: report data seeds {args.data_seeds} (settings chosen on {SELECTION_SEEDS}), "
        f"training seeds {base_params_run.train.seeds}; {len(truth[args.data_seeds[0]][0])} test clips per data seed"
    )
    print("\nmean +- std over data seeds x training seeds (MAE), over data seeds (groups, reliance); valid first, test read once")
    print(f"{'model':<16}{'valid MAE':>17}{'test MAE':>17}{'test flipped':>17}{'test not flipped':>18}{'reliance':>17}")
    for name, row in table.items():
        cells = [row[k] for k in ("valid", "test", "flipped", "not flipped", "reliance")]
        print(f"{name:<16}" + "".join(f"{m:>10.4f} +-{sd:.3f}" for m, sd in cells))
    rng = np.random.default_rng(0)
    verdicts: list[tuple[str, bool]] = []
    if "misr" in table:
        print("\npaired test MAE difference, MISR - other (negative: MISR better): mean, hierarchical bootstrap 95% CI")
        print("(data seeds resampled, then clips within each)")
        for other in (n for n in table if n != "misr"):
            d, lo, hi = hierarchical_ci({s: per_clip_error("misr", s) - per_clip_error(other, s) for s in args.data_seeds}, rng)
            print(f"  misr - {other:<14} {d:+.4f}  [{lo:+.4f}, {hi:+.4f}]")
            if other == "late_fusion":
                verdicts.append(("MISR (label groups) beats late fusion, CI excludes 0", hi < 0))
            if other in ("misr_no_inv", "misr_no_dist", "misr_pooled"):
                verdicts.append((f"{other} is worse than MISR (CI above 0 for it)", hi < 0))
        if "misr_inferred" in table and "late_fusion" in table:
            d, lo, hi = hierarchical_ci(
                {s: per_clip_error("misr_inferred", s) - per_clip_error("late_fusion", s) for s in args.data_seeds}, rng
            )
            print(f"  misr_inferred - late_fusion {d:+.4f}  [{lo:+.4f}, {hi:+.4f}]")
            verdicts.append(("MISR with inferred groups beats late fusion, CI excludes 0", hi < 0))
    if {"misr", "late_fusion", "known_groups"} <= set(table):
        shares = []
        for s in args.data_seeds:
            lf, kg, me = (float(per_clip_error(n, s).mean()) for n in ("late_fusion", "known_groups", "misr"))
            shares.append((lf - me) / (lf - kg) if lf - kg > 0 else float("nan"))
        h = [float(per_clip_error("late_fusion", s).mean() - per_clip_error("known_groups", s).mean()) for s in args.data_seeds]
        print(f"\nheadroom H = MAE(late_fusion) - MAE(known_groups) per data seed: {', '.join(f'{x:+.4f}' for x in h)}")
        print(f"share of H MISR closes per data seed: {', '.join(f'{x:.2f}' for x in shares)}; mean {np.nanmean(shares):.2f}")
        verdicts.append(("MISR closes >= 50% of H, averaged over data seeds", np.nanmean(shares) >= 0.5))
        lf_f, kg_f, me_f = (table[n]["flipped"][0] for n in ("late_fusion", "known_groups", "misr"))
        print(f"flipped group: late fusion {lf_f:.4f}, known groups {kg_f:.4f}, MISR {me_f:.4f}")
        verdicts.append(
            ("on the flipped group MISR gains >= half of late fusion's gap to the known groups", lf_f - me_f >= 0.5 * (lf_f - kg_f))
        )
    if {"misr", "late_fusion"} <= set(table):
        ratio = table["misr"]["reliance"][0] / table["late_fusion"]["reliance"][0]
        print(f"reliance on the cue, MISR / late fusion: {ratio:.2f}")
        verdicts.append(("MISR's reliance <= 0.5x late fusion's", ratio <= 0.5))
        gap = table["misr"]["valid"][0] - table["late_fusion"]["valid"][0]
        print(f"in-distribution valid MAE, MISR - late fusion: {gap:+.4f}")
        verdicts.append(("MISR's valid MAE <= late fusion's + 0.03", gap <= 0.03))
    if verdicts:
        print("\ntargets (step time: benchmarks/train_speed.py)")
        for text, ok in verdicts:
            print(f"  {'met    ' if ok else 'NOT met'}  {text}")
    print(f"\ntotal time {time.perf_counter() - started:.0f} s (trainings read from the cache count as done)")
    if args.json:
        Path(args.json).write_text(json.dumps({"data_seeds": args.data_seeds, "table": table}, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("select", help="one setting: train, then valid and valid_ood MAE (never test)")
    s.add_argument("--out", default=None, help=f"default {SELECTION.relative_to(REPO)}")
    s = sub.add_parser("search", help="queue and run the settings of SEARCH as DVC experiments")
    s.add_argument("--only", nargs="+", choices=list(SEARCH), help="these settings only")
    s.add_argument("--again", action="store_true", help="run settings that already have an experiment anew")
    sub.add_parser("choose", help="every experiment, ranked on valid_ood MAE per model")
    s = sub.add_parser("protocol-select", help="the candidates of CANDIDATES on the selection data seeds (never test)")
    s.add_argument("--data-seeds", nargs="+", type=int, default=SELECTION_SEEDS)
    s = sub.add_parser("report", help="params.yaml's settings on the report data seeds; test read once")
    s.add_argument("--data-seeds", nargs="+", type=int, default=REPORT_DATA_SEEDS)
    s.add_argument("--models", nargs="+", default=list(ENTRIES), choices=list(ENTRIES))
    for s in (sub.choices["protocol-select"], sub.choices["report"]):
        s.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="training processes side by side (one thread each)")
        s.add_argument("--cache", default=str(REPO / ".quality-runs"), help="where each job's predictions are kept")
        s.add_argument("--json", default=None, help="also write the numbers here")
    for p in sub.choices.values():
        p.add_argument("-S", "--set", dest="overrides", action="append", default=[], help="params override, repeatable")
    args = ap.parse_args()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        commands = {"select": select, "search": search, "choose": choose, "protocol-select": protocol_select, "report": report}
        commands[args.command](args)


if __name__ == "__main__":
    main()
