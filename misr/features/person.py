"""Action units relative to the person: a neutral baseline per person, subtracted as OpenFace does for its
dynamic AUs (Baltrusaitis et al., 2015, 2018), so that a level says what the face does, not who it is.

The landmark extractor stores each action unit as an activation against a generic neutral face, not
clipped, and per clip the quantiles of each activation over its face frames (`QUANTILES`); the first
clip of each video also keeps the face descriptor of its person (dlib's face recognition network).
From those, here:

  persons    videos whose descriptors are close (average linkage under `SAME_PERSON`, dlib's own
             threshold) are one person; a video without a descriptor is a person of its own. MOSI and
             MOSEI have about one speaker per video, and some speakers in several videos.
  baseline   per person and action unit, the `BASELINE_QUANTILE` quantile of the activation over all the
             person's face frames (pooled from the clips' quantiles): a low quantile, because a talking
             face is at rest more often than it smiles or frowns, and a person who smiles in most of
             their clips still has frames at rest.
  view       what a model sees: "raw" clips the activations to [0, 5]; "relative" clips them minus the
             person's baseline, and measures AU45 (eye closure) as the share of the person's usual eye
             opening that is closed.

A baseline uses the clips' features only, never their labels, and every clip of the person (in any
split), as OpenFace normalises over a whole video. A video predicted on its own is its own person.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from misr.features.facs import AU_TABLE, QUANTILES

BASELINE_QUANTILE = 0.10  # chosen with benchmarks/action_units.py (neutral spread across speakers, demo AU12 rank)
SAME_PERSON = 0.6  # face-descriptor distance under which dlib calls two faces one person
EYE_CLOSED_SHARE = 0.7  # AU45 reaches 5 when the eye opening is this much below the person's usual one
EYE_AUS = ("AU05_r", "AU45_r")


def persons(video_descriptors: Mapping[str, Sequence[np.ndarray]]) -> dict[str, str]:
    """video_id -> person id (the first of its videos, sorted): videos with descriptors of one face share it."""
    videos = sorted(video_descriptors)
    described = [v for v in videos if len(video_descriptors[v])]
    person = {v: v for v in videos}
    if len(described) > 1:
        from scipy.cluster.hierarchy import fcluster, linkage
        from scipy.spatial.distance import pdist

        points = np.stack([np.mean(np.asarray(video_descriptors[v], dtype=np.float64), axis=0) for v in described])
        labels = fcluster(linkage(pdist(points), method="average"), t=SAME_PERSON, criterion="distance")
        first: dict[int, str] = {}
        for video, label in zip(described, labels, strict=True):
            person[video] = first.setdefault(int(label), video)
    return person


def pooled_quantile(quantiles: Sequence[np.ndarray], weights: Sequence[float], q: float) -> np.ndarray:
    """The q quantile of each column over several clips' frames, from each clip's `QUANTILES` [K, A] and its
    frame count: the pooled distribution is the frame-weighted mixture of the clips' (each interpolated
    between its quantiles, and one step beyond the outer ones to levels 0 and 1)."""
    step = QUANTILES[1] - QUANTILES[0]
    levels = np.r_[0.0, QUANTILES, 1.0]
    w = np.asarray(weights, dtype=np.float64) / np.sum(weights)
    sketches = [np.asarray(x, dtype=np.float64).reshape(len(QUANTILES), -1) for x in quantiles]
    out = np.empty(sketches[0].shape[1])
    for a in range(len(out)):
        points = []
        for sk in sketches:
            col = np.maximum.accumulate(sk[:, a])
            low = col[0] - (col[1] - col[0]) * QUANTILES[0] / step
            high = col[-1] + (col[-1] - col[-2]) * (1 - QUANTILES[-1]) / step
            points.append(np.r_[low, col, high])
        grid = np.unique(np.concatenate(points))
        cdf = sum(wi * np.interp(grid, pts, levels, left=0.0, right=1.0) for wi, pts in zip(w, points, strict=True))
        out[a] = np.interp(q, cdf, grid) if len(grid) > 1 else grid[0]
    return out


@dataclass
class ClipFace:
    """What the store keeps per clip for its person's baseline."""

    video_id: str
    face_frames: float
    quantiles: np.ndarray | None  # [len(QUANTILES), n AUs]; None without a face or from another extractor
    descriptor: np.ndarray | None = None


def baselines(clips: Mapping[str, ClipFace], quantile: float = BASELINE_QUANTILE) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """clip_key -> its person's baseline [2, n AUs] (the `quantile` and the median), and clip_key -> person."""
    descriptors: dict[str, list[np.ndarray]] = {}
    for c in clips.values():
        descriptors.setdefault(c.video_id, [])
        if c.descriptor is not None:
            descriptors[c.video_id].append(np.asarray(c.descriptor))
    person_of_video = persons(descriptors)
    members: dict[str, list[str]] = {}
    for key, c in clips.items():
        if c.quantiles is not None and c.face_frames > 0:
            members.setdefault(person_of_video[c.video_id], []).append(key)
    level: dict[str, np.ndarray] = {}
    for person, keys in members.items():
        qs, ws = [clips[k].quantiles for k in keys], [clips[k].face_frames for k in keys]
        level[person] = np.stack([pooled_quantile(qs, ws, quantile), pooled_quantile(qs, ws, 0.5)])
    person_of = {k: person_of_video[c.video_id] for k, c in clips.items()}
    return {k: level[p] for k, p in person_of.items() if p in level}, person_of


