"""Training on tiny synthetic stores: learning, resume after a kill, divergence, DDP, the flow."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

from misr.errors import MisrError
from misr.msa.convention import MOSI
from misr.training.loop import TrainingDiverged
from misr.training.model_dir import ModelDir
from misr.training.setup import resolve_input_spec
from tests.helpers import REPO, TINY_TRAINING, params, train

TINY = [
    *TINY_TRAINING,
    "data.synth.scenario=shift",
    "data.synth.n_clips={train: 96, valid: 32, test: 16}",
    "train.seeds=[7]",
]


def tiny_params(*extra):
    return params(*TINY, *extra)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from misr.data.synth import generate

    root = tmp_path_factory.mktemp("synth") / "store"
    generate(tiny_params().data.synth, root)
    return root


@pytest.fixture(scope="module")
def bigger_store(tmp_path_factory):
    from misr.data.synth import generate

    root = tmp_path_factory.mktemp("synth") / "store"
    generate(tiny_params("data.synth.scenario=shift", "data.synth.n_clips={train: 400, valid: 100, test: 20}").data.synth, root)
    return root


@pytest.mark.slow
def test_short_training_beats_the_training_mean(bigger_store, tmp_path):
    params = tiny_params("train.epochs=8", "train.batch_size=32", "model.d_model=32")
    summary = train(params, bigger_store, tmp_path / "m")
    r = summary["seeds"]["7"]
    assert r["best_valid_mae"] < 0.85 * r["train_mean_valid_mae"], r
    on_disk = json.loads((tmp_path / "m" / "summary.json").read_text())
    assert on_disk["seeds"]["7"]["best_epoch"] == r["best_epoch"]
    assert (tmp_path / "m" / "params.yaml").exists()
    # DVCLive saw every epoch of every loss term and validation metric
    risk = (tmp_path / "m" / "dvclive" / "seed-7" / "plots" / "metrics" / "train" / "risk.tsv").read_text().splitlines()
    assert len(risk) == 1 + r["epochs_run"]
    assert "MAE" in json.loads((tmp_path / "m" / "dvclive" / "seed-7" / "metrics.json").read_text())["valid"]


def test_two_trainings_of_one_store_are_the_same_bytes(store, tmp_path):
    """summary.json once held each seed's wall time: every re-run of train changed the model folder's DVC hash,
    and evaluation and registration re-ran behind it. The times are returned (the CLI shows them), not written."""
    tiny = tiny_params("train.epochs=2", "train.seeds=[7, 8]")
    summaries = [train(tiny, store, tmp_path / name) for name in ("a", "b")]
    assert all(r["seconds"] > 0 for s in summaries for r in s["seeds"].values())
    files = [{str(f.relative_to(tmp_path / n)): f.read_bytes() for f in sorted((tmp_path / n).rglob("*")) if f.is_file()} for n in "ab"]
    assert sorted(files[0]) == sorted(files[1]) and "summary.json" in files[0]
    assert [name for name in files[0] if files[0][name] != files[1][name]] == []


@pytest.mark.slow
def test_best_checkpoint_loads_with_weights_only_and_reproduces_valid_mae(store, tmp_path):
    from misr.store.store import FeatureStore
    from misr.training.batches import Batches
    from misr.training.inference import evaluate_split

    params = tiny_params("train.epochs=3")
    summary = train(params, store, tmp_path / "m")
    model, info = ModelDir(tmp_path / "m").load_best(7)
    valid = Batches(FeatureStore(store).load_split("valid"), torch.device("cpu"))
    mae = evaluate_split(model, valid, 16, MOSI)["MAE"]
    assert mae == pytest.approx(summary["seeds"]["7"]["best_valid_mae"], abs=1e-6)
    assert info["epoch"] == summary["seeds"]["7"]["best_epoch"]


def state_of(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def run_training(store, out, overrides, kill_at=None):
    """Train in a fresh process with a fixed thread count (float sums depend on it), optionally
    SIGKILLing itself right after the checkpoint of epoch `kill_at`."""
    script = textwrap.dedent(
        f"""
        import os, signal
        from misr.config.params import load_params
        from misr.msa.convention import MOSI
        from misr.stages.train import run
        from misr.training.loop import train_seed
        p = load_params({str(REPO / "params.yaml")!r}, {TINY + overrides!r})
        def kill(seed, epoch):
            if epoch == {kill_at!r}:
                os.kill(os.getpid(), signal.SIGKILL)
        def each_seed(job, seed, progress):
            return train_seed(job, seed, progress, on_epoch_end=kill)
        run(p.model, p.train, p.features, MOSI, {str(store)!r}, {str(out)!r}, run_seed=each_seed)
        """
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.slow
def test_resume_after_kill_equals_an_uninterrupted_run(store, tmp_path):
    overrides = ["train.epochs=4", "train.patience=10"]
    assert run_training(store, tmp_path / "full", overrides).returncode == 0
    proc = run_training(store, tmp_path / "killed", overrides, kill_at=1)
    assert proc.returncode == -9, proc.stderr
    last = state_of(tmp_path / "killed" / "seed-7" / "last.pt")
    assert last["epoch"] == 1 and not last["finished"]
    resumed = run_training(store, tmp_path / "killed", overrides)
    assert resumed.returncode == 0, resumed.stderr

    a = json.loads((tmp_path / "full" / "summary.json").read_text())["seeds"]["7"]
    b = json.loads((tmp_path / "killed" / "summary.json").read_text())["seeds"]["7"]
    assert (a["best_epoch"], a["epochs_run"]) == (b["best_epoch"], b["epochs_run"])
    assert a["best_valid_mae"] == b["best_valid_mae"]
    w_full, w_res = (
        state_of(tmp_path / "full" / "seed-7" / "best.pt")["model"],
        state_of(tmp_path / "killed" / "seed-7" / "best.pt")["model"],
    )
    assert all(torch.equal(w_full[k], w_res[k]) for k in w_full)
    # the resumed run really resumed: DVCLive has each epoch once, not the first two twice
    import csv

    with (tmp_path / "killed" / "dvclive" / "seed-7" / "plots" / "metrics" / "train" / "risk.tsv").open() as fh:
        assert [row["step"] for row in csv.DictReader(fh, delimiter="\t")] == ["0", "1", "2", "3"]


@pytest.mark.slow
def test_changed_settings_do_not_resume_a_foreign_checkpoint(store, tmp_path):
    train(tiny_params("train.epochs=2"), store, tmp_path / "m")
    with pytest.warns(UserWarning, match="belongs to other settings or data"):
        summary = train(tiny_params("train.epochs=2", "model.dropout=0.2"), store, tmp_path / "m")
    assert summary["seeds"]["7"]["epochs_run"] == 2


@pytest.mark.slow
def test_nan_loss_names_epoch_batch_and_term_and_keeps_last_good_checkpoint(store, tmp_path, monkeypatch):
    import misr.training.loop as train_mod

    real = train_mod.loss_terms
    calls = {"n": 0}

    def poisoned(cfg, out, y, groups=None):
        terms = real(cfg, out, y, groups)
        calls["n"] += 1
        if calls["n"] == 6 + 2:  # 6 batches per epoch: epoch 1, batch 1
            terms["kl_pair"] = terms["kl_pair"] * float("nan")
        return terms

    monkeypatch.setattr(train_mod, "loss_terms", poisoned)
    with pytest.raises(TrainingDiverged, match=r"'kl_pair' is nan at epoch 1, batch 1"):
        train(tiny_params("train.epochs=3"), store, tmp_path / "m")
    last = state_of(tmp_path / "m" / "seed-7" / "last.pt")
    assert last["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in last["model"].values())


@pytest.mark.slow
def test_input_spec_errors(store, tmp_path):
    with pytest.raises(MisrError, match="needs ids from its own tokenizer"):
        resolve_input_spec(tiny_params("model.text.encoder=minilm").model, store)
    with pytest.raises(MisrError, match="holds no text hidden states"):
        resolve_input_spec(tiny_params("model.text.encoder=hidden").model, store)
    with pytest.raises(MisrError, match="no feature store"):
        resolve_input_spec(tiny_params().model, tmp_path / "none")
    assert resolve_input_spec(tiny_params().model, store).text_kind == "tokens"


@pytest.mark.slow
def test_ddp_with_two_cpu_processes_matches_single_process(store, tmp_path):
    """torchrun, gloo backend: each rank takes half of every global batch; the result matches one process."""
    overrides = ["model.name=late_fusion", "model.dropout=0.0", "train.epochs=2", "train.deterministic=true"]
    single = train(tiny_params(*overrides), store, tmp_path / "single")
    params_file = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params_file)
    sets = [a for o in TINY + overrides for a in ("-S", o)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_port=29533",
            "-m",
            "pipelines.cli",
            "train",
            str(store),
            "--out",
            str(tmp_path / "ddp"),
            "--params",
            str(params_file),
            *sets,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ddp = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert ddp["world_size"] == 2
    assert ddp["seeds"]["7"]["best_valid_mae"] == pytest.approx(single["seeds"]["7"]["best_valid_mae"], abs=1e-4)
    w1 = state_of(tmp_path / "single" / "seed-7" / "last.pt")["model"]
    w2 = state_of(tmp_path / "ddp" / "seed-7" / "last.pt")["model"]
    # float sums run in another order across the all-reduce, and Adam magnifies the last bits of
    # near-zero gradients: compare the weights as a whole, relative to their size
    diff = torch.sqrt(sum(((w1[k] - w2[k]) ** 2).sum() for k in w1))
    norm = torch.sqrt(sum((w1[k] ** 2).sum() for k in w1))
    assert (diff / norm).item() < 1e-4


@pytest.mark.slow
def test_the_prefect_flow_trains_every_seed(store, tmp_path, prefect_harness):
    from prefect.artifacts import Artifact

    from pipelines.train import train_flow

    p = tiny_params("train.epochs=1", "train.seeds=[1, 2]")
    summary = train_flow(p.model, p.train, p.features, MOSI, store, tmp_path / "m")
    assert set(summary["seeds"]) == {"1", "2"}
    assert (tmp_path / "m" / "seed-2" / "best.pt").exists()
    artifact = Artifact.get("misr-train-summary")
    assert artifact is not None and "| 2 |" in artifact.data


@pytest.mark.slow
def test_a_second_training_into_a_folder_in_use_is_refused(store, tmp_path):
    import threading

    from misr.training.loop import train_seed
    from misr.util.lock import Busy

    inside, release = threading.Event(), threading.Event()

    def held(job, seed, progress):  # the first run pauses after its first epoch, holding the folder
        return train_seed(job, seed, progress, on_epoch_end=lambda s, e: (inside.set(), release.wait(60)))

    first = threading.Thread(target=train, args=(tiny_params("train.epochs=2"), store, tmp_path / "m"), kwargs={"run_seed": held})
    first.start()
    try:
        assert inside.wait(60)
        with pytest.raises(Busy, match=r"another training into .*m holds .*\.m\.train\.lock") as info:
            train(tiny_params("train.epochs=2"), store, tmp_path / "m")
        assert "another --out" in str(info.value)
        train(tiny_params("train.epochs=1"), store, tmp_path / "other")  # another folder is free
    finally:
        release.set()
        first.join(120)
    summary = json.loads((tmp_path / "m" / "summary.json").read_text())
    assert summary["seeds"]["7"]["epochs_run"] == 2  # the first run was not disturbed
    assert not any(p.name.endswith(".lock") for p in (tmp_path / "m").rglob("*"))  # nothing in the DVC output


@pytest.mark.slow
def test_groups_environments_are_inferred_after_the_warm_up_and_kept_for_a_resume(tmp_path):
    """Every modality's disagreement partition is kept (model.groups.partition all, the default), whatever the
    warmed-up model; the clips' group codes go into the checkpoint; every batch holds every group."""
    import numpy as np

    from misr.data.synth import generate
    from misr.store.store import FeatureStore
    from misr.training.groups import group_bits

    shortcut = [
        "data.synth.scenario=shortcut",
        "data.synth.n_clips={train: 400, valid: 64, valid_ood: 64, test: 16}",
        "model.environments=groups",
        "model.invariance.warmup_epochs=2",
        "train.epochs=4",
        "train.seeds=[5]",
    ]
    p = tiny_params(*shortcut)
    generate(p.data.synth, tmp_path / "store")
    summary = train(p, tmp_path / "store", tmp_path / "m")
    chosen = summary["seeds"]["5"]["environments"]
    assert chosen["source"] == "labels" and set(chosen["candidates"]) == {"text disagrees", "audio disagrees", "visual disagrees"}
    assert chosen["parts"] == ["text", "audio", "visual"] and chosen["name"] == "text, audio, visual disagree"
    assert chosen["violation"] == pytest.approx(sum(chosen["candidates"].values()))
    state = torch.load(tmp_path / "m" / "seed-5" / "last.pt", weights_only=True)
    assert len(state["groups"]) == 400 and state["partition"]["parts"] == chosen["parts"]
    train_split = FeatureStore(tmp_path / "store").load_split("train", as_torch=False)
    bits = group_bits(state["groups"], 3).numpy()
    for i, m in enumerate(chosen["parts"]):  # each bit is that modality's disagreement with the label
        expected = np.sign(train_split.unimodal_labels[m]) * np.sign(train_split.labels) < 0
        assert (bits[:, i] == expected).all() and 0.02 < bits[:, i].mean() < 0.5
    r = summary["seeds"]["5"]
    assert r["batches_missing_group"] == 0 and r["topped_up"] > 0
    risk = (tmp_path / "m" / "dvclive" / "seed-5" / "plots" / "metrics" / "train" / "invariance.tsv").read_text().splitlines()
    values = [float(line.split("\t")[-1]) for line in risk[1:]]
    assert values[0] == 0.0 and values[-1] > 0.0  # no penalty before the groups exist, one after
    one = train(tiny_params(*shortcut, "model.groups.partition=auto"), tmp_path / "store", tmp_path / "auto")["seeds"]["5"]
    assert len(one["environments"]["parts"]) == 1  # EIIL's choice: the candidate violated most
    assert one["environments"]["violation"] == max(one["environments"]["candidates"].values()) > 0


