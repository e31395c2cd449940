"""Patch datasets (histoviewer.core.patches): every layout, at the model's scale. No Qt."""

from __future__ import annotations

import json
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image
from skimage.measure import points_in_poly

from histoviewer.core.annotations.asap_xml import write_asap_xml
from histoviewer.core.annotations.geojson_io import PolygonAnnotation, read_geojson
from histoviewer.core.errors import PatchDataError
from histoviewer.core.input_spec import InputSpec
from histoviewer.core.patches import (
    LAYOUTS,
    PatchSet,
    detect_layout,
    iter_batches,
    open_patch_set,
    tissue_mask,
    to_model_scale,
    train_valid_split,
)
from histoviewer.core.patches.slide_patches import read_tumour_polygons
from histoviewer.core.phantom import write_phantom

SPEC = InputSpec()  # 96 px at 0.972 um/px


# -- resampling ---------------------------------------------------------------------------


def _marked(size: int, mark: int, n: int = 2) -> np.ndarray:
    """Grey patches with a red ``mark`` x ``mark`` square in the exact centre, random borders."""
    rng = np.random.default_rng(0)
    img = rng.integers(60, 200, (n, size, size, 3), dtype=np.uint8)
    lo = (size - mark) // 2
    img[:, lo : lo + mark, lo : lo + mark] = (255, 0, 0)
    return img


def test_resample_256_at_40x_to_64_then_padded_to_96_keeps_the_centre():
    src = _marked(256, 32)  # red square at 112..144 (a multiple of the 4x shrink)
    out = to_model_scale(src, 0.243, SPEC)
    assert out.shape == (2, 96, 96, 3) and out.dtype == np.uint8
    # 256 px * 0.243/0.972 = 64 px, padded 16 px each side: the 8 px mark sits at 44..52
    red = np.all(out[0] == (255, 0, 0), axis=-1)
    rows, cols = np.nonzero(red)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (44, 51, 44, 51)
    # the padding reflects the content (no constant border)
    inner = out[:, 16:80, 16:80]
    np.testing.assert_array_equal(out[:, 16:80, 15], inner[:, :, 1])
    np.testing.assert_array_equal(out[:, 15, 16:80], inner[:, 1, :])


def test_resample_crops_larger_patches_around_the_centre_and_skips_near_equal_scales():
    src = _marked(200, 10)
    out = to_model_scale(src, 0.975, SPEC)  # within 1 % of 0.972: no resize, centre crop
    np.testing.assert_array_equal(out, src[:, 52:148, 52:148])
    same = _marked(96, 8)
    np.testing.assert_array_equal(to_model_scale(same, 0.972, SPEC), same)
    up = to_model_scale(_marked(48, 8, n=1), 1.944, SPEC)  # 2x up-sampling
    assert up.shape == (1, 96, 96, 3)
    rows, cols = np.nonzero((up[0, ..., 0] > 200) & (up[0, ..., 1] < 60))  # the 8 px mark, now 16 px
    assert abs(rows.min() - 40) <= 1 and abs(rows.max() - 55) <= 1 and abs(cols.min() - 40) <= 1


def test_resample_rgba_on_white_and_bad_input():
    rgba = np.zeros((1, 96, 96, 4), np.uint8)  # fully transparent
    np.testing.assert_array_equal(to_model_scale(rgba, 0.972, SPEC), np.full((1, 96, 96, 3), 255, np.uint8))
    with pytest.raises(PatchDataError, match="uint8 RGB"):
        to_model_scale(np.zeros((1, 96, 96, 3), np.float32), 0.972, SPEC)
    with pytest.raises(PatchDataError, match="positive number"):
        to_model_scale(np.zeros((1, 96, 96, 3), np.uint8), 0.0, SPEC)


def test_resample_speed():
    batch = np.random.default_rng(1).integers(0, 256, (2000, 256, 256, 3), dtype=np.uint8)
    start = time.perf_counter()
    out = to_model_scale(batch, 0.243, InputSpec(patch_px=64, mpp=0.972))
    seconds = time.perf_counter() - start
    assert out.shape == (2000, 64, 64, 3)
    assert seconds < 5.0, f"2000 patches 256->64 px took {seconds:.2f} s"


# -- PatchCamelyon HDF5 -------------------------------------------------------------------