@dataclass
class ActionUnitView:
    """Turns stored activations into what a model sees, in place on [N, T, D] visual features."""

    mode: str  # raw | relative
    columns: list[int] | None  # the action-unit columns; None: the features have none (nothing to do)
    face_column: int | None = None
    baseline: dict[str, np.ndarray] = field(default_factory=dict)  # clip_key -> [2, n AUs] (relative)
    persons: int = 0

    def describe(self) -> str:
        if self.columns is None:
            return "the store's visual features have no landmark action units: used as stored"
        if self.mode == "raw":
            return "action units: raw (activations clipped to [0, 5])"
        return f"action units: relative to the person ({self.persons} person(s) with a baseline)"

    def apply_split(self, data):
        """In place on a `SplitData`'s visual features (numpy, or torch tensors on the CPU); returns it."""
        if data.visual is not None and self.columns is not None:
            values = data.visual.values
            self.apply(values if isinstance(values, np.ndarray) else values.numpy(), data.clip_keys)
        return data

    def apply(self, values: np.ndarray, clip_keys: Sequence[str]) -> None:
        if self.columns is None:
            return
        cols = np.asarray(self.columns)
        au = values[..., cols]
        if self.mode == "relative":
            missing = [k for k in clip_keys if k not in self.baseline]
            base = np.stack([self.baseline.get(k, np.zeros((2, len(cols)))) for k in clip_keys]).astype(values.dtype)
            au = relative(au, base)
            if missing:  # no face in any frame: nothing to be relative to, and nothing to show
                au[[i for i, k in enumerate(clip_keys) if k not in self.baseline]] = 0.0
        au = np.clip(au, 0.0, 5.0)
        if self.face_column is not None:
            au *= (values[..., self.face_column] > 0)[..., None]  # frames without a face stay 0
        values[..., cols] = au


def relative(au: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Activations [N, T, A] minus each clip's person baseline [N, 2, A]; the eyes' AUs against the median (an
    open eye: blinks are brief, and would pull a low quantile down), AU45 (the last) as the share of the
    person's usual eye opening that is closed."""
    at_median = np.array([name in EYE_AUS for name, *_ in AU_TABLE])
    out = au - np.where(at_median, base[:, 1, :], base[:, 0, :])[:, None, :]
    _, _, neutral, span = AU_TABLE[-1]  # eye_closure = -(opening / width): activation -> opening ratio
    opening = -(au[..., -1] * span / 5.0 + neutral)
    usual = np.maximum(-(base[:, None, 1, -1] * span / 5.0 + neutral), 1e-3)
    out[..., -1] = (1.0 - opening / usual) / EYE_CLOSED_SHARE * 5.0
    return out


def action_unit_columns(feature_names: Sequence[str]) -> tuple[list[int], int] | None:
    """The landmark extractor's AU columns and its face column, or None for features without them."""
    names = [a[0] for a in AU_TABLE]
    if not set(names) <= set(feature_names) or "face" not in feature_names:
        return None
    return [list(feature_names).index(n) for n in names], list(feature_names).index("face")


def view_for(store, mode: str) -> ActionUnitView:
    """The view of a store's visual features for a model trained with `train.action_units` = mode."""
    from misr.errors import MisrError

    metas = store.metadata("visual")
    found = action_unit_columns(metas[-1].get("feature_names", [])) if metas else None
    if found is None:
        return ActionUnitView(mode, None)  # synthetic or imported features, py-feat's AUs: used as stored
    columns, face = found
    if mode == "raw":
        return ActionUnitView(mode, columns, face)
    rows = store.latest_values("visual", ["au_quantiles", "face_descriptor", "n_frames", "face_ratio", "absent"])
    lacking = [k for k, r in rows.items() if r["au_quantiles"] is None and not r["absent"]]
    if lacking:
        versions = sorted({f"{m.get('extractor')} {m.get('extractor_version')}" for m in metas})
        raise MisrError(
            f"train.action_units=relative needs each clip's action-unit quantiles, which {len(lacking)} clip(s) of "
            f"{store.root} lack (visual extractor {', '.join(versions)}; landmarks 5 writes them)",
            hint="re-extract the store with this version of misr, or set train.action_units=raw",
        )
    clips = store.clips()
    video_of = dict(zip(clips.column("clip_key").to_pylist(), clips.column("video_id").to_pylist(), strict=True))
    faces = {
        k: ClipFace(
            video_id=str(video_of.get(k) or k),
            face_frames=float(r["n_frames"] or 0) * float(r["face_ratio"] or 0),
            quantiles=None if r["au_quantiles"] is None or r["absent"] else np.asarray(r["au_quantiles"]),
            descriptor=None if r["face_descriptor"] is None else np.asarray(r["face_descriptor"]),
        )
        for k, r in rows.items()
        if k in video_of
    }
    base, person_of = baselines(faces)
    return ActionUnitView(mode, columns, face, base, persons=len({person_of[k] for k in base}))


def view_of_clip(record: Mapping, feature_names: Sequence[str], mode: str) -> ActionUnitView:
    """The view for one clip extracted on its own (`misr predict`): the clip is its own person."""
    found = action_unit_columns(feature_names)
    if found is None:
        return ActionUnitView(mode, None)
    key, quantiles = record["clip_key"], record.get("au_quantiles")
    frames = np.asarray(record["frames"])
    base = {}
    if mode == "relative" and quantiles is not None:
        base, _ = baselines({key: ClipFace(key, float((frames[:, found[1]] > 0).sum()), np.asarray(quantiles))})
    return ActionUnitView(mode, found[0], found[1], base, persons=len(base))
