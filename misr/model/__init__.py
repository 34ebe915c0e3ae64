"""MISR and its baselines: encoders, the Gaussian joint representation, environments, invariance."""

from misr.model.misr import MISR, InputSpec, LateFusion, build_model, loss_terms, loss_weights, total_loss

__all__ = ["InputSpec", "LateFusion", "MISR", "build_model", "loss_terms", "loss_weights", "total_loss"]