def _write_pcam(folder: Path, split: str, n: int, *, labels: bool = True) -> None:
    x = np.zeros((n, 96, 96, 3), np.uint8) + np.arange(n, dtype=np.uint8)[:, None, None, None]
    with h5py.File(folder / f"camelyonpatch_level_2_split_{split}_x.h5", "w") as f:
        f.create_dataset("x", data=x, chunks=(1, 96, 96, 3), compression="gzip")
    if labels:
        with h5py.File(folder / f"camelyonpatch_level_2_split_{split}_y.h5", "w") as f:
            f.create_dataset("y", data=(np.arange(n) % 2).astype(np.uint8).reshape(n, 1, 1, 1))


class _SpyDataset:
    """Records what an h5py dataset is asked for."""

    def __init__(self, ds):
        self.ds, self.rows = ds, 0

    def __getitem__(self, key):
        assert isinstance(key, slice), "reads must be slices, never the whole dataset"
        self.rows += len(range(*key.indices(self.ds.shape[0])))
        return self.ds[key]


@pytest.fixture
def pcam_dir(tmp_path_factory) -> Path:
    tmp_path = tmp_path_factory.mktemp("pcam")
    _write_pcam(tmp_path, "train", 200)
    _write_pcam(tmp_path, "test", 20, labels=False)
    return tmp_path


def test_pcam_streams_requested_rows_in_any_order(pcam_dir):
    with open_patch_set(pcam_dir, SPEC) as ps:  # default split: train
        assert (ps.layout, len(ps), ps.source_mpp) == ("pcam", 200, 0.972)
        assert ps.labels.dtype == np.int8 and ps.labels[:4].tolist() == [0, 1, 0, 1]
        spy = _SpyDataset(ps._x)
        ps._x = spy
        out = ps.read([150, 3, 7, 3, 5])
        assert out.shape == (5, 96, 96, 3)
        assert out[:, 48, 48, 0].tolist() == [150, 3, 7, 3, 5]
        assert spy.rows == 6  # rows 3..7 and 150, not the 200-row file
        assert ps.ids[7] == "train:7" and len(ps.ids) == 200
        batches = list(iter_batches(ps, [9, 8, 1, 2, 0], batch_size=2))
        assert [b[2] for b in batches] == [[9, 8], [1, 2], [0]]
        assert [b[1].tolist() for b in batches] == [[1, 0], [1, 0], [0]]
        assert batches[0][0][:, 0, 0, 0].tolist() == [9, 8]


def test_pcam_single_file_unlabelled_and_errors(pcam_dir, tmp_path_factory):
    with open_patch_set(pcam_dir / "camelyonpatch_level_2_split_test_x.h5", SPEC) as ps:
        assert ps.labels is None and len(ps) == 20 and "unlabelled" in ps.description
    with open_patch_set(pcam_dir, SPEC, split="test") as ps:
        assert ps.labels is None
    with pytest.raises(PatchDataError, match="splits present: train, test"):
        open_patch_set(pcam_dir, SPEC, split="valid")
    gz = tmp_path_factory.mktemp("gz")
    (gz / "camelyonpatch_level_2_split_train_x.h5.gz").write_bytes(b"\x1f\x8b")
    with pytest.raises(PatchDataError, match="gunzip"):
        open_patch_set(gz, SPEC)
    bad = tmp_path_factory.mktemp("bad")
    _write_pcam(bad, "valid", 10)
    with h5py.File(bad / "camelyonpatch_level_2_split_valid_y.h5", "w") as f:
        f.create_dataset("y", data=np.zeros((9, 1, 1, 1), np.uint8))
    with pytest.raises(PatchDataError, match=r"_valid_y\.h5: 9 labels for 10 patches"):
        open_patch_set(bad, SPEC)


# -- Kaggle -------------------------------------------------------------------------------


def _save(path: Path, size: int, value: int, mode: str = "RGB") -> None:
    channels = 4 if mode == "RGBA" else 3
    Image.fromarray(np.full((size, size, channels), value, np.uint8), mode).save(path)


@pytest.fixture
def kaggle_dir(tmp_path_factory) -> Path:
    tmp_path = tmp_path_factory.mktemp("kaggle")
    (tmp_path / "train").mkdir()
    (tmp_path / "test").mkdir()
    rows = ["id,label"]
    for i in range(6):
        _save(tmp_path / "train" / f"id{i:02d}.tif", 96, 10 * i)
        rows.append(f"id{i:02d},{i % 2}")
    for i in range(3):
        _save(tmp_path / "test" / f"t{i}.tif", 96, 200)
    (tmp_path / "train_labels.csv").write_text("\n".join(rows) + "\n")
    return tmp_path


