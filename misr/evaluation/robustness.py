"""Robustness on the test split: where the modalities agree vs conflict, and with each modality removed."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from misr.msa.convention import Convention
from misr.store import SplitData
from misr.training.batches import Batches, zero_modality
from misr.training.inference import predict, score


class _Zeroed(Batches):
    def __init__(self, data: SplitData, modalities: tuple[str, ...]):
        super().__init__(data, torch.device("cpu"))
        self.modalities = modalities

    def get(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        batch = super().get(idx)
        for m in self.modalities:
            batch = zero_modality(batch, m)
        return batch


def conflict_mask(models: list, data: SplitData, batch_size: int) -> tuple[np.ndarray, str]:
    """Which clips' modalities disagree in sentiment, and how that was decided.

    With per-modality labels (label_T/A/V): a clip conflicts when some modality's label has the sign
    opposite to the clip's label. Without them (the proxy): when the model, given one modality at a
    time (the other two zeroed), predicts sentiments of opposite signs.
    """
    y = data.labels.numpy()
    uni = np.stack([data.unimodal_labels[m].numpy() for m in ("text", "audio", "visual")])
    if np.isfinite(uni).all():
        return (np.sign(uni) * np.sign(y)[None] < 0).any(axis=0), "per-modality labels of opposite sign to the clip label"
    single = []
    for keep in ("text", "audio", "visual"):
        others = tuple(m for m in ("text", "audio", "visual") if m != keep)
        single.append(np.mean([predict(m, _Zeroed(data, others), batch_size) for m in models], axis=0))
    s = np.sign(np.stack(single))
    return (s.max(axis=0) > 0) & (s.min(axis=0) < 0), "proxy: single-modality predictions of the model disagree in sign"


def robustness_report(models: list, data: SplitData, convention: Convention, batch_size: int) -> dict[str, Any]:
    y = data.labels.numpy()
    base = np.mean([predict(m, Batches(data, torch.device("cpu")), batch_size) for m in models], axis=0)
    conflict, how = conflict_mask(models, data, batch_size)
    report: dict[str, Any] = {"conflict_rule": how, "subsets": {}, "zeroed": {}}
    for name, mask in (("agree", ~conflict), ("conflict", conflict)):
        report["subsets"][name] = {"n": int(mask.sum()), **(score(base[mask], y[mask], convention) if mask.sum() >= 2 else {})}
    report["zeroed"]["none"] = score(base, y, convention)
    for m in ("text", "audio", "visual"):
        p = np.mean([predict(model, _Zeroed(data, (m,)), batch_size) for model in models], axis=0)
        report["zeroed"][m] = score(p, y, convention)
    return report
