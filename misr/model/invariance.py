"""Invariance constraints over environments, and the warm-up of their weight.

Each environment e gives predictions and a risk R_e = mean |y_hat_e - y|.
  IRMv1 (Arjovsky et al., 2019): sum_e || d R_e(w * y_hat_e) / dw at w = 1 ||^2, the gradient of each
        environment's risk with respect to a dummy scalar scale of its predictions; zero when a single
        predictor is simultaneously optimal for every environment. Computed on the squared-error risk:
        with the L1 risk the gradient is mean(sign(residual) * y_hat), non-smooth, and its square
        drove the model towards constant predictions in our runs (benchmarks/quality.py).
  V-REx (Krueger et al., 2021): the variance of the environment risks; zero when they are equal.
"""

from __future__ import annotations

import torch


def environment_risks(preds: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """preds [E, B], y [B] -> L1 risk per environment [E]."""
    return (preds - y[None, :]).abs().mean(dim=1)


def vrex_penalty(risks: torch.Tensor) -> torch.Tensor:
    """Variance (population, over environments) of the risks."""
    return risks.var(unbiased=False) if risks.numel() > 1 else risks.sum() * 0.0


def irmv1_penalty(preds: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Sum over environments of the squared gradient of the squared-error risk w.r.t. a dummy scale at 1.

    At w = 1 the gradient is mean(2 * (y_hat - y) * y_hat): zero when the residuals are orthogonal to the
    predictions, i.e. when no rescaling of this environment's predictions would lower its risk.
    """
    scale = torch.ones((), device=preds.device, dtype=preds.dtype, requires_grad=True)
    risks = ((preds * scale - y[None, :]) ** 2).mean(dim=1)
    total = preds.new_zeros(())
    for r in risks:
        (grad,) = torch.autograd.grad(r, scale, create_graph=True)
        total = total + grad.pow(2)
    return total


def penalty(kind: str, preds: torch.Tensor, y: torch.Tensor, risks: torch.Tensor) -> torch.Tensor:
    if kind == "vrex":
        return vrex_penalty(risks)
    if kind == "irm":
        return irmv1_penalty(preds, y)
    raise ValueError(f"unknown invariance penalty {kind!r}")


def penalty_weight(weight: float, epoch: int, warmup_epochs: int, schedule: str = "linear") -> float:
    """The penalty's weight at `epoch` (from 0): plain ERM first, so a good predictor exists to constrain.

    step:   0 for the first `warmup_epochs` epochs, then `weight` (the IRM/V-REx reference schedule);
    linear: weight * epoch / warmup_epochs until it reaches `weight`.
    """
    if warmup_epochs <= 0:
        return weight
    if schedule == "step":
        return 0.0 if epoch < warmup_epochs else weight
    if schedule == "linear":
        return weight * min(1.0, epoch / warmup_epochs)
    raise ValueError(f"unknown warm-up schedule {schedule!r}")
