"""``core.jobs``, headless: a small case analysed end to end, one model load for every slide,
a failing slide that does not stop the others, cancel mid-run (``Cancelled``, no partial
outputs), and exports run from a request (cancelled: no file)."""

from __future__ import annotations

import csv
import json
import shutil
import threading

import numpy as np
import pytest

from histoviewer.core.analysis.summary import SlideFailure, SlideSummary
from histoviewer.core.errors import Cancelled, ExportCancelled, ModelLoadError
from histoviewer.core.inference.analyze import AnalyzeOptions
from histoviewer.core.jobs import ExportRequest, analyze_case, analyze_slides, run_export
from histoviewer.core.jobs import analysis as jobs_analysis
from histoviewer.core.progress import JobControl
from histoviewer.core.slide import open_slide
from tests.core.export_helpers import lesion_heatmap
from tests.core.inference_helpers import LesionFractionModel, write_synthetic_tiff


class CountingModel(LesionFractionModel):
    """The lesion-colour model; ``on_call(n)`` runs after each model call (n from 1)."""

    def __init__(self, on_call=lambda _n: None) -> None:
        super().__init__()
        self.on_call = on_call
        self.closed = 0

    def predict_proba(self, patches):
        probs = super().predict_proba(patches)
        self.on_call(self.calls)
        return probs

    def close(self) -> None:
        self.closed += 1


@pytest.fixture(scope="module")
def case_slides(tmp_path_factory):
    """patient_021: nodes 0 and 1 (the synthetic slide twice)."""
    folder = tmp_path_factory.mktemp("patient_021")
    node0 = write_synthetic_tiff(folder / "patient_021_node_0.tiff")
    node1 = folder / "patient_021_node_1.tiff"
    shutil.copy(node0, node1)
    return [node0, node1]


def _use_model(monkeypatch, model):
    loads = []

    def fake_open_model(spec, device="auto"):
        loads.append((spec, device))
        return model

    monkeypatch.setattr(jobs_analysis, "open_model", fake_open_model)
    # a stand-in model: loaded in place, not planned from the real file's header on a thread
    monkeypatch.setattr(jobs_analysis, "_open_model_early", lambda spec, device: fake_open_model(spec, device))
    return loads


def test_a_case_runs_end_to_end_with_one_model_load(monkeypatch, case_slides, tmp_path):
    model = CountingModel()
    loads = _use_model(monkeypatch, model)
    seen, events = [], []
    control = JobControl(progress=lambda stage, done, total, _d: seen.append((stage, done, total)))
    run = analyze_case(case_slides, tmp_path, AnalyzeOptions(model="m", device="cpu"), control=control,
                       on_started=lambda i, p: events.append(("start", i, p.name)),
                       on_done=lambda i, s: events.append(("done", i, isinstance(s, SlideFailure))))
    assert loads == [("m", "cpu")] and model.closed == 1
    assert events == [("start", 0, "patient_021_node_0.tiff"), ("done", 0, False),
                      ("start", 1, "patient_021_node_1.tiff"), ("done", 1, False)]
    assert [s.slide for s in run.summaries] == [str(p) for p in case_slides]
    for path in case_slides:
        folder = tmp_path / path.stem
        assert {"probability.tiff", "probability.json", "heatmap.png", "lesions.geojson",
                "summary.json"} <= {p.name for p in folder.iterdir()}
    rows = list(csv.reader((tmp_path / "stages.csv").open()))
    assert rows[0] == ["patient", "stage"] and rows[1][0] == "patient_021.zip"
    assert run.outputs.stages_csv == tmp_path / "stages.csv" and (tmp_path / "cases.json").is_file()
    # one stage per slide, counted in patches up to the slide's tissue patches
    stages = {stage for stage, _d, _t in seen}
    assert stages == {"Classifying patient_021_node_0.tiff", "Classifying patient_021_node_1.tiff"}
    last = [(d, t) for stage, d, t in seen if stage.endswith("node_0.tiff")][-1]
    assert last == (run.summaries[0].tissue_patches,) * 2


def test_a_broken_slide_is_reported_and_the_others_go_on(monkeypatch, case_slides, tmp_path):
    _use_model(monkeypatch, CountingModel())
    bad = tmp_path / "slides" / "patient_021_node_2.svs"
    bad.parent.mkdir()
    bad.write_bytes(b"not a slide")
    summaries = analyze_slides([bad, case_slides[0]], tmp_path / "out")
    assert isinstance(summaries[0], SlideFailure) and "patient_021_node_2.svs" in summaries[0].error
    assert isinstance(summaries[1], SlideSummary) and summaries[1].classified_patches > 0


