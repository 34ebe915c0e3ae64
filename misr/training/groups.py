"""Environments that differ in distribution (`model.environments: groups`): training clips grouped by cross-modal agreement.

MISR's abstract speaks of "several distributional environments constructed from the joint representation
and the unimodal data". Here the environments are groups of training clips, not views of the same clips:
  1. candidate partitions: for each modality m, the clips whose modality-m sentiment disagrees in sign with
     the clip's label, against the rest. The sentiment is `label_T/A/V` where the store has it for every
     training clip, else the model's own unimodal prediction (the joint head given modality m alone, the
     other two removed, so their fusion weight is 0);
  2. the partition is the candidate on which the current joint predictor f(z) is least invariant: the largest
     IRMv1 penalty across its two groups, as in EIIL (Creager, Jacobsen and Zemel, ICML 2021), which infers
     the environments that a reference model violates most; here the search is over these agreement
     partitions, and the reference is the model at the end of the warm-up;
  3. the invariance penalty then applies to f(z) across the groups, with batches that hold every group
     (`misr.training.batches.stratified_order`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from misr.errors import MisrError
from misr.model.invariance import clip_loss_slope
from misr.training.batches import Batches, zero_modality
from misr.training.inference import predict

MODALITIES = ("text", "audio", "visual")
MIN_GROUP_SHARE = 0.02  # a candidate whose smaller group holds fewer clips cannot be constrained in batches


@dataclass
class Partition:
    name: str  # e.g. "visual disagrees"
    source: str  # "labels" or "predictions"
    group: list[int]  # per training row: 0 (agrees) or 1 (disagrees)
    violation: float  # the IRMv1 penalty of f(z) across the two groups when chosen
    candidates: dict[str, float]  # every candidate's violation


def unimodal_sentiments(model: nn.Module, batches: Batches, batch_size: int) -> tuple[dict[str, np.ndarray], str]:
    """Each modality's sentiment per training clip: its labels when known for every clip, else the model's."""
    labels = batches.unimodal_labels
    if all(m in labels and not torch.isnan(labels[m]).any() for m in MODALITIES):
        return {m: labels[m].numpy() for m in MODALITIES}, "labels"
    return {m: predict(model, _Only(batches, m), batch_size) for m in MODALITIES}, "predictions"


def choose_partition(model: nn.Module, batches: Batches, batch_size: int, loss=None) -> Partition:
    """The agreement partition on which the joint predictor's risks differ most (see the module's text)."""
    y = batches.labels.numpy()
    joint = predict(model, batches, batch_size)
    # EIIL's criterion: the IRMv1 penalty of the reference predictor across the two groups, i.e. how much
    # rescaling its predictions within each group would lower that group's risk (the risks' variance, tried
    # first, mostly found the groups of near-zero labels, which are hard for any predictor)
    slope = (clip_loss_slope(torch.from_numpy(joint - y), loss) * torch.from_numpy(joint)).numpy()
    sentiments, source = unimodal_sentiments(model, batches, batch_size)
    candidates: dict[str, tuple[float, np.ndarray]] = {}
    for m, s in sentiments.items():
        disagree = (np.sign(s) * np.sign(y) < 0).astype(np.int64)
        share = disagree.mean()
        if min(share, 1 - share) < MIN_GROUP_SHARE:
            continue
        candidates[f"{m} disagrees"] = (float(sum(slope[disagree == g].mean() ** 2 for g in (0, 1))), disagree)
    if not candidates:
        raise MisrError(
            "model.environments groups: no modality disagrees in sign with the label in at least "
            f"{MIN_GROUP_SHARE:.0%} of the training clips, so there are no groups to be invariant across",
            hint="use model.environments z_plus_unimodal on this data",
        )
    name = max(candidates, key=lambda k: candidates[k][0])
    return Partition(name, source, candidates[name][1].tolist(), candidates[name][0], {k: v for k, (v, _) in candidates.items()})


class _Only:
    """The split with every modality but one removed (fusion weight 0): the unimodal representation's prediction."""

    def __init__(self, inner: Batches, keep: str):
        self.inner, self.keep = inner, keep

    def __len__(self) -> int:
        return len(self.inner)

    def get(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        batch = self.inner.get(idx)
        for m in MODALITIES:
            if m != self.keep:
                batch = zero_modality(batch, m)
        return batch
