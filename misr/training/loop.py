"""The training loop: several seeds, each checkpointed every epoch and resumable; CPU, CUDA, or torchrun DDP.

MODEL_DIR/
    params.yaml               the settings of the run (model, train, features, convention)
    summary.json              per seed: best validation MAE and its epoch, the training-mean baseline
    seed-<s>/last.pt          everything needed to resume after the last finished epoch
    seed-<s>/best.pt          the weights with the best validation MAE once the penalty is at full weight (never test)
    dvclive/seed-<s>/         per-epoch losses and validation metrics (DVCLive: `dvc plots`, `dvc exp show`)

Reproducibility: the batch order and every random draw of an epoch (dropout, reparameterisation)
are seeded from (seed, epoch), so a run resumed from `last.pt` ends exactly where an uninterrupted
run ends. One seed is: resume or start (`start_seed`), then per epoch `run_epoch` and
`validate_and_checkpoint`, until the last epoch or early stopping.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from misr.errors import MisrError
from misr.model import build_model, loss_terms, loss_weights, total_loss
from misr.training import checkpoints
from misr.training.batches import Batches, GroupCover, batches_for, chunks, drop_modalities, epoch_batches, rank_share, with_every_group
from misr.training.checkpoints import RunSettings
from misr.training.groups import balanced_rows, choose_partition, group_maes, held_out_rows, parts_of, validation_partition
from misr.training.inference import autocast_for, predict, score
from misr.training.model_dir import ModelDir
from misr.training.setup import Dist, Loaded, load_data, make_optimizer, resolve_device, run_fingerprint, seed_everything, warmup_cosine
from misr.util.atomic import check_writable, write_json, write_text
from misr.util.lock import exclusive, lock_beside
from misr.util.stop import check_stop

Progress = Callable[[str, dict[str, Any]], None]


class TrainingDiverged(MisrError):
    """A loss term became NaN or inf."""


# A seed's times: shown as it trains and returned to the caller, never written into the model folder
WALL_CLOCK = ("seconds", "step_ms", "data_ms")


@dataclass
class SeedResult:
    seed: int
    best_valid_mae: float
    best_epoch: int
    train_mean_valid_mae: float
    epochs_run: int
    stopped_early: bool
    valid_metrics: dict[str, float]
    seconds: float
    device: str
    steps: int = 0
    step_ms: float = 0.0  # mean wall time of one optimisation step (its batch, forward, backward, update)
    data_ms: float = 0.0  # of which: getting the batch (reading the store when streamed, padding, copying to the device)
    environments: dict[str, Any] | None = None  # model.environments groups: the partition chosen, and every candidate's violation
    selected_on: str = "mae"  # train.select_on: what chose the checkpoint and stopped early
    best_valid_score: float = math.nan  # that measure at the chosen checkpoint (best_valid_mae is the pooled MAE there)
    valid_groups: dict[str, Any] | None = None  # the validation clips' groups (name, parts, source, each clip's group code)
    topped_up: int = 0  # clips added to batches so that each held train.group_min_count of every group (all epochs)
    batches_missing_group: int = 0  # training batches that still lacked a group (all epochs): its penalty went without it


@dataclass
class SeedState:
    """Where a seed's training stands after an epoch; saved in last.pt and restored on resume."""

    epoch: int = -1
    best_mae: float = math.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    finished: bool = False
    groups: list[int] | None = None  # model.environments groups: each training clip's group, once inferred
    partition: dict[str, Any] | None = None  # how the groups were chosen (name, source, violations)
    best_score: float = math.inf  # the train.select_on measure of the best checkpoint
    valid_groups: dict[str, Any] | None = None  # the validation clips' groups, once set (name, parts, source, group)

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any]) -> SeedState:
        state = cls(**{k: ckpt[k] for k in cls.__dataclass_fields__ if k in ckpt})  # older checkpoints lack the newer fields
        if "best_score" not in ckpt:  # chosen on the pooled MAE, before train.select_on
            state.best_score = state.best_mae
        return state


