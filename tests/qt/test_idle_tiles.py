"""A slide's overlay keeps decoded tiles for its running pass (``TILE_CACHE_BYTES``); when its
tab is hidden the pass waits, and the tiles are given back (several open slides must not each
hold a cache)."""

from __future__ import annotations

from histoviewer.core.inference.live import LiveHeatmap
from tests.core.inference_helpers import write_synthetic_tiff
from tests.qt.conftest import open_settled

# a few regions in flight may still be read after the release: their tiles, at most
IN_FLIGHT_BYTES = 4 * 512 * 512 * 3


def test_a_hidden_tabs_overlay_gives_back_its_decoded_tiles(ai_window_factory, qtbot, micro_phantom, tmp_path,
                                                              monkeypatch):
    released: list[LiveHeatmap] = []
    real = LiveHeatmap.release_tiles

    def recording(self) -> None:
        released.append(self)
        real(self)

    monkeypatch.setattr(LiveHeatmap, "release_tiles", recording)
    window = ai_window_factory(background=True)
    first = open_settled(window, qtbot, micro_phantom.slide_path)
    qtbot.waitUntil(lambda: first.heatmap is not None and first.heatmap.live.ready, timeout=60_000)
    live = first.heatmap.live
    assert live._fast is not None  # a tiled TIFF: read directly, with a tile cache
    qtbot.waitUntil(lambda: live in released, timeout=60_000)  # its pass is over: released once
    released.clear()
    second = open_settled(window, qtbot, write_synthetic_tiff(tmp_path / "other.tiff"))  # the first tab is hidden
    assert second is not first and not first._active
    assert live in released
    assert live._fast._cache_bytes <= IN_FLIGHT_BYTES
