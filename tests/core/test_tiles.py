"""Tile geometry, viewport maths, the byte-bounded cache, frame planning and the loader."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from histoviewer.core.errors import SlideReadError
from histoviewer.core.slide.info import SlideInfo
from histoviewer.core.slide.reader import SlideReader
from histoviewer.core.tiles.cache import ByteBoundedCache
from histoviewer.core.tiles.frame import plan_frame
from histoviewer.core.tiles.geometry import LevelTiling, TileKey
from histoviewer.core.tiles.loader import TileLoader
from histoviewer.core.tiles.viewport import Viewport, fit_viewport
from tests.gates import GATE_LIMIT_S, Gate


class FakeReader(SlideReader):
    """A 3-level synthetic slide whose pixels encode their level; optional failures. Every
    read passes ``gate`` (open unless given: a held gate lets a test act while reads are in
    progress); ``reads`` lists the reads that went through it, in the order they finished."""

    def __init__(self, size=(5000, 3000), broken: set[tuple[int, int]] = frozenset(), gate: Gate | None = None):
        w, h = size
        self.info = SlideInfo(
            path=Path("fake.svs"), backend="fake", vendor=None,
            level_dimensions=((w, h), (w // 2, h // 2), (w // 4, h // 4)),
            level_downsamples=(1.0, 2.0, 4.0), mpp_x=0.25, mpp_y=0.25, objective_power=40.0,
            associated_images=(),
        )
        self.gate = gate or Gate(held=False)
        self.broken = broken
        self.reads: list[tuple[int, int, int]] = []
        self.lock = threading.Lock()

    def read_region(self, l0_x, l0_y, level, lv_width, lv_height):
        self.gate.passes()
        with self.lock:
            self.reads.append((level, l0_x, l0_y))
        if (l0_x, l0_y) in self.broken:
            raise SlideReadError(f"fake.svs: broken tile at {l0_x},{l0_y}")
        return np.full((lv_height, lv_width, 3), 10 * level, np.uint8)

    def thumbnail(self, max_size):
        return np.zeros((max_size * 3 // 5, max_size, 3), np.uint8)

    def associated_image(self, name):
        raise KeyError(name)

    def close(self):
        pass


# -- geometry ---------------------------------------------------------------------------------
def test_tiling_edges_and_level_origins():
    tiling = LevelTiling(FakeReader().info, 512)
    assert tiling.grid_size(0) == (10, 6)
    assert tiling.grid_size(2) == (3, 2)
    edge = tiling.tile_rect(0, 9, 5)
    assert (edge.l0_x, edge.l0_y, edge.lv_width, edge.lv_height) == (4608, 2560, 392, 440)
    r = tiling.tile_rect(2, 1, 1)
    assert (r.l0_x, r.l0_y, r.lv_width, r.lv_height) == (2048, 2048, 512, 238)


def test_tiles_in_rect_clamps_to_the_grid():
    tiling = LevelTiling(FakeReader().info, 512)
    assert tiling.tiles_in_l0_rect(0, -100, -100, 600, 400) == [(0, 0), (1, 0)]
    assert tiling.tiles_in_l0_rect(0, 0, 0, 512, 512) == [(0, 0)]
    assert len(tiling.tiles_in_l0_rect(1, 0, 0, 10**6, 10**6)) == 5 * 3


@pytest.mark.parametrize("l0_per_px, level", [(0.5, 0), (1.0, 0), (1.9, 0), (2.0, 1), (3.9, 1), (4.0, 2), (50, 2)])
def test_best_level_never_upsamples_a_coarse_level(l0_per_px, level):
    assert LevelTiling(FakeReader().info).best_level(l0_per_px) == level


# -- viewport ---------------------------------------------------------------------------------
def test_zoom_keeps_the_point_under_the_cursor_fixed():
    vp = Viewport(1000.0, 800.0, 0.5, 1920, 1080)
    anchor = (300.0, 900.0)
    before = vp.screen_to_l0(*anchor)
    after = vp.zoomed(1.7, *anchor, min_scale=0.01)
    assert after.scale == pytest.approx(0.85)
    assert after.screen_to_l0(*anchor) == pytest.approx(before)


def test_pan_moves_content_with_the_drag_and_round_trips():
    vp = Viewport(1000.0, 800.0, 2.0, 800, 600)
    moved = vp.panned(100, -50)
    assert moved.l0_cx == pytest.approx(950) and moved.l0_cy == pytest.approx(825)
    assert vp.l0_to_screen(*vp.screen_to_l0(123, 456)) == pytest.approx((123, 456))


def test_fit_shows_the_whole_slide():
    vp = fit_viewport(100_000, 200_000, 1920, 1080)
    x0, y0, x1, y1 = vp.l0_rect
    assert x0 <= 0 and y0 <= 0 and x1 >= 100_000 and y1 >= 200_000


# -- cache ------------------------------------------------------------------------------------
def test_cache_is_bounded_in_bytes_and_evicts_least_recently_used():
    cache = ByteBoundedCache(1000)
    for i in range(5):
        cache.put(i, f"v{i}", 300)
    assert cache.size_bytes <= 1000 and len(cache) == 3
    assert 0 not in cache and 1 not in cache
    cache.get(2)  # 2 is now the most recent; 3 goes next
    cache.put(9, "v9", 300)
    assert 2 in cache and 3 not in cache
    assert cache.evictions == 3


def test_cache_keeps_pinned_entries_and_refuses_oversized_values():
    cache = ByteBoundedCache(1000)
    cache.put("thumb", "t", 400, pinned=True)
    for i in range(10):
        cache.put(i, i, 300)
    assert "thumb" in cache and cache.size_bytes <= 1000
    cache.put("huge", "h", 5000)
    assert "huge" not in cache
    assert cache.discard_where(lambda k: True) == 3  # the thumbnail and two 300-byte tiles
    assert cache.size_bytes == 0


def test_cache_shrinks_when_capacity_is_lowered():
    cache = ByteBoundedCache(10_000)
    for i in range(10):
        cache.put(i, i, 1000)
    cache.set_capacity(2500)
    assert cache.size_bytes <= 2500 and 9 in cache


# -- frame planning ---------------------------------------------------------------------------
def test_plan_falls_back_to_coarser_levels_then_the_thumbnail():
    info = FakeReader().info
    tiling = LevelTiling(info, 512)
    cache = ByteBoundedCache(10**9)
    vp = Viewport(1024.0, 1024.0, 1.0, 1024, 1024)  # level 0, tiles (1..2, 1..2) and edges
    plan = plan_frame(vp, tiling, cache, 1, (1024, 614))
    assert plan.level == 0 and not plan.complete
    assert all(op.key is None for op in plan.ops)  # nothing cached: thumbnail only
    # Nearest-the-centre first: the centre (1024, 1024) is a corner shared by four tiles.
    assert {k for k in plan.missing[:4]} == {TileKey(1, 0, x, y) for x in (1, 2) for y in (1, 2)}
    cache.put(TileKey(1, 2, 0, 0), "coarse", 1)  # the level-2 tile covering l0 0..2048
    plan = plan_frame(vp, tiling, cache, 1, (1024, 614))
    assert any(op.key == TileKey(1, 2, 0, 0) for op in plan.ops)
    for x in range(0, 4):
        for y in range(0, 4):
            cache.put(TileKey(1, 0, x, y), "fine", 1)
    plan = plan_frame(vp, tiling, cache, 1, (1024, 614))
    assert plan.complete and all(op.key.level == 0 for op in plan.ops)
    # At 1:1 a cached tile is drawn pixel for pixel.
    op = next(op for op in plan.ops if op.key == TileKey(1, 0, 1, 1))
    assert op.src == (0, 0, 512, 512) and op.dst == (0.0, 0.0, 512.0, 512.0)


def test_plan_fallback_covers_the_whole_visible_slide_area():
    """Never blank: the union of drawn rectangles covers the slide part of the view."""
    info = FakeReader().info
    tiling = LevelTiling(info, 512)
    cache = ByteBoundedCache(10**9)
    cache.put(TileKey(1, 1, 1, 0), "some coarse", 1)
    vp = Viewport(2500.0, 1500.0, 0.7, 1920, 1080)
    plan = plan_frame(vp, tiling, cache, 1, (1024, 614))
    covered = np.zeros((1080, 1920), bool)
    for op in plan.ops:
        x, y, w, h = op.dst
        covered[max(0, int(np.floor(y))): max(0, int(np.ceil(y + h))), max(0, int(np.floor(x))): max(0, int(np.ceil(x + w)))] = True
    sx0, sy0 = vp.l0_to_screen(0, 0)
    sx1, sy1 = vp.l0_to_screen(*info.dimensions)
    inside = covered[max(0, int(sy0)): min(1080, int(sy1)), max(0, int(sx0)): min(1920, int(sx1))]
    assert inside.all()


def test_failed_tiles_are_reported_not_requested():
    info = FakeReader().info
    tiling = LevelTiling(info, 512)
    failures = {TileKey(1, 0, 0, 0): "broken"}
    plan = plan_frame(Viewport(256.0, 256.0, 1.0, 512, 512), tiling, ByteBoundedCache(10**6), 1, (100, 60), failures)
    assert TileKey(1, 0, 0, 0) not in plan.missing and len(plan.failed) == 1


# -- loader -----------------------------------------------------------------------------------
@pytest.fixture
def make_loader():
    """``make_loader(reader, cache=None, **kw)`` -> (TileLoader, cache); at teardown every
    reader's gate opens and every loader shuts down with its threads joined, pass or fail."""
    made = []

    def make(reader, cache=None, **kw):
        cache = cache or ByteBoundedCache(10**9)
        loader = TileLoader(reader, LevelTiling(reader.info, 512), cache, slide_id=1, **kw)
        made.append((reader, loader))
        return loader, cache

    yield make
    for reader, loader in made:
        reader.gate.open()
        loader.shutdown()
    assert all(loader.alive_threads == 0 for _, loader in made)