@dataclass
class Run:
    """A prepared training run: data loaded, device chosen, output folder ready."""

    settings: RunSettings
    store_dir: Path
    out: Path
    loaded: Loaded
    device: torch.device
    dist: Dist

    @property
    def model_dir(self) -> ModelDir:
        return ModelDir(self.out)


@dataclass
class SeedJob:
    """One seed's model, optimiser and bookkeeping while it trains."""

    seed: int
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    state: SeedState
    fingerprint: str
    resumed: bool
    steps_per_epoch: int
    held: np.ndarray | None = None  # model.invariance.penalty_on held_out: the training rows the risk never fits


# How an orchestrator runs one seed (default: `train_seed` in this process).
SeedRunner = Callable[[Run, int, Progress | None], SeedResult]


def prepare(settings: RunSettings, store_dir: str | Path, out_dir: str | Path) -> Run:
    """Join the torchrun job if there is one, pick the device, load the data, write the run's settings."""
    dist = Dist.from_env()
    if dist.launched and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and settings.train.device != "cpu" else "gloo"
        torch.distributed.init_process_group(backend)
    out = Path(out_dir)
    if settings.train.threads:  # several trainings side by side: one thread each, or they thrash on shared cores
        torch.set_num_threads(settings.train.threads)
    device = resolve_device(settings.train.device, dist)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    loaded = load_data(settings.model, store_dir, settings.train.stream, settings.convention.label_limit, settings.train.action_units)
    if dist.main:
        write_text(out / "params.yaml", settings.to_yaml())
    return Run(settings, Path(store_dir), out, loaded, device, dist)


def train(
    settings: RunSettings,
    store_dir: str | Path,
    out_dir: str | Path,
    progress: Progress | None = None,
    run_seed: SeedRunner | None = None,
) -> dict[str, Any]:
    """Train every seed of `train.seeds` one after the other; returns the summary (summary.json).

    `run_seed` runs one seed (default `train_seed`); an orchestrator passes its own, e.g. a task with retries.
    """
    if Dist.from_env().main:
        check_writable(out_dir)
    with output_lock(Path(out_dir)):
        run = prepare(settings, store_dir, out_dir)
        one = run_seed or train_seed
        return summarize(run, [one(run, seed, progress) for seed in settings.train.seeds])


def output_lock(out: Path):
    """One training per output folder: a second one would resume from, and overwrite, the first's checkpoints.

    The lock file lies beside the folder, not in it (the folder is a DVC output). Under torchrun only
    rank 0 takes it: the other ranks belong to the same run.
    """
    if not Dist.from_env().main:
        return nullcontext()
    hint = "wait for it to finish, or train into another --out"
    return exclusive(lock_beside(out, "train"), f"another training into {out}", hint=hint)


def summarize(run: Run, results: list[SeedResult]) -> dict[str, Any]:
    """summary.json: per seed the best validation MAE, its epoch, and the training-mean baseline."""
    summary = {
        "model": run.settings.model.name,
        "store": str(run.store_dir),
        "device": str(run.device),
        "world_size": run.dist.world,
        "visual_view": run.loaded.view,
        "seeds": {str(r.seed): asdict(r) for r in results},  # wall-clock fields included: the caller's table shows them
        "best_valid_mae_mean": float(np.mean([r.best_valid_mae for r in results])),
        "best_valid_mae_std": float(np.std([r.best_valid_mae for r in results])),
        "selected_on": run.settings.train.select_on,
        "train_mean_valid_mae": results[0].train_mean_valid_mae,
    }
    if run.dist.main:  # the file holds what the arithmetic gives: the same training is the same bytes (DVC re-runs nothing)
        on_disk = {**summary, "seeds": {k: {f: v for f, v in r.items() if f not in WALL_CLOCK} for k, r in summary["seeds"].items()}}
        write_json(run.model_dir.summary_path, on_disk)
    return summary


