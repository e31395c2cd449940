"""Grad-CAM localisation on phantom patches whose tumour is known pixel by pixel, and the
patch inspector's response time (issue 16).

Localisation: phantom nodes (0.5 um/px) with micrometastases are written under --work; every
tissue patch of the overlay's grid (the default model's scale, read by the overlay's own
``RegionCutter``) whose share of tumour pixels (pixel centres inside the lesion polygon of the
phantom's ground truth) lies in [--min-share, 1 - --min-share] is a *border* patch: the only
kind where "where in the patch" has an answer. For each, with each method (Grad-CAM,
Grad-CAM++) and each model:

- mass inside: the share of the map's mass on tumour pixels;
- pointing game: whether the map's maximum lies on a tumour pixel (Zhang et al. 2018, strict:
  no tolerance margin);

against the chance baseline of the same patches: a uniform map puts the tumour share of its
mass inside, and a random point hits tumour with that probability. Patches whose map is all
zero (nothing pushed them towards tumour) count as misses and no mass inside. Reported for
all border patches and for those the model calls tumour (P >= its operating threshold),
where the map explains a positive call. Two other placements of the map's cells on the patch
are scored beside the shipped image resize (``gradcam.upsample_cells``): the geometric
centres of the strided convolutions, and the cells' measured effective receptive-field centres.

Inspector: ``inspect_point`` (read, classify, explain, 8-view TTA, domain) on --points tissue
points of the phantom, each model, against one plain ``classify`` of the same patch (what the
overlay pays per patch); and the viewer's Ctrl+click to dock filled (offscreen Qt).

    PYTHONPATH=. python benchmarks/bench_gradcam.py --work /tmp/bench-gradcam [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from skimage.measure import points_in_poly

from histoviewer.core.explain.gradcam import grad_cam
from histoviewer.core.explain.tta import model_threshold
from histoviewer.core.inference.inspect_patch import inspect_point, inspection_geometry
from histoviewer.core.inference.regions import RegionCutter, RegionJob
from histoviewer.core.inference.tissue import grid_tissue
from histoviewer.core.models.registry import open_model
from histoviewer.core.patches.slide_patches import read_tumour_polygons
from histoviewer.core.phantom import write_phantom
from histoviewer.core.slide import open_slide

PHANTOMS = (  # (seed, lesions): 4 x 4 mm slides at 0.5 um/px, one micrometastasis each
    (1, "micro:1.4"),
    (2, "micro:1.2"),
    (3, "micro:1.6"),
    (4, "micro:1.0"),
)


def phantoms(work: Path) -> list[tuple[Path, list[np.ndarray]]]:
    """The phantoms (written once) and their lesion polygons from the ground-truth GeoJSON."""
    out = []
    for seed, lesions in PHANTOMS:
        path = work / f"node-{seed}.tiff"
        if not path.exists():
            write_phantom(
                path, width=8000, height=8000, mpp=0.5, lesions=lesions, seed=seed
            )
        positives, negatives = read_tumour_polygons(path.with_suffix(".geojson"))
        assert not negatives  # phantom lesions have no holes
        out.append((path, [np.asarray(p, float) for p in positives]))
    return out


def truth_mask(geometry, cell: int, polys: list[np.ndarray]) -> np.ndarray:
    """(P, P) bool: model pixels whose centre lies in a lesion."""
    x, y, _, _ = geometry.cell_rect(cell)
    p, s = geometry.patch_px, geometry.l0_per_model_px
    yy, xx = np.mgrid[0:p, 0:p]
    pts = np.column_stack([(x + (xx.ravel() + 0.5) * s), (y + (yy.ravel() + 0.5) * s)])
    inside = np.zeros(len(pts), bool)
    for poly in polys:
        inside |= points_in_poly(pts, poly)
    return inside.reshape(p, p)


def border_patches(path: Path, polys: list[np.ndarray], model, min_share: float):
    reader = open_slide(path)
    g = inspection_geometry(reader, model)
    tissue = grid_tissue(reader, g).reshape(-1)
    cells, masks = [], []
    for cell in np.flatnonzero(tissue):
        x, y, w, h = g.cell_rect(int(cell))
        if not any(
            poly[:, 0].min() < x + w
            and poly[:, 0].max() > x
            and poly[:, 1].min() < y + h
            and poly[:, 1].max() > y
            for poly in polys
        ):
            continue
        mask = truth_mask(g, int(cell), polys)
        if min_share <= mask.mean() <= 1 - min_share:
            cells.append(int(cell))
            masks.append(mask)
    cutter = RegionCutter(reader, g)
    patches = (
        np.stack(
            [
                cutter(
                    RegionJob(np.array([c]), *divmod(c, g.cols), *divmod(c, g.cols))
                )[0]
                for c in cells
            ]
        )
        if cells
        else np.zeros((0, g.patch_px, g.patch_px, 3), np.uint8)
    )
    return reader, g, patches, np.array(masks, bool)


def geometric_centres(cells: np.ndarray, p: int) -> np.ndarray:
    """Cell ``j`` on model pixel ``s j`` (where stride-2 convolutions centre it), bilinear
    between centres, constant beyond the last: the alternative placement to the image resize."""
    h = cells.shape[-1]
    centres = np.arange(h) * (p / h)
    return _place(cells, centres, centres, p)


def effective_centres(model, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each cell row's / column's measured effective receptive-field centre (model px): the
    centroid of |d(sum of that row's activations) / d input| over ``patches``."""
    import torch

    from histoviewer.core.explain.gradcam import feature_module
    from histoviewer.core.models.cnn import normalise_uint8_nhwc

    net = model.network.eval()
    _name, module = feature_module(net)
    x = normalise_uint8_nhwc(
        torch.from_numpy(model.prepare_patches(patches))
    ).requires_grad_(True)
    store = {}
    handle = module.register_forward_hook(
        lambda _m, _i, out: store.__setitem__("a", out)
    )
    net(x)
    handle.remove()
    acts = store["a"]
    h, p = acts.shape[-1], patches.shape[1]
    yy, xx = np.mgrid[0:p, 0:p]
    cy, cx = np.zeros(h), np.zeros(h)
    for j in range(h):
        (g,) = torch.autograd.grad(acts[:, :, j, :].sum(), x, retain_graph=True)
        w = g.abs().sum(dim=(0, 1)).numpy()
        cy[j] = (w * yy).sum() / w.sum()
        (g,) = torch.autograd.grad(acts[:, :, :, j].sum(), x, retain_graph=True)
        w = g.abs().sum(dim=(0, 1)).numpy()
        cx[j] = (w * xx).sum() / w.sum()
    return cy, cx


