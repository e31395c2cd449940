"""Training both classifiers from a ``PatchSet``: the CNN with early stopping, the handcrafted
model with its regularisation chosen on the validation split.

Reproducible: every random choice (split, shuffling, augmentation, initial weights, dropout)
derives from ``TrainConfig.seed``; the same data and seed give the same model on the same
machine and torch build (CPU float reductions can differ between builds or thread counts).

Training sits above both the classifiers (``models``) and the patch sets it reads
(``patches``), so neither of those imports the other (see the layers contract in
``pyproject.toml``). It imports torch: load it only where training is asked for.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from histoviewer import __version__
from histoviewer.core.errors import ModelError, PatchDataError
from histoviewer.core.input_spec import PCAM_MPP_UM, PCAM_PATCH_PX, InputSpec
from histoviewer.core.models.augment import AugmentConfig, augment_batch
from histoviewer.core.models.calibration_metrics import calibration_metrics
from histoviewer.core.models.classifier import (
    RESEARCH_CAVEAT,
    VALID_AUC,
    ModelInfo,
    PatchClassifier,
)
from histoviewer.core.models.cnn import (
    CNN_NORMALISATION,
    CnnClassifier,
    normalise_uint8_nhwc,
    normalise_unit_rgb,
)
from histoviewer.core.models.cnn_arch import DEFAULT_ARCHITECTURE, DEFAULT_CONFIGS
from histoviewer.core.models.cnn_resnet50 import IMAGENET_NORMALISATION_NOTE
from histoviewer.core.models.cnn_weights import load_init_weights
from histoviewer.core.models.domain import descriptor_of_features, fit_domain_profile
from histoviewer.core.models.domain_fit import (
    DOMAIN_FIT_PATCHES,
    fit_classifier_domain,
    sample_indices,
)
from histoviewer.core.models.features import extract_features
from histoviewer.core.models.handcrafted import fit_handcrafted
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

__all__ = [
    "EpochRecord",
    "TrainConfig",
    "TrainResult",
    "load_patches",
    "predict_patch_set",
    "train_cnn",
    "train_handcrafted",
]

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


def _normalisation_text(architecture: str) -> str:
    if architecture == "resnet50":
        return f"{CNN_NORMALISATION}, {IMAGENET_NORMALISATION_NOTE}"
    return CNN_NORMALISATION


def _cnn_info(patch_set: Any, cfg: TrainConfig, spec: InputSpec) -> ModelInfo:
    return ModelInfo(
        name=cfg.name or f"{cfg.architecture}-seed{cfg.seed}",
        kind="cnn",
        architecture=cfg.architecture,
        input=replace(spec, normalisation=_normalisation_text(cfg.architecture)),
        training_data=patch_set.description,
        software_version=__version__,
        created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        demonstration=cfg.demonstration,
        extra={"arch_config": dict(DEFAULT_CONFIGS[cfg.architecture])},
    )


def _ema_step(decay: float):
    """Exponential moving average whose decay ramps up, min(decay, (1 + n) / (10 + n)) after
    n updates, so short runs (a few hundred steps) are not dominated by the initial weights.
    Called once per (device, dtype) group of tensors, so the decay costs one sync per step."""
    def step(avg: list[torch.Tensor], new: list[torch.Tensor], n: torch.Tensor) -> None:
        d = min(decay, (1.0 + float(n)) / (10.0 + float(n)))
        if avg[0].is_floating_point():
            torch._foreach_lerp_(avg, new, 1.0 - d)
        else:  # integer buffers (batch-norm step counters) are copied, not averaged
            torch._foreach_copy_(avg, new)
    return step


def _valid_pass(net: nn.Module, x_valid: np.ndarray, y_valid: np.ndarray, device: torch.device,
                batch_size: int) -> tuple[float, np.ndarray]:
    net.eval()
    logits = []
    with torch.inference_mode():
        for start in range(0, len(x_valid), batch_size * 2):
            xb = torch.from_numpy(x_valid[start : start + batch_size * 2]).to(device)
            logits.append(net(normalise_uint8_nhwc(xb).contiguous(
                memory_format=torch.channels_last)).float().cpu())
    z = torch.cat(logits)
    loss = nn.functional.binary_cross_entropy_with_logits(z, torch.from_numpy(y_valid).float())
    return float(loss), torch.sigmoid(z).numpy()


def train_cnn(
    patch_set: Any,
    cfg: TrainConfig = TrainConfig(),
    *,
    valid_set: Any | None = None,
    spec: InputSpec | None = None,
    control: JobControl = NO_CONTROL,
    log: Log = lambda _msg: None,
) -> TrainResult:
    """Train a CNN on ``patch_set`` (already at ``spec``'s scale), early-stopping on
    validation AUC; the best epoch's weights are kept."""
    t_start = time.perf_counter()
    spec = spec or getattr(patch_set, "spec", InputSpec(PCAM_PATCH_PX, PCAM_MPP_UM))
    if cfg.epochs < 1:
        raise ModelError(f"training needs at least 1 epoch, got {cfg.epochs}", setting="epochs")
    sp = _split(patch_set, valid_set, cfg, log)
    train_idx, valid_idx = sp.train_idx, sp.valid_idx
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)

    stain = _fit_stain(patch_set, train_idx, cfg, control, log)
    to_input = _stain_transform(stain)  # before augmentation, as prepare_patches at inference
    info = _with_stain(_cnn_info(patch_set, cfg, spec), stain)
    model = CnnClassifier.new(info, device=cfg.device)
    device = model.device
    log(f"device: {model.device_choice.reason}")
    if cfg.init_weights:
        init = load_init_weights(model.network, cfg.architecture, cfg.init_weights)
        log(f"initial weights: {init.n_loaded} arrays from {init.path}"
            + (f" ({len(init.skipped)} of its arrays unused)" if init.skipped else ""))
    net = model.network.to(device).to(memory_format=torch.channels_last)
    # The weight average that is validated and kept (the trained weights keep moving).
    ema = None
    if cfg.ema_decay > 0:
        ema = torch.optim.swa_utils.AveragedModel(net, multi_avg_fn=_ema_step(cfg.ema_decay),
                                                  use_buffers=True)
    eval_net = net if ema is None else ema.module

    # raw for calibration (the classifier normalises its input itself), normalised for the network
    x_valid_raw = load_patches(sp.valid_set, valid_idx, control=control, what="reading validation")
    x_valid = to_input(x_valid_raw)
    y_valid = sp.valid_labels[valid_idx]
    in_ram = None
    if _fits_in_ram(len(train_idx), spec, cfg):
        in_ram = to_input(load_patches(patch_set, train_idx, control=control, what="reading training"))
    else:
        log(f"{len(train_idx)} training patches exceed the {cfg.max_ram_mb} MB allowed in memory: streaming")
    batches = _Batches(patch_set, train_idx, sp.train_labels, in_ram, to_input)

    n_pos = int(sp.train_labels[train_idx].sum())
    pos_weight = torch.tensor((len(train_idx) - n_pos) / max(n_pos, 1), device=device)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, -(-len(train_idx) // cfg.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.learning_rate, total_steps=cfg.epochs * steps_per_epoch
    )
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    history: list[EpochRecord] = []
    best_auc, best_loss, best_epoch, best_state, stale = -1.0, float("inf"), 0, None, 0
    stopped_early = False
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        net.train()
        total, seen = 0.0, 0
        with control.stage(f"epoch {epoch}/{cfg.epochs}", len(train_idx)) as bar:
            for xb_np, yb_np in batches.epoch(cfg.batch_size, rng):
                control.check("training")
                xb = torch.from_numpy(np.ascontiguousarray(xb_np)).to(device)
                x = xb.permute(0, 3, 1, 2).float().div_(255.0)
                if cfg.augment:
                    x = augment_batch(x, gen, AugmentConfig())
                x = normalise_unit_rgb(x).contiguous(memory_format=torch.channels_last)
                y = torch.from_numpy(yb_np.astype(np.float32)).to(device)
                if cfg.label_smoothing > 0:
                    y = y * (1 - cfg.label_smoothing) + 0.5 * cfg.label_smoothing
                opt.zero_grad(set_to_none=True)
                with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                    loss = loss_fn(net(x).float(), y)
                if not torch.isfinite(loss):
                    raise ModelError(f"training diverged at epoch {epoch} (loss {float(loss)})")
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                sched.step()
                if ema is not None:
                    ema.update_parameters(net)
                total += float(loss.detach()) * len(yb_np)
                seen += len(yb_np)
                bar.update(len(yb_np))
        v_loss, v_prob = _valid_pass(eval_net, x_valid, y_valid, device, cfg.batch_size)
        v_auc = binary_metrics(y_valid, v_prob).auc
        rec = EpochRecord(epoch, total / max(seen, 1), v_loss, v_auc, time.perf_counter() - t0)
        history.append(rec)
        auc_text = "n/a" if v_auc is None else f"{v_auc:.4f}"
        log(f"epoch {epoch}: train loss {rec.train_loss:.4f}, valid loss {v_loss:.4f}, "
            f"valid AUC {auc_text}, {rec.seconds:.1f} s")
        score = -1.0 if v_auc is None else v_auc
        # AUC first; when it saturates (easy data), a clearly lower validation loss still counts.
        better = score > best_auc + 1e-4 or (score >= best_auc - 1e-4 and v_loss < 0.9 * best_loss)
        if better:
            best_auc, best_loss, best_epoch, stale = max(score, best_auc), v_loss, epoch, 0
            best_state = {k: v.detach().cpu().clone() for k, v in eval_net.state_dict().items()}
        else:
            stale += 1
            if stale >= cfg.patience:
                stopped_early = True
                log(f"early stop: no validation gain for {cfg.patience} epochs")
                break

    if best_state is not None:  # None only if no epoch improved on -1, i.e. never
        net.load_state_dict(best_state)
    net.cpu()
    _, v_prob = _valid_pass(net, x_valid, y_valid, torch.device("cpu"), cfg.batch_size)
    metrics = binary_metrics(y_valid, v_prob)
    seconds = time.perf_counter() - t_start
    info = replace(
        info,
        metrics=_metric_summary(metrics),
        extra={
            **info.extra,
            "training": {
                **asdict(cfg),
                "n_train": len(train_idx),
                "n_valid": len(valid_idx),
                "n_test": len(sp.test_idx),
                "best_epoch": best_epoch,
                "epochs_run": len(history),
                "seconds": round(seconds, 1),
            },
        },
    )
    final = CnnClassifier(net, info, device=cfg.device)
    # Domain profile: tissue descriptors of a sample of the training patches, thresholds from validation.
    pos = sample_indices(np.arange(len(train_idx)), DOMAIN_FIT_PATCHES, cfg.seed)
    fit_x = in_ram[pos] if in_ram is not None else to_input(load_patches(patch_set, train_idx[pos], control=control))
    try:
        fit_classifier_domain(final, [fit_x], [x_valid], data=patch_set.description)
    except ModelError as exc:  # too few patches: the model judges no slide ("not assessed")
        log(f"no domain profile: {exc}")
    final.info, metrics = _calibrate(final.info, final.logits(x_valid_raw), sp, cfg, log)
    return TrainResult(
        classifier=final, valid_metrics=metrics, n_train=len(train_idx), n_valid=len(valid_idx),
        n_test=len(sp.test_idx),
        seconds=seconds, history=history, best_epoch=best_epoch, stopped_early=stopped_early,
        seconds_per_epoch=float(np.mean([h.seconds for h in history])),
    )


