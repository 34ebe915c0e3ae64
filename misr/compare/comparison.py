"""Running a comparison: every contender x store x seed trained (or reused), then test read once.

Order matters for honesty. Each seed is trained with its checkpoint chosen on valid, and predicts valid;
only when every seed of every contender is done is each store's test split loaded, once, and handed to
every trained seed. Trained seeds are kept in a run cache (`misr.compare.runs`) under a key of the contender's
settings, the store's content and this package's code: a later comparison with all three unchanged reuses them.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from misr.compare.base import Contender, own_visual
from misr.compare.contenders import MisrModel
from misr.compare.runs import RunCache, SeedRun
from misr.errors import MisrError
from misr.store import ledger
from misr.store.store import FeatureStore
from misr.util.hashing import stable_hash

Say = Callable[[str], None]
PACKAGE = Path(__file__).resolve().parents[1]


@dataclass
class Predictions:
    """One store's clips, labels and every contender's predictions per seed, on valid and test."""

    store: Path
    clip_keys: dict[str, list[str]]  # split -> clip keys
    labels: dict[str, np.ndarray]  # split -> [clips]
    preds: dict[str, dict[str, dict[int, np.ndarray]]]  # split -> label -> seed -> [clips]
    runs: dict[str, dict[int, SeedRun]] = field(default_factory=dict)  # label -> seed -> the trained seed in the cache
    conflict: np.ndarray | None = None  # test clips whose modalities disagree in sentiment
    conflict_rule: str | None = None
    test_reads_before: int = 0  # reads of this store's test split on the ledger before this comparison's
    chose: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)  # label -> seed -> what it chose (epoch, environments)


@dataclass
class Comparison:
    stores: list[Predictions]
    contenders: dict[str, Contender]  # by label, in the order given
    seeds: list[int]
    seconds: float
    trained: int  # seeds trained by this run
    reused: int  # seeds read from the cache
    fit_seconds: dict[str, list[float]] = field(default_factory=dict)  # label -> seconds of each seed's training

    @property
    def labels(self) -> list[str]:
        return list(self.contenders)


def code_hash() -> str:
    """A hash of this package's code: a trained seed is reused only with the code that trained it."""
    return stable_hash({str(f.relative_to(PACKAGE)): f.read_text() for f in sorted(PACKAGE.rglob("*.py"))})


@dataclass(frozen=True)
class Job:
    contender: Contender
    store: Path
    run: SeedRun
    threads: int

    @property
    def seed(self) -> int:
        return self.run.seed


def fit_and_validate(job: Job) -> dict[str, Any]:
    """Train one seed (unless the cache holds it whole) and predict valid; returns what done.json holds."""
    done = job.run.done()
    if done is not None:
        return {**done, "reused": True}
    started = time.perf_counter()
    chose = job.contender.fit(job.store, job.run, job.threads)
    seconds = time.perf_counter() - started
    valid = FeatureStore(job.store).load_split("valid")
    pred = job.contender.predict(job.store, job.run, valid)
    result = {
        "label": job.contender.label,
        "seed": job.seed,
        "seconds": seconds,
        "chose": chose,
        "clip_keys": valid.clip_keys,
        "labels": valid.labels.tolist(),
        "valid": pred.tolist(),
    }
    job.run.finish(result)
    return {**result, "reused": False}


def compare(
    stores: Sequence[Path],
    contenders: Sequence[Contender],
    seeds: Sequence[int],
    cache: Path,
    workers: int = 1,
    threads: int = 0,
    reference: str | None = None,
    say: Say = lambda _: None,
    dask: str | None = None,
) -> Comparison:
    """Train every contender's seeds on every store (`workers` processes of `threads` threads each, or on a Dask
    cluster: see `run_jobs`; reusing the cache), predict valid, then read each store's test once and predict it
    with every trained seed."""
    started = time.perf_counter()
    labels = [c.label for c in contenders]
    if len(set(labels)) != len(labels):
        raise MisrError(f"a model is named twice: {', '.join(sorted({x for x in labels if labels.count(x) > 1}))}")
    stores = [Path(s) for s in stores]
    for store in stores:
        missing = {"train", "valid", "test"} - set(FeatureStore(store).splits())
        if missing:
            raise MisrError(f"the store {store} has no {', '.join(sorted(missing))} split", hint="a comparison trains, selects and tests")
        for c in contenders:
            c.check(store)
    jobs = jobs_for(stores, contenders, seeds, cache, threads)
    results = run_jobs(jobs, workers, say, dask)
    fit_seconds: dict[str, list[float]] = {}
    for job, r in zip(jobs, results, strict=True):
        fit_seconds.setdefault(job.contender.label, []).append(r["seconds"])
    per_store = []
    for store in stores:
        mine = [(job, r) for job, r in zip(jobs, results, strict=True) if job.store == store]
        valid_keys = mine[0][1]["clip_keys"]
        valid_labels = np.asarray(mine[0][1]["labels"], dtype=np.float64)
        preds: dict[str, dict[str, dict[int, np.ndarray]]] = {"valid": {}, "test": {}}
        for job, r in mine:
            if r["clip_keys"] != valid_keys:
                raise MisrError(f"{job.run.folder} predicted other valid clips than the store holds now", hint=f"remove {job.run.folder}")
            preds["valid"].setdefault(job.contender.label, {})[job.seed] = np.asarray(r["valid"], dtype=np.float64)
        before = ledger.record_read(store)
        said = f"; read {before} time(s) before, by the ledger {ledger.ledger_path(store)}" if before else ""
        say(f"reading test of {store} (once, after every model was chosen on valid{said})")
        test = FeatureStore(store).load_split("test")
        for job, _ in mine:
            preds["test"].setdefault(job.contender.label, {})[job.seed] = np.asarray(
                job.contender.predict(store, job.run, test), dtype=np.float64
            )
        conflict, rule = conflict_subsets(contenders, reference, [j for j, _ in mine], store, test)
        per_store.append(
            Predictions(
                store=store,
                clip_keys={"valid": valid_keys, "test": list(test.clip_keys)},
                labels={"valid": valid_labels, "test": test.labels.numpy().astype(np.float64)},
                preds=preds,
                runs={c.label: {j.seed: j.run for j, _ in mine if j.contender is c} for c in contenders},
                chose={c.label: {j.seed: r.get("chose") or {} for j, r in mine if j.contender is c} for c in contenders},
                conflict=conflict,
                conflict_rule=rule,
                test_reads_before=before,
            )
        )
    trained = sum(not r["reused"] for r in results)
    by_label = {c.label: c for c in contenders}
    return Comparison(per_store, by_label, list(seeds), time.perf_counter() - started, trained, len(results) - trained, fit_seconds)


