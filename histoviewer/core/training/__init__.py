"""Training both classifiers from a ``PatchSet``: the CNN with early stopping, the handcrafted
model with its regularisation chosen on the validation split.

Reproducible: every random choice (split, shuffling, augmentation, initial weights, dropout)
derives from ``TrainConfig.seed``; the same data and seed give the same model on the same
machine and torch build (CPU float reductions can differ between builds or thread counts).

Training sits above both the classifiers (``models``) and the patch sets it reads
(``patches``), so neither of those imports the other (see the layers contract in
``pyproject.toml``). It imports torch: load it only where training is asked for.
"""

from histoviewer.core.training.cnn import train_cnn
from histoviewer.core.training.common import (
    EpochRecord,
    TrainConfig,
    TrainResult,
    _split,
    load_patches,
    predict_patch_set,
    training_caveat,
)
from histoviewer.core.training.handcrafted import train_handcrafted

__all__ = [
    "EpochRecord",
    "TrainConfig",
    "TrainResult",
    "load_patches",
    "predict_patch_set",
    "train_cnn",
    "train_handcrafted",
    "training_caveat",
]
# ``_split`` is re-exported for tests/core/test_split_three_way.py.
__all__ += ["_split"]
