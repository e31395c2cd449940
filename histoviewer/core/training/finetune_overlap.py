"""Would this fine-tune teach a fine-tuned model what it has already learned?

A fine-tuned model's header records the slides and regions it learned from
(``extra["fine_tune"]["slides"]``, see ``finetune``). Fine-tuning it again on the same slides'
corrections was measured to make held-out results worse (docs/benchmarks.md, the fine-tune
section: a second round on the same 3 slides added false lesions on negative nodes it never
saw): it drifts further from its parent on tissue nobody reviewed. ``relearned_overlap`` names
that overlap so the GUI can warn before a second round; it never forbids one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from histoviewer.core.patches.region_patches import SlideLabels
from histoviewer.core.training.finetune import FINETUNE_KEY

__all__ = ["RelearnedOverlap", "relearned_overlap"]


@dataclass(frozen=True)
class RelearnedOverlap:
    """The selected slides a fine-tuned model already learned from.

    ``slides``: their file names, in the order selected; ``regions_again``: selected regions
    (decisions and annotations, by hotspot id / annotation uid) it learned from already;
    ``regions_selected``: all selected regions on those slides; ``parent_name``: the model it
    was fine-tuned from (the better starting point for a new round)."""

    slides: tuple[str, ...]
    regions_again: int
    regions_selected: int
    parent_name: str


def _same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one is gone: compare the paths as written
        return Path(a).absolute() == Path(b).absolute()


def relearned_overlap(
    model_extra: Mapping[str, object], labelled: Sequence[SlideLabels]
) -> RelearnedOverlap | None:
    """The overlap of ``labelled`` with what the model (its ``ModelInfo.extra``) was fine-tuned
    on; None when it is not a fine-tuned model or none of the slides is one it learned from."""
    record = model_extra.get(FINETUNE_KEY)
    if not isinstance(record, Mapping):
        return None
    learned = [
        s for s in record.get("slides", ()) if isinstance(s, Mapping) and s.get("slide")
    ]
    names: list[str] = []
    again = selected = 0
    for sl in labelled:
        seen = [s for s in learned if _same_file(sl.slide, str(s["slide"]))]
        if not seen:
            continue
        names.append(Path(sl.slide).name)
        known = {
            (r.get("origin"), r.get("ref"))
            for s in seen
            for r in s.get("regions", ())
            if isinstance(r, Mapping)
        }
        selected += len(sl.regions)
        again += sum((r.origin, r.ref) in known for r in sl.regions)
    if not names:
        return None
    parent = record.get("parent")
    parent_name = str(parent.get("name", "")) if isinstance(parent, Mapping) else ""
    return RelearnedOverlap(tuple(names), again, selected, parent_name)