def train_seed(run: Run, seed: int, progress: Progress | None = None, on_epoch_end: Callable[[int, int], None] | None = None) -> SeedResult:
    """Train one seed to the end (or early stop), resuming from its last checkpoint when there is one."""
    started = time.perf_counter()
    job = start_seed(run, seed)
    tc, loaded, dist = run.settings.train, run.loaded, run.dist
    train_mean = float(loaded.train.labels.mean())
    baseline = float(np.mean(np.abs(loaded.valid.labels.numpy() - train_mean)))  # valid MAE of the training mean
    ddp_model = job.model
    if dist.launched:
        device_ids = [run.device.index] if run.device.type == "cuda" else None
        ddp_model = nn.parallel.DistributedDataParallel(job.model, device_ids=device_ids)
    train_batches, valid_batches = batches_for(loaded.train, run.device), batches_for(loaded.valid, run.device)
    live = _live(run.model_dir.live(seed), job.resumed) if dist.main else None
    if progress:
        info = {"epochs": tc.epochs, "steps": job.steps_per_epoch, "start_epoch": job.state.epoch + 1, "resumed": job.resumed}
        progress("seed", {"seed": seed, **info})
    step_seconds, data_seconds, steps_done = 0.0, 0.0, 0
    for epoch in range(job.state.epoch + 1, tc.epochs):
        if job.state.finished:
            break
        if penalty_switches_on(run.settings.model, epoch):
            # IRM practice (Arjovsky et al.'s reference code): Adam's moments were shaped by the risk alone
            job.optimizer.state.clear()
        set_groups(run, job, train_batches, epoch)  # once: inference over the training split, not a step
        epoch_started = time.perf_counter()
        sums, n_batches, penalty_weight, waited, cover = run_epoch(run, job, ddp_model, train_batches, epoch, progress)
        step_seconds += time.perf_counter() - epoch_started
        data_seconds += waited
        steps_done += n_batches
        valid = validate(run, job, valid_batches, epoch)
        record = {"epoch": epoch, "lr": job.scheduler.get_last_lr()[0], "penalty_weight": penalty_weight}
        if train_batches.groups is not None:
            record.update({"train_topped_up": cover.topped_up, "train_batches_missing_group": cover.batches_missing_group})
        record.update({f"train_{k}": float(v) / max(1, n_batches) for k, v in sums.items()})
        record.update({f"valid_{k}": v for k, v in valid.items()})
        validate_and_checkpoint(run, job, epoch, record, valid, train_mean, live)
        if progress:
            progress("epoch", {"seed": seed, "epoch": epoch, "valid_mae": valid["MAE"], "best_mae": job.state.best_mae})
        if on_epoch_end:
            on_epoch_end(seed, epoch)
    if live is not None:
        live.end()
    state = job.state
    best = next((h for h in state.history if h["epoch"] == state.best_epoch), {})
    return SeedResult(
        seed=seed,
        best_valid_mae=float(state.best_mae),
        best_epoch=int(state.best_epoch),
        train_mean_valid_mae=float(baseline),
        epochs_run=int(state.epoch) + 1,
        stopped_early=bool(state.bad_epochs >= tc.patience and state.epoch < tc.epochs - 1),
        valid_metrics={k[len("valid_") :]: v for k, v in best.items() if k.startswith("valid_")},
        seconds=time.perf_counter() - started,
        device=str(run.device),
        steps=steps_done,
        step_ms=1000.0 * step_seconds / max(1, steps_done),
        data_ms=1000.0 * data_seconds / max(1, steps_done),
        environments=state.partition,
        selected_on=tc.select_on if state.valid_groups or tc.select_on == "mae" else "mae (valid has no groups)",
        best_valid_score=float(state.best_score),
        valid_groups=state.valid_groups or None,
        topped_up=sum(int(h.get("train_topped_up", 0)) for h in state.history),
        batches_missing_group=sum(int(h.get("train_batches_missing_group", 0)) for h in state.history),
    )


