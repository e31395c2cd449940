"""Handcrafted classifier throughput: ``extract_features`` + predict vs a naive per-patch loop.

    .venv/bin/python benchmarks/bench_handcrafted.py [--sizes 1,64,256,1024] [--seconds S] [--json [FILE]]

Patches are 96 x 96 px at 0.972 um/px (PatchCamelyon scale): the real PCam patches in
``../shared/data/patches/pcam-96px-negatives`` when present (repeated to fill a batch),
otherwise smoothed random noise. For each batch size both paths run in the same process:

fast   ``HandcraftedClassifier.predict_proba`` (batch-vectorised features + numpy logistic model)
naive  the same kinds of features one patch at a time with the usual scikit-image calls
       (``rgb2hed``, ``gaussian``, ``threshold_otsu``, ``remove_small_objects``, ``label``,
       ``regionprops``, ``graycomatrix``/``graycoprops``, ``local_binary_pattern``, ``rgb2hsv``)
       followed by the same kind of logistic model

Throughput is patches/s from the median call time (each path is timed for about --seconds
per batch size, at least once). The machines are shared and noisy: read the ratios.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

import _common  # noqa: F401 - puts the repository on sys.path first
import numpy as np
from _common import REPO, machine_info, table

from histoviewer.core.input_spec import PCAM_MPP_UM, PCAM_PATCH_PX, InputSpec
from histoviewer.core.models.features import FEATURE_NAMES, extract_features
from histoviewer.core.models.handcrafted import HandcraftedClassifier, fit_handcrafted

PCAM_DIR = REPO.parent / "shared" / "data" / "patches" / "pcam-96px-negatives"


def load_patches(n: int) -> tuple[np.ndarray, str]:
    """``n`` uint8 96-px patches: real PCam JPEGs when available, else smoothed noise."""
    files = sorted(PCAM_DIR.glob("*.jpg"))[:n] if PCAM_DIR.is_dir() else []
    if files:
        from PIL import Image

        real = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
        reps = -(-n // len(real))
        return np.concatenate([real] * reps)[:n], f"{len(real)} real PCam patches ({PCAM_DIR.name})"
    from scipy import ndimage

    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (n, PCAM_PATCH_PX, PCAM_PATCH_PX, 3), dtype=np.uint8)
    return ndimage.uniform_filter(noise, size=(1, 5, 5, 1)), "smoothed random noise (no real patches found)"


def naive_features(patch: np.ndarray, mpp: float) -> np.ndarray:
    """One patch, the straightforward scikit-image way (the baseline; not used by the model)."""
    from skimage.color import rgb2gray, rgb2hed, rgb2hsv
    from skimage.feature import graycomatrix, graycoprops, local_binary_pattern
    from skimage.filters import gaussian, threshold_otsu
    from skimage.measure import label, regionprops
    from skimage.morphology import remove_small_objects

    hed = rgb2hed(patch)
    h, e = hed[..., 0], hed[..., 1]
    stain = [f(c) for c in (h, e) for f in (np.mean, np.std)]
    stain += [float(v) for c in (h, e) for v in np.percentile(c, (10, 50, 90))]
    smooth = gaussian(h, sigma=0.7 / mpp)
    thr = max(threshold_otsu(smooth), 0.04) if np.ptp(smooth) > 0 else 0.04
    mask = remove_small_objects(smooth > thr, max_size=max(1, int(8.0 / mpp**2)))
    regions = regionprops(label(mask, connectivity=1), intensity_image=h)
    areas = np.array([r.area for r in regions], float) * mpp**2
    ecc = [r.eccentricity for r in regions]
    inten = [r.intensity_mean for r in regions]
    field_mm2 = (patch.shape[0] * mpp / 1000) ** 2
    nuclei = [
        thr,
        len(regions) / field_mm2,
        mask.mean(),
        areas.mean() if len(areas) else 0.0,
        areas.std() if len(areas) else 0.0,
        np.median(areas) if len(areas) else 0.0,
        np.percentile(areas, 90) if len(areas) else 0.0,
        areas.std() / areas.mean() if len(areas) else 0.0,
        (areas > 50).mean() if len(areas) else 0.0,
        np.mean(ecc) if ecc else 0.0,
        np.mean(inten) if inten else 0.0,
    ]
    # feature_version 2: hyperchromasia spread, chromatin, outline, crowding, blob spectrum
    from scipy.spatial import cKDTree

    nuc_h = np.array(inten, float)
    chrom = [np.std(r.image_intensity[r.image]) for r in regions]
    irregular = [r.perimeter / (2 * np.sqrt(np.pi * r.area)) for r in regions]
    if len(regions) >= 2:
        nearest = cKDTree(np.array([r.centroid for r in regions]) * mpp).query(
            np.array([r.centroid for r in regions]) * mpp, k=2)[0][:, 1]
        crowd = [nearest.mean(), nearest.std() / nearest.mean()]
    else:
        crowd = [patch.shape[0] * mpp, 0.0]
    nuclei += [nuc_h.std() if len(nuc_h) else 0.0, np.mean(chrom) if chrom else 0.0,
               np.mean(irregular) if irregular else 0.0, *crowd]
    sig = [d / (2 * np.sqrt(2)) / mpp for d in (4.0, 6.4, 10.24, 16.384)]
    blurred = [gaussian(h, sigma=s_, truncate=3.0) for s_ in sig]
    nuclei += [np.maximum(a - b, 0).mean() for a, b in itertools.pairwise(blurred)]
    grey = (rgb2gray(patch) * 255).astype(np.uint8)
    q = grey // 8
    glcm = []
    for d in (1, 2):
        m = graycomatrix(q, [d], [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4], levels=32, symmetric=True, normed=True)
        glcm += [graycoprops(m, p).mean() for p in ("contrast", "homogeneity", "energy", "correlation")]
    lbp = local_binary_pattern(grey, 8, 1, "uniform")
    lbp_hist = np.bincount(lbp.astype(int).ravel(), minlength=10) / lbp.size
    hsv = rgb2hsv(patch)
    f = patch / 255.0
    colour = [*f.mean(axis=(0, 1)), *f.std(axis=(0, 1)), hsv[..., 1].mean(), hsv[..., 1].std(), hsv[..., 2].mean(),
              hsv[..., 2].std(), np.cos(2 * np.pi * hsv[..., 0]).mean(), np.sin(2 * np.pi * hsv[..., 0]).mean(),
              ((hsv[..., 2] > 0.85) & (hsv[..., 1] < 0.12)).mean(), (hsv[..., 2] < 0.15).mean()]
    return np.array(stain + nuclei + glcm + list(lbp_hist) + colour, np.float64)


def naive_predict(patches: np.ndarray, model: HandcraftedClassifier, mpp: float) -> np.ndarray:
    feats = np.stack([naive_features(p, mpp) for p in patches])
    return model.predict_proba_features(feats)


def time_calls(fn, seconds: float, max_calls: int = 200) -> list[float]:
    times: list[float] = []
    start = time.perf_counter()
    while not times or (time.perf_counter() - start < seconds and len(times) < max_calls):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1,64,256,1024", help="batch sizes (default: %(default)s)")
    ap.add_argument("--seconds", type=float, default=4.0, help="time per path and batch size (default: %(default)s)")
    ap.add_argument("--json", nargs="?", const="-", metavar="FILE", help="also write JSON (to FILE, or stdout)")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]

    spec = InputSpec(patch_px=PCAM_PATCH_PX, mpp=PCAM_MPP_UM)
    patches, source = load_patches(max(sizes))
    # Any fitted model will do for timing (prediction cost does not depend on the weights).
    train = patches[:128]
    model = fit_handcrafted(extract_features(train, spec.mpp), np.arange(len(train)) % 2, spec=spec)
    assert naive_features(patches[0], spec.mpp).shape == (len(FEATURE_NAMES),)
    model.predict_proba(patches[:8])  # warm caches and lazy imports of both paths
    naive_predict(patches[:2], model, spec.mpp)

    rows, report = [], {"machine": machine_info(), "input": source, "features": len(FEATURE_NAMES), "results": []}
    for n in sizes:
        batch = np.ascontiguousarray(patches[:n])
        fast = time_calls(lambda: model.predict_proba(batch), args.seconds)
        naive = time_calls(lambda: naive_predict(batch, model, spec.mpp), args.seconds, max_calls=50)
        fast_ps, naive_ps = n / statistics.median(fast), n / statistics.median(naive)
        rows.append([n, fast_ps, naive_ps, fast_ps / naive_ps, len(fast), len(naive)])
        report["results"].append({"batch": n, "fast_patches_per_s": fast_ps, "naive_patches_per_s": naive_ps,
                                  "ratio": fast_ps / naive_ps, "fast_calls": len(fast), "naive_calls": len(naive)})
        print(f"batch {n}: fast {fast_ps:.0f} patches/s, naive {naive_ps:.0f} patches/s", file=sys.stderr)

    m = report["machine"]
    print(f"input: {source}; {len(FEATURE_NAMES)} features; {m['nproc']} CPUs ({m['cpu_model']}), "
          f"load {m['loadavg_1min']}")
    print(table(f"extract_features + predict, {PCAM_PATCH_PX} px at {PCAM_MPP_UM} um/px (patches/s, median call)",
                ["batch", "fast", "naive per-patch", "ratio", "fast calls", "naive calls"], rows))
    if args.json == "-":
        print(json.dumps(report, indent=2))
    elif args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