def test_loader_loads_requested_tiles_into_the_cache(make_loader):
    loaded = []
    loader, cache = make_loader(FakeReader(), on_loaded=loaded.append)
    keys = [TileKey(1, 0, x, 0) for x in range(4)]
    loader.request(keys)
    assert loader.wait_idle(GATE_LIMIT_S)
    assert all(k in cache for k in keys) and sorted(loaded) == keys
    assert cache.get(keys[0]).shape == (512, 512, 3)
    loader.shutdown()
    assert loader.alive_threads == 0


def test_loader_drops_stale_requests(make_loader):
    reader = FakeReader(gate=Gate())
    loader, cache = make_loader(reader, workers=1)
    old = [TileKey(1, 0, x, y) for x in range(10) for y in range(6)]
    loader.request(old)
    assert reader.gate.wait_arrivals(1)  # the single worker reads the first tile of the old request
    new = [TileKey(1, 2, 0, 0)]
    loader.request(new)
    reader.gate.open()
    assert loader.wait_idle(GATE_LIMIT_S)
    assert new[0] in cache
    assert len(reader.reads) == 2 and reader.reads[-1][0] == 2  # the tile in hand, then the new one
    assert loader.stats.dropped == len(old) - 1  # not the 59 stale ones


def test_loader_does_not_read_a_tile_twice_while_in_flight(make_loader):
    reader = FakeReader(gate=Gate())
    loader, _ = make_loader(reader, workers=2)
    key = TileKey(1, 0, 3, 3)
    loader.request([key])
    assert reader.gate.wait_arrivals(1)  # in flight on one worker; the other is free
    for _ in range(4):
        loader.request([key])
    reader.gate.open()  # a second read of it, had one started, would go through too
    assert loader.wait_idle(GATE_LIMIT_S)
    assert len(reader.reads) == 1 and reader.gate.arrived == 1
    loader.request([key])  # already cached: nothing to do
    assert loader.wait_idle(GATE_LIMIT_S) and len(reader.reads) == 1


