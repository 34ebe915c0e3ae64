"""Running other programs (git, dvc): the one place that starts a subprocess.

A failure becomes a `MisrError` carrying the command's last words, so the CLI prints one clear line.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from misr.errors import MisrError


def _env() -> dict[str, str]:
    return {**os.environ, "DVC_NO_ANALYTICS": "1"}


def run(cwd: str | Path, *cmd: str, check: bool = True, timeout: float | None = 600) -> subprocess.CompletedProcess:
    """Run a command to the end and capture its output."""
    try:
        res = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, env=_env(), timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MisrError(f"{' '.join(cmd)} could not run: {exc}") from None
    if check and res.returncode != 0:
        tail = (res.stderr.strip() or res.stdout.strip())[-1500:]
        raise MisrError(f"{' '.join(cmd)} failed in {cwd} (exit {res.returncode}):\n{tail}")
    return res


def stream(cwd: str | Path, *cmd: str) -> None:
    """Run a long command, printing its output as it comes (the user's progress and a flow's log)."""
    tail: deque[str] = deque(maxlen=40)
    try:
        # a session of its own: the command and everything it starts can be stopped together
        proc = subprocess.Popen(
            list(cmd), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(), start_new_session=True
        )
    except OSError as exc:
        raise MisrError(f"{' '.join(cmd)} could not run: {exc}") from None
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            line = line.rstrip()
            if line:
                print(line, flush=True)
                tail.append(line)
    except BaseException:  # Ctrl-C, SIGTERM: stop the command and its children before going on
        stop_group(proc)
        raise
    if proc.wait() != 0:
        raise MisrError(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n" + "\n".join(tail))


def stop_group(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM the process group that `proc` leads, then SIGKILL what is left after `grace` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            os.killpg(proc.pid, 0)  # the leader is gone; is anything of its group left?
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def git(repo: str | Path, *args: str, check: bool = True) -> str:
    """A git command in `repo`; its standard output, stripped."""
    return run(repo, "git", *args, check=check, timeout=120).stdout.strip()


def head(repo: str | Path) -> str:
    return git(repo, "rev-parse", "HEAD")


def uncommitted(repo: str | Path, paths: Sequence[str] = ()) -> list[str]:
    """`git status --porcelain` lines (of `paths` only, when given)."""
    out = git(repo, "status", "--porcelain", *(["--", *paths] if paths else []))
    return [line for line in out.splitlines() if line.strip()]


def commit(repo: str | Path, message: str, paths: Sequence[str] = ()) -> str:
    """Stage `paths` (everything when empty), commit, and return the new commit's hash."""
    git(repo, "add", "-A", *(["--", *paths] if paths else []))
    git(repo, "commit", "-q", "-m", message)
    return head(repo)


def tags(repo: str | Path) -> set[str]:
    return set(git(repo, "tag", "--list").split())


def git_state(repo: str | Path, code_paths: Sequence[str]) -> dict[str, object]:
    """HEAD, and whether the code (`code_paths`) differs from it; None where git cannot tell."""
    try:
        commit_hash = head(repo)
        dirty = bool(uncommitted(repo, code_paths))
    except MisrError:
        return {"commit": None, "code_dirty": None}
    return {"commit": commit_hash, "code_dirty": dirty}
