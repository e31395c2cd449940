"""Typed results between stages: model records, lesions and slide summaries survive their
JSON (the file formats stay as they were) and pickling (process pools, Dask) unchanged."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from histoviewer.core import units
from histoviewer.core.analysis.lesions import Lesion, LesionParams, MapFrame, find_lesions
from histoviewer.core.analysis.summary import (SlideFailure, SlideSummary, SlideTiming, outcome_from_dict,
                                               read_summary)
from histoviewer.core.analysis.detections import read_detections
from histoviewer.core.errors import EvaluationError, SummaryFormatError, SummaryWithoutLesionsError
from histoviewer.core.export.provenance import CellCrop, Provenance
from histoviewer.core.input_spec import InputSpec
from histoviewer.core.models.classifier import DEMO_WARNING, ModelInfo
from histoviewer.core.models.record import ModelRecord
from tests.core.summary_helpers import summary

DEMO_INFO = ModelInfo(name="demo", kind="cnn", architecture="strided-cnn", input=InputSpec(patch_px=96, mpp=0.972),
                      content_hash="a" * 64, demonstration=True)


def test_model_record_from_a_model_and_back_through_json():
    record = ModelRecord.from_info(DEMO_INFO)
    assert record.display_name == DEMO_INFO.display_name() and record.warning == DEMO_WARNING
    assert (record.mpp, record.patch_px, record.architecture) == (0.972, 96, "strided-cnn")
    # the analysis files' shape, with the input scale under its file key
    doc = json.loads(json.dumps(record.to_dict()))
    assert list(doc) == ["name", "display_name", "kind", "architecture", "content_hash", "demonstration",
                         "mpp_um", "patch_px", "caveat", "operating_point", "warning"]
    assert doc["mpp_um"] == 0.972 and doc["warning"] == DEMO_WARNING
    assert ModelRecord.from_dict(doc) == record
    # the exports' and reports' shape names the model only; read back, its input is unknown
    ident = record.to_identity_dict()
    assert list(ident) == ["name", "display_name", "kind", "content_hash", "demonstration", "caveat",
                           "operating_point", "warning"]
    back = ModelRecord.from_dict(ident)
    assert back.mpp is None and back.patch_px is None and back.to_identity_dict() == ident


def test_a_real_model_has_no_warning_and_an_empty_record_is_unknown():
    real = ModelRecord.from_info(ModelInfo(name="trained", kind="cnn", architecture="strided-cnn"))
    assert real.warning is None and "warning" not in real.to_dict() and "warning" not in real.to_identity_dict()
    assert ModelRecord.from_dict({}) == ModelRecord(name="unknown", display_name="unknown")
    with pytest.raises(ValueError, match="JSON object"):
        ModelRecord.from_dict(["not", "a", "record"])  # type: ignore[arg-type]


def test_provenance_writes_the_model_and_the_output_scale_under_their_file_keys():
    prov = Provenance("overlay", "/s/a.svs", (100, 80), 0.25, (0.0, 0.0, 100.0, 80.0),
                      ModelRecord.from_info(DEMO_INFO), output_size=(50, 40), l0_per_px=2.0, output_mpp=0.5)
    doc = json.loads(prov.to_json())
    assert doc["um_per_px"] == 0.5 and "output_mpp" not in doc
    assert doc["model"] == ModelRecord.from_info(DEMO_INFO).to_identity_dict()
    assert doc["slide_l0_size"] == [100, 80] and doc["label_image_included"] is False
    assert prov.text_chunks()["Warning"] == DEMO_WARNING
    assert doc["extra"] == {} and list(doc).index("extra") == list(doc).index("coverage") + 1


def test_provenance_details_are_typed_fields_written_under_extra():
    # The file keeps them under "extra", in this order, only when set; code reads the fields.
    base = Provenance("overlay-pyramid", "/s/a.svs", (100, 80), 0.25, (0.0, 0.0, 100.0, 80.0),
                      ModelRecord.from_info(DEMO_INFO), coverage=1.0, outlines=2, slide_level_read=1,
                      heatmap_source="cache", pyramid_levels=((100, 80), (50, 40)))
    doc = json.loads(base.to_json())
    assert list(doc["extra"].items()) == [("outlines", 2), ("slide_level_read", 1), ("heatmap_source", "cache"),
                                          ("pyramid_levels", [[100, 80], [50, 40]])]
    keys = list(doc)
    assert keys[keys.index("coverage") + 1] == "extra" and keys[keys.index("extra") + 1] == "software"
    raw = Provenance("raw-probabilities", "/s/a.svs", (100, 80), 0.25, (0.0, 0.0, 100.0, 80.0),
                     ModelRecord.from_info(DEMO_INFO), heatmap_source="analysis:/x", crop=CellCrop(1, 2, 3, 4))
    assert json.loads(raw.to_json())["extra"] == {"heatmap_source": "analysis:/x",
                                                  "crop": {"row0": 1, "col0": 2, "rows": 3, "cols": 4}}
    assert raw.crop is not None and (raw.crop.rows, raw.crop.cols) == (3, 4)


def test_model_info_valid_auc_reads_the_metrics_entry():
    assert ModelInfo("m", "cnn", "tiny", metrics={"valid_auc": 0.875, "valid_n": 10.0}).valid_auc == 0.875
    assert ModelInfo("m", "handcrafted", "lr", metrics={"train_auc": 0.9}).valid_auc is None


def test_lesions_read_back_from_their_json():
    enc = np.zeros((20, 20), np.float32)
    enc[3:8, 4:10] = 0.9
    enc[14, 14] = 0.8
    found = find_lesions(enc, MapFrame(l0_cell=100.0, mpp=0.5, l0_window=30.0))
    assert len(found) == 2
    for les in found:
        doc = json.loads(json.dumps(les.to_dict()))
        back = Lesion.from_dict(doc)
        assert back.to_dict() == doc and back.name == les.name and back.size_class is les.size_class
        assert len(back.l0_outline) == len(les.l0_outline)
        # without its outline (summary.json): the outline may come from lesions.geojson
        bare = Lesion.from_dict(les.to_dict(with_outline=False), ((0.0, 0.0), (1.0, 1.0)))
        assert bare.l0_outline == ((0.0, 0.0), (1.0, 1.0))
    with pytest.raises(ValueError, match="lesion-<number>"):
        Lesion.from_dict({**found[0].to_dict(), "name": "blob"})


def test_a_summary_survives_json_and_pickling():
    s = summary("/s/patient_001_node_2.tif", "micro", (1.2, 0.1), provisional=True)
    doc = json.loads(json.dumps(s.to_dict()))
    assert SlideSummary.from_dict(doc) == s and SlideSummary.from_dict(doc).to_dict() == doc
    assert pickle.loads(pickle.dumps(s)) == s
    assert (s.node, s.largest_lesion, s.largest_diameter_mm) == ("patient_001_node_2.tif", "lesion-1", 1.2)
    assert doc["largest_lesion"] == "lesion-1" and doc["largest_diameter_mm"] == 1.2
    # half the tissue unclassified: no final label; micro so far is a lower bound
    assert doc["node_label"] == "unknown" and doc["label_so_far"] == "micro" and doc["provisional"] is True
    assert doc["unresolved_reason"].startswith("50 of 100 tissue patches not classified")
    assert doc["lesion_params"] == LesionParams().to_dict() and doc["timing"]["total_s"] == 1.0
    failure = SlideFailure("/s/patient_001_node_3.tif", "cannot open")
    assert outcome_from_dict(failure.to_dict()) == failure and failure.node == "patient_001_node_3.tif"
    assert pickle.loads(pickle.dumps(failure)) == failure
    assert SlideTiming(model_s=1.23456).rounded().model_s == 1.235


def test_a_summary_from_before_lesions_reads_as_unknown():
    doc = summary("/s/x.tif", "negative").to_dict()
    for key in ("node_label", "provisional", "largest_lesion", "largest_diameter_mm", "lesion_params", "lesions"):
        del doc[key]
    old = SlideSummary.from_dict(doc)
    assert old.node_label.value == "unknown" and old.lesions == () and old.lesion_params == LesionParams()


def test_a_summary_from_before_lesions_is_refused_where_lesions_are_needed(tmp_path):
    doc = summary("/s/x.tif", "negative").to_dict()
    del doc["node_label"]
    folder = tmp_path / "x"
    folder.mkdir()
    (folder / "summary.json").write_text(json.dumps(doc))
    assert read_summary(folder).node_label.value == "unknown"  # the report's reading: unknown
    with pytest.raises(SummaryWithoutLesionsError, match=r"summary\.json: has no lesions .*analyse the slide again"):
        read_summary(folder, lesions_required=True)
    # FROC detections need the lesions: "none found" would be a wrong answer
    with pytest.raises(EvaluationError, match=r"summary\.json: has no lesions"):
        read_detections(tmp_path)
    failure = {"slide": "/s/y.tif", "error": "no scale"}
    (folder / "summary.json").write_text(json.dumps(failure))
    assert read_summary(folder, lesions_required=True) == SlideFailure("/s/y.tif", "no scale")
    doc["node_label"] = "negative"
    (folder / "summary.json").write_text(json.dumps(doc))
    assert read_detections(tmp_path)[0].detections == ()


def test_a_summary_without_a_scale_is_malformed(tmp_path):
    # An analysed slide always has a scale (its grid needs one): mpp is a float, never None.
    doc = summary("/s/x.tif", "negative").to_dict()
    assert isinstance(SlideSummary.from_dict(doc).mpp, float)
    (tmp_path / "summary.json").write_text(json.dumps({**doc, "mpp": None}))
    with pytest.raises(SummaryFormatError, match=r"summary\.json: malformed analysis summary: .*scale"):
        read_summary(tmp_path)
    geometry = {**doc["geometry"], "slide_mpp": None}
    (tmp_path / "summary.json").write_text(json.dumps({**doc, "geometry": geometry}))
    with pytest.raises(SummaryFormatError, match=r"summary\.json: malformed analysis summary: .*scale"):
        read_summary(tmp_path)


def test_read_summary_names_the_file_when_malformed(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text("{not json")
    with pytest.raises(SummaryFormatError, match=r"summary\.json: cannot read"):
        read_summary(tmp_path)
    path.write_text(json.dumps({"out_dir": "x"}))
    with pytest.raises(SummaryFormatError, match=r"summary\.json: not an analysis summary"):
        read_summary(path)
    doc = summary("/s/x.tif", "negative").to_dict()
    path.write_text(json.dumps({**doc, "node_label": "huge"}))
    with pytest.raises(SummaryFormatError, match=r"summary\.json: malformed analysis summary: .*huge"):
        read_summary(path)
    del doc["geometry"]
    path.write_text(json.dumps(doc))
    with pytest.raises(SummaryFormatError, match=r"malformed analysis summary: missing entry 'geometry'"):
        read_summary(path)
    path.write_text(json.dumps({"slide": "/s/y.tif", "error": "no scale"}))
    assert read_summary(path) == SlideFailure("/s/y.tif", "no scale")


def test_units_keep_an_unknown_scale_unknown():
    assert units.l0_px_to_mm(4000, 0.25) == 1.0 and units.l0_px_to_um(4000, 0.25) == 1000.0
    assert units.l0_area_to_mm2(4000 * 4000, 0.25) == pytest.approx(1.0)
    assert units.l0_area_to_um2(4, 0.5) == 1.0 and units.um_to_l0_px(500.0, 0.25) == 2000.0
    assert units.um_to_mm(250.0) == 0.25 and units.mm_to_um(0.2) == 200.0
    for convert in (units.l0_px_to_mm, units.l0_px_to_um, units.l0_area_to_mm2, units.l0_area_to_um2,
                    units.um_to_l0_px):
        assert convert(100.0, None) is None
    # a bare map without a scale: sizes None and classes unknown, never a number
    enc = np.zeros((10, 10), np.float32)
    enc[2:6, 2:6] = 0.9
    (les,) = find_lesions(enc, MapFrame.for_cells(None))
    assert les.diameter_mm is None and les.area_mm2 is None and les.size_class.value == "unknown"
