"""Synthetic "phantom" whole-slide images of a lymph node with known metastases.

``write_phantom`` renders a pyramidal, tiled, JPEG TIFF (which OpenSlide opens, with the
right microns-per-pixel) of an H&E-stained lymph node, built from stain optical densities,
and writes the lesions' outlines beside it as QuPath GeoJSON, CAMELYON/ASAP XML and a
``.lesions.json`` summary. Lesion sizes are exact (maximum Feret diameter within 1 % of
the request), so the phantoms are ground truth for detection, measurement and staging.
No Qt here.
"""

from histoviewer.core.phantom.result import PhantomLesion, PhantomResult
from histoviewer.core.phantom.spec import DEFAULT_LESIONS, LesionSpec, parse_lesion_specs
from histoviewer.core.phantom.writer import write_phantom

__all__ = [
    "DEFAULT_LESIONS",
    "LesionSpec",
    "PhantomLesion",
    "PhantomResult",
    "parse_lesion_specs",
    "write_phantom",
]
