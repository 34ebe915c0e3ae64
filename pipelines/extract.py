"""The extraction flow: the extract stage with one Prefect task per shard, on threads or Dask, and an artifact.

`misr extract RAW_DIR --out STORE` runs it, and so does the extract stage of dvc.yaml (`python -m
pipelines.extract RAW_DIR STORE --dataset NAME`, see `main`). The stage (`misr.stages.extract.run`)
decides what to do; this module only schedules its shards: retries for transient failures, the task
runner, the artifact.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from misr.config.extract import ExtractConfig
from misr.config.features import FeaturesConfig
from misr.data.corpus import check_root
from misr.errors import MisrError
from misr.msa.convention import Convention, convention
from misr.stages import extract as stage
from misr.stages import load, parser
from misr.util.atomic import check_writable
from misr.util.command import run_command
from misr.util.stop import request_stop
from pipelines.prefect_api import prefect_api
from pipelines.user_errors import quiet_user_error_tracebacks, retry_unless_user_error

quiet_user_error_tracebacks()


@task(
    name="extract-shard",
    task_run_name="extract shard {shard.index}",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=3,
    retry_condition_fn=retry_unless_user_error,
)
def extract_shard_task(features: FeaturesConfig, store_dir: Path, shard: stage.Shard) -> stage.ShardResult:
    return stage.extract_shard(features, store_dir, shard)


def as_tasks(features: FeaturesConfig, store_dir: Path, shards: list[stage.Shard]) -> Iterable[stage.ShardResult]:
    """Submit every shard to the flow's task runner; yield the results as they complete."""
    futures = [extract_shard_task.submit(features, store_dir, shard) for shard in shards]
    try:
        for future in as_completed(futures):
            yield future.result()
    except BaseException:  # an interrupt (Ctrl-C, or Prefect's own SIGTERM bridge) reached the flow's thread:
        request_stop()  # the shards still running on other threads stop at their next clip
        raise


def task_runner(execution: ExtractConfig):
    if execution.runner == "dask":
        try:
            from prefect_dask import DaskTaskRunner
        except ImportError as exc:
            raise MisrError(
                f"extract.runner dask needs prefect-dask, which is not installed ({exc})",
                hint="pip install 'misr[dask]' (from the repository: pip install -e '.[dask]'), or use --runner threads",
            ) from None

        if execution.dask_address:
            return DaskTaskRunner(address=execution.dask_address)
        # one clip at a time per worker process, and one core each: BLAS or OpenMP threads of their own would
        # compete with the other workers for the same cores
        single = {var: "1" for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")}
        cluster = {"n_workers": execution.max_workers, "threads_per_worker": 1, "dashboard_address": None, "env": single}
        return DaskTaskRunner(cluster_kwargs=cluster)
    return ThreadPoolTaskRunner(max_workers=execution.max_workers)


@flow(name="misr-extract", log_prints=True)
def _extract(
    features: FeaturesConfig, execution: ExtractConfig, convention: Convention, raw_dir: Path, store_dir: Path, progress: Any = None
) -> dict[str, Any]:
    summary = stage.run(features, execution, convention, raw_dir, store_dir, run_shards=as_tasks, progress=progress)
    rows = [{"what": what, "count": count} for what, count in stage.summary_rows(summary)]
    create_table_artifact(key="misr-extract-summary", table=rows, description=f"extraction of {raw_dir} into {store_dir}")
    return summary


def extract_flow(
    features: FeaturesConfig,
    execution: ExtractConfig,
    convention: Convention,
    raw_dir: str | Path,
    store_dir: str | Path,
    progress: stage.Progress | None = None,
) -> dict[str, Any]:
    """Run the flow with the task runner that `extract.runner` asks for (threads, or Dask)."""
    runner = task_runner(execution)
    return _extract.with_options(task_runner=runner)(features, execution, convention, Path(raw_dir), Path(store_dir), progress)


def main() -> None:
    args = parser(
        "Extract the corpus at RAW_DIR into the feature store STORE (a Prefect flow).",
        ("raw_dir", "the raw corpus (Raw/ and label.csv)"),
        ("store", "the feature store"),
    ).parse_args()

    def body() -> None:
        params, _, dataset = load(args)
        features, execution = params.section("features", FeaturesConfig), params.section("extract", ExtractConfig)
        check_root(args.raw_dir)  # fail fast with one line, before the flow starts
        check_writable(args.store)
        with prefect_api():
            summary = extract_flow(features, execution, convention(dataset.convention), args.raw_dir, args.store, stage.ProgressLines())
        print(stage.summary_line(summary, args.store))
        for what, count in stage.summary_rows(summary)[4:]:
            if count:
                print(f"  {what}: {count}")
        if execution.strict and stage.strict_failure(summary):
            sys.exit(1)

    run_command(body)


if __name__ == "__main__":
    main()
