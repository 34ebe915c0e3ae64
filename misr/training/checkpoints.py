"""Checkpoints: what a training run is (its settings), and the files that hold its weights.

    seed-<s>/last.pt    everything needed to resume after the last finished epoch
    seed-<s>/best.pt    the weights with the best validation MAE, with the run's settings, so that
                        `misr evaluate` and `misr predict` rebuild the model and its feature extraction

Loading uses torch.load(weights_only=True): a checkpoint cannot run code. A checkpoint that cannot be
read (truncated, garbage, non-finite weights) is a clear error naming the file; a `last.pt` like that is
set aside (`last.pt.corrupt`) with a warning and the seed starts again, so a crash never blocks a
resume. Each checkpoint records its format version; a newer one is refused, naming both versions.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch
import yaml
from torch import nn

from misr.config.features import MOVED_TO_EXTRACT, FeaturesConfig
from misr.config.model import ModelConfig
from misr.config.section import validate_section
from misr.config.train import TrainConfig
from misr.errors import MisrError
from misr.model import InputSpec, build_model
from misr.msa.convention import Convention, convention
from misr.util.atomic import write_torch


@dataclass(frozen=True)
class RunSettings:
    """The parts of params.yaml a training run reads (and the train stage declares)."""

    model: ModelConfig
    train: TrainConfig
    features: FeaturesConfig  # how the store was extracted: `misr predict` extracts a new video the same way
    convention: Convention

    def to_yaml(self) -> str:
        payload = {k: getattr(self, k).model_dump(mode="json") for k in ("model", "train", "features")}
        return yaml.safe_dump({**payload, "convention": self.convention.name}, sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str, source: str) -> RunSettings:
        raw = yaml.safe_load(text) or {}
        if "data" in raw:  # checkpoints written before the stage redesign carry the whole params.yaml
            data = raw["data"]
            raw = {**raw, "convention": data["datasets"][data["dataset"]].get("convention", "mosi")}
        return cls(
            model=validate_section(ModelConfig, raw.get("model", {}), f"{source} (model)"),
            train=validate_section(TrainConfig, raw.get("train", {}), f"{source} (train)"),
            features=validate_section(FeaturesConfig, _what_features_are(raw.get("features", {})), f"{source} (features)"),
            convention=convention(raw.get("convention", "mosi")),
        )


def _what_features_are(raw: Any) -> Any:
    # checkpoints written before the extract section held its execution settings (shard_size, ...) in features
    return {k: v for k, v in raw.items() if k not in MOVED_TO_EXTRACT} if isinstance(raw, dict) else raw


FORMAT_VERSION = 1  # what this code writes and the newest it reads (checkpoints without one are version 1)


class CorruptCheckpoint(MisrError):
    """A checkpoint file that cannot be used: truncated, not a checkpoint, or holding non-finite weights."""


def save_best(path: Path, model: nn.Module, settings: RunSettings, spec: InputSpec, **info: Any) -> None:
    payload = {"model": model.state_dict(), "params": settings.to_yaml(), "spec": json.dumps(asdict(spec))}
    write_torch(path, {**payload, "format_version": FORMAT_VERSION, **info})


def save_last(path: Path, model: nn.Module, optimizer: Any, scheduler: Any, fingerprint: str, state: dict[str, Any]) -> None:
    payload = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
    write_torch(path, {**payload, "format_version": FORMAT_VERSION, "fingerprint": fingerprint, **state})


def read_checkpoint(source: Path | BinaryIO, device: str | torch.device = "cpu", name: str = "checkpoint") -> dict[str, Any]:
    """A checkpoint's contents, checked: readable, a misr checkpoint, a format this code reads, finite weights."""
    hint = "train again (`misr train`), or restore the file (`dvc checkout`, `dvc pull`)"
    try:
        ckpt = torch.load(source, map_location=device, weights_only=True)
    except Exception as exc:  # a truncated zip, garbage bytes, a pickle that is not plain weights: torch raises many kinds
        reason = " ".join(str(exc).split())[:160]
        raise CorruptCheckpoint(
            f"cannot read the checkpoint {name}: {type(exc).__name__}: {reason} (truncated or corrupt?)", hint=hint
        ) from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise CorruptCheckpoint(f"{name} is not a misr checkpoint (no model weights in it)", hint=hint)
    version = ckpt.get("format_version", 1)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise MisrError(
            f"{name} was written in checkpoint format {version}; this misr reads format {FORMAT_VERSION} and older",
            hint="use the misr version that trained it (see its model card), or train again",
        )
    bad = [k for k, v in ckpt["model"].items() if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CorruptCheckpoint(f"{name} holds non-finite weights ({', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''})", hint=hint)
    return ckpt


def load_last(path: Path) -> dict[str, Any] | None:
    """The resume point of a seed, or None: none yet, or one that cannot be used (set aside, with a warning)."""
    if not path.exists():
        return None
    try:
        return read_checkpoint(path, "cpu", str(path))
    except CorruptCheckpoint as exc:
        aside = path.with_name(path.name + ".corrupt")
        os.replace(path, aside)
        warnings.warn(f"{exc.message}; set aside as {aside.name}, and this seed starts again from epoch 1", stacklevel=2)
        return None


def load_checkpoint(
    source: Path | BinaryIO, device: str | torch.device = "cpu", name: str = "checkpoint"
) -> tuple[nn.Module, dict[str, Any]]:
    """A best.pt from a path or an open binary file (e.g. read from DVC's cache at a registered commit).

    Returns the model in eval mode and its info: settings (RunSettings), spec, epoch, seed,
    valid_metrics, train_mean.
    """
    ckpt = read_checkpoint(source, device, name)
    lacking = [k for k in ("params", "spec") if k not in ckpt]
    if lacking:
        raise CorruptCheckpoint(
            f"{name} holds model weights but no {' or '.join(lacking)}: not a best.pt written by `misr train` (another tool's checkpoint?)",
            hint="evaluate and predict read a model folder that `misr train` wrote",
        )
    settings = RunSettings.from_yaml(ckpt["params"], source=name)
    try:
        spec = InputSpec(**json.loads(ckpt["spec"]))
        model = build_model(settings.model, spec)
        model.load_state_dict(ckpt["model"])
    except (TypeError, ValueError, KeyError, RuntimeError) as exc:  # a spec or weights that do not fit its own params
        reason = " ".join(str(exc).split())[:200]
        raise CorruptCheckpoint(f"{name}: its weights do not fit the model its params describe ({reason})", hint="train again") from None
    model.to(device).eval()
    info = {k: ckpt.get(k) for k in ("epoch", "seed", "valid_metrics", "train_mean")}
    return model, {"settings": settings, "spec": spec, **info}


def check_fits(spec: InputSpec, data: Any, store: Path, model: str) -> None:
    """A split of `store` has the inputs the model was built for (`data`: a SplitData), or a MisrError
    naming each difference: a model trained on another store would fail deep in a matrix product."""
    problems = []
    for modality, dim in (("audio", spec.audio_dim), ("visual", spec.visual_dim)):
        seq = getattr(data, modality)
        if seq is not None and int(seq.values.shape[-1]) != int(dim):
            problems.append(f"{modality} frames of {int(seq.values.shape[-1])} features where the model takes {dim}")
    text = data.text
    top = int(text.input_ids.max()) if text is not None and text.input_ids.numel() else -1
    if spec.text_kind == "tokens" and top >= int(spec.vocab_size or 0):
        problems.append(f"token ids up to {top} where the model's vocabulary has {spec.vocab_size}")
    if text is not None and spec.text_kind == "hidden":
        width = None if text.hidden is None else int(text.hidden.values.shape[-1])
        if width != spec.text_hidden_dim:
            problems.append(f"text hidden states of width {width} where the model takes {spec.text_hidden_dim}")
    if problems:
        raise MisrError(
            f"the store {store} does not fit the model {model}: {'; '.join(problems)}",
            hint="evaluate a model on the store it was trained on, or on one extracted with the same features settings",
        )
