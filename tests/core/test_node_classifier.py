"""The learned node classifier: map features, its label beside the rules' under the same
honesty rules, training from analysed slides, and the shipped phantom-trained default."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from histoviewer.cli import main
from histoviewer.core.analysis.learned_label import (
    LearnedLabel,
    default_node_classifier,
    learned_label,
    load_node_classifier,
)
from histoviewer.core.analysis.lesions import LesionParams, MapFrame
from histoviewer.core.analysis.node_features import (
    FEATURE_NAMES,
    FEATURES,
    node_features,
)
from histoviewer.core.analysis.node_label import (
    analyse_map,
    resolve_node_label,
    tissue_counts,
)
from histoviewer.core.analysis.summary import (
    SlideFiles,
    SlideSummary,
    SlideTiming,
    read_summary,
)
from histoviewer.core.atomic import atomic_write_text
from histoviewer.core.errors import ModelLoadError
from histoviewer.core.inference.outputs import write_probability_map
from histoviewer.core.models.node_forest import forest_from_sklearn, save_forest
from histoviewer.core.phantom.node_cohort import phantom_cohort, rule_label
from histoviewer.core.phantom.node_maps import MapNoise, synthesise_node_map
from histoviewer.core.staging_terms import NodeLabel
from histoviewer.core.strict_json import strict_dumps
from tests.core.summary_helpers import MODEL

THRESHOLD = 0.4627  # the default CNN's operating point


def _feature(values: np.ndarray, name: str) -> float:
    return float(values[FEATURE_NAMES.index(name)])


def test_features_come_from_the_rules_lesions_with_units():
    m = np.full((100, 100), 0.05, np.float32)
    m[:, :10] = -1.0  # background
    m[20:50, 20:40] = 0.95  # 30 x 20 cells of 10 um: ~0.36 mm diagonal
    m[80, 80] = 0.7  # a one-cell speck
    m[60:62, 60:100] = np.nan  # not computed: no probability, not counted
    found = analyse_map(m, MapFrame.for_cells(10.0), LesionParams())
    f = node_features(m, found)
    assert f.shape == (len(FEATURES),) and all(spec.unit for spec in FEATURES)
    assert _feature(f, "largest_diameter_mm") == pytest.approx(
        found.lesions[0].diameter_mm
    )
    assert _feature(f, "largest_area_mm2") == pytest.approx(found.lesions[0].area_mm2)
    assert _feature(f, "lesion_count") == 2 and _feature(f, "small_lesion_count") == 1
    assert _feature(f, "second_diameter_mm") == pytest.approx(
        found.lesions[1].diameter_mm
    )
    classified = tissue_counts(m).classified
    assert _feature(f, "tumour_area_fraction") == pytest.approx(601 / classified)
    assert _feature(f, "max_probability") == pytest.approx(0.95)
    hist = f[[FEATURE_NAMES.index(n) for n in FEATURE_NAMES if n.startswith("hist_")]]
    assert hist.sum() == pytest.approx(1.0) and _feature(
        f, "hist_0_0.1"
    ) == pytest.approx(1 - 601 / classified)
    assert _feature(f, "map_cell_mm") == pytest.approx(0.01)
    assert _feature(f, "tissue_area_mm2") == pytest.approx(classified * 1e-4)
    with pytest.raises(ValueError, match="scale"):
        node_features(m, analyse_map(m, MapFrame.for_cells(None), LesionParams()))


def test_synthesised_phantom_map_matches_its_truth():
    m = synthesise_node_map(16000, 16000, 0.5, "1.2", 7, MapNoise())
    assert m.truth is NodeLabel.MICRO and m.largest_true_mm == pytest.approx(
        1.2, abs=0.01
    )
    found = analyse_map(m.encoded, m.frame, LesionParams(threshold=THRESHOLD))
    assert found.label is NodeLabel.MICRO
    assert found.lesions[0].diameter_mm == pytest.approx(
        1.2, abs=0.1
    )  # within about one 93 um cell
    assert np.any(m.encoded == -1.0) and tissue_counts(m.encoded).classified > 1000
    noisy = synthesise_node_map(16000, 16000, 0.5, "", 7, MapNoise(specks=15))
    assert (
        len(
            analyse_map(
                noisy.encoded, noisy.frame, LesionParams(threshold=THRESHOLD)
            ).lesions
        )
        >= 5
    )


@pytest.fixture(scope="module")
def shipped():
    clf = default_node_classifier()
    assert clf is not None, (
        "resources/models/node-forest-phantom.safetensors is missing or unusable"
    )
    return clf


def test_the_shipped_classifier_says_it_is_trained_on_phantoms_only(shipped):
    assert "trained on phantoms only" in shipped.caution
    assert shipped.forest.features == FEATURE_NAMES
    desc = shipped.forest.description
    assert desc["trained_on"]["phantoms"]["patients"] >= 100 and desc["sklearn_version"]
    assert [f["name"] for f in desc["features"]] == list(FEATURE_NAMES) and all(
        f["unit"] for f in desc["features"]
    )


@pytest.mark.slow  # ~30 synthesised nodes
def test_the_shipped_classifier_beats_the_rules_on_held_out_noisy_maps(shipped):
    # patients 900+ of seed 3: none is in the training cohort (seed 1, patients 0-159)
    cohort = [
        c for c in phantom_cohort(8, 3, THRESHOLD, noisy_share=1.0, first_patient=900)
    ]
    truth = [c.example.label.value for c in cohort]
    rules = [rule_label(c, THRESHOLD).value for c in cohort]
    learned = shipped.forest.predict(np.stack([c.example.features for c in cohort]))
    right_rules = sum(a == b for a, b in zip(rules, truth))
    right_learned = sum(a == b for a, b in zip(learned, truth))
    assert right_learned > right_rules, (right_learned, right_rules, len(cohort))


def test_no_learned_label_where_the_rules_label_is_not_final(shipped):
    m = synthesise_node_map(16000, 16000, 0.5, "0.8", 5, MapNoise())
    found = analyse_map(m.encoded, m.frame, LesionParams(threshold=THRESHOLD))
    counts = found.counts
    final = resolve_node_label(
        found.label, tissue=counts.tissue, classified=counts.classified, failed=0
    )
    shown = learned_label(shipped, m.encoded, found, final)
    assert (
        shown.shown
        and shown.label is NodeLabel.MICRO
        and shown.probabilities["micro"] > 0.5
    )
    assert not shown.disagrees and "agrees" in shown.describe()
    for reason_args in (
        {"failed": 3},
        {"scale_known": False},
        {"out_of_domain_reason": "tissue unlike"},
    ):
        failed = reason_args.pop("failed", 0)
        res = resolve_node_label(
            found.label,
            tissue=counts.tissue,
            classified=counts.classified - failed,
            failed=failed,
            **reason_args,
        )
        hidden = learned_label(shipped, m.encoded, found, res)
        assert (
            not hidden.shown
            and hidden.label is NodeLabel.UNKNOWN
            and hidden.probabilities is None
        )
        assert hidden.reason == res.reason and not hidden.disagrees
        assert hidden.describe().startswith("no label: ")
    differs = LearnedLabel(
        NodeLabel.NEGATIVE,
        NodeLabel.ITC,
        "c",
        probabilities={"negative": 0.8, "itc": 0.2},
    )
    assert differs.disagrees and "check this node" in differs.describe()
    assert LearnedLabel.from_dict(differs.to_dict()) == differs


def _write_analysis(root: Path, slide: str, node_map, learned: bool = False) -> Path:
    """An analysis folder as ``analyze`` writes it, for a synthesised map."""
    folder = root / Path(slide).stem
    folder.mkdir(parents=True)
    geometry = node_map.geometry
    tiff, js = write_probability_map(
        folder, node_map.encoded, geometry, slide=slide, model=MODEL
    )
    counts = tissue_counts(node_map.encoded)
    found = analyse_map(
        node_map.encoded, node_map.frame, LesionParams(threshold=THRESHOLD)
    )
    summary = SlideSummary(
        slide=slide,
        out_dir=str(folder),
        model=MODEL,
        mpp=geometry.slide_mpp,
        level_read=0,
        region_source="test",
        geometry=geometry,
        tissue_patches=counts.tissue,
        classified_patches=counts.classified,
        failed_patches=0,
        coverage=1.0,
        timing=SlideTiming(),
        files=SlideFiles(str(tiff), str(js), "", "", str(folder / "summary.json")),
        node_label=found.label,
        lesion_params=found.params,
        lesions=SlideSummary.written_lesions(found),
    )
    atomic_write_text(folder / "summary.json", strict_dumps(summary.to_dict()))
    return folder


def test_train_from_analysed_slides_with_a_labels_csv_then_analyze_shows_it(
    tmp_path, capsys
):
    cohort = phantom_cohort(4, 11, THRESHOLD, first_patient=700)
    rows = ["patient,stage"]
    for c in cohort:
        _write_analysis(tmp_path / "out", f"/slides/{c.node}.tif", c.map)
        rows.append(f"{c.node}.tif,{c.example.label.value}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "mine.safetensors"
    assert (
        main(
            [
                "train-node-classifier",
                str(tmp_path / "out"),
                "--labels",
                str(tmp_path / "labels.csv"),
                "--trees",
                "20",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert f"{len(cohort)} labelled nodes from {len(cohort)} analysis folder(s)" in text
    clf = load_node_classifier(out)
    trained = clf.forest.description["trained_on"]
    assert trained["nodes"] == len(cohort) and trained["analyses"]["labels"].endswith(
        "labels.csv"
    )
    assert "real data" in clf.caution and "phantoms only" not in clf.caution
    # the phantom truth beside each slide labels it when no CSV is given
    slides = tmp_path / "slides"
    slides.mkdir()
    for c in cohort[:3]:
        (slides / f"{c.node}.lesions.json").write_text(
            json.dumps({"node_label": c.example.label.value})
        )
        _write_analysis(tmp_path / "out2", str(slides / f"{c.node}.tif"), c.map)
    from histoviewer.core.training.node_classifier import (
        examples_from_analyses,
        find_analyses,
    )

    notes = []
    examples = examples_from_analyses(
        find_analyses([tmp_path / "out2"]), None, skipped=notes.append
    )
    assert [e.label for e in examples] == [
        c.example.label for c in cohort[:3]
    ] and not notes
    assert np.allclose(examples[0].features, cohort[0].example.features)

    # a summary carries the learned label through summary.json
    folder = tmp_path / "out" / cohort[0].node
    summary = read_summary(folder)
    from histoviewer.core.analysis.learned_label import with_learned_label

    with_label = with_learned_label(
        summary,
        str(out),
        cohort[0].map.encoded,
        analyse_map(cohort[0].map.encoded, cohort[0].map.frame, summary.lesion_params),
    )
    assert with_label.learned is not None and with_label.learned.classifier == "mine"
    again = SlideSummary.from_dict(json.loads(strict_dumps(with_label.to_dict())))
    assert again.learned == with_label.learned
    assert with_learned_label(summary, "none", cohort[0].map.encoded, None) is summary


def test_training_refuses_too_little_data_and_bad_files(tmp_path, capsys):
    assert (
        main(["train-node-classifier", "--out", str(tmp_path / "x.safetensors")]) == 2
    )
    assert "nothing to train on" in capsys.readouterr().err
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x80\x04not a forest at all, a pickle")
    with pytest.raises(ModelLoadError, match=r"bad\.safetensors: looks like a pickle"):
        load_node_classifier(bad)
    assert (
        main(
            [
                "analyze",
                str(tmp_path / "none.tif"),
                "--out",
                str(tmp_path / "o"),
                "--node-classifier",
                str(bad),
            ]
        )
        == 2
    )
    assert "bad.safetensors: looks like a pickle" in capsys.readouterr().err


def test_a_forest_of_other_features_or_classes_is_refused(tmp_path):
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, len(FEATURE_NAMES)))
    model = RandomForestClassifier(n_estimators=3, random_state=0).fit(
        x[:, :5], ["negative", "micro"] * 30
    )
    save_forest(
        tmp_path / "few.safetensors", forest_from_sklearn(model, FEATURE_NAMES[:5], {})
    )
    with pytest.raises(
        ModelLoadError, match=r"few\.safetensors: made for other map features"
    ):
        load_node_classifier(tmp_path / "few.safetensors")
    model = RandomForestClassifier(n_estimators=3, random_state=0).fit(
        x, ["cat", "dog"] * 30
    )
    save_forest(
        tmp_path / "pets.safetensors", forest_from_sklearn(model, FEATURE_NAMES, {})
    )
    with pytest.raises(
        ModelLoadError, match=r"pets\.safetensors: its classes .* are not node labels"
    ):
        load_node_classifier(tmp_path / "pets.safetensors")


def test_no_learned_label_for_a_map_of_another_cell_size(shipped, tmp_path, capsys):
    m = np.full((100, 100), 0.05, np.float32)
    m[20:50, 20:40] = 0.95
    found = analyse_map(m, MapFrame.for_cells(10.0), LesionParams())
    res = resolve_node_label(
        found.label,
        tissue=found.counts.tissue,
        classified=found.counts.classified,
        failed=0,
    )
    hidden = learned_label(shipped, m, found, res)
    assert (
        not hidden.shown
        and "trained on maps of 0.093 mm cells, this map's are 0.010 mm"
        in hidden.reason
    )
    # the lesions command shows it beside the rules' label, or says why not
    np.save(tmp_path / "map.npy", m)
    assert main(["lesions", str(tmp_path / "map.npy"), "--mpp", "10"]) == 0
    out = capsys.readouterr().out
    assert (
        "node label micro" in out
        and "learned label (node-forest-phantom" in out
        and "no label: " in out
    )
    assert (
        main(["lesions", str(tmp_path / "map.npy"), "--mpp", "93.312", "--json"]) == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc["node_label"] == "macro" and doc["learned_label"]["reason"] is None
    assert doc["learned_label"]["label"] in {"negative", "itc", "micro", "macro"}
    assert (
        main(
            [
                "lesions",
                str(tmp_path / "map.npy"),
                "--mpp",
                "93.312",
                "--json",
                "--node-classifier",
                "none",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["learned_label"] is None


def test_a_report_from_the_viewers_live_map_carries_the_learned_label(shipped):
    from histoviewer.core.export.source import HeatmapData
    from histoviewer.core.report import slide_report_from_map
    from histoviewer.core.report.tables import SLIDE_COLUMNS, slides_csv

    m = synthesise_node_map(16000, 16000, 0.5, "", 21, MapNoise(specks=14))
    report = slide_report_from_map(
        "/slides/patient_040_node_1.tif", HeatmapData(m.encoded, m.geometry, MODEL)
    )
    assert report.learned is not None and report.learned.rule_label is report.node_label
    assert report.to_dict()["learned_label"]["classifier"] == "node-forest-phantom"
    from histoviewer.core.report import build_report

    row = slides_csv(build_report([report], [])).splitlines()[1]
    first = SLIDE_COLUMNS.index("learned_label")
    assert SLIDE_COLUMNS[first:first + 4] == (
        "learned_label",
        "learned_probability",
        "learned_disagrees",
        "learned_classifier",
    )
    assert "node-forest-phantom (trained on phantoms only" in row
