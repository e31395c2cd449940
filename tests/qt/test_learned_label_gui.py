"""The learned node classifier's label beside the rule-based one in the summary panel and
the case view: flagged where they differ, absent (with the reason) where the rules' label
is not final."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from histoviewer.core.analysis.learned_label import with_learned_label
from histoviewer.core.analysis.lesions import LesionParams
from histoviewer.core.analysis.node_label import analyse_map
from histoviewer.core.analysis.summary import SlideSummary
from histoviewer.core.models.domain import DomainVerdict
from histoviewer.core.phantom.node_maps import MapNoise, synthesise_node_map
from histoviewer.qt.case_dialog import LEARNED_COLUMN, CaseDialog
from histoviewer.qt.learned_text import DISAGREE_COLOUR
from histoviewer.qt.live_lesions import HISTOGRAM_BINS, LesionSnapshot, _learned
from histoviewer.qt.summary_panel import SummaryPanel
from tests.core.summary_helpers import summary as make_summary

THRESHOLD = 0.4627


def _noisy_negative():
    """A lesion-free phantom node whose map holds false-positive specks: the rules call it
    micro (a 3-cell speck), the shipped forest negative."""
    m = synthesise_node_map(16000, 16000, 0.5, "", 21, MapNoise(specks=14))
    return m, analyse_map(m.encoded, m.frame, LesionParams(threshold=THRESHOLD))


def _snapshot(encoded, found) -> LesionSnapshot:
    counts = np.histogram(
        encoded[np.isfinite(encoded) & (encoded >= 0)],
        bins=HISTOGRAM_BINS,
        range=(0, 1),
    )[0]
    return LesionSnapshot(
        found,
        tuple(int(c) for c in counts),
        "m",
        False,
        0.0,
        1,
        learned=_learned(encoded, found, DomainVerdict.not_assessed()),
    )


def test_panel_flags_a_learned_label_that_differs_and_hides_it_while_provisional(qtbot):
    m, found = _noisy_negative()
    panel = SummaryPanel()
    qtbot.addWidget(panel)
    panel.show_snapshot(_snapshot(m.encoded, found))
    text = panel.learned_label.text()
    assert (
        panel.label_title.text() == "MICROMETASTASIS"
    )  # the rules' label stays the headline
    assert "trained on phantoms only" in text and "NEGATIVE" in text
    assert (
        "\u2260 rule-based MICRO: check this node" in text
        and DISAGREE_COLOUR in panel.learned_label.styleSheet()
    )

    part = m.encoded.copy()
    part[:40] = np.where(
        part[:40] >= 0, np.nan, part[:40]
    )  # a third of the tissue not classified yet
    panel.show_snapshot(
        _snapshot(part, analyse_map(part, m.frame, LesionParams(threshold=THRESHOLD)))
    )
    assert (
        "no label" in panel.learned_label.text()
        and "not classified" in panel.learned_label.text()
    )
    assert "NEGATIVE" not in panel.learned_label.text()
    panel.show_snapshot(None, "AI overlay off: no lesions.")
    assert panel.learned_label.text() == ""


def test_case_view_has_a_learned_column_beside_the_label(qtbot, tmp_path):
    m, found = _noisy_negative()
    slides = [str(tmp_path / f"patient_030_node_{i}.tif") for i in range(3)]
    dialog = CaseDialog(slides)
    qtbot.addWidget(dialog)
    assert "phantoms only" in dialog.table.horizontalHeaderItem(LEARNED_COLUMN).text()
    base = replace(
        make_summary(slides[0], "negative"),
        geometry=m.geometry,
        tissue_patches=found.counts.tissue,
        classified_patches=found.counts.classified,
        coverage=1.0,
        node_label=found.label,
        label_so_far=None,
        lesions=SlideSummary.written_lesions(found),
        lesion_params=found.params,
    )
    dialog._on_node(0, with_learned_label(base, "default", m.encoded, found))
    cell = dialog.table.item(0, LEARNED_COLUMN)
    assert cell.text().startswith("\u26a0 NEGATIVE") and "rules: check" in cell.text()
    assert (
        cell.foreground().color().name() == DISAGREE_COLOUR
        and "decides pN" in cell.toolTip()
    )
    assert dialog.table.item(0, 1).text() == "MICROMETASTASIS"
    failed = replace(
        base,
        slide=slides[1],
        failed_patches=4,
        classified_patches=base.classified_patches - 4,
    )
    dialog._on_node(1, with_learned_label(failed, "default", m.encoded, found))
    assert dialog.table.item(1, LEARNED_COLUMN).text() == "none (label not final)"
    assert "4 of" in dialog.table.item(1, LEARNED_COLUMN).toolTip()
    dialog._on_node(
        2, replace(base, slide=slides[2])
    )  # an analysis without a learned label
    assert dialog.table.item(2, LEARNED_COLUMN).text() == "not run"
