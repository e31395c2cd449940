"""What a patch classifier reads: square RGB patches of a fixed size at a fixed scale.

A leaf module (it imports only ``errors``): the patch loaders (``patches``) cut patches to
a model's ``InputSpec`` and the models (``models``) declare one, and neither needs the other
for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from histoviewer.core.errors import ModelError

__all__ = ["PCAM_MPP_UM", "PCAM_PATCH_PX", "InputSpec"]

# PatchCamelyon: 96 x 96 px cut from CAMELYON16 level 2 (10x), about 0.972 um/px.
PCAM_PATCH_PX = 96
PCAM_MPP_UM = 0.972


@dataclass(frozen=True)
class InputSpec:
    """What a model expects: square patches of ``patch_px`` pixels at ``mpp`` um/px.

    ``normalisation`` describes, in words a person can check, how uint8 RGB is mapped to
    the model's input (the model applies it itself). ``class_names[1]`` is the class whose
    probability ``predict_proba`` returns.
    """

    patch_px: int = PCAM_PATCH_PX
    mpp: float = PCAM_MPP_UM
    normalisation: str = "rgb / 255"
    class_names: tuple[str, ...] = ("normal", "tumour")

    def __post_init__(self) -> None:
        if not (8 <= int(self.patch_px) <= 4096):
            raise ModelError(f"patch size {self.patch_px} px is outside 8..4096")
        if not (0.05 <= float(self.mpp) <= 64):
            raise ModelError(f"model scale {self.mpp} um/px is outside 0.05..64")
        if len(self.class_names) != 2:
            raise ModelError(f"a patch classifier has two classes, got {self.class_names!r}")

    def to_dict(self) -> dict[str, Any]:
        """The model file's ``input`` record: the scale keeps its file key ``mpp_um``."""
        return {"patch_px": int(self.patch_px), "mpp_um": float(self.mpp),
                "normalisation": self.normalisation, "class_names": list(self.class_names)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InputSpec:
        """From ``to_dict``'s keys; absent keys take the PatchCamelyon defaults."""
        out: dict[str, Any] = {}
        if "patch_px" in data:
            out["patch_px"] = int(data["patch_px"])
        if "mpp_um" in data:
            out["mpp"] = float(data["mpp_um"])
        if "normalisation" in data:
            out["normalisation"] = str(data["normalisation"])
        if "class_names" in data:
            out["class_names"] = tuple(str(c) for c in data["class_names"])
        return cls(**out)

    @property
    def field_um(self) -> float:
        """Side of one patch in micrometres."""
        return self.patch_px * self.mpp
