"""Typed slide summaries for tests that stage cases without running an analysis."""

from __future__ import annotations

from histoviewer.core.analysis.lesions import Lesion
from histoviewer.core.staging_terms import NodeLabel
from histoviewer.core.staging_terms import classify_diameter_mm
from histoviewer.core.analysis.summary import SlideFiles, SlideSummary, SlideTiming
from histoviewer.core.grid_geometry import GridGeometry
from histoviewer.core.models.record import ModelRecord

MODEL = ModelRecord(name="m", display_name="m (fake)", kind="fake", architecture="none", content_hash="e" * 64,
                    mpp=1.0, patch_px=50)


def lesion(index: int, diameter_mm: float | None, mpp: float | None = 0.25) -> Lesion:
    """A square-ish lesion at (1000, 1000) level-0 px whose largest diameter is ``diameter_mm``."""
    l0_d = 100.0 if diameter_mm is None or mpp is None else diameter_mm * 1000.0 / mpp
    return Lesion(index=index, l0_outline=(), l0_centroid=(1000.0, 1000.0),
                  l0_bbox=(1000.0 - l0_d / 2, 1000.0 - l0_d / 2, l0_d, l0_d),
                  l0_diameter_ends=((1000.0 - l0_d / 2, 1000.0), (1000.0 + l0_d / 2, 1000.0)), l0_diameter=l0_d,
                  diameter_mm=diameter_mm, area_mm2=None if diameter_mm is None else round(diameter_mm ** 2, 6),
                  max_probability=0.95, mean_probability=0.9, cells=4, size_class=classify_diameter_mm(diameter_mm))


def summary(slide: str, label: str, diameters_mm: tuple[float | None, ...] = (), *, provisional: bool = False,
            mpp: float = 0.25, failed: int = 0) -> SlideSummary:
    """A summary of ``slide`` (an absolute path) with ``label`` and lesions of these diameters
    (largest first), as ``analyze_slide`` would return it; ``provisional``: half the tissue
    left unclassified; ``failed``: that many of the 100 tissue patches failed."""
    classified = (50 if provisional else 100) - failed
    out = slide.rsplit(".", 1)[0]
    return SlideSummary(
        slide=slide, out_dir=out, model=MODEL, mpp=mpp, level_read=0, region_source="tifffile",
        geometry=GridGeometry.for_slide((4000, 3000), mpp, 1.0, 50), tissue_patches=100,
        classified_patches=classified, failed_patches=failed, coverage=classified / 100, timing=SlideTiming(total_s=1.0),
        files=SlideFiles(f"{out}/probability.tiff", f"{out}/probability.json", f"{out}/heatmap.png",
                         f"{out}/lesions.geojson", f"{out}/summary.json"),
        node_label=NodeLabel.parse(label), provisional=provisional,
        lesions=tuple(lesion(i, d, mpp) for i, d in enumerate(diameters_mm, 1)))
