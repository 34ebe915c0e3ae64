"""The robustness report's building blocks on hand-made batches: a removed modality, the conflict subset."""

import torch

from misr.evaluation.robustness import conflict_mask
from misr.store import SplitData, TextTokens
from misr.training.batches import zero_modality


def test_zero_modality_keeps_shapes_and_masks():
    batch = {
        "text_ids": torch.tensor([[1, 5, 0]]),
        "text_mask": torch.tensor([[1, 1, 0]]),
        "audio": torch.ones(1, 2, 3),
        "audio_lengths": torch.tensor([2]),
        "visual": torch.ones(1, 4, 2),
        "visual_lengths": torch.tensor([4]),
    }
    z = zero_modality(batch, "audio")
    assert torch.equal(z["audio"], torch.zeros(1, 2, 3)) and torch.equal(z["visual"], batch["visual"])
    assert torch.equal(z["audio_lengths"], batch["audio_lengths"])
    t = zero_modality(batch, "text")
    assert t["text_ids"].sum() == 0 and torch.equal(t["text_mask"], batch["text_mask"])


def test_conflict_mask_from_per_modality_labels():
    labels = torch.tensor([2.0, -1.0, 1.5, 0.0])
    uni = {
        "text": torch.tensor([2.0, -1.0, -1.0, 1.0]),
        "audio": torch.tensor([1.0, 0.5, 1.0, -1.0]),
        "visual": torch.tensor([0.2, -2.0, 2.0, 0.0]),
    }
    data = SplitData("test", ["a", "b", "c", "d"], labels, uni, TextTokens(None, None, None))
    mask, rule = conflict_mask([], data, 4)
    assert mask.tolist() == [False, True, True, False]  # a label of 0 conflicts with nothing
    assert "per-modality" in rule
