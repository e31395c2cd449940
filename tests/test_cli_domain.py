"""The shipped models' tissue check end to end on the command line: skin (CMU-1) gets no node
label from ``analyze`` or from ``lesions`` on its map; a phantom lymph node of the kind the
models trained on is judged like their training tissue and keeps its label."""

from __future__ import annotations

import json

from PIL import Image

from histoviewer.cli import main
from histoviewer.core.analysis.summary import read_summary
from histoviewer.core.export.provenance import provenance_path
from histoviewer.core.models.domain import OUT_OF_DOMAIN_REASON
from histoviewer.core.phantom import write_phantom


def _only_summary(out_dir):
    (summary,) = sorted(out_dir.rglob("summary.json"))
    return summary


def test_skin_is_flagged_and_no_output_gives_it_a_node_label(cmu_small, tmp_path, capsys):
    out = tmp_path / "an"
    main(["analyze", str(cmu_small), "--model", "handcrafted", "--out", str(out)])
    text = capsys.readouterr().out
    assert OUT_OF_DOMAIN_REASON in text and "node label: unknown" in text
    summary_path = _only_summary(out)
    outcome = read_summary(summary_path)
    assert outcome.domain.assessed and outcome.domain.out_of_domain and outcome.domain.score >= 0.5
    assert outcome.node_label.value == "unknown"
    doc = json.loads(summary_path.read_text())
    assert doc["domain"]["out_of_domain"] is True
    # the QuPath file never shows its regions as tumour, nor gives them a size class
    features = json.loads((summary_path.parent / "lesions.geojson").read_text())["features"]
    assert features and all(f["properties"]["classification"]["name"] == "Unreliable AI region"
                            and f["properties"]["size_class"] is None for f in features)

    # the lesions command reads the same map, lesions and all, and still gives no label
    prob_map = summary_path.parent / "probability.tiff"
    assert main(["lesions", str(prob_map)]) == 0
    assert f"node label unknown ({OUT_OF_DOMAIN_REASON}" in capsys.readouterr().out
    assert main(["lesions", str(prob_map), "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["node_label"] == "unknown" and found["domain"]["out_of_domain"] is True
    assert found["unknown_reason"].startswith(OUT_OF_DOMAIN_REASON)

    # an exported overlay says it too: in its legend and its provenance
    png = tmp_path / "overlay.png"
    assert main(["export-heatmap", str(cmu_small), "--probability", str(prob_map), "--overlay",
                 "--um-per-px", "8", "--out", str(png), "--json"]) == 0
    capsys.readouterr()
    prov = json.loads(provenance_path(png).read_text())
    assert prov["extra"]["tissue_check"].startswith(OUT_OF_DOMAIN_REASON)
    chunks = Image.open(png).text
    assert OUT_OF_DOMAIN_REASON in chunks["Warning"]


def test_a_phantom_node_is_like_the_training_tissue_and_keeps_its_label(tmp_path, capsys):
    slide = tmp_path / "node.tiff"
    write_phantom(slide, width=8000, height=8000, mpp=0.25, lesions="micro:0.9", seed=7)
    out = tmp_path / "an"
    assert main(["analyze", str(slide), "--model", "handcrafted", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Tissue like the model's training data" in text and OUT_OF_DOMAIN_REASON not in text
    outcome = read_summary(_only_summary(out))
    assert outcome.domain.assessed and not outcome.domain.out_of_domain
    assert outcome.node_label.value == "micro"