def test_a_model_that_cannot_load_stops_the_run(monkeypatch, case_slides, tmp_path):
    def refuse(spec, device="auto"):
        raise ModelLoadError(f"{spec}: no such model")

    monkeypatch.setattr(jobs_analysis, "open_model", refuse)
    with pytest.raises(ModelLoadError, match="no such model"):
        analyze_case(case_slides, tmp_path, AnalyzeOptions(model="nope"))
    assert list(tmp_path.iterdir()) == []


def test_cancel_mid_slide_raises_and_leaves_no_partial_outputs(monkeypatch, case_slides, tmp_path):
    """The event is set from inside the second slide's second model call (no timing): the
    first slide stays complete, the second leaves no folder, and no case files are written."""
    cancel = threading.Event()
    started = []

    def on_call(n):
        if len(started) == 2 and n >= 2:
            cancel.set()

    model = CountingModel(on_call)
    _use_model(monkeypatch, model)
    with pytest.raises(Cancelled):
        analyze_case(case_slides, tmp_path, AnalyzeOptions(batch_size=16, block=2),
                     control=JobControl(cancel=cancel), on_started=lambda i, _p: started.append(i))
    assert started == [0, 1] and model.closed == 1
    first = tmp_path / case_slides[0].stem
    assert json.loads((first / "summary.json").read_text())["classified_patches"] > 0
    assert not (tmp_path / case_slides[1].stem).exists()
    assert not (tmp_path / "stages.csv").exists() and not (tmp_path / "cases.json").exists()


def test_cancel_before_the_start_analyses_nothing(monkeypatch, case_slides, tmp_path):
    model = CountingModel()
    _use_model(monkeypatch, model)
    with pytest.raises(Cancelled):
        analyze_slides(case_slides, tmp_path, control=JobControl(cancel=lambda: True))
    assert model.calls == 0 and list(tmp_path.iterdir()) == []


def test_an_export_request_runs_and_a_cancelled_one_leaves_no_file(case_slides, tmp_path):
    with open_slide(case_slides[0]) as reader:
        request = ExportRequest(kind="overlay", out_path=tmp_path / "ov.png", slide_path=str(case_slides[0]),
                                heatmap=lesion_heatmap(), output_mpp=4.0, lesion_outlines=True, reader=reader)
        result = run_export(request)
        assert result.path.is_file() and result.provenance.threshold == 0.5
        assert result.provenance.outlines >= 1  # the AI lesion with its diameter
        cancel = threading.Event()

        def progress(_stage, done, total, _detail):
            assert total > 1  # so the export is cancelled between tiles, not after them
            if done >= 1:
                cancel.set()

        for name in ("cancelled.png", "cancelled.tif"):
            out = tmp_path / name
            with pytest.raises(ExportCancelled):
                run_export(ExportRequest(kind="overlay", out_path=out, slide_path=str(case_slides[0]),
                                         heatmap=lesion_heatmap(), output_mpp=1.0, reader=reader),
                           JobControl(progress=progress, cancel=cancel))
            assert not out.exists()
            cancel.clear()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ov.png", "ov.png.provenance.json"]


def test_export_requests_check_what_they_can(tmp_path):
    from histoviewer.core.errors import ExportError

    with pytest.raises(ExportError, match="pyramidal TIFF"):
        ExportRequest(kind="pyramid", out_path=tmp_path / "x.png", slide_path="s", heatmap=lesion_heatmap())
    with pytest.raises(ExportError, match="unknown export"):
        ExportRequest(kind="movie", out_path=tmp_path / "x.mp4", slide_path="s", heatmap=lesion_heatmap())
    with pytest.raises(ExportError, match="PDF writer"):
        run_export(ExportRequest(kind="report", out_path=tmp_path / "r.pdf", slide_path="s",
                                 heatmap=lesion_heatmap()))


