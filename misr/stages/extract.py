"""Stage extract: a raw corpus into the feature store. Plan what is missing, extract shards, finish.

`run` is the whole stage; `pipelines/extract.py` passes it a shard runner that makes each shard a
Prefect task (retries, threads or Dask). Without one, the shards run one after the other here.
dvc.yaml runs that flow's module (`python -m pipelines.extract RAW_DIR STORE --dataset NAME`).

A clip is extracted again for a modality only when its source (the video file's sha256, or the
transcript's for text) or the extractor's configuration hash differs from what the store holds. A
shard writes one part file per modality, atomically, so a run killed midway loses at most the shards
in flight; the next run plans only what is still missing. Clips that fail go to the quarantine with
their reason; every other clip is still done.
"""

from __future__ import annotations

import math
import sys
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from misr.config.extract import ExtractConfig
from misr.config.features import FeaturesConfig
from misr.data.corpus import Clip, read_corpus
from misr.data.media import ClipError, StreamSpan, probe_streams
from misr.errors import MisrError
from misr.features.base import MISSING_MODALITY
from misr.features.registry import extractors_for
from misr.msa.convention import Convention
from misr.store import MODALITIES, SEQUENCE_MODALITIES
from misr.store.folder import StoreFolder
from misr.util.atomic import check_writable
from misr.util.hashing import file_sha256, stable_hash
from misr.util.stop import check_stop


@dataclass
class Plan:
    clips: list[Clip]  # every valid clip of the corpus
    problems: list[dict[str, str]]  # corpus rows set aside (the quarantine's 'corpus' stage)
    hashes: dict[str, str]  # clip key -> sha256 of its video file
    todo: dict[str, list[str]]  # clip key -> modalities still to extract
    shards: list[list[str]]  # clip keys, shard by shard
    dropped: list[str] = field(default_factory=list)  # clips of the store no longer in the corpus

    @property
    def by_key(self) -> dict[str, Clip]:
        return {c.key: c for c in self.clips}

    def jobs(self) -> list[Shard]:
        by_key = self.by_key
        return [
            Shard(i, [by_key[k] for k in keys], {k: self.todo[k] for k in keys}, {k: self.hashes[k] for k in keys})
            for i, keys in enumerate(self.shards)
        ]


@dataclass
class Shard:
    """One unit of extraction work: some clips and, per clip, the modalities still to extract."""

    index: int
    clips: list[Clip]
    todo: dict[str, list[str]]
    hashes: dict[str, str]


@dataclass
class ShardResult:
    index: int
    done: dict[str, int] = field(default_factory=dict)  # modality -> clips written
    errors: list[dict[str, str]] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)


ShardRunner = Callable[[FeaturesConfig, Path, list[Shard]], Iterable[ShardResult]]
Progress = Callable[[str, dict[str, Any]], None]