def _place(cells: np.ndarray, cy: np.ndarray, cx: np.ndarray, p: int) -> np.ndarray:
    u = np.arange(p)
    out = np.empty((len(cells), p, p), np.float32)
    for n, c in enumerate(cells):
        rows = np.stack([np.interp(u, cx, c[i]) for i in range(c.shape[0])])  # (h, P)
        out[n] = np.stack([np.interp(u, cy, rows[:, k]) for k in range(p)], axis=1)
    out = np.clip(out, 0, None)
    return out / np.maximum(out.reshape(len(out), -1).max(axis=1), 1e-12)[:, None, None]


def localisation(model, patches: np.ndarray, masks: np.ndarray, method: str) -> dict:
    """``method``: "gradcam" / "gradcam++" as shipped (image-resize placement), or
    "gradcam, geometric centres" / "gradcam, effective centres" (other placements)."""
    base, _, placement = method.partition(", ")
    cam = grad_cam(model, patches, base)
    share = masks.reshape(len(masks), -1).mean(axis=1)
    p = cam.cam.shape[-1]
    if placement == "geometric centres":
        maps = geometric_centres(cam.cam_cells, p)
    elif placement == "effective centres":
        maps = _place(cam.cam_cells, *effective_centres(model, patches[:32]), p)
    else:
        maps = cam.cam
    flat = maps.reshape(len(maps), -1)
    total = flat.sum(axis=1)
    inside = np.where(
        total > 0,
        (flat * masks.reshape(len(masks), -1)).sum(axis=1) / np.maximum(total, 1e-12),
        0.0,
    )
    peak_idx = flat.argmax(axis=1)
    hit = (cam.peak > 0) & masks.reshape(len(masks), -1)[
        np.arange(len(masks)), peak_idx
    ]
    called = cam.probability >= model_threshold(model)

    def summary(sel: np.ndarray) -> dict:
        n = int(sel.sum())
        if n == 0:
            return {"n": 0}
        return {
            "n": n,
            "mass_inside": float(inside[sel].mean()),
            "pointing_hit": float(hit[sel].mean()),
            "chance_mass_inside": float(share[sel].mean()),
            "chance_pointing": float(share[sel].mean()),
            "empty_maps": int((cam.peak[sel] <= 0).sum()),
        }

    return {"all": summary(np.ones(len(masks), bool)), "called_tumour": summary(called)}


def inspector_times(path: Path, key: str, points: int) -> dict:
    model = open_model(key, device="cpu")
    reader = open_slide(path)
    g = inspection_geometry(reader, model)
    tissue = np.flatnonzero(grid_tissue(reader, g).reshape(-1))
    rng = np.random.default_rng(0)
    picks = rng.choice(tissue, size=min(points, len(tissue)), replace=False)
    inspect_s, plain_s = [], []
    inspect_point(
        reader, model, g, *np.add(g.cell_rect(int(picks[0]))[:2], 10)
    )  # warm-up
    for cell in picks:
        x, y, w, _ = g.cell_rect(int(cell))
        t0 = time.perf_counter()
        ins = inspect_point(reader, model, g, x + w / 2, y + w / 2)
        inspect_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        model.classify(ins.patch[None])
        plain_s.append(time.perf_counter() - t0)
    med_i, med_p = statistics.median(inspect_s), statistics.median(plain_s)
    return {
        "model": key,
        "points": len(picks),
        "inspect_median_ms": 1e3 * med_i,
        "inspect_max_ms": 1e3 * max(inspect_s),
        "plain_classify_median_ms": 1e3 * med_p,
        "ratio": med_i / med_p,
    }