def test_kaggle_train_and_test(kaggle_dir):
    with open_patch_set(kaggle_dir, SPEC) as ps:
        assert ps.layout == "kaggle" and list(ps.ids) == [f"id{i:02d}" for i in range(6)]
        assert ps.labels.tolist() == [0, 1, 0, 1, 0, 1]
        assert ps.read([5, 1])[:, 50, 50, 0].tolist() == [50, 10]
    with open_patch_set(kaggle_dir, SPEC, split="test") as ps:
        assert ps.labels is None and list(ps.ids) == ["t0", "t1", "t2"]


def test_kaggle_errors_name_file_and_line(kaggle_dir):
    csv = kaggle_dir / "train_labels.csv"
    good = csv.read_text()
    csv.write_text(good.replace("id02,0", "id02,maybe"))
    with pytest.raises(PatchDataError, match=r"train_labels\.csv line 4: expected 'id,label'"):
        open_patch_set(kaggle_dir, SPEC)
    csv.write_text(good + "id03,1\n")
    with pytest.raises(PatchDataError, match="line 8: id id03 is listed twice"):
        open_patch_set(kaggle_dir, SPEC)
    csv.write_text(good + "ghost,1\n")
    with pytest.raises(PatchDataError, match=r"1 id\(s\) have no image .*ghost"):
        open_patch_set(kaggle_dir, SPEC)
    csv.write_text(good)
    _save(kaggle_dir / "train" / "stray.tif", 96, 0)
    with pytest.raises(PatchDataError, match=r"1 file\(s\) have no label .*stray\.tif"):
        open_patch_set(kaggle_dir, SPEC)


# -- class folders and flat folders -------------------------------------------------------


@pytest.fixture
def class_dir(tmp_path_factory) -> Path:
    tmp_path = tmp_path_factory.mktemp("classes")
    for name in ("normal", "tumor"):
        (tmp_path / name).mkdir()
    _save(tmp_path / "normal" / "a.png", 40, 30)
    _save(tmp_path / "normal" / "b.jpg", 60, 90)
    _save(tmp_path / "tumor" / "c.png", 128, 150, mode="RGBA")
    _save(tmp_path / "tumor" / "d.tiff", 200, 220)
    return tmp_path


def test_class_folders_mixed_sizes(class_dir):
    with open_patch_set(class_dir, SPEC, patch_mpp=0.5) as ps:
        assert ps.layout == "class-folders" and ps.labels.tolist() == [0, 0, 1, 1]
        assert list(ps.ids) == ["a", "b", "c", "d"] and not ps.groups.any()
        out = ps.read([3, 0, 2, 1])
        assert out.shape == (4, 96, 96, 3)
        assert abs(int(out[0, 48, 48, 0]) - 220) <= 1 and abs(int(out[1, 48, 48, 0]) - 30) <= 1


def test_class_folders_need_patch_mpp_and_known_names(class_dir):
    with pytest.raises(PatchDataError, match="give the patches' scale") as raised:
        open_patch_set(class_dir, SPEC)
    assert raised.value.setting == "patch_mpp"
    (class_dir / "maybe").mkdir()
    with pytest.raises(PatchDataError, match="maybe are not a known class name"):
        open_patch_set(class_dir, SPEC, layout="class-folders", patch_mpp=0.5)


def test_flat_folder_with_one_label(tmp_path):
    for i in range(3):
        _save(tmp_path / f"p{i}.jpg", 96, 100)
    with open_patch_set(tmp_path, SPEC, patch_mpp=0.972, label=0) as ps:
        assert ps.layout == "images" and ps.labels.tolist() == [0, 0, 0]
    with open_patch_set(tmp_path, SPEC, patch_mpp=0.972) as ps:
        assert ps.labels is None
    with pytest.raises(PatchDataError, match="label must be 0") as raised:
        open_patch_set(tmp_path, SPEC, patch_mpp=0.972, label=2)
    assert raised.value.setting == "label"
    with pytest.raises(PatchDataError, match="do not say their scale") as raised:
        open_patch_set(tmp_path, SPEC, label=1)
    assert raised.value.setting == "patch_mpp"


# -- layout detection ---------------------------------------------------------------------


def test_detect_each_layout(pcam_dir, kaggle_dir, class_dir, tmp_path_factory):
    assert detect_layout(pcam_dir) == "pcam"
    assert detect_layout(pcam_dir / "camelyonpatch_level_2_split_test_x.h5") == "pcam"
    assert detect_layout(kaggle_dir) == "kaggle"
    assert detect_layout(class_dir) == "class-folders"
    flat = tmp_path_factory.mktemp("flat")
    _save(flat / "x.png", 32, 0)
    assert detect_layout(flat) == "images"
    assert set(LAYOUTS) == {"pcam", "kaggle", "class-folders", "images", "slides"}


def test_detect_errors(class_dir, pcam_dir, tmp_path_factory):
    empty = tmp_path_factory.mktemp("empty")
    with pytest.raises(PatchDataError, match=r"no patch data recognised; looked for pcam.*Choose the layout") \
            as raised:
        open_patch_set(empty, SPEC)
    assert raised.value.setting == "layout"
    _save(class_dir / "loose.png", 32, 0)
    with pytest.raises(PatchDataError, match="ambiguous layout.*class-folders and images.*choose the layout") \
            as raised:
        open_patch_set(class_dir, SPEC, patch_mpp=0.5)
    assert raised.value.setting == "layout"
    with pytest.raises(PatchDataError, match="the label setting does not apply to the pcam layout") as raised:
        open_patch_set(pcam_dir, SPEC, label=1)
    assert raised.value.setting == "label"
    with pytest.raises(PatchDataError, match="unknown layout"):
        open_patch_set(pcam_dir, SPEC, layout="zarr")
    with pytest.raises(PatchDataError, match="no such file"):
        open_patch_set(empty / "nothing", SPEC)


# -- train/validation split ---------------------------------------------------------------


class _Table(PatchSet):
    layout, description, source_mpp = "images", "table", 0.972

    def __init__(self, labels, groups):
        super().__init__(SPEC)
        self.labels = np.asarray(labels, np.int8)
        self.groups = np.asarray(groups, np.int32)
        self.ids = [str(i) for i in range(len(labels))]

    def __len__(self):
        return len(self.labels)

    def _read(self, indices):
        return np.zeros((len(indices), 96, 96, 3), np.uint8)


def test_split_stratified_and_deterministic():
    table = _Table([0] * 80 + [1] * 20, [0] * 100)
    tr, va = train_valid_split(table, 0.25, seed=3)
    assert len(va) == 25 and table.labels[va].sum() == 5
    assert not set(tr) & set(va) and len(tr) + len(va) == 100
    np.testing.assert_array_equal(va, train_valid_split(table, 0.25, seed=3)[1])
    assert not np.array_equal(va, train_valid_split(table, 0.25, seed=4)[1])
    assert len(train_valid_split(table, 0.0)[1]) == 0
    with pytest.raises(PatchDataError, match="fraction"):
        train_valid_split(table, 1.0)


def test_split_keeps_groups_apart_with_both_classes():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(10), 20)
    labels = (rng.random(200) < np.repeat(rng.random(10), 20)).astype(np.int8)
    table = _Table(labels, groups)
    tr, va = train_valid_split(table, 0.2, seed=1)
    assert not set(groups[tr]) & set(groups[va])
    assert 0 < table.labels[va].sum() < len(va) and 20 <= len(va) <= 80
    many = _Table(np.arange(600) % 2, np.repeat(np.arange(30), 20))  # greedy path
    tr, va = train_valid_split(many, 0.2, seed=0)
    assert not set(many.groups[tr]) & set(many.groups[va]) and 60 <= len(va) <= 180


# -- slides + annotations (a small phantom) -----------------------------------------------


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    out = tmp_path_factory.mktemp("slides") / "node.tiff"
    return write_phantom(out, width=6000, height=6000, mpp=0.25, lesions="micro:0.5", seed=1)


def _centre_inside(ps, polygon: np.ndarray, grow_l0: float) -> np.ndarray:
    """Fraction of a dense grid over each patch's central third (grown by ``grow_l0``) inside ``polygon``."""
    side = 96 * 0.972 / 0.25
    centre = side / 3
    t = np.linspace(-grow_l0, centre + grow_l0, 25)
    gx, gy = np.meshgrid(t, t)
    out = []
    for x, y in ps.l0_xy:
        pts = np.stack([x + side / 3 + gx.ravel(), y + side / 3 + gy.ravel()], 1)
        out.append(points_in_poly(pts, polygon).mean())
    return np.array(out)


