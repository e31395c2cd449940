"""Which selected slides and corrections a fine-tuned model already learned from (the dialog's
warning before a second round on the same slides)."""

from __future__ import annotations

from pathlib import Path

from histoviewer.core.patches.region_patches import LabelledRegion, SlideLabels
from histoviewer.core.training.finetune_overlap import (
    RelearnedOverlap,
    relearned_overlap,
)

_BOX = ((0.0, 0.0), (10.0, 0.0), (10.0, 10.0))


def _labels(slide: Path, *refs: str) -> SlideLabels:
    regions = tuple(LabelledRegion(_BOX, 1, "accepted hotspot", ref) for ref in refs)
    return SlideLabels(slide, slide.with_suffix(".json"), regions)


def test_overlap_names_the_slides_and_counts_the_corrections_learned_before(tmp_path):
    a, b, c = (tmp_path / f"{n}.tiff" for n in "abc")
    for p in (a, b, c):
        p.write_bytes(b"x")
    record = {
        "parent": {"name": "cnn-pcam"},
        "slides": [_labels(a, "h1", "h2").to_dict(), _labels(b, "h9").to_dict()],
    }
    # a: two old decisions and a new one; b: only new ones; c: never learned from
    selected = [_labels(a, "h1", "h2", "h3"), _labels(b, "h10"), _labels(c, "h1")]
    assert relearned_overlap({"fine_tune": record}, selected) == RelearnedOverlap(
        ("a.tiff", "b.tiff"), 2, 4, "cnn-pcam"
    )
    # the same slide through another spelling of its path still counts
    other = tmp_path / "sub" / ".." / "a.tiff"
    (tmp_path / "sub").mkdir()
    assert (
        relearned_overlap({"fine_tune": record}, [_labels(other, "h1")]).regions_again
        == 1
    )


def test_no_overlap_for_a_model_that_is_not_fine_tuned_or_for_new_slides(tmp_path):
    a, c = tmp_path / "a.tiff", tmp_path / "c.tiff"
    record = {"slides": [_labels(a, "h1").to_dict()]}
    assert relearned_overlap({}, [_labels(a, "h1")]) is None
    assert relearned_overlap({"fine_tune": record}, [_labels(c, "h1")]) is None
