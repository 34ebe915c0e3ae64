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
