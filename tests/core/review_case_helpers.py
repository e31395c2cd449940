"""A small analysed case for the review tests: two node slides (the synthetic slide with one
micrometastasis), analysed with the fast fake model, and per test a copy of both whose
summaries name the copied slides (so each test's autosaves, beside its slides, are its own)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from histoviewer.core.analysis.review_queue import build_queue, decide
from histoviewer.core.analysis.summary import SlideSummary
from histoviewer.core.annotations import open_document, save_document
from histoviewer.core.annotations.review import Verdict
from histoviewer.core.inference.analyze import AnalyzeOptions, analyze_slide
from tests.core.inference_helpers import LesionFractionModel, write_synthetic_tiff


def analyse_case(root: Path, nodes: tuple[str, ...]) -> dict[str, SlideSummary]:
    """``root/slides/<node>`` analysed into ``root/analysis/<stem>``."""
    source = write_synthetic_tiff(root / "synthetic.tiff")
    (root / "slides").mkdir()
    summaries = {}
    for name in nodes:
        shutil.copy(source, root / "slides" / name)
        summaries[name] = analyze_slide(root / "slides" / name, root / "analysis" / Path(name).stem,
                                        LesionFractionModel(), AnalyzeOptions(batch_size=64))
    return summaries


def copy_case(root: Path, to: Path, nodes: tuple[str, ...]) -> tuple[Path, Path]:
    """(slides, analysis) copied under ``to``; the copied summaries name the copied slides."""
    shutil.copytree(root / "slides", to / "slides")
    shutil.copytree(root / "analysis", to / "analysis")
    for name in nodes:
        path = to / "analysis" / Path(name).stem / "summary.json"
        data = json.loads(path.read_text())
        data["slide"] = str(to / "slides" / name)
        path.write_text(json.dumps(data))
    return to / "slides", to / "analysis"


def review_node(slide: Path, summary: SlideSummary, verdict: Verdict) -> None:
    """Every hotspot of the node decided ``verdict`` and saved, as the viewer autosaves."""
    doc, _ = open_document(slide, summary.mpp)
    queue = build_queue(summary.lesions, doc.decisions(), summary.model.content_hash)
    for hotspot in queue.hotspots:
        doc.set_decision(decide(hotspot, verdict, summary.model.content_hash, "dr. a"))
    save_document(doc, slide)
