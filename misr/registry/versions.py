"""The model registry: versions and stages of an artifact as git tags (GTO), and where its files are.

An artifact is declared in dvc.yaml (`artifacts:`, its path); `gto register` tags a commit as a
version of it, `gto assign` puts a version in a stage (e.g. prod). Reading a registered model means
finding the commit of a version or stage, then the artifact's path in that commit's dvc.yaml.
"""

from __future__ import annotations

import time
from pathlib import Path

from misr.errors import MisrError
from misr.util import proc


def stage_holder(repo: Path, artifact: str, stage: str) -> tuple[str, str] | None:
    """(version, commit) of the version now in the stage, or None when the stage is empty (or no registry)."""
    import gto.api
    from gto.exceptions import GTOException

    try:
        found = gto.api.find_versions_in_stage(str(repo), artifact, stage)
    except GTOException:
        return None
    if not found:
        return None
    current = found[0] if isinstance(found, list) else found
    return current.version, current.commit_hexsha


def is_version(ref: str) -> bool:
    return ref.startswith("v") and ref[1:2].isdigit()


def commit_of(repo: Path, artifact: str, ref: str) -> str:
    """The commit of `ref`: a version (v0.0.1, the commit its registration tag points to) or a stage (its version now)."""
    from gto.exceptions import GTOException

    if not (Path(repo) / ".git").exists():
        raise MisrError(
            f"{Path(repo).resolve()} is not a git repository, so it holds no model registry (GTO tags)",
            hint="run from the pipeline's repository, pass --repo, or --model MODEL_DIR",
        )
    try:
        if is_version(ref):
            commit = proc.git(repo, "rev-list", "-n", "1", f"{artifact}@{ref}", check=False) or None
        else:
            import gto.api

            found = gto.api.find_versions_in_stage(str(repo), artifact, ref)
            commit = (found[0] if isinstance(found, list) else found).commit_hexsha if found else None
    except GTOException as exc:
        raise MisrError(f"cannot read the model registry in {repo}: {exc}") from None
    if not commit:
        raise MisrError(
            f"no version of {artifact} is {'registered as ' + ref if is_version(ref) else 'in stage ' + repr(ref)}",
            hint="train and register one (`bash scripts/demo.sh`), or pass --model MODEL_DIR",
        )
    return commit


def artifact_path(repo: Path, artifact: str, commit: str) -> str:
    """The artifact's folder as dvc.yaml declared it at `commit` (relative to the repository)."""
    import dvc.api
    import yaml

    dvc_yaml = yaml.safe_load(dvc.api.read("dvc.yaml", repo=str(repo), rev=commit))
    path = (dvc_yaml or {}).get("artifacts", {}).get(artifact, {}).get("path")
    if not path:
        raise MisrError(f"dvc.yaml at {commit[:10]} declares no artifact {artifact!r}")
    return path


def tag(repo: Path, artifact: str, stage: str, message: str) -> str:
    """Register HEAD as a new version of the artifact and assign it the stage; returns the version."""
    import gto.api

    _after_last_tag_second(repo, artifact)
    made = gto.api.register(str(repo), artifact, "HEAD", message=f"misr: {message}")
    version = made.version if hasattr(made, "version") else str(made)
    gto.api.assign(str(repo), artifact, stage, version=version, message="misr: promotion gate passed")
    return version


def _after_last_tag_second(repo: Path, artifact: str) -> None:
    """Wait (at most a second) until the clock has left the second of this artifact's newest tag.

    GTO orders versions and stage assignments by their tag's time, which has one-second resolution:
    two promotions within one second could be read back in the wrong order.
    """
    listing = proc.git(
        repo, "for-each-ref", "--sort=-taggerdate", "--format=%(taggerdate:unix) %(refname:short)", "refs/tags/", check=False
    )
    pairs = [line.split(" ", 1) for line in listing.splitlines() if " " in line]
    newest = next((int(t) for t, name in pairs if name.startswith(artifact) and t.isdigit()), None)
    while newest is not None and time.time() < newest + 1:
        time.sleep(0.05)
