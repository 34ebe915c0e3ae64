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
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from misr.compare.base import Contender, own_visual
from misr.compare.runs import SeedRun
from misr.data.mmsa import pad_entry, store_lengths
from misr.errors import MisrError
from misr.msa.convention import Convention
from misr.store import SplitData
from misr.store.read import to_numpy
from misr.store.store import FeatureStore
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

    def __init__(self, name: str, convention: Convention, action_units: str = "relative", label: str | None = None):
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
        self.dataset = "sims" if convention.metric_set == "sims" else "mosi"

    def settings(self) -> dict[str, Any]:
        return {"model": self.name, "config": self.dataset, "action_units": self.action_units, "mmsa": mmsa_version()}

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
        splits = {s: self.entry(store, store.load_split(s, as_torch=False), rows) for s in ("train", "valid")}
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
            ATIO().getTrain(args).do_train(model, loaders)
            args["model_save_path"] = run.folder / MODEL_FILE
            write_text(weights.parent / ARGS_FILE, json.dumps({k: v for k, v in args.items() if is_plain(v)}, indent=2, default=str))
            run.place(weights.parent)
        return {"selected_on": f"MMSA's own rule: the valid {args['KeyEval']}"}

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
            model.to(args["device"]).eval()
            out = []
            loader = torch.utils.data.DataLoader(dataset, batch_size=64, shuffle=False)
            with torch.no_grad():
                for batch in loader:
                    inputs = (batch[k].to(args["device"]) for k in ("text", "audio", "vision"))
                    out.append(model(*inputs)["M"].reshape(-1).float().cpu())
        return torch.cat(out).numpy()

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
