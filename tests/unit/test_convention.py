"""The label convention: classes, names and metric sets of MOSI/MOSEI and SIMS."""

import numpy as np
import pytest

from misr.msa.convention import MOSI, SIMS, convention


def test_mosi_classes_round_after_clipping():
    assert MOSI.classes == [-3, -2, -1, 0, 1, 2, 3]
    assert MOSI.class_of([-3.4, -2.5, -0.49, 0.5, 1.5, 2.6, 9.0]).tolist() == [-3, -2, 0, 0, 2, 3, 3]  # half to even


def test_sims_classes_are_the_five_bins_of_mult_acc_5():
    assert SIMS.classes == [-2, -1, 0, 1, 2]
    # bins [-1, -0.7], (-0.7, -0.1], (-0.1, 0.1], (0.1, 0.7], (0.7, 1]; values outside [-1, 1] are clipped first
    values = [-1.5, -0.7, -0.69, -0.1, 0.0, 0.1, 0.11, 0.7, 0.71, 3.0]
    assert SIMS.class_of(values).tolist() == [-2, -2, -1, -1, 0, 0, 1, 1, 2, 2]
    assert SIMS.class_names[2] == "positive" and SIMS.class_names[-1] == "weakly negative"


def test_every_class_has_a_name_and_the_metric_sets_differ():
    for conv in (MOSI, SIMS):
        assert set(conv.class_names) == set(conv.classes)
        preds = np.array([0.3, -0.2, 0.05, 0.9])
        assert set(conv.headline) <= set(conv.metrics(preds, preds[::-1]))
    assert "Mult_acc_7" in MOSI.metrics([0.1, 0.2], [0.2, 0.1]) and "Mult_acc_3" in SIMS.metrics([0.1, 0.2], [0.2, 0.1])


def test_unknown_convention_is_named():
    assert convention("sims") is SIMS
    with pytest.raises(ValueError, match="unknown label convention 'iemocap'"):
        convention("iemocap")
