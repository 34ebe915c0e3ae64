"""Training: several seeds, each checkpointed every epoch and resumable; CPU, CUDA, or torchrun DDP.

MODEL_DIR/
    params.yaml               the resolved parameters of the run
    summary.json              per seed: best validation MAE and its epoch, the training-mean baseline
    seed-<s>/last.pt          everything needed to resume after the last finished epoch
    seed-<s>/best.pt          the weights with the best validation MAE (model selection never sees test)
    dvclive/seed-<s>/         per-epoch losses and validation metrics (DVCLive: `dvc plots`, `dvc exp show`)

Reproducibility: the batch order and every random draw of an epoch (dropout, reparameterisation)
are seeded from (seed, epoch), so a run resumed from `last.pt` ends exactly where an uninterrupted
run ends.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from contextlib import nullcontext as _nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from misr.batches import Batches, drop_modalities, epoch_batches
from misr.config import Params, params_to_yaml
from misr.errors import MisrError
from misr.hashing import stable_hash
from misr.metrics import msa_metrics
from misr.model import InputSpec, build_model, loss_terms, loss_weights, total_loss
from misr.model.encoders import minilm_dir
from misr.store import MODALITIES, FeatureStore, SplitData

Progress = Callable[[str, dict[str, Any]], None]


class TrainingDiverged(MisrError):
    """A loss term became NaN or inf."""


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
    step_ms: float = 0.0  # mean wall time of one optimisation step (forward, backward, update)


@dataclass
class Dist:
    """Where this process sits in a torchrun job (rank 0 of 1 when run alone)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    launched: bool = False  # started by torchrun (then DDP is used, even with a single process)

    @classmethod
    def from_env(cls) -> "Dist":
        env = os.environ
        return cls(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)), "LOCAL_RANK" in env and "MASTER_ADDR" in env)

    @property
    def main(self) -> bool:
        return self.rank == 0


@dataclass
class Loaded:
    train: SplitData
    valid: SplitData
    spec: InputSpec
    fingerprint: str
    convention: str
    extra: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------ set-up


def resolve_device(choice: str, dist: Dist | None = None) -> torch.device:
    if choice == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        index = dist.local_rank if dist else 0
        return torch.device("cuda", index)
    if choice == "cuda":
        raise MisrError("train.device is 'cuda' but no CUDA device is available", hint="use train.device=auto or cpu")
    return torch.device("cpu")


def resolve_input_spec(params: Params, store_dir: str | Path) -> InputSpec:
    """The model's input shapes and text encoder, from the store's metadata alone (cheap: no data read).

    model.text.encoder 'auto' picks stored hidden states when present (frozen encoder), learned token
    embeddings for a small vocabulary (e.g. `misr synth`), else the tokenizer's own BERT-family model.
    """
    fs = FeatureStore(store_dir)
    fs.clips()  # a clear error when the store is missing
    meta = {}
    for m in MODALITIES:
        parts = fs.metadata(m)
        if not parts:
            raise MisrError(f"the store {fs.root} has no {m} features", hint="run `misr extract` or `misr synth` first")
        meta[m] = parts[-1]
    text = meta["text"]
    tokenizer = str(text.get("tokenizer", ""))
    vocab_size = text.get("vocab_size")
    hidden_dim = int(text.get("dim", 0))
    cfg = params.model.text
    is_bert = tokenizer == "minilm" or Path(tokenizer).is_dir()
    choice = cfg.encoder
    if choice == "auto":
        choice = "hidden" if hidden_dim and not cfg.finetune else ("minilm" if tokenizer == "minilm" else tokenizer) if is_bert else "tokens"
    common = dict(audio_dim=int(meta["audio"]["dim"]), visual_dim=int(meta["visual"]["dim"]))
    if choice == "hidden":
        if not hidden_dim:
            raise MisrError("model.text.encoder is 'hidden' but the store holds no text hidden states", hint="extract with features.text.store_hidden=true")
        return InputSpec(**common, text_kind="hidden", text_hidden_dim=hidden_dim)
    if choice == "tokens":
        if vocab_size is None:
            raise MisrError(f"the store's tokenizer {tokenizer!r} records no vocabulary size, needed by model.text.encoder=tokens")
        return InputSpec(**common, text_kind="tokens", vocab_size=int(vocab_size))
    if not is_bert:
        raise MisrError(
            f"model.text.encoder {choice!r} needs ids from its own tokenizer, but the store was tokenised with {tokenizer!r}",
            hint="use model.text.encoder=tokens (or auto) for this store",
        )
    folder = minilm_dir() if choice == "minilm" else Path(choice)
    if not (folder / "config.json").exists():
        raise MisrError(f"no BERT-family model at {folder} (model.text.encoder)", hint="give a local model folder; nothing is downloaded")
    return InputSpec(**common, text_kind="bert", bert_dir=str(folder))


