"""`misr synth`: a feature-level synthetic MSA data set, written straight into the feature store.

Each clip has a latent sentiment s in [-3, 3] (its label). Each modality expresses its own version
s_m = s + noise_m, except in "conflict" clips, where one modality (picked at random) expresses -s.
The per-modality labels label_T/A/V are the expressed sentiments. Features are then made from s_m:

  text    words from a graded lexicon near s_t, some negated ("not great"), among fillers;
  audio,  frames x_t = tanh(u_t A + b) B + noise, where u_t mixes s_m with a slow envelope (the
  visual  sentiment shows in some frames more than others), tanh(s_m), s_m^2, a per-clip speaker
          offset and a nuisance oscillation; A, b, B are fixed per modality (shared by all splits).

Scenario `shortcut` (data.synth.scenario): text and audio express s + noise as above, but one
modality (shortcut.modality) expresses only strength * sign(s), with little noise, and that sign is
flipped in a latent subgroup: ~10% of train and valid, ~60% of valid_ood and test (shortcut.flipped).
A model that leans on the cue is right in training and wrong on test; the label prior is the same in
every split, so the subgroup is the only shift. valid_ood is drawn like test, for choosing settings.

The oracle is the Bayes-optimal predictor of s given the three expressed sentiments, computed exactly
under the generating process (prior of the split, noise levels, flip mixture): its posterior median
minimises the expected absolute error. Its metrics are the ceiling for a model that only sees the
features. `ceilings` gives, per metric, the predictor optimal for it under the split's own distribution
(bayes, test-aware) and under the training distribution (erm). Predicting the training mean is the floor.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from misr.data import lexicon
from misr.config.section import SPLITS
from misr.config.synth import SynthConfig
from misr.errors import MisrError
from misr.msa.metrics import msa_metrics
from misr.store import MODALITIES, ExtractorInfo, clip_key
from misr.store.store import FeatureStore
from misr.util.atomic import check_writable

VERSION = "1"
_LATENT_CHANNELS = 6
_HIDDEN = 16


@dataclass
class SplitSample:
    """What the generator drew for one split, before any feature is made."""

    labels: np.ndarray  # [N] the holistic label s
    expressed: np.ndarray  # [N, 3] s_m for text, audio, visual
    conflict: np.ndarray  # [N] index of the flipped modality, -1 where none


def generate(
    cfg: SynthConfig,
    out: str | Path,
    force: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
    cue: str = "kept",
) -> dict[str, Any]:
    """Write a synthetic store at `out` and return its oracle (also written to oracle.json).

    `cue` (shortcut scenario): "kept" as drawn; "reversed" writes the counterfactual store (the same clips,
    labels and noise draws, with the shortcut modality's expressed sentiment negated, so only that
    modality's features differ); "muted" sets that sentiment to 0 (the modality carries no cue at all).
    `benchmarks/quality.py` measures a model's reliance on the cue, and what a model without it reaches.
    """
    if cue not in ("kept", "reversed", "muted"):
        raise MisrError(f"cue must be kept, reversed or muted (got {cue!r})")
    if cue != "kept" and cfg.scenario != "shortcut":
        raise MisrError(f"cue={cue} needs data.synth.scenario shortcut: the other scenario has no cue")
    store = FeatureStore(out)
    if store.root.exists() and not store.root.is_dir():
        raise MisrError(f"{store.root} exists and is not a folder")
    check_writable(store.root)
    with store.lock():  # one writer at a time
        _prepare_folder(store, force)
        clips, text_rows, seq_rows = [], [], {"audio": [], "visual": []}
        samples: dict[str, SplitSample] = {}
        maps = {m: _mapping(cfg, m) for m in ("audio", "visual")}
        for split_index, split in enumerate(synth_splits(cfg)):
            n = cfg.n_clips[split]
            rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, split_index]))
            sample = draw_shortcut_split(cfg, split, n, rng) if cfg.scenario == "shortcut" else draw_split(cfg, split, n, rng)
            if cue != "kept":
                # after every draw of the split: the rest of the stream, and so every other feature, is unchanged
                sample.expressed[:, MODALITIES.index(cfg.shortcut.modality)] *= -1.0 if cue == "reversed" else 0.0
            samples[split] = sample
            for i in range(n):
                key = clip_key(f"synth_{split}_{i // 10:04d}", f"{i % 10}")
                words = lexicon.transcript(float(sample.expressed[i, 0]), int(rng.integers(cfg.text_words[0], cfg.text_words[1] + 1)), rng)
                ids = lexicon.token_ids(words)
                clips.append(
                    {
                        "clip_key": key,
                        "video_id": key.split("$_$")[0],
                        "clip_id": key.split("$_$")[1],
                        "split": split,
                        "text": " ".join(words),
                        "label": float(sample.labels[i]),
                        **{col: float(_round(np.clip(sample.expressed[i, m], -3, 3), cfg.label_step)) for m, col in enumerate(("label_T", "label_A", "label_V"))},
                        "annotation": _annotation(sample.labels[i]),
                        "source_sha256": "",
                        "duration": None,
                    }
                )
                text_rows.append({"clip_key": key, "source_sha256": "", "input_ids": ids, "attention_mask": [1] * len(ids)})
                for m, modality in ((1, "audio"), (2, "visual")):
                    frames = _frames(cfg, modality, maps[modality], float(sample.expressed[i, m]), rng)
                    seq_rows[modality].append({"clip_key": key, "source_sha256": "", "frames": frames, "frame_rate": 0.0})
                if progress is not None:
                    progress(split, i + 1, n)

        common = cfg.model_dump(mode="json")
        text_info = ExtractorInfo(
            "synth-text", VERSION, {**common, "tokenizer": "synth-lexicon-v1", "vocab_size": len(lexicon.VOCAB)}, ()
        )
        store.write_modality("text", text_rows, text_info, name="synth")
        for modality, dim in (("audio", cfg.audio_dim), ("visual", cfg.visual_dim)):
            names = [f"synth_{modality}_{j}" for j in range(dim)]
            store.write_modality(modality, seq_rows[modality], ExtractorInfo(f"synth-{modality}", VERSION, common, names), name="synth")
        store.write_clips(clips)
        oracle = compute_oracle(cfg, samples)
        store.write_json("oracle.json", oracle)
        return oracle


def _prepare_folder(store: FeatureStore, force: bool) -> None:
    """An empty folder, or a feature store that --force allows to be replaced."""
    if any(store.root.iterdir()):
        if not store.exists():
            raise MisrError(f"{store.root} is not empty and is not a feature store", hint="choose an empty or new folder")
        if not force:
            raise MisrError(f"{store.root} already holds a feature store", hint="pass --force to replace it")
        store.clear()


# ------------------------------------------------------------------------------------ labels


def draw_split(cfg: Any, split: str, n: int, rng: np.random.Generator) -> SplitSample:
    """Labels and each modality's expressed sentiment for one split.

    `cfg` is any config with `splits`, `neutral_ratio`, `label_step` and `modality_noise` (the synth
    and demo-corpus sections both have them), so both data sets follow one generating process.
    """
    shape = split_shape(cfg, split)
    labels, expressed, noise = _draw_labels(cfg, shape, n, rng)
    conflict = np.where(rng.random(n) < shape.conflict_rate, rng.integers(0, 3, size=n), -1)
    rows = np.nonzero(conflict >= 0)[0]
    expressed[rows, conflict[rows]] = -labels[rows] + noise[conflict[rows]] * rng.standard_normal(rows.size)
    return SplitSample(labels.astype(np.float64), expressed, conflict)


def _draw_labels(cfg: Any, shape: Any, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels from the split's shape, and each modality's expressed sentiment s + noise_m (before any flip)."""
    neutral = rng.random(n) < cfg.neutral_ratio
    sign = np.where(rng.random(n) < shape.positive_ratio, 1.0, -1.0)
    magnitude = 3.0 * rng.beta(1.0, shape.magnitude_skew, size=n)
    labels = np.where(neutral, 0.0, _round(sign * magnitude, cfg.label_step))
    noise = np.array([cfg.modality_noise[m] for m in MODALITIES])
    expressed = labels[:, None] + noise[None, :] * rng.standard_normal((n, 3))
    return labels, expressed, noise


def synth_splits(cfg: SynthConfig) -> tuple[str, ...]:
    """The splits `misr synth` writes: train, valid, test, and valid_ood when n_clips names it."""
    return (*SPLITS, "valid_ood") if "valid_ood" in cfg.n_clips else SPLITS


def split_shape(cfg: Any, split: str) -> Any:
    """The label shape a split is drawn with: its own; valid_ood is drawn like test; under the shortcut
    scenario every split has the training shape, so the subgroup is the only thing that shifts."""
    if getattr(cfg, "scenario", "shift") == "shortcut":
        return cfg.splits["train"]
    return cfg.splits["test" if split == "valid_ood" else split]


def draw_shortcut_split(cfg: SynthConfig, split: str, n: int, rng: np.random.Generator) -> SplitSample:
    """The shortcut scenario: text and audio express s + noise; the shortcut modality expresses
    strength * sign(s) + noise, with the sign flipped in a latent subgroup (`shortcut.flipped[split]`)."""
    sc = cfg.shortcut
    k = MODALITIES.index(sc.modality)
    labels, expressed, _ = _draw_labels(cfg, split_shape(cfg, split), n, rng)
    flipped = rng.random(n) < sc.flipped[split]
    expressed[:, k] = np.where(flipped, -1.0, 1.0) * sc.strength * np.sign(labels) + sc.noise * rng.standard_normal(n)
    return SplitSample(labels.astype(np.float64), expressed, np.where(flipped, k, -1))


def _round(x: Any, step: float) -> Any:
    return np.round(np.asarray(x) / step) * step if step > 0 else x


def _annotation(label: float) -> str:
    return "Positive" if label > 0 else "Negative" if label < 0 else "Neutral"


def label_prior(cfg: SynthConfig, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Support and probabilities of a split's labels, exactly as `draw_split` draws them."""
    shape = split_shape(cfg, split)
    b = shape.magnitude_skew

    def beta_cdf(x: np.ndarray) -> np.ndarray:  # Beta(1, b) on [0, 1]
        return 1.0 - (1.0 - np.clip(x, 0.0, 1.0)) ** b

    if cfg.label_step > 0:
        k = np.arange(0, int(np.floor(3.0 / cfg.label_step + 1e-9)) + 1)
        mags = k * cfg.label_step
        # P(round(3 * Beta / step) == k): half a step either side; numpy rounds half to even, a null set here.
        lo = np.maximum(mags - cfg.label_step / 2, 0.0) / 3.0
        hi = (mags + cfg.label_step / 2) / 3.0
        p_mag = beta_cdf(hi) - beta_cdf(lo)
    else:
        mags = np.linspace(0.0, 3.0, 601)  # continuous labels: a fine grid stands in for the density
        edges = np.concatenate([[0.0], (mags[:-1] + mags[1:]) / 2, [3.0]]) / 3.0
        p_mag = np.diff(beta_cdf(edges))
    support = np.concatenate([-mags[::-1], mags])
    prob = (1 - cfg.neutral_ratio) * np.concatenate([(1 - shape.positive_ratio) * p_mag[::-1], shape.positive_ratio * p_mag])
    # merge the two copies of 0 (magnitude 0 with either sign), then add the neutral clips once
    values, inverse = np.unique(np.round(support, 9), return_inverse=True)
    merged = np.zeros(values.size)
    np.add.at(merged, inverse, prob)
    merged[values == 0.0] += cfg.neutral_ratio
    return values, merged / merged.sum()


def posterior(cfg: SynthConfig, split: str, expressed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The label support and, per clip, the exact posterior of s given the three expressed sentiments [N, K]
    under the split's generating process (its label prior, each modality's noise, its flip mixture)."""
    support, prior = label_prior(cfg, split)
    s = support[None, :, None]  # [1, K, 1]
    mean = np.repeat(s, 3, axis=2)  # what each modality expresses given s, before noise
    sigma = np.array([cfg.modality_noise[m] for m in MODALITIES], dtype=np.float64)
    if cfg.scenario == "shortcut":
        k = MODALITIES.index(cfg.shortcut.modality)
        mean[..., k] = cfg.shortcut.strength * np.sign(s[..., 0])
        sigma[k] = cfg.shortcut.noise
        flips = {k: cfg.shortcut.flipped[split]}
    else:
        rate = split_shape(cfg, split).conflict_rate
        flips = {m: rate / 3 for m in range(3)} if rate > 0 else {}
    sigma = np.maximum(sigma, 1e-3)
    x = expressed[:, None, :]  # [N, 1, 3]
    log_same = -0.5 * ((x - mean) / sigma) ** 2  # [N, K, 3]
    log_flip = -0.5 * ((x + mean) / sigma) ** 2
    total_same = log_same.sum(-1)  # [N, K]
    # at most one modality is flipped: a mixture over "none" and each flip event
    none = 1.0 - sum(flips.values())
    terms = [np.log(none) + total_same] if none > 0 else []
    for m, rate in flips.items():
        if rate > 0:
            terms.append(np.log(rate) + total_same - log_same[..., m] + log_flip[..., m])
    log_post = np.logaddexp.reduce(np.stack(terms), axis=0) + np.log(np.maximum(prior, 1e-300))[None, :]
    log_post -= log_post.max(axis=1, keepdims=True)
    post = np.exp(log_post)
    return support, post / post.sum(axis=1, keepdims=True)


def posterior_median(cfg: SynthConfig, split: str, expressed: np.ndarray) -> np.ndarray:
    """The Bayes predictor under L1 (MAE): the posterior median of s."""
    support, post = posterior(cfg, split, expressed)
    return support[np.argmax(np.cumsum(post, axis=1) >= 0.5, axis=1)]


def posterior_mean(cfg: SynthConfig, split: str, expressed: np.ndarray) -> np.ndarray:
    """The Bayes predictor under squared error (and the natural one for Corr): the posterior mean of s."""
    support, post = posterior(cfg, split, expressed)
    return post @ support


def posterior_sign(cfg: SynthConfig, split: str, expressed: np.ndarray, nonzero: bool) -> np.ndarray:
    """The Bayes predictor of the binary class: +1 when P(s >= 0) > 1/2 (Has0), or P(s > 0) > P(s < 0) (Non0)."""
    support, post = posterior(cfg, split, expressed)
    positive = post[:, support > 0].sum(axis=1) + (0 if nonzero else post[:, support == 0].sum(axis=1))
    negative = post[:, support < 0].sum(axis=1)
    return np.where(positive > negative, 1.0, -1.0)


def compute_oracle(cfg: SynthConfig, samples: dict[str, SplitSample]) -> dict[str, Any]:
    train_mean = float(samples["train"].labels.mean())
    out: dict[str, Any] = {
        "description": (
            "oracle: the Bayes-optimal predictor (posterior median) from each modality's expressed sentiment, under each "
            "split's own distribution; ceilings: per metric, the Bayes predictor optimal for that metric under the split's "
            "own distribution (bayes: a test-aware ceiling) and under the training distribution (erm: the best a model "
            "fitted to training data can do); floor: predicting the training mean"
        ),
        "scenario": cfg.scenario,
        "train_mean": train_mean,
        "oracle": {},
        "train_mean_baseline": {},
        "label_stats": {},
    }
    out["ceilings"] = {}
    for split in [s for s in samples if s != "train"]:
        sample = samples[split]
        pred = posterior_median(cfg, split, sample.expressed)
        out["oracle"][split] = msa_metrics(pred, sample.labels, "mosi")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Corr of a constant prediction is 0 by definition
            out["train_mean_baseline"][split] = msa_metrics(np.full_like(sample.labels, train_mean), sample.labels, "mosi")
        out["ceilings"][split] = ceilings(cfg, split, sample)
    for split, sample in samples.items():
        out["label_stats"][split] = {
            "n": int(sample.labels.size),
            "positive": float(np.mean(sample.labels > 0)),
            "negative": float(np.mean(sample.labels < 0)),
            "neutral": float(np.mean(sample.labels == 0)),
            "conflict": float(np.mean(sample.conflict >= 0)),
            "mean": float(sample.labels.mean()),
        }
    return out


# metric -> (the Bayes predictor optimal for it, its description)
CEILING_PREDICTORS = {
    "MAE": (posterior_median, "posterior median (optimal for absolute error)"),
    "Corr": (posterior_mean, "posterior mean (optimal for squared error; the usual choice for Corr, which has no closed form)"),
    "Has0_acc_2": (lambda c, s, x: posterior_sign(c, s, x, nonzero=False), "sign by P(s >= 0) > 1/2 (optimal for Has0_acc_2)"),
    "Non0_acc_2": (lambda c, s, x: posterior_sign(c, s, x, nonzero=True), "sign by P(s > 0) > P(s < 0) (optimal for Non0_acc_2)"),
}


def ceilings(cfg: SynthConfig, split: str, sample: SplitSample) -> dict[str, dict[str, Any]]:
    """Per metric: its optimal predictor under the split's own distribution (bayes) and under training's (erm)."""
    out = {}
    for metric, (predictor, description) in CEILING_PREDICTORS.items():
        row: dict[str, Any] = {"predictor": description}
        for name, distribution in (("bayes", split), ("erm", "train")):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                row[name] = msa_metrics(predictor(cfg, distribution, sample.expressed), sample.labels, "mosi")[metric]
        out[metric] = row
    return out


# ------------------------------------------------------------------------------------ features


def _mapping(cfg: SynthConfig, modality: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The fixed random nonlinear map of one modality: the same for every split and clip."""
    dim = cfg.audio_dim if modality == "audio" else cfg.visual_dim
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 7919, MODALITIES.index(modality)]))
    a = rng.standard_normal((_LATENT_CHANNELS, _HIDDEN)) * 0.8
    b = rng.standard_normal(_HIDDEN) * 0.3
    out = rng.standard_normal((_HIDDEN, dim)) / np.sqrt(_HIDDEN)
    return a, b, out


def _frames(
    cfg: SynthConfig, modality: str, mapping: tuple[np.ndarray, np.ndarray, np.ndarray], sentiment: float, rng: np.random.Generator
) -> np.ndarray:
    lo, hi = cfg.audio_frames if modality == "audio" else cfg.visual_frames
    t = np.arange(int(rng.integers(lo, hi + 1)), dtype=np.float64)
    period = rng.uniform(8.0, 24.0)
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi))
    speaker = rng.standard_normal()
    latent = np.stack(
        [
            sentiment / 3.0 * envelope,
            np.full_like(t, np.tanh(sentiment / 1.5)),
            np.full_like(t, sentiment**2 / 9.0) * envelope,
            np.full_like(t, speaker),
            np.sin(2 * np.pi * t / rng.uniform(3.0, 6.0)),
            rng.standard_normal(t.size) * 0.5,
        ],
        axis=1,
    )
    a, b, out = mapping
    frames = np.tanh(latent @ a + b) @ out
    frames += cfg.feature_noise * rng.standard_normal(frames.shape)
    return frames.astype(np.float32)