SELECTION_METRIC = {"mae": "MAE", "group_mean_mae": "group_mean_MAE", "worst_group_mae": "worst_group_MAE"}


def validate(run: Run, job: SeedJob, batches: Batches, epoch: int) -> dict[str, float]:
    """The validation metrics of the epoch, with the MAE of each validation group, their mean and the worst.

    The groups are set once, at the first epoch a checkpoint may be chosen from (after the warm-up, as the
    training groups are), by `validation_partition`; with `train.select_on: mae` a split the rule finds
    no groups in is reported without them.
    """
    tc, state = run.settings.train, job.state
    preds = predict(job.model, batches, tc.batch_size)
    labels = batches.labels.numpy()
    valid = score(preds, labels, run.settings.convention)
    if state.valid_groups is None and epoch >= min(first_selectable_epoch(run.settings.model), tc.epochs - 1):
        trained_on = state.partition or None
        try:
            chosen = validation_partition(job.model, batches, tc.batch_size, trained_on, run.settings.model.loss, run.settings.model.groups)
        except MisrError as exc:
            if tc.select_on != "mae" and run.dist.main:
                warnings.warn(
                    f"train.select_on {tc.select_on}: {exc.message}; the checkpoint is chosen on the pooled validation MAE", stacklevel=2
                )
            chosen = None
        # an empty record says the rule found no groups on valid: selection falls back to the pooled MAE
        state.valid_groups = {"name": chosen.name, "parts": chosen.parts, "source": chosen.source, "group": chosen.group} if chosen else {}
    if state.valid_groups:
        valid.update(group_maes(preds, labels, np.asarray(state.valid_groups["group"]), parts_of(state.valid_groups)))
    return valid


def set_groups(run: Run, job: SeedJob, batches: Batches, epoch: int) -> None:
    """model.environments groups: infer the groups when the penalty first has weight (EIIL's reference model
    is the model at the end of the warm-up), or restore them on resume; the batches then carry them."""
    cfg = run.settings.model
    if not cfg.infers_groups:
        return
    due = epoch >= cfg.invariance.warmup_epochs if cfg.variant.group_risk else loss_weights(cfg, epoch)["invariance"] > 0
    if job.state.groups is None and due:
        train = batches_for(run.loaded.train, run.device)
        chosen = choose_partition(job.model, train, run.settings.train.batch_size, cfg.loss, cfg.groups)
        job.state.groups = chosen.group
        job.state.partition = chosen.record()
    if job.state.groups is not None and batches.groups is None:
        batches.set_groups(job.state.groups, len(parts_of(job.state.partition)))


def penalty_switches_on(model_cfg, epoch: int) -> bool:
    """True for the first epoch whose invariance weight is above 0 after epochs at 0 (never for epoch 0)."""
    return epoch > 0 and loss_weights(model_cfg, epoch - 1)["invariance"] == 0.0 < loss_weights(model_cfg, epoch)["invariance"]


def start_seed(run: Run, seed: int) -> SeedJob:
    """A fresh model and optimiser for `seed`, or the ones in its last.pt when that matches this run."""
    settings, loaded, dist = run.settings, run.loaded, run.dist
    tc = settings.train
    fingerprint = run_fingerprint(settings.model, tc, loaded, seed)
    seed_everything(seed, tc.deterministic)
    model = build_model(settings.model, loaded.spec).to(run.device)
    optimizer = make_optimizer(model, tc)
    inv = settings.model.invariance
    penalised = settings.model.variant.invariance and settings.model.infers_groups
    held = held_out_rows(len(loaded.train), inv.held_out_share, seed) if penalised and inv.penalty_on == "held_out" else None
    n_fit = len(loaded.train) - (0 if held is None else len(held))
    steps_per_epoch = len(epoch_batches(torch.arange(n_fit), tc.batch_size, world=dist.world))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(tc.epochs * steps_per_epoch, tc.warmup_ratio, steps_per_epoch))
    job = SeedJob(seed, model, optimizer, scheduler, SeedState(), fingerprint, False, steps_per_epoch, held)
    last_path = run.model_dir.last(seed)
    ckpt = checkpoints.load_last(last_path)
    if ckpt is not None and ckpt.get("fingerprint") == fingerprint:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        job.state, job.resumed = SeedState.from_checkpoint(ckpt), True
    elif ckpt is not None and dist.main:
        warnings.warn(f"{last_path} belongs to other settings or data; seed {seed} starts again", stacklevel=2)
    return job