def test_the_checkpoint_is_chosen_once_the_penalty_has_its_full_weight(store, tmp_path):
    """The valid split has the training distribution: choosing among warm-up (ERM) epochs would undo the penalty."""
    p = tiny_params("train.epochs=5", "model.invariance.warmup_epochs=3", "model.invariance.schedule=step", "train.select_on=mae")
    summary = train(p, store, tmp_path / "misr")
    history = state_of(tmp_path / "misr" / "seed-7" / "last.pt")["history"]
    chosen = summary["seeds"]["7"]["best_epoch"]
    assert chosen >= 3 and history[chosen]["penalty_weight"] == p.model.invariance.weight
    assert summary["seeds"]["7"]["best_valid_mae"] == min(h["valid_MAE"] for h in history if h["epoch"] >= 3)
    # without the penalty every epoch counts
    q = tiny_params("train.epochs=5", "model.name=misr_no_inv", "train.select_on=mae")
    summary = train(q, store, tmp_path / "no_inv")
    history = state_of(tmp_path / "no_inv" / "seed-7" / "last.pt")["history"]
    assert summary["seeds"]["7"]["best_valid_mae"] == min(h["valid_MAE"] for h in history)


def train_on_shortcut(tmp_path, n_valid: int, *extra: str) -> dict:
    """One seed (5) on a 400-clip shortcut store, groups environments after 2 warm-up epochs; the summary."""
    from misr.data.synth import generate

    p = tiny_params(
        "data.synth.scenario=shortcut",
        f"data.synth.n_clips={{train: 400, valid: {n_valid}, valid_ood: 16, test: 16}}",
        "model.environments=groups",
        "model.invariance.warmup_epochs=2",
        "train.seeds=[5]",
        *extra,
    )
    generate(p.data.synth, tmp_path / "store")
    return train(p, tmp_path / "store", tmp_path / "m")