def load_data(params: Params, store_dir: str | Path) -> Loaded:
    spec = resolve_input_spec(params, store_dir)
    fs = FeatureStore(store_dir)
    train = fs.load_split("train")
    valid = fs.load_split("valid")
    files = [(m, p.name, p.stat().st_size) for m in MODALITIES for _, p in fs.part_files(m)]
    fingerprint = stable_hash({"clips": fs.clips_path.stat().st_size, "clips_mtime": fs.clips_path.stat().st_mtime_ns, "files": files})
    return Loaded(train, valid, spec, fingerprint, params.data.active.convention)


def metric_set(convention: str) -> str:
    return "sims" if convention == "sims" else "mosi"


def run_fingerprint(params: Params, loaded: Loaded, seed: int) -> str:
    """What a checkpoint must match to be resumed: the model, the training settings, the data, the seed."""
    train = params.train.model_dump(mode="json")
    train.pop("seeds")
    return stable_hash({"model": params.model.model_dump(mode="json"), "train": train, "data": loaded.fingerprint, "seed": seed, "spec": asdict(loaded.spec)})


def seed_everything(seed: int, deterministic: bool) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def make_optimizer(model: nn.Module, params: Params) -> torch.optim.Optimizer:
    """AdamW; a pretrained text encoder gets its own (small) learning rate."""
    pretrained, rest = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (pretrained if ".bert." in f".{name}" else rest).append(p)
    groups = [{"params": rest, "lr": params.train.lr}]
    if pretrained:
        groups.append({"params": pretrained, "lr": params.train.text_lr})
    return torch.optim.AdamW(groups, weight_decay=params.train.weight_decay)


def warmup_cosine(total_steps: int, warmup_ratio: float) -> Callable[[int], float]:
    warm = int(round(total_steps * warmup_ratio))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, total_steps - warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


# ------------------------------------------------------------------------------------ training


@dataclass
class Run:
    """A prepared training run: data loaded, device chosen, output folder ready."""

    params: Params
    store_dir: Path
    out: Path
    loaded: Loaded
    device: torch.device
    dist: Dist


def prepare(params: Params, store_dir: str | Path, out_dir: str | Path) -> Run:
    """Join the torchrun job if there is one, pick the device, load the data, write the resolved params."""
    dist = Dist.from_env()
    if dist.launched and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and params.train.device != "cpu" else "gloo"
        torch.distributed.init_process_group(backend)
    out = Path(out_dir)
    device = resolve_device(params.train.device, dist)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    loaded = load_data(params, store_dir)
    if dist.main:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MisrError(f"cannot create {out}: {exc.strerror or exc}") from None
        _atomic_text(out / "params.yaml", params_to_yaml(params))
    return Run(params, Path(store_dir), out, loaded, device, dist)


