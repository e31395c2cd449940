"""The shipped models' cautions, pinned by their weights.

A model file's hash covers its description (``model_file``), which catches an edited
header, but an unkeyed hash can be recomputed by whoever edits the file. So what the shipped
weights may be presented as is fixed here, keyed by the digest of their arrays
(``model_file.tensors_hash``): a file holding these weights must carry this demonstration
flag and this caveat, whatever its header says, or it is refused. The arrays digests are
the shipped files' ``content_hash`` values before format ``/2`` (docs/benchmarks.md).
Retraining a default model (``scripts/train_default_models.sh``) means a new line here;
``tests/core/test_model_trust.py`` checks that every file in ``resources/models`` has one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from histoviewer.core.errors import ModelLoadError

__all__ = ["SHIPPED_WEIGHTS", "ShippedCaution", "check_shipped_caution"]

_PCAM_CAVEAT = ("research model trained on 6,656 real PatchCamelyon patches and 1,165 synthetic "
                "phantom patches; not validated for clinical use")


@dataclass(frozen=True)
class ShippedCaution:
    """What a shipped model is: its file name, demonstration flag and caveat."""

    file: str
    demonstration: bool
    caveat: str


SHIPPED_WEIGHTS: dict[str, ShippedCaution] = {
    "4a4951d5e1beb57abc0c7b08f1096348bb970048217e4e0ac71c175b4a883cf6":
        ShippedCaution("cnn-pcam.safetensors", False, _PCAM_CAVEAT),
    "fcb7a63a001a36732098dfbb84a75023d56f3d2705a15183e19daaaecc893fac":
        ShippedCaution("handcrafted-pcam.safetensors", False, _PCAM_CAVEAT),
    "c85e628fc47d5ac10dcbb9a3af4171dd48b0a3f80618b4df248ab39541616fcc":
        ShippedCaution("cnn-pcam-resnet.safetensors", False, _PCAM_CAVEAT),
    # the 2.5x screening model of the screened analysis strategy (models.screen_model)
    "9f599bf116e8a641edcd609c966ad21d5bdb5d473ff56e59a118536d14152eb3":
        ShippedCaution("screen-pcam.safetensors", False, _PCAM_CAVEAT),
}


def check_shipped_caution(path: str | os.PathLike[str], description: dict[str, Any],
                          arrays_digest: str) -> None:
    """Refuse a file holding shipped weights whose description presents them otherwise
    (no caveat, another caveat, the demonstration flag changed)."""
    pinned = SHIPPED_WEIGHTS.get(arrays_digest)
    if pinned is None:
        return
    if (bool(description.get("demonstration", False)) != pinned.demonstration
            or description.get("caveat", "") != pinned.caveat):
        raise ModelLoadError(
            f"{path}: holds the weights of HistoViewer's shipped model {pinned.file}, but its "
            f"description changes what they are said to be (demonstration flag or caveat); "
            f"refused. Their caveat: {pinned.caveat}")
