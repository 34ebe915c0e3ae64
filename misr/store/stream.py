"""A split read lazily, for training on stores larger than memory (a MOSEI-size store pads to ~10 GB).

Opening reads only the clips table, the parts' footers and their clip_key columns: where every clip
lives (part file, row group, row). A batch is padded from the row groups that hold its clips, read on
demand and kept in a small cache. For the cache to work, the training order is shuffled in blocks:
each epoch the split's row groups are put in a random order and the clips are shuffled within windows
of `window` row groups (window x 128 clips). The order depends on (seed, epoch) only, as for in-memory
splits, so a resumed run sees the batches the uninterrupted run would have seen. Parts are written
with row groups of `misr.store.write.ROW_GROUP_CLIPS` clips.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from misr.errors import StoreError
from misr.store.format import check_part, corrupt
from misr.store.layout import StoreLayout
from misr.store.read import COLUMNS, _Part, check_coverage, fill, label_columns, split_rows, to_torch
from misr.store.schema import MODALITIES, SplitData

Where = dict[str, tuple[int, int, int]]  # clip_key -> (part file, row group, row in the group)


class SplitStream:
    """One split of a store, indexed but not loaded; `take(rows)` pads those clips into a `SplitData`."""

    def __init__(
        self,
        store: StoreLayout,
        split: str,
        modalities: Sequence[str] = MODALITIES,
        max_frames: Mapping[str, int] | None = None,
        window: int = 8,
        transform: Callable[[SplitData], SplitData] | None = None,
    ):
        for m in modalities:
            store.modality_dir(m)
        clips, rows, keys, skipped = split_rows(store, split)
        self.split, self.clip_keys, self.quarantined = split, keys, skipped
        labels, unimodal = label_columns(clips, rows)
        self.labels = torch.from_numpy(labels)
        self.unimodal_labels = {m: torch.from_numpy(v) for m, v in unimodal.items()}
        self.limits = dict(max_frames or {})
        self.window = max(1, int(window))
        self.transform = transform  # applied to each batch's SplitData before it becomes tensors
        self.files: dict[str, list[tuple[Path, list[str]]]] = {}  # modality -> [(part file, columns read)]
        self.where: dict[str, Where] = {}
        for m in modalities:
            self.files[m], self.where[m] = _index(store, m, keys)
        named = {m: [_Part(path, i, None) for i, (path, _) in enumerate(files)] for m, files in self.files.items()}
        check_coverage(store, split, keys, {m: (named[m], {k: (f, r) for k, (f, _, r) in w.items()}) for m, w in self.where.items()})
        self._cache: OrderedDict[tuple[str, int, int], pa.Table] = OrderedDict()
        self._cache_size = 2 * self.window * max(1, len(modalities))

    def __len__(self) -> int:
        return len(self.clip_keys)

    def order(
        self, seed: int, epoch: int, shuffle: bool = True, within: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None
    ) -> torch.Tensor:
        """The split's rows in training order: row groups shuffled, clips shuffled within windows of groups.

        `within(rows, generator)` orders each window's rows instead of a plain shuffle (training uses it to
        spread groups of clips evenly over the window's batches, so that each batch holds every group).
        """
        if not shuffle:
            return torch.arange(len(self))
        reference = next(m for m in ("audio", "visual", "text") if m in self.where)
        blocks: dict[tuple[int, int], list[int]] = {}
        for row, key in enumerate(self.clip_keys):
            f, g, _ = self.where[reference][key]
            blocks.setdefault((f, g), []).append(row)
        groups = [torch.tensor(blocks[b]) for b in sorted(blocks)]
        gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
        shuffled = [groups[i] for i in torch.randperm(len(groups), generator=gen).tolist()]
        out = []
        for start in range(0, len(shuffled), self.window):
            rows = torch.cat(shuffled[start : start + self.window])
            out.append(rows[torch.randperm(len(rows), generator=gen)] if within is None else within(rows, gen))
        return torch.cat(out)

    def take(self, rows: torch.Tensor | Sequence[int]) -> SplitData:
        """The clips at `rows` (positions in `clip_keys`), padded to the longest of them, as torch tensors."""
        idx = torch.as_tensor(rows, dtype=torch.long)
        keys = [self.clip_keys[i] for i in idx.tolist()]
        data = SplitData(
            split=self.split,
            clip_keys=keys,
            labels=self.labels[idx].numpy(),
            unimodal_labels={m: v[idx].numpy() for m, v in self.unimodal_labels.items()},
        )
        located = {}
        for m, where in self.where.items():
            groups = sorted({where[k][:2] for k in keys})
            slot = {fg: i for i, fg in enumerate(groups)}
            parts = [_Part(self.files[m][f][0], f, self._group(m, f, g)) for f, g in groups]
            located[m] = (parts, {k: (slot[where[k][:2]], where[k][2]) for k in keys})
        fill(data, located, self.limits)
        return to_torch(self.transform(data) if self.transform else data)

    def _group(self, modality: str, part: int, group: int) -> pa.Table:
        key = (modality, part, group)
        table = self._cache.get(key)
        if table is not None:
            self._cache.move_to_end(key)
            return table
        path, columns = self.files[modality][part]
        try:
            table = pq.ParquetFile(path, page_checksum_verification=True).read_row_group(group, columns=columns)
        except FileNotFoundError:
            raise StoreError(f"{path} disappeared while training; is another process rewriting the store?") from None
        except (pa.ArrowInvalid, pa.ArrowException, OSError) as exc:
            raise corrupt(path, exc) from None
        self._cache[key] = table
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return table


def _index(store: StoreLayout, modality: str, keys: Sequence[str]) -> tuple[list[tuple[Path, list[str]]], Where]:
    """Each part file of `modality` with the columns to read, and where the latest version of each clip lives."""
    files = store.part_files(modality)
    if not files:
        raise StoreError(
            f"the store {store.root} has no {modality} features (no part files in {store.modality_dir(modality)})",
            hint="run the extraction for that modality (`misr extract`) or `misr synth`",
        )
    wanted = set(keys)
    columns = [*COLUMNS[modality], "absent"]
    out: list[tuple[Path, list[str]]] = []
    where: Where = {}
    for _, path in files:  # oldest first: a later part's version of a clip wins
        try:
            handle = pq.ParquetFile(path, page_checksum_verification=True)
            check_part(path, handle.schema_arrow, modality)
            names = handle.schema_arrow.names
            cols = [c for c in columns if c in names]
            if "clip_key" not in cols or len([c for c in cols if c != "absent"]) < 2:
                raise StoreError(f"{path} is not a {modality} feature file (columns: {', '.join(names)})")
            part_keys = handle.read(columns=["clip_key"]).column(0).to_pylist()
            sizes = [handle.metadata.row_group(g).num_rows for g in range(handle.num_row_groups)]
        except (pa.ArrowInvalid, pa.ArrowException, OSError) as exc:
            raise corrupt(path, exc) from None
        part = len(out)
        out.append((path, cols))
        starts = np.cumsum([0, *sizes])
        for g in range(len(sizes)):
            for r, key in enumerate(part_keys[starts[g] : starts[g + 1]]):
                if key in wanted:
                    where[key] = (part, g, r)
    return out, where
