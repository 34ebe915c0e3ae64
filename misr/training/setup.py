"""Before the first step: where this process runs, what the model's inputs are, the data, the optimiser."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from misr.config.model import ModelConfig
from misr.config.train import TrainConfig
from misr.errors import MisrError
from misr.features.person import view_for
from misr.model import InputSpec
from misr.shipped import minilm_dir
from misr.store import MODALITIES, SplitData
from misr.store.store import FeatureStore
from misr.store.stream import SplitStream
from misr.util.hashing import stable_hash


@dataclass
class Dist:
    """Where this process sits in a torchrun job (rank 0 of 1 when run alone)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    launched: bool = False  # started by torchrun (then DDP is used, even with a single process)

    @classmethod
    def from_env(cls) -> Dist:
        env = os.environ
        launched = "LOCAL_RANK" in env and "MASTER_ADDR" in env
        return cls(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)), launched)

    @property
    def main(self) -> bool:
        return self.rank == 0


@dataclass
class Loaded:
    train: SplitData | SplitStream  # in memory, or read from the store batch by batch (train.stream)
    valid: SplitData | SplitStream
    spec: InputSpec
    fingerprint: str  # what the data looks like on disk: a changed store invalidates a resumable checkpoint
    view: str = ""  # how the visual action units are seen, for the log and summary.json


def resolve_device(choice: str, dist: Dist | None = None) -> torch.device:
    if choice == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda", dist.local_rank if dist else 0)
    if choice == "cuda":
        raise MisrError("train.device is 'cuda' but no CUDA device is available", hint="use train.device=auto or cpu")
    return torch.device("cpu")


def resolve_input_spec(model_cfg: ModelConfig, store_dir: str | Path, action_units: str = "raw") -> InputSpec:
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
    hidden_dim = int(text.get("dim", 0))
    cfg = model_cfg.text
    is_bert = tokenizer == "minilm" or Path(tokenizer).is_dir()
    choice = cfg.encoder
    if choice == "auto":
        bert_choice = "minilm" if tokenizer == "minilm" else tokenizer
        choice = "hidden" if hidden_dim and not cfg.finetune else (bert_choice if is_bert else "tokens")
    common = dict(audio_dim=int(meta["audio"]["dim"]), visual_dim=int(meta["visual"]["dim"]), action_units=action_units)
    if choice == "hidden":
        if not hidden_dim:
            raise MisrError(
                "model.text.encoder is 'hidden' but the store holds no text hidden states",
                hint="extract with features.text.store_hidden=true",
            )
        return InputSpec(**common, text_kind="hidden", text_hidden_dim=hidden_dim)
    if choice == "tokens":
        if text.get("vocab_size") is None:
            raise MisrError(f"the store's tokenizer {tokenizer!r} records no vocabulary size, needed by model.text.encoder=tokens")
        return InputSpec(**common, text_kind="tokens", vocab_size=int(text["vocab_size"]))
    if not is_bert:
        raise MisrError(
            f"model.text.encoder {choice!r} needs ids from its own tokenizer, but the store was tokenised with {tokenizer!r}",
            hint="use model.text.encoder=tokens (or auto) for this store",
        )
    folder = minilm_dir() if choice == "minilm" else Path(choice)
    if not (folder / "config.json").exists():
        raise MisrError(f"no BERT-family model at {folder} (model.text.encoder)", hint="give a local model folder; nothing is downloaded")
    return InputSpec(**common, text_kind="bert", bert_dir=str(folder))


# train.stream=auto reads batches from the store when the feature files hold more than this (uncompressed):
# padded in memory a split takes about as much again, and a MOSEI-size store is ~10 GB.
AUTO_STREAM_BYTES = 2 * 2**30


def load_data(
    model_cfg: ModelConfig, store_dir: str | Path, stream: str = "memory", label_limit: float | None = None, action_units: str = "raw"
) -> Loaded:
    """The train and valid splits, in memory or streamed, with the visual action units seen as `action_units`
    (`misr.features.person`); labels outside [-label_limit, label_limit] are an error."""
    spec = resolve_input_spec(model_cfg, store_dir, action_units)
    fs = FeatureStore(store_dir)
    view = view_for(fs, action_units)
    if stream == "auto":
        stream = "store" if feature_bytes(fs) > AUTO_STREAM_BYTES else "memory"
    if stream == "store":
        train, valid = (SplitStream(fs, s, transform=view.apply_split) for s in ("train", "valid"))
    else:
        train, valid = (view.apply_split(fs.load_split(s)) for s in ("train", "valid"))
    if label_limit is not None:
        for split in (train, valid):
            check_label_range(fs, split, label_limit)
    return Loaded(train, valid, spec, fs.fingerprint(), view.describe())


def check_label_range(fs: FeatureStore, split: SplitData | SplitStream, limit: float) -> None:
    """A label outside the convention's range (a store changed by hand, or the wrong convention) names its clips."""
    labels = np.asarray(split.labels, dtype=np.float64)
    bad = [split.clip_keys[i] for i in np.flatnonzero(np.abs(labels) > limit + 1e-6)]
    if bad:
        shown = ", ".join(f"{k} ({labels[split.clip_keys.index(k)]:g})" for k in bad[:5])
        shown += f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise MisrError(
            f"{len(bad)} {split.split} clip(s) in {fs.clips_path} have a label outside [-{limit:g}, {limit:g}]: {shown}",
            hint="check the data set's `convention` in params.yaml (mosi: [-3, 3], sims: [-1, 1]), or fix the labels and re-extract",
        )


def feature_bytes(fs: FeatureStore) -> int:
    """The uncompressed size of every feature part file, from the Parquet footers (nothing is decoded)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    total = 0
    for m in MODALITIES:
        for _, path in fs.part_files(m):
            try:
                meta = pq.ParquetFile(path).metadata
            except (pa.ArrowException, OSError):
                continue  # reading the split names the file and the problem
            total += sum(meta.row_group(g).total_byte_size for g in range(meta.num_row_groups))
    return total


def run_fingerprint(model_cfg: ModelConfig, train_cfg: TrainConfig, loaded: Loaded, seed: int) -> str:
    """What a checkpoint must match to be resumed: the model, the training settings, the data, the seed."""
    train = train_cfg.model_dump(mode="json")
    train.pop("seeds")
    model = model_cfg.model_dump(mode="json")
    return stable_hash({"model": model, "train": train, "data": loaded.fingerprint, "seed": seed, "spec": asdict(loaded.spec)})


def seed_everything(seed: int, deterministic: bool) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def make_optimizer(model: nn.Module, train_cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; a pretrained text encoder gets its own (small) learning rate."""
    pretrained, rest = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (pretrained if ".bert." in f".{name}" else rest).append(p)
    groups = [{"params": rest, "lr": train_cfg.lr}]
    if pretrained:
        groups.append({"params": pretrained, "lr": train_cfg.text_lr})
    return torch.optim.AdamW(groups, weight_decay=train_cfg.weight_decay)


# The learning rate's warm-up lasts train.warmup_ratio of the planned steps, but never more than this many
# epochs: with train.epochs=10000 (a bound for early stopping) it would otherwise never end.
MAX_WARMUP_EPOCHS = 5


def warmup_cosine(total_steps: int, warmup_ratio: float, steps_per_epoch: int | None = None) -> Callable[[int], float]:
    """Linear warm-up, then cosine decay to 0 at `total_steps` (a multiplier of the learning rate per step)."""
    warm = int(round(total_steps * warmup_ratio))
    if steps_per_epoch:
        warm = min(warm, MAX_WARMUP_EPOCHS * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, total_steps - warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor
