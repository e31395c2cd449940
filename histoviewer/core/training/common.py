"""What both trainers share: the configuration, the train / valid / test split of the sources,
the caveat, calibration and stain fitting, batched reading and prediction over a patch set."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from histoviewer.core.errors import PatchDataError
from histoviewer.core.input_spec import InputSpec
from histoviewer.core.models.calibration_metrics import calibration_metrics
from histoviewer.core.models.classifier import (
    RESEARCH_CAVEAT,
    VALID_AUC,
    ModelInfo,
    PatchClassifier,
)
from histoviewer.core.models.cnn_arch import DEFAULT_ARCHITECTURE
from histoviewer.core.models.metrics import PatchMetrics, binary_metrics
from histoviewer.core.models.operating_point import (
    DEFAULT_OPERATING_RULE,
    DEFAULT_TARGET_SENSITIVITY,
    calibrate_and_choose,
)
from histoviewer.core.models.stain_norm import EXTRA_KEY as STAIN_KEY
from histoviewer.core.models.stain_norm import StainNormaliser, fit_stain_normaliser
from histoviewer.core.patches.base import iter_batches
from histoviewer.core.patches.concat import source_kind
from histoviewer.core.patches.split import (
    DEFAULT_TEST_FRACTION,
    DEFAULT_VALID_FRACTION,
    ids_sha256,
    three_way_split,
)
from histoviewer.core.progress import NO_CONTROL, JobControl

Log = Callable[[str], None]


@dataclass(frozen=True)
class TrainConfig:
    """Training settings. Patch sets are held in RAM when they fit in ``max_ram_mb``.

    Without a separate validation set, each source in ``valid_from`` (0-based source numbers;
    None: every source) is cut into train / valid / test by ``valid_fraction`` and
    ``test_fraction`` (``three_way_split``, seeded by ``split_seed``, apart from ``seed`` so a
    new training seed keeps the same test patches); the other sources only train.
    ``calibration``: "auto" (temperature for the CNN, Platt for the handcrafted model),
    "temperature", "platt", "isotonic" or "none". ``operating_rule``: how the operating point is
    chosen on the calibrated validation probabilities ("youden", or "sensitivity" for the
    highest threshold with validation sensitivity >= ``target_sensitivity``; see
    ``models.operating_point``). ``caveat``: overrides the caveat written
    from the training data.
    """

    architecture: str = DEFAULT_ARCHITECTURE
    epochs: int = 30
    batch_size: int = 128
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    patience: int = 5
    seed: int = 0
    valid_fraction: float = DEFAULT_VALID_FRACTION
    test_fraction: float = DEFAULT_TEST_FRACTION
    valid_from: tuple[int, ...] | None = None
    split_seed: int = 0
    calibration: str = "auto"
    target_sensitivity: float = DEFAULT_TARGET_SENSITIVITY
    operating_rule: str = DEFAULT_OPERATING_RULE
    caveat: str = ""
    augment: bool = True
    device: str = "auto"
    max_ram_mb: int = 3072
    name: str = ""
    demonstration: bool = False
    # Recipe (docs/benchmarks.md, "Default CNN architecture ... (issue 13)"): validation and the kept weights
    # use an exponential moving average of the weights (0 = off), which smooths the
    # epoch-to-epoch swings of validation AUC; targets are smoothed towards 0.5 by
    # label_smoothing / 2.
    ema_decay: float = 0.99
    label_smoothing: float = 0.0
    # Starting weights (safetensors, matched by name, head excluded); "" = random.
    init_weights: str = ""
    stain_norm: str = "none"  # "none", "reinhard" or "macenko": fitted on training patches


# Training patches the stain normalisation target is summarised over (median), drawn with the seed.
STAIN_FIT_SAMPLE = 2000


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    train_loss: float
    valid_loss: float
    valid_auc: float | None
    seconds: float


@dataclass
class TrainResult:
    classifier: PatchClassifier
    valid_metrics: PatchMetrics
    n_train: int
    n_valid: int
    seconds: float
    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False
    seconds_per_epoch: float = 0.0
    notes: list[str] = field(default_factory=list)
    n_test: int = 0


def _require_labels(patch_set: Any) -> np.ndarray:
    labels = patch_set.labels
    if labels is None:
        raise PatchDataError(f"{patch_set.description}: training needs labelled patches")
    labels = np.asarray(labels).astype(np.int64)
    if labels.min(initial=1) == labels.max(initial=0):
        raise PatchDataError(
            f"{patch_set.description}: training needs both classes, found only label {labels[0]}"
        )
    return labels


def _read_batches(
    patch_set: Any, indices: Sequence[int], batch_size: int, control: JobControl, what: str
) -> Iterator[np.ndarray]:
    """``patch_set.read`` over ``indices`` in order, batch by batch, reported as one stage."""
    with control.stage(what, len(indices)) as stage:
        for batch, _labels, _idx in iter_batches(patch_set, indices, batch_size):
            control.check(what)
            yield batch
            stage.update(len(batch))


def load_patches(
    patch_set: Any,
    indices: Sequence[int],
    *,
    batch_size: int = 512,
    control: JobControl = NO_CONTROL,
    what: str = "reading patches",
) -> np.ndarray:
    """Read ``indices`` of ``patch_set`` into one uint8 array (model scale), in order."""
    chunks = list(_read_batches(patch_set, indices, batch_size, control, what))
    if chunks:
        return np.concatenate(chunks)
    p = patch_set.spec.patch_px
    return np.empty((0, p, p, 3), np.uint8)


@dataclass(frozen=True)
class _Split:
    """Training and validation indices, each into its own patch set (often the same one);
    the test part (never read by training) and what each source contributed, for the record."""

    train_set: Any
    train_idx: np.ndarray
    train_labels: np.ndarray
    valid_set: Any
    valid_idx: np.ndarray
    valid_labels: np.ndarray
    test_idx: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    sources: tuple[dict[str, Any], ...] = ()


def _source_record(part: Any, role: str) -> dict[str, Any]:
    labels = np.asarray(part.labels)
    return {"description": part.description, "layout": part.layout, "kind": source_kind(part),
            "n": len(part), "tumour": int(labels.sum()), "ids_sha256": ids_sha256(part.ids),
            "role": role, "n_train": 0, "n_valid": 0, "n_test": 0, "split": None}


def _split(patch_set: Any, valid_set: Any | None, cfg: TrainConfig, log: Log) -> _Split:
    """Cut each source in ``cfg.valid_from`` into train / valid / test (whole slides when it has
    several; see ``three_way_split``) and train on all of the others; or, when ``valid_set``
    is given (PatchCamelyon's official split), train on all of ``patch_set`` and validate on it."""
    labels = _require_labels(patch_set)
    parts = list(getattr(patch_set, "parts", (patch_set,)))
    offsets = np.asarray(getattr(patch_set, "offsets", (0, len(patch_set))), np.int64)
    test_idx = np.zeros(0, np.int64)
    sources: list[dict[str, Any]] = []
    if valid_set is None:
        eligible = range(len(parts)) if cfg.valid_from is None else cfg.valid_from
        bad = [k for k in eligible if not 0 <= k < len(parts)]
        if bad or not eligible:
            raise PatchDataError(f"validation must come from one or more of the {len(parts)} sources, "
                                 f"got {list(eligible)}", setting="valid_from")
        train, valid, test = [], [], []
        for k, part in enumerate(parts):
            if k in eligible:
                cut = three_way_split(part, cfg.valid_fraction, cfg.test_fraction, cfg.split_seed)
                rec = _source_record(part, "train, validation and test")
                rec.update(n_train=cut.rule.n_train, n_valid=cut.rule.n_valid, n_test=cut.rule.n_test,
                           split=cut.rule.to_dict())
                train.append(cut.train + offsets[k])
                valid.append(cut.valid + offsets[k])
                test.append(cut.test + offsets[k])
                log(f"split of {part.description}: {cut.rule.describe()}")
            else:
                rec = _source_record(part, "training only")
                rec.update(n_train=len(part))
                train.append(np.arange(len(part), dtype=np.int64) + offsets[k])
            sources.append(rec)
        train_idx, valid_idx, test_idx = (np.sort(np.concatenate(v)) for v in (train, valid, test))
        valid_set, valid_labels = patch_set, labels
    else:
        valid_labels = _require_labels(valid_set)
        train_idx, valid_idx = np.arange(len(patch_set)), np.arange(len(valid_set))
        for part in parts:
            rec = _source_record(part, "training only")
            rec.update(n_train=len(part))
            sources.append(rec)
        rec = _source_record(valid_set, "validation only (a separate set)")
        rec.update(n_valid=len(valid_set))
        sources.append(rec)
    split = _Split(patch_set, np.asarray(train_idx, dtype=np.int64), labels, valid_set,
                   np.asarray(valid_idx, dtype=np.int64), valid_labels,
                   np.asarray(test_idx, dtype=np.int64), tuple(sources))
    for name, y in (("training", labels[split.train_idx]),
                    ("validation", valid_labels[split.valid_idx])):
        pos = int(y.sum())
        if pos == 0 or pos == len(y):
            raise PatchDataError(
                f"{patch_set.description}: the {name} split has only one class "
                f"({len(y)} patches); add data or change the validation fraction",
                setting="valid_fraction",
            )
    log(
        f"split: {len(split.train_idx)} training ({int(labels[split.train_idx].sum())} tumour), "
        f"{len(split.valid_idx)} validation ({int(valid_labels[split.valid_idx].sum())} tumour), "
        f"{len(split.test_idx)} test (held out, unread), split seed {cfg.split_seed}"
    )
    return split


def training_caveat(sources: Sequence[dict[str, Any]]) -> str:
    """"research model trained on 6,657 real PatchCamelyon patches and 1,800 synthetic phantom
    patches; not validated for clinical use", from the training patches of each source."""
    counts: dict[str, int] = {}
    for rec in sources:
        if rec["n_train"]:
            counts[rec["kind"]] = counts.get(rec["kind"], 0) + int(rec["n_train"])
    phrases = [f"{n:,} {kind + ' ' if kind else 'labelled '}patches" for kind, n in counts.items()]
    what = " and ".join([", ".join(phrases[:-1]), phrases[-1]] if len(phrases) > 1 else phrases)
    return f"research model trained on {what}; {RESEARCH_CAVEAT}"


def _calibrate(info: ModelInfo, valid_logits: np.ndarray, sp: _Split, cfg: TrainConfig,
               log: Log) -> tuple[ModelInfo, PatchMetrics]:
    """Calibrate on the validation logits, choose the operating point, write the caveat and the
    split record; returns the new info and the validation metrics at the operating point."""
    method = cfg.calibration
    if method == "auto":
        method = "temperature" if info.kind == "cnn" else "platt"
    y_valid = sp.valid_labels[sp.valid_idx]
    info, cal, probs = calibrate_and_choose(info, valid_logits, y_valid, method=method,
                                            target_sensitivity=cfg.target_sensitivity,
                                            rule=cfg.operating_rule)
    point = info.operating_point
    metrics = binary_metrics(y_valid, probs, point.threshold)
    ece = calibration_metrics(y_valid, probs)
    log(f"calibration: {cal.describe()}; validation ECE {ece.ece:.4f}")
    log(f"operating point: {point.describe()} (target {point.target})")
    caveat = cfg.caveat or training_caveat(sp.sources)
    summary = {**_metric_summary(metrics), "valid_ece": round(ece.ece, 6), "valid_brier": round(ece.brier, 6)}
    extra = {**info.extra, "sources": list(sp.sources)}
    return replace(info, caveat=caveat, metrics={**info.metrics, **summary}, extra=extra), metrics


def _fits_in_ram(n: int, spec: InputSpec, cfg: TrainConfig) -> bool:
    return n * spec.patch_px * spec.patch_px * 3 <= cfg.max_ram_mb * 1024 * 1024


def _fit_stain(patch_set: Any, train_idx: np.ndarray, cfg: TrainConfig, control: JobControl,
               log: Log) -> StainNormaliser | None:
    """The stain normaliser ``cfg.stain_norm`` asks for, fitted on a seeded sample of the
    training patches (never validation), or None."""
    if cfg.stain_norm == "none":
        return None
    rng = np.random.default_rng(cfg.seed)
    sample = np.sort(rng.choice(train_idx, min(STAIN_FIT_SAMPLE, len(train_idx)), replace=False))
    stain = fit_stain_normaliser(cfg.stain_norm, load_patches(
        patch_set, sample, control=control, what="stain normalisation target"))
    log(f"stain normalisation: {stain.describe()} (median over {stain.n_fit} of {len(sample)} "
        "sampled training patches)")
    return stain


def _stain_transform(stain: StainNormaliser | None) -> Callable[[np.ndarray], np.ndarray]:
    """Patches -> the patches the model reads (what ``PatchClassifier.prepare_patches`` does)."""
    if stain is None:
        return lambda patches: patches
    return lambda patches: stain.apply(patches).patches if len(patches) else patches


def _with_stain(info: ModelInfo, stain: StainNormaliser | None) -> ModelInfo:
    """``info`` recording ``stain`` in its extra and its input description (the model card)."""
    if stain is None:
        return info
    text = f"{stain.describe()}; then {info.input.normalisation}"
    return replace(info, input=replace(info.input, normalisation=text),
                   extra={**info.extra, STAIN_KEY: stain.to_dict()})


class _Batches:
    """Shuffled mini-batches from RAM, or streamed from the patch set when it does not fit.
    ``transform`` (stain normalisation) is applied to streamed batches; ``in_ram`` holds
    patches already transformed."""

    def __init__(self, patch_set: Any, indices: np.ndarray, labels: np.ndarray,
                 in_ram: np.ndarray | None,
                 transform: Callable[[np.ndarray], np.ndarray] = lambda patches: patches):
        self.patch_set, self.indices, self.labels, self.in_ram = patch_set, indices, labels, in_ram
        self.transform = transform

    def epoch(self, batch_size: int, rng: np.random.Generator):
        order = rng.permutation(len(self.indices))
        for start in range(0, len(order), batch_size):
            pick = order[start : start + batch_size]
            if self.in_ram is not None:
                x = self.in_ram[pick]
            else:  # sorted reads are much cheaper on HDF5; the batch is shuffled anyway
                pick = np.sort(pick)
                x = self.transform(self.patch_set.read(self.indices[pick].tolist()))
            yield x, self.labels[self.indices[pick]]


def predict_patch_set(
    classifier: PatchClassifier,
    patch_set: Any,
    indices: Sequence[int] | None = None,
    *,
    batch_size: int = 512,
    control: JobControl = NO_CONTROL,
) -> np.ndarray:
    """Tumour probability for ``indices`` (all by default) of ``patch_set``, streamed."""
    idx = np.arange(len(patch_set)) if indices is None else np.asarray(indices, dtype=np.int64)
    probs = [classifier.predict_proba(batch)
             for batch in _read_batches(patch_set, idx, batch_size, control, "classifying")]
    return np.concatenate(probs) if probs else np.empty(0, np.float32)



def _metric_summary(m: PatchMetrics) -> dict[str, float]:
    out = {"valid_accuracy": m.accuracy, "valid_n": float(m.n)}
    if m.auc is not None:
        out[VALID_AUC] = m.auc
    if m.sensitivity is not None:
        out["valid_sensitivity"] = m.sensitivity
    if m.specificity is not None:
        out["valid_specificity"] = m.specificity
    return {k: round(float(v), 6) for k, v in out.items()}
