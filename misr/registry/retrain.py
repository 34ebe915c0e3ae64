"""Retraining when new data lands: detect changes, record the corpus, rerun the pipeline, gate, commit, register, push.

Prefect-free steps; `pipelines/retrain.py` runs them as a flow (and `misr schedule` serves it on a
cron). The rules:
  - the watched corpus is the user's data: a source of the pipeline (DVC-tracked with `dvc add`, or in
    git), never a stage's output, which DVC would restore from its cache over new clips. Retraining
    records its new version (`dvc add`, the .dvc file goes into the run's commit) before `dvc repro`;
  - one run at a time (a lock file): a second run started meanwhile records that and stops, so two
    DVC processes never work on the repository at once;
  - the repository must be clean at the start; a failure at any step puts code, dvc.lock, models and
    reports back (`git reset --hard` to the starting commit, the run's tags deleted, `dvc checkout` of
    the pipeline's outputs) and leaves the corpus as the user left it: no checkout ever targets it;
  - every run, changed or not, appends one line to the audit log (`misr history` prints it).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from misr.config.params import Params
from misr.data.corpus import VideoFinder, read_label_table
from misr.errors import MisrError
from misr.evaluation.eval_dir import EvalDir
from misr.store import clip_key
from misr.util import proc
from misr.util.atomic import write_json
from misr.util.hashing import file_sha256, stable_hash


def watched_corpus(params: Params, repo: Path) -> Path:
    """The folder of `retrain.dataset`'s raw corpus (absolute)."""
    ds = params.data.datasets[params.retrain.dataset]
    if ds.raw_dir is None:
        raise MisrError(f"retrain.dataset {params.retrain.dataset!r} has no raw_dir to watch")
    return (repo / ds.raw_dir).resolve()


@dataclass(frozen=True)
class Stage:
    """One stage of the repository's DVC pipeline (a `.dvc` file of `dvc add` is a data source)."""

    name: str  # as `dvc repro` and `dvc checkout` take it from the repository's root
    data_source: bool
    outs: tuple[Path, ...]
    in_root_pipeline: bool  # a stage of the root dvc.yaml (what retraining reproduces)
    upstream: frozenset[str] = frozenset()  # every stage it depends on, directly or not


def pipeline_stages(repo: Path) -> list[Stage]:
    """Every stage DVC sees in `repo`: dvc.yaml stages (foreach expanded) and .dvc files."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    repo = repo.resolve()

    def name_of(s) -> str:
        rel = Path(s.path).resolve().relative_to(repo)
        return str(rel) if s.is_data_source else s.name if rel == Path("dvc.yaml") else f"{rel}:{s.name}"

    found = []
    try:
        with Repo(str(repo)) as dvc_repo:
            graph = dvc_repo.index.graph  # an edge runs from a stage to a stage it depends on
            for s in graph.nodes:
                outs = tuple(Path(o.fs_path).resolve() for o in s.outs)
                in_root = not s.is_data_source and Path(s.path).resolve() == repo / "dvc.yaml"
                upstream = frozenset(name_of(d) for d in _reachable(graph, s))
                found.append(Stage(name_of(s), bool(s.is_data_source), outs, in_root, upstream))
    except DvcException as exc:
        raise MisrError(f"DVC cannot read the pipeline in {repo}: {exc}") from None
    return found


def _reachable(graph, start) -> set:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph.successors(todo.pop()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def overlaps(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def check_is_source(stages: list[Stage], corpus: Path, repo: Path, dataset: str) -> None:
    """Refuse a watched corpus that a pipeline stage writes: `dvc repro` would restore it over new clips."""
    for stage in stages:
        if stage.data_source:
            continue
        for out in stage.outs:
            if overlaps(out, corpus):
                rel = corpus.relative_to(repo) if corpus.is_relative_to(repo) else corpus
                raise MisrError(
                    f"retrain.dataset {dataset!r} watches {rel}, which stage {stage.name!r} of dvc.yaml writes "
                    f"({out.relative_to(repo) if out.is_relative_to(repo) else out}): DVC restores a stage's outputs "
                    "from its cache, which would delete clips added there",
                    hint=f"make the corpus a source: remove its stage from dvc.yaml, then `dvc add {rel}` and commit {rel}.dvc",
                )


def registration_stage(stages: list[Stage], eval_dir: Path, dataset: str) -> str:
    """The stage that writes the gate's decision for the data set: what retraining reproduces."""
    target = EvalDir(eval_dir).registration.resolve()
    for stage in stages:
        if not stage.data_source and target in stage.outs:
            return stage.name
    raise MisrError(
        f"no stage of dvc.yaml writes {target} (the gate's decision for retrain.dataset {dataset!r})",
        hint="add a register stage for the data set (see the register stage of the shipped dvc.yaml)",
    )


