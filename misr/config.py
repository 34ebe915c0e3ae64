"""The pipeline's parameters: `params.yaml`, validated on load.

One pydantic model per section of params.yaml. Every model forbids unknown keys, so a typo is an
error that names the key and lists the keys allowed there, instead of a silently ignored setting.
`load_params()` is the only way the rest of the code reads parameters.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from misr.errors import ConfigError

# numpy's generators take seeds below 2**32; a larger one would pass here and overflow in training
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]

DEFAULT_PARAMS = Path("params.yaml")
SPLITS = ("train", "valid", "test")
DATASET_FOLDERS = {"features_dir": "features", "models_dir": "models", "eval_dir": "eval"}


class Section(BaseModel):
    # Non-finite numbers (.inf, .nan) are refused everywhere: no setting means "infinitely".
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic reads true as 1 for a number; in a params file that is always a mistake
        field = cls.model_fields.get(info.field_name or "")
        if field is not None and _wants_number(field.annotation) and _holds_bool(value):
            raise ValueError("must be a number, not true or false")
        return value


SectionT = TypeVar("SectionT", bound=BaseModel)


def _wants_number(annotation: Any) -> bool:
    """Whether a field's type holds numbers (int or float, also inside lists, tuples and dicts)."""
    if annotation in (int, float):
        return True
    return any(_wants_number(arg) for arg in typing.get_args(annotation))


