"""Where a model's patches sit on a slide: the patch grid of one model on one slide.

Frames and units:

- ``l0_`` values are level-0 pixels of the slide (x right, y down).
- Model pixels are pixels at the model's scale ``model_mpp`` (um/px); a patch is
  ``patch_px`` model px square and the grid steps by ``stride_px`` model px.
- Cell ``(row, col)`` (flat index ``row * cols + col``) is the patch whose level-0
  top-left is ``origin + (col, row) * l0_stride`` and whose side is ``l0_patch``.

Overlap (``stride_px < patch_px``, ``patch_px`` a multiple of ``stride_px``): the output
*map* has the same rows x cols, but map cell ``(i, j)`` is the level-0 square
``origin + (j, i) * l0_stride`` of side ``l0_stride`` (one stride, not one patch); its
value is the mean of every computed patch that covers that square, i.e. patches
``(i - k + 1 .. i, j - k + 1 .. j)`` with ``k = patch_px / stride_px``. Without overlap
(``k = 1``) map cell and patch coincide. A map value therefore describes tissue at most
one patch away from its own square.

A leaf module (errors and numpy only): the analysis (``SlideSummary``, ``MapFrame``), the
inference and the exports all name the grid, and the layers put inference above analysis.
A grid needs the slide's scale: an unknown one (``None``) is refused with ``InferenceError``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from histoviewer.core.errors import InferenceError
from histoviewer.core.units import mpp_problem

__all__ = ["MAX_L0_PX", "GridGeometry", "known_slide_mpp"]

# Largest slide side (level-0 px) a grid may describe: 2^31, beyond any scanner (the largest
# whole-slide images are ~300k px a side) and still exact in float64 arithmetic.
MAX_L0_PX = 2**31


def known_slide_mpp(slide_mpp: float | None) -> float:
    """``slide_mpp`` (um per level-0 px) as a float, or ``InferenceError`` when the slide's
    scale is unknown (None) or not plausible (``units.mpp_problem``: inf, NaN, 1e-300,
    negative, 1e6): a grid cannot exist without it."""
    problem = mpp_problem(slide_mpp)
    if problem is not None:
        raise InferenceError(
            f"the slide's scale (um/px) is unknown or invalid ({str(slide_mpp)[:40]}): {problem}; a model "
            "needs it to read patches at its own scale", setting="mpp"
        )
    return float(slide_mpp)  # type: ignore[arg-type]


@dataclass(frozen=True)
class GridGeometry:
    """The patch grid of one model on one slide (see the module docstring for frames)."""

    l0_width: int
    l0_height: int
    slide_mpp: float  # um per level-0 px; always known (a grid cannot exist without it)
    model_mpp: float  # um per model px
    patch_px: int  # model px
    stride_px: int  # model px; == patch_px: no overlap
    l0_origin_x: float = 0.0
    l0_origin_y: float = 0.0
    # where ``slide_mpp`` comes from: "slide" (the file states it) or "user" (the user stated
    # it for a slide without one, ``slide.user_scale``): every output marks user-set sizes
    slide_mpp_source: str = "slide"

    def __post_init__(self) -> None:
        # Typed float, but checked: a None or NaN from JSON or a caller must not make a grid.
        known_slide_mpp(self.slide_mpp)
        if self.slide_mpp_source not in ("slide", "user"):
            raise InferenceError(f"the slide's scale source {self.slide_mpp_source!r} is neither 'slide' nor 'user'")
        if (problem := mpp_problem(self.model_mpp)) is not None:
            raise InferenceError(f"the model's scale (um/px) is invalid: {problem}")
        # Sizes from a file must be real slide sizes: at 1e308 px every coordinate rounds to
        # the same float (a lesion 0 mm across) and sums overflow to Infinity.
        for name in ("l0_width", "l0_height", "patch_px", "stride_px", "l0_origin_x", "l0_origin_y"):
            value = getattr(self, name)
            finite = isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))
            if isinstance(value, bool) or not finite:
                raise InferenceError(f"the grid's {name} {str(value)[:40]} is not a finite number")
            low = -MAX_L0_PX if name.startswith("l0_origin") else 1
            if not low <= value <= MAX_L0_PX:
                raise InferenceError(f"the grid's {name} {str(value)[:40]} is outside {low}..{MAX_L0_PX} px")
        if not 1 <= self.stride_px <= self.patch_px or self.patch_px % self.stride_px:
            raise InferenceError(
                f"stride {self.stride_px} px must divide the patch size {self.patch_px} px "
                f"(for example {self.patch_px}, {self.patch_px // 2} or {self.patch_px // 4})"
            )

    @classmethod
    def for_slide(
        cls, l0_size: tuple[int, int], slide_mpp: float | None, model_mpp: float, patch_px: int,
        stride_px: int | None = None, *, mpp_source: str | None = "slide",
    ) -> GridGeometry:
        """A grid from (0, 0) covering a slide of ``l0_size`` = (width, height) level-0 px;
        ``slide_mpp`` None (the slide states no scale) raises ``InferenceError``."""
        return cls(int(l0_size[0]), int(l0_size[1]), known_slide_mpp(slide_mpp), float(model_mpp),
                   int(patch_px), int(stride_px or patch_px), slide_mpp_source=mpp_source or "slide")

    @property
    def l0_per_model_px(self) -> float:
        return self.model_mpp / self.slide_mpp

    @property
    def l0_patch(self) -> float:
        """Side of one patch in level-0 px."""
        return self.patch_px * self.l0_per_model_px

    @property
    def l0_stride(self) -> float:
        """Step between cells (and side of one map cell) in level-0 px."""
        return self.stride_px * self.l0_per_model_px

    @property
    def overlap(self) -> int:
        """Patches covering a map cell along one axis (1 = no overlap)."""
        return self.patch_px // self.stride_px

    @property
    def cols(self) -> int:
        return max(1, math.ceil((self.l0_width - self.l0_origin_x) / self.l0_stride))

    @property
    def rows(self) -> int:
        return max(1, math.ceil((self.l0_height - self.l0_origin_y) / self.l0_stride))

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows, self.cols

    @property
    def size(self) -> int:
        return self.rows * self.cols

    def cell_l0_xy(self, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Level-0 top-left (x, y) of flat cell indices (float arrays)."""
        r, c = np.divmod(np.asarray(cells, np.int64), self.cols)
        return self.l0_origin_x + c * self.l0_stride, self.l0_origin_y + r * self.l0_stride

    def cell_rect(self, cell: int) -> tuple[float, float, float, float]:
        """Level-0 (x, y, w, h) of one patch."""
        x, y = self.cell_l0_xy(np.array([cell]))
        return float(x[0]), float(y[0]), self.l0_patch, self.l0_patch

    def map_cell_rect(self, cell: int) -> tuple[float, float, float, float]:
        """Level-0 (x, y, w, h) of one *map* cell (one stride square)."""
        x, y = self.cell_l0_xy(np.array([cell]))
        return float(x[0]), float(y[0]), self.l0_stride, self.l0_stride

    def cell_at(self, l0_x: float, l0_y: float) -> int | None:
        """The map cell containing a level-0 point, or None outside the grid."""
        c = math.floor((l0_x - self.l0_origin_x) / self.l0_stride)
        r = math.floor((l0_y - self.l0_origin_y) / self.l0_stride)
        if 0 <= r < self.rows and 0 <= c < self.cols:
            return r * self.cols + c
        return None

    def cells_in_rect(self, l0_x: float, l0_y: float, l0_w: float, l0_h: float) -> np.ndarray:
        """Flat indices of patches that intersect the level-0 rectangle (row-major order)."""
        s, p = self.l0_stride, self.l0_patch
        x0, y0 = l0_x - self.l0_origin_x, l0_y - self.l0_origin_y
        # patch c spans [c*s, c*s + p): it intersects [x0, x0 + w) iff (x0 - p)/s < c < (x0 + w)/s
        c0 = max(0, math.floor((x0 - p) / s) + 1)
        c1 = min(self.cols - 1, math.ceil((x0 + l0_w) / s) - 1)
        r0 = max(0, math.floor((y0 - p) / s) + 1)
        r1 = min(self.rows - 1, math.ceil((y0 + l0_h) / s) - 1)
        if c1 < c0 or r1 < r0:
            return np.zeros(0, np.int64)
        rr, cc = np.mgrid[r0 : r1 + 1, c0 : c1 + 1]
        return (rr * self.cols + cc).ravel().astype(np.int64)

    def order_by_distance(self, cells: np.ndarray, l0_x: float, l0_y: float) -> np.ndarray:
        """``cells`` sorted by the distance of their patch centre from a level-0 point."""
        cells = np.asarray(cells, np.int64)
        x, y = self.cell_l0_xy(cells)
        half = self.l0_patch / 2
        d2 = (x + half - l0_x) ** 2 + (y + half - l0_y) ** 2
        return cells[np.argsort(d2, kind="stable")]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(rows=self.rows, cols=self.cols, l0_patch=self.l0_patch,
                   l0_stride=self.l0_stride, overlap=self.overlap)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GridGeometry:
        # maps written before the scale's source was recorded: the slide stated it
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k != "slide_mpp_source"}
        return cls(**fields, slide_mpp_source=str(data.get("slide_mpp_source", "slide")))
