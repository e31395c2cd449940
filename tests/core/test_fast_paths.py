"""The fixed costs of ``analyze`` cut without changing a result (issue 15): every fast path
gives what the slow one gave, to the bit where the arithmetic is the same (blank check,
heatmap, thumbnail) and within float tolerance where only the threads differ (the model on
parallel threads of one torch thread each, loading while the slide is read)."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
import tifffile
from PIL import Image

from histoviewer.core.atomic import atomic_write_bytes
from histoviewer.core.colormaps import DEFAULT_COLORMAP, colormap_lut, lut_indices
from histoviewer.core.errors import ModelLoadError
from histoviewer.core.grid_geometry import GridGeometry
from histoviewer.core.inference.analyze import AnalyzeOptions, analyze_slide
from histoviewer.core.inference.blank import (
    MIN_BLOCK_SPREAD,
    _channel_sum,
    _exact_block_spread,
    blank_by_luminance,
    blank_patches,
)
from histoviewer.core.inference.heatmap_key import key_box
from histoviewer.core.inference.model_loading import PendingModel
from histoviewer.core.inference.outputs import write_heatmap_png
from histoviewer.core.inference.pipeline import model_parallelism
from histoviewer.core.inference.tiff_regions import TiffRegionSource
from histoviewer.core.jobs import analysis as jobs_analysis
from histoviewer.core.jobs import analyze_case
from histoviewer.core.models.registry import open_model
from histoviewer.core.slide import open_slide
from tests.core.inference_helpers import write_synthetic_tiff


def test_the_blank_checks_luminance_is_numpys_mean_for_every_colour():
    every = np.stack(
        np.meshgrid(*[np.arange(256, dtype=np.uint8)] * 3, indexing="ij"), -1
    ).reshape(1, -1, 1, 3)
    assert np.array_equal(
        _channel_sum(every).astype(np.float32) / 3,
        every.mean(axis=-1, dtype=np.float32),
    )
    patches = np.random.default_rng(0).integers(0, 256, (8, 96, 96, 3), dtype=np.uint8)
    patches[3] = 128  # flat grey: blank
    assert blank_patches(patches).tolist() == [
        False,
        False,
        False,
        True,
        False,
        False,
        False,
        False,
    ]


def _with_block_spread(
    rng: np.random.Generator, spread: float, size: int = 96
) -> np.ndarray:
    """A patch whose 16-px blocks' mean luminances spread by about ``spread`` grey levels,
    with 2 grey levels of pixel noise (a structureless, glass-like patch near the threshold)."""
    steps = rng.normal(0.0, spread, (size // 16, size // 16))
    base = 180.0 + np.kron(steps, np.ones((16, 16)))[..., None]
    return np.clip(np.rint(base + rng.normal(0, 2, (size, size, 3))), 0, 255).astype(
        np.uint8
    )


def test_the_exact_blank_check_gives_the_float32_verdict_on_every_patch(shared_data):
    """``blank_patches`` decides most patches from exact integer block sums; its verdict must
    be ``blank_by_luminance``'s (the float32 definition the thresholds were measured with)
    for tissue, glass, fills and patches whose block spread lies at the threshold and at the
    edge of the exact path's margin."""
    rng = np.random.default_rng(5)
    near = [_with_block_spread(rng, s) for s in rng.uniform(0.2, 1.6, 400)]
    fills = [np.full((96, 96, 3), v, np.uint8) for v in (0, 128, 255)]
    noise = rng.integers(0, 256, (40, 96, 96, 3), dtype=np.uint8)
    odd = rng.integers(
        100, 110, (20, 40, 72, 3), dtype=np.uint8
    )  # not a multiple of the block
    patches = np.concatenate([np.stack(near + fills), noise])
    # real H&E (PatchCamelyon 96-px patches: tissue, and the glass among the negatives)
    real = [
        np.asarray(Image.open(f).convert("RGB"))
        for sub in ("kaggle-sample/train", "pcam-96px-negatives")
        for f in sorted((shared_data / "patches" / sub).glob("*.*"))[:150]
        if f.suffix.lower() in (".jpg", ".png", ".tif")
    ]
    if real:
        patches = np.concatenate(
            [patches, np.stack([r for r in real if r.shape == (96, 96, 3)])]
        )
    spread = _exact_block_spread(patches)
    # the synthetic set straddles both the threshold and the exact path's margin
    assert (spread < MIN_BLOCK_SPREAD).sum() > 20 and (
        spread > MIN_BLOCK_SPREAD + 0.2
    ).sum() > 20
    assert (
        (spread > MIN_BLOCK_SPREAD + 0.03) & (spread < MIN_BLOCK_SPREAD + 0.08)
    ).sum() > 5
    expected = blank_by_luminance(patches)
    assert 10 < expected.sum() < len(patches) - 10
    assert np.array_equal(blank_patches(patches), expected)
    assert np.array_equal(blank_patches(odd), blank_by_luminance(odd))
    # the exact spread is the float64 spread of the block means, to rounding
    n = len(patches)
    means = (
        (patches.astype(np.float64).sum(-1) / 3)
        .reshape(n, 6, 16, 6, 16)
        .mean(axis=(2, 4))
    )
    assert np.allclose(spread, means.reshape(n, -1).std(axis=1), atol=1e-9)