def run_epoch(
    run: Run, job: SeedJob, ddp_model: nn.Module, batches: Batches, epoch: int, progress: Progress | None
) -> tuple[dict[str, torch.Tensor], int, float, float, GroupCover]:
    """One pass over this rank's share of the training split: the summed loss terms, batches, penalty weight, data
    seconds, and how the batches held the groups."""
    settings, dist = run.settings, run.dist
    tc = settings.train
    # every random draw of this epoch depends on (seed, epoch, rank) only: resuming reproduces it, and under
    # DDP each rank draws its own dropout and reparameterisation noise (rank 0 draws what one process draws)
    torch.manual_seed(job.seed * 1_000_003 + epoch + 7919 * dist.rank)
    weights = loss_weights(settings.model, epoch)
    ddp_model.train()
    sums: dict[str, torch.Tensor] = {}
    waited = 0.0
    order = batches.order(job.seed, epoch)
    if job.held is not None:  # the held-out rows only ever make the penalty
        order = order[~torch.from_numpy(np.isin(order.numpy(), job.held))]
    penalty_rows = job.held is not None and batches.groups is not None and weights["invariance"] > 0
    global_batches, cover = chunks(order, tc.batch_size), GroupCover()
    if batches.groups is not None:  # every batch's risk and penalty see every group (the rows the risk fits)
        codes, fit = batches.groups.numpy(), np.sort(order.numpy())
        global_batches, cover = with_every_group(global_batches, codes, batches.n_parts, fit, tc.group_min_count, job.seed, epoch)
    pieces = rank_share(global_batches, rank=dist.rank, world=dist.world)
    for b, piece in enumerate(pieces):
        check_stop("training")  # the last finished epoch's checkpoint stays: a new run resumes from it
        fetch_started = time.perf_counter()
        rows, n_fit = piece.indices, len(piece.indices)
        if penalty_rows:  # one forward pass for both (DDP expects one per backward): the fitted rows, then the held-out ones
            drawn = balanced_rows(job.held, batches.groups.numpy(), piece.global_size, job.seed, epoch, b)
            rows = torch.cat([rows, torch.from_numpy(np.array_split(drawn, dist.world)[dist.rank])])
        batch = batches.get(rows)
        waited += time.perf_counter() - fetch_started
        if tc.modality_dropout > 0:
            batch = drop_modalities(batch, tc.modality_dropout)
        with autocast_for(run.device):
            out = ddp_model(batch)
        if penalty_rows:
            fit, held = slice_rows(out, 0, n_fit), slice_rows(out, n_fit, len(rows))
            terms = loss_terms(settings.model, fit, batch["y"][:n_fit], batch["group"][:n_fit])
            terms["invariance"] = loss_terms(settings.model, held, batch["y"][n_fit:], batch["group"][n_fit:])["invariance"]
        else:
            terms = loss_terms(settings.model, out, batch["y"], batch.get("group"))
        loss = total_loss(terms, weights)
        check_finite(terms, loss, epoch, b)
        # DDP averages gradients over ranks: weigh each rank's mean by its share of the global batch
        scale = len(piece.indices) * dist.world / piece.global_size
        job.optimizer.zero_grad(set_to_none=True)
        (loss * scale).backward()
        if tc.grad_clip > 0:
            nn.utils.clip_grad_norm_(job.model.parameters(), tc.grad_clip)
        job.optimizer.step()
        job.scheduler.step()
        for k, v in {**terms, "total": loss}.items():
            sums[k] = sums.get(k, 0.0) + v.detach()  # stays on the device: no sync per step
        if progress:
            progress("step", {"seed": job.seed, "epoch": epoch, "batch": b})
    if run.device.type == "cuda":
        torch.cuda.synchronize(run.device)
    return sums, len(pieces), weights["invariance"], waited, cover


