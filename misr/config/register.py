"""`register`: the promotion gate."""

from __future__ import annotations

from pydantic import Field

from misr.config.section import Section


class RegisterConfig(Section):
    artifact: str = Field("misr-sentiment", pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
    stage: str = Field("prod", pattern=r"^[a-z0-9-]+$")
    metric: str = Field("MAE", description="the metric the candidate must beat prod on: one of the data set's convention's metrics")
    min_margin: float = Field(0.005, ge=0, description="the candidate must beat prod by at least this")
    tolerance: float = Field(0.01, ge=0, description="how much worse the other guard metrics may be")
    guard_metrics: list[str] | None = Field(
        None,
        description="metrics that may not get worse beyond the tolerance; null: the convention's guards",
    )
