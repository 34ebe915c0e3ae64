"""Extraction from a raw corpus into the feature store: plan what is missing, extract shards, finish.

Prefect-free: `pipelines/extract.py` runs one task per shard over these functions.

A clip is extracted again for a modality only when its source (the video file's sha256, or the
transcript's for text) or the extractor's configuration hash differs from what the store holds. A
shard writes one part file per modality, atomically, so a run killed midway loses at most the shards
in flight; the next run plans only what is still missing. Clips that fail go to the quarantine with
their reason; every other clip is still done.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from misr.config import Params
from misr.corpus import Clip, read_corpus
from misr.features import extractors_for
from misr.hashing import file_sha256, stable_hash
from misr.media import ClipError, probe_duration
from misr.store import MODALITIES, FeatureStore


@dataclass
class Plan:
    clips: list[Clip]  # every valid clip of the corpus
    problems: list[dict[str, str]]  # corpus rows set aside (the quarantine's 'corpus' stage)
    hashes: dict[str, str]  # clip key -> sha256 of its video file
    todo: dict[str, list[str]]  # clip key -> modalities still to extract
    shards: list[list[str]]  # clip keys, shard by shard

    @property
    def by_key(self) -> dict[str, Clip]:
        return {c.key: c for c in self.clips}


@dataclass
class ShardResult:
    index: int
    done: dict[str, int] = field(default_factory=dict)  # modality -> clips written
    errors: list[dict[str, str]] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)


def plan(params: Params, raw_dir: str | Path, store_dir: str | Path) -> Plan:
    clips, problems = read_corpus(raw_dir, params.data.active.convention)
    store = FeatureStore(store_dir)
    store.remove_stale_tmp()
    extractors = extractors_for(params)
    present = {m: store.present(m) for m in MODALITIES}
    hashes, todo = {}, {}
    for clip in clips:
        try:
            hashes[clip.key] = file_sha256(clip.path)
        except OSError as exc:
            problems.append({"clip_key": clip.key, "stage": "corpus", "error": "UnreadableFile", "message": f"{clip.path}: {exc.strerror or exc}"})
            continue
        need = [
            m for m, ex in extractors.items()
            if present[m].get(clip.key) != (ex.source_hash(clip, hashes[clip.key]), ex.info.config_hash)
        ]  # fmt: skip
        if need:
            todo[clip.key] = need
    good = [c for c in clips if c.key in hashes]
    keys = [c.key for c in good if c.key in todo]
    size = params.features.shard_size
    return Plan(good, problems, hashes, todo, [keys[i : i + size] for i in range(0, len(keys), size)])


def shard_name(keys: list[str], todo: dict[str, list[str]], hashes: dict[str, str]) -> str:
    return "shard-" + stable_hash([(k, hashes[k], todo[k]) for k in keys], length=12)


def extract_shard(params: Params, store_dir: str | Path, clips: list[Clip], todo: dict[str, list[str]], hashes: dict[str, str], index: int = 0) -> ShardResult:
    """Extract every missing modality of these clips and write one part per modality."""
    store = FeatureStore(store_dir)
    extractors = extractors_for(params)
    result = ShardResult(index)
    records: dict[str, list[dict[str, Any]]] = {m: [] for m in MODALITIES}
    for clip in clips:
        for m in todo[clip.key]:
            ex = extractors[m]
            try:
                rec = ex.extract(clip)
            except ClipError as exc:
                result.errors.append({"clip_key": clip.key, "stage": exc.stage, "error": exc.kind, "message": exc.message})
                continue
            except Exception as exc:  # one clip's unexpected failure must not cost the shard's other clips
                where = traceback.extract_tb(exc.__traceback__)[-1]
                result.errors.append({
                    "clip_key": clip.key, "stage": m, "error": type(exc).__name__,
                    "message": f"{exc} (at {Path(where.filename).name}:{where.lineno})",
                })  # fmt: skip
                continue
            rec["source_sha256"] = ex.source_hash(clip, hashes[clip.key])
            records[m].append(rec)
    name = shard_name([c.key for c in clips], todo, hashes)
    for m, recs in records.items():
        if recs:
            result.parts.append(str(store.write_modality(m, recs, extractors[m].info, name=name)))
            result.done[m] = len(recs)
    return result


def finish(params: Params, store_dir: str | Path, the_plan: Plan, errors: list[dict[str, str]]) -> dict[str, Any]:
    """Write clips.parquet and the quarantine for the corpus as it is now; drop superseded parts."""
    store = FeatureStore(store_dir)
    rows = []
    for clip in the_plan.clips:
        rows.append({**clip.clip_row(), "source_sha256": the_plan.hashes[clip.key], "duration": probe_duration(clip.path)})
    quarantine = the_plan.problems + errors
    if rows:
        store.write_clips(rows, replace=True)
    store.write_errors(quarantine, replace=True)
    pruned = sum(len(store.prune(m)) for m in MODALITIES)
    present = {m: store.present(m) for m in MODALITIES}
    bad = {q["clip_key"] for q in quarantine}
    complete = sum(1 for c in the_plan.clips if c.key not in bad and all(c.key in present[m] for m in MODALITIES))
    by_kind: dict[str, int] = {}
    for q in quarantine:
        by_kind[f"{q['stage']}:{q['error']}"] = by_kind.get(f"{q['stage']}:{q['error']}", 0) + 1
    return {"clips": len(the_plan.clips) + len({p["clip_key"] for p in the_plan.problems}), "complete": complete,
            "quarantined": len(bad), "by_error": by_kind, "pruned_parts": pruned}  # fmt: skip
