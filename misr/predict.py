"""`misr predict`: the sentiment of a new video, with the same extractors and the registered model.

The model is the `register.stage` version of `register.artifact` (GTO), read from DVC's cache at the
commit that version points to, or a folder that `misr train` wrote. Every seed's best checkpoint
predicts and the scores are averaged. The features are extracted with the settings the model was
trained with (they travel inside the checkpoint).

A missing modality (no transcript given, no audio track, no face) is said out loud, and the score comes
from the modalities that are there: the fusion gives a missing one weight 0. A model trained with
modality dropout (`train.modality_dropout` > 0) learned to do that; for any other model the prediction
says that it never did (`Prediction.unpractised`).
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from misr.data.corpus import VIDEO_EXTENSIONS, Clip, is_video_name
from misr.data.media import ClipError
from misr.errors import MisrError
from misr.features.person import view_of_clip
from misr.registry import versions
from misr.training.batches import zero_modality
from misr.training.checkpoints import load_checkpoint
from misr.training.model_dir import ModelDir


@dataclass
class Prediction:
    video: str
    score: float
    spread: float  # std over the seeds' scores
    klass: int  # the finest class of the model's label convention (-3..3 for MOSI, -2..2 for SIMS)
    class_name: str
    label2: str
    missing: dict[str, str] = field(default_factory=dict)  # modality -> why
    unpractised: bool = False  # a modality is missing and the model never trained without one

    @property
    def used(self) -> list[str]:
        return [m for m in ("text", "audio", "visual") if m not in self.missing]


def load_models(ref: str, repo: Path, artifact: str, stage: str) -> tuple[list[tuple[torch.nn.Module, dict]], str]:
    """The models of `ref`: a stage name (e.g. prod), a version (v0.0.1), or a model folder; and a description."""
    folder = Path(ref)
    if not folder.is_dir() and (os.sep in ref or ref.startswith(".")):  # meant as a folder, not a stage or version
        raise MisrError(
            f"no model folder at {folder}", hint="pass a trained model folder (MODEL_DIR of `misr train`), a stage or a version"
        )
    if folder.is_dir():
        if not ModelDir(folder).summary_path.exists():
            raise MisrError(f"{folder} is not a trained model folder (no summary.json)")
        return ModelDir(folder).load_ensemble(), str(folder)
    import dvc.api

    commit = versions.commit_of(repo, artifact, ref)
    model_dir = ModelDir(versions.artifact_path(repo, artifact, commit))  # relative: read from DVC at the commit

    def read(path: Path, mode: str = "r") -> str | bytes:
        return dvc.api.read(str(path), repo=str(repo), rev=commit, mode=mode)

    try:
        seeds = list(json.loads(read(model_dir.summary_path))["seeds"])
        name = f"{artifact}@{commit[:10]}"
        models = [load_checkpoint(io.BytesIO(read(model_dir.best(s), "rb")), name=name) for s in seeds]
    except Exception as exc:  # DVC raises many kinds when the data is neither in the cache nor on a remote
        raise MisrError(f"cannot read the model files of {artifact} at {commit[:10]}: {exc}", hint="`dvc pull` them first") from None
    return models, f"{artifact} {ref} (commit {commit[:10]})"


def videos_in(target: Path) -> list[Path]:
    if target.is_dir():
        found = sorted(p for p in target.rglob("*") if is_video_name(p) and p.is_file())
        if not found:
            raise MisrError(f"no video files ({', '.join(VIDEO_EXTENSIONS)}) in {target}")
        return found
    if not target.exists():
        raise MisrError(f"no video at {target}")
    if not target.is_file():
        raise MisrError(f"{target} is not a regular file (a FIFO or a device cannot be predicted from)")
    return [target]


def predict_video(models: list[tuple[torch.nn.Module, dict]], video: Path, text: str | None) -> Prediction:
    from misr.features.registry import extractors_for

    settings = models[0][1]["settings"]
    extractors = extractors_for(settings.features)
    clip = Clip("predict$_$" + video.stem, "predict", video.stem, video, text or "", "test", 0.0)
    records: dict[str, dict[str, Any]] = {}
    missing: dict[str, str] = {}
    if not text or not text.strip():
        missing["text"] = "no transcript given (--text)"
    for modality, ex in extractors.items():
        if modality in missing:
            continue
        try:
            records[modality] = ex.extract(clip)
        except ClipError as exc:
            if exc.kind in ("MissingFile", "EmptyFile", "CorruptVideo", "NoVideoTrack", "NoFrames"):
                raise MisrError(exc.message) from None
            missing[modality] = exc.message
    if len(missing) == 3:
        raise MisrError(f"{video}: nothing to predict from ({'; '.join(missing.values())})")
    spec = models[0][1]["spec"]
    if "visual" in records:  # the clip is its own person: its baseline comes from its own frames
        visual = records["visual"]
        view = view_of_clip(visual, extractors["visual"].feature_names(), spec.action_units)
        view.apply(visual["frames"][None], [visual["clip_key"]])
    batch = _batch(records, spec)
    for modality in missing:
        batch = zero_modality(batch, modality)
    scores = []
    with torch.no_grad():
        for model, _ in models:
            model.eval()
            scores.append(float(model(batch)["pred"][0]))
    score = float(np.mean(scores))
    klass = int(settings.convention.class_of(score))
    return Prediction(
        video=str(video),
        score=score,
        spread=float(np.std(scores)),
        klass=klass,
        class_name=settings.convention.class_names[klass],
        label2="positive" if score >= 0 else "negative",
        missing=missing,
        unpractised=bool(missing) and settings.train.modality_dropout <= 0,
    )


def _batch(records: dict[str, dict[str, Any]], spec) -> dict[str, torch.Tensor]:
    """A batch of one clip; a missing modality gets a placeholder of the right shape (then zeroed)."""
    batch: dict[str, torch.Tensor] = {"y": torch.zeros(1)}
    text = records.get("text")
    ids = np.asarray(text["input_ids"], dtype=np.int64) if text else np.array([101, 102], dtype=np.int64)
    batch["text_ids"] = torch.from_numpy(ids)[None]
    batch["text_mask"] = torch.ones_like(batch["text_ids"])
    if spec.text_kind == "hidden":
        hidden = text["hidden"] if text and "hidden" in text else np.zeros((ids.size, spec.text_hidden_dim), np.float32)
        batch["text_hidden"] = torch.from_numpy(np.asarray(hidden, dtype=np.float32))[None]
    for modality, dim in (("audio", spec.audio_dim), ("visual", spec.visual_dim)):
        frames = records[modality]["frames"] if modality in records else np.zeros((1, dim), np.float32)
        if frames.shape[1] != dim:
            raise MisrError(f"the {modality} extractor gives {frames.shape[1]} features; the model expects {dim}")
        batch[modality] = torch.from_numpy(np.asarray(frames, dtype=np.float32))[None]
        batch[f"{modality}_lengths"] = torch.tensor([frames.shape[0]])
    return batch