def test_loader_marks_failed_tiles_and_keeps_going(make_loader):
    reader = FakeReader(broken={(512, 0)})
    failed = []
    loader, cache = make_loader(reader, on_failed=lambda k, m: failed.append((k, m)))
    keys = [TileKey(1, 0, x, 0) for x in range(3)]
    loader.request(keys)
    assert loader.wait_idle(GATE_LIMIT_S)
    assert [k for k, _ in failed] == [keys[1]] and "broken tile" in failed[0][1]
    assert keys[0] in cache and keys[2] in cache
    loader.request(keys)  # a failed tile is not retried on every repaint
    assert loader.wait_idle(GATE_LIMIT_S) and len(reader.reads) == 3


def test_cache_counts_the_memory_a_strided_tile_keeps():
    from histoviewer.core.tiles.loader import keep_array

    rgba = np.zeros((8, 8, 4), np.uint8)
    assert keep_array(rgba[..., :3])[1] == rgba.nbytes
    assert keep_array(np.zeros((8, 8, 3), np.uint8))[1] == 8 * 8 * 3


def test_idle_workers_sleep(make_loader):
    """Two idle workers used to wake each other forever and burn two cores."""
    loader, _ = make_loader(FakeReader(), workers=2)
    loader.request([TileKey(1, 0, x, 0) for x in range(4)])
    assert loader.wait_idle(GATE_LIMIT_S)
    # a measurement, not a synchronisation: the process's CPU time over half a second of idling
    time.sleep(0.05)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    time.sleep(0.5)
    busy = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    assert busy < 0.1, f"idle loader used {busy:.0%} of a core"


