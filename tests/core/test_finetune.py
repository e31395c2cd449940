"""Fine-tuning from a pathologist's corrections: labels from decisions and annotations, the
fine-tune moving P the right way, the header's record, cancel, and the CLI's refusals."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from histoviewer.cli import main
from histoviewer.core.annotations.document import AnnotationDocument
from histoviewer.core.annotations.files import load_annotations
from histoviewer.core.annotations.review import ReviewDecision, Verdict, hotspot_id
from histoviewer.core.annotations.shapes import Annotation, ShapeKind
from histoviewer.core.annotations.store import save_document
from histoviewer.core.errors import Cancelled, PatchDataError
from histoviewer.core.models.model_file import read_model_info
from histoviewer.core.models.registry import open_model, resolve_model_path
from histoviewer.core.patches.region_patches import open_region_patches, slide_labels
from histoviewer.core.phantom import write_phantom
from histoviewer.core.progress import JobControl
from histoviewer.core.staging_terms import SizeClass
from histoviewer.core.training.finetune import (
    FINETUNE_KEY,
    FinetuneSettings,
    finetune_model,
)

MPP = 0.5
SIDE = 4000


def _tumour_polygon(slide: Path) -> tuple[tuple[float, float], ...]:
    ann = load_annotations(slide.with_suffix(".geojson")).annotation_set.annotations[0]
    return tuple(ann.outline())


def _normal_box(slide: Path, avoid: np.ndarray) -> tuple[tuple[float, float], tuple[float, float]]:
    """A 600 px square of tissue away from the lesion."""
    from histoviewer.core.patches.tissue import slide_tissue_map
    from histoviewer.core.slide import open_slide

    with open_slide(slide) as reader:
        tissue = slide_tissue_map(reader, l0_px_per_mask_px=16)
    x0, y0 = avoid.min(0)
    x1, y1 = avoid.max(0)
    for y in range(0, SIDE - 600, 100):
        for x in range(0, SIDE - 600, 100):
            far = x + 600 < x0 - 200 or x > x1 + 200 or y + 600 < y0 - 200 or y > y1 + 200
            if far and tissue.fractions(np.array([x]), np.array([y]), 600)[0] > 0.98:
                return (float(x), float(y)), (float(x + 600), float(y + 600))
    raise AssertionError("no normal tissue found")


@pytest.fixture(scope="module")
def lobular(tmp_path_factory):
    """Two small lobular phantoms (the kind the default model misses) and their truth."""
    root = tmp_path_factory.mktemp("ft")
    slides = []
    for seed in (7, 8):
        r = write_phantom(root / f"phantom_{seed}.tiff", width=SIDE, height=SIDE, mpp=MPP, lesions="micro:0.5",
                          seed=seed, tumour_morphology="lobular", workers=1)
        slides.append(r.slide_path)
    return slides


def _annotate(slide: Path, *, decision: bool = True) -> None:
    """As a pathologist: the lesion accepted (a decision on an AI hotspot shaped like it), or
    drawn as a tumour annotation, and a normal region."""
    poly = _tumour_polygon(slide)
    doc = AnnotationDocument(mpp=MPP)
    if decision:
        doc.set_decision(ReviewDecision(hotspot_id(poly, "h" * 64), poly, Verdict.TUMOUR, "t", "2026-12-04T00:00:00+00:00",
                                        "h" * 64, 0.6, SizeClass.MICRO))
    else:
        doc.add(Annotation(ShapeKind.POLYGON, poly, class_name="Tumor"))
    doc.add(Annotation(ShapeKind.RECTANGLE, _normal_box(slide, np.asarray(poly)), class_name="Normal"))
    save_document(doc, slide)


def _mean_p(model, data, label: int) -> float:
    idx = np.flatnonzero(data.labels == label)
    return float(model.predict_proba(data.read(idx)).mean())


def test_labels_from_decisions_and_annotations(lobular, tmp_path):
    slide = lobular[0]
    poly = _tumour_polygon(slide)
    doc = AnnotationDocument(mpp=MPP)
    h = "a" * 64
    doc.set_decision(ReviewDecision(hotspot_id(poly, h), poly, Verdict.TUMOUR, "t", "", h, 0.9, SizeClass.MICRO))
    box = _normal_box(slide, np.asarray(poly))
    ring = ((box[0][0], box[0][1]), (box[1][0], box[0][1]), (box[1][0], box[1][1]), (box[0][0], box[1][1]))
    doc.set_decision(ReviewDecision(hotspot_id(ring, h), ring, Verdict.NOT_TUMOUR, "t", "", h, 0.7, SizeClass.ITC))
    doc.set_decision(ReviewDecision("hs-unsure", ((0, 0), (50, 0), (50, 50)), Verdict.UNSURE, "t", "", h, 0.5,
                                    SizeClass.ITC))
    doc.add(Annotation(ShapeKind.POLYGON, poly, class_name="Suspect"))  # no label
    out = tmp_path / "labels.geojson"
    from histoviewer.core.annotations.files import save_annotations

    save_annotations(out, doc.to_set())
    labels = slide_labels(slide, out)
    assert [(r.origin, r.label) for r in labels.regions] == [("accepted hotspot", 1), ("rejected hotspot", 0)]
    with open_region_patches([labels], open_model("cnn").input) as data:
        n1, n0 = int((data.labels == 1).sum()), int((data.labels == 0).sum())
        assert n1 > 20 and n0 > 5
        # every tumour patch's centre lies in the lesion, every normal one in the box
        side = data.slides[0].l0_size
        cx, cy = data.l0_xy[:, 0] + side / 2, data.l0_xy[:, 1] + side / 2
        in_box = (cx > box[0][0]) & (cx < box[1][0]) & (cy > box[0][1]) & (cy < box[1][1])
        assert in_box[data.labels == 0].all() and not in_box[data.labels == 1].any()
        assert len(np.unique(data.groups)) >= 3  # region blocks: the split can keep them apart

    # a rejected hotspot over the accepted one: its patches contradict each other and are left out
    doc.set_decision(ReviewDecision(hotspot_id(poly, "b" * 64), poly, Verdict.NOT_TUMOUR, "t", "", "b" * 64, 0.9,
                                    SizeClass.MICRO))
    save_annotations(out, doc.to_set())
    # (the lesion's patches lie in regions of both labels: only the normal box is left)
    with pytest.raises(PatchDataError, match="phantom_7.tiff are all normal"):
        open_region_patches([slide_labels(slide, out)], open_model("cnn").input)


@pytest.mark.slow  # trains a CNN or refits a model: 10-60 s on 2 busy cores
def test_finetune_moves_p_and_records_its_sources(lobular, tmp_path):
    _annotate(lobular[0], decision=True)
    _annotate(lobular[1], decision=False)
    labelled = [slide_labels(s) for s in lobular]
    assert labelled[0].source.name.endswith(".annotations.geojson")  # the viewer's autosave
    parent = open_model("cnn", device="cpu")
    with open_region_patches(labelled, parent.input, max_patches_per_class=100) as data:
        before = (_mean_p(parent, data, 1), _mean_p(parent, data, 0))
        epochs = []
        out = tmp_path / "ft.safetensors"
        settings = FinetuneSettings(epochs=4, batch_size=16, max_patches_per_class=100, device="cpu")
        outcome = finetune_model("cnn", labelled, settings, out=out, on_epoch=epochs.append)
        assert [e.epoch for e in epochs] == list(range(1, len(epochs) + 1)) and epochs
        tuned = open_model(str(out), device="cpu")
        after = (_mean_p(tuned, data, 1), _mean_p(tuned, data, 0))
    # the default model misses lobular tumour: the corrections raise P there and not on normal tissue
    assert after[0] > before[0] + 0.2, (before, after)
    assert after[0] - after[1] > before[0] - before[1] + 0.2, (before, after)

    info = read_model_info(out)
    rec = info.extra[FINETUNE_KEY]
    parent_info = read_model_info(resolve_model_path("cnn"))
    assert rec["parent"]["content_hash"] == parent_info.content_hash and rec["parent"]["name"] == "cnn-pcam"
    assert [s["slide"] for s in rec["slides"]] == [str(s) for s in lobular]
    assert rec["slides"][0]["regions"][0]["origin"] == "accepted hotspot"
    assert rec["slides"][0]["regions"][0]["ref"].startswith("hs-")
    assert rec["slides"][1]["regions"][0]["origin"] == "tumour annotation"
    assert rec["n_review_decisions"] == 1 and rec["n_annotations"] == 3
    assert rec["validation"]["n"] > 0 and rec["validation"]["auc"] is not None
    assert info.metrics["valid_auc"] == pytest.approx(rec["validation"]["auc"], abs=1e-5)
    assert info.architecture == parent_info.architecture and info.input == parent_info.input
    assert info.content_hash and info.content_hash != parent_info.content_hash
    assert "fine-tuned on" in info.caveat and "not validated for clinical use" in info.caveat
    assert outcome.path == out


@pytest.mark.slow  # trains a CNN or refits a model: 10-60 s on 2 busy cores
def test_cancel_leaves_no_file(lobular, tmp_path):
    _annotate(lobular[0])
    _annotate(lobular[1], decision=False)
    stop = threading.Event()
    out = tmp_path / "models" / "cancelled.safetensors"
    with pytest.raises(Cancelled):
        finetune_model("cnn", [slide_labels(s) for s in lobular],
                       FinetuneSettings(epochs=5, max_patches_per_class=60, device="cpu"), out=out,
                       control=JobControl(cancel=stop), on_epoch=lambda _rec: stop.set())
    assert not out.exists()
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_cli_refuses_a_slide_without_labels(lobular, tmp_path, capsys):
    bare = tmp_path / "phantom_bare.tiff"
    bare.write_bytes(lobular[0].read_bytes())  # no annotations beside it, none saved
    _annotate(lobular[1])
    rc = main(["train", "cnn", "--init", "cnn", "--data", str(lobular[1]), "--data", str(bare), "--layout", "slides"])
    err = capsys.readouterr().err
    assert rc != 0
    assert "phantom_bare.tiff" in err and "no labels" in err
    assert not any((tmp_path / "data").rglob("*.safetensors"))


@pytest.mark.slow  # trains a CNN or refits a model: 10-60 s on 2 busy cores
def test_cli_finetunes_into_the_models_folder(lobular, tmp_path, capsys, monkeypatch):
    _annotate(lobular[0])
    _annotate(lobular[1], decision=False)
    monkeypatch.setenv("HISTOVIEWER_DATA_DIR", str(tmp_path / "data"))
    args = ["train", "cnn", "--init", "cnn", "--layout", "slides", "--epochs", "1", "--max-patches-per-slide", "40",
            "--device", "cpu", "--json"]
    assert main([*args, "--data", str(lobular[0]), "--data", str(lobular[1])]) == 0
    summary = json.loads(capsys.readouterr().out)
    path = Path(summary["model"])
    assert path.parent == tmp_path / "data" / "models" and path.exists()
    assert summary["fine_tune"]["parent"]["name"] == "cnn-pcam"
    # the models list (what the GUI's model menu shows) has it
    assert main(["models", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["models"]
    assert any(m["path"] == str(path) for m in listed)
    # the wrong kind is refused, naming the right command
    rc = main(["train", "handcrafted", "--init", "cnn", "--layout", "slides", "--data", str(lobular[0])])
    assert rc != 0 and "train cnn" in capsys.readouterr().err


@pytest.mark.slow  # trains a CNN or refits a model: 10-60 s on 2 busy cores
def test_handcrafted_finetune_moves_p(lobular, tmp_path):
    _annotate(lobular[0])
    _annotate(lobular[1], decision=False)
    labelled = [slide_labels(s) for s in lobular]
    parent = open_model("handcrafted")
    out = tmp_path / "hc-ft.safetensors"
    finetune_model("handcrafted", labelled, FinetuneSettings(max_patches_per_class=150), out=out)
    tuned = open_model(str(out))
    with open_region_patches(labelled, parent.input, max_patches_per_class=150) as data:
        gap_before = _mean_p(parent, data, 1) - _mean_p(parent, data, 0)
        gap_after = _mean_p(tuned, data, 1) - _mean_p(tuned, data, 0)
    assert gap_after > gap_before + 0.1, (gap_before, gap_after)
    rec = read_model_info(out).extra[FINETUNE_KEY]
    assert rec["parent"]["kind"] == "handcrafted"


def test_all_one_label_is_refused_naming_the_slides(lobular):
    slide = lobular[0]
    doc = AnnotationDocument(mpp=MPP)
    doc.add(Annotation(ShapeKind.POLYGON, _tumour_polygon(slide), class_name="Tumor"))
    save_document(doc, slide)
    with pytest.raises(PatchDataError, match="phantom_7.tiff.*all tumour"):
        open_region_patches([slide_labels(slide)], open_model("cnn").input)
