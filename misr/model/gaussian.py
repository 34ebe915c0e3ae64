"""The Gaussian joint representation: one diagonal Gaussian per modality, constrained and fused.

"Stable": each modality Gaussian is pulled towards N(0, I) (KL to the prior).
"Consistent": the modality Gaussians are pulled towards each other (pairwise KL).
Fusion (model.fusion): softmax: z = sum_m w_m * z_m with w_m = softmax over modalities of 1/sigma_m
(per latent dimension); poe: the product of the Gaussians, whose mean weighs each modality by its
precision 1/sigma_m^2, so a confident modality can take a dimension over entirely and a missing one
has weight 0.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn


class GaussianHead(nn.Module):
    def __init__(self, d_in: int, latent_dim: int, logvar_min: float, logvar_max: float):
        super().__init__()
        self.mu = nn.Linear(d_in, latent_dim)
        self.logvar = nn.Linear(d_in, latent_dim)
        self.logvar_min, self.logvar_max = logvar_min, logvar_max

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mu(h), self.logvar(h).clamp(self.logvar_min, self.logvar_max)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, sample: bool) -> torch.Tensor:
    """A draw mu + sigma * eps while training; the mean at evaluation (deterministic predictions)."""
    if not sample:
        return mu
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) summed over dimensions, averaged over the batch."""
    return (0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)).sum(-1).mean()


def kl_between(mu_p: torch.Tensor, logvar_p: torch.Tensor, mu_q: torch.Tensor, logvar_q: torch.Tensor) -> torch.Tensor:
    """KL(P || Q) of diagonal Gaussians, summed over dimensions, averaged over the batch."""
    term = logvar_q - logvar_p + (logvar_p.exp() + (mu_p - mu_q).pow(2)) / logvar_q.exp() - 1.0
    return (0.5 * term).sum(-1).mean()


def prior_kl(gaussians: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Mean over modalities of each modality's KL to N(0, I)."""
    return torch.stack([kl_to_standard_normal(mu, lv) for mu, lv in gaussians.values()]).mean()


def pairwise_kl(gaussians: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Mean over ordered pairs of modalities (m, n), m != n, of KL(N_m || N_n): symmetric by construction."""
    terms = [kl_between(*gaussians[m], *gaussians[n]) for m, n in itertools.permutations(gaussians, 2)]
    return torch.stack(terms).mean()


def precision_fusion(
    samples: dict[str, torch.Tensor], logvars: dict[str, torch.Tensor], present: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """z = sum_m softmax_m(1/sigma_m) * z_m per dimension; returns z [B, k] and the weights [M, B, k].

    `present` [M, B] (bool) marks the modalities each clip has; an absent one gets weight exactly 0.
    """
    inv_sigma = torch.stack([torch.exp(-0.5 * logvars[m]) for m in samples])
    if present is not None:
        inv_sigma = inv_sigma.masked_fill(~present[:, :, None], float("-inf"))
    weights = torch.softmax(inv_sigma, dim=0)
    z = (weights * torch.stack([samples[m] for m in samples])).sum(0)
    return z, weights


def product_of_experts(
    gaussians: dict[str, tuple[torch.Tensor, torch.Tensor]], present: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The product of the modalities' Gaussians: precision = sum of precisions, mean = precision-weighted mean.

    The product-of-experts posterior of Wu & Goodman (MVAE, NeurIPS 2018), without their prior expert
    (a clip always keeps one modality). Returns mu [B, k], logvar [B, k] and the weights [M, B, k]
    (each expert's share of the precision per dimension; exactly 0 for an absent modality).
    """
    mus = torch.stack([mu for mu, _ in gaussians.values()])
    precision = torch.stack([torch.exp(-lv) for _, lv in gaussians.values()])
    if present is not None:
        precision = precision * present[:, :, None].to(precision.dtype)
    total = precision.sum(0)
    weights = precision / total
    return (weights * mus).sum(0), -torch.log(total), weights
