"""Training's rules on hand-made inputs: batch stratification, the group penalty, which epochs may be chosen."""

import pytest
import torch

from tests.helpers import params


def tiny_params(*extra):
    return params(*extra)


def test_stratified_order_puts_every_group_in_every_batch():
    from misr.training.batches import epoch_batches, stratified_order

    groups = torch.tensor([1] * 10 + [0] * 90)
    order = stratified_order(groups, seed=3, epoch=0)
    assert sorted(order.tolist()) == list(range(100))
    assert torch.equal(order, stratified_order(groups, 3, 0)) and not torch.equal(order, stratified_order(groups, 3, 1))
    for piece in epoch_batches(order, 16)[:-1]:
        assert 1 <= int(groups[piece.indices].sum()) <= 3  # 10% of 16: one to three of the small group, never none


def minority_order(n: int, n_small: int, seed: int = 3):
    from misr.training.batches import stratified_order

    codes = torch.zeros(n, dtype=torch.long)
    codes[torch.randperm(n, generator=torch.Generator().manual_seed(1))[:n_small]] = 1
    return codes, stratified_order(codes, seed, 0)


def test_a_two_percent_minority_is_in_every_batch_with_its_minimum_count():
    """12 clips of 600 in the small group, batch 32: spread evenly, at least 7 of 19 batches hold none of them
    (the group the penalty compares is missing); topped up, each holds 4, nothing removed."""
    import numpy as np

    from misr.training.batches import chunks, with_every_group

    codes, order = minority_order(600, 12)
    pool = np.arange(600)
    spread, cover = with_every_group(chunks(order, 32), codes.numpy(), 1, pool, 0, 3, 0)
    assert cover.topped_up == 0 and cover.batches_missing_group == sum(int(codes[b].sum()) == 0 for b in spread) >= 7
    topped, cover = with_every_group(chunks(order, 32), codes.numpy(), 1, pool, 4, 3, 0)
    assert cover.batches_missing_group == 0 and len(topped) == 19
    for before, after in zip(chunks(order, 32), topped, strict=True):
        assert torch.equal(after[: len(before)], before)  # every row of the epoch kept, in its place
        assert int(codes[after].sum()) >= 4 and int((codes[after] == 0).sum()) >= 4
    extra = torch.cat([after[len(before) :] for before, after in zip(chunks(order, 32), topped, strict=True)])
    assert cover.topped_up == len(extra) and set(extra.tolist()) <= set(torch.nonzero(codes).squeeze(1).tolist())
    assert len(set(extra.tolist())) == 12  # the small group's clips taken in turn, not the same few
    again, _ = with_every_group(chunks(order, 32), codes.numpy(), 1, pool, 4, 3, 0)
    assert all(torch.equal(a, b) for a, b in zip(topped, again, strict=True))  # a function of (seed, epoch)


def test_every_partition_gets_both_groups_and_only_from_the_rows_the_risk_fits():
    """Three partitions (bits of the code): each group of each is topped up, from the pool only."""
    import numpy as np

    from misr.training.batches import chunks, stratified_order, with_every_group

    rng = np.random.default_rng(0)
    bits = (rng.random((300, 3)) < np.array([0.03, 0.2, 0.5])).astype(int)
    codes = bits @ np.array([1, 2, 4])
    pool = np.arange(0, 300, 2)  # the rows the risk fits (the others held out)
    order = stratified_order(torch.from_numpy(codes), 5, 1)
    order = order[torch.from_numpy(np.isin(order.numpy(), pool))]
    topped, cover = with_every_group(chunks(order, 16), codes, 3, pool, 2, 5, 1)
    assert cover.batches_missing_group == 0
    for b in topped:
        assert set(b.tolist()) <= set(pool.tolist())
        for p in range(3):
            assert (bits[b.numpy(), p] == 1).sum() >= 2 and (bits[b.numpy(), p] == 0).sum() >= 2