@pytest.mark.slow
def test_checkpoints_chosen_on_the_worst_validation_group_and_reported_by_evaluate(tmp_path):
    """train.select_on worst_group_mae: the chosen epoch is the one whose worst validation group is best; the
    groups follow the training partition's rule on valid (labels known: the store's label_T/A/V), and
    `misr evaluate` reports the same group MAEs for that checkpoint."""
    import numpy as np

    from misr.config.evaluate import EvaluateConfig
    from misr.evaluation.scoring import score_model
    from misr.store.store import FeatureStore

    summary = train_on_shortcut(tmp_path, 120, "train.epochs=6", "train.patience=10", "train.select_on=worst_group_mae")
    r = summary["seeds"]["5"]
    history = state_of(tmp_path / "m" / "seed-5" / "last.pt")["history"]
    eligible = [h for h in history if h["epoch"] >= 2]
    best = min(eligible, key=lambda h: h["valid_worst_group_MAE"])
    assert summary["selected_on"] == r["selected_on"] == "worst_group_mae"
    assert r["best_epoch"] == best["epoch"] and r["best_valid_score"] == best["valid_worst_group_MAE"]
    assert r["best_valid_mae"] == best["valid_MAE"]
    # the validation groups: the training partition's modality disagreeing in sign with the label, on valid
    groups = r["valid_groups"]
    assert groups["name"] == r["environments"]["name"] and groups["source"] == "labels"
    valid = FeatureStore(tmp_path / "store").load_split("valid", as_torch=False)
    assert groups["parts"] == ["text", "audio", "visual"]
    expected = sum((np.sign(valid.unimodal_labels[m]) * np.sign(valid.labels) < 0).astype(int) << i for i, m in enumerate(groups["parts"]))
    assert groups["group"] == expected.tolist() and 0 < sum(groups["group"])
    ev = score_model(EvaluateConfig(splits=["valid"], robustness=False), tmp_path / "store", tmp_path / "m")
    assert ev.per_seed["valid"]["5"]["worst_group_MAE"] == pytest.approx(r["best_valid_score"], abs=1e-6)
    assert ev.metrics["valid"]["mean"]["visual_disagrees_MAE"] > 0


