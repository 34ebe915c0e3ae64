"""Evaluation: the MSA metrics, the label convention, scoring of trained seeds, robustness, plots, the model card."""
