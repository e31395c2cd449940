"""Exports: heatmap images, slide overlays, pyramidal TIFFs and raw probabilities, each with
its provenance. No Qt: the GUI calls these from a worker thread (``core.progress.JobControl``)."""

from histoviewer.core.colormaps import COLORMAPS, apply_colormap, blend_heatmap, heatmap_rgba
from histoviewer.core.export.exports import (ExportResult, export_heatmap_image, export_overlay,
                                            export_raw_probabilities)
from histoviewer.core.export.outline import Outline, outlines_from_annotations
from histoviewer.core.export.provenance import Provenance
from histoviewer.core.export.requests import HeatmapImageRequest, OverlayRequest
from histoviewer.core.export.raw import read_raw_probabilities
from histoviewer.core.export.source import HeatmapData, heatmap_for_slide, read_analysis

__all__ = [
    "COLORMAPS",
    "ExportResult",
    "HeatmapData",
    "HeatmapImageRequest",
    "Outline",
    "OverlayRequest",
    "Provenance",
    "apply_colormap",
    "blend_heatmap",
    "export_heatmap_image",
    "export_overlay",
    "export_raw_probabilities",
    "heatmap_for_slide",
    "heatmap_rgba",
    "outlines_from_annotations",
    "read_analysis",
    "read_raw_probabilities",
]