def summarize(run: Run, results: list[SeedResult]) -> dict[str, Any]:
    """summary.json: per seed the best validation MAE, its epoch, and the training-mean baseline."""
    summary = {
        "model": run.params.model.name,
        "store": str(run.store_dir),
        "device": str(run.device),
        "world_size": run.dist.world,
        "seeds": {str(r.seed): asdict(r) for r in results},
        "best_valid_mae_mean": float(np.mean([r.best_valid_mae for r in results])),
        "best_valid_mae_std": float(np.std([r.best_valid_mae for r in results])),
        "train_mean_valid_mae": results[0].train_mean_valid_mae,
    }
    if run.dist.main:
        _atomic_text(run.out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def train(
    params: Params,
    store_dir: str | Path,
    out_dir: str | Path,
    progress: Progress | None = None,
    on_epoch_end: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Train every seed of `params.train.seeds` one after the other; returns the summary."""
    run = prepare(params, store_dir, out_dir)
    results = [train_seed(run, seed, progress, on_epoch_end) for seed in params.train.seeds]
    return summarize(run, results)


def train_seed(
    run: Run,
    seed: int,
    progress: Progress | None = None,
    on_epoch_end: Callable[[int, int], None] | None = None,
) -> SeedResult:
    """Train one seed to the end (or early stop), resuming from its last checkpoint when there is one."""
    params, loaded, out, device, dist = run.params, run.loaded, run.out, run.device, run.dist
    tc = params.train
    started = time.perf_counter()
    seed_dir = out / f"seed-{seed}"
    last_path, best_path = seed_dir / "last.pt", seed_dir / "best.pt"
    fingerprint = run_fingerprint(params, loaded, seed)
    seed_everything(seed, tc.deterministic)

    model = build_model(params.model, loaded.spec).to(device)
    optimizer = make_optimizer(model, params)
    steps_per_epoch = len(epoch_batches(len(loaded.train), tc.batch_size, seed, 0, world=dist.world))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(tc.epochs * steps_per_epoch, tc.warmup_ratio))
    state = {"epoch": -1, "best_mae": math.inf, "best_epoch": -1, "bad_epochs": 0, "history": [], "finished": False}

    resumed = False
    if last_path.exists():
        ckpt = torch.load(last_path, map_location="cpu", weights_only=True)
        if ckpt.get("fingerprint") == fingerprint:
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            state = {k: ckpt[k] for k in state}
            resumed = True
        elif dist.main:
            warnings.warn(f"{last_path} belongs to other settings or data; seed {seed} starts again", stacklevel=2)

    train_mean = float(loaded.train.labels.mean())
    metrics_kind = metric_set(loaded.convention)
    baseline = float(np.mean(np.abs(loaded.valid.labels.numpy() - train_mean)))  # valid MAE of the training mean
    ddp_model = model
    if dist.launched:
        ddp_model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    train_batches = Batches(loaded.train, device)
    valid_batches = Batches(loaded.valid, device)
    live = _live(seed_dir.parent / "dvclive" / f"seed-{seed}", resumed) if dist.main else None
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else _nullcontext()

    if progress:
        progress("seed", {"seed": seed, "epochs": tc.epochs, "steps": steps_per_epoch, "start_epoch": state["epoch"] + 1, "resumed": resumed})
    epoch = state["epoch"]
    step_seconds, steps_done = 0.0, 0
    for epoch in range(state["epoch"] + 1, tc.epochs):
        if state["finished"]:
            break
        # every random draw of this epoch depends on (seed, epoch) only: resuming reproduces it
        torch.manual_seed(seed * 1_000_003 + epoch)
        weights = loss_weights(params.model, epoch)
        ddp_model.train()
        sums: dict[str, float] = {}
        batches = epoch_batches(len(loaded.train), tc.batch_size, seed, epoch, rank=dist.rank, world=dist.world)
        epoch_started = time.perf_counter()
        for b, piece in enumerate(batches):
            batch = train_batches.get(piece.indices)
            if tc.modality_dropout > 0:
                batch = drop_modalities(batch, tc.modality_dropout)
            with autocast:
                out_ = ddp_model(batch)
            terms = loss_terms(params.model, out_, batch["y"])
            loss = total_loss(terms, weights)
            _check_finite(terms, loss, epoch, b)
            # DDP averages gradients over ranks: weigh each rank's mean by its share of the global batch
            scale = len(piece.indices) * dist.world / piece.global_size
            optimizer.zero_grad(set_to_none=True)
            (loss * scale).backward()
            if tc.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            optimizer.step()
            scheduler.step()
            for k, v in {**terms, "total": loss}.items():
                sums[k] = sums.get(k, 0.0) + v.detach()  # stays on the device: no sync per step
            if progress:
                progress("step", {"seed": seed, "epoch": epoch, "batch": b})
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        step_seconds += time.perf_counter() - epoch_started
        steps_done += len(batches)

        valid = evaluate_split(model, valid_batches, tc.batch_size, metrics_kind)
        record = {"epoch": epoch, "lr": scheduler.get_last_lr()[0], "penalty_weight": weights["invariance"]}
        record.update({f"train_{k}": float(v) / max(1, len(batches)) for k, v in sums.items()})
        record.update({f"valid_{k}": v for k, v in valid.items()})
        state["history"].append(record)
        improved = valid["MAE"] < state["best_mae"] - 1e-12
        if improved:
            state["best_mae"], state["best_epoch"], state["bad_epochs"] = valid["MAE"], epoch, 0
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch
        state["finished"] = state["bad_epochs"] >= tc.patience or epoch == tc.epochs - 1
        if dist.main:
            seed_dir.mkdir(parents=True, exist_ok=True)
            if improved:
                _atomic_save(best_path, {
                    "model": model.state_dict(), "params": params_to_yaml(params), "spec": json.dumps(asdict(loaded.spec)),
                    "epoch": epoch, "seed": seed, "valid_metrics": valid, "train_mean": train_mean,
                })  # fmt: skip
            _atomic_save(last_path, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "fingerprint": fingerprint, **state,
            })  # fmt: skip
            if live is not None:
                live.step = epoch
                for k, v in record.items():
                    if k != "epoch":
                        live.log_metric(k.replace("_", "/", 1) if k.startswith(("train_", "valid_")) else k, v)
        if progress:
            progress("epoch", {"seed": seed, "epoch": epoch, "valid_mae": valid["MAE"], "best_mae": state["best_mae"]})
        if on_epoch_end:
            on_epoch_end(seed, epoch)
        if state["finished"]:
            break
    if live is not None:
        live.end()

    best = next((h for h in state["history"] if h["epoch"] == state["best_epoch"]), {})
    return SeedResult(
        seed=seed,
        best_valid_mae=float(state["best_mae"]),
        best_epoch=int(state["best_epoch"]),
        train_mean_valid_mae=float(baseline),
        epochs_run=int(state["epoch"]) + 1,
        stopped_early=bool(state["bad_epochs"] >= tc.patience and state["epoch"] < tc.epochs - 1),
        valid_metrics={k[len("valid_"):]: v for k, v in best.items() if k.startswith("valid_")},
        seconds=time.perf_counter() - started,
        device=str(device),
        steps=steps_done,
        step_ms=1000.0 * step_seconds / max(1, steps_done),
    )


@torch.no_grad()
def predict(model: nn.Module, batches: Batches, batch_size: int) -> np.ndarray:
    model.eval()
    order = torch.arange(len(batches))
    preds = []
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if batches.device.type == "cuda" else _nullcontext()
    for start in range(0, len(batches), batch_size):
        with autocast:
            out = model(batches.get(order[start : start + batch_size]))
        preds.append(out["pred"].float().cpu())
    return torch.cat(preds).numpy()


def evaluate_split(model: nn.Module, batches: Batches, batch_size: int, metrics_kind: str) -> dict[str, float]:
    preds = predict(model, batches, batch_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an untrained model may predict a constant: Corr is then 0 by definition
        return msa_metrics(preds, batches.data.labels.numpy(), metrics_kind)


def load_best(seed_dir: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """The best checkpoint of one seed, rebuilt into its model (weights_only loading: no code runs)."""
    path = Path(seed_dir) / "best.pt"
    if not path.exists():
        raise MisrError(f"no checkpoint at {path}", hint="train first (`misr train`)")
    return load_checkpoint(path, device, name=str(path))


def load_checkpoint(source: Path | Any, device: str | torch.device = "cpu", name: str = "checkpoint") -> tuple[nn.Module, dict[str, Any]]:
    """A best.pt from a path or an open binary file (e.g. read from DVC's cache at a registered commit)."""
    import yaml

    from misr.config import validate_params

    ckpt = torch.load(source, map_location=device, weights_only=True)
    params = validate_params(yaml.safe_load(ckpt["params"]), source=name)
    spec = InputSpec(**json.loads(ckpt["spec"]))
    model = build_model(params.model, spec)
    model.load_state_dict(ckpt["model"])
    model.to(device).eval()
    return model, {"params": params, "spec": spec, **{k: ckpt[k] for k in ("epoch", "seed", "valid_metrics", "train_mean")}}


# ------------------------------------------------------------------------------------ helpers


def _check_finite(terms: dict[str, torch.Tensor], loss: torch.Tensor, epoch: int, batch: int) -> None:
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


def _atomic_save(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _live(folder: Path, resume: bool):
    from dvclive import Live

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Live(dir=str(folder), resume=resume, save_dvc_exp=False, dvcyaml=None)


