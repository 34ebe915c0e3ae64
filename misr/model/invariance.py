"""Invariance constraints over environments, and the warm-up of their weight.

Each environment e gives predictions and a risk R_e = mean loss(y_hat_e - y), with the one per-clip
loss of `model.loss` (L1, or pseudo-Huber: smooth, and L1-like beyond delta, so both estimate the
median). The penalties are built from that same loss, so they certify the predictor the risk fits:
  IRMv1 (Arjovsky et al., 2019): sum_e (d R_e(w * y_hat_e) / dw at w = 1)^2 = sum_e mean(loss'(r) * y_hat)^2,
        the gradient of each environment's risk with respect to a dummy scale of its predictions; zero
        when a single predictor is simultaneously optimal for every environment. It needs a smooth loss
        (the config refuses irm with l1, whose derivative is a step).
  V-REx (Krueger et al., 2021): the variance of the environment risks; zero when they are equal.

Both are nonlinear in the batch, so under DDP they are built from the whole global batch: each rank's
per-environment sums and its clip count are summed over ranks (a differentiable all-reduce) before the
risks, their variance or the squared gradients are formed. Every rank then holds the penalty of the
global batch, as one process would.
"""

from __future__ import annotations

from typing import Any

import torch


def clip_loss(residual: torch.Tensor, loss: Any = None) -> torch.Tensor:
    """The per-clip loss of `model.loss` (L1 when None)."""
    if loss is None or loss.kind == "l1":
        return residual.abs()
    d = loss.delta
    return d * d * (torch.sqrt(1.0 + (residual / d) ** 2) - 1.0)


def clip_loss_slope(residual: torch.Tensor, loss: Any = None) -> torch.Tensor:
    """d loss / d residual."""
    if loss is None or loss.kind == "l1":
        return torch.sign(residual)
    return residual / torch.sqrt(1.0 + (residual / loss.delta) ** 2)


def global_sum(t: torch.Tensor) -> torch.Tensor:
    """`t` summed over the ranks of a DDP job, with gradients flowing back to every rank; `t` when alone."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        from torch.distributed.nn.functional import all_reduce

        return all_reduce(t)
    return t


def environment_risks(preds: torch.Tensor, y: torch.Tensor, loss: Any = None) -> torch.Tensor:
    """preds [E, B], y [B] -> risk per environment [E] over this process's clips."""
    return clip_loss(preds - y[None, :], loss).mean(dim=1)


def global_environment_risks(preds: torch.Tensor, y: torch.Tensor, loss: Any = None) -> torch.Tensor:
    """Risk per environment [E] over the global batch (every rank's clips)."""
    sums = global_sum(clip_loss(preds - y[None, :], loss).sum(dim=1))
    count = global_sum(preds.new_tensor(float(y.shape[0])))
    return sums / count


def vrex_penalty(risks: torch.Tensor) -> torch.Tensor:
    """Variance (population, over environments) of the risks."""
    return risks.var(unbiased=False) if risks.numel() > 1 else risks.sum() * 0.0


def irmv1_penalty(preds: torch.Tensor, y: torch.Tensor, loss: Any) -> torch.Tensor:
    """Sum over environments of the squared gradient of the risk w.r.t. a dummy scale of the predictions at 1.

    At w = 1 the gradient is mean(loss'(y_hat - y) * y_hat), over the global batch: zero when no
    rescaling of this environment's predictions would lower its risk.
    """
    sums = global_sum((clip_loss_slope(preds - y[None, :], loss) * preds).sum(dim=1))
    count = global_sum(preds.new_tensor(float(y.shape[0])))
    return ((sums / count) ** 2).sum()


def penalty(kind: str, preds: torch.Tensor, y: torch.Tensor, loss: Any = None) -> torch.Tensor:
    if kind == "vrex":
        return vrex_penalty(global_environment_risks(preds, y, loss))
    if kind == "irm":
        return irmv1_penalty(preds, y, loss)
    raise ValueError(f"unknown invariance penalty {kind!r}")


def group_risks(pred: torch.Tensor, y: torch.Tensor, groups: torch.Tensor, loss: Any = None, n_groups: int = 2) -> torch.Tensor:
    """The risk of one predictor in each group of clips present in the global batch [G present] (ids 0..n_groups-1)."""
    member = torch.nn.functional.one_hot(groups.long(), n_groups).T.to(pred.dtype)  # [G, B]
    counts = global_sum(member.sum(dim=1))
    present = counts > 0
    return global_sum((member * clip_loss(pred - y, loss)).sum(dim=1))[present] / counts[present]


def group_penalty(
    kind: str, pred: torch.Tensor, y: torch.Tensor, groups: torch.Tensor, loss: Any = None, n_groups: int = 2
) -> torch.Tensor:
    """The penalty of one predictor across groups of clips [B] (ids 0..n_groups-1), over the global batch.

    V-REx: the variance of the group risks; IRMv1: the sum over groups of the squared gradient of the
    group's risk with respect to a dummy scale of the predictions. A group with no clip in the global
    batch is left out; with fewer than two groups present the penalty is 0.
    """
    member = torch.nn.functional.one_hot(groups.long(), n_groups).T.to(pred.dtype)  # [G, B]
    counts = global_sum(member.sum(dim=1))
    present = counts > 0
    if int(present.sum()) < 2:
        return pred.sum() * 0.0
    if kind == "vrex":
        return vrex_penalty(group_risks(pred, y, groups, loss, n_groups))
    if kind == "irm":
        grads = global_sum((member * clip_loss_slope(pred - y, loss) * pred).sum(dim=1))[present] / counts[present]
        return (grads**2).sum()
    raise ValueError(f"unknown invariance penalty {kind!r}")


def by_partition(groups: torch.Tensor) -> list[torch.Tensor]:
    """A batch's groups as one column per partition: [B] (one partition) or [B, P] (one 0/1 column per partition)."""
    return [groups] if groups.dim() == 1 else list(groups.unbind(dim=1))


def partitions_risk(pred: torch.Tensor, y: torch.Tensor, groups: torch.Tensor, loss: Any = None) -> torch.Tensor:
    """The risk with every group of every partition weighted alike: per partition the mean of its groups' risks,
    then the mean over partitions (one partition: the mean of its groups' risks)."""
    return torch.stack([group_risks(pred, y, g, loss).mean() for g in by_partition(groups)]).mean()


def partitions_penalty(kind: str, pred: torch.Tensor, y: torch.Tensor, groups: torch.Tensor, loss: Any = None) -> torch.Tensor:
    """The mean over partitions of each partition's penalty across its groups: the predictor is asked to be
    invariant across every partition at once, none of them chosen by one seed's state at one epoch."""
    return torch.stack([group_penalty(kind, pred, y, g, loss) for g in by_partition(groups)]).mean()


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
