"""Which learned node classifier the viewer shows beside the rule-based label.

The choice (``AiSettings.node_classifier``) is what ``histoviewer analyze --node-classifier``
takes: ``default`` (the shipped classifier, trained on phantoms only), ``none`` (the
rule-based label alone) or a file written by ``histoviewer train-node-classifier``. A file is
checked when it is chosen (``check_node_classifier``): a file that cannot be used is refused
with the loader's message, which names the file. The summary panel (``LiveLesions``) and the
case view (``CaseAnalysis``) use the choice; a remembered file that has since become
unusable gives no learned label, with the reason, never the shipped one in its place.
"""

from __future__ import annotations

from pathlib import Path

from histoviewer.core.analysis.learned_label import (
    NodeClassifier,
    default_node_classifier,
    resolve_node_classifier,
)
from histoviewer.core.errors import ModelLoadError

__all__ = [
    "NODE_CLASSIFIER_CHOICES",
    "check_node_classifier",
    "node_classifier_for",
    "node_classifier_text",
]

# (setting, what the menu and the panel call it): the fixed choices; a file is added by path
NODE_CLASSIFIER_CHOICES = (
    ("default", "Shipped (trained on phantoms only)"),
    ("none", "None (rule-based label only)"),
)


def node_classifier_text(spec: str) -> str:
    """What the panel and the menu call ``spec``: a fixed choice's text, or the file's name."""
    for key, text in NODE_CLASSIFIER_CHOICES:
        if spec == key:
            return text
    return Path(spec).name


def node_classifier_for(spec: str | None) -> NodeClassifier | None:
    """The classifier of ``spec`` (None for ``none``; for ``default`` None when the shipped
    file is missing, as ``analyze`` does). ``ModelLoadError`` naming the file when a chosen
    file cannot be used."""
    if spec is None or spec == "none":
        return None
    if spec == "default":
        return default_node_classifier()
    return resolve_node_classifier(spec)


def check_node_classifier(spec: str) -> str | None:
    """None when ``spec`` can be used; else why not (the loader's message, naming the file)."""
    try:
        node_classifier_for(spec)
    except ModelLoadError as exc:
        return str(exc)
    except OSError as exc:  # the loader names unreadable files itself; this is a last resort
        return f"{spec}: {exc}"
    return None
