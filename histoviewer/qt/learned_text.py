"""How the GUI shows the learned node classifier's label beside the rule-based one.

One place for the wording and colours of the summary panel's line and the case view's
column: the rule-based label is the node's label (it decides pN); the learned one is a
second opinion, flagged when it differs, and absent with the reason whenever the rule-based
label is not final (``analysis.learned_label``).
"""

from __future__ import annotations

from histoviewer.core.analysis.learned_label import (
    LearnedLabel,
    default_node_classifier,
    resolve_node_classifier,
)
from histoviewer.core.errors import ModelLoadError

__all__ = [
    "DISAGREE_COLOUR",
    "learned_cell",
    "learned_column_title",
    "learned_panel_text",
]

DISAGREE_COLOUR = "#b35900"
AGREE_COLOUR = "#3a5a3a"
NONE_COLOUR = "#666666"


def learned_column_title(spec: str = "default") -> str:
    """The case view's column title for classifier ``spec`` (``node_classifier_choice``); says
    'phantoms only' for the shipped classifier (or a file that says so of itself)."""
    if spec == "none":
        return "Learned label (none chosen)"
    try:
        clf = default_node_classifier() if spec == "default" else resolve_node_classifier(spec)
    except ModelLoadError:
        return "Learned label"
    if clf is None:
        return "Learned label"
    return (
        "Learned label (phantoms only)"
        if "phantoms only" in clf.caution
        else "Learned label"
    )


def learned_cell(learned: LearnedLabel | None) -> tuple[str, str, bool, str]:
    """(text, colour, bold, tooltip) of the case view's learned-label cell."""
    if learned is None:
        return (
            "not run",
            NONE_COLOUR,
            False,
            "No learned node classifier was run for this analysis.",
        )
    tooltip = f"{learned.classifier}: {learned.caution}\n{learned.describe()}\nThe rule-based label decides pN."
    if not learned.shown:
        return "none (label not final)", NONE_COLOUR, False, tooltip
    text = f"{learned.label.value.upper()} (p {learned.confidence:.2f})"
    if learned.disagrees:
        return f"\u26a0 {text} \u2260 rules: check", DISAGREE_COLOUR, True, tooltip
    return f"{text} = rules", AGREE_COLOUR, False, tooltip


def learned_panel_text(learned: LearnedLabel | None) -> tuple[str, str]:
    """(text, style sheet) of the summary panel's learned-label line ("" when none ran)."""
    if learned is None:
        return "", ""
    who = (
        f"Learned classifier ({learned.classifier}"
        + (f"; {learned.caution}" if learned.caution else "")
        + ")"
    )
    if not learned.shown:
        return (f"{who}: no label \u2013 {learned.reason}", f"color: {NONE_COLOUR};")
    text = f"{who}:\n{learned.label.value.upper()} (p {learned.confidence:.2f})"
    if learned.disagrees:
        warning = (
            f"{text} \u2260 rule-based {learned.rule_label.value.upper()}: check this node; "
            "the rule-based label decides pN"
        )
        return warning, f"color: {DISAGREE_COLOUR}; font-weight: bold;"
    return f"{text}, agrees with the rule-based label", f"color: {AGREE_COLOUR};"
