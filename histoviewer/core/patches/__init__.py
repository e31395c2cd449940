"""Patch datasets for training and evaluation, always delivered at a model's scale.

No Qt here. ``open_patch_set(path, spec)`` detects the layout (PatchCamelyon HDF5, Kaggle
folder, class folders, flat image folder, slides + annotations) and returns a ``PatchSet``
whose ``read`` gives ``(n, P, P, 3)`` uint8 RGB at ``spec.mpp`` um/px.
"""

from histoviewer.core.patches.base import PatchSet, iter_batches
from histoviewer.core.patches.open import LAYOUT_CHOICES, LAYOUTS, detect_layout, open_patch_set
from histoviewer.core.patches.resample import to_model_scale
from histoviewer.core.patches.split import train_valid_split
from histoviewer.core.patches.tissue import TissueMap, slide_tissue_map, tissue_mask

__all__ = [
    "LAYOUTS",
    "LAYOUT_CHOICES",
    "PatchSet",
    "TissueMap",
    "detect_layout",
    "iter_batches",
    "open_patch_set",
    "slide_tissue_map",
    "tissue_mask",
    "to_model_scale",
    "train_valid_split",
]
