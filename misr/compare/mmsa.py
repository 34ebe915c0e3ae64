"""MMSA's own models (`pip install '.[mmsa]'`) as contenders of `misr compare`, trained by MMSA's own code.

What runs is MMSA's: its default hyper-parameters for the data set (config_regression.json: MOSI's for the
mosi convention, SIMS's for sims), its data set class (padding; the clip-level averaging of audio and vision
that TFN, LMF and LF_DNN ask for), its model and its trainer, which stops early and keeps the checkpoint of the
best validation loss (L1, i.e. MAE). Every adaptation it needs is in this module:

  - `MMSA_run` is not called: it calls `torch.cuda.set_device` unconditionally (an error without a GPU) and
    reads test straight after training. Its steps are taken here, on the GPU when there is one, and test
    is left to the comparison, which reads it once for every model.
  - torch 2.13's ReduceLROnPlateau no longer takes `verbose`, which MulT's trainer passes: it is dropped.
  - MMSA's per-batch progress bars are silenced.
  - The file MMSA trains from holds train and valid; its `test` entry is valid again (MMSA's loader wants one,
    its trainer never reads it), so test labels never reach MMSA's code.
  - Text: MMSA's non-BERT models read per-token vectors. They are the store's encoder states when it holds
    them (`features.text.store_hidden`, or an imported MMSA file); else the frozen states of the tokenizer's
    own BERT-family encoder run over the stored ids (MiniLM-L6, shipped, for `misr extract`'s default
    tokenizer; what MMSA's files hold for text is likewise a frozen encoder's output); for a small
    vocabulary without an encoder (`misr synth`) the tokens' one-hot vectors.
  - The visual features are seen as this package's models see them (`train.action_units`), so that every
    contender has the same inputs.

Models that need what is not here are refused with the reason (MODEL_NEEDS).
"""

from __future__ import annotations

import contextlib
import json
import math
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from misr.compare.base import Contender, own_visual
from misr.compare.runs import SeedRun
from misr.config.model import GroupsConfig, LossConfig, ModelConfig
from misr.config.train import TrainConfig
from misr.data.mmsa import pad_entry, store_lengths
from misr.errors import MisrError
from misr.msa.convention import Convention
from misr.store import SplitData
from misr.store.read import to_numpy
from misr.store.store import FeatureStore
from misr.training.groups import MODALITIES, group_maes, partition_from
from misr.training.loop import first_selectable_epoch
from misr.util.atomic import write_pickle, write_text

MODEL_FILE, ARGS_FILE = "model.pth", "args.json"  # in a seed's folder of the run cache (misr.compare.runs)
EXTRA_HINT = "pip install '.[mmsa]' (MMSA 2.2.1 and what it needs)"
SUPPORTED = {"tfn": "TFN", "lmf": "LMF", "lf_dnn": "LF_DNN", "mult": "MulT"}
BERT = "a 768-d BERT from the Hugging Face hub, which cannot be loaded offline"
ALIGNED = "word-aligned features (every modality as long as the transcript: MMSA's aligned_50.pkl), which a store does not hold"
MODEL_NEEDS = {
    "misa": BERT,
    "self_mm": BERT,
    "mmim": BERT,
    "bert_mag": BERT,
    "tfr_net": BERT,
    "mfn": ALIGNED,
    "ef_lstm": ALIGNED,
    "graph_mfn": ALIGNED,
    "mfm": ALIGNED,
    "mctn": ALIGNED,
    "mtfn": "SIMS' unimodal labels in MMSA's multi-task form; not adapted here",
    "mlmf": "SIMS' unimodal labels in MMSA's multi-task form; not adapted here",
    "mlf_dnn": "SIMS' unimodal labels in MMSA's multi-task form; not adapted here",
}
ONE_HOT_VOCABULARY = 2048  # above this, one-hot token vectors are too wide to be a fair text input


@dataclass(frozen=True)
class PackageRule:
    """This package's rule for choosing a checkpoint (misr.training.loop), for an MMSA model's training: the same
    measure (train.select_on), from the same epoch (model.invariance.warmup_epochs), the same patience and at most
    the same number of epochs as this package's models, the validation groups fixed by the same rule at that epoch."""

    select_on: str
    first_epoch: int
    patience: int
    epochs: int
    groups: GroupsConfig
    loss: LossConfig

    @classmethod
    def of(cls, model: ModelConfig, train: TrainConfig) -> PackageRule:
        first = min(first_selectable_epoch(model), train.epochs - 1)  # the last epoch always is selectable
        return cls(train.select_on, first, train.patience, train.epochs, model.groups, model.loss)