def test_slide_patches_labels_follow_the_lesion(phantom):
    polygon = np.asarray(phantom.lesions[0].l0_polygon)
    with open_patch_set(phantom.slide_path, SPEC) as ps:  # sidecar node.geojson found
        assert ps.layout == "slides" and ps.source_mpp == 0.25 and not ps.groups.any()
        pos = ps.labels == 1
        assert 5 <= pos.sum() < len(ps) // 2
        # overlap of the central 32 x 32 px, to within one raster pixel (124 / 8 l0 px)
        assert np.all(_centre_inside(ps, polygon, grow_l0=16)[pos] > 0)
        assert np.all(pos[_centre_inside(ps, polygon, grow_l0=-16) > 0])
        x, y = ps.l0_xy[np.flatnonzero(pos)[0]]
        assert ps.ids[np.flatnonzero(pos)[0]] == f"node:{x}_{y}"
        patches = ps.read(np.flatnonzero(pos)[:4])
        assert patches.shape == (4, 96, 96, 3)
        # patches come from tissue: stained, not white glass
        assert patches.mean() < 220


def test_slide_patches_sampling_xml_and_exclusions(phantom, tmp_path):
    lesion = phantom.lesions[0]
    with open_patch_set(phantom.slide_path, SPEC, negative_ratio=1.0, seed=2) as ps:
        n_pos = int(ps.labels.sum())
        assert len(ps) == 2 * n_pos
    with open_patch_set(phantom.slide_path, SPEC, max_patches_per_slide=10) as ps:
        assert len(ps) == 10 and ps.labels.all()  # positives kept first
    # an exclusion (group _2, CAMELYON's normal island) over the lesion centre
    cx, cy = lesion.l0_centroid
    hole = PolygonAnnotation(
        "hole",
        ((cx - 300, cy - 300), (cx + 300, cy - 300), (cx + 300, cy + 300), (cx - 300, cy + 300)),
        group="_2",
    )
    xml = write_asap_xml(tmp_path / "a.xml", [*read_geojson(phantom.geojson_path), hole])
    with (
        open_patch_set(phantom.slide_path, SPEC) as full,
        open_patch_set(phantom.slide_path, SPEC, annotations=xml) as holed,
    ):
        np.testing.assert_array_equal(full.l0_xy, holed.l0_xy)
        assert 0 < holed.labels.sum() < full.labels.sum()
        inner = np.all(np.abs(full.l0_xy + 124 * 1.5 - (cx, cy)) < 300 - 62, axis=1)
        assert inner.any() and not holed.labels[inner].any()


def test_slide_patches_read_camelyon16_json_like_asap_xml(phantom, tmp_path):
    # The CAMELYON16 lesion form ({"positive": [...], "negative": [...]}) is read through
    # annotations.files.load_annotations, as the viewer reads it: "negative" polygons are
    # exclusions, as group _2 is in ASAP XML.
    cx, cy = phantom.lesions[0].l0_centroid
    square = [[cx - 300, cy - 300], [cx + 300, cy - 300], [cx + 300, cy + 300], [cx - 300, cy + 300]]
    lesion = [list(map(float, xy)) for xy in phantom.lesions[0].l0_polygon]
    doc = {"positive": [{"name": "Annotation 0", "vertices": lesion}],
           "negative": [{"name": "Annotation 1", "vertices": square}]}
    (tmp_path / "c16.json").write_text(json.dumps(doc), encoding="utf-8")
    pos, neg = read_tumour_polygons(tmp_path / "c16.json")
    assert len(pos) == 1 and len(neg) == 1
    np.testing.assert_allclose(neg[0], square)
    hole = PolygonAnnotation("hole", tuple(map(tuple, square)), group="_2")
    xml = write_asap_xml(tmp_path / "a.xml", [PolygonAnnotation("Annotation 0", tuple(map(tuple, lesion))), hole])
    with (
        open_patch_set(phantom.slide_path, SPEC, annotations=tmp_path / "c16.json") as from_json,
        open_patch_set(phantom.slide_path, SPEC, annotations=xml) as from_xml,
    ):
        np.testing.assert_array_equal(from_json.l0_xy, from_xml.l0_xy)
        np.testing.assert_array_equal(from_json.labels, from_xml.labels)
        assert 0 < from_json.labels.sum()


def test_real_camelyon16_lesion_files_give_tumour_and_exclusion_polygons(shared_data):
    path = shared_data / "annotations" / "camelyon16-train" / "Tumor_001.json"
    if not path.is_file():
        pytest.skip(f"CAMELYON16 annotations not found at {path}")
    doc = json.loads(path.read_text(encoding="utf-8"))
    pos, neg = read_tumour_polygons(path)
    assert len(pos) == len(doc["positive"]) > 0 and len(neg) == len(doc.get("negative") or [])
    np.testing.assert_allclose(pos[0][:3], doc["positive"][0]["vertices"][:3])


def test_unknown_annotation_suffix_is_a_patch_data_error(tmp_path):
    (tmp_path / "notes.txt").write_text("x", encoding="utf-8")
    with pytest.raises(PatchDataError, match=r"notes\.txt: unknown annotation format .*patch labels"):
        read_tumour_polygons(tmp_path / "notes.txt")


def test_folder_of_slides_groups_by_slide(phantom, tmp_path):
    for name in ("a", "b"):
        (tmp_path / f"{name}.tiff").symlink_to(phantom.slide_path)
        (tmp_path / f"{name}.geojson").symlink_to(phantom.geojson_path)
    assert detect_layout(tmp_path) == "slides"
    with open_patch_set(tmp_path, SPEC) as ps:
        assert set(ps.groups.tolist()) == {0, 1} and ps.ids[0].startswith("a:")
        tr, va = train_valid_split(ps, 0.5, seed=0)
        assert len(set(ps.groups[va].tolist())) == 1 and not set(ps.groups[tr]) & set(ps.groups[va])
    (tmp_path / "c.tiff").symlink_to(phantom.slide_path)  # no sidecar
    with pytest.raises(PatchDataError, match=r"1 slide\(s\) have no annotation file .*c\.tiff"):
        open_patch_set(tmp_path, SPEC, layout="slides")


def test_tissue_mask_on_the_phantom_thumbnail(phantom):
    from histoviewer.core.slide import open_slide

    with open_slide(phantom.slide_path) as reader:
        thumb = reader.thumbnail(256)
    mask = tissue_mask(thumb, mask_mpp=0.25 * 6000 / 256)
    assert 0.1 < mask.mean() < 0.8
    assert mask[128, 128] and not mask[2, 2]  # node in the middle, glass in the corner
    assert not tissue_mask(np.full((64, 64, 3), 245, np.uint8)).any()


# -- real data (skipped when ../shared/data is absent) -------------------------------------


def test_real_camelyon16_class_folders(shared_data):
    folder = shared_data / "patches" / "camelyon16-256px-40x"
    assert detect_layout(folder) == "class-folders"
    with open_patch_set(folder, SPEC, patch_mpp=0.243) as ps:
        assert len(ps) == 89 and int(ps.labels.sum()) == 44
        assert len(set(ps.groups.tolist())) > 1  # grouped by source slide from the file names
        out = ps.read(range(len(ps)))
        assert out.shape == (89, 96, 96, 3) and out.dtype == np.uint8
        tr, va = train_valid_split(ps, 0.2, seed=0)
        assert not set(ps.groups[tr]) & set(ps.groups[va])
        assert 0 < ps.labels[va].sum() < len(va)


def test_real_pcam_negatives_flat_folder(shared_data):
    folder = shared_data / "patches" / "pcam-96px-negatives"
    assert detect_layout(folder) == "images"
    with open_patch_set(folder, SPEC, patch_mpp=0.972, label=0) as ps:
        assert len(ps) == 2155 and not ps.labels.any()
        out = ps.read([0, 2154])
        raw = np.asarray(Image.open(ps.files[2154]).convert("RGB"))
        np.testing.assert_array_equal(out[1], raw)  # same scale: untouched


def test_real_slide_without_mpp_is_refused(slides_dir):
    with pytest.raises(PatchDataError, match="does not state its microns per pixel.*patch scale") as raised:
        open_patch_set(slides_dir / "tcga-cr-7395-01a-01-ts1-no-mpp.svs", SPEC)
    assert raised.value.setting == "patch_mpp"
