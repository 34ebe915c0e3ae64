"""The field's vocabulary, used by data, training and evaluation alike: label conventions and the MSA metrics."""
