"""``histoviewer review-status CASE_DIR``: review progress per node from the case's analysis
and the decisions saved with each slide's annotations; the node labels and pN as reviewed."""

from __future__ import annotations

import argparse
import json

import pytest

from histoviewer.cli import review_status as cli_review_status
from histoviewer.core.annotations import AnnotationDocument, save_document
from histoviewer.core.annotations.review import Verdict
from tests.core.review_case_helpers import analyse_case, copy_case, review_node

NODES = ("patient_010_node_0.tif", "patient_010_node_1.tif")


@pytest.fixture(scope="module")
def analysed_case(tmp_path_factory):
    root = tmp_path_factory.mktemp("case")
    return root, analyse_case(root, NODES)


@pytest.fixture
def case(analysed_case, tmp_path):
    root, summaries = analysed_case
    slides, analysis = copy_case(root, tmp_path, NODES)
    return slides, analysis, summaries


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="histoviewer")
    cli_review_status.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    rc = args.func(args)
    return rc, capsys.readouterr().out


def test_review_status_lists_unreviewed_nodes_then_stages_as_reviewed(case, capsys):
    slides, analysis, summaries = case
    assert all(len(s.lesions) == 1 and s.node_label.value == "micro" for s in summaries.values())
    rc, out = run_cli(["review-status", str(slides), "--analysis", str(analysis)], capsys)
    assert rc == 3 and "0 of 2 hotspots reviewed" in out
    assert "1 of 1 hotspots unreviewed" in out and "pN stage from the AI: pN1mi" in out
    # node 0 rejected: not tumour; node 1 still open
    review_node(slides / NODES[0], summaries[NODES[0]], Verdict.NOT_TUMOUR)
    rc, out = run_cli(["review-status", str(slides), "--analysis", str(analysis), "--json"], capsys)
    data = json.loads(out)
    assert rc == 3 and not data["complete"] and data["progress"]["reviewed"] == 1
    nodes = {n["node"]: n for n in data["nodes"]}
    assert nodes[NODES[0]]["state"] == "reviewed" and nodes[NODES[0]]["reviewed_label"]["label"] == "negative"
    assert nodes[NODES[1]]["state"] == "1 of 1 hotspots unreviewed"
    # node 1 could still be a micrometastasis: the stage as reviewed is not stated
    assert data["stages"][0]["ai"] == "pN1mi" and data["stages"][0]["as_reviewed"] == "unknown"
    # node 1 accepted: complete; the stage as reviewed follows the accepted micrometastasis only
    review_node(slides / NODES[1], summaries[NODES[1]], Verdict.TUMOUR)
    rc, out = run_cli(["review-status", str(slides), "--analysis", str(analysis)], capsys)
    assert rc == 0 and "2 of 2 hotspots reviewed (1 tumour, 1 not tumour, 0 unsure)" in out
    assert "as reviewed: pN1mi" in out


def test_review_status_without_an_analysis_says_the_hotspots_are_unknown(case, capsys):
    slides, _, _ = case
    doc = AnnotationDocument(mpp=0.25)
    save_document(doc, slides / NODES[0])
    rc, out = run_cli(["review-status", str(slides)], capsys)
    assert rc == 3 and "not analysed: the AI's hotspots are not known" in out
    assert "0 of 0 hotspots reviewed" in out and "not staged" in out
