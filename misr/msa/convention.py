"""A data set's label convention: the label range, the metric set, and how scores become classes.

MOSI and MOSEI label sentiment in [-3, 3] and are scored with MMSA's MOSI metric set; their classes
are the 7 integers -3..3 (round after clipping, as Mult_acc_7 does). CH-SIMS labels it in [-1, 1],
is scored with the SIMS metric set, and its finest classes are the 5 bins of Mult_acc_5 (MMSA's
`metricsTop`). Everything that depends on the convention asks this object, never the name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from misr.msa.metrics import MOSI_KEYS, SIMS_KEYS, clip_absolute_errors, msa_metrics, sims_bin, two_class_hits


@dataclass(frozen=True)
class Convention:
    name: str  # mosi | sims: the value of data.datasets.<name>.convention
    label_limit: float  # labels lie in [-label_limit, label_limit]
    metric_set: str  # the `dataset` argument of msa_metrics
    headline: tuple[str, ...]  # the metrics a summary table shows
    guards: tuple[str, ...]  # what the promotion gate keeps from getting worse, by default (register.guard_metrics)
    class_names: dict[int, str]  # class -> name, from the most negative class to the most positive

    @property
    def metric_keys(self) -> tuple[str, ...]:
        """Every metric of this convention, in MMSA's order (msa_metrics' keys)."""
        return SIMS_KEYS if self.metric_set == "sims" else MOSI_KEYS

    @property
    def classes(self) -> list[int]:
        return sorted(self.class_names)

    def class_of(self, values: Any) -> np.ndarray:
        """The class of each score or label (an integer of `classes`)."""
        values = np.asarray(values)
        if not np.issubdtype(values.dtype, np.floating):
            values = values.astype(np.float64)
        if self.metric_set == "sims":
            return sims_bin(np.clip(values, -1, 1), 5) - 2
        return np.round(np.clip(values, -self.label_limit, self.label_limit)).astype(int)

    def metrics(self, preds: Any, labels: Any) -> dict[str, float]:
        return msa_metrics(preds, labels, self.metric_set)

    def clip_errors(self, preds: Any, labels: Any) -> np.ndarray:
        """Each clip's absolute error as this convention's MAE counts it."""
        return clip_absolute_errors(preds, labels, self.metric_set)

    def two_class(self, preds: Any, labels: Any) -> tuple[str, np.ndarray, np.ndarray]:
        """This convention's 2-class accuracy per clip: its name, the hits, the clips it counts."""
        return two_class_hits(preds, labels, self.metric_set)


MOSI = Convention(
    name="mosi",
    label_limit=3.0,
    metric_set="mosi",
    headline=("Non0_acc_2", "Mult_acc_7", "MAE", "Corr"),
    guards=("Non0_acc_2", "Corr"),
    class_names={
        -3: "highly negative",
        -2: "negative",
        -1: "weakly negative",
        0: "neutral",
        1: "weakly positive",
        2: "positive",
        3: "highly positive",
    },
)
SIMS = Convention(
    name="sims",
    label_limit=1.0,
    metric_set="sims",
    headline=("Mult_acc_2", "Mult_acc_5", "MAE", "Corr"),
    guards=("Mult_acc_2", "Corr"),
    class_names={-2: "negative", -1: "weakly negative", 0: "neutral", 1: "weakly positive", 2: "positive"},
)
CONVENTIONS = {c.name: c for c in (MOSI, SIMS)}


def convention(name: str) -> Convention:
    try:
        return CONVENTIONS[name]
    except KeyError:
        raise ValueError(f"unknown label convention {name!r}; known: {', '.join(CONVENTIONS)}") from None
