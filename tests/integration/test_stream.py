"""Training batches read from the store's row groups (train.stream=store) instead of a split padded in memory."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
import torch

from misr.store.store import FeatureStore
from misr.store.stream import SplitStream
from misr.store.write import ROW_GROUP_CLIPS
from tests.helpers import TINY_TRAINING, params, train

TRAIN_CLIPS = 3 * ROW_GROUP_CLIPS + 40  # four row groups in the train split's part


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from misr.data.synth import generate

    root = tmp_path_factory.mktemp("stream") / "store"
    generate(
        params(*TINY_TRAINING, "data.synth.scenario=shift", f"data.synth.n_clips={{train: {TRAIN_CLIPS}, valid: 48, test: 16}}").data.synth,
        root,
    )
    return root


def test_parts_are_written_in_row_groups_a_stream_can_read_one_at_a_time(store):
    fs = FeatureStore(store)
    for _, path in fs.part_files("audio"):
        meta = pq.ParquetFile(path).metadata
        assert meta.num_row_groups > 1
        assert max(meta.row_group(g).num_rows for g in range(meta.num_row_groups)) == ROW_GROUP_CLIPS


def test_a_streamed_batch_holds_exactly_what_the_loaded_split_holds(store):
    fs = FeatureStore(store)
    loaded = fs.load_split("train")
    stream = SplitStream(fs, "train")
    assert stream.clip_keys == loaded.clip_keys and len(stream) == len(loaded)
    rows = torch.tensor([5, 400, 3, 131, 260, 0])
    batch = stream.take(rows)
    assert batch.clip_keys == [loaded.clip_keys[i] for i in rows.tolist()]
    assert torch.equal(batch.labels, loaded.labels[rows])
    for m in ("audio", "visual"):
        got, want = getattr(batch, m), getattr(loaded, m)
        assert torch.equal(got.lengths, want.lengths[rows])
        t = int(got.lengths.max())
        assert got.values.shape[1] == t  # padded to this batch's longest clip, not the split's
        assert torch.equal(got.values, want.values[rows, :t])
    t = int(batch.text.lengths.max())
    assert torch.equal(batch.text.input_ids, loaded.text.input_ids[rows, :t])


def test_the_order_is_a_seeded_permutation_shuffled_in_blocks_of_row_groups(store):
    stream = SplitStream(FeatureStore(store), "train", window=2)
    first, again, other = stream.order(7, 0), stream.order(7, 0), stream.order(7, 1)
    assert sorted(first.tolist()) == list(range(len(stream)))
    assert torch.equal(first, again) and not torch.equal(first, other)
    # the first window holds the clips of two whole row groups, so a batch needs at most those two read
    group_of = {row: stream.where["audio"][key][:2] for row, key in enumerate(stream.clip_keys)}
    first_window = first[: 2 * ROW_GROUP_CLIPS].tolist()
    assert len({group_of[r] for r in first_window}) <= 3  # the last group is shorter: a window may reach into a third
    assert stream.order(7, 0, shuffle=False).tolist() == list(range(len(stream)))


@pytest.mark.slow
def test_streamed_batches_with_groups_hold_every_group_and_read_within_their_window(store):
    """A 10% minority spread by the block-shuffled order alone misses some batches; stratified within
    each window of row groups, every batch of 32 holds it, and a batch still comes from one window."""
    from misr.training.batches import StreamedBatches, epoch_batches

    stream = SplitStream(FeatureStore(store), "train", window=2)
    batches = StreamedBatches(stream, torch.device("cpu"))
    plain = batches.order(7, 0)
    groups = torch.zeros(len(stream), dtype=torch.long)
    groups[torch.randperm(len(stream), generator=torch.Generator().manual_seed(0))[: len(stream) // 10]] = 1
    assert any(not (groups[b.indices] == 1).any() for b in epoch_batches(plain, 32))  # the problem

    batches.groups = groups
    order = batches.order(7, 0)
    assert sorted(order.tolist()) == list(range(len(stream)))
    assert torch.equal(order, batches.order(7, 0)) and not torch.equal(order, batches.order(7, 1))
    group_of = {row: stream.where["audio"][key][:2] for row, key in enumerate(stream.clip_keys)}
    for b in epoch_batches(order, 32):  # within a window of two row groups (three where the short last one joins)
        assert len({group_of[r] for r in b.indices.tolist()}) <= 3
    full = [b for b in epoch_batches(order, 32) if len(b.indices) == 32]
    assert all((groups[b.indices] == 1).any() and (groups[b.indices] == 0).any() for b in full)


def test_training_from_the_store_learns_and_reads_each_row_group_about_once_an_epoch(store, tmp_path):
    p = params(*TINY_TRAINING, "train.stream=store", "train.epochs=4", "train.seeds=[3]", "train.batch_size=32")
    summary = train(p, store, tmp_path / "m")
    r = summary["seeds"]["3"]
    assert r["best_valid_mae"] < r["train_mean_valid_mae"], r
    memory = train(
        params(*TINY_TRAINING, "train.stream=memory", "train.epochs=4", "train.seeds=[3]", "train.batch_size=32"), store, tmp_path / "n"
    )
    # the same model and data, batches in another order: a result of the same quality, not the same numbers
    assert abs(memory["seeds"]["3"]["best_valid_mae"] - r["best_valid_mae"]) < 0.15


def test_a_missing_part_is_a_clear_error_naming_the_file(store, tmp_path):
    import shutil

    from misr.errors import StoreError

    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    fs = FeatureStore(copy)
    stream = SplitStream(fs, "train")
    _, path = fs.part_files("visual")[0]
    path.unlink()
    with pytest.raises(StoreError, match="disappeared while training"):
        stream.take(torch.tensor([0, 1]))


def test_groups_environments_train_from_the_store_too(store, tmp_path):
    """The default environments (groups) with a store read batch by batch: the partition is inferred over
    the streamed split, and the batches carry each clip's group."""
    import torch

    p = params(*TINY_TRAINING, "train.stream=store", "train.epochs=3", "train.seeds=[3]", "model.invariance.warmup_epochs=1")
    summary = train(p, store, tmp_path / "m")
    env = summary["seeds"]["3"]["environments"]
    assert env["source"] == "labels" and env["parts"] and env["name"].endswith(("disagree", "disagrees"))
    state = torch.load(tmp_path / "m" / "seed-3" / "last.pt", weights_only=True)
    assert len(state["groups"]) == len(SplitStream(FeatureStore(store), "train"))
    assert state["history"][-1]["train_invariance"] > 0
    assert summary["seeds"]["3"]["batches_missing_group"] == 0  # topped up from outside the window read