class EnoughEpochs(Exception):
    """Raised inside MMSA's loop (which has no epoch limit) when the rule's last epoch is done."""


class RuleWatch:
    """Stands in for an MMSA trainer's `do_test` on valid, so that MMSA's own loop, which keeps the checkpoint of
    the lowest valid 'Loss' and stops after `early_stop` epochs without one, keeps this package's choice: its
    'Loss' becomes the rule's measure; before the first selectable epoch a score that falls each epoch (so MMSA
    saves it, each soon replaced, and its patience does not count yet). MMSA trains one epoch past the limit
    before the limit is seen; that epoch is never chosen."""

    WARMUP_SCORE = 1e7  # above any measure, below MMSA's starting best (1e8)

    def __init__(self, rule: PackageRule, original: Any, valid: SplitData, convention: Convention):
        self.rule, self.original, self.convention = rule, original, convention
        self.y = np.asarray(valid.labels, dtype=np.float64)
        self.unimodal = {m: np.asarray(v, dtype=np.float64) for m, v in valid.unimodal_labels.items()}
        self.epoch, self.best, self.best_epoch = -1, math.inf, -1
        self.group: np.ndarray | None = None
        self.partition: str | None = None
        self.parts: list[str] = []

    def __call__(self, model: Any, dataloader: Any, mode: str = "VAL", return_sample_results: bool = False) -> Any:
        if mode != "VAL":
            return self.original(model, dataloader, mode, return_sample_results)
        self.epoch += 1
        if self.epoch >= self.rule.epochs:
            raise EnoughEpochs
        results = self.original(model, dataloader, mode, return_sample_results)
        results["Loss"] = self.score(predictions(model, dataloader))
        return results

    def score(self, preds: np.ndarray) -> float:
        if self.epoch < self.rule.first_epoch:
            return self.WARMUP_SCORE - self.epoch
        if self.rule.select_on == "mae":
            measure = float(self.convention.clip_errors(preds, self.y).mean())
        else:
            if self.group is None:  # fixed at the first selectable epoch, as this package's models fix theirs
                self.fix_groups(preds)
            maes = group_maes(preds, self.y, self.group, self.parts)
            measure = maes["worst_group_MAE" if self.rule.select_on == "worst_group_mae" else "group_mean_MAE"]
        if measure <= self.best - 1e-6:  # MMSA's own test of 'better'
            self.best, self.best_epoch = measure, self.epoch
        return measure

    def fix_groups(self, preds: np.ndarray) -> None:
        if not all(m in self.unimodal and np.isfinite(self.unimodal[m]).all() for m in MODALITIES):
            raise MisrError(
                f"choosing MMSA's checkpoints on validation groups (train.select_on {self.rule.select_on}) needs the "
                "store's label_T/A/V: MMSA's models give no single-modality predictions",
                hint="set compare.mmsa_selection to mmsa, or train.select_on to mae",
            )
        choice = self.rule.groups.partition
        only = choice if choice in MODALITIES else None
        sentiments = {m: v for m, v in self.unimodal.items() if only in (None, m)}
        keep = "all" if choice == "all" else "worst"
        chosen = partition_from(preds, self.y, sentiments, "labels", self.rule.loss, split="validation", keep=keep)
        self.group, self.partition, self.parts = np.asarray(chosen.group), chosen.name, chosen.parts

    def chose(self) -> dict[str, Any]:
        return {"best_epoch": self.best_epoch, "selected_on": self.rule.select_on, "valid_groups": self.partition}


def predictions(model: Any, dataloader: Any) -> np.ndarray:
    """An MMSA model's prediction for every clip of a loader, in its order (the valid loader keeps the split's)."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for batch in dataloader:
            out.append(model(*(batch[k].to(device) for k in ("text", "audio", "vision")))["M"].reshape(-1).float().cpu())
    return torch.cat(out).numpy().astype(np.float64)


def mmsa_version() -> str:
    """The installed MMSA's version, or a clear error when the extra is absent."""
    try:
        from importlib.metadata import version

        import MMSA  # noqa: F401
    except ImportError:
        raise MisrError("MMSA's models need the mmsa extra, which is not installed", hint=EXTRA_HINT) from None
    return version("MMSA")


