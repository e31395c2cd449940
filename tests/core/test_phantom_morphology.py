"""``write_phantom(tumour_morphology="lobular")``: the same node and lesions, drawn as small crowded
cells with scant cytoplasm; the default (ductal) phantoms are unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from histoviewer.core.errors import PhantomSpecError
from histoviewer.core.phantom import parse_lesion_specs, write_phantom
from histoviewer.core.phantom.layout import build_layout
from histoviewer.core.phantom.render import TileRenderer


def _tumour_tile(morphology: str) -> tuple[np.ndarray, tuple]:
    layout = build_layout(3000, 3000, 0.5, parse_lesion_specs("micro:0.5"), 4, morphology)
    cx, cy = np.asarray(layout.lesions[0].l0_vertices).mean(0)
    tile = TileRenderer(layout, 128).render(int(cx) - 64, int(cy) - 64)
    return tile, tuple(map(tuple, layout.lesions[0].l0_vertices))


def test_lobular_draws_the_same_lesion_otherwise():
    ductal, outline_d = _tumour_tile("ductal")
    lobular, outline_l = _tumour_tile("lobular")
    assert outline_d == outline_l  # same geometry, same truth
    # crowded small nuclei (9 um apart instead of 13): more haematoxylin, a darker tile
    assert lobular[..., 1].mean() < ductal[..., 1].mean() - 5
    assert np.abs(lobular.astype(int) - ductal.astype(int)).mean() > 5


def test_unknown_morphology_is_refused(tmp_path):
    with pytest.raises(PhantomSpecError, match="tumour morphology must be one of ductal, lobular"):
        write_phantom(tmp_path / "p.tiff", width=512, height=512, mpp=0.5, lesions="", tumour_morphology="solid")