def test_partitions_all_keeps_every_candidate_and_auto_the_one_violated_most():
    import numpy as np

    from misr.training.groups import group_bits, group_maes, partition_from

    rng = np.random.default_rng(2)
    y = rng.normal(size=400)
    flip = {"text": 0.2, "audio": 0.01, "visual": 0.3}  # audio's smaller group is under MIN_GROUP_SHARE
    sentiments = {m: np.where(rng.random(400) < share, -y, y) for m, share in flip.items()}
    joint = y + 0.5 * (sentiments["visual"] != y) * -np.sign(y)  # worse on the visual-flipped clips
    every = partition_from(joint, y, sentiments, "labels")
    assert every.parts == ["text", "visual"] and every.name == "text, visual disagree"
    assert set(every.candidates) == {"text disagrees", "visual disagrees"}
    bits = group_bits(every.group, 2).numpy()
    assert (bits[:, 0] == (sentiments["text"] != y)).all() and (bits[:, 1] == (sentiments["visual"] != y)).all()
    worst = partition_from(joint, y, sentiments, "labels", keep="worst")
    assert worst.parts == ["visual"] and worst.violation == max(worst.candidates.values())
    maes = group_maes(joint, y, np.asarray(every.group), every.parts)
    assert set(maes) == {f"{m}_{w}_MAE" for m in ("text", "visual") for w in ("agrees", "disagrees")} | {
        "group_mean_MAE",
        "worst_group_MAE",
    }
    assert maes["worst_group_MAE"] == maes["visual_disagrees_MAE"] == pytest.approx(0.5)


def test_the_penalty_over_several_partitions_is_their_mean():
    from misr.model.invariance import group_penalty, partitions_penalty, partitions_risk

    pred, y = torch.tensor([1.0, 2.0, 0.0, 0.0]), torch.tensor([1.0, 1.0, 0.0, 2.0])  # residuals 0, 1, 0, 2
    a, b = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 0, 1])  # risks 0.5, 1.0 | 0.0, 1.5
    both = torch.stack([a, b], dim=1)
    assert partitions_penalty("vrex", pred, y, both).item() == pytest.approx((0.0625 + 0.5625) / 2)
    assert partitions_penalty("vrex", pred, y, a).item() == group_penalty("vrex", pred, y, a).item()
    assert partitions_risk(pred, y, both).item() == pytest.approx((0.75 + 0.75) / 2)


def test_group_penalty_hand_values():
    from misr.model.invariance import group_penalty

    pred, y = torch.tensor([1.0, 2.0, 0.0, 0.0]), torch.tensor([1.0, 1.0, 0.0, 2.0])  # L1 residuals 0, 1, 0, 2
    groups = torch.tensor([0, 0, 1, 1])  # risks 0.5 and 1.0
    assert group_penalty("vrex", pred, y, groups).item() == pytest.approx(0.0625)
    assert group_penalty("vrex", pred, y, torch.zeros(4, dtype=torch.long)).item() == 0.0  # one group: nothing to compare


def test_every_model_is_chosen_among_the_same_epochs():
    """MISR could not be chosen before its warm-up ended (epoch 10) while late fusion could (it was chosen at
    epoch 8): one rule for every contender, the end of MISR's warm-up, whatever the model."""
    from misr.training.loop import first_selectable_epoch

    assert first_selectable_epoch(tiny_params("model.invariance.warmup_epochs=4", "model.invariance.schedule=step").model) == 4
    assert first_selectable_epoch(tiny_params("model.invariance.warmup_epochs=4", "model.invariance.schedule=linear").model) == 4
    assert first_selectable_epoch(tiny_params("model.invariance.warmup_epochs=0").model) == 0
    for name in ("misr_no_inv", "late_fusion", "late_fusion_groups", "misr_no_dist", "misr_z_env"):
        assert first_selectable_epoch(tiny_params("model.invariance.warmup_epochs=4", f"model.name={name}").model) == 4, name
