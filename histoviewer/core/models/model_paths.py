"""Where a model named by the user lives: ``cnn``, ``handcrafted``, a file, or a name in the
user's models folder (``registry`` lists and opens them). Standard library only, so the
model's child process can resolve its model before anything heavy is imported."""

from __future__ import annotations

from pathlib import Path

from histoviewer.core.errors import ModelLoadError
from histoviewer.core.paths import bundled_resources_dir, user_models_dir

__all__ = ["DEFAULT_MODEL_FILES", "MODEL_SUFFIX", "default_models_dir", "resolve_model_path"]

DEFAULT_MODEL_FILES = {
    "cnn": "cnn-pcam.safetensors",
    "handcrafted": "handcrafted-pcam.safetensors",
    "cnn-resnet": "cnn-pcam-resnet.safetensors",
}
MODEL_SUFFIX = ".safetensors"


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
