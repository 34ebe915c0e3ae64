"""Feature extractors, by name: a new backend is one module with one `Extractor` subclass, listed here."""

from __future__ import annotations

from misr.config.features import FeaturesConfig
from misr.errors import MisrError
from misr.features.base import Extractor

# name -> "module:class"; modules are imported only when used (dlib, librosa, transformers are heavy)
REGISTRY: dict[str, str] = {
    "bert_tokenizer": "misr.features.text:BertTokenizerExtractor",
    "librosa": "misr.features.audio:LibrosaExtractor",
    "landmarks": "misr.features.visual:LandmarkExtractor",
    "pyfeat": "misr.features.pyfeat:PyFeatExtractor",
}


def extractor_class(name: str) -> type[Extractor]:
    import importlib

    if name not in REGISTRY:
        raise MisrError(f"unknown feature extractor {name!r}; known: {', '.join(REGISTRY)}")
    module, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)


def extractors_for(features: FeaturesConfig) -> dict[str, Extractor]:
    """The extractor of each modality that the `features` section selects."""
    chosen = {"text": "bert_tokenizer", "audio": "librosa", "visual": features.visual.backend}
    return {modality: extractor_class(name)(features) for modality, name in chosen.items()}
