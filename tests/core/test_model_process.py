"""The patch model in a child process (issue 15: a cold ``analyze`` imports torch there while
this process reads the slide): the same scores, maps and lesions as the model loaded here;
its errors come back as ours; a child that dies fails the batches, it never hangs the run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from histoviewer.cli import main
from histoviewer.core.errors import InferenceError, ModelError, ModelLoadError
from histoviewer.core.inference.analyze import AnalyzeOptions, analyze_slide
from histoviewer.core.inference.model_process import ENV_SWITCH, start_model_process
from histoviewer.core.inference.pipeline import model_parallelism
from histoviewer.core.model_child import launch_model_child
from histoviewer.core.models.registry import open_model


@pytest.fixture(scope="module")
def local_cnn():
    model = open_model("cnn", device="cpu")
    yield model
    model.close()


def _patches(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 96, 96, 3), dtype=np.uint8)


def test_the_child_classifies_as_the_model_here_and_reports_its_errors(local_cnn):
    pending = start_model_process("cnn", device="cpu")
    try:
        remote = pending.result()
        assert remote.info == local_cnn.info and pending.info.input == remote.info.input
        threads, torch_threads = model_parallelism(remote)
        assert threads == remote.call_threads >= 1 and torch_threads is None  # this process's torch untouched
        patches, mask = _patches(40), np.arange(40) % 3 == 0
        here, there = local_cnn.classify(patches, domain_mask=mask), remote.classify(patches, domain_mask=mask)
        assert np.allclose(there.probability, here.probability, atol=1e-6)
        assert np.array_equal(np.isnan(there.domain_distance), np.isnan(here.domain_distance))
        assert np.allclose(there.domain_distance, here.domain_distance, rtol=1e-5, equal_nan=True)
        assert np.allclose(remote.predict_proba(patches[:5]), here.probability[:5], atol=1e-6)
        with pytest.raises(ModelError, match=r"expected patches of shape \(N, 96, 96, 3\)"):
            remote.classify(patches[:, :50])  # the child's own check, raised here as ours
        assert remote.classify(patches[:0]).probability.shape == (0,)
    finally:
        pending.close()
    with pytest.raises(InferenceError, match="model process is gone"):
        remote.classify(patches)


def test_a_child_that_dies_fails_the_batches_instead_of_hanging():
    child = launch_model_child("cnn", "cpu")
    pending = start_model_process("cnn", device="cpu", child=child)
    try:
        remote = pending.result()
        child.process.kill()
        child.process.wait()
        with pytest.raises(InferenceError, match="ended unexpectedly"):
            remote.classify(_patches(8))
    finally:
        pending.close()


def test_a_model_the_child_cannot_load_raises_its_error_naming_the_file(tmp_path):
    bad = tmp_path / "not-a-model.safetensors"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelLoadError, match="not-a-model"):
        start_model_process(bad, device="cpu")  # the header, read here, is refused at once
    child = launch_model_child(bad, "cpu")
    from histoviewer.core.inference.model_process import ModelProcess

    process = ModelProcess(child)
    with pytest.raises(ModelLoadError, match="not-a-model"):
        process.wait_loaded()  # the child's own refusal, sent back
    assert child.process.poll() is not None  # and it is gone


def test_analysis_with_the_model_in_a_child_writes_the_same_results(cmu_small, tmp_path, local_cnn):
    options = AnalyzeOptions(batch_size=32)
    here = analyze_slide(cmu_small, tmp_path / "here", local_cnn, options)
    pending = start_model_process("cnn", device="cpu")
    try:
        there = analyze_slide(cmu_small, tmp_path / "there", pending, options)
    finally:
        pending.close()
    assert there.tissue_patches == here.tissue_patches > 50 and there.failed_patches == 0
    a, b = (tifffile.imread(tmp_path / d / "probability.tiff") for d in ("here", "there"))
    assert np.array_equal(np.isnan(a), np.isnan(b)) and np.allclose(a, b, atol=1e-6, equal_nan=True)
    assert there.node_label == here.node_label and there.lesions == here.lesions
    assert there.domain == here.domain and there.model == here.model
    assert (tmp_path / "here" / "lesions.geojson").read_text() == (tmp_path / "there" / "lesions.geojson").read_text()


@pytest.mark.slow
def test_the_cli_runs_the_model_in_a_child_by_default(cmu_small, tmp_path, monkeypatch, capsys):
    from histoviewer.core import model_child

    launched = []

    def launch(spec, device="auto"):
        launched.append(spec)
        return launch_model_child(spec, device)

    monkeypatch.setattr(model_child, "launch_model_child", launch)
    outs = {}
    for switch in ("1", "0"):
        monkeypatch.setenv(ENV_SWITCH, switch)
        out = tmp_path / f"out-{switch}"
        assert main(["analyze", str(cmu_small), "--out", str(out)]) in (0, 3)
        outs[switch] = out / cmu_small.stem
    capsys.readouterr()
    maps = [tifffile.imread(o / "probability.tiff") for o in outs.values()]
    assert np.allclose(maps[0], maps[1], atol=1e-6, equal_nan=True)
    summaries = [json.loads((o / "summary.json").read_text()) for o in outs.values()]
    assert summaries[0]["node_label"] == summaries[1]["node_label"]
    assert summaries[0]["model"] == summaries[1]["model"]
    assert launched == ["cnn"]  # by default, and not with the switch off
