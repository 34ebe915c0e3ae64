"""Environments that differ in distribution (`model.environments: groups`): training clips grouped by cross-modal agreement.

MISR's abstract speaks of "several distributional environments constructed from the joint representation
and the unimodal data". Here the environments are groups of training clips, not views of the same clips:
  1. candidate partitions: for each modality m, the clips whose modality-m sentiment disagrees in sign with
     the clip's label, against the rest. The sentiment is `label_T/A/V` where the store has it for every
     training clip, else the model's own unimodal prediction (the joint head given modality m alone, the
     other two removed, so their fusion weight is 0);
  2. `model.groups.partition: all` keeps every candidate whose smaller group holds at least MIN_GROUP_SHARE of
     the clips, and the penalty asks f(z) to be invariant across each of them (their mean): the environments
     are the same for every seed. `auto` keeps only the candidate on which the current joint predictor f(z)
     is least invariant: the largest IRMv1 penalty across its two groups, as in EIIL (Creager, Jacobsen and
     Zemel, ICML 2021), with the model at the end of the warm-up as the reference. That choice hinges on one
     seed's state at one epoch (seeds of one store chose text, audio, visual), so it is the ablation;
  3. a clip's group is a code with one bit per kept partition (bit i set: partition i's modality disagrees);
     the batches spread every code evenly and hold at least `train.group_min_count` clips of each group of
     each partition (`misr.training.batches.with_every_group`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
    name: str  # e.g. "visual disagrees", or "text, audio, visual disagree"
    source: str  # "labels" or "predictions"
    group: list[int]  # per row: a code, bit i set where the modality parts[i] disagrees with the label
    violation: float  # the IRMv1 penalty of f(z) across the two groups, summed over the kept partitions
    candidates: dict[str, float]  # every candidate's violation
    parts: list[str] = field(default_factory=list)  # the modalities whose disagreement partitions are kept, in bit order

    def record(self) -> dict[str, Any]:
        """What a seed keeps of its environments (summary.json, the model card), without the clips' groups."""
        return {"name": self.name, "parts": self.parts, "source": self.source, "violation": self.violation, "candidates": self.candidates}


def partition_name(parts: list[str]) -> str:
    return f"{parts[0]} disagrees" if len(parts) == 1 else f"{', '.join(parts)} disagree"


def parts_of(record: dict[str, Any]) -> list[str]:
    """The modalities of a recorded partition (records written before several partitions name one in "name")."""
    return list(record.get("parts") or [record["name"].split()[0]])


def group_bits(codes: np.ndarray | torch.Tensor, n_parts: int) -> torch.Tensor:
    """Group codes [N] -> one 0/1 column per partition [N, n_parts]."""
    codes = torch.as_tensor(np.asarray(codes), dtype=torch.long)
    return (codes[:, None] >> torch.arange(n_parts)) & 1


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
    """The agreement partitions (see the module's text) that `config.partition` (model.groups) asks for: all of
    them, the one the joint predictor violates most, or one modality's; sentiments from `config.source`.
    `split` names the clips in messages."""
    partition, source_choice = (config.partition, config.source) if config is not None else ("all", "auto")
    joint = predict(model, batches, batch_size)
    only = partition if partition in MODALITIES else None
    sentiments, source = unimodal_sentiments(model, batches, batch_size, only=only, source=source_choice)
    return partition_from(joint, batches.labels.numpy(), sentiments, source, loss, split, keep="all" if partition == "all" else "worst")


def partition_from(
    joint: np.ndarray,
    y: np.ndarray,
    sentiments: dict[str, np.ndarray],
    source: str,
    loss=None,
    split: str = "training",
    keep: str = "all",
) -> Partition:
    """The agreement partitions of `sentiments` (modality -> each clip's sentiment) whose smaller group is big
    enough: all of them (`keep` "all"), or the one on which the predictions `joint` are least invariant ("worst",
    EIIL's choice). The same rule for any model's predictions."""
    # EIIL's criterion: the IRMv1 penalty of the reference predictor across the two groups, i.e. how much
    # rescaling its predictions within each group would lower that group's risk (the risks' variance, tried
    # first, mostly found the groups of near-zero labels, which are hard for any predictor)
    slope = (clip_loss_slope(torch.from_numpy(joint - y), loss) * torch.from_numpy(joint)).numpy()
    candidates: dict[str, tuple[float, np.ndarray]] = {}
    for m in (m for m in MODALITIES if m in sentiments):
        disagree = (np.sign(sentiments[m]) * np.sign(y) < 0).astype(np.int64)
        share = disagree.mean()
        if min(share, 1 - share) < MIN_GROUP_SHARE:
            continue
        candidates[m] = (float(sum(slope[disagree == g].mean() ** 2 for g in (0, 1))), disagree)
    if not candidates:
        raise MisrError(
            "model.environments groups: no modality disagrees in sign with the label in at least "
            f"{MIN_GROUP_SHARE:.0%} of the {split} clips, so there are no groups to be invariant across",
            hint="use model.environments z_plus_unimodal on this data",
        )
    parts = list(candidates) if keep == "all" else [max(candidates, key=lambda k: candidates[k][0])]
    codes = sum(candidates[m][1] << i for i, m in enumerate(parts))
    return Partition(
        partition_name(parts),
        source,
        np.asarray(codes, dtype=np.int64).tolist(),
        float(sum(candidates[m][0] for m in parts)),
        {partition_name([m]): v for m, (v, _) in candidates.items()},
        parts,
    )


def validation_partition(
    model: nn.Module, batches: Batches, batch_size: int, trained_on: dict[str, Any] | None, loss=None, config=None
) -> Partition:
    """The validation clips' groups for `train.select_on`, by the rule of training's partitions.

    With training partitions (a record of `Partition.record`), the same modalities' disagreement with the
    label on valid; without them (a model that infers no groups), the partitions the rule would choose on
    valid. The sentiments are `label_T/A/V` where valid has them for every clip, else the model's own
    unimodal predictions.
    """
    if trained_on is None:
        return choose_partition(model, batches, batch_size, loss, config, split="validation")
    parts = parts_of(trained_on)
    source_choice = config.source if config is not None else "auto"
    only = parts[0] if len(parts) == 1 else None
    sentiments, source = unimodal_sentiments(model, batches, batch_size, only=only, source=source_choice)
    y = batches.labels.numpy()
    codes = sum((np.sign(sentiments[m]) * np.sign(y) < 0).astype(np.int64) << i for i, m in enumerate(parts))
    return Partition(partition_name(parts), source, np.asarray(codes, dtype=np.int64).tolist(), float("nan"), {}, parts)


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


def group_maes(preds: np.ndarray, labels: np.ndarray, codes: np.ndarray, parts: list[str]) -> dict[str, float]:
    """MAE in each group present of each partition (e.g. visual_disagrees_MAE, visual_agrees_MAE), the mean of
    those MAEs and the worst of them."""
    codes = np.asarray(codes)
    maes = {}
    for i, m in enumerate(parts):
        bit = (codes >> i) & 1
        for g, word in ((0, "agrees"), (1, "disagrees")):
            if (bit == g).any():
                maes[f"{m}_{word}_MAE"] = float(np.abs(preds[bit == g] - labels[bit == g]).mean())
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