def test_loader_runs_tasks_after_the_urgent_keys_and_before_the_rest(make_loader):
    reader = FakeReader(gate=Gate())
    loader, _ = make_loader(reader, workers=1)
    reads_before_task = []
    loader.add_task(lambda: reads_before_task.append(len(reader.reads)))
    assert loader.wait_idle(GATE_LIMIT_S) and reads_before_task == [0]  # nothing requested: runs at once
    loader.request([TileKey(1, 0, x, 0) for x in range(5)], urgent=2)
    assert reader.gate.wait_arrivals(1)  # the task is queued while the first tile is in flight
    loader.add_task(lambda: reads_before_task.append(len(reader.reads)))
    reader.gate.open()
    assert loader.wait_idle(GATE_LIMIT_S)
    assert reads_before_task == [0, 2] and len(reader.reads) == 5


def test_loader_tasks_wait_until_the_urgent_tiles_are_read_not_just_taken(make_loader):
    """With two workers, the one that is free first must not start a (long) task while
    the other still reads a visible tile: they would share the cores."""
    reader = FakeReader(gate=Gate())
    loader, _ = make_loader(reader, workers=2)
    reads_before_task = []
    loader.request([TileKey(1, 0, x, 0) for x in range(6)], urgent=3)
    loader.add_task(lambda: reads_before_task.append(len(reader.reads)))
    assert reader.gate.wait_arrivals(2)  # urgent tiles 1 and 2 in flight
    reader.gate.allow(1)
    assert reader.gate.wait_arrivals(3)  # the worker that finished took urgent tile 3
    reader.gate.allow(1)
    # one worker is free, no urgent tile is left to take but one is still being read: the
    # free worker reads a prefetch tile rather than start the task
    assert reader.gate.wait_arrivals(4)
    assert reads_before_task == [] and len(reader.reads) == 2
    reader.gate.open()
    assert loader.wait_idle(GATE_LIMIT_S)
    assert reads_before_task and reads_before_task[0] >= 3


def _session(monkeypatch, reader, **kw):
    from histoviewer.core.tiles import session as session_module

    monkeypatch.setattr(session_module, "open_slide", lambda path: reader)
    return session_module.SlideSession("fake.svs", ByteBoundedCache(10**9), **kw)


def test_session_reads_the_thumbnail_after_the_visible_tiles_not_when_opened(monkeypatch):
    reader = FakeReader(gate=Gate())  # held: nothing read at opening can finish before plan()
    arrived = []
    session = _session(monkeypatch, reader, workers=1, on_thumbnail=lambda: arrived.append(session.thumbnail))
    try:
        assert reader.reads == [] and session.thumbnail is None and arrived == []
        vp = Viewport(1024.0, 1024.0, 1.0, 1024, 1024)
        plan = session.plan(vp)
        assert plan.ops and all(op.key is None for op in plan.ops)
        assert session.payload(None) is None  # no thumbnail yet: the front end paints a placeholder
        reader.gate.open()
        assert session.loader.wait_idle(GATE_LIMIT_S)
        overview_read = (2, 0, 0)  # the coarsest level, whole
        first = reader.reads.index(overview_read)
        visible = {(0, k.t_x * 512, k.t_y * 512) for k in plan.missing}
        assert set(reader.reads[:first]) == visible  # one worker: visible tiles, thumbnail, prefetch
        assert len(reader.reads) > first + 1
        assert arrived and arrived[0] is session.thumbnail and session.thumbnail_error is None
        assert session.thumbnail.size == (625, 375)  # level 2 (1250 x 750) halved, not resampled
        session.plan(vp)
        assert session.payload(None) is session.thumbnail.payload
    finally:
        reader.gate.open()
        session.close()


def test_session_stands_in_for_an_unreadable_thumbnail(monkeypatch):
    session = _session(monkeypatch, FakeReader(broken={(0, 0)}))
    try:
        thumb = session.wait_thumbnail(5)
        assert "broken tile" in session.thumbnail_error
        assert thumb is not None and (thumb.rgb == 200).all()
    finally:
        session.close()
