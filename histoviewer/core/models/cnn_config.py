"""The CNN architectures' names, default settings and bounds, checked without torch.

``cnn_arch`` builds torch networks from these settings; ``cnn_chain`` describes the simple
conv chains among them as arrays for the torch-free engine (``cnn_ort``). Both check a
file's settings here first, so a model file is refused for the same reasons whichever
engine runs it, and checking one never costs a torch import (seconds of start-up).
"""

from __future__ import annotations

from typing import Any

from histoviewer.core.errors import ModelLoadError

__all__ = ["ARCHITECTURE_NAMES", "DEFAULT_ARCHITECTURE", "DEFAULT_CONFIGS", "MAX_PARAMETERS", "checked_settings"]

DEFAULT_ARCHITECTURE = "compact-cnn"

DEFAULT_CONFIGS: dict[str, dict[str, Any]] = {
    # One extra conv, at 6 px: 1.2x strided-cnn's CPU time per patch. A second one at 12 px
    # (depths 1-1-2-2) measured 1.7x in whole-slide analyze, and expand 256 another +0.2x,
    # over the ~1.5x the whole-slide budget allows (docs/benchmarks.md).
    "compact-cnn": {"widths": [16, 32, 64, 128], "depths": [1, 1, 1, 2], "expand": 0,
                    "dropout": 0.2},
    "strided-cnn": {"widths": [16, 32, 64, 128], "dropout": 0.2},
    "resnet": {"widths": [32, 64, 128, 256], "blocks": [2, 2, 2, 2], "dropout": 0.2},
    "resnet50": {"dropout": 0.2},
    # The low-magnification screening model (``models.screen_model``): 24 px patches at
    # 3.888 um/px (2.5x), three stages 24 -> 12 -> 6 -> 3 px, ~0.03 M parameters.
    "screen-cnn": {"widths": [16, 32, 64], "depths": [1, 1, 2], "expand": 0, "dropout": 0.2},
}
ARCHITECTURE_NAMES: tuple[str, ...] = tuple(DEFAULT_CONFIGS)

# Bounds on every architecture setting, checked before anything is built: a file's settings
# choose the network's size, and "widths": [100000, ...] would build gigabytes. The bounds
# sit far above anything that makes sense for 96 px patches (ResNet-50 stays the largest).
MAX_STAGES = 8
MAX_WIDTH = 2048
MAX_STAGE_DEPTH = 16
MAX_PARAMETERS = 64_000_000  # ResNet-50 has 23.5 M


def _check_settings(architecture: str, cfg: dict[str, Any]) -> None:
    """``ModelLoadError`` naming the setting when one is of the wrong type or out of bounds."""
    def fail(key: str, what: str) -> ModelLoadError:
        return ModelLoadError(f"architecture {architecture}: setting {key!r} {what}")

    def whole(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    for key in ("widths", "depths", "blocks"):
        if key not in cfg:
            continue
        values = cfg[key]
        high = MAX_WIDTH if key == "widths" else MAX_STAGE_DEPTH
        if not isinstance(values, (list, tuple)) or not 1 <= len(values) <= MAX_STAGES:
            raise fail(key, f"must be a list of 1..{MAX_STAGES} whole numbers")
        if not all(whole(v) and 1 <= v <= high for v in values):
            raise fail(key, f"must hold whole numbers in 1..{high}, got {list(values)[:MAX_STAGES]}")
    if "expand" in cfg and not (whole(cfg["expand"]) and 0 <= cfg["expand"] <= MAX_WIDTH):
        raise fail("expand", f"must be a whole number in 0..{MAX_WIDTH}")
    if "dropout" in cfg:
        value = cfg["dropout"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise fail("dropout", "must be a number in [0, 1)")
    lengths = {len(cfg[k]) for k in ("widths", "depths", "blocks") if k in cfg}
    if len(lengths) > 1:
        raise ModelLoadError(f"architecture {architecture}: widths and depths/blocks differ in length")


def checked_settings(architecture: str, config: dict[str, Any] | None) -> dict[str, Any]:
    """The settings ``architecture`` is built with (``config``, else its defaults), checked:
    ``ModelLoadError`` for an unknown architecture or unknown, mistyped or out-of-bounds
    settings."""
    if architecture not in DEFAULT_CONFIGS:
        raise ModelLoadError(
            f"unknown CNN architecture {architecture!r}; known: {', '.join(ARCHITECTURE_NAMES)}"
        )
    if config is not None and not isinstance(config, dict):
        raise ModelLoadError(f"settings for {architecture} must be a JSON object")
    cfg = dict(DEFAULT_CONFIGS[architecture] if config is None else config)
    unknown = set(cfg) - set(DEFAULT_CONFIGS[architecture])
    if unknown:
        raise ModelLoadError(f"unknown settings for {architecture}: {sorted(unknown)}")
    _check_settings(architecture, cfg)
    return cfg
