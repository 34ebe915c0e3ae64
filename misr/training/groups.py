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


def unimodal_sentiments(
    model: nn.Module, batches: Batches, batch_size: int, only: str | None = None, source: str = "auto"
) -> tuple[dict[str, np.ndarray], str]:
    """Each modality's sentiment per clip (or `only` that one's): its labels when known for every clip (unless
    `source` is "predictions"), else the model's."""
    labels = batches.unimodal_labels
    wanted = (only,) if only else MODALITIES
    if source == "auto" and all(m in labels and not torch.isnan(labels[m]).any() for m in MODALITIES):
        return {m: labels[m].numpy() for m in wanted}, "labels"
    return {m: predict(model, _Only(batches, m), batch_size) for m in wanted}, "predictions"


def choose_partition(model: nn.Module, batches: Batches, batch_size: int, loss=None, config=None, split: str = "training") -> Partition:
    """The agreement partition on which the joint predictor's risks differ most (see the module's text), or the one
    `config.partition` (model.groups) names; sentiments from `config.source`. `split` names the clips in messages."""
    partition, source_choice = (config.partition, config.source) if config is not None else ("auto", "auto")
    joint = predict(model, batches, batch_size)
    only = None if partition == "auto" else partition
    sentiments, source = unimodal_sentiments(model, batches, batch_size, only=only, source=source_choice)
    return partition_from(joint, batches.labels.numpy(), sentiments, source, loss, split)


def partition_from(
    joint: np.ndarray, y: np.ndarray, sentiments: dict[str, np.ndarray], source: str, loss=None, split: str = "training"
) -> Partition:
    """The agreement partition, among those of `sentiments` (modality -> each clip's sentiment), on which the
    predictions `joint` are least invariant (the rule of `choose_partition`, for any model's predictions)."""
    # EIIL's criterion: the IRMv1 penalty of the reference predictor across the two groups, i.e. how much
    # rescaling its predictions within each group would lower that group's risk (the risks' variance, tried
    # first, mostly found the groups of near-zero labels, which are hard for any predictor)
    slope = (clip_loss_slope(torch.from_numpy(joint - y), loss) * torch.from_numpy(joint)).numpy()
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
            f"{MIN_GROUP_SHARE:.0%} of the {split} clips, so there are no groups to be invariant across",
            hint="use model.environments z_plus_unimodal on this data",
        )
    name = max(candidates, key=lambda k: candidates[k][0])
    return Partition(name, source, candidates[name][1].tolist(), candidates[name][0], {k: v for k, (v, _) in candidates.items()})


def validation_partition(model: nn.Module, batches: Batches, batch_size: int, trained_on: str | None, loss=None, config=None) -> Partition:
    """The validation clips' groups for `train.select_on`, by the rule of training's partition.

    With a training partition ("visual disagrees"), the same modality's disagreement with the label on
    valid; without one (a model that infers no groups), the partition the rule would choose on valid. The
    sentiments are `label_T/A/V` where valid has them for every clip, else the model's own unimodal predictions.
    """
    if trained_on is None:
        return choose_partition(model, batches, batch_size, loss, config, split="validation")
    modality = trained_on.split()[0]
    source_choice = config.source if config is not None else "auto"
    sentiments, source = unimodal_sentiments(model, batches, batch_size, only=modality, source=source_choice)
    disagree = (np.sign(sentiments[modality]) * np.sign(batches.labels.numpy()) < 0).astype(np.int64)
    return Partition(trained_on, source, disagree.tolist(), float("nan"), {})


def held_out_rows(n: int, share: float, seed: int) -> np.ndarray:
    """The training rows the risk never fits under model.invariance.penalty_on held_out (chosen before any
    training, by the seed): the penalty is measured on them, so it cannot be met by memorising its clips."""
    rng = np.random.default_rng([int(seed), 4099])
    return np.sort(rng.permutation(n)[: max(2, int(round(share * n)))])


def balanced_rows(rows: np.ndarray, groups: np.ndarray, size: int, seed: int, epoch: int, step: int) -> np.ndarray:
    """About `size` of `rows`, the same number from each group present (drawn with replacement from a smaller
    group): each group's risk in the penalty is measured on as many clips. Depends on (seed, epoch, step) only."""
    rng = np.random.default_rng([int(seed), int(epoch), int(step), 7919])
    present = np.unique(groups[rows])
    per = max(1, size // len(present))
    picks = []
    for g in present:
        members = rows[groups[rows] == g]
        picks.append(rng.choice(members, per, replace=len(members) < per))
    return np.concatenate(picks)


def group_maes(preds: np.ndarray, labels: np.ndarray, group: np.ndarray) -> dict[str, float]:
    """MAE in each group present (0: agrees, 1: disagrees), their mean and the worst of them."""
    maes = {f"group{g}_MAE": float(np.abs(preds[group == g] - labels[group == g]).mean()) for g in (0, 1) if (group == g).any()}
    return {**maes, "group_mean_MAE": float(np.mean(list(maes.values()))), "worst_group_MAE": float(max(maes.values()))}


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
