"""The chain CNNs on onnxruntime (issue 15: a cold ``analyze`` without ``import torch``): the
same logits, probabilities, domain distances, maps and lesions as the torch path, for every
chain architecture (the screening model's included); the engine choice and its switch; the
torch fallback; the ONNX graph cache; the model child without torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from histoviewer.core.errors import ModelLoadError
from histoviewer.core.inference.analyze import AnalyzeOptions, analyze_slide
from histoviewer.core.inference.model_process import start_model_process
from histoviewer.core.models import cnn_onnx, model_engine
from histoviewer.core.models.classifier import ModelInfo
from histoviewer.core.models.cnn_arch import expected_shapes
from histoviewer.core.models.cnn_chain import CHAIN_ARCHITECTURES, chain_shapes
from histoviewer.core.models.cnn_ort import OrtCnnClassifier, set_call_threads
from histoviewer.core.models.model_engine import ENGINE_ENV, choose_engine, engine_of
from histoviewer.core.models.model_file import load_model, save_model
from histoviewer.core.models.registry import default_models_dir

REPO = Path(__file__).resolve().parents[2]
LOGIT_ATOL = 2e-5  # float32 convolutions in another order; measured ~3e-6 on the shipped models


def _shipped(name: str) -> Path:
    return default_models_dir() / f"{name}.safetensors"


def _both(path: Path):
    return load_model(path, device="cpu", engine="onnxruntime"), load_model(path, device="cpu", engine="torch")


def _random_chain(tmp_path: Path, architecture: str, config: dict | None = None) -> Path:
    """A chain CNN with random weights and random batch-norm statistics (so folding matters)."""
    import torch

    from histoviewer.core.models.cnn import CnnClassifier

    extra = {} if config is None else {"arch_config": config}
    patch_px = 24 if architecture == "screen-cnn" else 96
    from histoviewer.core.input_spec import InputSpec

    info = ModelInfo(name=f"random-{architecture}", kind="cnn", architecture=architecture, extra=extra,
                     input=InputSpec(mpp=3.888 if patch_px == 24 else 0.972, patch_px=patch_px))
    with torch.random.fork_rng():
        torch.manual_seed(7)
        model = CnnClassifier.new(info, device="cpu")
        for module in model.network.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.data.uniform_(0.5, 1.5)
                module.bias.data.uniform_(-0.2, 0.2)
        model.network.head.weight.data.mul_(100.0)  # a random net's logits barely differ otherwise
    model.refresh()
    path = tmp_path / f"{architecture}.safetensors"
    save_model(path, model)
    return path


@pytest.fixture(scope="module")
def real_patches(shared_data) -> np.ndarray:
    """120 real PatchCamelyon patches (kaggle-sample)."""
    from PIL import Image

    files = sorted((shared_data / "patches" / "kaggle-sample" / "train").glob("*.tif"))[:120]
    if len(files) < 120:
        pytest.skip("kaggle-sample patches not found")
    return np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])


@pytest.fixture(scope="module")
def phantom_node(tmp_path_factory) -> Path:
    from histoviewer.core.phantom import write_phantom

    return write_phantom(tmp_path_factory.mktemp("phantom") / "node.tiff", width=4000, height=4000,
                         mpp=0.25, lesions="micro:0.3", seed=11).slide_path


def _phantom_patches(slide: Path, n: int = 64, px: int = 96) -> np.ndarray:
    """``n`` patches of ``px`` px at 0.972 um/px (the CNN's scale) from the phantom's tissue."""
    from PIL import Image

    from histoviewer.core.slide import open_slide

    reader = open_slide(slide)
    try:
        level0 = reader.read_region(500, 500, 0, 3000, 3000)
    finally:
        reader.close()
    side = round(3000 * 0.25 / 0.972)
    small = np.asarray(Image.fromarray(level0[..., :3]).resize((side, side), Image.Resampling.BOX))
    cut = [small[y : y + 96, x : x + 96] for y in range(0, side - 96, 48) for x in range(0, side - 96, 48)][:n]
    out = np.stack(cut)
    if px != 96:
        out = np.stack([np.asarray(Image.fromarray(p).resize((px, px), Image.Resampling.BOX)) for p in out])
    return out


def _assert_same_scores(ort_model, torch_model, patches: np.ndarray) -> None:
    a, b = ort_model.logits(patches), torch_model.logits(patches)
    assert np.abs(a - b).max() < LOGIT_ATOL * max(1.0, float(np.abs(b).max()))  # float32 rounding
    # patches the model tells apart, far more than the tolerance: the comparison means something
    assert np.std(b) > 0.01
    mask = np.arange(len(patches)) % 3 == 0
    sa, sb = ort_model.classify(patches, domain_mask=mask), torch_model.classify(patches, domain_mask=mask)
    assert np.abs(sa.probability - sb.probability).max() < 1e-5
    if sb.domain_distance is not None:  # the same prepared patches for the descriptor
        assert np.array_equal(sa.domain_distance, sb.domain_distance, equal_nan=True)


def test_the_shipped_cnn_gives_the_torch_logits_on_real_and_phantom_patches(real_patches, phantom_node):
    ort_model, torch_model = _both(_shipped("cnn-pcam"))
    assert isinstance(ort_model, OrtCnnClassifier) and engine_of(ort_model) == "onnxruntime"
    assert engine_of(torch_model) == "torch" and ort_model.domain is not None
    _assert_same_scores(ort_model, torch_model, real_patches)
    _assert_same_scores(ort_model, torch_model, _phantom_patches(phantom_node))
    assert ort_model.info == torch_model.info
    assert ort_model.tensors().keys() == torch_model.tensors().keys()  # fine-tuning reads these


def test_the_screening_model_gives_the_torch_logits(real_patches, phantom_node):
    from PIL import Image

    ort_model, torch_model = _both(_shipped("screen-pcam"))
    assert ort_model.info.architecture == "screen-cnn" and ort_model.input.patch_px == 24
    small = np.stack([np.asarray(Image.fromarray(p).resize((24, 24), Image.Resampling.BOX)) for p in real_patches])
    _assert_same_scores(ort_model, torch_model, small)
    _assert_same_scores(ort_model, torch_model, _phantom_patches(phantom_node, px=24))


@pytest.mark.parametrize(("architecture", "config"), [
    ("strided-cnn", None),
    ("compact-cnn", {"widths": [8, 16, 24], "depths": [2, 1, 3], "expand": 40, "dropout": 0.1}),
    ("screen-cnn", None),
])
def test_every_chain_architecture_folds_its_batch_norm_as_torch_does(tmp_path, real_patches, architecture, config):
    path = _random_chain(tmp_path, architecture, config)
    ort_model, torch_model = _both(path)
    assert isinstance(ort_model, OrtCnnClassifier)
    patches = real_patches[:48]
    if ort_model.input.patch_px != 96:
        patches = patches[:, ::4, ::4].copy()
    _assert_same_scores(ort_model, torch_model, patches)


@pytest.mark.parametrize("architecture", CHAIN_ARCHITECTURES)
def test_chain_shapes_are_torchs_without_torch(architecture):
    assert chain_shapes(architecture) == expected_shapes(architecture)
    variant = {"widths": [4, 8], "depths": [3, 1], "expand": 12, "dropout": 0.0}
    if architecture != "strided-cnn":
        assert chain_shapes(architecture, variant) == expected_shapes(architecture, variant)
    with pytest.raises(ModelLoadError, match="widths"):
        chain_shapes(architecture, {**(variant if architecture != "strided-cnn" else {}), "widths": [10**6]})


def test_residual_networks_fall_back_to_torch():
    model = load_model(_shipped("cnn-pcam-resnet"), device="cpu")
    assert engine_of(model) == "torch" and not isinstance(model, OrtCnnClassifier)
    info = model.info
    assert choose_engine(info, "cpu", "onnxruntime").engine == "torch"  # asked for, but it cannot run it
    assert "torch only" in choose_engine(info, "cpu").reason


def test_the_engine_choice_and_its_switch(monkeypatch):
    chain = ModelInfo(name="m", kind="cnn", architecture="compact-cnn")
    assert choose_engine(chain, "cpu").engine == "onnxruntime"
    assert choose_engine(chain, "cuda").engine == "torch"  # GPUs stay torch
    assert choose_engine(ModelInfo(name="h", kind="handcrafted", architecture="x"), "cpu").engine == "numpy"
    monkeypatch.setattr(model_engine, "_gpu_possible", lambda: False)
    assert choose_engine(chain, "auto").engine == "onnxruntime"
    monkeypatch.setattr(model_engine, "_gpu_possible", lambda: True)
    assert choose_engine(chain, "auto").engine == "torch"  # torch decides where a GPU may be
    monkeypatch.setenv(ENGINE_ENV, "torch")
    assert choose_engine(chain, "cpu").engine == "torch"
    assert engine_of(load_model(_shipped("cnn-pcam"), device="cpu")) == "torch"
    monkeypatch.setenv(ENGINE_ENV, "onnxruntime")
    assert choose_engine(chain, "cpu").engine == "onnxruntime"
    monkeypatch.setenv(ENGINE_ENV, "tensorflow")
    with pytest.raises(ModelLoadError, match=f"unknown inference engine 'tensorflow'.*{ENGINE_ENV}"):
        choose_engine(chain, "cpu")
    monkeypatch.setattr(model_engine, "ORT_AVAILABLE", False)
    monkeypatch.setenv(ENGINE_ENV, "auto")
    assert choose_engine(chain, "cpu") == model_engine.EngineChoice("torch", "onnxruntime is not installed")
    monkeypatch.setenv(ENGINE_ENV, "onnxruntime")
    with pytest.raises(ModelLoadError, match="not installed"):
        choose_engine(chain, "cpu")


def test_the_graph_is_cached_and_a_bad_cache_entry_is_rebuilt(real_patches):
    _, torch_model = _both(_shipped("cnn-pcam"))
    cached = list(cnn_onnx.engine_cache_dir().glob("*.onnx"))
    assert len(cached) == 1
    good = cached[0].read_bytes()
    screen_graph = next(iter(_both(_shipped("screen-pcam"))))._graph  # a valid graph, of another model
    for bad in (b"not an onnx graph", good[: len(good) // 2], screen_graph):
        cached[0].write_bytes(bad)
        again = load_model(_shipped("cnn-pcam"), device="cpu", engine="onnxruntime")
        assert cached[0].read_bytes() == good  # replaced by a rebuilt graph
        logits = again.logits(real_patches[:16])
        assert np.abs(logits - torch_model.logits(real_patches[:16])).max() < LOGIT_ATOL


def test_a_cached_graph_loads_without_importing_onnx_or_torch(tmp_path):
    env = {"HISTOVIEWER_DATA_DIR": str(tmp_path), "PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    code = ("import sys\n"
            "from histoviewer.core.models.model_file import load_model\n"
            f"m = load_model({str(_shipped('cnn-pcam'))!r}, device='cpu')\n"
            "import numpy as np\n"
            "m.predict_proba(np.zeros((4, 96, 96, 3), np.uint8))\n"
            "print(type(m).__name__, 'torch' in sys.modules, 'onnx' in sys.modules)\n")
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                           check=False)
    second = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                           check=False)
    assert first.stdout.split() == ["OrtCnnClassifier", "False", "True"], first.stderr  # built once
    assert second.stdout.split() == ["OrtCnnClassifier", "False", "False"], second.stderr


def test_threads_per_call_give_the_same_scores(real_patches):
    ort_model, _ = _both(_shipped("cnn-pcam"))
    default = ort_model.logits(real_patches[:32])
    set_call_threads(1)
    try:
        assert ort_model.intra_op_threads == 1
        assert np.array_equal(ort_model.logits(real_patches[:32]), default)
    finally:
        set_call_threads(None)


def test_process_threads_reach_the_engine_that_runs_the_model():
    from histoviewer.core.models.cnn_ort import default_intra_op_threads
    from histoviewer.core.models.model_threads import (
        model_parallelism,
        set_process_model_threads,
    )

    ort_model = load_model(_shipped("cnn-pcam"), device="cpu", engine="onnxruntime")
    before = default_intra_op_threads()
    set_process_model_threads(ort_model, 1)  # analyze's workers, the viewer: onnxruntime's default
    try:
        assert ort_model.intra_op_threads == 1
        threads, each = model_parallelism(ort_model)  # the pipeline: threads of one intra-op thread
        assert threads >= 1 and (threads == 1 or each >= 1)
    finally:
        set_process_model_threads(ort_model, before)


def test_grad_cam_of_an_onnxruntime_model_is_torchs(real_patches):
    from histoviewer.core.explain.gradcam import grad_cam

    ort_model, torch_model = _both(_shipped("cnn-pcam"))
    a, b = grad_cam(ort_model, real_patches[:4]), grad_cam(torch_model, real_patches[:4])
    assert np.allclose(a.cam, b.cam, atol=1e-5) and a.layer == b.layer


def _libraries_of(pid: int) -> str:
    maps = Path(f"/proc/{pid}/maps")
    if not maps.exists():
        pytest.skip("needs Linux's /proc to see what the child loaded")
    return maps.read_text()


def test_the_model_child_runs_onnxruntime_and_never_loads_torch(monkeypatch):
    monkeypatch.delenv(ENGINE_ENV, raising=False)
    local = load_model(_shipped("cnn-pcam"), device="cpu", engine="torch")
    pending = start_model_process("cnn", device="cpu")
    try:
        remote = pending.result()
        assert remote.engine == "onnxruntime"
        patches = np.random.default_rng(3).integers(0, 256, (40, 96, 96, 3), dtype=np.uint8)
        mask = np.arange(40) % 4 == 0
        there, here = remote.classify(patches, domain_mask=mask), local.classify(patches, domain_mask=mask)
        assert np.abs(there.probability - here.probability).max() < 1e-5
        # the descriptors are computed in this process, on the same stain-normalised patches
        assert np.array_equal(there.domain_distance, here.domain_distance, equal_nan=True)
        libraries = _libraries_of(remote._process._proc.pid)
        assert "onnxruntime" in libraries and "libtorch" not in libraries
        assert "_ndimage" not in libraries  # no domain/feature code (scipy.ndimage) in the child
    finally:
        pending.close()


def test_the_model_child_with_torch_forced_runs_torch(monkeypatch):
    monkeypatch.setenv(ENGINE_ENV, "torch")
    pending = start_model_process("cnn", device="cpu")
    try:
        remote = pending.result()
        assert remote.engine == "torch" and "libtorch" in _libraries_of(remote._process._proc.pid)
    finally:
        pending.close()


def test_an_analysis_gives_the_same_labels_and_lesions_with_either_engine(phantom_node, tmp_path):
    options = AnalyzeOptions(batch_size=64)
    summaries = {}
    for engine in ("onnxruntime", "torch"):
        model = load_model(_shipped("cnn-pcam"), device="cpu", engine=engine)
        try:
            summaries[engine] = analyze_slide(phantom_node, tmp_path / engine, model, options)
        finally:
            model.close()
    a, b = summaries["onnxruntime"], summaries["torch"]
    assert a.tissue_patches == b.tissue_patches > 30 and a.failed_patches == b.failed_patches == 0
    assert a.node_label == b.node_label and a.lesions == b.lesions and len(a.lesions) >= 1
    assert a.domain == b.domain
    maps = [tifffile.imread(tmp_path / e / "probability.tiff") for e in ("onnxruntime", "torch")]
    assert np.allclose(maps[0], maps[1], atol=1e-5, equal_nan=True)
    recorded = [json.loads((tmp_path / e / "summary.json").read_text())["model"] for e in ("onnxruntime", "torch")]
    assert [r["engine"] for r in recorded] == ["onnxruntime", "torch"]  # provenance says what ran the model
    assert list(recorded[0])[-1] == "engine"  # a new entry, at the end of the model record
    assert a.model.engine == "onnxruntime" and b.model.engine == "torch"  # and it reads back


def test_loading_imports_torch_is_told_from_the_header(monkeypatch, tmp_path):
    from histoviewer.core.models import engine_hint

    monkeypatch.delenv(ENGINE_ENV, raising=False)
    monkeypatch.setattr(engine_hint, "gpu_possible", lambda: False)
    assert not engine_hint.loading_imports_torch("cnn", "cpu")
    assert not engine_hint.loading_imports_torch("cnn", "auto")
    assert not engine_hint.loading_imports_torch("handcrafted", "cpu")
    assert engine_hint.loading_imports_torch("cnn-resnet", "cpu")
    assert engine_hint.loading_imports_torch("cnn", "cuda")
    assert engine_hint.loading_imports_torch(tmp_path / "missing.safetensors", "cpu")  # cannot tell
    monkeypatch.setattr(engine_hint, "gpu_possible", lambda: True)
    assert engine_hint.loading_imports_torch("cnn", "auto")
    monkeypatch.setenv(ENGINE_ENV, "torch")
    assert engine_hint.loading_imports_torch("cnn", "cpu")


@pytest.mark.parametrize(("switch", "engine", "child"), [
    (None, None, False),  # onnxruntime loads in this process
    ("1", None, True),  # forced
    (None, "torch", True),  # torch's import overlaps reading the slide
    ("0", "torch", False),  # turned off
])
def test_analyze_starts_a_model_child_only_when_it_pays(monkeypatch, switch, engine, child):
    import argparse

    from histoviewer.cli import analyze as cli_analyze
    from histoviewer.core.model_child import ENV_SWITCH

    for name, value in ((ENV_SWITCH, switch), (ENGINE_ENV, engine)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    args = argparse.Namespace(model="cnn", device="cpu", scheduler=None, workers=1, slides=["a.svs"],
                              strategy="exhaustive", uncertainty=False)
    started = cli_analyze._launch_model_child(args)
    try:
        assert (started is not None) == child
    finally:
        if started is not None:
            started.process.kill()
            started.process.wait()
            started.sock.close()


@pytest.mark.parametrize("engine", ["onnxruntime", "torch"])
def test_a_network_that_gives_nan_is_refused_on_either_engine(tmp_path, engine):
    """Non-finite logits (a damaged weight) raise ModelError naming the model on both engines:
    a NaN read through the calibration would be drawn as some probability."""
    from histoviewer.core.errors import ModelError

    path = _random_chain(tmp_path, "strided-cnn")
    model = load_model(path, device="cpu", engine=engine)
    tensors = model.tensors()
    first_conv = next(k for k, v in tensors.items() if v.ndim == 4)
    tensors[first_conv] = np.full_like(tensors[first_conv], np.nan)
    if engine == "torch":
        broken = type(model).from_tensors(model.info, tensors, device="cpu")
    else:
        broken = OrtCnnClassifier(model.info, tensors)
    patches = np.full((4, 96, 96, 3), 128, np.uint8)
    with pytest.raises(ModelError, match=f"{model.info.name}.*non-finite"):
        broken.predict_proba(patches)
    with pytest.raises(ModelError, match="non-finite"):
        broken.classify(patches)