def corpus_files(corpus: Path) -> set[str]:
    """The corpus's files, relative to it (links not followed)."""
    found = set()
    for folder, _dirs, files in os.walk(corpus):
        found.update(str((Path(folder) / f).relative_to(corpus)) for f in files)
    return found


def record_corpus(repo: Path, corpus: Path) -> str:
    """Record the corpus's current version: `dvc add` (its .dvc file joins the run's commit), unless git holds it."""
    rel = str(corpus.relative_to(repo))
    if proc.git(repo, "ls-files", "--", rel):
        return "in git"
    proc.run(repo, "dvc", "add", "--quiet", rel, timeout=None)
    dvc_file = corpus.with_name(corpus.name + ".dvc")
    outs = (yaml.safe_load(dvc_file.read_text()) or {}).get("outs") or [{}]
    return str(outs[0].get("md5") or "")


def checkout_outputs(stages: list[Stage], corpus: Path, repo: Path, target: str) -> str:
    """`dvc checkout --force` of the outputs of `target` and the stages it depends on, never of the corpus:
    the guard refuses any checkout that reaches it."""
    wanted = {target} | next((s.upstream for s in stages if s.name == target), frozenset())
    targets = []
    for stage in stages:
        if stage.name not in wanted or not stage.in_root_pipeline or not stage.outs:
            continue
        if any(overlaps(out, corpus) for out in stage.outs):
            return f"dvc checkout refused: stage {stage.name!r} writes into the watched corpus"
        targets.append(stage.name)
    if not targets:
        return "dvc checkout: no pipeline outputs"
    before = corpus_files(corpus)
    res = proc.run(repo, "dvc", "checkout", "--force", *targets, check=False, timeout=None)
    lost = sorted(before - corpus_files(corpus))
    said = "dvc checkout" + ("" if res.returncode == 0 else f" failed: {res.stderr.strip()[-200:]}")
    if lost:  # cannot happen while no target reaches the corpus; said loudly if it ever does
        said += f"; {len(lost)} files of the corpus are gone: {', '.join(lost[:5])}"
    return said


def check_repository(root: Path) -> None:
    """Retraining commits, tags and pushes: `root` must be the top of a git repository (nothing is written otherwise)."""
    top = proc.git(root, "rev-parse", "--show-toplevel", check=False) if root.is_dir() else ""
    if not top or Path(top).resolve() != root.resolve():
        raise MisrError(
            f"{root} is not the top folder of a git repository" + (f" (it lies inside {top})" if top else ""),
            hint="run retraining in the pipeline's repository (--repo), where dvc.yaml and params.yaml are committed",
        )


def data_state(corpus: Path) -> dict[str, Any]:
    """What the watched corpus holds now: per clip its label and file hash (the data version is its hash)."""
    table = corpus / "label.csv"
    if not table.is_file():
        raise MisrError(
            f"the watched corpus {corpus} has no label.csv",
            hint="restore it with `dvc checkout` of its .dvc file or `dvc pull`; for the demo data, `misr demo-corpus`",
        )
    clips: dict[str, list[Any]] = {}
    finder = VideoFinder(corpus / "Raw")
    for row in read_label_table(table)[1]:
        values = row.values
        video_id, clip_id, found = finder.locate(values.get("video_id") or "", values.get("clip_id") or "")
        digest = file_sha256(found) if found is not None and found.is_file() else None  # never a FIFO: it blocks
        clips[clip_key(video_id, clip_id)] = [values.get("label"), values.get("mode"), values.get("text"), digest]
    return {"version": stable_hash(clips), "clips": clips}