def run(
    features: FeaturesConfig,
    execution: ExtractConfig,
    convention: Convention,
    raw_dir: str | Path,
    store_dir: str | Path,
    run_shards: ShardRunner | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Extract what the store lacks; returns a summary (clips, extracted, complete, quarantined, by_error)."""
    check_writable(store_dir)  # before the corpus is read, not after it is extracted
    with StoreFolder(store_dir).lock():
        the_plan = plan(features, convention, raw_dir, store_dir, execution.shard_size, execution.max_workers)
        jobs = the_plan.jobs()
        total = sum(len(job.clips) for job in jobs)
        if progress:
            progress("plan", {"clips": len(the_plan.clips), "todo": total, "shards": len(jobs)})
        errors: list[dict[str, str]] = []
        for result in (run_shards or run_here)(features, Path(store_dir), jobs):
            errors += result.errors
            if progress:
                progress("shard", {"clips": len(jobs[result.index].clips), "errors": len(result.errors)})
        summary = finish(store_dir, the_plan, errors)
    return {**summary, "extracted": total, "shards": len(jobs)}


def run_here(features: FeaturesConfig, store_dir: Path, jobs: list[Shard]) -> Iterable[ShardResult]:
    for job in jobs:
        yield extract_shard(features, store_dir, job)


# A stream decoded this much shorter than its header declares is partial (frames end early: a truncated file).
PARTIAL_SHARE, PARTIAL_SLACK_SECONDS = 0.95, 0.1


def timeline_duration(header: float | None, declared: dict[str, StreamSpan], decoded: dict[str, float]) -> tuple[float | None, str | None]:
    """The clip's duration on its timeline (where the last decoded stream ends), and a warning when a stream
    decoded shorter than its own header entry declares.

    `decoded` holds, per modality, where its features end on the timeline (they start at its origin);
    each is compared with its stream's own start and duration, so a stream that starts late is not
    mistaken for a truncated one.
    """
    if not decoded:
        return header, None
    short = {}
    for m, end in decoded.items():
        span = declared.get(m)
        if span is not None and span.duration and end - span.start < span.duration * PARTIAL_SHARE - PARTIAL_SLACK_SECONDS:
            short[m] = (end - span.start, span.duration)
    duration = max(decoded.values())
    if not short:
        return duration, None
    parts = ", ".join(f"{m} {got:.2f} s of the {want:.2f} s its stream declares" for m, (got, want) in sorted(short.items()))
    return duration, f"partial decode: {parts} (a truncated file?)"


def summary_line(summary: dict[str, Any], store_dir: str | Path) -> str:
    return (
        f"{summary['extracted']} clip(s) extracted in {summary['shards']} shard(s); {summary['complete']} of {summary['clips']} "
        f"complete in {store_dir}; {summary['quarantined']} quarantined"
    )


def summary_rows(summary: dict[str, Any]) -> list[tuple[str, int]]:
    """The summary as (what, count) rows, for the CLI and the flow's artifact."""
    rows = [
        ("clips in label.csv", summary["clips"]),
        ("extracted this run", summary["extracted"]),
        ("complete in the store", summary["complete"]),
        ("quarantined", summary["quarantined"]),
        ("decoded only in part (clips.parquet warnings)", summary.get("partial", 0)),
        ("left the corpus (removed from clips.parquet)", summary.get("dropped", 0)),
        *((f"kept without {m} (marked absent)", n) for m, n in summary.get("absent", {}).items()),
    ]
    return rows + [(f"quarantine {k}", v) for k, v in sorted(summary["by_error"].items())]


def strict_failure(summary: dict[str, Any]) -> bool:
    """What `extract.strict` refuses: a quarantined clip, or a clip kept with a modality absent."""
    return bool(summary["quarantined"] or any(summary.get("absent", {}).values()))


class ProgressLines:
    """Progress as plain lines on stderr (for logs and `dvc repro`, where a bar would not render)."""

    def __init__(self) -> None:
        self.todo = self.done = 0

    def __call__(self, event: str, info: dict[str, Any]) -> None:
        if event == "plan":
            self.todo = info["todo"]
            print(f"extracting {info['todo']} of {info['clips']} clips in {info['shards']} shard(s)", file=sys.stderr, flush=True)
        elif event == "shard":
            self.done += info["clips"]
            failed = f", {info['errors']} quarantined" if info["errors"] else ""
            print(f"  {self.done}/{self.todo} clips{failed}", file=sys.stderr, flush=True)


def plan(
    features: FeaturesConfig, convention: Convention, raw_dir: str | Path, store_dir: str | Path, shard_size: int = 16, workers: int = 1
) -> Plan:
    """What the store lacks, in shards of at most `shard_size` clips, and at least `workers` shards when there
    are that many clips (so that a small corpus keeps every worker busy)."""
    clips, problems = read_corpus(raw_dir, convention)
    store = StoreFolder(store_dir)
    dropped = leaving_clips(store, raw_dir, {c.key for c in clips} | {p["clip_key"] for p in problems})
    store.remove_stale_tmp()
    extractors = extractors_for(features)
    present = {m: store.present(m) for m in MODALITIES}
    hashes, todo = {}, {}
    for clip in clips:
        try:
            hashes[clip.key] = file_sha256(clip.path)
        except OSError as exc:
            problems.append(
                {"clip_key": clip.key, "stage": "corpus", "error": "UnreadableFile", "message": f"{clip.path}: {exc.strerror or exc}"}
            )
            continue
        need = [
            m for m, ex in extractors.items() if present[m].get(clip.key) != (ex.source_hash(clip, hashes[clip.key]), ex.info.config_hash)
        ]
        if need:
            todo[clip.key] = need
    good = [c for c in clips if c.key in hashes]
    keys = [c.key for c in good if c.key in todo]
    size = max(1, min(shard_size, math.ceil(len(keys) / workers)))
    return Plan(good, problems, hashes, todo, [keys[i : i + size] for i in range(0, len(keys), size)], dropped)


def leaving_clips(store: StoreFolder, raw_dir: str | Path, corpus_keys: set[str]) -> list[str]:
    """The store's clips that are no longer in the corpus (clips.parquet follows the corpus, so they leave it).

    A store none of whose clips are in the corpus belongs to another corpus: extracting into it would
    replace every row of clips.parquet, so it is refused.
    """
    if not store.exists() or not corpus_keys:
        return []
    held = store.clips().column("clip_key").to_pylist()
    if held and not corpus_keys.intersection(held):
        raise MisrError(
            f"{store.root} holds the features of another corpus: none of its {len(held)} clips is in {Path(raw_dir) / 'label.csv'}, "
            "and extracting would drop them all from its clips.parquet",
            hint="extract into a new folder (misr extract --out), or delete that store first",
        )
    return sorted(set(held) - corpus_keys)


def shard_name(keys: list[str], todo: dict[str, list[str]], hashes: dict[str, str]) -> str:
    return "shard-" + stable_hash([(k, hashes[k], todo[k]) for k in keys], length=12)


def extract_shard(features: FeaturesConfig, store_dir: str | Path, shard: Shard) -> ShardResult:
    """Extract every missing modality of the shard's clips and write one part per modality."""
    clips, todo, hashes = shard.clips, shard.todo, shard.hashes
    store = StoreFolder(store_dir)
    extractors = extractors_for(features)
    result = ShardResult(shard.index)
    records: dict[str, list[dict[str, Any]]] = {m: [] for m in MODALITIES}
    for clip in clips:
        check_stop("extraction")  # between clips: finished shards stay, this one is done again next time
        for m in todo[clip.key]:
            ex = extractors[m]
            try:
                rec = ex.extract(clip)
            except ClipError as exc:
                if exc.kind not in MISSING_MODALITY:
                    result.errors.append({"clip_key": clip.key, "stage": exc.stage, "error": exc.kind, "message": exc.message})
                    continue
                rec = ex.absent_record(clip, f"{exc.kind}: {exc.message}")  # usable from its other modalities
            except Exception as exc:  # one clip's unexpected failure must not cost the shard's other clips
                where = traceback.extract_tb(exc.__traceback__)[-1]
                result.errors.append(
                    {
                        "clip_key": clip.key,
                        "stage": m,
                        "error": type(exc).__name__,
                        "message": f"{exc} (at {Path(where.filename).name}:{where.lineno})",
                    }
                )
                continue
            rec["source_sha256"] = ex.source_hash(clip, hashes[clip.key])
            records[m].append(rec)
    name = shard_name([c.key for c in clips], todo, hashes)
    for m, recs in records.items():
        if recs:
            result.parts.append(str(store.write_modality(m, recs, extractors[m].info, name=name)))
            result.done[m] = len(recs)
    return result


def finish(store_dir: str | Path, the_plan: Plan, errors: list[dict[str, str]]) -> dict[str, Any]:
    """Write clips.parquet and the quarantine for the corpus as it is now; drop superseded parts."""
    store = StoreFolder(store_dir)
    decoded = {m: store.decoded_seconds(m) for m in SEQUENCE_MODALITIES}
    rows = []
    for clip in the_plan.clips:
        got = {m: seconds[clip.key] for m, seconds in decoded.items() if clip.key in seconds}
        duration, warning = timeline_duration(*probe_streams(clip.path), got)
        rows.append({**clip.clip_row(), "source_sha256": the_plan.hashes[clip.key], "duration": duration, "warnings": warning})
    absent = {m: store.absent(m) for m in MODALITIES}
    quarantine = the_plan.problems + errors
    failed = {q["clip_key"] for q in quarantine}
    for clip in the_plan.clips:  # a clip with no modality at all has nothing to learn from
        if clip.key not in failed and all(clip.key in absent[m] for m in MODALITIES):
            reasons = "; ".join(absent[m][clip.key] for m in MODALITIES)
            quarantine.append(
                {"clip_key": clip.key, "stage": "extract", "error": "NoModality", "message": f"every modality is absent ({reasons})"}
            )
    if rows:
        store.write_clips(rows, replace=True)
    # in a fixed order, not the order the shards finished in: the same corpus gives the same bytes
    store.write_errors(sorted(quarantine, key=lambda q: (q["clip_key"], q["stage"], q["error"])), replace=True)
    pruned = sum(len(store.prune(m)) for m in MODALITIES)
    for m in MODALITIES:
        store.settle(m)
    present = {m: store.present(m) for m in MODALITIES}
    bad = {q["clip_key"] for q in quarantine}
    complete = sum(1 for c in the_plan.clips if c.key not in bad and all(c.key in present[m] for m in MODALITIES))
    by_kind: dict[str, int] = {}
    for q in quarantine:
        by_kind[f"{q['stage']}:{q['error']}"] = by_kind.get(f"{q['stage']}:{q['error']}", 0) + 1
    return {
        "dropped": len(the_plan.dropped),
        "clips": len(the_plan.clips) + len({p["clip_key"] for p in the_plan.problems}),
        "complete": complete,
        "quarantined": len(bad),
        "by_error": by_kind,
        "pruned_parts": pruned,
        "partial": sum(1 for r in rows if r["warnings"] and r["clip_key"] not in bad),
        "absent": {m: sum(1 for c in the_plan.clips if c.key in absent[m] and c.key not in bad) for m in MODALITIES},
    }