def jobs_for(stores: Sequence[Path], contenders: Sequence[Contender], seeds: Sequence[int], cache: Path, threads: int) -> list[Job]:
    """One job per store x contender x seed, each in the run cache under its key (settings, store, code)."""
    runs, code, jobs = RunCache(cache), code_hash(), []
    for store in stores:
        fingerprint = FeatureStore(store).fingerprint()
        for c in contenders:
            key = runs.key(c.key(), fingerprint, code)
            jobs += [Job(c, store, runs.seed_run(c.label, key, seed), threads) for seed in seeds]
    return jobs


def run_jobs(jobs: list[Job], workers: int, say: Say, dask: str | None = None) -> list[dict[str, Any]]:
    """The jobs in order; in `workers` processes when more than one (one thread each unless told otherwise), or
    with `dask` on a Dask cluster: a scheduler's address (tcp://host:8786: a lab's machines), or "local" for a
    cluster of `workers` processes here. Every worker must reach the stores and the cache folder at the same paths."""
    started = time.perf_counter()
    where = f"the Dask cluster {dask}" if dask and dask != "local" else f"{workers} process(es)"
    say(f"{len(jobs)} seed(s) to train or reuse, {where}")
    out: list[dict[str, Any]] = []

    def done(i: int, r: dict[str, Any]) -> None:
        how = "reused" if r["reused"] else f"trained in {r['seconds']:.0f} s"
        job = jobs[i]
        elapsed = time.perf_counter() - started
        say(f"  {i + 1}/{len(jobs)} {job.contender.label} seed {job.seed} on {job.store.name}: {how} ({elapsed:.0f} s so far)")

    if workers <= 1 and not dask:
        for i, job in enumerate(jobs):
            out.append(fit_and_validate(job))
            done(i, out[-1])
        return out
    executor = dask_executor(dask, workers) if dask else ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    with executor as pool:
        futures = [pool.submit(fit_and_validate, job) for job in jobs]
        for i, future in enumerate(futures):
            out.append(future.result())
            done(i, out[-1])
    return out


@contextmanager
def dask_executor(address: str, workers: int) -> Iterator[Executor]:
    """A concurrent.futures executor over a Dask cluster: the one at `address`, or ("local") a new one of
    `workers` processes with one thread each, closed afterwards."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise MisrError("a Dask cluster needs the dask extra, which is not installed", hint="pip install '.[dask]'") from None
    cluster = (
        LocalCluster(n_workers=max(1, workers), threads_per_worker=1, processes=True, dashboard_address=None)
        if address == "local"
        else None
    )
    try:
        client = Client(cluster if cluster is not None else address, timeout="10s")
    except OSError as exc:
        raise MisrError(f"no Dask scheduler answers at {address}: {exc}", hint="start one (dask scheduler), or use --dask local") from None
    try:
        yield client.get_executor(pure=False)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def default_workers() -> int:
    """One process per core on the CPU (each one thread: several trainings on shared cores otherwise thrash);
    one on a GPU."""
    import torch

    return (
        1
        if torch.cuda.is_available()
        else max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    )


def conflict_subsets(
    contenders: Sequence[Contender], reference: str | None, jobs: list[Job], store: Path, test: Any
) -> tuple[np.ndarray | None, str | None]:
    """The robustness report's agree/conflict split of test, the same for every contender: from label_T/A/V
    when the store has them, else from the single-modality predictions of the reference (or the first of
    this package's models), else none."""
    from misr.evaluation.robustness import conflict_mask
    from misr.features.person import view_for

    uni = np.stack([test.unimodal_labels[m].numpy() for m in ("text", "audio", "visual")])
    ours = [c for c in contenders if isinstance(c, MisrModel)]
    if not np.isfinite(uni).all() and not ours:
        return None, None
    judge = next((c for c in ours if c.label == reference), ours[0] if ours else None)
    models, data = [], test
    if judge is not None and not np.isfinite(uni).all():
        folders = [j for j in jobs if j.contender is judge]
        models = [judge.loaded(j.run) for j in folders]
        data = view_for(FeatureStore(store), judge.train.action_units).apply_split(own_visual(test))
    mask, rule = conflict_mask(models, data, judge.train.batch_size if judge else 64)
    if models:
        rule = f"{rule} ({judge.label})"
    return np.asarray(mask, dtype=bool), rule