def _heatmap_as_before(path, thumbnail, encoded, geometry, opacity=0.65):
    """``write_heatmap_png`` before issue 15 (3dde403), kept as the reference."""
    th, tw = thumbnail.shape[:2]
    l0_x = (np.arange(tw) + 0.5) * geometry.l0_width / tw
    l0_y = (np.arange(th) + 0.5) * geometry.l0_height / th
    cols = np.clip(
        ((l0_x - geometry.l0_origin_x) // geometry.l0_stride).astype(np.int64),
        0,
        geometry.cols - 1,
    )
    rows = np.clip(
        ((l0_y - geometry.l0_origin_y) // geometry.l0_stride).astype(np.int64),
        0,
        geometry.rows - 1,
    )
    vals = encoded[rows[:, None], cols[None, :]]
    has = np.isfinite(vals) & (vals >= 0)
    base = thumbnail[..., :3].astype(np.uint16)
    grey = base.sum(axis=-1, keepdims=True) // 3
    keep = round(0.35 * 256)
    out = ((grey * (256 - keep) + base * keep) >> 8).astype(np.uint8)
    lut = colormap_lut(DEFAULT_COLORMAP).astype(np.uint16)
    a = round(opacity * 256)
    idx = lut_indices(vals[has])
    out[has] = ((lut[idx] * a + out[has].astype(np.uint16) * (256 - a)) >> 8).astype(
        np.uint8
    )
    buf = io.BytesIO()
    Image.fromarray(out).save(buf, format="PNG", compress_level=3)
    atomic_write_bytes(path, buf.getvalue())


@pytest.mark.parametrize(
    ("slide_px", "thumb_px"),
    [
        ((40000, 30000), (400, 300)),
        ((3000, 2000), (1500, 1000)),
        ((7777, 1234), (2048, 325)),
    ],
)
def test_the_heatmap_shows_the_same_pixels_as_before(tmp_path, slide_px, thumb_px):
    geometry = GridGeometry.for_slide(slide_px, 0.25, 0.972, 96)
    rng = np.random.default_rng(sum(slide_px))
    encoded = rng.random(geometry.shape).astype(np.float32)
    encoded[rng.random(geometry.shape) < 0.2] = np.nan
    encoded[rng.random(geometry.shape) < 0.2] = -1.0
    encoded[rng.random(geometry.shape) < 0.1] = -2.0
    thumbnail = rng.integers(0, 256, (thumb_px[1], thumb_px[0], 3), dtype=np.uint8)
    _heatmap_as_before(tmp_path / "before.png", thumbnail, encoded, geometry)
    write_heatmap_png(tmp_path / "now.png", thumbnail, encoded, geometry)
    before = np.asarray(Image.open(tmp_path / "before.png"))
    now = np.asarray(Image.open(tmp_path / "now.png"))
    assert now.shape == before.shape
    # the same pixels, but for the key to the colours drawn since (heatmap_key), in its box
    box = key_box(encoded, thumb_px, screened=False)
    outside = np.ones(now.shape[:2], bool)
    if box is not None:
        x0, y0, x1, y1 = box
        outside[y0:y1, x0:x1] = False
        assert not np.array_equal(now[y0:y1, x0:x1], before[y0:y1, x0:x1])
    assert np.array_equal(now[outside], before[outside])


def test_the_direct_thumbnail_is_the_slide_readers(tiny_svs, cmu_small, tmp_path):
    pyramid = tmp_path / "pyramid.tiff"  # a tiled pyramid with levels 1, 4
    rgb = np.random.default_rng(1).integers(0, 256, (1200, 1600, 3), dtype=np.uint8)
    with tifffile.TiffWriter(pyramid) as tif:
        tif.write(
            rgb, tile=(256, 256), compression="jpeg", photometric="rgb", subifds=0
        )
        tif.write(
            rgb[::4, ::4].copy(),
            tile=(256, 256),
            compression="jpeg",
            photometric="rgb",
            subfiletype=1,
        )
    checked = 0
    for path in (tiny_svs, cmu_small, pyramid):
        with open_slide(path) as reader:
            source = TiffRegionSource.open(path, reader)
            if source is None:
                continue
            try:
                for size in (2048, 300, 64):
                    direct = source.thumbnail(size)
                    if direct is not None:
                        assert np.array_equal(direct, reader.thumbnail(size)), (
                            path,
                            size,
                        )
                        checked += 1
            finally:
                source.close()
    assert checked >= 6  # the real SVS and the checked-in one at least


@pytest.fixture
def default_cnn():
    model = open_model("cnn", device="cpu")
    yield model
    model.close()


def test_parallel_model_threads_and_a_loading_model_change_no_output(
    cmu_small, tmp_path, default_cnn
):
    threads, torch_threads = model_parallelism(default_cnn)
    if threads < 2:
        pytest.skip("one core: the model runs on one thread anyway")
    assert torch_threads == max(1, len(os.sched_getaffinity(0)) // threads)
    # small batches: several in flight on the model threads at once
    before = analyze_slide(
        cmu_small,
        tmp_path / "before",
        default_cnn,
        AnalyzeOptions(model_threads=1, batch_size=16),
    )
    pending = PendingModel.open("cnn", device="cpu")
    try:
        now = analyze_slide(
            cmu_small, tmp_path / "now", pending, AnalyzeOptions(batch_size=16)
        )
    finally:
        pending.close()
    assert now.tissue_patches == before.tissue_patches > 50
    map_before = tifffile.imread(tmp_path / "before" / "probability.tiff")
    map_now = tifffile.imread(tmp_path / "now" / "probability.tiff")
    assert np.array_equal(np.isnan(map_now), np.isnan(map_before))
    assert np.allclose(map_now, map_before, atol=1e-5, equal_nan=True)
    assert np.allclose(
        tifffile.imread(tmp_path / "now" / "domain.tiff"),
        tifffile.imread(tmp_path / "before" / "domain.tiff"),
        rtol=1e-4,
        equal_nan=True,
    )
    assert now.node_label == before.node_label and now.lesions == before.lesions
    assert now.domain == before.domain
    assert np.array_equal(
        np.asarray(Image.open(tmp_path / "now" / "heatmap.png")),
        np.asarray(Image.open(tmp_path / "before" / "heatmap.png")),
    )
    summary = json.loads((tmp_path / "now" / "summary.json").read_text())
    assert (
        summary["model"]
        == json.loads((tmp_path / "before" / "summary.json").read_text())["model"]
    )


def test_a_model_that_fails_on_its_loading_thread_fails_the_run(monkeypatch, tmp_path):
    slide = write_synthetic_tiff(tmp_path / "slide.tiff")

    def refuse(spec, device="auto"):
        raise ModelLoadError(f"{spec}: weights do not fit")

    monkeypatch.setattr(jobs_analysis, "open_model", refuse)
    with pytest.raises(ModelLoadError, match="weights do not fit"):
        analyze_case(
            [slide], tmp_path / "out", AnalyzeOptions(model="cnn", device="cpu")
        )
    assert not (tmp_path / "out" / "slide").exists()
