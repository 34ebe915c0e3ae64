"""MISR and the baselines it is compared with, readable top to bottom.

    x_t, x_a, x_v --encoders--> h_t, h_a, h_v                           (d_model each)
    h_m --Gaussian head--> N(mu_m, sigma_m^2) --reparameterise--> z_m   (latent_dim)
    z = precision-weighted fusion of z_t, z_a, z_v (model.fusion: softmax of 1/sigma, or product of experts)
    u_m = W_m h_m                                                        (unimodal, latent_dim)
    environments: {z, z+u_t, z+u_a, z+u_v}  or  {z, u_t, u_a, u_v}  or  K draws of z (ablation)
    each environment --shared invariant encoder--> --shared regressor--> y_hat_e
    prediction: y_hat of the z environment
    loss: mean_e loss(y_hat_e - y) + w_prior * KL(N_m || N(0,I)) + w_pair * KL(N_m || N_n) + w_inv(epoch) * penalty,
          divided by w_inv once w_inv > 1; loss is model.loss (L1 or pseudo-Huber), the penalty uses the same

`model.name` picks the variant: misr; misr_no_dist (no distributional constraints); misr_no_inv (no
invariance constraint); misr_z_env (environments from z alone); late_fusion (pooled encoders
concatenated, an MLP, plain L1).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

import misr.model.gaussian as gaussian
import misr.model.invariance as invariance
from misr.config.model import ModelConfig
from misr.model.encoders import BertTextEncoder, HiddenStateEncoder, SequenceEncoder, TokenEncoder

MODALITIES = ("text", "audio", "visual")


@dataclass(frozen=True)
class InputSpec:
    """What the data looks like, read from the store: the model is built to fit it."""

    audio_dim: int
    visual_dim: int
    text_kind: str  # tokens | hidden | bert
    vocab_size: int | None = None
    text_hidden_dim: int | None = None
    bert_dir: str | None = None
    action_units: str = "raw"  # how the visual action units are seen (misr.features.person); raw before there was a choice


def build_encoders(cfg: ModelConfig, spec: InputSpec) -> nn.ModuleDict:
    kw = dict(n_heads=cfg.n_heads, n_layers=cfg.n_layers, n_summary=cfg.n_summary_tokens, dropout=cfg.dropout, max_len=cfg.max_frames)
    if spec.text_kind == "tokens":
        text: nn.Module = TokenEncoder(int(spec.vocab_size), cfg.d_model, **kw)
    elif spec.text_kind == "hidden":
        text = HiddenStateEncoder(int(spec.text_hidden_dim), cfg.d_model, **kw)
    else:
        text = BertTextEncoder(Path(str(spec.bert_dir)), cfg.text.finetune, cfg.d_model, **kw)
    return nn.ModuleDict(
        {
            "text": text,
            "audio": SequenceEncoder(spec.audio_dim, cfg.d_model, **kw),
            "visual": SequenceEncoder(spec.visual_dim, cfg.d_model, **kw),
        }
    )


def encode(encoders: nn.ModuleDict, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each modality's clip representation h_m [B, d_model]."""
    text_input = batch["text_hidden"] if "text_hidden" in batch else batch["text_ids"]
    return {
        "text": encoders["text"](text_input, batch["text_mask"]),
        "audio": encoders["audio"](batch["audio"], batch["audio_lengths"]),
        "visual": encoders["visual"](batch["visual"], batch["visual_lengths"]),
    }


def full_precision(like: torch.Tensor):
    """Autocast off on the tensor's device: what follows runs in fp32. bf16 has 8 bits of mantissa: log-variances,
    KL terms and predictions in bf16 moved checkpoint selection by up to 1/64 of a label unit."""
    return torch.autocast(device_type=like.device.type, enabled=False)


