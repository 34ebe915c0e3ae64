"""What several test modules share: paths, tiny settings, and the stages called from a Params object."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from misr.config.params import Params, load_params
from misr.msa.convention import convention

REPO = Path(__file__).resolve().parents[2]
GRID = REPO.parent / "shared" / "data" / "grid"
FACES = REPO.parent / "shared" / "data" / "faces"  # five licensed real recordings (see its README)

# A model and a synthetic set small enough to train in seconds.
TINY_TRAINING = [
    "data.synth.audio_frames=[4, 10]",
    "data.synth.visual_frames=[4, 10]",
    "model.d_model=16",
    "model.n_heads=2",
    "model.n_layers=1",
    "model.latent_dim=8",
    "train.batch_size=16",
    "train.lr=0.003",
]


def params(*overrides: str) -> Params:
    """The repository's params.yaml with overrides."""
    return load_params(REPO / "params.yaml", list(overrides))


def train(p: Params, store: Path, out: Path, **kw: Any) -> dict[str, Any]:
    """The train stage with the sections of `p`, as `misr train` calls it."""
    from misr.stages import train as stage

    return stage.run(p.model, p.train, p.features, convention(p.data.active.convention), store, out, **kw)


def evaluate(p: Params, store: Path, model: Path, out: Path):
    """The evaluate stage with the sections of `p`, as `misr evaluate` calls it."""
    from misr.stages import evaluate as stage

    return stage.run(p.evaluate, p.data.dataset, p.data.active, store, model, out)


def extract_here(p: Params, raw: Path, store: Path) -> dict[str, Any]:
    """The extract stage without Prefect (shards one after the other in this process)."""
    from misr.stages import extract as stage

    return stage.run(p.features, p.extract, convention(p.data.active.convention), raw, store)


def extract_flow(p: Params, raw: Path, store: Path) -> dict[str, Any]:
    """The extract stage as `misr extract` runs it: a Prefect flow."""
    from pipelines.extract import extract_flow as flow

    return flow(p.features, p.extract, convention(p.data.active.convention), raw, store)


def make_video(path: Path, with_audio: bool = True, with_face: bool = True, seconds: float = 1.0) -> None:
    """A small clip: the demo face (or a blank grey image) and a tone, written with PyAV."""
    from misr.data.democorpus import build_rig, write_mp4

    n = int(25 * seconds)
    frames = np.repeat(build_rig(224).image[None], n, axis=0) if with_face else np.full((n, 224, 224, 3), 128, np.uint8)
    audio = (0.2 * np.sin(2 * np.pi * 150 * np.arange(int(16000 * seconds)) / 16000)).astype(np.float32)
    write_mp4(path, frames, 25, audio if with_audio else None, 16000)


def misr(*args: Any, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """The `misr` command as a user runs it."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    cmd = [sys.executable, "-m", "pipelines.cli", *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def assert_clean_error(res: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit code 2 and one `error:` line naming the problem, never a traceback."""
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    assert res.stderr.startswith("error:")
    said = " ".join(res.stderr.split())  # the console wraps long lines (a long path) wherever they reach its width
    for f in fragments:
        assert f in said, res.stderr