@pytest.mark.slow
def test_a_held_out_penalty_is_measured_on_clips_the_risk_never_fits(tmp_path):
    """model.invariance.penalty_on held_out: a quarter of train is kept out of every risk batch from the first
    epoch, and once the groups exist each step's penalty comes from a group-balanced batch of those clips."""
    import math

    import numpy as np

    from misr.training.groups import balanced_rows, held_out_rows

    held = held_out_rows(400, 0.25, 5)
    assert len(held) == 100 and (held == held_out_rows(400, 0.25, 5)).all() and not (held == held_out_rows(400, 0.25, 6)).all()
    groups = np.zeros(400, dtype=int)
    groups[held[:7]] = 1  # a small group among the held-out rows
    drawn = balanced_rows(held, groups, 32, 5, 3, 0)
    assert set(drawn) <= set(held) and (groups[drawn] == 1).sum() == (groups[drawn] == 0).sum() == 16

    summary = train_on_shortcut(tmp_path, 64, "model.invariance.penalty_on=held_out", "train.epochs=4", "train.batch_size=32")
    r = summary["seeds"]["5"]
    assert r["steps"] == r["epochs_run"] * math.ceil(300 / 32)  # the 100 held-out clips are in no risk batch
    penalty = (tmp_path / "m" / "dvclive" / "seed-5" / "plots" / "metrics" / "train" / "invariance.tsv").read_text().splitlines()
    values = [float(line.split("\t")[-1]) for line in penalty[1:]]
    assert values[0] == 0.0 and values[-1] > 0.0
    with pytest.raises(MisrError, match="penalty_on held_out .* needs environments groups"):
        tiny_params("model.environments=z_plus_unimodal", "model.invariance.penalty_on=held_out")