def presence(batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """[M, B] bool: which modalities each clip has (`zero_modality` marks the removed ones); None when all."""
    marks = [batch.get(f"{m}_present") for m in MODALITIES]
    if all(mark is None for mark in marks):
        return None
    n = batch["y"].shape[0] if "y" in batch else next(mark for mark in marks if mark is not None).shape[0]
    device = next(mark for mark in marks if mark is not None).device
    return torch.stack([torch.ones(n, dtype=torch.bool, device=device) if mark is None else mark for mark in marks])


class MISR(nn.Module):
    def __init__(self, cfg: ModelConfig, spec: InputSpec):
        super().__init__()
        self.cfg = cfg
        d, k = cfg.d_model, cfg.latent_dim
        self.encoders = build_encoders(cfg, spec)
        self.heads = nn.ModuleDict({m: gaussian.GaussianHead(d, k, cfg.kl.logvar_min, cfg.kl.logvar_max) for m in MODALITIES})
        # the z-only ablation never uses unimodal projections (and DDP refuses unused parameters)
        views = cfg.environment_source in ("z_plus_unimodal", "unimodal")
        self.unimodal = nn.ModuleDict({m: nn.Linear(d, k) for m in MODALITIES} if views else {})
        self.invariant = nn.Sequential(nn.Linear(k, d), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(d, d), nn.GELU())
        self.regressor = nn.Linear(d, 1)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        h = encode(self.encoders, batch)  # under CUDA autocast the encoders run in bf16
        sample = self.training
        with full_precision(h["text"]):  # Gaussian parameters, fusion, KL inputs and heads in fp32
            h = {m: v.float() for m, v in h.items()}
            gauss = {m: self.heads[m](h[m]) for m in MODALITIES}
            present = presence(batch)
            z, weights = self.fuse(gauss, present, sample)
            envs = self.environments(z, h, gauss, present, sample)
            preds = self.regressor(self.invariant(envs)).squeeze(-1)  # [E, B]
        return {"pred": preds[0], "env_preds": preds, "gaussians": gauss, "fusion_weights": weights}

    def fuse(self, gauss, present: torch.Tensor | None, sample: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """The joint representation z [B, latent_dim] (a draw while training) and the fusion weights [M, B, latent_dim]."""
        if self.cfg.fusion == "poe":
            mu, logvar, weights = gaussian.product_of_experts(gauss, present)
            return gaussian.reparameterize(mu, logvar, sample), weights
        z_m = {m: gaussian.reparameterize(mu, lv, sample) for m, (mu, lv) in gauss.items()}
        return gaussian.precision_fusion(z_m, {m: lv for m, (_, lv) in gauss.items()}, present)

    def environments(self, z, h, gauss, present, sample: bool) -> torch.Tensor:
        """[E, B, latent_dim]; environment 0 is always the joint representation z."""
        if self.cfg.environment_source == "z_draws":
            if not sample:
                return z[None]
            return torch.stack([z] + [self.fuse(gauss, present, True)[0] for _ in range(self.cfg.z_env_samples - 1)])
        if self.cfg.environment_source == "groups":
            return z[None]  # the environments are groups of clips, given with the batch
        u = [self.unimodal[m](h[m]) for m in MODALITIES]
        if self.cfg.environments == "z_plus_unimodal":
            return torch.stack([z] + [z + u_m for u_m in u])
        return torch.stack([z] + u)


class LateFusion(nn.Module):
    """The plain baseline: the same encoders, pooled representations concatenated, an MLP, L1 (ERM)."""

    def __init__(self, cfg: ModelConfig, spec: InputSpec):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.encoders = build_encoders(cfg, spec)
        self.mlp = nn.Sequential(nn.Linear(3 * d, d), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(d, 1))

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        h = encode(self.encoders, batch)
        with full_precision(h["text"]):
            pred = self.mlp(torch.cat([h[m].float() for m in MODALITIES], dim=-1)).squeeze(-1)
        return {"pred": pred, "env_preds": pred[None]}


def build_model(cfg: ModelConfig, spec: InputSpec) -> nn.Module:
    return MISR(cfg, spec) if cfg.variant.gaussian else LateFusion(cfg, spec)


def loss_weights(cfg: ModelConfig, epoch: int) -> dict[str, float]:
    """The weight of each loss term at `epoch`, after the ablation switches of `model.name`."""
    inv = cfg.invariance
    w = {
        "risk": 1.0,
        "kl_prior": cfg.kl.prior_weight,
        "kl_pair": cfg.kl.pairwise_weight,
        "invariance": invariance.penalty_weight(inv.weight, epoch, inv.warmup_epochs, inv.schedule),
    }
    if not cfg.variant.kl:
        w["kl_prior"] = w["kl_pair"] = 0.0
    if not cfg.variant.invariance:
        w["invariance"] = 0.0
    return w


def loss_terms(
    cfg: ModelConfig, out: dict[str, torch.Tensor], y: torch.Tensor, groups: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Each loss term, unweighted (every one is logged); `total_loss` weighs them. `groups`: each clip's group
    under model.environments groups, [B] or [B, P] (a 0/1 column per partition); None before the groups are
    inferred (no penalty yet)."""
    preds = out["env_preds"].float()
    risks = invariance.environment_risks(preds, y, cfg.loss)
    terms = {"risk": risks.mean(), "l1_z": (preds[0] - y).abs().mean().detach()}
    if cfg.variant.group_risk and groups is not None and cfg.invariance.risk == "group_mean":
        terms["risk"] = invariance.partitions_risk(preds[0], y, groups, cfg.loss)  # each group weighted alike
    if "gaussians" in out:
        terms["kl_prior"] = gaussian.prior_kl(out["gaussians"])
        terms["kl_pair"] = gaussian.pairwise_kl(out["gaussians"])
        if cfg.environment_source == "groups" and groups is None:  # the warm-up: plain ERM, no groups yet
            terms["invariance"] = preds.sum() * 0.0
        elif cfg.environment_source == "groups":
            if cfg.invariance.risk == "group_mean":
                # V-REx (Krueger et al., 2021, eq. 8) and IRM (Arjovsky et al., 2019, eq. IRMv1) sum the
                # environments' risks, each environment weighted alike: here their mean over the groups present
                # (per partition, then over the partitions)
                terms["risk"] = invariance.partitions_risk(preds[0], y, groups, cfg.loss)
            terms["invariance"] = invariance.partitions_penalty(cfg.invariance.kind, preds[0], y, groups, cfg.loss)
        else:
            terms["invariance"] = invariance.penalty(cfg.invariance.kind, preds, y, cfg.loss)  # over the global batch under DDP
    return terms


def total_loss(terms: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    total = terms["risk"] * weights["risk"]
    for name in ("kl_prior", "kl_pair", "invariance"):
        if name in terms and weights[name] != 0.0:
            total = total + weights[name] * terms[name]
    if "invariance" in terms and weights["invariance"] > 1.0:
        # IRM practice (Arjovsky et al.'s reference code): a large penalty weight would scale every gradient by it
        total = total / weights["invariance"]
    return total
