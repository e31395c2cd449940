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
from histoviewer.core.paths import bundled_resources_dir, user_models_dir

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MODEL_FILES",
    "DEFAULT_MODEL_NAMES",
    "AvailableModel",
    "available_models",
    "open_model",
    "resolve_model_path",
]

DEFAULT_MODEL_FILES = {
    "cnn": "cnn-pcam.safetensors",
    "handcrafted": "handcrafted-pcam.safetensors",
    "cnn-resnet": "cnn-pcam-resnet.safetensors",
}
DEFAULT_MODEL_NAMES = tuple(DEFAULT_MODEL_FILES)
MODEL_SUFFIX = ".safetensors"


@dataclass(frozen=True)
class AvailableModel:
    """A model file found on disk, with its header (or why it cannot be used)."""

    key: str  # what to type: "cnn", "handcrafted", or the file's path
    path: Path
    info: ModelInfo | None
    problem: str = ""


def default_models_dir() -> Path:
    return bundled_resources_dir() / "models"


def _default_model_path(key: str) -> Path:
    return default_models_dir() / DEFAULT_MODEL_FILES[key]


def resolve_model_path(spec: str | Path) -> Path:
    """``cnn``/``handcrafted`` -> the bundled file; an existing path -> itself; a bare name ->
    ``<models folder>/<name>[.safetensors]``. Raises ModelLoadError naming what was tried."""
    text = str(spec)
    if text in DEFAULT_MODEL_FILES:
        path = _default_model_path(text)
        if not path.exists():
            raise ModelLoadError(
                f"default model {text!r} is missing ({path}); rebuild it with "
                "scripts/train_default_models.sh"
            )
        return path
    path = Path(text).expanduser()
    if path.exists():
        return path
    tried = [path]
    if path.parent == Path("."):
        for candidate in (user_models_dir() / text, user_models_dir() / (text + MODEL_SUFFIX)):
            tried.append(candidate)
            if candidate.exists():
                return candidate
    raise ModelLoadError(
        f"model {text!r} not found (tried {', '.join(str(t) for t in tried)}); use 'cnn', "
        f"'handcrafted', a model file path, or a file in {user_models_dir()}"
    )


def open_model(spec: str | Path, device: str = "auto") -> PatchClassifier:
    """Resolve and load a model (see ``resolve_model_path``)."""
    return load_model(resolve_model_path(spec), device=device)


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
