"""Running a trained model over a split: predictions and their metrics (no gradients)."""

from __future__ import annotations

import warnings
from contextlib import nullcontext

import numpy as np
import torch
from torch import nn

from misr.msa.convention import Convention
from misr.training.batches import Batches


def autocast_for(device: torch.device):
    """bf16 autocast on CUDA, nothing on the CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


@torch.no_grad()
def predict(model: nn.Module, batches: Batches, batch_size: int) -> np.ndarray:
    """Predictions in fp32 on every device (no autocast): the validation MAE that selects a checkpoint during
    training is then the one `misr evaluate` reports for it."""
    model.eval()
    order = torch.arange(len(batches))
    preds = []
    for start in range(0, len(batches), batch_size):
        out = model(batches.get(order[start : start + batch_size]))
        preds.append(out["pred"].float().cpu())
    return torch.cat(preds).numpy()


def score(preds: np.ndarray, labels: np.ndarray, convention: Convention) -> dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an untrained model may predict a constant: Corr is then 0 by definition
        return convention.metrics(preds, labels)


def evaluate_split(model: nn.Module, batches: Batches, batch_size: int, convention: Convention) -> dict[str, float]:
    return score(predict(model, batches, batch_size), batches.labels.numpy(), convention)
