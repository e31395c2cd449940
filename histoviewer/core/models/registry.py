"""Resolve what the user typed for a model: ``cnn``, ``handcrafted``, a file, or a name in
the user's models folder; and list every model available.

The bundled models live in ``resources/models/``, trained by
``scripts/train_default_models.sh`` on real PatchCamelyon patches and a few phantom patches
(their ``ModelInfo.caveat`` says what on; their held-out numbers are in the header's
``extra["evaluations"]``): ``cnn`` and ``handcrafted`` are fast enough on 2 CPU cores for the
whole-slide and live budgets; ``cnn-resnet`` is the more accurate ResNet-18-shaped CNN for
computers with a GPU (about 10x ``cnn``'s CPU time per patch, docs/benchmarks.md).
"""

from __future__ import annotations

import logging
import stat
from dataclasses import dataclass
from pathlib import Path

from histoviewer.core.errors import ModelLoadError
from histoviewer.core.models.classifier import ModelInfo, PatchClassifier
from histoviewer.core.models.model_file import load_model, read_model_info
from histoviewer.core.models.model_paths import (  # the resolver lives where the model child can import it cheaply
    DEFAULT_MODEL_FILES,
    MODEL_SUFFIX,
    _default_model_path,
    default_models_dir,
    resolve_model_path,
)
from histoviewer.core.paths import user_models_dir

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MODEL_FILES",
    "DEFAULT_MODEL_NAMES",
    "MODEL_SUFFIX",
    "AvailableModel",
    "available_models",
    "default_models_dir",
    "open_model",
    "resolve_model_path",
]

DEFAULT_MODEL_NAMES = tuple(DEFAULT_MODEL_FILES)


@dataclass(frozen=True)
class AvailableModel:
    """A model file found on disk, with its header (or why it cannot be used)."""

    key: str  # what to type: "cnn", "handcrafted", or the file's path
    path: Path
    info: ModelInfo | None
    problem: str = ""


def open_model(spec: str | Path, device: str = "auto", engine: str | None = None) -> PatchClassifier:
    """Resolve and load a model (see ``resolve_model_path``; ``engine``: ``load_model``'s)."""
    return load_model(resolve_model_path(spec), device=device, engine=engine)


def _is_model_file(path: Path) -> bool:
    """A regular file (symlinks followed); anything else in the models folder (a FIFO, which
    would block the scan for ever, a device, a folder named ``*.safetensors``) is skipped
    with a warning, by ``os.stat`` alone."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        log.warning("%s: skipped in the models folder: %s", path, exc.strerror or exc)
        return False
    if not stat.S_ISREG(mode):
        log.warning("%s: skipped in the models folder: not a regular file", path)
        return False
    return True


def available_models() -> list[AvailableModel]:
    """The default models, then every ``*.safetensors`` in the user's models folder."""
    found: list[AvailableModel] = []
    entries = [(key, _default_model_path(key)) for key in DEFAULT_MODEL_FILES]
    folder = user_models_dir()
    if folder.is_dir():
        entries += [(str(p), p) for p in sorted(folder.glob("*" + MODEL_SUFFIX)) if _is_model_file(p)]
    for key, path in entries:
        try:
            found.append(AvailableModel(key, path, read_model_info(path)))
        except ModelLoadError as exc:
            found.append(AvailableModel(key, path, None, str(exc)))
    return found
