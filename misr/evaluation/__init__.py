"""Evaluation: scoring of trained seeds, robustness, plots, the model card (the metrics themselves are `misr.msa`)."""
