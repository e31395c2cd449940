"""What ``write_phantom`` reports: the lesions as written and the files it produced."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from histoviewer.core.staging_terms import SizeClass

__all__ = ["PhantomLesion", "PhantomResult"]


@dataclass(frozen=True)
class PhantomLesion:
    """One metastasis drawn into a phantom.

    ``diameter_mm`` is the maximum Feret diameter *measured* on the written polygon;
    ``requested_diameter_mm`` is what was asked for (they agree within 1 %).
    ``l0_polygon`` is an open ring of level-0 ``(x, y)`` pixels; pixel ``(row, col)`` is
    tumour when its centre ``(col + 0.5, row + 0.5)`` lies inside it.
    """

    name: str
    size_class: SizeClass
    diameter_mm: float
    l0_polygon: tuple[tuple[float, float], ...]
    l0_centroid: tuple[float, float]
    area_mm2: float
    requested_diameter_mm: float

    def to_dict(self, *, with_polygon: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "size_class": self.size_class.value,
            "diameter_mm": round(self.diameter_mm, 6),
            "requested_diameter_mm": self.requested_diameter_mm,
            "area_mm2": round(self.area_mm2, 6),
            "centroid_l0": [round(self.l0_centroid[0], 2), round(self.l0_centroid[1], 2)],
        }
        if with_polygon:
            out["polygon_l0"] = [list(p) for p in self.l0_polygon]
        return out


@dataclass(frozen=True)
class PhantomResult:
    """Files written for one phantom and what they contain. Sizes in level-0 px."""

    slide_path: Path
    geojson_path: Path
    xml_path: Path
    lesions_json_path: Path
    width: int
    height: int
    mpp: float
    lesions: tuple[PhantomLesion, ...]
    seconds: float
    seed: int = 0
    tile_size: int = 512
    level_dimensions: tuple[tuple[int, int], ...] = ()
    file_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "slide_path": str(self.slide_path),
            "geojson_path": str(self.geojson_path),
            "xml_path": str(self.xml_path),
            "lesions_json_path": str(self.lesions_json_path),
            "width": self.width,
            "height": self.height,
            "mpp": self.mpp,
            "seed": self.seed,
            "tile_size": self.tile_size,
            "level_dimensions": [list(d) for d in self.level_dimensions],
            "file_bytes": self.file_bytes,
            "lesions": [les.to_dict() for les in self.lesions],
            "seconds": round(self.seconds, 3),
        }