def changes(before: dict[str, Any] | None, now: dict[str, Any]) -> dict[str, int]:
    old = (before or {}).get("clips", {})
    new = now["clips"]
    return {
        "new_clips": sum(1 for k in new if k not in old),
        "removed_clips": sum(1 for k in old if k not in new),
        "changed_labels": sum(1 for k in new if k in old and new[k][:3] != old[k][:3]),
        "changed_files": sum(1 for k in new if k in old and new[k][3] != old[k][3]),
    }


WORDS = {
    "new_clips": ("new clip", "new clips"),
    "removed_clips": ("removed clip", "removed clips"),
    "changed_labels": ("changed label", "changed labels"),
    "changed_files": ("changed file", "changed files"),
}


def describe(diff: dict[str, int]) -> str:
    """'2 new clips, 1 changed label', or 'no data change'."""
    parts = [f"{n} {WORDS[k][n != 1]}" for k, n in diff.items() if n]
    return ", ".join(parts) or "no data change"


def read_last_state(path: Path) -> dict[str, Any] | None:
    """The corpus as the last successful retraining used it (None before the first)."""
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MisrError(f"cannot read {path}: {exc}", hint="delete it: the next retraining then counts every clip as new") from None


def write_last_state(path: Path, state: dict[str, Any]) -> None:
    write_json(path, state)


def history(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def append_history(path: Path, entry: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry, sort_keys=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def now_utc() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class Snapshot:
    """The repository as the run found it, to put back after a failure (the corpus is never touched)."""

    def __init__(self, repo: Path, corpus: Path, stages: list[Stage], target: str):
        self.repo, self.corpus, self.stages, self.target = repo, corpus, stages, target
        dirty = proc.uncommitted(repo)
        if dirty:
            rel = str(corpus.relative_to(repo)) if corpus.is_relative_to(repo) else str(corpus)
            hint = None
            if corpus.is_relative_to(repo) and proc.uncommitted(repo, [rel]):  # git names the corpus even inside an untracked parent
                hint = f"the watched corpus is not versioned yet: `dvc add {rel}`, then commit {rel}.dvc and its .gitignore"
            raise MisrError(
                "the repository has uncommitted changes; retraining needs a clean checkout:\n    " + "\n    ".join(dirty[:10]),
                hint=hint,
            )
        self.head = proc.head(repo)
        self.tags = proc.tags(repo)

    def restore(self) -> list[str]:
        """Back to the starting commit and outputs; delete tags this run made. Returns what it did."""
        done = []
        for tag in sorted(proc.tags(self.repo) - self.tags):
            proc.git(self.repo, "tag", "-d", tag)
            done.append(f"deleted tag {tag}")
        if proc.head(self.repo) != self.head or proc.uncommitted(self.repo):
            proc.git(self.repo, "reset", "-q", "--hard", self.head)
            done.append(f"reset to {self.head[:10]}")
        done.append(checkout_outputs(self.stages, self.corpus, self.repo, self.target))
        return done


def eval_dir(repo: Path, params: Params) -> Path:
    return repo / params.data.datasets[params.retrain.dataset].eval_dir


def metrics_of(repo: Path, params: Params) -> dict[str, Any] | None:
    return EvalDir(eval_dir(repo, params)).read_metrics()


def decision_of(repo: Path, params: Params) -> dict[str, Any]:
    path = EvalDir(eval_dir(repo, params)).decision
    if not path.exists():
        raise MisrError(f"the pipeline wrote no gate decision at {path.relative_to(repo)}")
    return json.loads(path.read_text())
