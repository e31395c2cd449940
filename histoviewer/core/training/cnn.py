"""Training the CNN: one-cycle schedule, augmentation on the device, weight averaging, early
stopping on validation AUC, then calibration, operating point and domain profile."""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from histoviewer import __version__
from histoviewer.core.errors import ModelError
from histoviewer.core.input_spec import PCAM_MPP_UM, PCAM_PATCH_PX, InputSpec
from histoviewer.core.models.augment import AugmentConfig, augment_batch
from histoviewer.core.models.classifier import (
    ModelInfo,
)
from histoviewer.core.models.cnn import (
    CNN_NORMALISATION,
    CnnClassifier,
    normalise_uint8_nhwc,
    normalise_unit_rgb,
)
from histoviewer.core.models.cnn_arch import DEFAULT_CONFIGS
from histoviewer.core.models.cnn_resnet50 import IMAGENET_NORMALISATION_NOTE
from histoviewer.core.models.cnn_weights import load_init_weights
from histoviewer.core.models.domain_fit import (
    DOMAIN_FIT_PATCHES,
    fit_classifier_domain,
    sample_indices,
)
from histoviewer.core.models.metrics import binary_metrics
from histoviewer.core.models.stain_norm import EXTRA_KEY as STAIN_KEY
from histoviewer.core.progress import NO_CONTROL, JobControl
from histoviewer.core.training.common import (
    EpochRecord,
    Log,
    TrainConfig,
    TrainResult,
    _Batches,
    _calibrate,
    _fit_stain,
    _fits_in_ram,
    _metric_summary,
    _split,
    _stain_transform,
    _with_stain,
    load_patches,
)


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
    cfg: TrainConfig = TrainConfig(),  # noqa: B008 - a frozen dataclass: immutable
    *,
    valid_set: Any | None = None,
    spec: InputSpec | None = None,
    control: JobControl = NO_CONTROL,
    log: Log = lambda _msg: None,
    parent: CnnClassifier | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> TrainResult:
    """Train a CNN on ``patch_set`` (already at ``spec``'s scale), early-stopping on
    validation AUC; the best epoch's weights are kept.

    ``parent``: fine-tune this model instead of starting from scratch: its architecture, its
    weights (head included), its input and stain normalisation and its domain profile (the
    fine-tuned model has seen the parent's tissue too) are kept; only the calibration and the
    operating point are fitted anew. ``on_epoch`` is called after each epoch (live curves)."""
    t_start = time.perf_counter()
    spec = spec or getattr(patch_set, "spec", InputSpec(PCAM_PATCH_PX, PCAM_MPP_UM))
    if cfg.epochs < 1:
        raise ModelError(f"training needs at least 1 epoch, got {cfg.epochs}", setting="epochs")
    sp = _split(patch_set, valid_set, cfg, log)
    train_idx, valid_idx = sp.train_idx, sp.valid_idx
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)

    if parent is None:
        stain = _fit_stain(patch_set, train_idx, cfg, control, log)
        info = _with_stain(_cnn_info(patch_set, cfg, spec), stain)
        model = CnnClassifier.new(info, device=cfg.device)
    else:  # the parent's network, input and stain normaliser (a fine-tune changes weights only)
        stain = parent._stain_normaliser()
        info = replace(_cnn_info(patch_set, cfg, spec), architecture=parent.info.architecture,
                       input=parent.info.input, extra={k: v for k, v in parent.info.extra.items()
                                                       if k in ("arch_config", STAIN_KEY)})
        model = CnnClassifier.from_tensors(info, parent.tensors(), device=cfg.device)
    to_input = _stain_transform(stain)  # before augmentation, as prepare_patches at inference
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
        if on_epoch is not None:
            on_epoch(rec)
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
    try:
        if parent is not None:  # the parent's: it was fitted on the far larger data the weights come from
            final.domain = getattr(parent, "domain", None)
        else:
            fit_x = in_ram[pos] if in_ram is not None else to_input(
                load_patches(patch_set, train_idx[pos], control=control))
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
