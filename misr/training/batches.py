"""Mini-batches from a split (loaded in memory, or streamed from the store), and the order they come in.

The order is a pure function of (seed, epoch): a resumed run sees exactly the batches the
uninterrupted run would have seen. Under DDP every rank takes its share of the same global batch, so
the global batch (and hence the averaged gradient) is the one a single process would compute.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from misr.store import SplitData
from misr.store.stream import SplitStream


@dataclass
class BatchSlice:
    indices: torch.Tensor  # this rank's rows of the split
    global_size: int  # rows in the whole global batch, over all ranks


def shuffled(n: int, seed: int, epoch: int) -> torch.Tensor:
    """A permutation of n rows that depends on (seed, epoch) only."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch)))


def epoch_batches(order: torch.Tensor, batch_size: int, rank: int = 0, world: int = 1) -> list[BatchSlice]:
    """Global batches of `batch_size` consecutive rows of `order`; each rank gets a contiguous share."""
    return rank_share(chunks(order, batch_size), rank, world)


def chunks(order: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """The global batches of an epoch: `batch_size` consecutive rows of `order` each."""
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def rank_share(chunks_: list[torch.Tensor], rank: int = 0, world: int = 1) -> list[BatchSlice]:
    """Each global batch's contiguous share for `rank`. A last global batch with fewer rows than ranks is dropped
    (a rank with no rows could not take part in the gradient all-reduce)."""
    out = []
    for chunk in chunks_:
        if len(chunk) < world:
            break
        share = np.array_split(np.arange(len(chunk)), world)[rank]
        out.append(BatchSlice(chunk[torch.from_numpy(share)], len(chunk)))
    return out


@dataclass
class GroupCover:
    """How an epoch's batches held the groups: `topped_up` rows added so that each batch holds `min_count` clips
    of every group, and the batches that still lack a group (those groups have no clip to give)."""

    topped_up: int = 0
    batches_missing_group: int = 0


def with_every_group(
    chunks_: list[torch.Tensor], codes: np.ndarray, n_parts: int, pool: np.ndarray, min_count: int, seed: int, epoch: int
) -> tuple[list[torch.Tensor], GroupCover]:
    """The batches with clips added until each holds at least `min_count` clips of both groups of every partition.

    `codes` is each row's group code (bit i: partition i's modality disagrees); the clips added come from `pool`
    (the rows the risk fits), each group's in a seeded shuffled cycle, so a small group's clips come again
    within the epoch rather than some batch going without it (spread evenly, a 2% minority was missing from
    41% of the batches of 32). Nothing is removed: every row of the epoch is still in it once. Depends on (seed, epoch) only.
    """
    rng = np.random.default_rng([int(seed), int(epoch), 104729])
    bits = (np.asarray(codes)[:, None] >> np.arange(n_parts)) & 1
    members = {(p, g): rng.permutation(pool[bits[pool, p] == g]) for p in range(n_parts) for g in (0, 1)}
    cursor = dict.fromkeys(members, 0)
    cover, out = GroupCover(), []
    for chunk in chunks_:
        rows = chunk.numpy()
        for (p, g), group in members.items():
            short = min_count - int((bits[rows, p] == g).sum())
            if short <= 0 or len(group) == 0:
                continue
            take = group[(cursor[(p, g)] + np.arange(short)) % len(group)]
            cursor[(p, g)] += short
            rows = np.concatenate([rows, take])
            cover.topped_up += short
        cover.batches_missing_group += int(any(not (bits[rows, p] == g).any() for p in range(n_parts) for g in (0, 1)))
        out.append(torch.from_numpy(rows))
    return out, cover


def stratified_order(groups: torch.Tensor, seed: int, epoch: int, gen: torch.Generator | None = None) -> torch.Tensor:
    """A seeded permutation in which every group is spread evenly, so each batch holds its share of each group."""
    gen = gen if gen is not None else torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    position = torch.empty(len(groups), dtype=torch.float64)
    for g in torch.unique(groups).tolist():
        rows = torch.nonzero(groups == g).squeeze(1)
        rank = torch.empty(len(rows), dtype=torch.float64)
        rank[torch.randperm(len(rows), generator=gen)] = torch.arange(len(rows), dtype=torch.float64)
        position[rows] = (rank + torch.rand(len(rows), generator=gen, dtype=torch.float64)) / len(rows)
    return torch.argsort(position)


class Batches:
    """Cuts padded split tensors into batches (trimmed to the batch's longest sequence) on a device.

    With `groups` set (a group code per row, model.environments groups: bit i set where partition i's modality
    disagrees), each batch carries its rows' "group" as one 0/1 column per partition [B, n_parts], and the
    training order spreads every code evenly over the batches.
    """

    def __init__(self, data: SplitData | SplitStream, device: torch.device):
        self.data = data
        self.device = device
        self.pin = device.type == "cuda"
        self.groups: torch.Tensor | None = None
        self.n_parts = 1

    def set_groups(self, codes: list[int], n_parts: int) -> None:
        self.groups, self.n_parts = torch.tensor(codes, dtype=torch.long), n_parts

    def group_columns(self, idx: torch.Tensor) -> torch.Tensor:
        assert self.groups is not None
        return (self.groups[idx][:, None] >> torch.arange(self.n_parts)) & 1

    def __len__(self) -> int:
        return len(self.data)

    @property
    def labels(self) -> torch.Tensor:
        return self.data.labels

    @property
    def unimodal_labels(self) -> dict[str, torch.Tensor]:
        return self.data.unimodal_labels

    def order(self, seed: int, epoch: int, shuffle: bool = True) -> torch.Tensor:
        """The training order of an epoch: a permutation that depends on (seed, epoch) only."""
        if not shuffle:
            return torch.arange(len(self))
        return shuffled(len(self), seed, epoch) if self.groups is None else stratified_order(self.groups, seed, epoch)

    def get(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        d = self.data
        batch: dict[str, torch.Tensor] = {"y": d.labels[idx]}
        t_len = d.text.lengths[idx]
        t_max = max(int(t_len.max()), 1)
        batch["text_ids"] = d.text.input_ids[idx, :t_max]
        batch["text_mask"] = d.text.attention_mask[idx, :t_max]
        if d.text.hidden is not None:
            batch["text_hidden"] = d.text.hidden.values[idx, :t_max]
        for m in ("audio", "visual"):
            seq = getattr(d, m)
            lengths = seq.lengths[idx]
            batch[m] = seq.values[idx, : max(int(lengths.max()), 1)]
            batch[f"{m}_lengths"] = lengths
        for m, absent in d.absent.items():
            rows = absent[idx]
            if rows.any():  # the store says these clips lack it: the fusion gives it weight 0 there
                batch[f"{m}_present"] = ~rows
        if self.groups is not None:
            batch["group"] = self.group_columns(idx)
        return {k: self._to_device(v) for k, v in batch.items()}

    def _to_device(self, t: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cpu":
            return t
        if self.pin:
            t = t.pin_memory()
        return t.to(self.device, non_blocking=True)


class StreamedBatches(Batches):
    """Batches of a split read lazily from the store's row groups (`SplitStream`), in its block-shuffled order.

    With `groups` set, each batch carries its rows' "group", and the clips of each window of row groups
    (the unit the block-shuffled order reads together) are ordered so that every group is spread evenly
    over the window's batches: each batch holds every group the window holds, as in memory, while the
    reads stay within the window.
    """

    data: SplitStream  # what Batches holds as SplitData: length, labels and unimodal labels alike

    def order(self, seed: int, epoch: int, shuffle: bool = True) -> torch.Tensor:
        if self.groups is None:
            return self.data.order(seed, epoch, shuffle)
        groups = self.groups

        def stratified(rows: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
            return rows[stratified_order(groups[rows], seed, epoch, gen)]

        return self.data.order(seed, epoch, shuffle, within=stratified)

    def get(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        batch = Batches(self.data.take(idx), self.device).get(torch.arange(len(idx)))
        if self.groups is not None:
            batch["group"] = self._to_device(self.group_columns(idx))
        return batch


def batches_for(split: SplitData | SplitStream, device: torch.device) -> Batches:
    return StreamedBatches(split, device) if isinstance(split, SplitStream) else Batches(split, device)


def zero_modality(batch: dict[str, torch.Tensor], modality: str, rows: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The batch with one modality's content removed (all rows, or where `rows` is True).

    Frames become zeros and tokens become padding; lengths and masks stay, so the model sees a clip
    of the usual shape with nothing in it, and `<modality>_present` marks the clips that lost it, so the
    fusion gives it weight exactly 0. Used for modality dropout, robustness checks and prediction with a
    modality missing, so all three remove a modality the same way.
    """
    out = dict(batch)
    n = batch["y"].shape[0] if "y" in batch else batch[f"{modality}_lengths" if modality != "text" else "text_mask"].shape[0]
    device = (batch.get("y") if "y" in batch else batch["text_mask"]).device
    kept = torch.zeros(n, dtype=torch.bool, device=device) if rows is None else ~rows
    previous = out.get(f"{modality}_present")
    out[f"{modality}_present"] = kept if previous is None else previous & kept  # the fusion gives it weight 0
    keys = ("text_ids", "text_hidden") if modality == "text" else (modality,)
    for key in keys:
        if key not in out:
            continue
        value = out[key]
        if rows is None:
            out[key] = torch.zeros_like(value)
        else:
            shape = (-1,) + (1,) * (value.dim() - 1)
            out[key] = value * (~rows).view(shape).to(value.dtype)
    return out


def drop_modalities(batch: dict[str, torch.Tensor], rate: float) -> dict[str, torch.Tensor]:
    """Modality dropout: remove each modality of each clip with probability `rate`, never all it has."""
    n = batch["y"].shape[0]
    device = batch["y"].device
    modalities = ("text", "audio", "visual")
    has = torch.stack([batch.get(f"{m}_present", torch.ones(n, dtype=torch.bool, device=device)) for m in modalities])
    drop = (torch.rand(3, n, device=device) < rate) & has
    drop[:, (has & ~drop).sum(dim=0) == 0] = False  # a clip keeps at least one of the modalities it has
    for i, modality in enumerate(modalities):
        if drop[i].any():
            batch = zero_modality(batch, modality, drop[i])
    return batch