def _metric_summary(m: PatchMetrics) -> dict[str, float]:
    out = {"valid_accuracy": m.accuracy, "valid_n": float(m.n)}
    if m.auc is not None:
        out[VALID_AUC] = m.auc
    if m.sensitivity is not None:
        out["valid_sensitivity"] = m.sensitivity
    if m.specificity is not None:
        out["valid_specificity"] = m.specificity
    return {k: round(float(v), 6) for k, v in out.items()}


def _features(patch_set: Any, idx: np.ndarray, mpp: float, control: JobControl,
              what: str, to_input: Callable[[np.ndarray], np.ndarray] = lambda p: p) -> np.ndarray:
    return np.concatenate([extract_features(to_input(batch), mpp)
                           for batch in _read_batches(patch_set, idx, 256, control, what)])


HANDCRAFTED_C_GRID = (0.1, 0.3, 1.0, 3.0, 10.0)


def train_handcrafted(
    patch_set: Any,
    cfg: TrainConfig = TrainConfig(),
    *,
    valid_set: Any | None = None,
    spec: InputSpec | None = None,
    control: JobControl = NO_CONTROL,
    log: Log = lambda _msg: None,
) -> TrainResult:
    """Extract features once, pick the L2 strength C on the validation split, refit."""
    t_start = time.perf_counter()
    spec = spec or getattr(patch_set, "spec", InputSpec(PCAM_PATCH_PX, PCAM_MPP_UM))
    sp = _split(patch_set, valid_set, cfg, log)
    train_idx, valid_idx = sp.train_idx, sp.valid_idx
    stain = _fit_stain(patch_set, train_idx, cfg, control, log)
    to_input = _stain_transform(stain)
    f_train = _features(patch_set, train_idx, spec.mpp, control, "features (training)", to_input)
    f_valid = _features(sp.valid_set, valid_idx, spec.mpp, control, "features (validation)", to_input)
    y_train, y_valid = sp.train_labels[train_idx], sp.valid_labels[valid_idx]
    history: list[EpochRecord] = []
    best = None
    for i, c in enumerate(HANDCRAFTED_C_GRID, start=1):
        t0 = time.perf_counter()
        model = fit_handcrafted(f_train, y_train, spec=spec, seed=cfg.seed, C=c,
                                name=cfg.name or f"handcrafted-seed{cfg.seed}",
                                training_data=patch_set.description)
        prob = model.predict_proba_features(f_valid)
        m = binary_metrics(y_valid, prob)
        log(f"C={c:g}: valid AUC {m.auc:.4f}, accuracy {m.accuracy:.4f}")
        history.append(EpochRecord(i, float("nan"), float("nan"), m.auc, time.perf_counter() - t0))
        if best is None or (m.auc or 0) > (best[2].auc or 0) + 1e-4:
            best = (c, model, m)
    if best is None:
        raise ModelError("no handcrafted model could be fitted")
    c, model, metrics = best
    seconds = time.perf_counter() - t_start
    stained = _with_stain(model.info, stain)
    model.info = replace(
        stained,
        metrics=_metric_summary(metrics),
        software_version=__version__,
        created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        demonstration=cfg.demonstration,
        extra={**stained.extra, "training": {
            "seed": cfg.seed, "valid_fraction": cfg.valid_fraction,
            "test_fraction": cfg.test_fraction, "n_test": len(sp.test_idx), "C": c, "stain_norm": cfg.stain_norm,
            "C_grid": list(HANDCRAFTED_C_GRID), "n_train": len(train_idx),
            "n_valid": len(valid_idx), "seconds": round(seconds, 1)}},
    )
    # Domain profile: the descriptor is part of the features already computed; thresholds from validation.
    pos = sample_indices(np.arange(len(f_train)), DOMAIN_FIT_PATCHES, cfg.seed)
    try:
        model.domain = fit_domain_profile(descriptor_of_features(f_train[pos]), descriptor_of_features(f_valid),
                                          data=patch_set.description)
    except ModelError as exc:  # too few patches: the model judges no slide ("not assessed")
        log(f"no domain profile: {exc}")
    log(f"chose C={c:g} on the validation split")
    model.info, metrics = _calibrate(model.info, model.logits_features(f_valid), sp, cfg, log)
    return TrainResult(classifier=model, valid_metrics=metrics, n_train=len(train_idx),
                       n_valid=len(valid_idx), n_test=len(sp.test_idx), seconds=seconds, history=history,
                       best_epoch=HANDCRAFTED_C_GRID.index(c) + 1,
                       seconds_per_epoch=seconds)
