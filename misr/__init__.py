"""MISR pipeline: multimodal sentiment analysis from raw videos to a registered model."""

__version__ = "0.1.0"