def test_heatmap_export_reads_an_annotation_file_through_load_annotations(tmp_path):
    """A CAMELYON16 lesion JSON (which only ``load_annotations`` understands) is drawn."""
    ann = tmp_path / "truth.json"
    ann.write_text(json.dumps({"positive": [{"name": "T1", "vertices": [[2100, 900], [3400, 900],
                                                                          [3400, 2000], [2100, 2000]]}],
                               "negative": []}))
    request = ExportRequest(kind="heatmap", out_path=tmp_path / "hm.png", slide_path="s",
                            heatmap=lesion_heatmap(), annotations_file=ann)
    (outline,) = request.outlines()
    assert outline.label.startswith("T1 ") and outline.l0_diameter is not None
    result = run_export(request)
    assert result.provenance.threshold == 0.0 and result.provenance.outlines == 1
    assert np.asarray(result.size).min() > 0


def _fake_pdf_writer(on_written=lambda: None):
    """Writes a stand-in PDF as the Qt writer would (whole file at once), then ``on_written``."""
    calls = []

    def write(report, out_path, *, live=None, control=JobControl()):
        control.check("report", ExportCancelled)
        out_path.write_bytes(b"%PDF-fake")
        calls.append((len(report.slides), dict(live or {})))
        on_written()
        return out_path

    return write, calls


def test_a_cancel_after_the_report_pdf_is_written_still_writes_every_file(tmp_path):
    """Cancel arrives once the PDF is complete: too late to stop, so nothing is deleted and
    nothing half written remains; the report is returned whole (never "cancelled" with a PDF
    left on disk)."""
    cancel = threading.Event()
    write, calls = _fake_pdf_writer(on_written=cancel.set)
    request = ExportRequest(kind="report", out_path=tmp_path / "r.pdf", slide_path="s", heatmap=lesion_heatmap(),
                            reader="the viewer's reader")
    files = run_export(request, JobControl(cancel=cancel), write_report_pdf=write)
    assert cancel.is_set() and calls == [(1, {"s": ("the viewer's reader", request.heatmap)})]
    assert files.pdf == tmp_path / "r.pdf" and files.json == tmp_path / "r.json"
    assert [p.name for p in files.tables] == ["lesions.csv", "slides.csv", "cases.csv"]
    assert files.paths() == [files.pdf, files.json, *files.tables] and all(p.is_file() for p in files.paths())


def test_a_cancelled_report_writes_no_file(tmp_path):
    cancel = threading.Event()
    cancel.set()
    write, _calls = _fake_pdf_writer()
    request = ExportRequest(kind="report", out_path=tmp_path / "r.pdf", slide_path="s", heatmap=lesion_heatmap())
    with pytest.raises(ExportCancelled):
        run_export(request, JobControl(cancel=cancel), write_report_pdf=write)
    assert list(tmp_path.iterdir()) == []


def test_the_report_job_writes_what_is_asked_and_says_what(tmp_path_factory, tmp_path):
    from histoviewer.core.jobs import ReportFiles, write_report
    from tests.core.report_helpers import shared_case

    case = shared_case(tmp_path_factory)
    write, calls = _fake_pdf_writer()
    files = write_report([case], tmp_path / "r.pdf", tmp_path / "r.json", tmp_path / "t",
                         write_report_pdf=write, count_pages=lambda report: 7)
    assert isinstance(files, ReportFiles) and calls == [(2, {})]
    assert (files.slides, files.pages, files.demonstration_model) == (2, 7, True)
    assert [(c.patient, c.stage.value) for c in files.cases] == [("patient_007", "pN1mi")]
    assert list(files.to_dict()) == ["slides", "cases", "demonstration_model", "model_cautions", "json", "csv",
                                     "pdf", "pages"]
    from histoviewer.core.models.classifier import DEMO_WARNING

    assert files.to_dict()["model_cautions"] == [DEMO_WARNING]  # the case's models: demonstration models
    assert files.to_dict()["cases"] == [{"patient": "patient_007", "stage": "pN1mi", "provisional": False,
                                         "stage_text": "pN1mi", "unresolved_nodes": []}]
    json_only = write_report([case], None, tmp_path / "j.json", None)
    assert json_only.paths() == [tmp_path / "j.json"] and list(json_only.to_dict())[-1] == "json"


def test_missing_dask_names_no_setting(monkeypatch, case_slides, tmp_path):
    """The fix is installing Dask, not another --scheduler value: no flag hint."""
    import sys

    from histoviewer.core.errors import InferenceError

    monkeypatch.setitem(sys.modules, "dask.distributed", None)  # import fails as if absent
    with pytest.raises(InferenceError, match="needs Dask") as raised:
        analyze_slides(case_slides, tmp_path, scheduler="tcp://nowhere:8786")
    assert raised.value.setting is None
