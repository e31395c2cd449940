"""What the CLI adds to core messages: the commands and flags that act on them.

Core text speaks of the problem and the action in words (the GUI shows it to people who have
no flags); the CLI appends the command line here, where it prints the message."""

from __future__ import annotations

from histoviewer.core.models.classifier import DEMO_WARNING

__all__ = ["TRAIN_COMMAND", "caution_line", "demo_warning"]

TRAIN_COMMAND = "histoviewer train cnn --data PCAM_DIR --out model.safetensors"


def demo_warning(warning: str | None = None) -> str:
    """The demonstration-model warning (``warning``, else the core one) with the train command."""
    return f"{warning or DEMO_WARNING}; train one with: {TRAIN_COMMAND}"


def caution_line(caution: str, demonstration: bool) -> str:
    """What the CLI prints beside a model's name: a demonstration model's warning with the
    train command, else the model's caveat (what it was trained on; not for diagnosis)."""
    return demo_warning(caution) if demonstration else caution
