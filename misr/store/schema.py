"""What the feature store holds: table schemas, the clip key, extractor provenance, and the in-memory split.

Every modality row carries the clip's `source_sha256` and the extractor's `config_hash`, so an
extractor can skip clips it has already done, and `absent`: null, or why the clip has no such
modality (no audio track, no face in any frame, an empty transcript; format 2); such a row holds a
placeholder of one zero frame (or padding tokens), and training gives the modality weight 0. Variable-length sequences are
list<fixed_size_list<float32, D>>; each file's schema metadata names the extractor, its version, its
config (and hash) and the feature names (`encode_metadata` / `decode_metadata`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from misr.util.hashing import stable_hash

FORMAT_VERSION = "3"  # 2: the `absent` column of the modality parts; 3: visual `au_quantiles`, `face_descriptor`
READABLE_FORMATS = ("1", "2", "3")  # a format 1 part has no `absent` column: every row is present


MODALITIES = ("text", "audio", "visual")


SEQUENCE_MODALITIES = ("audio", "visual")


UNIMODAL_LABELS = {"text": "label_T", "audio": "label_A", "visual": "label_V"}


KEY_SEPARATOR = "$_$"  # MMSA's clip id format: "<video_id>$_$<clip_id>"
SPLITS = ("train", "valid", "test")
# every split a store may hold: valid_ood is an out-of-distribution validation split for choosing settings
# (drawn like test where a benchmark has one, e.g. `misr synth` with scenario shortcut); it is never reported
STORE_SPLITS = (*SPLITS, "valid_ood")
PART_RE = re.compile(r"^part-(\d{6})(?:-([A-Za-z0-9_.-]+))?\.parquet$")  # its number, and its name (a shard's hash)


CLIPS_SCHEMA = pa.schema(
    [
        ("clip_key", pa.string()),
        ("video_id", pa.string()),
        ("clip_id", pa.string()),
        ("split", pa.string()),
        ("text", pa.string()),
        ("label", pa.float32()),
        ("label_T", pa.float32()),
        ("label_A", pa.float32()),
        ("label_V", pa.float32()),
        ("annotation", pa.string()),
        ("source_sha256", pa.string()),
        ("duration", pa.float32()),  # seconds of the clip's timeline, as decoded (not the header's claim)
        ("warnings", pa.string()),  # e.g. a partial decode: the clip is usable, but not all of it was read
    ]
)


ERRORS_SCHEMA = pa.schema([("clip_key", pa.string()), ("stage", pa.string()), ("error", pa.string()), ("message", pa.string())])


def clip_key(video_id: str, clip_id: str) -> str:
    return f"{video_id}{KEY_SEPARATOR}{clip_id}"


@dataclass(frozen=True)
class ExtractorInfo:
    """What produced a modality file: recorded in its schema metadata and used as the cache key."""

    name: str
    version: str
    config: Mapping[str, Any]
    feature_names: Sequence[str]

    @property
    def config_hash(self) -> str:
        # The version is part of the hash: a new extractor version invalidates cached features.
        return stable_hash({"name": self.name, "version": self.version, "config": dict(self.config)})


@dataclass
class Sequences:
    """A padded batch of variable-length sequences: values [N, T, D] float32, lengths [N] int64."""

    values: Any
    lengths: Any
    feature_names: list[str]


@dataclass
class TextTokens:
    """Token ids and mask [N, L] int64 (0 = padding); hidden [N, L, H] float32 when stored."""

    input_ids: Any
    attention_mask: Any
    lengths: Any
    hidden: Sequences | None = None
    tokenizer: str = ""
    vocab_size: int | None = None


@dataclass
class SplitData:
    """One split of a data set, ready for training: every tensor is in the order of `clip_keys`."""

    split: str
    clip_keys: list[str]
    labels: Any  # [N] float32
    unimodal_labels: dict[str, Any]  # "text"/"audio"/"visual" -> [N] float32, NaN where unknown
    text: TextTokens | None = None
    audio: Sequences | None = None
    visual: Sequences | None = None
    quarantined: list[str] = field(default_factory=list)
    absent: dict[str, Any] = field(default_factory=dict)  # modality -> [N] bool, True where the clip lacks it

    def __len__(self) -> int:
        return len(self.clip_keys)


def encode_metadata(modality: str, info: ExtractorInfo, dim: int, extra: Mapping[str, str] | None = None) -> dict[bytes, bytes]:
    meta = {
        "format_version": FORMAT_VERSION,
        "modality": modality,
        "extractor": info.name,
        "extractor_version": info.version,
        "config_hash": info.config_hash,
        "config": json.dumps(dict(info.config), sort_keys=True, default=str),
        "feature_names": json.dumps(list(info.feature_names)),
        "dim": str(dim),
        **(extra or {}),
    }
    return {f"misr.{k}".encode(): str(v).encode() for k, v in meta.items()}


def decode_metadata(raw: Mapping[bytes, bytes] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in (raw or {}).items():
        k = key.decode()
        if not k.startswith("misr."):
            continue
        k = k[5:]
        v = value.decode()
        if k in ("feature_names", "config"):
            v = json.loads(v)
        elif k in ("dim", "vocab_size"):
            v = int(v)
        out[k] = v
    return out
