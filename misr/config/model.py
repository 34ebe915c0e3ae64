"""`model`: the architecture, its variants (`model.name`), and its invariance, groups and loss."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field, model_validator

from misr.config.section import Section


class TextEncoderConfig(Section):
    encoder: str = Field(
        "auto",
        description=(
            "auto: stored hidden states if present, else learned token embeddings for a small vocabulary, else minilm; "
            "tokens | hidden | minilm (the shipped MiniLM-L6) | a local BERT-family model folder"
        ),
    )
    finetune: bool = Field(False, description="fine-tune a BERT-family encoder (minilm or a folder); else it stays frozen")


class KLConfig(Section):
    prior_weight: float = Field(0.001, ge=0, description="KL of each modality Gaussian to N(0, I)")
    pairwise_weight: float = Field(0.001, ge=0, description="pairwise KL between modality Gaussians")
    logvar_min: float = Field(-8.0, ge=-30, le=0)
    logvar_max: float = Field(8.0, ge=0, le=30)


class InvarianceConfig(Section):
    kind: Literal["irm", "vrex"] = "vrex"
    weight: float = Field(1.0, ge=0, description="lambda_inv once warmed up")
    warmup_epochs: int = Field(5, ge=0, description="epochs of warm-up before the penalty has its full weight")
    schedule: Literal["linear", "step"] = Field("step", description="linear ramp from 0, or 0 then a step to `weight`")
    penalty_on: Literal["train", "held_out"] = Field(
        "train",
        description="under environments groups, the clips whose group risks make the penalty: the training batch's "
        "(the clips the risk fits) or group-balanced batches of a share of train the risk never fits (held_out_share)",
    )
    held_out_share: float = Field(0.25, gt=0, lt=1, description="penalty_on held_out: the share of train kept out of the risk")
    risk: Literal["group_mean", "pooled"] = Field(
        "group_mean",
        description="under environments groups, the risk term: the mean of the groups' risks (each group weighted alike, "
        "as V-REx and IRM sum environment risks) or the clips' pooled mean (the ablation)",
    )


class GroupsConfig(Section):
    """How model.environments groups (and the validation groups of train.select_on) are made."""

    partition: Literal["all", "auto", "text", "audio", "visual"] = Field(
        "all",
        description="all: every modality's disagreement partition at once (a penalty per partition, their mean), "
        "none hinging on one seed's choice; auto: the one partition the warmed-up predictor violates most (EIIL); or "
        "that modality's disagreement with the label, always",
    )
    source: Literal["auto", "predictions"] = Field(
        "auto",
        description="auto: label_T/A/V where the store has them for every clip, else the model's unimodal predictions; "
        "predictions: always the model's (as on MOSI or MOSEI, whose stores have no unimodal labels)",
    )


class LossConfig(Section):
    """The per-clip loss of the risk; the invariance penalty is built from the same loss."""

    kind: Literal["l1", "pseudo_huber"] = Field("l1", description="l1: |r|; pseudo_huber: delta^2 (sqrt(1 + (r/delta)^2) - 1)")
    delta: float = Field(0.5, gt=0.0, le=10.0, description="pseudo_huber: quadratic for |r| << delta, slope 1 (like L1) beyond")


@dataclass(frozen=True)
class Variant:
    """What a model variant switches on. `model.name` picks one; code asks these, never the name."""

    gaussian: bool  # Gaussian heads and their fused z (False: the pooled encoders concatenated into an MLP)
    kl: bool  # the distributional constraints: prior and pairwise KL terms
    invariance: bool  # the invariance penalty
    z_draws: bool  # the environments are draws of z, whatever model.environments says
    group_risk: bool = False  # no penalty, but the risk averaged over groups of clips (a group-balanced reference)


VARIANTS = {
    "misr": Variant(gaussian=True, kl=True, invariance=True, z_draws=False),
    "misr_no_dist": Variant(gaussian=True, kl=False, invariance=True, z_draws=False),
    "misr_no_inv": Variant(gaussian=True, kl=True, invariance=False, z_draws=False),
    "misr_z_env": Variant(gaussian=True, kl=True, invariance=True, z_draws=True),
    "late_fusion": Variant(gaussian=False, kl=False, invariance=False, z_draws=False),
    # late fusion with each group's risk weighted alike (Sagawa et al.'s group-balanced reweighting): with
    # groups that are known (model.groups.partition set, label_T/A/V in the store) it is the known-groups reference
    "late_fusion_groups": Variant(gaussian=False, kl=False, invariance=False, z_draws=False, group_risk=True),
}
ModelName = Literal[tuple(VARIANTS)]  # type: ignore[valid-type]


class ModelConfig(Section):
    name: ModelName = "misr"
    d_model: int = Field(64, ge=8, le=4096)
    n_heads: int = Field(4, ge=1, le=64)
    n_layers: int = Field(2, ge=1, le=24)
    n_summary_tokens: int = Field(2, ge=1, le=32)
    latent_dim: int = Field(32, ge=2, le=4096)
    max_frames: int = Field(
        500, ge=16, le=65536, description="a longer audio or visual sequence is uniformly subsampled to this many frames (per clip)"
    )
    dropout: float = Field(0.1, ge=0, lt=1)
    fusion: Literal["softmax", "poe"] = Field(
        "poe",
        description="softmax: z = sum_m softmax_m(1/sigma_m) z_m per dimension; poe: a product of the Gaussian experts "
        "(precision-weighted mean and variance, one draw). Either way a missing modality gets weight 0",
    )
    environments: Literal["z_plus_unimodal", "unimodal", "groups"] = Field(
        "groups",
        description="groups: training clips partitioned by cross-modal agreement, the penalty on f(z) across the groups "
        "(misr/training/groups.py); or views of the same clips: {z, z+u_t, z+u_a, z+u_v}, {z, u_t, u_a, u_v}",
    )
    z_env_samples: int = Field(4, ge=2, le=64, description="misr_z_env: environments are this many draws of z")
    text: TextEncoderConfig = Field(default_factory=TextEncoderConfig)
    kl: KLConfig = Field(default_factory=KLConfig)
    invariance: InvarianceConfig = Field(default_factory=InvarianceConfig)
    groups: GroupsConfig = Field(default_factory=GroupsConfig)
    loss: LossConfig = Field(default_factory=LossConfig)

    @property
    def variant(self) -> Variant:
        return VARIANTS[self.name]

    @property
    def environment_source(self) -> str:
        """Where the invariance penalty's environments come from: z_draws, groups, z_plus_unimodal or unimodal."""
        return "z_draws" if self.variant.z_draws else self.environments

    @property
    def infers_groups(self) -> bool:
        """Training partitions the clips into groups (once the penalty first has weight)."""
        return (self.variant.invariance and self.environment_source == "groups") or self.variant.group_risk

    @model_validator(mode="after")
    def _irm_needs_a_smooth_loss(self) -> ModelConfig:
        if self.invariance.kind == "irm" and self.loss.kind == "l1" and self.variant.invariance:
            raise ValueError(
                "invariance.kind irm differentiates the risk with respect to a scale of the predictions; with loss.kind l1 "
                "that gradient is a step function of the residuals: set loss.kind to pseudo_huber"
            )
        return self

    @model_validator(mode="after")
    def _held_out_needs_groups(self) -> ModelConfig:
        if self.invariance.penalty_on == "held_out" and self.variant.invariance and self.environment_source != "groups":
            raise ValueError(
                "invariance.penalty_on held_out measures the penalty across groups of held-out clips: it needs "
                f"environments groups (got {self.environment_source})"
            )
        return self

    @model_validator(mode="after")
    def _heads_divide(self) -> ModelConfig:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        return self