def gui_click_times(path: Path, key: str, clicks: int) -> dict:
    """Ctrl+click to ``filled`` in the real window (overlay on, idle after covering the view)."""
    from PySide6.QtCore import QEventLoop, QPoint, Qt
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    from histoviewer.qt.ai_panel import AiSettings
    from histoviewer.qt.main_window import MainWindow

    app = QApplication.instance() or QApplication([])
    win = MainWindow(
        cache_mb=128, ai=AiSettings(model=key, device="cpu", background=False)
    )
    win.resize(1400, 900)
    win.show()
    tab = win.open_slide(path)

    def pump_until(cond, timeout=300.0):
        t = time.perf_counter()
        while not cond() and time.perf_counter() - t < timeout:
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
            time.sleep(0.002)
        return cond()

    pump_until(
        lambda: (
            tab.view.width() > 400 and tab.heatmap is not None and tab.heatmap.paintable
        )
    )
    pump_until(lambda: tab.heatmap.live.is_idle and tab.heatmap_coverage()[0] == 1.0)
    got: list = []
    win.inspector.filled.connect(got.append)
    win.inspector.failed.connect(got.append)
    rng = np.random.default_rng(1)
    times = []
    w, h = tab.view.width(), tab.view.height()
    for i in range(clicks + 1):
        got.clear()
        sx, sy = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h
        t0 = time.perf_counter()
        QTest.mouseClick(
            tab.view,
            Qt.MouseButton.LeftButton,
            Qt.KeyboardModifier.ControlModifier,
            QPoint(int(sx), int(sy)),
        )
        pump_until(lambda: bool(got), 60)
        if i:  # the first loads the inspector's model copy
            times.append(time.perf_counter() - t0)
    first_failed = [g for g in got if isinstance(g, str)]
    win.close()
    return {
        "model": key,
        "clicks": len(times),
        "click_to_dock_median_ms": 1e3 * statistics.median(times),
        "click_to_dock_max_ms": 1e3 * max(times),
        "failed": first_failed,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--models", nargs="+", default=["cnn", "cnn-resnet"])
    ap.add_argument("--min-share", type=float, default=0.15)
    ap.add_argument("--points", type=int, default=20)
    ap.add_argument("--clicks", type=int, default=10)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    nodes = phantoms(args.work)
    results: dict = {"localisation": {}, "inspector": [], "gui": []}
    for key in args.models:
        model = open_model(key, device="cpu")
        all_patches, all_masks = [], []
        for path, polys in nodes:
            _reader, _g, patches, masks = border_patches(
                path, polys, model, args.min_share
            )
            all_patches.append(patches)
            all_masks.append(masks)
        patches, masks = np.concatenate(all_patches), np.concatenate(all_masks)
        for method in (
            "gradcam",
            "gradcam++",
            "gradcam, geometric centres",
            "gradcam, effective centres",
        ):
            t0 = time.perf_counter()
            r = localisation(model, patches, masks, method)
            r["seconds_per_patch"] = (time.perf_counter() - t0) / max(1, len(patches))
            results["localisation"][f"{key} {method}"] = r
            for part in ("all", "called_tumour"):
                s = r[part]
                if s["n"]:
                    print(
                        f"{key:10s} {method:26s} {part:13s} n={s['n']:4d}  mass inside {s['mass_inside']:.3f} "
                        f"(chance {s['chance_mass_inside']:.3f})  pointing {s['pointing_hit']:.3f} "
                        f"(chance {s['chance_pointing']:.3f})  empty maps {s['empty_maps']}",
                        flush=True,
                    )
    for key in ("cnn", "handcrafted"):
        r = inspector_times(nodes[0][0], key, args.points)
        results["inspector"].append(r)
        print(
            f"inspect_point {key:11s}: median {r['inspect_median_ms']:.0f} ms (max {r['inspect_max_ms']:.0f}) "
            f"vs one plain classify {r['plain_classify_median_ms']:.1f} ms: {r['ratio']:.1f}x",
            flush=True,
        )
    for key in ("cnn", "handcrafted"):
        r = gui_click_times(nodes[0][0], key, args.clicks)
        results["gui"].append(r)
        print(
            f"viewer Ctrl+click to dock filled {key:11s}: median {r['click_to_dock_median_ms']:.0f} ms "
            f"(max {r['click_to_dock_max_ms']:.0f}) over {r['clicks']} clicks",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
