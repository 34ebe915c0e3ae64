"""The extraction flow: one Prefect task per shard of clips, threads or Dask, a summary artifact.

`misr extract RAW_DIR --out STORE` runs it. The library (`misr.extract`) decides what to do; this
module only schedules it: retries for transient failures, the task runner, progress, the artifact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from misr.config import Params
from misr.corpus import Clip
from misr.extract import ShardResult, extract_shard, finish, plan


@task(name="extract-shard", task_run_name="extract shard {index}", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=3)
def extract_shard_task(params: Params, store_dir: Path, clips: list[Clip], todo: dict, hashes: dict, index: int) -> ShardResult:
    return extract_shard(params, store_dir, clips, todo, hashes, index)


def task_runner(params: Params):
    cfg = params.features
    if cfg.runner == "dask":
        from prefect_dask import DaskTaskRunner

        if cfg.dask_address:
            return DaskTaskRunner(address=cfg.dask_address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": cfg.max_workers, "threads_per_worker": 1, "dashboard_address": None})
    return ThreadPoolTaskRunner(max_workers=cfg.max_workers)


@flow(name="misr-extract", log_prints=True)
def _extract(params: Params, raw_dir: Path, store_dir: Path, progress: Callable[[str, dict], None] | None = None) -> dict[str, Any]:
    the_plan = plan(params, raw_dir, store_dir)
    by_key = the_plan.by_key
    total = sum(len(s) for s in the_plan.shards)
    if progress:
        progress("plan", {"clips": len(the_plan.clips), "todo": total, "shards": len(the_plan.shards)})
    futures = [
        extract_shard_task.submit(params, store_dir, [by_key[k] for k in keys], {k: the_plan.todo[k] for k in keys}, the_plan.hashes, i)
        for i, keys in enumerate(the_plan.shards)
    ]
    errors = []
    for future in as_completed(futures):
        result = future.result()
        errors += result.errors
        if progress:
            progress("shard", {"clips": len(the_plan.shards[result.index]), "errors": len(result.errors)})
    summary = finish(params, store_dir, the_plan, errors)
    summary["extracted"] = total
    summary["shards"] = len(the_plan.shards)
    rows = [{"what": "clips in label.csv", "count": summary["clips"]}, {"what": "extracted this run", "count": total},
            {"what": "complete in the store", "count": summary["complete"]}, {"what": "quarantined", "count": summary["quarantined"]}]
    rows += [{"what": f"quarantine {k}", "count": v} for k, v in sorted(summary["by_error"].items())]
    create_table_artifact(key="misr-extract-summary", table=rows, description=f"extraction of {raw_dir} into {store_dir}")
    return summary


def extract_flow(params: Params, raw_dir: Path, store_dir: Path, progress: Callable[[str, dict], None] | None = None) -> dict[str, Any]:
    """Run the flow with the task runner that params.yaml asks for (threads, or Dask)."""
    return _extract.with_options(task_runner=task_runner(params))(params, Path(raw_dir), Path(store_dir), progress)
