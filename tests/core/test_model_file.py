"""Model files: round trips, hashes, and refusal of wrong, truncated and hostile files."""

from __future__ import annotations

import json
import pickle
import struct

import numpy as np
import pytest
import torch

from histoviewer.core.errors import ModelLoadError
from histoviewer.core.models.classifier import ModelInfo
from histoviewer.core.models.cnn import CnnClassifier
from histoviewer.core.models.model_file import (
    load_model,
    model_hash,
    read_model_info,
    save_model,
    tensors_hash,
)

PATCHES = np.random.default_rng(0).integers(0, 256, (7, 96, 96, 3), dtype=np.uint8)


def _cnn(tmp_path, **info_kw):
    torch.manual_seed(0)
    model = CnnClassifier.new(ModelInfo(name="m", kind="cnn", architecture="strided-cnn",
                                        **info_kw), device="cpu")
    path = tmp_path / "m.safetensors"
    save_model(path, model)
    return model, path


def test_cnn_round_trip_gives_identical_predictions(tmp_path):
    model, path = _cnn(tmp_path, training_data="toy", metrics={"valid_auc": 0.9},
                       demonstration=True)
    loaded = load_model(path, device="cpu", engine="torch")  # the engine the model was made on
    assert np.array_equal(model.predict_proba(PATCHES), loaded.predict_proba(PATCHES))
    # the default CPU engine (onnxruntime): the same weights, float32 sums in another order
    on_ort = load_model(path, device="cpu")
    assert on_ort.engine == "onnxruntime" and on_ort.info == loaded.info
    np.testing.assert_allclose(on_ort.predict_proba(PATCHES), loaded.predict_proba(PATCHES), atol=1e-6)
    info = read_model_info(path)
    assert info.content_hash == loaded.info.content_hash == model.info.content_hash
    assert len(info.content_hash) == 64
    assert info.training_data == "toy" and info.metrics == {"valid_auc": 0.9}
    assert info.demonstration and "DEMONSTRATION" in info.display_name()
    assert info.software_version and info.created
    assert info.input.patch_px == 96 and info.input.mpp == pytest.approx(0.972)


def test_save_is_atomic_and_keeps_no_temp_files(tmp_path):
    _cnn(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


class _Boom:
    """Unpickling this would create a marker file: the loader must never get that far."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_and_torch_checkpoints_are_refused_without_running_them(tmp_path):
    marker = tmp_path / "pwned"
    raw = tmp_path / "evil.pkl"
    raw.write_bytes(pickle.dumps(_Boom(marker)))
    ckpt = tmp_path / "evil.pt"
    torch.save({"w": _Boom(marker)}, ckpt)
    for path in (raw, ckpt):
        with pytest.raises(ModelLoadError) as err:
            load_model(path)
        assert str(path) in str(err.value)
    assert not marker.exists()


def test_truncated_file_is_refused(tmp_path):
    _, path = _cnn(tmp_path)
    data = path.read_bytes()
    for cut in (0, 5, 100, len(data) // 2, len(data) - 1):
        bad = tmp_path / f"cut{cut}.safetensors"
        bad.write_bytes(data[:cut])
        with pytest.raises(ModelLoadError, match=f"cut{cut}"):
            load_model(bad)


def test_edited_weights_fail_the_hash(tmp_path):
    _, path = _cnn(tmp_path)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="hash"):
        load_model(path)


def _safetensors(tmp_path, name, tensors, meta):
    from safetensors.numpy import save_file

    path = tmp_path / name
    save_file(tensors, str(path), metadata=meta)
    return path


def test_foreign_and_wrong_files_are_refused(tmp_path):
    plain = _safetensors(tmp_path, "plain.safetensors", {"w": np.zeros(3, np.float32)}, None)
    with pytest.raises(ModelLoadError, match="not a HistoViewer model"):
        load_model(plain)
    noise = tmp_path / "noise.bin"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ModelLoadError, match="noise.bin"):
        load_model(noise)
    huge_header = tmp_path / "huge.safetensors"
    huge_header.write_bytes(struct.pack("<Q", 10**12) + b"{}")
    with pytest.raises(ModelLoadError, match="header"):
        load_model(huge_header)
    with pytest.raises(ModelLoadError, match="not found"):
        load_model(tmp_path / "missing.safetensors")
    with pytest.raises(ModelLoadError, match="directory"):
        load_model(tmp_path)


def _header_meta(info: dict, tensors: dict | None = None) -> dict:
    """A format /2 header for ``info``, stamped with the hash of ``info`` and ``tensors``
    (so that what a test checks is reached, not the hash check)."""
    info = {**info, "content_hash": model_hash(info, tensors_hash(tensors or {}))}
    return {"format": "histoviewer-model/2", "histoviewer.model": json.dumps(info)}


def test_offsets_outside_the_file_are_refused(tmp_path):
    header = json.dumps({"w": {"dtype": "F32", "shape": [1000000], "data_offsets": [0, 4000000]},
                         "__metadata__": _header_meta({"name": "x", "kind": "cnn",
                                                       "architecture": "strided-cnn"})}).encode()
    path = tmp_path / "lie.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 16)
    with pytest.raises(ModelLoadError, match="outside the file"):
        load_model(path)


def test_wrong_architecture_or_weights_are_refused(tmp_path):
    model, _ = _cnn(tmp_path)
    tensors = model.tensors()
    info = json.loads(json.dumps(model.info.to_dict()))
    wrong_arch = _safetensors(tmp_path, "arch.safetensors", tensors,
                              _header_meta({**info, "architecture": "resnet"}, tensors))
    with pytest.raises(ModelLoadError, match="arch.safetensors: weights do not fit architecture"):
        load_model(wrong_arch)
    unknown = _safetensors(tmp_path, "unknown.safetensors", tensors,
                           _header_meta({**info, "architecture": "__import__"}, tensors))
    with pytest.raises(ModelLoadError, match="unknown CNN architecture"):
        load_model(unknown)
    missing = dict(tensors)
    missing.pop(next(iter(missing)))
    partial = _safetensors(tmp_path, "partial.safetensors", missing, _header_meta(info, missing))
    with pytest.raises(ModelLoadError, match="partial.safetensors: weights do not fit"):
        load_model(partial)
    bad_kind = _safetensors(tmp_path, "kind.safetensors", tensors,
                            _header_meta({**info, "kind": "shell"}, tensors))
    with pytest.raises(ModelLoadError, match="unknown model kind"):
        load_model(bad_kind)
    bad_json = _safetensors(tmp_path, "json.safetensors", tensors,
                            {"format": "histoviewer-model/2", "histoviewer.model": "{nope"})
    with pytest.raises(ModelLoadError, match="json.safetensors: cannot read the model description: not valid JSON"):
        load_model(bad_json)


def test_any_header_length_loads_even_when_its_first_byte_looks_like_pickle(tmp_path):
    """The 8-byte length prefix can start with 0x80 (pickle's opcode) or 'PK' (zip)."""
    torch.manual_seed(0)
    base = CnnClassifier.new(ModelInfo(name="m", kind="cnn", architecture="strided-cnn"),
                             device="cpu")
    hit = 0
    for pad in range(0, 1200, 1):
        base.info = ModelInfo(name="m" + "x" * pad, kind="cnn", architecture="strided-cnn")
        path = tmp_path / "m.safetensors"
        save_model(path, base)
        if path.read_bytes()[:1] == b"\x80":
            hit += 1
            assert load_model(path, device="cpu").info.name == base.info.name
            break
    assert hit, "no header length starting with 0x80 was produced"
