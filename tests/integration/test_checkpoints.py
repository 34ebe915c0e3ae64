"""Checkpoints that say what is wrong with them: truncated, not finite, of a newer format, or unwritable."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from misr.errors import MisrError
from misr.training.checkpoints import FORMAT_VERSION
from misr.training.model_dir import ModelDir
from tests.helpers import REPO, TINY_TRAINING, params, train

TINY = [*TINY_TRAINING, "data.synth.scenario=shift", "data.synth.n_clips={train: 64, valid: 16, test: 16}", "train.seeds=[7]"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny store and a 2-epoch model on it."""
    from misr.data.synth import generate

    root = tmp_path_factory.mktemp("ckpt")
    generate(params(*TINY).data.synth, root / "store")
    train(params(*TINY, "train.epochs=2"), root / "store", root / "model")
    return root


def copy_model(trained, tmp_path):
    import shutil

    shutil.copytree(trained / "model", tmp_path / "model")
    return tmp_path / "model"


def truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def poison(path):
    """The checkpoint with one weight tensor set to NaN, otherwise intact."""
    ckpt = torch.load(path, weights_only=True)
    name = next(k for k, v in ckpt["model"].items() if v.is_floating_point())
    ckpt["model"][name] = ckpt["model"][name] * float("nan")
    torch.save(ckpt, path)


@pytest.mark.slow
@pytest.mark.parametrize("damage", [truncate, poison], ids=["truncated", "nan-weights"])
def test_a_damaged_last_pt_is_set_aside_and_the_seed_starts_again(trained, tmp_path, damage):
    model = copy_model(trained, tmp_path)
    damage(model / "seed-7" / "last.pt")
    with pytest.warns(UserWarning, match=r"set aside as last\.pt\.corrupt, and this seed starts again"):
        summary = train(params(*TINY, "train.epochs=2"), trained / "store", model)
    assert summary["seeds"]["7"]["epochs_run"] == 2
    assert (model / "seed-7" / "last.pt.corrupt").exists()
    assert torch.load(model / "seed-7" / "last.pt", weights_only=True)["format_version"] == FORMAT_VERSION


@pytest.mark.slow
def test_a_damaged_best_pt_is_a_clear_error(trained, tmp_path):
    model = copy_model(trained, tmp_path)
    best = model / "seed-7" / "best.pt"
    good = best.read_bytes()
    truncate(best)
    with pytest.raises(MisrError, match=r"cannot read the checkpoint .*best\.pt: .*\(truncated or corrupt\?\)"):
        ModelDir(model).load_best(7)
    best.write_bytes(good)
    poison(best)
    with pytest.raises(MisrError, match="holds non-finite weights"):
        ModelDir(model).load_best(7)
    best.write_bytes(good)
    ckpt = torch.load(best, weights_only=True)
    torch.save({**ckpt, "format_version": 99}, best)
    with pytest.raises(MisrError, match=f"written in checkpoint format 99; this misr reads format {FORMAT_VERSION} and older"):
        ModelDir(model).load_best(7)
    best.write_bytes(good[:100])  # and through the commands: one error line, exit 2
    for cmd in (
        ["evaluate", str(trained / "store"), "--model", str(model), "--out", str(tmp_path / "eval")],
        ["predict", str(REPO / "tests"), "--model", str(model)],
    ):
        res = subprocess.run(
            [sys.executable, "-m", "pipelines.cli", *cmd, "--params", str(REPO / "params.yaml")],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if cmd[0] == "predict" and "no video files" in res.stderr:
            continue  # the folder holds no video: checked before the model is read
        assert res.returncode == 2 and "cannot read the checkpoint" in res.stderr and "Traceback" not in res.stderr, res.stderr


def test_a_full_disk_while_writing_a_checkpoint_says_so(tmp_path):
    """torch's own writer reports a short write as 'RuntimeError: [enforce fail at inline_container.cc]'.
    Here a file-size limit stands in for a full disk: the same short write, a clear error, no traceback."""
    script = textwrap.dedent(
        f"""
        import resource, signal, torch
        from misr.errors import MisrError
        from misr.util.atomic import write_torch
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
        try:
            write_torch({str(tmp_path / "last.pt")!r}, {{"w": torch.zeros(100_000)}})
        except MisrError as exc:
            print("error:", exc)
        """
    )
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    assert res.stdout.startswith(f"error: cannot write {tmp_path / 'last.pt'}: the write was cut short"), res.stdout
    assert os.listdir(tmp_path) == []  # no temporary file left behind


def test_a_model_folder_that_does_not_exist_is_named(tmp_path):
    from misr.predict import load_models

    with pytest.raises(MisrError, match="no model folder at /nonexistent/model"):
        load_models("/nonexistent/model", tmp_path, "misr-sentiment", "prod")