@pytest.mark.slow
def test_known_groups_reference_and_groups_inferred_without_unimodal_labels(tmp_path):
    """late_fusion_groups on the named partition (from the store's labels: the known groups), and MISR told to
    ignore label_T/A/V (as on MOSI), whose groups then come from its own unimodal predictions."""
    from misr.data.synth import generate

    common = [
        "data.synth.scenario=shortcut",
        "data.synth.n_clips={train: 300, valid: 64, valid_ood: 16, test: 16}",
        "model.invariance.warmup_epochs=2",
        "train.epochs=4",
        "train.seeds=[5]",
    ]
    p = tiny_params(*common, "model.name=late_fusion_groups", "model.groups.partition=visual")
    generate(p.data.synth, tmp_path / "store")
    known = train(p, tmp_path / "store", tmp_path / "known")["seeds"]["5"]
    assert known["environments"]["name"] == "visual disagrees" and known["environments"]["source"] == "labels"
    assert known["best_epoch"] >= 2 and known["valid_groups"]["name"] == "visual disagrees"
    q = tiny_params(*common, "model.groups.source=predictions")
    inferred = train(q, tmp_path / "store", tmp_path / "inferred")["seeds"]["5"]
    assert inferred["environments"]["source"] == "predictions" and inferred["valid_groups"]["source"] == "predictions"