def _holds_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, (list, tuple)):
        return any(_holds_bool(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_bool(v) for v in value.values())
    return False


# ----------------------------------------------------------------------------------------- data


class DatasetConfig(Section):
    """One corpus the pipeline can run on. A user's own corpus is one more entry of this kind."""

    source: Literal["raw", "synth", "mmsa"] = Field(
        "raw", description="raw: MMSA-FET layout of videos; synth: `misr synth`; mmsa: imported MMSA feature file"
    )
    raw_dir: Path | None = Field(None, description="folder holding Raw/<video_id>/<clip_id>.* and label.csv")
    # The one place paths live: the CLI, dvc.yaml (checked by a test), retraining and the registry read
    # them here. Left out, each defaults to data/<features|models|eval>/<name of the data set>.
    features_dir: Path = Field(description="the feature store of this data set")
    models_dir: Path = Field(description="where `misr train` writes its checkpoints")
    eval_dir: Path = Field(description="where `misr evaluate` writes metrics, plots and the model card")
    convention: Literal["mosi", "sims"] = Field(
        "mosi", description="label range and metric set: mosi/mosei labels in [-3, 3], sims in [-1, 1]"
    )
    chose_settings: bool = Field(
        False,
        description="settings were chosen on this data set: its test split is no test any more, and routine "
        "evaluation (the evaluate stage, `misr evaluate`) scores valid only",
    )

    @model_validator(mode="after")
    def _raw_needs_dir(self) -> DatasetConfig:
        if self.source == "raw" and self.raw_dir is None:
            raise ValueError("raw_dir is required when source is 'raw'")
        return self


class SplitShape(Section):
    """How one split's labels are distributed and how often the modalities disagree."""

    positive_ratio: float = Field(0.5, ge=0.0, le=1.0, description="share of non-neutral clips that are positive")
    magnitude_skew: float = Field(1.0, ge=0.1, le=10.0, description="1 = |label| uniform on (0, 3]; >1 concentrates labels near 0")
    conflict_rate: float = Field(0.0, ge=0.0, le=1.0, description="share of clips where one modality expresses the opposite sentiment")


class ShortcutConfig(Section):
    """`data.synth.scenario: shortcut`: one modality carries the label's sign, except in a latent subgroup."""

    modality: Literal["text", "audio", "visual"] = "visual"
    strength: float = Field(1.5, gt=0.0, le=3.0, description="the modality expresses strength x sign(label) (0 for neutral clips)")
    noise: float = Field(0.4, ge=0.0, le=10.0, description="std around that: below the other modalities' noise, so it tempts ERM")
    flipped: dict[Literal["train", "valid", "valid_ood", "test"], float] = Field(
        default_factory=lambda: {"train": 0.1, "valid": 0.1, "valid_ood": 0.6, "test": 0.6},
        description="per split, the share of clips (the latent subgroup) where the modality expresses the opposite sign",
    )

    @model_validator(mode="after")
    def _check(self) -> ShortcutConfig:
        for split in ("train", "valid", "valid_ood", "test"):
            if not 0.0 <= self.flipped.get(split, -1.0) <= 1.0:
                raise ValueError(f"flipped.{split} must be given and in [0, 1]")
        return self


class SynthConfig(Section):
    """`misr synth`: a feature-level synthetic MSA data set."""

    seed: Seed = 1111
    n_clips: dict[Literal["train", "valid", "valid_ood", "test"], int] = Field(
        default_factory=lambda: {"train": 600, "valid": 150, "valid_ood": 300, "test": 1000},
        description="clips per split; valid_ood (optional) is drawn like test and is meant for choosing settings",
    )
    scenario: Literal["shift", "shortcut"] = Field(
        "shortcut",
        description="shift: the splits differ in label prior and conflict rate (`splits`); "
        "shortcut: one modality's sign cue flips in a subgroup that grows from train to test (`shortcut`)",
    )
    shortcut: ShortcutConfig = Field(default_factory=ShortcutConfig)
    audio_dim: int = Field(5, ge=1, le=4096, description="MOSI-like 5, MOSEI-like 74")
    visual_dim: int = Field(20, ge=1, le=4096, description="MOSI-like 20, MOSEI-like 35")
    audio_frames: tuple[int, int] = Field((20, 60), description="min and max frames per clip")
    visual_frames: tuple[int, int] = Field((20, 60), description="min and max frames per clip")
    text_words: tuple[int, int] = Field((6, 20), description="min and max words per transcript")
    modality_noise: dict[Literal["text", "audio", "visual"], float] = Field(
        default_factory=lambda: {"text": 0.6, "audio": 0.9, "visual": 0.75},
        description="std of each modality's expressed sentiment around the clip's sentiment",
    )
    feature_noise: float = Field(0.3, ge=0.0, le=10.0, description="std of the noise added to every feature value")
    neutral_ratio: float = Field(0.05, ge=0.0, le=1.0, description="share of clips labelled exactly 0")
    label_step: float = Field(0.2, ge=0.0, le=1.0, description="labels rounded to this step (0: continuous)")
    splits: dict[Literal["train", "valid", "test"], SplitShape] = Field(default_factory=lambda: {s: SplitShape() for s in SPLITS})

    @model_validator(mode="after")
    def _check(self) -> SynthConfig:
        for name in ("audio_frames", "visual_frames", "text_words"):
            lo, hi = getattr(self, name)
            if not 1 <= lo <= hi:
                raise ValueError(f"{name} must be [min, max] with 1 <= min <= max (got [{lo}, {hi}])")
        for split in SPLITS:
            if self.n_clips.get(split, 0) < 1:
                raise ValueError(f"n_clips.{split} must be given and >= 1")
        if self.scenario == "shortcut" and self.n_clips.get("valid_ood", 0) < 1:
            raise ValueError("n_clips.valid_ood must be given and >= 1 with scenario shortcut (settings are chosen on it)")
        if self.n_clips.get("valid_ood", 1) < 1:
            raise ValueError("n_clips.valid_ood must be >= 1 when given")
        if self.label_step > 0 and abs(3.0 / self.label_step - round(3.0 / self.label_step)) > 1e-6:
            raise ValueError(f"label_step must divide 3 evenly, e.g. 0.1, 0.2, 0.5, 1, or be 0 (got {self.label_step})")
        for m in ("text", "audio", "visual"):
            if not 0 <= self.modality_noise.get(m, -1) <= 10:
                raise ValueError(f"modality_noise.{m} must be given and in [0, 10]")
        return self


class DemoCorpusConfig(Section):
    """`misr demo-corpus`: real video files (animated face, speech-like audio, transcript) in the MMSA-FET layout."""

    seed: Seed = 1111
    n_clips: int = Field(240, ge=13, le=100000, description="clips in all; split 70/15/15 by video into train/valid/test")
    duration: tuple[float, float] = Field((2.0, 3.0), description="min and max seconds per clip")
    fps: int = Field(25, ge=5, le=60)
    size: int = Field(224, ge=96, le=1024, description="width and height of the video in pixels")
    sample_rate: int = Field(16000, ge=8000, le=48000)
    text_words: tuple[int, int] = Field((6, 16), description="min and max words per transcript")
    modality_noise: dict[Literal["text", "audio", "visual"], float] = Field(
        default_factory=lambda: {"text": 0.6, "audio": 0.6, "visual": 0.6}
    )
    neutral_ratio: float = Field(0.05, ge=0.0, le=1.0)
    label_step: float = Field(0.2, ge=0.0, le=1.0)
    splits: dict[Literal["train", "valid", "test"], SplitShape] = Field(default_factory=lambda: {s: SplitShape() for s in SPLITS})

    @model_validator(mode="after")
    def _check(self) -> DemoCorpusConfig:
        if not 0.5 <= self.duration[0] <= self.duration[1] <= 60:
            raise ValueError(f"duration must be [min, max] seconds with 0.5 <= min <= max <= 60 (got {list(self.duration)})")
        if not 1 <= self.text_words[0] <= self.text_words[1]:
            raise ValueError("text_words must be [min, max] with 1 <= min <= max")
        if self.label_step > 0 and abs(3.0 / self.label_step - round(3.0 / self.label_step)) > 1e-6:
            raise ValueError(f"label_step must divide 3 evenly, or be 0 (got {self.label_step})")
        return self


class DataConfig(Section):
    dataset: str = Field("demo", description="the entry of `datasets` the pipeline runs on")
    datasets: dict[str, DatasetConfig]
    synth: SynthConfig = Field(default_factory=SynthConfig)
    demo_corpus: DemoCorpusConfig = Field(default_factory=DemoCorpusConfig)
    import_max_elements: int = Field(
        200_000_000,
        ge=1000,
        description="a limit: `misr import-mmsa` refuses a file whose lists hold more values than this with shared "
        "references expanded (a small hostile pickle can expand to billions); raise it for a genuine file of nested lists",
    )

    @model_validator(mode="before")
    @classmethod
    def _default_paths(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and isinstance(raw.get("datasets"), dict):
            for name, entry in raw["datasets"].items():
                if isinstance(entry, dict):
                    for key, folder in DATASET_FOLDERS.items():
                        entry.setdefault(key, f"data/{folder}/{name}")
        return raw

    @model_validator(mode="after")
    def _known_dataset(self) -> DataConfig:
        if self.dataset not in self.datasets:
            raise ValueError(  # noqa: E501
                f"dataset {self.dataset!r} is not one of the configured datasets: {', '.join(self.datasets)}"
            )
        return self

    @property
    def active(self) -> DatasetConfig:
        return self.datasets[self.dataset]


# ------------------------------------------------------------------------------------- features


class TextFeatures(Section):
    tokenizer: str = Field("minilm", description="minilm (the shipped MiniLM-L6), or a local BERT-family model path")
    max_length: int = Field(50, ge=4, le=512, description="tokens per transcript, [CLS] and [SEP] included")
    store_hidden: bool = Field(False, description="also store the frozen encoder's per-token hidden states")


class AudioFeatures(Section):
    sample_rate: int = Field(16000, ge=4000, le=96000)
    frame_rate: float = Field(25.0, gt=0, le=200, description="feature frames per second")
    features: list[Literal["mfcc", "f0", "voicing", "rms", "centroid", "bandwidth", "rolloff", "flatness", "zcr"]] = Field(
        default_factory=lambda: ["mfcc", "f0", "voicing", "rms", "centroid", "bandwidth", "flatness", "zcr"]
    )
    n_mfcc: int = Field(13, ge=1, le=64)


class VisualFeatures(Section):
    backend: Literal["landmarks", "pyfeat"] = Field("landmarks", description="dlib landmarks + FACS geometry, or py-feat")
    frame_rate: float = Field(25.0, gt=0, le=120, description="frames per second analysed")
    detect_every: int = Field(5, ge=1, le=250, description="run the face detector every N frames, track in between")


class FeaturesConfig(Section):
    """What the features are: every key here can change the store's contents."""

    text: TextFeatures = Field(default_factory=TextFeatures)
    audio: AudioFeatures = Field(default_factory=AudioFeatures)
    visual: VisualFeatures = Field(default_factory=VisualFeatures)
    max_gap_seconds: float = Field(
        30.0,
        gt=0,
        le=86400,
        description="a limit, not a feature: the longest stretch without a video frame or audio sample (a late start, a hole) "
        "that extraction fills; a clip with a longer one is quarantined, so a small file cannot stand for hours",
    )

    @model_validator(mode="before")
    @classmethod
    def _moved_to_extract(cls, raw: Any) -> Any:
        moved = sorted(set(raw) & set(ExtractConfig.model_fields)) if isinstance(raw, dict) else []
        if moved:
            where = ", ".join(f"extract.{key}" for key in moved)
            raise ValueError(f"{', '.join(moved)} moved to the extract section ({where}): features holds only what the features are")
        return raw


class ExtractConfig(Section):
    """How extraction runs, not what it produces: no DVC stage declares these, so changing them re-runs nothing."""

    shard_size: int = Field(
        16, ge=1, le=10000, description="at most this many clips per extraction task (fewer when that keeps every worker busy)"
    )
    runner: Literal["threads", "dask"] = "threads"
    max_workers: int = Field(2, ge=1, le=1024)
    dask_address: str | None = Field(None, description="an existing Dask scheduler; null starts a local cluster")
    strict: bool = Field(False, description="exit non-zero when any clip is quarantined or kept with a modality absent")


# ---------------------------------------------------------------------------------------- model


class TextEncoderConfig(Section):
    encoder: str = Field(
        "auto",
        description=(
            "auto: stored hidden states if present, else learned token embeddings for a small vocabulary, else minilm; "
            "tokens | hidden | minilm (the shipped MiniLM-L6) | a local BERT-family model folder"
        ),
    )
    finetune: bool = Field(False, description="fine-tune a BERT-family encoder (minilm or a folder); else it stays frozen")


class KLConfig(Section):
    prior_weight: float = Field(0.001, ge=0, description="KL of each modality Gaussian to N(0, I)")
    pairwise_weight: float = Field(0.001, ge=0, description="pairwise KL between modality Gaussians")
    logvar_min: float = Field(-8.0, ge=-30, le=0)
    logvar_max: float = Field(8.0, ge=0, le=30)


class InvarianceConfig(Section):
    kind: Literal["irm", "vrex"] = "vrex"
    weight: float = Field(1.0, ge=0, description="lambda_inv once warmed up")
    warmup_epochs: int = Field(10, ge=0, description="epochs of warm-up before the penalty has its full weight")
    schedule: Literal["linear", "step"] = Field("step", description="linear ramp from 0, or 0 then a step to `weight`")
    penalty_on: Literal["train", "held_out"] = Field(
        "train",
        description="under environments groups, the clips whose group risks make the penalty: the training batch's "
        "(the clips the risk fits) or group-balanced batches of a share of train the risk never fits (held_out_share)",
    )
    held_out_share: float = Field(0.25, gt=0, lt=1, description="penalty_on held_out: the share of train kept out of the risk")
    risk: Literal["group_mean", "pooled"] = Field(
        "group_mean",
        description="under environments groups, the risk term: the mean of the groups' risks (each group weighted alike, "
        "as V-REx and IRM sum environment risks) or the clips' pooled mean (the ablation)",
    )


class GroupsConfig(Section):
    """How model.environments groups (and the validation groups of train.select_on) are made."""

    partition: Literal["auto", "text", "audio", "visual"] = Field(
        "auto",
        description="auto: the modality-disagreement partition the warmed-up predictor violates most (EIIL); or "
        "that modality's disagreement with the label, always",
    )
    source: Literal["auto", "predictions"] = Field(
        "auto",
        description="auto: label_T/A/V where the store has them for every clip, else the model's unimodal predictions; "
        "predictions: always the model's (as on MOSI or MOSEI, whose stores have no unimodal labels)",
    )


class LossConfig(Section):
    """The per-clip loss of the risk; the invariance penalty is built from the same loss."""

    kind: Literal["l1", "pseudo_huber"] = Field("l1", description="l1: |r|; pseudo_huber: delta^2 (sqrt(1 + (r/delta)^2) - 1)")
    delta: float = Field(0.5, gt=0.0, le=10.0, description="pseudo_huber: quadratic for |r| << delta, slope 1 (like L1) beyond")


@dataclass(frozen=True)
class Variant:
    """What a model variant switches on. `model.name` picks one; code asks these, never the name."""

    gaussian: bool  # Gaussian heads and their fused z (False: the pooled encoders concatenated into an MLP)
    kl: bool  # the distributional constraints: prior and pairwise KL terms
    invariance: bool  # the invariance penalty
    z_draws: bool  # the environments are draws of z, whatever model.environments says
    group_risk: bool = False  # no penalty, but the risk averaged over groups of clips (a group-balanced reference)


VARIANTS = {
    "misr": Variant(gaussian=True, kl=True, invariance=True, z_draws=False),
    "misr_no_dist": Variant(gaussian=True, kl=False, invariance=True, z_draws=False),
    "misr_no_inv": Variant(gaussian=True, kl=True, invariance=False, z_draws=False),
    "misr_z_env": Variant(gaussian=True, kl=True, invariance=True, z_draws=True),
    "late_fusion": Variant(gaussian=False, kl=False, invariance=False, z_draws=False),
    # late fusion with each group's risk weighted alike (Sagawa et al.'s group-balanced reweighting): with
    # groups that are known (model.groups.partition set, label_T/A/V in the store) it is the known-groups reference
    "late_fusion_groups": Variant(gaussian=False, kl=False, invariance=False, z_draws=False, group_risk=True),
}
ModelName = Literal[tuple(VARIANTS)]  # type: ignore[valid-type]


class ModelConfig(Section):
    name: ModelName = "misr"
    d_model: int = Field(64, ge=8, le=4096)
    n_heads: int = Field(4, ge=1, le=64)
    n_layers: int = Field(2, ge=1, le=24)
    n_summary_tokens: int = Field(2, ge=1, le=32)
    latent_dim: int = Field(32, ge=2, le=4096)
    max_frames: int = Field(
        500, ge=16, le=65536, description="a longer audio or visual sequence is uniformly subsampled to this many frames (per clip)"
    )
    dropout: float = Field(0.1, ge=0, lt=1)
    fusion: Literal["softmax", "poe"] = Field(
        "poe",
        description="softmax: z = sum_m softmax_m(1/sigma_m) z_m per dimension; poe: a product of the Gaussian experts "
        "(precision-weighted mean and variance, one draw). Either way a missing modality gets weight 0",
    )
    environments: Literal["z_plus_unimodal", "unimodal", "groups"] = Field(
        "groups",
        description="groups: training clips partitioned by cross-modal agreement, the penalty on f(z) across the groups "
        "(misr/training/groups.py); or views of the same clips: {z, z+u_t, z+u_a, z+u_v}, {z, u_t, u_a, u_v}",
    )
    z_env_samples: int = Field(4, ge=2, le=64, description="misr_z_env: environments are this many draws of z")
    text: TextEncoderConfig = Field(default_factory=TextEncoderConfig)
    kl: KLConfig = Field(default_factory=KLConfig)
    invariance: InvarianceConfig = Field(default_factory=InvarianceConfig)
    groups: GroupsConfig = Field(default_factory=GroupsConfig)
    loss: LossConfig = Field(default_factory=LossConfig)

    @property
    def variant(self) -> Variant:
        return VARIANTS[self.name]

    @property
    def environment_source(self) -> str:
        """Where the invariance penalty's environments come from: z_draws, groups, z_plus_unimodal or unimodal."""
        return "z_draws" if self.variant.z_draws else self.environments

    @property
    def infers_groups(self) -> bool:
        """Training partitions the clips into groups (once the penalty first has weight)."""
        return (self.variant.invariance and self.environment_source == "groups") or self.variant.group_risk

    @model_validator(mode="after")
    def _irm_needs_a_smooth_loss(self) -> ModelConfig:
        if self.invariance.kind == "irm" and self.loss.kind == "l1" and self.variant.invariance:
            raise ValueError(
                "invariance.kind irm differentiates the risk with respect to a scale of the predictions; with loss.kind l1 "
                "that gradient is a step function of the residuals: set loss.kind to pseudo_huber"
            )
        return self

    @model_validator(mode="after")
    def _held_out_needs_groups(self) -> ModelConfig:
        if self.invariance.penalty_on == "held_out" and self.variant.invariance and self.environment_source != "groups":
            raise ValueError(
                "invariance.penalty_on held_out measures the penalty across groups of held-out clips: it needs "
                f"environments groups (got {self.environment_source})"
            )
        return self

    @model_validator(mode="after")
    def _heads_divide(self) -> ModelConfig:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        return self


# ---------------------------------------------------------------------------------------- train


class TrainConfig(Section):
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seeds: list[Seed] = Field(default_factory=lambda: [1111, 1112, 1113], min_length=1)
    epochs: int = Field(30, ge=1, le=10000)
    batch_size: int = Field(32, ge=1, le=65536)
    lr: float = Field(3e-3, gt=0, le=1)
    text_lr: float = Field(5e-6, ge=0, le=1)
    weight_decay: float = Field(1e-4, ge=0, le=1)
    warmup_ratio: float = Field(
        0.1, ge=0, lt=1, description="the learning rate's warm-up: this share of the planned steps, at most 5 epochs"
    )
    grad_clip: float = Field(1.0, ge=0, description="max gradient norm; 0 disables clipping")
    patience: int = Field(8, ge=1, description="epochs without a better validation MAE before stopping")
    modality_dropout: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="remove each modality of a training clip with this probability (never all three); "
        "> 0 lets `misr predict` answer when a modality is missing",
    )
    deterministic: bool = True
    threads: int = Field(
        0,
        ge=0,
        le=1024,
        description="torch's CPU threads in the training process; 0: torch's default (every core). Trainings run side "
        "by side should take one each (sums of floats, hence results, depend on it)",
    )
    select_on: Literal["mae", "group_mean_mae", "worst_group_mae"] = Field(
        "mae",
        description="what chooses the checkpoint and stops early: the validation MAE, or the mean or the worst of the "
        "validation groups' MAEs (the groups of model.environments' rule, from label_T/A/V or the model's unimodal "
        "predictions): a choice that does not reward a shortcut, without out-of-distribution data",
    )
    action_units: Literal["raw", "relative"] = Field(
        "relative",
        description="how a model sees the landmark extractor's action units: raw (clipped to [0, 5] against a generic "
        "neutral face) or relative to each person's own neutral level (misr.features.person)",
    )
    stream: Literal["auto", "memory", "store"] = Field(
        "auto",
        description="memory: load the train and valid splits padded into memory; store: read batches from the store's "
        "row groups as training goes (block-shuffled order); auto: store when the splits' feature files exceed 2 GiB",
    )

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        repeated = sorted({s for s in seeds if seeds.count(s) > 1})
        if repeated:
            raise ValueError(f"every seed must differ; {', '.join(map(str, repeated))} appear(s) more than once")
        return seeds


# ------------------------------------------------------------------------------------- evaluate


class EvaluateConfig(Section):
    splits: list[Literal["valid", "test"]] = Field(default_factory=lambda: ["valid", "test"], min_length=1)
    robustness: bool = Field(True, description="agree/conflict subsets and each modality zeroed out")


# ------------------------------------------------------------------------------------- register


class RegisterConfig(Section):
    artifact: str = Field("misr-sentiment", pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
    stage: str = Field("prod", pattern=r"^[a-z0-9-]+$")
    metric: str = Field("MAE", description="the metric the candidate must beat prod on: one of the data set's convention's metrics")
    min_margin: float = Field(0.005, ge=0, description="the candidate must beat prod by at least this")
    tolerance: float = Field(0.01, ge=0, description="how much worse the other guard metrics may be")
    guard_metrics: list[str] | None = Field(
        None,
        description="metrics that may not get worse beyond the tolerance; null: the convention's guards",
    )


# -------------------------------------------------------------------------------------- compare


class CompareConfig(Section):
    """`misr compare`: which models, against which reference, on which seeds (its options override these)."""

    models: list[str] = Field(
        default_factory=lambda: ["misr", "late_fusion"],
        min_length=1,
        description="model.name values of this package, or mmsa:NAME for MMSA's models (the mmsa extra)",
    )
    reference: str = Field("late_fusion", description="the model every other one is compared with (one of models)")
    seeds: list[Seed] | None = Field(None, min_length=1, description="training seeds; null: train.seeds")

    @field_validator("models")
    @classmethod
    def _known(cls, models: list[str]) -> list[str]:
        for m in models:
            if not (m in VARIANTS or (m.lower().startswith("mmsa:") and len(m) > 5)):
                raise ValueError(f"{m!r} is neither a model.name ({', '.join(VARIANTS)}) nor mmsa:NAME")
        repeated = sorted({m for m in models if models.count(m) > 1})
        if repeated:
            raise ValueError(f"models listed twice: {', '.join(repeated)}")
        return models

    @model_validator(mode="after")
    def _reference_is_a_model(self) -> CompareConfig:
        if self.reference not in self.models:
            raise ValueError(f"reference {self.reference!r} is not one of models: {', '.join(self.models)}")
        return self


# -------------------------------------------------------------------------------------- retrain


class RetrainConfig(Section):
    """The scheduled retraining (`misr retrain`, `misr schedule`)."""

    dataset: str = Field("demo", description="the data set whose raw corpus is watched and whose model is registered")
    cron: str = Field("0 3 * * *", description="when `misr schedule` runs the retraining (cron, server time)")
    push: bool = Field(True, description="`dvc push` after a successful retraining (to the default DVC remote)")
    audit_log: Path = Field(Path(".misr/audit.jsonl"), description="every retraining run, changed or not (kept out of git)")
    lock_file: Path = Field(Path(".misr/retrain.lock"), description="one retraining at a time: never two DVC processes")

    @model_validator(mode="after")
    def _cron(self) -> RetrainConfig:
        fields = self.cron.split()
        if len(fields) != 5:
            raise ValueError(f"cron must have 5 fields (minute hour day month weekday), got {self.cron!r}")
        return self


# ---------------------------------------------------------------------------------------- whole


class Params(Section):
    data: DataConfig
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    extract: ExtractConfig = Field(default_factory=ExtractConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    # `register` would shadow BaseModel.register (from ABC), hence the alias.
    registration: RegisterConfig = Field(default_factory=RegisterConfig, alias="register")
    retrain: RetrainConfig = Field(default_factory=RetrainConfig)
    compare: CompareConfig = Field(default_factory=CompareConfig)

    @model_validator(mode="after")
    def _retrain_dataset(self) -> Params:
        if self.retrain.dataset not in self.data.datasets:
            raise ValueError(f"retrain.dataset {self.retrain.dataset!r} is not one of data.datasets: {', '.join(self.data.datasets)}")
        return self

    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)


# -------------------------------------------------------------------------------------- loading


def load_params(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Params:
    """Read, override (`key.path=value`, values parsed as YAML) and validate params.yaml."""
    path = Path(path) if path is not None else DEFAULT_PARAMS
    if not path.exists():
        raise ConfigError(
            f"no parameters file at {path}",
            hint="run from the repository root, or pass --params PATH",
        )
    try:
        with open(path, encoding="utf-8") as fh:  # a stream, so that YAML's messages name the file
            raw = yaml.load(fh, Loader=UniqueKeyLoader)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping of sections (data, features, model, ...)")
    for item in overrides:
        apply_override(raw, item)
    return validate_params(raw, source=str(path))


class UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error (not "the last wins")."""


def _unique_mapping(loader: UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"the key {key!r} is given twice (first on line {seen[key] + 1})", key_node.start_mark
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def validate_params(raw: dict[str, Any], source: str = "params") -> Params:
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        lines = [format_error(err) for err in exc.errors()]
        raise ConfigError(f"{source} is invalid:\n" + "\n".join(f"  - {line}" for line in lines)) from None


def validate_section(model: type[SectionT], raw: Any, source: str) -> SectionT:
    """One section on its own (e.g. the settings stored in a checkpoint), with the same error messages."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        lines = [format_error(err) for err in exc.errors()]
        raise ConfigError(f"{source} is invalid:\n" + "\n".join(f"  - {line}" for line in lines)) from None


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Set `a.b.c=value` inside the nested mapping `raw` (value parsed as YAML, like `dvc exp run -S`)."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r} must look like section.key=value")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    parts = key.strip().split(".")
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {item!r}: {'.'.join(parts[: i + 1])} is a value, not a section")
        node = child
    node[parts[-1]] = value


def format_error(err: dict[str, Any]) -> str:
    """One line per problem: the dotted key, what is wrong, the allowed keys or values, and what was given."""
    loc = [str(p) for p in err["loc"]]
    key = ".".join(loc) or "(top level)"
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(err["loc"][:-1])
        return f"{key}: unknown key; allowed here: {', '.join(allowed)}"
    if kind == "missing":
        return f"{key}: required key is missing"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if kind.startswith("literal_error") or kind == "enum":
        msg = msg.replace("Input should be", "must be one of:")
    else:
        msg = msg.replace("Input should be", "must be")
    given = err.get("input")
    if kind not in {"value_error", "assertion_error"} and not isinstance(given, dict):
        return f"{key}: {msg} (got {given!r})"
    return f"{key}: {msg}"


def _allowed_keys(loc: Sequence[Any]) -> list[str]:
    """The field names of the section at `loc` (a path into Params), for error messages."""
    model: Any = Params
    for part in loc:
        if isinstance(model, type) and issubclass(model, BaseModel):
            by_key = {(f.alias or name): f for name, f in model.model_fields.items()}
            field = by_key.get(str(part))
            if field is None:
                return []
            model = _unwrap(field.annotation)
        elif typing.get_origin(model) is dict:
            model = _unwrap(typing.get_args(model)[1])
        else:
            return []
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [f.alias or name for name, f in model.model_fields.items()]
    return []


def _unwrap(annotation: Any) -> Any:
    """Optional[X] -> X, so that error messages can look inside optional sections."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return annotation


def params_to_yaml(params: Params) -> str:
    return yaml.safe_dump(params.model_dump(mode="json", by_alias=True), sort_keys=False)
