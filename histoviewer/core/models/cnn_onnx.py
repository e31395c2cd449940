"""A chain CNN (``cnn_chain.FoldedChain``) as an ONNX graph, built once per model and cached.

The graph reads what the torch path reads: ``(N, P, P, 3)`` uint8 patches (already
stain-normalised), and does what ``cnn.normalise_uint8_nhwc`` and the fused network do:
Cast to float, Transpose to NCHW, ``* 1/(255 * 0.25) - 0.5/0.25``, each stage's Conv (batch
norm folded) + Relu, GlobalAveragePool, Flatten, Gemm with the head, Reshape to ``(N,)``
logits. Dropout is the identity at inference and is left out.

Built with the ``onnx`` package's helpers (a well-kept library; a hand-written protobuf
encoder would have to be kept in step with the format by us). Importing ``onnx`` costs
~0.6 s, so the serialized bytes are cached in the user data folder
(``<data dir>/engine-cache/<key>-<digest>.onnx``, written atomically), keyed by the builder's
version and a digest of the folded arrays and strides: only a model's first run pays the
import. The cache holds no trust: a file whose bytes do not match the digest in its name, or
that onnxruntime cannot load (``cnn_ort``), is rebuilt and replaced; the key covers
everything the bytes are made of, so a changed model or builder never meets a stale graph.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

from histoviewer.core.atomic import atomic_write_bytes
from histoviewer.core.errors import WriteError
from histoviewer.core.models.cnn_chain import FoldedChain
from histoviewer.core.paths import user_data_dir

log = logging.getLogger(__name__)

__all__ = ["BUILDER_VERSION", "OPSET", "build_onnx_bytes", "cached_onnx_bytes", "chain_key", "engine_cache_dir"]

# Bump whenever the same arrays would give another graph (ops, opset, normalisation).
BUILDER_VERSION = 1
OPSET = 17
_IR_VERSION = 8  # the IR version of opset 17: readable by every onnxruntime since 1.12
# The network's input normalisation (cnn.CNN_NORMALISATION): (rgb / 255 - 0.5) / 0.25.
_SCALE = 1.0 / (255 * 0.25)
_SHIFT = 0.5 / 0.25
INPUT_NAME = "patches_uint8_nhwc"
OUTPUT_NAME = "tumour_logit"


def engine_cache_dir() -> Path:
    """``<user data dir>/engine-cache`` (not created here)."""
    return user_data_dir() / "engine-cache"


def chain_key(chain: FoldedChain, patch_px: int) -> str:
    """SHA-256 over the builder's version, the patch size and every folded array and stride."""
    digest = hashlib.sha256(f"histoviewer-onnx-chain/{BUILDER_VERSION}/opset{OPSET}/{patch_px}".encode())
    for weight, bias, stride in chain.stages:
        for arr in (weight, bias):
            digest.update(repr(arr.shape).encode())
            digest.update(np.ascontiguousarray(arr, np.float32).tobytes())
        digest.update(str(stride).encode())
    for arr in (chain.head_weight, chain.head_bias):
        digest.update(repr(arr.shape).encode())
        digest.update(np.ascontiguousarray(arr, np.float32).tobytes())
    return digest.hexdigest()


def build_onnx_bytes(chain: FoldedChain, patch_px: int) -> bytes:
    """The serialized ONNX model of ``chain`` for ``patch_px`` px patches (imports ``onnx``)."""
    # lazy: onnx costs ~0.6 s of start-up; only a model's first run (cache miss) builds a graph
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("Cast", [INPUT_NAME], ["x_float"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["x_float"], ["x_nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Mul", ["x_nchw", "norm_scale"], ["x_scaled"]),
        helper.make_node("Sub", ["x_scaled", "norm_shift"], ["h0"]),
    ]
    inits = [numpy_helper.from_array(np.array([_SCALE], np.float32), "norm_scale"),
             numpy_helper.from_array(np.array([_SHIFT], np.float32), "norm_shift")]
    current = "h0"
    for i, (weight, bias, stride) in enumerate(chain.stages):
        kernel = int(weight.shape[2])
        inits += [numpy_helper.from_array(weight, f"conv{i}.weight"),
                  numpy_helper.from_array(bias, f"conv{i}.bias")]
        nodes.append(helper.make_node("Conv", [current, f"conv{i}.weight", f"conv{i}.bias"], [f"conv{i}"],
                                      kernel_shape=[kernel, kernel], strides=[stride, stride],
                                      pads=[kernel // 2] * 4))
        nodes.append(helper.make_node("Relu", [f"conv{i}"], [f"relu{i}"]))
        current = f"relu{i}"
    inits += [numpy_helper.from_array(chain.head_weight, "head.weight"),
              numpy_helper.from_array(chain.head_bias, "head.bias"),
              numpy_helper.from_array(np.array([-1], np.int64), "logit_shape")]
    nodes += [
        helper.make_node("GlobalAveragePool", [current], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["embedding"], axis=1),
        helper.make_node("Gemm", ["embedding", "head.weight", "head.bias"], ["logit_column"], transB=1),
        helper.make_node("Reshape", ["logit_column", "logit_shape"], [OUTPUT_NAME]),
    ]
    graph = helper.make_graph(
        nodes, "histoviewer-chain-cnn",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, ["n", patch_px, patch_px, 3])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["n"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="histoviewer", ir_version=_IR_VERSION)
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def cached_onnx_bytes(chain: FoldedChain, patch_px: int, *, rebuild: bool = False) -> bytes:
    """The graph's bytes from the cache, else built and cached (``rebuild``: build and replace
    whatever the cache holds). A cache file is named ``<key>-<SHA-256 of its bytes>.onnx`` and
    used only when its bytes still have that digest (a file cut short, damaged or replaced by
    another graph is rebuilt). A cache that cannot be written is logged and skipped."""
    folder = engine_cache_dir()
    key = chain_key(chain, patch_px)
    if not rebuild:
        for path in sorted(folder.glob(f"{key}-*.onnx")):
            try:
                data = path.read_bytes()
            except OSError:
                continue
            if path.stem == f"{key}-{hashlib.sha256(data).hexdigest()}":
                return data
            log.warning("%s: the cached ONNX graph does not match its digest; rebuilt", path)
    data = build_onnx_bytes(chain, patch_px)
    path = folder / f"{key}-{hashlib.sha256(data).hexdigest()}.onnx"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob(f"{key}*.onnx"):  # and any older name of this graph
            if stale != path:
                stale.unlink(missing_ok=True)
        atomic_write_bytes(path, data)
    except (OSError, WriteError) as exc:
        log.warning("cannot cache the model's ONNX graph in %s: %s", folder, exc)
    return data