class MmsaModel(Contender):
    kind = "mmsa"

    def __init__(
        self, name: str, convention: Convention, action_units: str = "relative", label: str | None = None, rule: PackageRule | None = None
    ):
        key = name.lower()
        if key in MODEL_NEEDS:
            raise MisrError(
                f"mmsa:{name} needs {MODEL_NEEDS[key]}", hint=f"models that run here: {', '.join(f'mmsa:{n}' for n in SUPPORTED.values())}"
            )
        if key not in SUPPORTED:
            raise MisrError(
                f"MMSA 2.2.1 has no model {name!r}", hint=f"models that run here: {', '.join(f'mmsa:{n}' for n in SUPPORTED.values())}"
            )
        super().__init__(label or f"mmsa:{SUPPORTED[key]}")
        self.name, self.convention, self.action_units = key, convention, action_units
        self.rule = rule  # None: MMSA's own rule chooses the checkpoint (compare.mmsa_selection)
        self.dataset = "sims" if convention.metric_set == "sims" else "mosi"

    def settings(self) -> dict[str, Any]:
        rule = (
            None
            if self.rule is None
            else {**asdict(self.rule), "groups": self.rule.groups.model_dump(), "loss": self.rule.loss.model_dump()}
        )
        return {"model": self.name, "config": self.dataset, "action_units": self.action_units, "mmsa": mmsa_version(), "rule": rule}

    def check(self, store_dir: Path) -> None:
        mmsa_version()
        text_kind(FeatureStore(store_dir))

    def fit(self, store_dir: Path, run: SeedRun, threads: int) -> dict[str, Any]:
        from MMSA.data_loader import MMDataLoader
        from MMSA.models import AMIO
        from MMSA.trains import ATIO
        from MMSA.utils import setup_seed

        if threads:
            torch.set_num_threads(threads)
        store = FeatureStore(store_dir)
        rows = {r["clip_key"]: r for r in store.clips().to_pylist()}
        data = {s: store.load_split(s, as_torch=False) for s in ("train", "valid")}
        splits = {s: self.entry(store, d, rows) for s, d in data.items()}
        valid = data["valid"]
        run.run.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=run.run) as tmp, adapted():
            features = Path(tmp) / "features.pkl"
            write_pickle(features, {"train": splits["train"], "valid": splits["valid"], "test": splits["valid"]})
            # MMSA saves its best checkpoint as it trains: into the temporary folder, which becomes the seed's
            # folder when training is done, so a killed training never leaves a checkpoint that looks whole
            weights = Path(tmp) / "seed" / MODEL_FILE
            weights.parent.mkdir()
            args = self.args(features, weights, run.seed)
            setup_seed(run.seed)
            loaders = MMDataLoader(args, 0)
            model = AMIO(args).to(args["device"])
            trainer = ATIO().getTrain(args)
            watch = None
            if self.rule is not None:
                args["early_stop"] = self.rule.patience
                watch = trainer.do_test = RuleWatch(self.rule, trainer.do_test, valid, self.convention)
            with contextlib.suppress(EnoughEpochs):
                trainer.do_train(model, loaders)
            args["model_save_path"] = run.folder / MODEL_FILE
            write_text(weights.parent / ARGS_FILE, json.dumps({k: v for k, v in args.items() if is_plain(v)}, indent=2, default=str))
            run.place(weights.parent)
        return watch.chose() if watch is not None else {"selected_on": f"MMSA's own rule: the valid {args['KeyEval']}"}

    def predict(self, store_dir: Path, run: SeedRun, data: SplitData) -> np.ndarray:
        from MMSA.data_loader import MMDataset
        from MMSA.models import AMIO

        store = FeatureStore(store_dir)
        rows = {r["clip_key"]: r for r in store.clips().to_pylist()}
        entry = self.entry(store, to_numpy(data), rows)
        with tempfile.TemporaryDirectory(dir=run.folder) as tmp, adapted():
            features = Path(tmp) / "features.pkl"
            write_pickle(features, {"test": entry})
            args = self.args(features, run.folder / MODEL_FILE, run.seed)
            dataset = MMDataset(args, mode="test")
            args["seq_lens"] = dataset.get_seq_len()
            model = AMIO(args)
            model.load_state_dict(torch.load(args["model_save_path"], map_location="cpu", weights_only=True))
            return predictions(model.to(args["device"]), torch.utils.data.DataLoader(dataset, batch_size=64, shuffle=False))

    def args(self, features: Path, weights: Path, seed: int) -> Any:
        from MMSA.config import get_config_regression

        args = get_config_regression(self.name, self.dataset, "")
        args.update(
            custom_feature=str(features),
            feature_T="",
            feature_A="",
            feature_V="",
            featurePath=str(features),
            model_save_path=weights,
            device=torch.device("cuda" if torch.cuda.is_available() else "cpu"),
            train_mode="regression",
            cur_seed=seed,
        )
        return args

    def entry(self, store: FeatureStore, data: SplitData, rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """A split in MMSA's form, with the text vectors MMSA's models read and the visual view of ours."""
        from misr.data.mmsa import split_entry
        from misr.features.person import view_for

        data = view_for(store, self.action_units).apply_split(own_visual(data))
        entry = split_entry(data, rows)
        kind, detail = text_kind(store)
        ids, mask = data.text.input_ids, data.text.attention_mask
        if kind == "one_hot":
            one_hot = np.zeros((*ids.shape, int(detail)), dtype=np.float32)
            np.put_along_axis(one_hot, ids[..., None].astype(np.int64), 1.0, axis=-1)
            entry["text"] = one_hot * mask[..., None]  # padding stays 0, as in MMSA's own files
        elif kind == "encoder":
            entry["text"] = encoder_states(Path(detail), ids, mask)
        return pad_entry(entry, store_lengths(store))


def text_kind(store: FeatureStore) -> tuple[str, int | str]:
    """How MMSA's models get per-token text vectors from this store: ("hidden", dim), ("encoder", its folder)
    or ("one_hot", vocabulary)."""
    from misr.shipped import minilm_dir

    metas = store.metadata("text")
    if not metas:
        raise MisrError(f"the store {store.root} has no text features", hint="run `misr extract` or `misr synth` first")
    meta = metas[-1]
    if int(meta.get("dim") or 0):
        return "hidden", int(meta["dim"])
    tokenizer = str(meta.get("tokenizer", ""))
    if tokenizer == "minilm":
        return "encoder", str(minilm_dir())
    if tokenizer and (Path(tokenizer) / "config.json").exists():
        return "encoder", tokenizer
    vocabulary = int(meta.get("vocab_size") or 0)
    if 0 < vocabulary <= ONE_HOT_VOCABULARY:
        return "one_hot", vocabulary
    raise MisrError(
        f"MMSA's models read per-token text vectors; {store.root} holds only token ids of tokenizer {tokenizer!r}, "
        "whose encoder is not here",
        hint="extract with features.text.store_hidden=true (the frozen encoder's states), or import an MMSA file that has them",
    )


@torch.no_grad()
def encoder_states(folder: Path, ids: np.ndarray, mask: np.ndarray, batch: int = 64) -> np.ndarray:
    """The frozen encoder's last hidden states [N, L, H] over stored ids; padding positions 0."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(folder), local_files_only=True).eval()
    out = []
    for start in range(0, len(ids), batch):
        i = torch.as_tensor(ids[start : start + batch], dtype=torch.long)
        m = torch.as_tensor(mask[start : start + batch], dtype=torch.long)
        out.append((model(input_ids=i, attention_mask=m).last_hidden_state * m[..., None]).float().numpy())
    return np.concatenate(out) if out else np.zeros((0, ids.shape[1], model.config.hidden_size), dtype=np.float32)


def is_plain(v: Any) -> bool:
    return isinstance(v, str | int | float | bool | list | dict | type(None))


@contextlib.contextmanager
def adapted() -> Iterator[None]:
    """MMSA 2.2.1 on today's torch, quietly: what its trainers import is patched for the duration only."""
    import sys

    import MMSA.trains  # noqa: F401  (imports every trainer module)
    import tqdm

    class Plateau(torch.optim.lr_scheduler.ReduceLROnPlateau):
        def __init__(self, *args: Any, verbose: Any = None, **kwargs: Any):  # noqa: ARG002 (torch 2.13 dropped it)
            super().__init__(*args, **kwargs)

    def quiet(*args: Any, **kwargs: Any) -> Any:
        return tqdm.tqdm(*args, **{**kwargs, "disable": True})

    saved = []
    for module_name, module in list(sys.modules.items()):
        if not module_name.startswith("MMSA.trains.") or module is None:
            continue
        for name, new in (("ReduceLROnPlateau", Plateau), ("tqdm", quiet)):
            if hasattr(module, name):
                saved.append((module, name, getattr(module, name)))
                setattr(module, name, new)
    try:
        yield
    finally:
        for module, name, old in saved:
            setattr(module, name, old)
