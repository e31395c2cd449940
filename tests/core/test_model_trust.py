"""What a model file must prove before it is used: a valid hash over its description and
arrays, a description of the right types, architecture settings within bounds (checked
before anything is built or read), and, for the shipped weights, their own caution.
Every refusal names the file (issue 14: model files)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load, save_file

from histoviewer.core.errors import ModelLoadError
from histoviewer.core.models.classifier import ModelInfo
from histoviewer.core.models.cnn import CnnClassifier
from histoviewer.core.models.model_file import (
    load_model,
    model_hash,
    read_model_info,
    record_evaluation,
    restamp_model,
    save_model,
    tensors_hash,
)
from histoviewer.core.models.registry import available_models, default_models_dir
from histoviewer.core.models.shipped import SHIPPED_WEIGHTS

REPO = Path(__file__).resolve().parents[2]


def _cnn(tmp_path, name="m.safetensors", **info_kw):
    torch.manual_seed(0)
    model = CnnClassifier.new(ModelInfo(name="m", kind="cnn", architecture="strided-cnn", **info_kw),
                              device="cpu")
    path = tmp_path / name
    save_model(path, model)
    return model, path


def _parts(path):
    """(description dict, arrays) of a model file, read without any check."""
    from safetensors import safe_open

    with safe_open(str(path), "np") as fh:
        meta = fh.metadata()
    return json.loads(meta["histoviewer.model"]), load(path.read_bytes())


def _write(path, description, arrays, *, stamp=True, fmt="histoviewer-model/2"):
    description = json.loads(json.dumps(description))
    if stamp:
        description["content_hash"] = model_hash(description, tensors_hash(arrays))
    save_file(arrays, str(path), metadata={"format": fmt, "histoviewer.model": json.dumps(description)})
    return path


def test_a_file_without_a_hash_is_refused(tmp_path):
    _, path = _cnn(tmp_path)
    description, arrays = _parts(path)
    for value in ("", None):
        bare = _write(tmp_path / "bare.safetensors", {**description, "content_hash": value}, arrays,
                      stamp=False)
        with pytest.raises(ModelLoadError, match="bare.safetensors: has no integrity hash"):
            load_model(bare, device="cpu")
        with pytest.raises(ModelLoadError, match="bare.safetensors: has no integrity hash"):
            read_model_info(bare)


@pytest.mark.parametrize("edit", [{"demonstration": False}, {"caveat": "validated for clinical use"},
                                  {"extra": {"calibration": {"method": "temperature", "temperature": 9.0}}}])
def test_editing_the_header_alone_fails_the_hash(tmp_path, edit):
    """The demonstration flag, the caveat and the calibration are covered by the hash."""
    _, path = _cnn(tmp_path, demonstration=True)
    description, arrays = _parts(path)
    edited = {**description, **edit, "content_hash": description["content_hash"]}
    _write(path, edited, arrays, stamp=False)
    with pytest.raises(ModelLoadError, match="m.safetensors: weights or description do not match the hash"):
        load_model(path, device="cpu")


def test_recorded_evaluations_keep_the_hash(tmp_path):
    model, path = _cnn(tmp_path)
    info = record_evaluation(path, "held-out", {"auc": 0.9, "n": 10})
    assert info.content_hash == model.info.content_hash
    assert load_model(path, device="cpu").info.extra["evaluations"]["held-out"]["auc"] == 0.9


def test_every_shipped_model_is_pinned_and_loads():
    from histoviewer.core.analysis.learned_label import (
        DEFAULT_NODE_CLASSIFIER,
        SHIPPED_NODE_FORESTS,
        load_node_classifier,
    )

    files = sorted(default_models_dir().glob("*.safetensors"))
    assert files, "no shipped models"
    pinned = {c.file for c in SHIPPED_WEIGHTS.values()}
    for path in files:
        if path.name == DEFAULT_NODE_CLASSIFIER:  # the learned node classifier: a forest, pinned apart
            classifier = load_node_classifier(path)
            assert tensors_hash(classifier.forest.tensors()) in SHIPPED_NODE_FORESTS, (
                f"{path.name}: add its arrays digest to SHIPPED_NODE_FORESTS (analysis/learned_label.py)")
            assert "trained on phantoms only" in classifier.caution
            continue
        assert path.name in pinned, (f"{path.name}: add its weights digest "
                                     f"{tensors_hash(load(path.read_bytes()))} to models/shipped.py")
        model = load_model(path, device="cpu")
        assert not model.info.demonstration and "not validated for clinical use" in model.info.caution


@pytest.mark.parametrize("edit", [{"caveat": "validated for clinical use"}, {"caveat": ""},
                                  {"demonstration": True}])
def test_shipped_weights_keep_their_caveat_even_with_a_recomputed_hash(tmp_path, edit):
    shipped = default_models_dir() / "handcrafted-pcam.safetensors"
    description, arrays = _parts(shipped)
    relabelled = _write(tmp_path / "relabelled.safetensors", {**description, **edit}, arrays)
    with pytest.raises(ModelLoadError, match="relabelled.safetensors: holds the weights of HistoViewer's "
                                             "shipped model handcrafted-pcam"):
        load_model(relabelled)


def test_an_arrays_only_hash_file_is_refused_then_restamped_with_identical_arrays(tmp_path):
    _, path = _cnn(tmp_path)
    description, arrays = _parts(path)
    old = {**description, "content_hash": tensors_hash(arrays)}
    _write(path, old, arrays, stamp=False, fmt="histoviewer-model/1")
    with pytest.raises(ModelLoadError, match="older HistoViewer") as err:
        load_model(path, device="cpu")
    assert err.value.setting == "restamp"
    info = restamp_model(path)
    after_description, after_arrays = _parts(path)
    assert after_arrays.keys() == arrays.keys()
    assert all(np.array_equal(after_arrays[k], arrays[k]) for k in arrays)
    assert {k: v for k, v in after_description.items() if k != "content_hash"} == \
        {k: v for k, v in description.items() if k != "content_hash"}
    assert load_model(path, device="cpu").info.content_hash == info.content_hash
    # edited weights under an old hash are not re-stamped
    arrays["features.0.weight"] = arrays["features.0.weight"] + 1
    _write(path, old, arrays, stamp=False, fmt="histoviewer-model/1")
    with pytest.raises(ModelLoadError, match="do not match the hash"):
        restamp_model(path)


def _cli_models(*args, env):
    return subprocess.run([sys.executable, "-m", "histoviewer", "models", *args], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=120, check=False)


def test_cli_restamp(tmp_path):
    _, path = _cnn(tmp_path)
    description, arrays = _parts(path)
    _write(path, {**description, "content_hash": tensors_hash(arrays)}, arrays, stamp=False,
           fmt="histoviewer-model/1")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = _cli_models("--restamp", str(path), "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["content_hash"] == read_model_info(path).content_hash


HOSTILE_DESCRIPTIONS = {
    "digits": ('"patch_px": 96', '"patch_px": ' + "9" * 5000, "integer of 5000 digits"),
    "overflow": ('"mpp_um": 0.972', '"mpp_um": 1e999', "too large for a float"),
    "nan": ('"mpp_um": 0.972', '"mpp_um": NaN', "NaN"),
    "string_flag": ('"demonstration": true', '"demonstration": "false"',
                    "'model description.demonstration' must be true or false, got a string"),
    "list_name": ('"name": "m"', '"name": ["m"]', "'model description.name' must be a string, got a list"),
    "metrics_list": ('"metrics": {}', '"metrics": [1, 2]', "'model description.metrics' must be a JSON object"),
    "deep": ('"metrics": {}', '"metrics": {}, "x": ' + "[" * 5000 + "]" * 5000, "nested too deeply"),
    "threshold_text": ('"operating_point": null',
                       '"operating_point": {"threshold": "0.5", "sensitivity": 1, "specificity": 1}',
                       "'model description.operating_point.threshold' must be a number"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_DESCRIPTIONS))
def test_hostile_or_mistyped_descriptions_give_errors_naming_file_and_field(tmp_path, case):
    _, path = _cnn(tmp_path, demonstration=True)
    description, arrays = _parts(path)
    text = json.dumps(description, sort_keys=True)
    old, new, message = HOSTILE_DESCRIPTIONS[case]
    assert old in text
    hostile = tmp_path / f"{case}.safetensors"
    save_file(arrays, str(hostile), metadata={"format": "histoviewer-model/2",
                                              "histoviewer.model": text.replace(old, new)})
    for read in (read_model_info, load_model):
        with pytest.raises(ModelLoadError) as err:
            read(hostile)
        assert str(err.value).startswith(str(hostile)) and message in str(err.value)


def _huge_network_file(tmp_path, arch_config):
    _, path = _cnn(tmp_path)
    description, arrays = _parts(path)
    description["extra"]["arch_config"] = arch_config
    return _write(tmp_path / "huge.safetensors", description, arrays)


@pytest.mark.parametrize("config, message", [
    ({"widths": [100000, 100000, 100000, 100000], "dropout": 0.2}, "must hold whole numbers in 1..2048"),
    ({"widths": [16] * 5000, "dropout": 0.2}, "must be a list of 1..8"),
    ({"widths": [16, 32, 64, 128], "dropout": "0.2"}, "'dropout' must be a number"),
])
def test_architecture_settings_out_of_bounds_are_refused_before_building(tmp_path, config, message):
    path = _huge_network_file(tmp_path, config)
    with pytest.raises(ModelLoadError, match=message) as err:
        load_model(path, device="cpu")
    assert str(err.value).startswith(str(path))


def test_a_valid_but_huge_network_is_refused_without_allocating_it(tmp_path):
    """compact-cnn with 8 stages of 16 convs 2048 wide: 4.8 G parameters (19 GB) if built.
    The refusal comes from shapes on torch's meta device: the process stays small and fast."""
    path = _huge_network_file(tmp_path, {"widths": [2048] * 8, "depths": [16] * 8, "expand": 0,
                                         "dropout": 0.2})
    compact = path.with_name("compact.safetensors")
    description, arrays = _parts(path)
    description["architecture"] = "compact-cnn"
    _write(compact, description, arrays)
    script = textwrap.dedent(f"""
        import resource, time, torch
        from histoviewer.core.errors import ModelLoadError
        from histoviewer.core.models.model_file import load_model
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        try:
            load_model({str(compact)!r}, device="cpu")
        except ModelLoadError as exc:
            print("REFUSED", exc)
        print("SECONDS", time.perf_counter() - t0)
        print("GROWTH_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO)
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert "parameters, more than" in lines["REFUSED"] and str(compact) in lines["REFUSED"], done.stdout + done.stderr
    assert float(lines["SECONDS"]) < 10
    assert int(lines["GROWTH_KB"]) < 200_000  # well under the 19 GB the network would take


def test_declared_shapes_that_do_not_fit_are_refused_before_arrays_are_read(tmp_path, monkeypatch):
    _, path = _cnn(tmp_path)
    description, arrays = _parts(path)
    description["extra"]["arch_config"] = {"widths": [8, 16, 32, 64], "dropout": 0.2}
    narrow = _write(tmp_path / "narrow.safetensors", description, arrays)
    from histoviewer.core.models import model_file

    monkeypatch.setattr(model_file, "_load_arrays", lambda p: pytest.fail("arrays read before the shape check"))
    with pytest.raises(ModelLoadError, match=r"narrow.safetensors: weights do not fit architecture "
                                             r"'strided-cnn' .*features.0.weight' has shape \(16, 3, 3, 3\)"):
        load_model(narrow, device="cpu")


def test_errors_about_a_model_name_its_file_not_its_header_name(tmp_path):
    from histoviewer.core.models.handcrafted import FEATURE_NAMES

    shipped = default_models_dir() / "handcrafted-pcam.safetensors"
    description, arrays = _parts(shipped)
    description["name"] = "trusted-name"
    description["caveat"] = "another caveat"  # not the shipped weights' own: make them differ
    arrays = {k: v + 0.5 if k == "intercept" else v for k, v in arrays.items()}
    description["extra"]["feature_names"] = list(reversed(FEATURE_NAMES))
    path = _write(tmp_path / "reordered.safetensors", description, arrays)
    with pytest.raises(ModelLoadError) as err:
        load_model(path)
    assert str(err.value).startswith(str(path))


def _returns_within(fn, seconds=20.0):
    """Run ``fn`` on a daemon thread; (finished, exception) after at most ``seconds``."""
    box: dict = {}
    done = threading.Event()

    def run():
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - handed to the test
            box["exc"] = exc
        finally:
            done.set()

    threading.Thread(target=run, daemon=True).start()
    return done.wait(seconds), box.get("exc")


def test_a_fifo_as_model_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    for read in (read_model_info, load_model, restamp_model):
        finished, exc = _returns_within(lambda read=read: read(fifo))
        assert finished, f"{read.__name__} blocked on a FIFO"
        assert isinstance(exc, ModelLoadError) and "named pipe" in str(exc) and str(fifo) in str(exc)


def test_the_models_folder_scan_skips_non_regular_files(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("HISTOVIEWER_DATA_DIR", str(tmp_path / "data"))
    folder = tmp_path / "data" / "models"
    folder.mkdir(parents=True)
    _cnn(folder, name="good.safetensors")
    os.mkfifo(folder / "pipe.safetensors")
    (folder / "folder.safetensors").mkdir()
    caplog.set_level(logging.WARNING)
    t0 = time.perf_counter()
    finished, exc = _returns_within(lambda: available_models(), 30)
    assert finished and exc is None
    keys = [Path(a.key).name for a in available_models()]
    assert "good.safetensors" in keys and "pipe.safetensors" not in keys and "folder.safetensors" not in keys
    assert "pipe.safetensors: skipped in the models folder: not a regular file" in caplog.text
    assert time.perf_counter() - t0 < 30


def test_relabelled_shipped_weights_are_not_restamped(tmp_path):
    shipped = default_models_dir() / "cnn-pcam.safetensors"
    description, arrays = _parts(shipped)
    relabelled = {**description, "caveat": "validated for clinical use", "content_hash": tensors_hash(arrays)}
    path = _write(tmp_path / "old.safetensors", relabelled, arrays, stamp=False, fmt="histoviewer-model/1")
    with pytest.raises(ModelLoadError, match="old.safetensors: holds the weights of HistoViewer's shipped model"):
        restamp_model(path)


def test_a_handcrafted_file_declaring_large_arrays_is_refused_before_reading_them(tmp_path, monkeypatch):
    shipped = default_models_dir() / "handcrafted-pcam.safetensors"
    description, arrays = _parts(shipped)
    description["caveat"] = "another caveat"
    arrays["padding"] = np.zeros(2_000_000, np.float32)  # 8 MB where kilobytes belong
    path = _write(tmp_path / "padded.safetensors", description, arrays)
    from histoviewer.core.models import model_file

    monkeypatch.setattr(model_file, "_load_arrays", lambda p: pytest.fail("arrays read before the size check"))
    with pytest.raises(ModelLoadError, match="padded.safetensors: a handcrafted model's arrays are kilobytes"):
        load_model(path)


@pytest.mark.parametrize("calibration", [{"method": "platt", "a": "text", "b": 0.0},
                                         {"method": "platt", "a": [1], "b": None},
                                         {"method": "temperature", "temperature": {}}])
def test_a_mistyped_calibration_is_refused_at_load_not_at_prediction(tmp_path, calibration):
    _, path = _cnn(tmp_path)
    description, arrays = _parts(path)
    description["extra"]["calibration"] = calibration
    broken = _write(tmp_path / "calibration.safetensors", description, arrays)
    with pytest.raises(ModelLoadError, match="calibration.safetensors: "):
        load_model(broken, device="cpu")


def test_a_metric_that_could_not_be_computed_is_saved_as_unknown(tmp_path):
    """NaN is not JSON: a model whose description holds one is saved with null there (and
    loads), rather than failing at the end of a training run or writing a file we refuse."""
    model, path = _cnn(tmp_path, metrics={"valid_auc": float("nan"), "valid_n": 10.0},
                       extra={"training": {"loss": [0.5, float("inf")]}})
    info = load_model(path, device="cpu").info
    assert info.metrics == {"valid_auc": None, "valid_n": 10.0}
    assert info.extra["training"]["loss"] == [0.5, None]
    assert info.content_hash == model.info.content_hash


def test_model_lists_and_caches_see_only_verified_descriptions(tmp_path):
    """``read_model_info`` (model lists, export caches, provenance) checks the hash too: an
    edited caveat never reaches a menu or an export made from cached results."""
    _, path = _cnn(tmp_path)
    description, arrays = _parts(path)
    _write(path, {**description, "caveat": "validated for clinical use"}, arrays, stamp=False)
    with pytest.raises(ModelLoadError, match="do not match the hash"):
        read_model_info(path)