def slice_rows(out: dict[str, Any], start: int, end: int) -> dict[str, Any]:
    """The model's outputs for batch rows [start, end) (predictions [E, B], Gaussians [B, k])."""
    return {
        "pred": out["pred"][start:end],
        "env_preds": out["env_preds"][:, start:end],
        **({"gaussians": {m: (mu[start:end], lv[start:end]) for m, (mu, lv) in out["gaussians"].items()}} if "gaussians" in out else {}),
    }


def validate_and_checkpoint(
    run: Run, job: SeedJob, epoch: int, record: dict[str, Any], valid: dict[str, float], train_mean: float, live: Any
) -> None:
    """Book the epoch: best-so-far on validation MAE, early stopping, best.pt and last.pt, DVCLive."""
    tc, state = run.settings.train, job.state
    state.history.append(record)
    eligible = epoch >= min(first_selectable_epoch(run.settings.model), tc.epochs - 1)  # the last epoch always is
    measure = valid.get(SELECTION_METRIC[tc.select_on], valid["MAE"]) if eligible else math.inf  # no groups: the pooled MAE
    improved = eligible and measure < state.best_score - 1e-12
    if improved:
        state.best_score, state.best_mae, state.best_epoch, state.bad_epochs = measure, valid["MAE"], epoch, 0
    elif eligible:
        state.bad_epochs += 1
    state.epoch = epoch
    state.finished = state.bad_epochs >= tc.patience or epoch == tc.epochs - 1
    if not run.dist.main:
        return
    if improved:
        info = {"epoch": epoch, "seed": job.seed, "valid_metrics": valid, "train_mean": train_mean}
        checkpoints.save_best(run.model_dir.best(job.seed), job.model, run.settings, run.loaded.spec, **info)
    checkpoints.save_last(run.model_dir.last(job.seed), job.model, job.optimizer, job.scheduler, job.fingerprint, asdict(state))
    if live is not None:
        live.step = epoch
        for k, v in record.items():
            if k != "epoch":
                live.log_metric(k.replace("_", "/", 1) if k.startswith(("train_", "valid_")) else k, v)


def first_selectable_epoch(model_cfg) -> int:
    """The first epoch a checkpoint may be chosen from, the same for every model of this package:
    `model.invariance.warmup_epochs`, when MISR's penalty (and its groups) first have full weight.

    For MISR: the validation split has the training distribution, on which a shortcut helps; choosing
    among the warm-up epochs would pick the ERM model the penalty has not yet shaped, and undo it (IRM's
    and V-REx's reference code likewise judge the model trained with the full penalty). For every other
    model the same epochs: a comparison is fair only when no contender may be chosen where another may
    not (late fusion, once choosable from epoch 0, was chosen at epoch 8 against MISR's 10 at the
    earliest). Validation groups are fixed at this epoch too (`validate`).
    """
    return int(model_cfg.invariance.warmup_epochs)


def check_finite(terms: dict[str, torch.Tensor], loss: torch.Tensor, epoch: int, batch: int) -> None:
    named = {**terms, "total": loss}
    if bool(torch.isfinite(torch.stack([v.detach().float() for v in named.values()])).all()):
        return  # one device sync per step, not one per term
    for name, value in named.items():
        if not torch.isfinite(value).all():
            raise TrainingDiverged(
                f"the loss term '{name}' is {float(value.detach())} at epoch {epoch}, batch {batch}; training stopped, "
                "the last good checkpoint is kept",
                hint="lower train.lr, raise train.grad_clip's strictness, or check the features for extreme values",
            )


def _live(folder: Path, resume: bool):
    from dvclive import Live

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Live(dir=str(folder), resume=resume, save_dvc_exp=False, dvcyaml=None)
